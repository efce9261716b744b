"""CloudWatch's alarm rule (stockpred.observability.alarms), the template's alarms as devstack reads them, and
the health check's statuses and metric lines (stockpred.observability.health)."""

from __future__ import annotations

import io
import json
import time
from contextlib import redirect_stdout

import pytest

from devstack import alarms as local_alarms
from devstack.services import REPO_ROOT
from devstack.template import Template
from stockpred.observability import alarms, health
from stockpred.observability.alarms import ALARM, INSUFFICIENT, OK

NOW = 1_800_000_005.0


def alarm(n: int = 3, m: int | None = None, treat: str = "missing", period: int = 60,
          comparison: str = "GreaterThanOrEqualToThreshold") -> alarms.Alarm:
    return alarms.Alarm(name="a", namespace="stockpred", metric="Errors", statistic="Sum", period_s=period,
                        evaluation_periods=n, threshold=1, comparison=comparison, datapoints_to_alarm=m,
                        treat_missing=treat)


def points(a: alarms.Alarm, pattern: str) -> dict[int, float]:
    """`pattern` over the evaluated periods, oldest first: X breaches, 0 does not, - is missing."""
    values = {"X": 5.0, "0": 0.0}
    return {start: values[c] for start, c in zip(a.window(NOW), pattern, strict=True) if c != "-"}


# Rows in the spirit of CloudWatch's own table (3 of 3 here): pattern, then the state for
# missing, ignore, breaching and notBreaching (None: the current state is kept).
TABLE = [
    ("XXX", ALARM, ALARM, ALARM, ALARM),
    ("0XX", OK, OK, OK, OK),
    ("---", INSUFFICIENT, None, ALARM, OK),
    ("-X-", ALARM, ALARM, ALARM, OK),
    ("-0-", OK, OK, OK, OK),
    ("X-X", ALARM, ALARM, ALARM, OK),
]


@pytest.mark.parametrize(("pattern", "missing", "ignore", "breaching", "not_breaching"), TABLE)
def test_the_state_follows_cloudwatchs_rule_for_each_treatment_of_missing_data(
        pattern: str, missing: str, ignore: str | None, breaching: str, not_breaching: str) -> None:
    for treat, expected in (("missing", missing), ("ignore", ignore), ("breaching", breaching),
                            ("notBreaching", not_breaching)):
        a = alarm(treat=treat)
        for current in (OK, ALARM):
            state, reason = alarms.evaluate(a, points(a, pattern), NOW, current)
            assert state == (current if expected is None else expected), (pattern, treat, current, reason)


def test_m_of_n_needs_m_breaching_datapoints() -> None:
    a = alarm(n=5, m=3)
    assert alarms.evaluate(a, points(a, "X0X0X"), NOW)[0] == ALARM
    assert alarms.evaluate(a, points(a, "X00X0"), NOW)[0] == OK
    assert alarms.evaluate(a, points(a, "X-X--"), NOW)[0] == ALARM  # fewer than M, all breaching
    assert alarms.evaluate(alarm(n=5, m=3, treat="notBreaching"), points(a, "X-X--"), NOW)[0] == OK


def test_the_window_slides_it_ends_at_the_second_of_evaluation() -> None:
    a = alarm(n=2, period=10)
    assert a.window(NOW + 0.7) == [int(NOW) - 20, int(NOW) - 10]
    assert alarms.evaluate(a, {int(NOW) - 10: 9.0}, NOW)[0] == ALARM  # the newest 10 s, at once
    assert alarms.evaluate(a, {int(NOW) - 30: 9.0}, NOW)[0] == INSUFFICIENT  # slid out
    assert alarm(period=10).every_s == 10 and alarm(period=300).every_s == 60


@pytest.mark.parametrize(("comparison", "value", "breaches"), [
    ("GreaterThanOrEqualToThreshold", 1, True), ("GreaterThanThreshold", 1, False),
    ("LessThanThreshold", 0.5, True), ("LessThanOrEqualToThreshold", 1.5, False)])
def test_each_comparison(comparison: str, value: float, breaches: bool) -> None:
    assert alarm(comparison=comparison).breaches(value) is breaches


@pytest.mark.parametrize("bad", [{"period": 45}, {"period": 0}, {"m": 4}, {"treat": "sometimes"},
                                 {"comparison": "GreaterThanUpperThreshold"}])
def test_a_definition_cloudwatch_would_refuse_is_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        alarm(**bad)


def test_every_template_alarm_is_read_and_those_on_our_metrics_are_evaluated_locally() -> None:
    defined = local_alarms.definitions(Template.load(REPO_ROOT / "template.yaml"))
    by_id = {d.logical_id: d for d in defined}
    assert len(defined) >= 40 and all(d.alarm.name == f"local-{d.logical_id}" for d in defined)
    down = by_id["DependencyDownAlarm"]
    assert down.local and down.alarm.namespace == "stockpred" and down.alarm.period_s == 10
    assert down.alarm.treat_missing == "ignore" and down.alarm.metric == "DependenciesDown"
    assert by_id["TradesInDoubtAlarm"].local
    # The services devstack plays make their metrics: Lambda's per function, SQS's per queue.
    lambda_errors = by_id["UsersErrorsAlarm"]
    assert lambda_errors.local and lambda_errors.alarm.dimensions == (("FunctionName", "UsersFunction"),)
    assert by_id["PushDeadLettersAlarm"].alarm.dimensions == (("QueueName", "PushDeadLetterQueue"),)
    assert by_id["PushDeadLettersAlarm"].local
    assert "AWS/RDS" in by_id["DatabaseCpuAlarm"].why_not and not by_id["DatabaseCpuAlarm"].local
    assert not by_id["TradeExecutionsFailedAlarm"].local
    local = sum(d.local for d in defined)
    assert local == 3 + 32 + 2, local  # ours, every function's Errors and Throttles, the two queues
    api_errors = by_id["ApiErrorsAlarm"]
    assert api_errors.local and api_errors.alarm.dimensions == () and api_errors.alarm.metric == "Errors5xx"


def test_health_reports_each_dependency_within_its_deadline_and_writes_metric_lines() -> None:
    def slow() -> str:
        time.sleep(1.0)
        return "late"

    def degraded() -> str:
        raise health.Degraded("1 of 3 shards down")

    def broken() -> str:
        raise ConnectionRefusedError("connection refused")

    out = io.StringIO()
    with redirect_stdout(out):
        report = health.check({"postgres": lambda: "fine", "cache_ring": degraded, "opensearch": broken,
                               "mongo": slow}, deadline_s=0.3)
    deps = report["dependencies"]
    assert deps["postgres"]["status"] == "up" and deps["postgres"]["latency_ms"] >= 0
    assert deps["cache_ring"] == {**deps["cache_ring"], "status": "degraded", "detail": "1 of 3 shards down"}
    assert deps["opensearch"]["status"] == "down" and "ConnectionRefusedError" in deps["opensearch"]["detail"]
    assert deps["mongo"] == {"status": "down", "latency_ms": None, "detail": "no answer within 0.3 s"}
    assert report["status"] == "down"  # mongo is critical
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    by_dependency = {x["Dependency"]: x["DependencyDown"] for x in lines if "Dependency" in x}
    assert by_dependency == {"postgres": 0, "cache_ring": 0, "opensearch": 1, "mongo": 1}
    (total,) = [x for x in lines if "DependenciesDown" in x]
    assert total["DependenciesDown"] == 2
    assert total["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["StorageResolution"] == 1


@pytest.mark.parametrize(("statuses", "overall"), [
    ({"postgres": "up", "opensearch": "up"}, "ok"),
    ({"postgres": "up", "opensearch": "down"}, "degraded"),
    ({"postgres": "up", "cache_ring": "degraded"}, "degraded"),
    ({"state_redis": "down", "opensearch": "up"}, "down")])
def test_the_overall_status_is_down_only_for_a_critical_store(statuses: dict, overall: str) -> None:
    assert health.overall({n: {"status": s} for n, s in statuses.items()}) == overall
