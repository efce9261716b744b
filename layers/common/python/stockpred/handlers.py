"""Glue shared by the Chalice apps: JSON errors, correlation ids, parameter parsing.

The only module of the layer that knows Chalice; the domain modules never import it. Every
error leaves as `{"error": "..."}` with its status code, whether raised by a view (ApiError),
produced by Chalice itself (bad JSON, wrong method) or unexpected (a 500 that says nothing more).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from chalice import Chalice, ChaliceUnhandledError, Response

from stockpred import symbols
from stockpred.logs import correlation_id, get_logger
from stockpred.prices import ProviderUnavailable, UnknownSymbol


class ApiError(ChaliceUnhandledError):
    """Raised by a view to answer `{"error": message}` with `status`."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None,
                 details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})
        self.details = dict(details or {})


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    return Response(body=json.dumps(body), status_code=status,
                    headers={"Content-Type": "application/json", **(headers or {})})


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return json_response(status, {"error": message}, headers)


def install(app: Chalice, service: str) -> logging.Logger:
    """Adds JSON errors and correlation ids to every route of `app`; returns its logger."""
    log = get_logger(service)
    # Chalice logs a view's unexpected exception (with its traceback) on app.log: keep it, as JSON.
    app.log.handlers = list(log.handlers)
    app.log.propagate = False

    @app.middleware("http")
    def json_errors(request: Any, get_response: Callable[[Any], Response]) -> Response:
        cid = request.headers.get("x-correlation-id") or request.context.get("requestId", "-")
        correlation_id.set(cid[:128])
        try:
            response = get_response(request)
        except ApiError as exc:
            response = json_response(exc.status, {"error": exc.message, **exc.details}, exc.headers)
        except Exception:
            log.exception("unhandled error", extra={"fields": {"path": request.path}})
            response = error_response(500, "Internal Server Error")
        body = response.body
        if isinstance(body, dict) and set(body) == {"Code", "Message"}:
            message = "Internal Server Error" if response.status_code >= 500 else body["Message"]
            response = error_response(response.status_code, message, {
                k: v for k, v in response.headers.items() if k.lower() != "content-type"})
        response.headers["X-Correlation-Id"] = correlation_id.get()
        return response

    return log


MAX_BODY_BYTES = 64 * 1024


def json_body(raw: bytes | None, max_bytes: int = MAX_BODY_BYTES) -> Any:
    """The request body parsed as JSON (None when empty); 413 over max_bytes, 400 if not JSON."""
    raw = raw or b""
    if len(raw) > max_bytes:
        raise ApiError(413, f"Request body too large ({max_bytes // 1024} KiB at most)")
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        raise ApiError(400, "Invalid input data") from None


@contextlib.contextmanager
def market_errors() -> Iterator[None]:
    """Market data lookups: an unknown symbol is the spec's 404, an unreachable provider a 503."""
    try:
        yield
    except UnknownSymbol:
        raise ApiError(404, "Stock data not available") from None
    except ProviderUnavailable:
        raise ApiError(503, "Market data provider unavailable", {"Retry-After": "60"}) from None


def symbol_param(raw: str) -> str:
    """The path's symbol, normalised; 400 if it cannot be a ticker."""
    try:
        return symbols.normalise(raw)
    except symbols.InvalidSymbol as exc:
        raise ApiError(400, f"Invalid symbol: {exc}") from None


def query_int(params: Mapping[str, str] | None, name: str, default: int, low: int, high: int) -> int:
    raw = (params or {}).get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"'{name}' must be a whole number from {low} to {high}") from None
    if not low <= value <= high:
        raise ApiError(400, f"'{name}' must be a whole number from {low} to {high}")
    return value


def query_date(params: Mapping[str, str] | None, name: str) -> dt.date | None:
    raw = (params or {}).get(name)
    if raw is None or raw == "":
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise ApiError(400, f"'{name}' must be a date as YYYY-MM-DD") from None
