"""Glue shared by the Chalice apps: JSON errors, correlation ids, security headers, bodies.

The only module of the layer that knows Chalice; the domain modules never import it. Every
error leaves as `{"error": "..."}` with its status code, whether raised by a view (ApiError),
produced by Chalice itself (bad JSON, wrong method), a store or AWS service out of reach (503 with
Retry-After: `dependency_unavailable`) or unexpected (a 500 that says nothing more).

Every response also carries `X-Content-Type-Options: nosniff` and `Cache-Control: no-store`
(tokens, profiles, portfolios and ledgers must never sit in a browser or proxy cache; the market
data has its own server-side cache, so nothing is lost by saying it for every route), and, when
the request's Origin is exactly the configured dashboard origin (CORS_ORIGIN), the CORS headers
for that one origin: never `*`. Request bodies are read only through `json_body`, with a bounded
nesting depth (stockpred.api.safejson): Chalice's own `current_request.json_body` is never used.

One front door: on AWS the REST API is reached through CloudFront, which adds the header
`X-Origin-Verify` with a secret (secrets.origin_verify_secret, ORIGIN_VERIFY_SECRET_ARN). When
that secret is set, every request without it (compared in constant time) is a 403 before any
other work, except on routes API Gateway authorised with IAM (the request context then carries
the caller's verified `identity.userArn`; internal callers reach those directly). The caller's
address (`client_address`, what the login and registration throttles count) is CloudFront's
`CloudFront-Viewer-Address` only on a request that carried the secret, else API Gateway's
`identity.sourceIp`, never another header the caller chose. Unset (the default, and locally),
every request is served and the address is `sourceIp`, as before.

Every request also writes one metric line (stockpred.observability.metrics): Requests, Errors4xx, Errors5xx,
Duration and ColdStart by function and route, with the counts the request's code made.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hmac
import ipaddress
import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from chalice import Chalice, ChaliceUnhandledError, Response

from stockpred import config
from stockpred.api import safejson
from stockpred.cloud import secrets
from stockpred.market import symbols
from stockpred.market.prices import ProviderUnavailable, UnknownSymbol
from stockpred.observability import metrics
from stockpred.observability.logs import clean_correlation_id, correlation_id, get_logger, invocation


class ApiError(ChaliceUnhandledError):
    """Raised by a view to answer `{"error": message}` with `status`."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None,
                 details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})
        self.details = dict(details or {})


INVALID_TOKEN = "Invalid or missing token"


def invalid_token() -> ApiError:
    """401 for a token that is missing, forged, expired, revoked or names no user."""
    return ApiError(401, INVALID_TOKEN, {"WWW-Authenticate": "Bearer"})


def bearer_claims(request: Any) -> dict[str, Any]:
    """The claims of the request's bearer token when it is valid and not revoked: 401 (with
    WWW-Authenticate) otherwise, and 503 while the store of revoked tokens cannot say."""
    # Imported here: most functions never check a token, and PyJWT with pymongo would add about
    # 150 ms to each one's cold start.
    from pymongo.errors import PyMongoError

    from stockpred.identity import auth

    try:
        return auth.verify(auth.bearer(request.headers))
    except auth.InvalidToken:
        raise invalid_token() from None
    except PyMongoError as exc:
        raise user_store_down(exc) from None


def user_store_down(exc: Exception) -> ApiError:
    get_logger("handlers").error("user store unavailable", extra={"fields": {"error": str(exc)[:300]}})
    return ApiError(503, "The user store is unavailable: the caller's token cannot be checked",
                    {"Retry-After": "30"})


# A store or AWS service that could not be reached, or answered "not now" (a failover under way):
# by the qualified names of the drivers' classes, so that a function imports no driver it does
# not use. A view that meets one answers 503 with Retry-After, not 500.
UNAVAILABLE = frozenset({
    "psycopg2.OperationalError", "psycopg2.InterfaceError",
    "redis.exceptions.ConnectionError", "redis.exceptions.TimeoutError", "redis.exceptions.ReadOnlyError",
    "pymongo.errors.ConnectionFailure",
    "botocore.exceptions.ConnectionError", "botocore.exceptions.ReadTimeoutError",
})
UNAVAILABLE_MESSAGE = "A service this request needs is unavailable, try again shortly"


def dependency_unavailable(exc: BaseException) -> bool:
    """Whether `exc` is a driver's "cannot reach it now" (UNAVAILABLE), which a retry may cure."""
    return any(f"{k.__module__}.{k.__qualname__}" in UNAVAILABLE for k in type(exc).__mro__)


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    return Response(body=json.dumps(body), status_code=status,
                    headers={"Content-Type": "application/json", **(headers or {})})


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return json_response(status, {"error": message}, headers)


class _ViewError(logging.Filter):
    """Keeps the exception of the last record logged with one (one request at a time per app)."""

    error: BaseException | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            self.error = record.exc_info[1]
        return True


def _unexpected(exc: BaseException) -> Response:
    """A view's unexpected exception as its answer: 503 with Retry-After for a dependency out of
    reach, else a 500 that says nothing more."""
    if dependency_unavailable(exc):
        return error_response(503, UNAVAILABLE_MESSAGE, {"Retry-After": "5"})
    return error_response(500, "Internal Server Error")


def install(app: Chalice, service: str) -> logging.Logger:
    """Adds JSON errors and correlation ids to every route of `app`; returns its logger."""
    log = get_logger(service)
    # Chalice logs a view's unexpected exception (with its traceback) on app.log: keep it, as JSON.
    app.log.handlers = list(log.handlers)
    app.log.propagate = False
    # Chalice turns a view's unexpected exception into its own 500 before middleware sees it, and
    # reports the exception only there, on app.log: the filter keeps it for `json_errors`.
    view_error = _ViewError()
    app.log.filters = [view_error]

    @app.middleware("http")
    def json_errors(request: Any, get_response: Callable[[Any], Response]) -> Response:
        # The client's X-Correlation-Id when usable, else API Gateway's request id: it follows
        # the request into every function and saga task it reaches (see stockpred.observability.logs).
        invocation(app.lambda_context, clean_correlation_id(request.headers.get("x-correlation-id"))
                   or request.context.get("requestId"))
        metrics.start()
        view_error.error = None
        started = time.perf_counter()
        try:
            check_origin(request)
            response = get_response(request)
        except ApiError as exc:
            response = json_response(exc.status, {"error": exc.message, **exc.details}, exc.headers)
        except Exception as exc:
            log.exception("unhandled error", extra={"fields": {"path": request.path}})
            response = _unexpected(exc)
        body = response.body
        if isinstance(body, dict) and set(body) == {"Code", "Message"}:
            if body["Code"] == "InternalServerError" and view_error.error is not None:
                response = _unexpected(view_error.error)
            else:
                message = "Internal Server Error" if response.status_code >= 500 else body["Message"]
                response = error_response(response.status_code, message, {
                    k: v for k, v in response.headers.items() if k.lower() != "content-type"})
        response.headers["X-Correlation-Id"] = correlation_id.get()
        security_headers(request.headers, response.headers)
        # One access line per request, so every request's story starts in its HTTP function.
        duration_ms = round((time.perf_counter() - started) * 1000, 1)
        log.info("%s %s %s", request.method, request.path, response.status_code, extra={"fields": {
            "status": response.status_code, "duration_ms": duration_ms}})
        status = response.status_code
        metrics.flush({"Requests": (1, "Count"), "Errors4xx": (int(400 <= status < 500), "Count"),
                       "Errors5xx": (int(status >= 500), "Count"), "Duration": (duration_ms, "Milliseconds"),
                       "ColdStart": (int(metrics.cold_start()), "Count")},
                      route=f"{request.method} {request.context.get('resourcePath') or '-'}")
        return response

    return log


# Headers a browser script on the dashboard may read, and send, across origins.
CORS_EXPOSE_HEADERS = "X-Correlation-Id, X-Cache, Retry-After, WWW-Authenticate"
CORS_ALLOW_HEADERS = "Authorization, Content-Type, Idempotency-Key, X-Correlation-Id, X-Device-Token"
CORS_ALLOW_METHODS = "GET, POST, OPTIONS"
CORS_MAX_AGE = "600"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    getter = getattr(headers, "get", None)
    value = getter(name) if getter else None
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value


def cors_headers(origin: str | None, allowed: str | None, preflight: bool = False) -> dict[str, str]:
    """The CORS headers for a request from `origin` when `allowed` is the dashboard's origin:
    nothing unless they are exactly equal (no wildcard, no suffix match), `Vary: Origin` whenever
    CORS is configured, since the answer depends on the Origin header."""
    if not allowed:
        return {}
    out = {"Vary": "Origin"}
    if origin is None or origin != allowed:
        return out
    out["Access-Control-Allow-Origin"] = allowed
    out["Access-Control-Expose-Headers"] = CORS_EXPOSE_HEADERS
    if preflight:
        out["Access-Control-Allow-Methods"] = CORS_ALLOW_METHODS
        out["Access-Control-Allow-Headers"] = CORS_ALLOW_HEADERS
        out["Access-Control-Max-Age"] = CORS_MAX_AGE
    return out


def security_headers(request_headers: Mapping[str, str], response_headers: dict[str, str]) -> None:
    """Adds the headers every API response carries (see the module's docstring) in place."""
    response_headers["X-Content-Type-Options"] = "nosniff"
    response_headers["Cache-Control"] = "no-store"
    try:
        allowed = config.load().cors_origin
    except config.ConfigError:  # a bad CORS_ORIGIN must not turn every answer into a 500
        allowed = None
    extra = cors_headers(_header(request_headers, "origin"), allowed)
    vary = response_headers.get("Vary")
    if "Vary" in extra and vary:  # keep what the view said varies, and add Origin once
        extra["Vary"] = vary if "origin" in vary.lower() else f"{vary}, Origin"
    response_headers.update(extra)


# ---- the front door: CloudFront's origin header and the caller's address -----------------------
ORIGIN_HEADER = "x-origin-verify"
VIEWER_ADDRESS_HEADER = "cloudfront-viewer-address"
_PORT = re.compile(r"[0-9]{1,5}")


def _identity(request: Any) -> dict[str, Any]:
    context = getattr(request, "context", None)
    identity = context.get("identity") if isinstance(context, dict) else None
    return identity if isinstance(identity, dict) else {}


def iam_authorised(request: Any) -> bool:
    """Whether API Gateway authorised this request with IAM (an `AWS_IAM` route): only then does
    the request context carry the caller's ARN, which no caller can put there."""
    arn = _identity(request).get("userArn")
    return isinstance(arn, str) and bool(arn)


def _carries_origin_secret(request: Any, expected: str) -> bool:
    given = _header(request.headers, ORIGIN_HEADER)
    if not isinstance(given, str):
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode())


def through_front_door(request: Any) -> bool:
    """Whether CloudFront forwarded this request: the origin secret is set and the request
    carries it. False whenever no origin secret is set."""
    expected = secrets.origin_verify_secret()
    return expected is not None and _carries_origin_secret(request, expected)


def check_origin(request: Any) -> None:
    """403 unless the request came through CloudFront (or was IAM-authorised), when an origin
    secret is set; nothing when none is."""
    expected = secrets.origin_verify_secret()
    if expected is None or iam_authorised(request) or _carries_origin_secret(request, expected):
        return
    raise ApiError(403, "Forbidden")


def viewer_ip(value: str | None) -> str | None:
    """The address of `CloudFront-Viewer-Address` (`ip:port`; an IPv6 address is not bracketed,
    `2001:db8::1:443`, so the port is after the last colon), in canonical form; None if the
    value is anything else."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    host, colon, port = value.strip().rpartition(":")
    if not colon or not _PORT.fullmatch(port) or int(port) > 65535:
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if "%" in host:  # a zone index has no meaning beyond the viewer's own link
        return None
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


def client_address(request: Any) -> str:
    """The caller's address, for throttles: CloudFront's viewer address on a request that came
    through CloudFront (through_front_door), else the address API Gateway saw (`sourceIp`).
    Never a header a caller could set on its own."""
    if through_front_door(request):
        viewer = viewer_ip(_header(request.headers, VIEWER_ADDRESS_HEADER))
        if viewer is not None:
            return viewer
    source = _identity(request).get("sourceIp")
    return source if isinstance(source, str) and source else "unknown"


MAX_BODY_BYTES = 64 * 1024


def json_body(raw: bytes | None, max_bytes: int = MAX_BODY_BYTES) -> Any:
    """The request body parsed as JSON (None when empty); 413 over max_bytes, 400 if not JSON,
    not UTF-8, or nested deeper than safejson.MAX_DEPTH (a RecursionError would be a 500)."""
    raw = raw or b""
    if len(raw) > max_bytes:
        raise ApiError(413, f"Request body too large ({max_bytes // 1024} KiB at most)")
    if not raw:
        return None
    try:
        return safejson.loads(raw, max_depth=safejson.MAX_DEPTH)
    except safejson.InvalidJson:
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
