"""The log shipper (Logstash's job): CloudWatch Logs batches in, redacted lines in OpenSearch out.

A subscription filter hands the shipper `{"awslogs": {"data": base64(gzip(json))}}` with a
`DATA_MESSAGE` whose `logEvents` are one function's lines; devstack builds the same payload from
its workers' output. Each line is parsed (our JSON lines; anything else, such as a traceback the
runtime printed, is kept as text), stripped of secrets (`redact`), and indexed under the
CloudWatch event id, so a batch delivered twice is indexed once. A metric line (CloudWatch's
Embedded Metric Format, stockpred.observability.metrics) goes to the metric indices instead (`metric_of`).

Nothing is lost silently: what OpenSearch cannot take (down, overloaded) is written, already
redacted, to the dead-letter bucket under `dead-letter/`, and re-driven when the store answers
again (after the next batch that indexes, at most every REDRIVE_EVERY_S, and by the scheduled
maintenance run). Lines OpenSearch refuses as malformed go under `rejected/`, counted, kept for a
person to read. Maintenance also deletes daily indices past retention where ISM is missing.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import gzip
import json
import re
import time
import uuid
import zlib
from dataclasses import dataclass
from typing import Any

from stockpred import config
from stockpred.cloud import aws
from stockpred.observability import metrics, opensearch
from stockpred.observability.logs import get_logger, timestamp

log = get_logger("logship")

DEAD_LETTER_PREFIX = "dead-letter/"
REJECTED_PREFIX = "rejected/"
REDRIVE_EVERY_S = 30.0
REDRIVE_MAX_OBJECTS = 100
MAX_PAYLOAD_BYTES = 8 * 1024 * 1024  # CloudWatch Logs sends at most ~1 MB compressed
MAX_LINE_CHARS = 32_768
PLATFORM_LINE = re.compile(r"^(START|END|INIT_START|EXTENSION|TELEMETRY|INIT_REPORT) ")
REPORT_LINE = re.compile(r"^REPORT RequestId: ([0-9a-fA-F-]+)")

# ---- redaction ---------------------------------------------------------------------------------
REDACTED = "[redacted]"
SECRET_KEY = re.compile(
    r"pass(word|wd|phrase)?|pwd|secret|token|authori[sz]ation|api[-_]?key|cookie|credential|"
    r"private[-_]?key|signature", re.IGNORECASE)
_TEXT_RULES: list[tuple[re.Pattern[str], str]] = [
    # user:password@ in a URL (database and broker URLs)
    (re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@"), r"\1[redacted]@"),
    # JSON Web Tokens, wherever they appear
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), "[token]"),
    (re.compile(r"\b((?i:bearer|basic))\s+[A-Za-z0-9._~+/=-]+"), r"\1 [redacted]"),
    # key=value, key: value, "key": "value" for secret-looking keys
    (re.compile(r"""\b((?i:[a-z_-]*(?:password|passwd|pwd|passphrase|secret|token|api[_-]?key|"""
                r"""apikey|authorization|credential)s?))(["']?\s*[:=]\s*["']?)([^\s"',;&}\]]+)"""),
     r"\1\2[redacted]"),
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), "[aws-access-key]"),
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"), "[email]"),
]
# One pass to tell whether any rule applies: most values (ids, symbols, numbers) hold nothing.
_ANY_SECRET = re.compile("|".join(f"(?:{pattern.pattern})" for pattern, _ in _TEXT_RULES))


def redact_text(text: str) -> str:
    if not _ANY_SECRET.search(text):
        return text
    for pattern, replacement in _TEXT_RULES:
        text = pattern.sub(replacement, text)
    return text


def redact(value: Any, key: str | None = None) -> Any:
    """`value` with every secret gone: values under secret-looking keys replaced whole, and
    passwords, tokens, keys, credentials in URLs and email addresses cut out of any text."""
    if key is not None and SECRET_KEY.search(key):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {redact_text(str(k)): redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


# ---- decoding ----------------------------------------------------------------------------------
class BadPayload(ValueError):
    """The event is not a CloudWatch Logs subscription payload."""


@dataclass
class Batch:
    log_group: str
    log_stream: str
    events: list[dict[str, Any]]


def decode(event: Any) -> Batch | None:
    """The batch in a subscription event; None for CloudWatch's CONTROL_MESSAGE (a test ping)."""
    data = event.get("awslogs", {}).get("data") if isinstance(event, dict) else None
    if not isinstance(data, str):
        raise BadPayload("expected {\"awslogs\": {\"data\": ...}}")
    try:
        raw = gzip.decompress(base64.b64decode(data, validate=True))
    except (binascii.Error, OSError, EOFError, zlib.error) as exc:
        raise BadPayload(f"awslogs.data is not base64 gzip: {exc}") from None
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise BadPayload("awslogs.data is larger than CloudWatch Logs ever sends")
    try:
        message = json.loads(raw)
    except ValueError as exc:
        raise BadPayload(f"awslogs.data is not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise BadPayload("awslogs.data is not a JSON object")
    if message.get("messageType") == "CONTROL_MESSAGE":
        return None
    if message.get("messageType") != "DATA_MESSAGE" or not isinstance(message.get("logEvents"), list):
        raise BadPayload("expected a DATA_MESSAGE with logEvents")
    return Batch(str(message.get("logGroup", "")), str(message.get("logStream", "")),
                 [e for e in message["logEvents"] if isinstance(e, dict)])


def _function_of(log_group: str) -> str:
    """The function a group's lines come from: the group name's last segment, as well in
    Lambda's default `/aws/lambda/<function>` (devstack) as in the stack's own
    `/aws/lambda/<stack name>/<logical id>` (template.yaml's LoggingConfig); "-" for others."""
    prefix = "/aws/lambda/"
    if not log_group.startswith(prefix):
        return "-"
    return log_group[len(prefix):].strip("/").rsplit("/", 1)[-1] or "-"


def _text_level(text: str) -> str:
    head = text.lstrip()[:40]
    if head.startswith(("[ERROR]", "Traceback", "ERROR")):
        return "ERROR"
    if head.startswith(("[WARNING]", "WARNING")):
        return "WARNING"
    return "INFO"


def line_of(batch: Batch, event: dict[str, Any]) -> dict[str, Any] | None:
    """One indexed line from one log event, redacted; None for Lambda's START/END lines."""
    message = str(event.get("message", ""))[:MAX_LINE_CHARS].rstrip("\n")
    try:
        received = dt.datetime.fromtimestamp(int(event.get("timestamp")) / 1000, dt.UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        received = dt.datetime.now(dt.UTC)
    parsed: Any = None
    if message.startswith("{"):
        try:
            parsed = json.loads(message)
        except ValueError:
            parsed = None
    line: dict[str, Any] = {"function": _function_of(batch.log_group), "log_group": batch.log_group,
                            "log_stream": batch.log_stream, "event_id": str(event.get("id", ""))}
    if isinstance(parsed, dict):
        parsed = redact(parsed)
        extra = {k: v for k, v in parsed.items() if k not in opensearch.KEYWORD_FIELDS
                 and k not in opensearch.TEXT_FIELDS and k not in ("timestamp", "time")}
        for name in (*opensearch.KEYWORD_FIELDS, *opensearch.TEXT_FIELDS):
            if name in parsed and name not in ("log_group", "log_stream", "event_id"):
                value = parsed[name]
                line[name] = value if isinstance(value, str) else json.dumps(value, default=str)
        line["timestamp"] = _timestamp(parsed.get("timestamp") or parsed.get("time"), received)
        if extra:
            line["extra"] = {k: v if isinstance(v, dict | str) else json.dumps(v, default=str)
                             for k, v in extra.items()}
        line.setdefault("level", "INFO")
        line["level"] = str(line["level"]).upper()
        line.setdefault("message", "")
        line.setdefault("service", "-")
        return line
    if PLATFORM_LINE.match(message):
        return None
    report = REPORT_LINE.match(message)
    line.update(timestamp=timestamp(received.timestamp()), service="lambda" if report else "stdout",
                level="INFO" if report else _text_level(message), message=redact_text(message))
    if report:
        line["request_id"] = report.group(1)
    return line


def _timestamp(value: Any, fallback: dt.datetime) -> str:
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=dt.UTC)
            return timestamp(parsed.timestamp())
        except (ValueError, OverflowError, OSError):
            pass
    return timestamp(fallback.timestamp())


def metric_of(batch: Batch, event: dict[str, Any]) -> dict[str, Any] | None:
    """The metric document of an Embedded Metric Format line: `timestamp` (the line's own),
    `function` and `route` (its dimensions; the log group's function when it has none),
    `values`, every numeric metric its directives name, and what an alarm matches on:
    `dimension_sets` (each set's names sorted and joined by commas, "" for none) and
    `dimensions` (each named dimension's value); None for any other line."""
    message = str(event.get("message", ""))
    if not message.startswith("{") or '"_aws"' not in message:
        return None
    try:
        doc = json.loads(message)
        directives = doc["_aws"]["CloudWatchMetrics"]
        names = {m["Name"] for d in directives for m in d["Metrics"]}
        at = int(doc["_aws"]["Timestamp"]) / 1000
    except (ValueError, KeyError, TypeError):
        return None
    values = {n: float(doc[n]) for n in names if isinstance(doc.get(n), int | float)
              and not isinstance(doc.get(n), bool)}
    if not values:
        return None
    try:
        sets = sorted({",".join(sorted(map(str, names))) for d in directives
                       for names in d.get("Dimensions") or [[]]})
        dimensions = {str(n): str(doc[n]) for s in sets for n in s.split(",") if n and n in doc}
    except TypeError:
        return None
    return metric_document(at=at, namespace=str(directives[0].get("Namespace", "")), values=values,
                           dimensions=dimensions, dimension_sets=sets,
                           function=str(doc.get("Function") or _function_of(batch.log_group)),
                           route=str(doc.get("Route") or "-"), event_id=str(event.get("id", "")))


def metric_document(*, at: float, namespace: str, values: dict[str, float], dimensions: dict[str, str],
                    dimension_sets: list[str], function: str, route: str = "-",
                    event_id: str = "") -> dict[str, Any]:
    """One document of the metric indices (their mapping: opensearch.METRIC_PROPERTIES), whoever
    made the point: a function's metric line, or devstack playing an AWS service."""
    return {"timestamp": timestamp(at), "function": function, "route": route, "namespace": namespace,
            "event_id": event_id, "values": values, "dimension_sets": dimension_sets,
            "dimensions": dimensions}


def documents(batch: Batch) -> list[dict[str, Any]]:
    docs = []
    for n, event in enumerate(batch.events):
        metric = metric_of(batch, event)
        if metric is not None:
            doc_id = metric["event_id"] or f"{batch.log_group}/{batch.log_stream}/{metric['timestamp']}/{n}"
            docs.append({"_index": opensearch.metric_index_for(metric["timestamp"]), "_id": doc_id,
                         "line": metric})
            continue
        line = line_of(batch, event)
        if line is None:
            continue
        doc_id = line["event_id"] or f"{batch.log_group}/{batch.log_stream}/{line['timestamp']}/{n}"
        docs.append({"_index": opensearch.index_for(line["timestamp"]), "_id": doc_id, "line": line})
    return docs


# ---- dead letters ------------------------------------------------------------------------------
def _bucket() -> str:
    return config.load().log_dead_letter_bucket


def dead_letter(docs: list[dict[str, Any]], prefix: str = DEAD_LETTER_PREFIX) -> str | None:
    """Writes docs (already redacted) as one gzip JSON-lines object; returns its key."""
    if not docs:
        return None
    now = dt.datetime.now(dt.UTC)
    key = f"{prefix}{now:%Y/%m/%d/%H%M%S}-{uuid.uuid4().hex}.jsonl.gz"
    body = gzip.compress("\n".join(json.dumps(d, default=str) for d in docs).encode())
    aws.client("s3").put_object(Bucket=_bucket(), Key=key, Body=body)
    metrics.count("LogLinesRejected" if prefix == REJECTED_PREFIX else "LogLinesDeadLettered", len(docs))
    return key


def _dead_letter_keys(prefix: str, limit: int) -> list[str]:
    s3 = aws.client("s3")
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=_bucket(), Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
        if len(keys) >= limit:
            break
    return sorted(keys)[:limit]


def dead_letter_counts() -> dict[str, int]:
    """Objects waiting to be re-driven and objects of refused lines."""
    return {"waiting": len(_dead_letter_keys(DEAD_LETTER_PREFIX, 100_000)),
            "rejected": len(_dead_letter_keys(REJECTED_PREFIX, 100_000))}


def redrive(max_objects: int = REDRIVE_MAX_OBJECTS) -> dict[str, int]:
    """Indexes dead-lettered batches, oldest first; stops at the first the store cannot take."""
    s3 = aws.client("s3")
    counts = {"objects": 0, "indexed": 0, "rejected": 0}
    for key in _dead_letter_keys(DEAD_LETTER_PREFIX, max_objects):
        raw = gzip.decompress(s3.get_object(Bucket=_bucket(), Key=key)["Body"].read())
        docs = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
        indexed, retryable, rejected = opensearch.bulk_index(
            [{k: d[k] for k in ("_index", "_id", "line")} for d in docs])
        if retryable:
            break
        dead_letter(rejected, REJECTED_PREFIX)
        s3.delete_object(Bucket=_bucket(), Key=key)
        counts["objects"] += 1
        counts["indexed"] += indexed
        counts["rejected"] += len(rejected)
    if counts["objects"]:
        log.info("dead letters re-driven", extra={"fields": counts})
    return counts


# ---- the shipper -------------------------------------------------------------------------------
_last_redrive = 0.0
_backlog_suspected = True  # a new instance does not know: look once


def ship(event: Any) -> dict[str, Any]:
    """Indexes one subscription batch; dead-letters what the store cannot take now."""
    global _last_redrive, _backlog_suspected
    batch = decode(event)
    if batch is None:
        return {"indexed": 0, "dead_lettered": 0, "rejected": 0, "control": True}
    docs = documents(batch)
    indexed, retryable, rejected = opensearch.bulk_index(docs)
    result: dict[str, Any] = {"indexed": indexed, "dead_lettered": len(retryable),
                              "rejected": len(rejected)}
    if retryable:
        key = dead_letter(retryable)
        _backlog_suspected = True
        log.error("log store unavailable: lines dead-lettered", extra={"fields": {
            "lines": len(retryable), "key": key, "log_group": batch.log_group}})
    if rejected:
        dead_letter(rejected, REJECTED_PREFIX)
        log.error("lines refused by the log store", extra={"fields": {
            "lines": len(rejected), "first_error": rejected[0].get("error")}})
    now = time.monotonic()
    if not retryable and (_backlog_suspected or now - _last_redrive > REDRIVE_EVERY_S):
        _last_redrive = now
        result["redriven"] = redrive()
        _backlog_suspected = False
    return result


def maintenance() -> dict[str, Any]:
    """The scheduled run: re-drive dead letters, keep retention (ISM where the store has it,
    else delete daily indices older than LOG_RETENTION_DAYS)."""
    days = config.load().log_retention_days
    redriven = redrive()
    ism = opensearch.ensure_retention_policy(days)
    cutoff = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=days)
    expired = [name for name, day in opensearch.daily_indices().items() if day < cutoff]
    deleted = opensearch.delete_indices(expired)
    if deleted:
        log.info("expired log indices deleted", extra={"fields": {"indices": deleted}})
    return {"redriven": redriven, "ism": ism, "deleted": deleted, **dead_letter_counts()}
