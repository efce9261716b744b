"""CloudWatch metrics as Embedded Metric Format lines on stdout: no API call, no IAM permission.

Lambda sends each stdout line to the function's log group, and CloudWatch Logs turns a JSON line
carrying `_aws.CloudWatchMetrics` into metric points (the format's specification; each metric's
value is a top-level member of the same name, and so is each dimension's). Namespace:
METRICS_NAMESPACE (`stockpred/<stack name>` on AWS, so two stacks in one account never mix);
locally the line is a log line like any other.

Two kinds of line:

- `emit(name, value)`: one point now, no dimension (a gauge such as TradesInDoubt); `document`
  and `write` for a point with dimensions (stockpred.observability.health's DependencyDown by Dependency).
- Per invocation: code anywhere counts what happened (`count("CacheHits")`), and the handler's
  wrapper writes one line at the end (`flush`) with the invocation's own figures, dimensioned by
  `Function` (the Lambda function) and, for an HTTP request, `Route` (the route's template, such as
  `/api/predict/{symbol}`, never the raw path, whose values would each make a new metric).
  stockpred.api.edge writes Requests, Errors4xx, Errors5xx, Duration and ColdStart for every
  request; stockpred.observability.logs.lambda_handler flushes the counts of the other functions.

The business counts (name: where it is counted):
    PredictionsServed, TrainingsStarted      functions/predict (TrainingsStarted also by the
                                              scheduled retrain, with ModelsTrained, UniversesRanked)
    TradesCommitted, TradesAborted, TradesFailed, TradesPending    stockpred.trading.saga.wait
    CacheHits, CacheMisses                    stockpred.stores.cache (a stale copy served is a miss)
    PushesDelivered, PushesGone, PushesFailed  functions/push (failed: to be tried again, or dropped)
    EtlRowsLoaded                             functions/etl
    LogLinesDeadLettered, LogLinesRejected    observability.logship (to S3: the store was down /
                                              refused them; the shipper's own lines reach CloudWatch only)
    DependencyDown (by Dependency), DependenciesDown    stockpred.observability.health, at each deep check
"""

from __future__ import annotations

import contextvars
import json
import os
import sys
import time
from typing import Any

from stockpred import config

# The units the format's specification allows (a metric without one is "None").
UNITS = frozenset({
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes",
    "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count",
    "Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second",
    "Bits/Second", "Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second",
    "Count/Second", "None"})

# The business counts above, which the operators' summary (GET /api/ops/metrics) sums per function.
COUNTS = ("PredictionsServed", "TrainingsStarted", "ModelsTrained", "UniversesRanked", "TradesCommitted",
          "TradesAborted", "TradesFailed", "TradesPending", "CacheHits", "CacheMisses", "PushesDelivered",
          "PushesGone", "PushesFailed", "EtlRowsLoaded", "ColdStart")

_counts: contextvars.ContextVar[dict[str, tuple[float, str]] | None] = contextvars.ContextVar(
    "metric_counts", default=None)
_cold = True


def namespace() -> str:
    return config.value("metrics_namespace")


def function_name() -> str:
    return os.environ.get("AWS_LAMBDA_FUNCTION_NAME") or "-"


def document(values: dict[str, tuple[float, str]], dimensions: dict[str, str] | None = None,
             timestamp_ms: int | None = None, high_resolution: bool = False,
             total: bool = False) -> dict[str, Any]:
    """An EMF document: `values` maps a metric's name to (value, unit); `dimensions` maps each
    dimension to its value, every leading subset being one dimension set (with Function and Route:
    by function and route, and by function); `total` adds the empty set, the whole stack's
    figure (what ApiErrorsAlarm watches). High resolution (StorageResolution 1) keeps points per
    second, which an alarm with a 10- or 30-second period needs."""
    for name, (_, unit) in values.items():
        if unit not in UNITS:
            raise ValueError(f"metric {name}: unit {unit!r} is not one CloudWatch accepts")
    dimensions = dimensions or {}
    keys = list(dimensions)
    sets = [keys[:n] for n in range(len(keys), -1 if total else 0, -1)] or [[]]
    definitions = [{"Name": name, "Unit": unit, **({"StorageResolution": 1} if high_resolution else {})}
                   for name, (_, unit) in values.items()]
    return {
        "_aws": {"Timestamp": int(time.time() * 1000) if timestamp_ms is None else timestamp_ms,
                 "CloudWatchMetrics": [{"Namespace": namespace(), "Dimensions": sets,
                                        "Metrics": definitions}]},
        **dimensions,
        **{name: value for name, (value, _) in values.items()},
    }


def write(doc: dict[str, Any]) -> str:
    line = json.dumps(doc, separators=(",", ":"))
    print(line, file=sys.stdout, flush=True)
    return line


def emit(name: str, value: float, unit: str = "Count") -> str:
    """Writes one metric point, without dimensions, and returns the line written."""
    return write(document({name: (value, unit)}))


def start() -> None:
    """Starts an invocation's counts (the handlers' wrappers call it)."""
    _counts.set({})


def count(name: str, value: float = 1, unit: str = "Count") -> None:
    """Adds to the invocation's `name`; outside an invocation (a CLI, a test) it does nothing."""
    counts = _counts.get()
    if counts is not None:
        previous = counts.get(name, (0, unit))[0]
        counts[name] = (previous + value, unit)


def cold_start() -> bool:
    """True for the first invocation this process serves, then False."""
    global _cold
    cold, _cold = _cold, False
    return cold


def flush(extra: dict[str, tuple[float, str]] | None = None, route: str | None = None) -> str | None:
    """Writes the invocation's counts (and `extra`) as one line, and ends them; None when there
    is nothing to write."""
    values = {**(_counts.get() or {}), **(extra or {})}
    _counts.set(None)
    if not values:
        return None
    dimensions = {"Function": function_name(), **({"Route": route} if route else {})}
    return write(document(values, dimensions, total=True))
