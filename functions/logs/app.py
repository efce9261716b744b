"""Logs service (Kibana's job, for operators): search every function's lines in OpenSearch.

`GET /api/logs` filters by correlation id, service, function, level, transaction id, text and
time; `GET /api/logs/errors` counts errors per minute; `GET /api/ops/metrics` summarises the metric
lines (rate, error ratio, duration percentiles per function and route). All answer only users
holding the `admin` role (granted with `stockpred users grant EMAIL admin`), checked on every
request.
"""

from __future__ import annotations

import datetime as dt
import functools

from chalice import Chalice, Response

from stockpred import auth, config, metrics, opensearch
from stockpred.handlers import ApiError, install, json_response, query_int
from stockpred.logs import clean_correlation_id
from stockpred.users import Users

app = Chalice(app_name="logs")
log = install(app, "logs")

DEFAULT_SINCE = dt.timedelta(hours=24)
NAME_PARAMS = ("service", "function", "transaction_id")


@functools.cache
def users() -> Users:
    return Users()


def _operator() -> str:
    try:
        claims = auth.verify(auth.bearer(app.current_request.headers))
    except auth.InvalidToken:
        raise ApiError(401, "Invalid or missing token", {"WWW-Authenticate": "Bearer"}) from None
    if not users().has_role(claims["sub"], "admin"):
        raise ApiError(403, "Operators only: this needs the admin role")
    return claims["sub"]


def _name(params: dict[str, str], name: str) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if not (0 < len(value) <= 128 and value.isprintable()):
        raise ApiError(400, f"{name} must be 1 to 128 printable characters")
    return value


def _time(name: str, value: str | None, now: dt.datetime) -> dt.datetime | None:
    try:
        return None if value is None else opensearch.parse_time(value, now)
    except ValueError as exc:
        raise ApiError(400, f"{name} {exc}") from None


def _window(params: dict[str, str]) -> tuple[dt.datetime | None, dt.datetime | None]:
    now = dt.datetime.now(dt.UTC)
    since, until = (_time(name, params.get(name), now) for name in ("since", "until"))
    if since is not None and until is not None and since >= until:
        raise ApiError(400, "since must be before until")
    return since, until


def _store_down(exc: Exception) -> ApiError:
    log.error("log store unavailable", extra={"fields": {"error": str(exc)[:300]}})
    return ApiError(503, "The log store is unavailable", {"Retry-After": "30"})


@app.route("/api/logs", methods=["GET"])
def search_logs() -> Response:
    _operator()
    params = app.current_request.query_params or {}
    cid = params.get("correlation_id")
    if cid is not None and clean_correlation_id(cid) is None:
        raise ApiError(400, "correlation_id must be 1 to 128 printable ASCII characters")
    level = params.get("level")
    if level is not None and level.upper() not in opensearch.LEVELS:
        raise ApiError(400, f"level must be one of {', '.join(opensearch.LEVELS)}")
    text = _name(params, "q")
    since, until = _window(params)
    if since is None and cid is None:
        since = dt.datetime.now(dt.UTC) - DEFAULT_SINCE
    limit = query_int(params, "limit", 200, 1, config.load().log_search_max)
    try:
        found = opensearch.search(correlation_id=cid, level=level, since=since, until=until, text=text,
                                  limit=limit, **{n: _name(params, n) for n in NAME_PARAMS})
    except opensearch.LogStoreUnavailable as exc:
        raise _store_down(exc) from None
    return json_response(200, {"logs": found["lines"], "count": len(found["lines"]),
                               "total": found["total"]})


@app.route("/api/logs/errors", methods=["GET"])
def errors_per_minute() -> Response:
    _operator()
    params = app.current_request.query_params or {}
    since, until = _window(params)
    since = since or dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    try:
        minutes = opensearch.errors_per_minute(since, until, _name(params, "service"))
    except opensearch.LogStoreUnavailable as exc:
        raise _store_down(exc) from None
    return json_response(200, {"since": since.isoformat(), "minutes": minutes})


@app.route("/api/ops/metrics", methods=["GET"])
def ops_metrics() -> Response:
    _operator()
    params = app.current_request.query_params or {}
    since, until = _window(params)
    until = until or dt.datetime.now(dt.UTC)
    since = since or until - dt.timedelta(hours=1)
    try:
        summary = opensearch.metric_summary(since, until, metrics.COUNTS)
    except opensearch.LogStoreUnavailable as exc:
        raise _store_down(exc) from None
    return json_response(200, {"since": since.isoformat(), "until": until.isoformat(), **summary})
