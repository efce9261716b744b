"""CloudWatch Logs' part, locally: the functions' output lines, batched, to the LogShipperFunction.

On AWS each function's lines land in its log group and a subscription filter hands batches to
the shipper as `{"awslogs": {"data": base64(gzip(DATA_MESSAGE))}}`. Here every worker's output
(see runtime.LogSink) is echoed to devstack's own log, as before, and collected per function and
log stream; every FLUSH_EVERY_S (sooner when a batch is full) each batch is built in that exact
shape and given to the same shipper code, on its own small worker pool so shipping never takes a
worker from the API. The shipper's own lines are only echoed, as its log group has no filter.
A batch the shipper fails on (not one OpenSearch refused: the shipper dead-letters those itself)
is retried like Lambda's asynchronous invoke, twice, then counted as lost in devstack's log.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import os
import sys
import threading
import time
from collections import defaultdict
from typing import Any, TextIO

from devstack.runtime import LogSink, WorkerPool
from devstack.template import LOCAL_ACCOUNT, Function

log = logging.getLogger("devstack.logfeed")

SHIPPER = "LogShipperFunction"
FLUSH_EVERY_S = 0.5
MAX_EVENTS = 1000  # a subscription batch holds at most ~1 MB; ours stay well below
RETRIES = 2


def payload(log_group: str, log_stream: str, events: list[dict[str, Any]],
            owner: str = LOCAL_ACCOUNT) -> dict[str, Any]:
    """The event a subscription filter gives a Lambda function for these log events."""
    message = {"messageType": "DATA_MESSAGE", "owner": owner, "logGroup": log_group,
               "logStream": log_stream, "subscriptionFilters": ["stockpred-logs"], "logEvents": events}
    data = base64.b64encode(gzip.compress(json.dumps(message).encode())).decode()
    return {"awslogs": {"data": data}}


class LogFeed:
    """Collects worker output (its `lines` is the pools' LogSink) and ships it in batches."""

    def __init__(self, shipper: Function | None, pool: WorkerPool | None, echo: TextIO = sys.stderr,
                 flush_every_s: float = FLUSH_EVERY_S) -> None:
        self.shipper = shipper
        self.pool = pool
        self.echo = echo
        self.flush_every_s = flush_every_s
        self._pending: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        self._count = 0
        self._seq = 0
        self._prefix = f"{int(time.time() * 1000):013d}{os.getpid() % 10**7:07d}"
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.shipped = 0
        self.lost = 0
        self._thread = threading.Thread(target=self._run, name="logfeed", daemon=True)
        if shipper is not None and pool is not None:
            self._thread.start()

    @property
    def sink(self) -> LogSink | None:
        """The pools' LogSink: `lines` when shipping, else None (workers write to stderr)."""
        return self.lines if self.shipper is not None else None

    def lines(self, function: str, stream: str, texts: list[str]) -> None:
        """Lines of one log stream that arrived together: echoed in one write, queued in one go."""
        self.echo.write("".join(text + "\n" for text in texts))
        self.echo.flush()
        if self.shipper is None or function == self.shipper.logical_id:
            return
        now_ms = int(time.time() * 1000)
        with self._lock:
            pending = self._pending[(function, stream)]
            for text in texts:
                if text.strip():
                    self._seq += 1
                    # Unique, increasing ids, as CloudWatch's event ids are: the shipper indexes by them.
                    pending.append({"id": f"{self._prefix}{self._seq:012d}", "timestamp": now_ms,
                                    "message": text})
                    self._count += 1
            if self._count >= MAX_EVENTS:
                self._wake.set()

    def _take(self) -> dict[tuple[str, str], list[dict[str, Any]]]:
        with self._lock:
            taken, self._pending, self._count = self._pending, defaultdict(list), 0
            self._wake.clear()
            return taken

    def flush(self) -> None:
        for (function, stream), events in self._take().items():
            for start in range(0, len(events), MAX_EVENTS):
                batch = events[start:start + MAX_EVENTS]
                self._ship(payload(f"/aws/lambda/{function}", stream, batch), len(batch))

    def _ship(self, event: dict[str, Any], lines: int) -> None:
        assert self.shipper is not None and self.pool is not None
        error = None
        for attempt in range(RETRIES + 1):
            try:
                inv = self.pool.invoke(self.shipper, event)
                if inv.error is None:
                    self.shipped += lines
                    return
                error = inv.error.get("errorMessage")
            except Exception as exc:  # a throttled or timed-out shipper: retried like an async invoke
                error = str(exc)
            if attempt < RETRIES:
                time.sleep(1.0 * (attempt + 1))
        self.lost += lines
        log.error("log shipper failed %d times: %d lines not shipped (%s)", RETRIES + 1, lines, error)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_every_s)
            try:
                self.flush()
            except Exception:
                log.exception("log feed flush failed")

    def close(self) -> None:
        """Ships what is pending, then stops the thread and the shipper's pool (the feed's own)."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(10)
        if self.shipper is not None and self.pool is not None:
            self.flush()
        if self.pool is not None:
            self.pool.close()
