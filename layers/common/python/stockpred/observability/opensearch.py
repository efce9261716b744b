"""OpenSearch, the log store: its client, the daily indices' template, bulk writes and searches.

On AWS the store is an Amazon OpenSearch Service domain reached over HTTPS with requests signed
by the function's role (SigV4, service `es`); locally it is the stack's own OpenSearch on plain
HTTP at 127.0.0.1. Lines go to one index per day (`stockpred-logs-2026.11.24`) shaped by one
index template: the fields every line has are keywords (exact match, aggregations), `timestamp`
is a date, `message` and `exception` are text, and whatever else a log call passed is kept under
`extra` as a flat object, so no careless field can make a mapping conflict that rejects lines.

Metric lines (stockpred.observability.metrics' Embedded Metric Format) go to indices of their own
(`stockpred-metrics-2026.11.24`): `timestamp`, `function`, `route`, and `values`, every metric of
the line as a double. `metric_summary` answers rate, error ratio and duration percentiles per
function and route over a window, and each function's business counts, from aggregations.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable
from typing import Any

from opensearchpy import AWSV4SignerAuth, OpenSearch, RequestsHttpConnection, helpers
from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError
from opensearchpy.exceptions import TransportError

from stockpred import config

KEYWORD_FIELDS = ("service", "function", "level", "correlation_id", "request_id", "transaction_id",
                  "execution_arn", "log_group", "log_stream", "event_id")
TEXT_FIELDS = ("message", "exception")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class LogStoreUnavailable(RuntimeError):
    """OpenSearch is not configured, not reachable, or failed the request."""


def _settings() -> config.Settings:
    return config.load()


@functools.cache
def client() -> OpenSearch:
    """This process's client; signed with the function's credentials when the store is https on AWS."""
    settings = _settings()
    url = settings.opensearch_url
    if not url:
        raise LogStoreUnavailable("no log store: OPENSEARCH_URL is not set")
    kwargs: dict[str, Any] = {"hosts": [url], "timeout": 5, "max_retries": 1, "retry_on_timeout": True,
                              "http_compress": True}
    if url.startswith("https://") and not settings.local:
        import boto3

        credentials = boto3.Session().get_credentials()
        kwargs.update(http_auth=AWSV4SignerAuth(credentials, settings.aws_region, "es"),
                      use_ssl=True, verify_certs=True, connection_class=RequestsHttpConnection)
    return OpenSearch(**kwargs)


def index_pattern() -> str:
    return f"{_settings().log_index_prefix}-*"


def index_for(timestamp: str) -> str:
    """The daily index of a line's ISO timestamp: `stockpred-logs-2026.11.24`."""
    return f"{_settings().log_index_prefix}-{timestamp[:10].replace('-', '.')}"


def index_template() -> dict[str, Any]:
    properties: dict[str, Any] = {name: {"type": "keyword", "ignore_above": 512} for name in KEYWORD_FIELDS}
    properties.update({name: {"type": "text"} for name in TEXT_FIELDS})
    properties["timestamp"] = {"type": "date"}
    properties["extra"] = {"type": "flat_object"}
    return {
        "index_patterns": [index_pattern()],
        "priority": 100,
        "template": {
            # One data node (template.yaml's LogDomain): a replica would have nowhere to go.
            "settings": {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "1s"},
            "mappings": {"dynamic": "strict", "properties": properties},
        },
    }


def metric_index_pattern() -> str:
    return f"{_settings().metric_index_prefix}-*"


def metric_index_for(timestamp: str) -> str:
    return f"{_settings().metric_index_prefix}-{timestamp[:10].replace('-', '.')}"


_KEYWORD = {"type": "keyword", "ignore_above": 512}
METRIC_PROPERTIES = {"timestamp": {"type": "date"}, "function": _KEYWORD, "route": _KEYWORD,
                     "namespace": _KEYWORD, "event_id": _KEYWORD, "dimension_sets": _KEYWORD,
                     "values": {"type": "object", "dynamic": True},
                     "dimensions": {"type": "object", "dynamic": True}}
# Every metric a line carries is a double under `values`, every dimension a keyword under
# `dimensions`, whatever its name.
METRIC_DYNAMIC_TEMPLATES = [
    {"metric_values": {"path_match": "values.*", "mapping": {"type": "double"}}},
    {"dimension_values": {"path_match": "dimensions.*", "mapping": _KEYWORD}}]


def metric_index_template() -> dict[str, Any]:
    return {
        "index_patterns": [metric_index_pattern()],
        "priority": 100,
        "template": {
            "settings": {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "1s"},
            "mappings": {
                "dynamic": "strict",
                "dynamic_templates": METRIC_DYNAMIC_TEMPLATES,
                "properties": METRIC_PROPERTIES,
            },
        },
    }


_template_ready = False


def ensure_index_template() -> None:
    """Puts the index templates once per process (idempotent: they are the same every time)."""
    global _template_ready
    if not _template_ready:
        _call(client().indices.put_index_template, name=_settings().log_index_prefix,
              body=index_template())
        _call(client().indices.put_index_template, name=_settings().metric_index_prefix,
              body=metric_index_template())
        # A day's index made before a field was added learns it too (adding fields is allowed).
        _call(client().indices.put_mapping, index=metric_index_pattern(),
              body={"dynamic_templates": METRIC_DYNAMIC_TEMPLATES, "properties": METRIC_PROPERTIES},
              params={"ignore_unavailable": "true", "allow_no_indices": "true"})
        _template_ready = True


def _call(method: Any, **kwargs: Any) -> Any:
    try:
        return method(**kwargs)
    except (OpenSearchConnectionError, TransportError) as exc:
        raise LogStoreUnavailable(f"OpenSearch: {exc}") from exc


def bulk_index(docs: list[dict[str, Any]]) -> tuple[int, list[dict[str, Any]], list[dict[str, Any]]]:
    """Indexes `docs` (each with `_index`, `_id` and the line) and returns (indexed, retryable,
    rejected): retryable ones failed for the store's sake (down, overloaded), rejected ones were
    refused as malformed and would be refused again. A line indexed twice under its id is one line."""
    if not docs:
        return 0, [], []
    try:
        ensure_index_template()
        actions = ({"_op_type": "index", "_index": d["_index"], "_id": d["_id"], "_source": d["line"]}
                   for d in docs)
        indexed, errors = helpers.bulk(client(), actions, raise_on_error=False, max_retries=2,
                                       initial_backoff=0.5, max_backoff=2, refresh=False)
    except (LogStoreUnavailable, OpenSearchConnectionError, TransportError, helpers.BulkIndexError):
        return 0, list(docs), []
    by_id = {d["_id"]: d for d in docs}
    retryable, rejected = [], []
    for error in errors:
        item = next(iter(error.values()))
        doc = by_id.get(item.get("_id"))
        if doc is None:
            continue
        status = int(item.get("status") or 500)
        (retryable if status == 429 or status >= 500 else rejected).append(
            {**doc, "error": str(item.get("error"))[:500]})
    return indexed, retryable, rejected


_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_time(value: str, now: dt.datetime) -> dt.datetime:
    """A search bound: an ISO 8601 time (UTC unless it says otherwise) or a duration back from
    `now` (15m, 2h, 7d). ValueError names what is accepted."""
    if len(value) <= 8 and value[:-1].isdigit() and value[-1:] in _UNITS:
        try:
            return now - dt.timedelta(**{_UNITS[value[-1]]: int(value[:-1])})
        except OverflowError:
            raise ValueError("is too far back") from None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("must be an ISO 8601 time or a duration like 15m, 2h, 7d") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _since_filter(since: dt.datetime | None, until: dt.datetime | None) -> list[dict[str, Any]]:
    if since is None and until is None:
        return []
    bounds: dict[str, str] = {}
    if since is not None:
        bounds["gte"] = since.astimezone(dt.UTC).isoformat()
    if until is not None:
        bounds["lt"] = until.astimezone(dt.UTC).isoformat()
    return [{"range": {"timestamp": bounds}}]


def search(*, correlation_id: str | None = None, service: str | None = None, level: str | None = None,
           function: str | None = None, transaction_id: str | None = None,
           since: dt.datetime | None = None, until: dt.datetime | None = None, text: str | None = None,
           limit: int = 200) -> dict[str, Any]:
    """The most recent `limit` lines matching every given filter, returned oldest first (one
    request's story reads top to bottom), with the total count of matches."""
    filters: list[dict[str, Any]] = []
    for name, value in (("correlation_id", correlation_id), ("service", service), ("function", function),
                        ("transaction_id", transaction_id)):
        if value:
            filters.append({"term": {name: value}})
    if level:
        filters.append({"term": {"level": level.upper()}})
    filters += _since_filter(since, until)
    must = [{"match": {"message": {"query": text, "operator": "and"}}}] if text else []
    body = {"query": {"bool": {"filter": filters, "must": must}},
            "sort": [{"timestamp": "desc"}, {"event_id": "desc"}],
            "size": min(limit, _settings().log_search_max), "track_total_hits": True}
    found = _call(client().search, index=index_pattern(), body=body,
                  params={"ignore_unavailable": "true", "allow_no_indices": "true"})
    hits = found["hits"]["hits"]
    return {"total": found["hits"]["total"]["value"], "lines": [h["_source"] for h in reversed(hits)]}


def errors_per_minute(since: dt.datetime, until: dt.datetime | None = None,
                      service: str | None = None) -> list[dict[str, Any]]:
    """ERROR and CRITICAL lines per minute: `[{"minute": iso, "errors": n}, ...]`."""
    filters: list[dict[str, Any]] = [{"terms": {"level": ["ERROR", "CRITICAL"]}},
                                     *_since_filter(since, until)]
    if service:
        filters.append({"term": {"service": service}})
    body = {"size": 0, "query": {"bool": {"filter": filters}},
            "aggs": {"per_minute": {"date_histogram": {"field": "timestamp", "fixed_interval": "1m",
                                                       "min_doc_count": 1}}}}
    found = _call(client().search, index=index_pattern(), body=body,
                  params={"ignore_unavailable": "true", "allow_no_indices": "true"})
    buckets = (found.get("aggregations") or {}).get("per_minute", {}).get("buckets", [])
    return [{"minute": b["key_as_string"], "errors": b["doc_count"]} for b in buckets]


def metric_summary(since: dt.datetime, until: dt.datetime, counts: Iterable[str]) -> dict[str, Any]:
    """Per function and route: requests, their rate a second over the window, 4xx and 5xx errors,
    the error ratio (5xx over requests) and p50/p95/p99 of Duration (ms); per function: the sum of
    each name in `counts` over the window."""
    seconds = max((until - since).total_seconds(), 1e-9)
    counts = tuple(counts)
    # The functions' own lines, not the metrics devstack makes as AWS's services (AWS/...).
    body = {"size": 0, "query": {"bool": {"filter": _since_filter(since, until),
                                          "must_not": [{"prefix": {"namespace": "AWS/"}}]}},
            "aggs": {"functions": {"terms": {"field": "function", "size": 100}, "aggs": {
                **{name: {"sum": {"field": f"values.{name}"}} for name in counts},
                "routes": {"terms": {"field": "route", "size": 500}, "aggs": {
                    "requests": {"sum": {"field": "values.Requests"}},
                    "errors_4xx": {"sum": {"field": "values.Errors4xx"}},
                    "errors_5xx": {"sum": {"field": "values.Errors5xx"}},
                    "duration": {"percentiles": {"field": "values.Duration", "percents": [50, 95, 99]}},
                }}}}}}
    found = _call(client().search, index=metric_index_pattern(), body=body,
                  params={"ignore_unavailable": "true", "allow_no_indices": "true"})
    routes, functions = [], {}
    for fn in (found.get("aggregations") or {}).get("functions", {}).get("buckets", []):
        functions[fn["key"]] = {name: fn[name]["value"] or 0 for name in counts}
        for route in fn["routes"]["buckets"]:
            requests = route["requests"]["value"] or 0
            if not requests:
                continue
            percentiles = {f"p{int(float(k))}": None if v is None else round(v, 1)
                           for k, v in route["duration"]["values"].items()}
            routes.append({
                "function": fn["key"], "route": route["key"], "requests": int(requests),
                "rate_per_s": round(requests / seconds, 4),
                "errors_4xx": int(route["errors_4xx"]["value"] or 0),
                "errors_5xx": int(route["errors_5xx"]["value"] or 0),
                "error_ratio": round((route["errors_5xx"]["value"] or 0) / requests, 4),
                "duration_ms": percentiles,
            })
    routes.sort(key=lambda r: (-r["requests"], r["function"], r["route"]))
    return {"routes": routes, "functions": functions}


_STATISTIC_OF = {"SampleCount": "count", "Average": "avg", "Sum": "sum", "Minimum": "min", "Maximum": "max"}


def metric_datapoints(namespace: str, metric: str, dimensions: Iterable[tuple[str, str]], statistic: str,
                      period_s: int, since: dt.datetime, until: dt.datetime) -> dict[int, float]:
    """A metric's datapoints as CloudWatch would have them: per period (its start in epoch
    seconds; the periods end at `until`, whole seconds) the statistic over the lines of
    `namespace` that carry `metric` with exactly these dimensions (a line publishes to each of its
    dimension sets)."""
    dimensions = tuple(dimensions)
    field = f"values.{metric}"
    filters = [*_since_filter(since, until), {"term": {"namespace": namespace}},
               {"exists": {"field": field}},
               {"term": {"dimension_sets": ",".join(sorted(n for n, _ in dimensions))}},
               *({"term": {f"dimensions.{n}": v}} for n, v in dimensions)]
    body = {"size": 0, "query": {"bool": {"filter": filters}},
            "aggs": {"periods": {"date_histogram": {"field": "timestamp", "fixed_interval": f"{period_s}s",
                                                    "offset": f"{int(until.timestamp()) % period_s}s",
                                                    "min_doc_count": 1},
                                 "aggs": {"stats": {"stats": {"field": field}}}}}}
    found = _call(client().search, index=metric_index_pattern(), body=body,
                  params={"ignore_unavailable": "true", "allow_no_indices": "true"})
    out = {}
    for bucket in (found.get("aggregations") or {}).get("periods", {}).get("buckets", []):
        value = bucket["stats"][_STATISTIC_OF[statistic]]
        if value is not None and bucket["stats"]["count"]:
            out[int(bucket["key"]) // 1000] = float(value)
    return out


def daily_indices() -> dict[str, dt.date]:
    """The log and metric indices there are, with the day each holds."""
    out = {}
    for prefix in (_settings().log_index_prefix, _settings().metric_index_prefix):
        found = _call(client().indices.get, index=f"{prefix}-*",
                      params={"ignore_unavailable": "true", "allow_no_indices": "true"})
        for name in found:
            try:
                out[name] = dt.datetime.strptime(name.removeprefix(prefix + "-"), "%Y.%m.%d").date()
            except ValueError:
                continue
    return out


def delete_indices(names: Iterable[str]) -> list[str]:
    names = sorted(names)
    for name in names:
        _call(client().indices.delete, index=name, params={"ignore_unavailable": "true"})
    return names


def ensure_retention_policy(days: int) -> bool:
    """An ISM policy deleting log indices after `days` (Amazon OpenSearch Service has the ISM
    plugin; the local distribution does not: then False, and the shipper's clean-up deletes)."""
    policy = {"policy": {
        "description": f"stockpred logs: delete after {days} days",
        "default_state": "hot",
        "states": [
            {"name": "hot", "actions": [],
             "transitions": [{"state_name": "delete", "conditions": {"min_index_age": f"{days}d"}}]},
            {"name": "delete", "actions": [{"delete": {}}], "transitions": []},
        ],
        "ism_template": [{"index_patterns": [index_pattern(), metric_index_pattern()], "priority": 100}],
    }}
    try:
        client().transport.perform_request(
            "PUT", f"/_plugins/_ism/policies/{_settings().log_index_prefix}-retention", body=policy)
    except TransportError as exc:
        # 409: it exists already (made from the same settings); anything else: no ISM here.
        return exc.status_code == 409
    return True
