"""stockpred.metrics writes what CloudWatch's Embedded Metric Format specification asks for: a
JSON line whose `_aws` names the namespace, the dimension sets and each metric, whose value is a
top-level member of the same name."""

from __future__ import annotations

import json
import time

from stockpred import metrics


def test_a_metric_line_is_embedded_metric_format(monkeypatch, capsys):
    monkeypatch.setenv("METRICS_NAMESPACE", "stockpred/prod")
    before = int(time.time() * 1000)
    line = metrics.emit("TradesInDoubt", 3)
    printed = capsys.readouterr().out
    assert printed == line + "\n" and "\n" not in line, "one log event, one line"
    doc = json.loads(line)
    (directive,) = doc["_aws"]["CloudWatchMetrics"]
    assert directive == {"Namespace": "stockpred/prod", "Dimensions": [[]],
                         "Metrics": [{"Name": "TradesInDoubt", "Unit": "Count"}]}
    assert before <= doc["_aws"]["Timestamp"] <= int(time.time() * 1000)
    assert doc["TradesInDoubt"] == 3


def test_the_namespace_defaults_to_stockpred_locally(monkeypatch):
    monkeypatch.delenv("METRICS_NAMESPACE", raising=False)
    assert json.loads(metrics.emit("X", 0))["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "stockpred"
