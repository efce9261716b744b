"""The log shipper's decoding, parsing and redaction, on payloads shaped as CloudWatch Logs sends them."""

from __future__ import annotations

import base64
import gzip
import json
import logging

import pytest

from devstack.logfeed import payload
from stockpred.observability import logs, logship

JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwiaWF0IjoxNTE2MjM5MDIyfQ."
       "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")


def batch_of(*messages: str, group: str = "/aws/lambda/UsersFunction") -> logship.Batch:
    events = [{"id": f"{i:056d}", "timestamp": 1_764_000_000_000 + i, "message": m}
              for i, m in enumerate(messages)]
    batch = logship.decode(payload(group, "2026/11/24/[$LATEST]abc", events))
    assert batch is not None
    return batch


def json_line(**fields: object) -> str:
    return json.dumps({"timestamp": "2026-11-24T10:00:00.123Z", "service": "users",
                       "function": "UsersFunction", "level": "INFO", "message": "hello",
                       "correlation_id": "cid-1", "request_id": "req-1", **fields})


def test_a_subscription_payload_decodes_to_its_log_group_stream_and_events() -> None:
    batch = batch_of("one", "two")
    assert batch.log_group == "/aws/lambda/UsersFunction"
    assert [e["message"] for e in batch.events] == ["one", "two"]


@pytest.mark.parametrize("event", [
    None, [], "text", {"awslogs": {}}, {"awslogs": {"data": 5}},
    {"awslogs": {"data": "not base64 !!"}},
    {"awslogs": {"data": base64.b64encode(b"not gzip").decode()}},
    {"awslogs": {"data": base64.b64encode(gzip.compress(b"not json")).decode()}},
    {"awslogs": {"data": base64.b64encode(gzip.compress(b"[1, 2]")).decode()}},
    {"awslogs": {"data": base64.b64encode(gzip.compress(b'{"messageType": "DATA_MESSAGE"}')).decode()}},
])
def test_anything_else_is_a_bad_payload(event: object) -> None:
    with pytest.raises(logship.BadPayload):
        logship.decode(event)


def test_a_control_message_is_no_batch() -> None:
    data = base64.b64encode(gzip.compress(json.dumps(
        {"messageType": "CONTROL_MESSAGE", "logEvents": []}).encode())).decode()
    assert logship.decode({"awslogs": {"data": data}}) is None


def test_a_gzip_bomb_is_refused() -> None:
    data = base64.b64encode(gzip.compress(b" " * (logship.MAX_PAYLOAD_BYTES + 1))).decode()
    with pytest.raises(logship.BadPayload, match="larger"):
        logship.decode({"awslogs": {"data": data}})


def test_our_json_lines_keep_their_fields_and_unknown_ones_go_under_extra() -> None:
    batch = batch_of(json_line(transaction_id="tx-1", execution_arn="arn:x", quantity=3,
                               result={"ok": True}))
    [doc] = logship.documents(batch)
    line = doc["line"]
    assert doc["_id"] == "0" * 56
    assert doc["_index"] == "stockpred-logs-2026.11.24"
    assert line["timestamp"] == "2026-11-24T10:00:00.123Z"
    assert (line["service"], line["function"], line["level"]) == ("users", "UsersFunction", "INFO")
    assert (line["correlation_id"], line["request_id"], line["transaction_id"]) == ("cid-1", "req-1", "tx-1")
    assert line["extra"] == {"quantity": "3", "result": {"ok": True}}
    assert line["log_group"] == "/aws/lambda/UsersFunction"


def test_plain_text_lines_are_kept_with_a_level_and_lambda_start_end_lines_are_dropped() -> None:
    docs = logship.documents(batch_of(
        "START RequestId: 1f2e Version: $LATEST",
        "Traceback (most recent call last):\n  File \"app.py\", line 1",
        "REPORT RequestId: 1f2e3d4c-0000-0000-0000-000000000000\tDuration: 12.3 ms",
        "END RequestId: 1f2e"))
    lines = [d["line"] for d in docs]
    assert [line["level"] for line in lines] == ["ERROR", "INFO"]
    assert lines[0]["service"] == "stdout" and lines[0]["function"] == "UsersFunction"
    assert lines[1]["service"] == "lambda"
    assert lines[1]["request_id"] == "1f2e3d4c-0000-0000-0000-000000000000"


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999Z", "garbage", 12,
                                   "2026-11-24T10:00:00+05:00"])
def test_any_timestamp_gives_a_usable_date(stamp: object) -> None:
    [doc] = logship.documents(batch_of(json_line(timestamp=stamp)))
    assert doc["line"]["timestamp"][:4].isdigit()
    assert doc["_index"].startswith("stockpred-logs-")
    if stamp == "2026-11-24T10:00:00+05:00":
        assert doc["line"]["timestamp"] == "2026-11-24T05:00:00.000Z"


def test_secrets_a_careless_log_call_passes_are_redacted_everywhere() -> None:
    careless = json_line(
        message=f"login for alice@example.com with password=hunter2-very-secret and Bearer {JWT}",
        password="hunter2-very-secret", token=JWT, headers={"Authorization": f"Bearer {JWT}"},
        database="postgresql://admin:pg-pass-123@db.internal:5432/stockpred",
        body={"user": {"email": "bob@example.org", "new_password": "another-secret-1"}},
        key_id="AKIAABCDEFGHIJKLMNOP", exception=f"ValueError: token {JWT} rejected")
    [doc] = logship.documents(batch_of(careless))
    text = json.dumps(doc)
    for secret in ("hunter2-very-secret", JWT, "pg-pass-123", "alice@example.com", "bob@example.org",
                   "another-secret-1", "AKIAABCDEFGHIJKLMNOP", JWT.split(".")[1]):
        assert secret not in text
    assert "[email]" in doc["line"]["message"] and "password=[redacted]" in doc["line"]["message"]
    assert doc["line"]["extra"]["database"] == "postgresql://[redacted]@db.internal:5432/stockpred"


def test_a_text_line_is_redacted_too() -> None:
    [doc] = logship.documents(batch_of(f'Traceback: login("carol@example.com", token="{JWT}")'))
    assert "carol@example.com" not in json.dumps(doc) and JWT not in json.dumps(doc)


def test_the_formatter_writes_the_fields_the_shipper_indexes(capsys: pytest.CaptureFixture[str]) -> None:
    class Context:
        aws_request_id = "req-42"

    log = logs.get_logger("test-format")
    log.handlers[0].stream = __import__("sys").stderr
    logs.invocation(Context(), "my-correlation")
    logs.bind(transaction_id="tx-9", execution_arn="arn:aws:states:x")
    log.warning("careful", extra={"fields": {"n": 1}})
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["level"] == "WARNING" and line["service"] == "test-format"
    assert (line["correlation_id"], line["request_id"]) == ("my-correlation", "req-42")
    assert (line["transaction_id"], line["execution_arn"], line["n"]) == ("tx-9", "arn:aws:states:x", 1)
    assert line["timestamp"].endswith("Z") and len(line["timestamp"]) == 24
    logs.invocation(Context(), None)  # the next invocation forgets the trade and takes its request id
    log.info("next")
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["correlation_id"] == "req-42" and "transaction_id" not in line
    logging.getLogger("stockpred.test-format").handlers.clear()


@pytest.mark.parametrize("value", ["", " padded", "x" * 129, "tab\there", "zero\u200bwidth", "é", 5, None])
def test_unusable_correlation_ids_are_replaced(value: object) -> None:
    assert logs.clean_correlation_id(value) is None


def test_a_usable_correlation_id_is_kept() -> None:
    assert logs.clean_correlation_id("buy-2026-11-24/abc:1") == "buy-2026-11-24/abc:1"


def test_search_bounds_are_durations_back_from_now_or_iso_times() -> None:
    import datetime as dt

    from stockpred.observability.opensearch import parse_time

    now = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
    assert parse_time("15m", now) == now - dt.timedelta(minutes=15)
    assert parse_time("7d", now) == now - dt.timedelta(days=7)
    assert parse_time("2026-11-24T10:00:00", now) == dt.datetime(2026, 11, 24, 10, tzinfo=dt.UTC)
    assert parse_time("2026-11-24T10:00:00+02:00", now).utcoffset() == dt.timedelta(hours=2)
    for bad in ("yesterday", "", "5w", "99999999d", "0001-13-01"):
        with pytest.raises(ValueError):
            parse_time(bad, now)


def test_metric_lines_go_to_the_metric_indices_with_their_values_and_the_rest_to_the_logs() -> None:
    from stockpred.observability import metrics

    metric = json.dumps(metrics.document({"Requests": (1, "Count"), "Duration": (12.5, "Milliseconds")},
                                         {"Function": "UsersFunction", "Route": "POST /api/users/buy"},
                                         timestamp_ms=1_764_000_000_000))
    no_route = json.dumps(metrics.document({"PushesDelivered": (3, "Count")}, timestamp_ms=1_764_000_000_000))
    says_aws = json_line(message='the text "_aws" in a log line')
    docs = logship.documents(batch_of(metric, no_route, says_aws, group="/aws/lambda/FanoutFunction"))
    assert [d["_index"].rsplit("-", 1)[0] for d in docs] == ["stockpred-metrics", "stockpred-metrics",
                                                           "stockpred-logs"]
    assert docs[0]["line"] == {"timestamp": "2025-11-24T16:00:00.000Z", "function": "UsersFunction",
                               "route": "POST /api/users/buy", "namespace": "stockpred",
                               "event_id": f"{0:056d}", "values": {"Requests": 1.0, "Duration": 12.5},
                               "dimension_sets": ["Function", "Function,Route"],
                               "dimensions": {"Function": "UsersFunction", "Route": "POST /api/users/buy"}}
    assert docs[1]["line"]["dimension_sets"] == [""] and docs[1]["line"]["dimensions"] == {}
    assert docs[1]["line"]["function"] == "FanoutFunction" and docs[1]["line"]["route"] == "-"
    assert docs[1]["line"]["values"] == {"PushesDelivered": 3.0}
    assert docs[2]["line"]["message"] == 'the text "_aws" in a log line'
