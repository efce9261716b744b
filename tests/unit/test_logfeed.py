"""devstack's log feed: worker lines echoed and shipped as CloudWatch Logs subscription batches."""

from __future__ import annotations

import base64
import gzip
import io
import json
from pathlib import Path

from devstack.logfeed import LogFeed
from devstack.runtime import Invocation
from devstack.template import Function

SHIPPER = Function("LogShipperFunction", Path("."), "shipper.handler", (), 30, 128)


class RecordingPool:
    def __init__(self) -> None:
        self.events: list[dict] = []

    def close(self) -> None:
        pass

    def invoke(self, fn: Function, event: dict, request_id: str | None = None) -> Invocation:
        self.events.append(json.loads(gzip.decompress(base64.b64decode(event["awslogs"]["data"]))))
        return Invocation({"indexed": 1}, None, 1.0, False)


def test_lines_arriving_together_are_echoed_and_shipped_in_order() -> None:
    echo, pool = io.StringIO(), RecordingPool()
    feed = LogFeed(SHIPPER, pool, echo=echo, flush_every_s=3600)  # type: ignore[arg-type]
    feed.lines("StocksFunction", "devstack/1", ['{"message": "a"}', "", '{"message": "b"}'])
    feed.lines("StocksFunction", "devstack/1", ['{"message": "c"}'])
    feed.lines("LogShipperFunction", "devstack/2", ["the shipper's own line"])
    feed.close()
    assert echo.getvalue().splitlines() == ['{"message": "a"}', "", '{"message": "b"}',
                                            '{"message": "c"}', "the shipper's own line"]
    [batch] = pool.events
    assert batch["logGroup"] == "/aws/lambda/StocksFunction" and batch["logStream"] == "devstack/1"
    assert [e["message"] for e in batch["logEvents"]] == ['{"message": "a"}', '{"message": "b"}',
                                                          '{"message": "c"}']
    ids = [e["id"] for e in batch["logEvents"]]
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert feed.shipped == 3 and feed.lost == 0
