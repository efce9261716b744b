"""The metrics AWS's services make on their own, made by devstack where it plays the service.

On AWS, Lambda publishes Invocations, Errors (an unhandled exception or a timeout) and Throttles
per function (namespace AWS/Lambda, dimension FunctionName), and SQS the depth of each queue
(AWS/SQS ApproximateNumberOfMessagesVisible, dimension QueueName), without a line of our code.
devstack runs the functions and the queues, so it counts the same things: every invocation any
pool serves is counted here (`lambda_invoked`), and the template's queues are sampled every
minute; both are written to the metric indices as the documents the shipper makes of a metric
line (stockpred.observability.logship.metric_of), so the template's alarms on them are evaluated locally too
(devstack/alarms.py).

Locally a function's name is its logical id, and so is a queue's.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from typing import Any

from stockpred import config
from stockpred.observability import logship, opensearch

NAMESPACES = ("AWS/Lambda", "AWS/SQS")
FLUSH_EVERY_S = 10.0
LAMBDA_METRICS = ("Invocations", "Errors", "Throttles")

_lock = threading.Lock()
_counts: dict[str, Counter[str]] = {}
_flusher: threading.Thread | None = None


def document(namespace: str, dimensions: dict[str, str], values: dict[str, float],
             at: float | None = None) -> dict[str, Any]:
    """A metric document of the metric indices, as the shipper would make of such a line."""
    line = logship.metric_document(
        at=time.time() if at is None else at, namespace=namespace,
        values={k: float(v) for k, v in values.items()}, dimensions=dict(dimensions),
        dimension_sets=[",".join(sorted(dimensions))], function=dimensions.get("FunctionName", "-"),
        event_id=str(uuid.uuid4()))
    return {"_index": opensearch.metric_index_for(line["timestamp"]), "_id": line["event_id"], "line": line}


def lambda_invoked(function: str, *, error: bool = False, throttled: bool = False) -> None:
    """Counts one invocation of `function` (a throttled one is not an invocation)."""
    with _lock:
        counts = _counts.setdefault(function, Counter())
        if throttled:
            counts["Throttles"] += 1
        else:
            counts["Invocations"] += 1
            counts["Errors"] += int(error)
    _start_flusher()


def lambda_documents(at: float | None = None) -> list[dict[str, Any]]:
    """The counts since the last call, one document per function, and starts counting afresh."""
    global _counts
    with _lock:
        taken, _counts = _counts, {}
    return [document("AWS/Lambda", {"FunctionName": fn}, {m: counts[m] for m in LAMBDA_METRICS}, at)
            for fn, counts in sorted(taken.items())]


def write(docs: list[dict[str, Any]]) -> None:
    """Indexes the documents; those the store cannot take now are dropped, as a metric point
    CloudWatch could not receive is: never retried into the wrong period."""
    if docs:
        opensearch.bulk_index(docs)


def _flush_forever() -> None:
    while True:
        time.sleep(FLUSH_EVERY_S)
        try:
            write(lambda_documents())
        except Exception:  # the log store unreachable: these points are lost, as on a dropped put
            continue


def _start_flusher() -> None:
    global _flusher
    if _flusher is None and config.load().opensearch_url:
        with _lock:
            if _flusher is None:
                _flusher = threading.Thread(target=_flush_forever, name="lambda-metrics", daemon=True)
                _flusher.start()


def queue_documents(sqs: Any, queues: dict[str, str], at: float | None = None) -> list[dict[str, Any]]:
    """Each queue's ApproximateNumberOfMessagesVisible (and NotVisible) now: name -> URL."""
    docs = []
    for name, url in sorted(queues.items()):
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        visible = int(attrs.get("ApproximateNumberOfMessages", 0))
        in_flight = int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0))
        docs.append(document("AWS/SQS", {"QueueName": name}, {
            "ApproximateNumberOfMessagesVisible": visible,
            "ApproximateNumberOfMessagesNotVisible": in_flight}, at))
    return docs
