"""Structured logs: one JSON object per line, the shape the log shipper indexes.

Every line carries `timestamp`, `service` (the module family that logged it), `function` (the
Lambda function), `level`, `message`, `correlation_id` and `request_id` (Lambda's request id);
lines logged inside a trade also `transaction_id` and `execution_arn`. The per-invocation fields
live in context variables: `invocation(context, correlation_id=...)` starts an invocation (Chalice
apps through stockpred.api.edge, the other handlers through the `lambda_handler` decorator), and
`bind(...)` adds fields for the rest of it. Lines go to stderr, which Lambda sends to CloudWatch
Logs and devstack to the same shipper (see functions/logs/shipper.py).
"""

from __future__ import annotations

import contextvars
import datetime as dt
import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from stockpred import config
from stockpred.observability import metrics

correlation_id: contextvars.ContextVar[str] = contextvars.ContextVar("correlation_id", default="-")
_bound: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("log_fields", default={})  # noqa: B039

# A correlation id is chosen by the client (X-Correlation-Id): printable ASCII only, bounded.
MAX_CORRELATION_ID = 128


def clean_correlation_id(value: Any) -> str | None:
    """The value if it is a usable correlation id (1-128 printable ASCII characters), else None."""
    if isinstance(value, str) and 0 < len(value) <= MAX_CORRELATION_ID and value.isprintable() \
            and value.isascii() and value.strip() == value:
        return value
    return None


def timestamp(created: float) -> str:
    """ISO 8601 in UTC with milliseconds: `2026-11-24T16:52:21.123Z`."""
    return dt.datetime.fromtimestamp(created, dt.UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": timestamp(record.created),
            "service": self.service,
            "function": os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "-"),
            "level": record.levelname,
            "message": record.getMessage(),
            "correlation_id": correlation_id.get(),
            **_bound.get(),
        }
        extra = getattr(record, "fields", None)
        if extra:
            entry.update(extra)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def get_logger(service: str) -> logging.Logger:
    logger = logging.getLogger(f"stockpred.{service}")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter(service))
        logger.addHandler(handler)
        logger.setLevel(config.log_level())
        logger.propagate = False
    return logger


def invocation(context: Any, cid: Any = None) -> None:
    """Starts an invocation's log fields: its request id, and the correlation id it was given
    (else the request id). A warm instance forgets the previous invocation's fields here."""
    request_id = getattr(context, "aws_request_id", None) or "-"
    correlation_id.set(clean_correlation_id(cid) or request_id)
    _bound.set({"request_id": request_id})


def bind(**fields: Any) -> None:
    """Adds fields to every line for the rest of this invocation (a trade's transaction id...)."""
    _bound.set({**_bound.get(), **{k: v for k, v in fields.items() if v is not None}})


def lambda_handler(handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """Decorates a plain Lambda handler: its lines carry the request id, and the correlation id
    when the event has one (`correlation_id`); what it counted (stockpred.observability.metrics) is written as
    one metric line when it returns."""

    @functools.wraps(handler)
    def wrapped(event: Any, context: Any) -> Any:
        cid = event.get("correlation_id") if isinstance(event, dict) else None
        invocation(context, cid)
        metrics.start()
        try:
            return handler(event, context)
        finally:
            metrics.flush()

    return wrapped
