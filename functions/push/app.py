"""FanoutFunction: delivers the push queue's events over the WebSocket API (stockpred.realtime.rooms).

SQS invokes it with one event per record (the template's BatchSize). A record that fails (its
follow-ups could not be queued, Redis unreachable) is reported in `batchItemFailures`, so SQS
delivers that record again and no other; after maxReceiveCount tries it goes to the dead-letter
queue. A record that is not a push event is logged and dropped: trying it again would not help.
"""

from __future__ import annotations

import time
from typing import Any

from stockpred.api import safejson
from stockpred.observability import logs, metrics
from stockpred.realtime import rooms

log = logs.get_logger("push")


@logs.lambda_handler
def handler(event: Any, context: Any) -> dict[str, Any]:
    failures = []
    for record in (event or {}).get("Records") or []:
        taken = time.time()
        try:
            push = safejson.loads(record["body"])
            if not isinstance(push, dict):
                raise TypeError("a push event is a JSON object")
            request_id = getattr(context, "aws_request_id", None) or "-"
            logs.correlation_id.set(logs.clean_correlation_id(push.get("correlation_id")) or request_id)
            result = rooms.deliver(push)
        except (ValueError, KeyError, TypeError) as exc:
            log.error("push event refused", extra={"fields": {"error": f"{type(exc).__name__}: {exc}"[:300]}})
            continue
        except Exception:
            log.exception("push failed: the queue will deliver it again")
            failures.append({"itemIdentifier": record["messageId"]})
            continue
        metrics.count("PushesDelivered", result.delivered)
        metrics.count("PushesGone", result.gone)
        metrics.count("PushesFailed", result.requeued + result.dropped)
        published = push.get("published_at")
        log.info("push delivered", extra={"fields": {
            **vars(result), "event_id": push.get("id"), "attempt": push.get("attempt", 1),
            "queued_ms": round((taken - published) * 1000, 1)
            if isinstance(published, int | float) else None}})
    return {"batchItemFailures": failures}
