"""stockpred.observability.metrics writes what CloudWatch's Embedded Metric Format specification asks for: a
JSON line whose `_aws` names the namespace, the dimension sets and each metric, whose value is a
top-level member of the same name."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jsonschema
import pytest
from chalice import Chalice
from chalice.test import Client

from stockpred.api.edge import ApiError, install
from stockpred.observability import metrics
from stockpred.observability.logs import lambda_handler


def test_a_metric_line_is_embedded_metric_format(monkeypatch, capsys):
    monkeypatch.setenv("METRICS_NAMESPACE", "stockpred/prod")
    before = int(time.time() * 1000)
    line = metrics.emit("TradesInDoubt", 3)
    printed = capsys.readouterr().out
    assert printed == line + "\n" and "\n" not in line, "one log event, one line"
    doc = json.loads(line)
    assert_emf(doc)
    (directive,) = doc["_aws"]["CloudWatchMetrics"]
    assert directive == {"Namespace": "stockpred/prod", "Dimensions": [[]],
                         "Metrics": [{"Name": "TradesInDoubt", "Unit": "Count"}]}
    assert before <= doc["_aws"]["Timestamp"] <= int(time.time() * 1000)
    assert doc["TradesInDoubt"] == 3


def test_the_namespace_defaults_to_stockpred_locally(monkeypatch):
    monkeypatch.delenv("METRICS_NAMESPACE", raising=False)
    assert json.loads(metrics.emit("X", 0))["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "stockpred"


# ---- against the format's specification ---------------------------------------------------------
SCHEMA = json.loads((Path(__file__).parent / "schemas" / "emf.schema.json").read_text())


def assert_emf(doc: dict) -> None:
    """What CloudWatch Logs needs to extract the metrics: the schema, and every dimension and
    metric a directive names present on the root (a dimension a string, a metric a number)."""
    jsonschema.validate(doc, SCHEMA)
    for directive in doc["_aws"]["CloudWatchMetrics"]:
        for dimension in {d for dimension_set in directive["Dimensions"] for d in dimension_set}:
            assert isinstance(doc.get(dimension), str) and 0 < len(doc[dimension]) <= 1024, dimension
        for metric in directive["Metrics"]:
            value = doc.get(metric["Name"])
            assert isinstance(value, int | float) and not isinstance(value, bool), metric["Name"]


def metric_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]


def test_the_checks_can_fail() -> None:
    good = metrics.document({"Requests": (1, "Count")}, {"Function": "F"})
    assert_emf(good)
    for bad in ({**good, "_aws": {"CloudWatchMetrics": good["_aws"]["CloudWatchMetrics"]}},  # no Timestamp
                {k: v for k, v in good.items() if k != "Function"},                           # dimension
                {k: v for k, v in good.items() if k != "Requests"}):                          # value
        with pytest.raises((jsonschema.ValidationError, AssertionError)):
            assert_emf(bad)
    with pytest.raises(ValueError, match="unit"):
        metrics.document({"Requests": (1, "Requests")})


def app_with_routes() -> Chalice:
    app = Chalice(app_name="metered")
    install(app, "metered")

    @app.route("/api/things/{name}", methods=["GET"])
    def thing(name: str) -> dict:
        metrics.count("CacheHits")
        metrics.count("CacheHits")
        if name == "missing":
            raise ApiError(404, "no such thing")
        if name == "broken":
            raise RuntimeError("a bug")
        return {"name": name}

    return app


def test_every_request_writes_one_line_by_function_and_route(monkeypatch, capsys) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "ThingsFunction")
    monkeypatch.setattr(metrics, "_cold", True)
    with Client(app_with_routes()) as client:
        statuses = [client.http.get(f"/api/things/{name}").status_code for name in ("a", "missing", "broken")]
    assert statuses == [200, 404, 500]
    lines = metric_lines(capsys.readouterr().out)
    assert len(lines) == 3, "one metric line per request"
    for doc in lines:
        assert_emf(doc)
        assert doc["Function"] == "ThingsFunction"
        assert doc["Route"] == "GET /api/things/{name}", "the route's template, never the raw path"
        assert doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Function", "Route"], ["Function"], []]
        assert doc["Requests"] == 1 and doc["CacheHits"] == 2 and doc["Duration"] >= 0
    assert [(d["Errors4xx"], d["Errors5xx"]) for d in lines] == [(0, 0), (1, 0), (0, 1)]
    assert [d["ColdStart"] for d in lines] == [1, 0, 0]


def test_a_plain_handler_writes_its_counts_once_and_nothing_when_it_counted_nothing(capsys) -> None:
    @lambda_handler
    def pushes(event, context):
        metrics.count("PushesDelivered", 3)
        metrics.count("PushesGone")
        return "done"

    @lambda_handler
    def quiet(event, context):
        return "done"

    assert pushes({}, None) == "done" and quiet({}, None) == "done"
    (doc,) = metric_lines(capsys.readouterr().out)
    assert_emf(doc)
    assert (doc["PushesDelivered"], doc["PushesGone"]) == (3, 1)
    metrics.count("PushesGone")  # outside an invocation: nothing kept for the next one
    assert metrics.flush() is None
