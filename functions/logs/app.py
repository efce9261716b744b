"""Operators' service: the logs, the metrics, the health of each dependency and the alarms.

`GET /api/logs` filters every function's lines in OpenSearch by correlation id, service, function,
level, transaction id, text and time; `GET /api/logs/errors` counts errors per minute;
`GET /api/ops/metrics` summarises the metric lines (rate, error ratio, duration percentiles per
function and route); `GET /api/ops/alarms` lists the stack's CloudWatch alarms and their states.
These answer only users holding the `admin` role (granted with `stockpred users grant EMAIL
admin`), checked on every request.

`GET /api/health` is public and shallow (this function answers: what a load balancer calls);
`GET /api/health?deep=true` probes every dependency (stockpred.observability.health), for operators only. A
scheduled `{"action": "probe"}` runs the deep check every minute, whose metric lines the
DependencyDown alarm watches: `handler` is the function's entry point for both kinds of event.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from chalice import Chalice, Response
from pymongo.errors import PyMongoError

from stockpred import config
from stockpred.api.edge import ApiError, bearer_claims, install, json_response, query_int, user_store_down
from stockpred.identity.users import default as users
from stockpred.observability import alarms, health, logs, metrics, opensearch
from stockpred.observability.logs import clean_correlation_id

app = Chalice(app_name="logs")
log = install(app, "logs")

DEFAULT_SINCE = dt.timedelta(hours=24)
NAME_PARAMS = ("service", "function", "transaction_id")


def _operator() -> str:
    """The caller's user id when it holds the admin role: its token is checked (and whether it was
    revoked) and its role read from the user store."""
    claims = bearer_claims(app.current_request)
    try:
        admin = users().has_role(claims["sub"], "admin")
    except PyMongoError as exc:
        raise user_store_down(exc) from None
    if not admin:
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


@app.route("/api/ops/alarms", methods=["GET"])
def ops_alarms() -> Response:
    _operator()
    try:
        found = alarms.describe()
    except (BotoCoreError, ClientError) as exc:
        log.error("CloudWatch unavailable", extra={"fields": {"error": str(exc)[:300]}})
        raise ApiError(503, "The alarms are unavailable", {"Retry-After": "30"}) from None
    return json_response(200, {"alarms": found, "counts": alarms.counts(found)})


@app.route("/api/health", methods=["GET"])
def service_health() -> Response:
    params = app.current_request.query_params or {}
    deep = params.get("deep", "false").lower()
    if deep not in ("true", "false", "1", "0"):
        raise ApiError(400, "deep must be true or false")
    if deep in ("false", "0"):
        return json_response(200, {"status": "ok", "mode": "shallow"})
    _operator()
    report = health.check()
    return json_response(503 if report["status"] == "down" else 200, {**report, "mode": "deep"})


@logs.lambda_handler
def _probe(event: Any, context: Any) -> dict[str, Any]:
    report = health.check()
    down = sorted(name for name, dep in report["dependencies"].items() if dep["status"] == "down")
    (log.warning if down else log.info)("health %s", report["status"], extra={"fields": {"down": down}})
    return {"status": report["status"], "down": down}


def handler(event: Any, context: Any) -> Any:
    """The function's entry point: the scheduled probe, or an API Gateway request for the app."""
    if isinstance(event, dict) and event.get("action") == "probe":
        return _probe(event, context)
    return app(event, context)
