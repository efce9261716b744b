"""CloudWatch alarms: their definitions as template.yaml declares them, CloudWatch's rule for
turning datapoints into a state, and reading the states back.

On AWS CloudWatch evaluates the template's alarms and `describe()` reads them (their names start
with the stack's name, ALARM_NAME_PREFIX). Locally devstack (devstack/alarms.py) creates the same
alarms in moto's CloudWatch, evaluates them with `evaluate` every few seconds against the metric
lines in OpenSearch, and sets their states there, so the same `describe()` answers both.

The window is CloudWatch's default, a sliding one ("Alarm evaluation window"): the N =
EvaluationPeriods periods that end at the moment of evaluation, so a breach counts as soon as its
datapoint exists. CloudWatch evaluates an alarm every minute, a high-resolution one (a period
under a minute) every 10 seconds: `every_s`.

The rule (CloudWatch's "Configuring how CloudWatch alarms treat missing data"), M being
DatapointsToAlarm:

- no datapoint at all: `missing` gives INSUFFICIENT_DATA, `ignore` keeps the state, `breaching`
  ALARM and `notBreaching` OK;
- fewer datapoints than M: `breaching` and `notBreaching` fill the gaps as they say; `missing`
  and `ignore` give ALARM when every datapoint there is breaches, else OK;
- otherwise ALARM when at least M of them breach, else OK.

One simplification: CloudWatch may look further back than the N periods when data is missing
(its "evaluation range"); here the range is the N periods.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from stockpred import config
from stockpred.cloud import aws

OK, ALARM, INSUFFICIENT = "OK", "ALARM", "INSUFFICIENT_DATA"
STATES = (OK, ALARM, INSUFFICIENT)
COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanOrEqualToThreshold": operator.ge,
    "GreaterThanThreshold": operator.gt,
    "LessThanThreshold": operator.lt,
    "LessThanOrEqualToThreshold": operator.le,
}
STATISTICS = ("SampleCount", "Average", "Sum", "Minimum", "Maximum")
TREATMENTS = ("missing", "ignore", "breaching", "notBreaching")


@dataclass(frozen=True)
class Alarm:
    """One static-threshold metric alarm (AWS::CloudWatch::Alarm with MetricName)."""

    name: str
    namespace: str
    metric: str
    statistic: str
    period_s: int
    evaluation_periods: int
    threshold: float
    comparison: str
    dimensions: tuple[tuple[str, str], ...] = ()
    datapoints_to_alarm: int | None = None
    treat_missing: str = "missing"
    description: str = ""

    def __post_init__(self) -> None:
        if self.comparison not in COMPARISONS:
            raise ValueError(f"{self.name}: comparison {self.comparison!r} is not a static threshold's")
        if self.statistic not in STATISTICS:
            raise ValueError(f"{self.name}: statistic {self.statistic!r} is not one of {STATISTICS}")
        if self.treat_missing not in TREATMENTS:
            raise ValueError(f"{self.name}: TreatMissingData {self.treat_missing!r}")
        if self.period_s not in (10, 30) and (self.period_s <= 0 or self.period_s % 60):
            raise ValueError(f"{self.name}: a period is 10, 30 or a multiple of 60 seconds")
        if not 1 <= self.m <= self.evaluation_periods:
            raise ValueError(f"{self.name}: DatapointsToAlarm must be 1 to EvaluationPeriods")

    @property
    def m(self) -> int:
        return self.datapoints_to_alarm or self.evaluation_periods

    @classmethod
    def from_properties(cls, name: str, props: Mapping[str, Any]) -> Alarm:
        """From an AWS::CloudWatch::Alarm's properties whose values are already resolved."""
        return cls(
            name=name, namespace=str(props["Namespace"]), metric=str(props["MetricName"]),
            statistic=str(props["Statistic"]), period_s=int(props["Period"]),
            evaluation_periods=int(props["EvaluationPeriods"]), threshold=float(props["Threshold"]),
            comparison=str(props["ComparisonOperator"]),
            dimensions=tuple((str(d["Name"]), str(d["Value"])) for d in props.get("Dimensions") or ()),
            datapoints_to_alarm=int(props["DatapointsToAlarm"]) if "DatapointsToAlarm" in props else None,
            treat_missing=str(props.get("TreatMissingData", "missing")),
            description=str(props.get("AlarmDescription", "")))

    def breaches(self, value: float) -> bool:
        return COMPARISONS[self.comparison](value, self.threshold)

    @property
    def every_s(self) -> int:
        """How often CloudWatch evaluates it."""
        return 10 if self.period_s < 60 else 60

    def window(self, now_s: float) -> list[int]:
        """The starts (epoch seconds) of the N periods evaluated at `now_s`, oldest first: a
        sliding window ending at the (whole) second of evaluation."""
        end = int(now_s)
        return [end - (i + 1) * self.period_s for i in reversed(range(self.evaluation_periods))]


def evaluate(alarm: Alarm, datapoints: Mapping[int, float], now_s: float,
             current: str = INSUFFICIENT) -> tuple[str, str]:
    """The alarm's state at `now_s`, and why, from its datapoints (a period's start: its value)."""
    starts = alarm.window(now_s)
    present = [datapoints[s] for s in starts if s in datapoints]
    missing = len(starts) - len(present)
    breaching = sum(alarm.breaches(v) for v in present)
    seen = f"{breaching} of {len(present)} datapoints breach ({alarm.comparison} {alarm.threshold:g})"
    if not present:
        by_treatment = {"missing": INSUFFICIENT, "ignore": current, "breaching": ALARM, "notBreaching": OK}
        return by_treatment[alarm.treat_missing], f"no datapoint in the last {len(starts)} periods " \
                                                 f"(TreatMissingData {alarm.treat_missing})"
    if len(present) < alarm.m:
        if alarm.treat_missing == "breaching":
            breaching += missing
        elif alarm.treat_missing in ("missing", "ignore"):
            return (ALARM if breaching == len(present) else OK), seen
    return (ALARM if breaching >= alarm.m else OK), seen


def describe(prefix: str | None = None) -> list[dict[str, Any]]:
    """The stack's alarms as CloudWatch holds them, ALARM first, then by name."""
    cloudwatch = aws.client("cloudwatch")
    prefix = prefix if prefix is not None else config.load().alarm_name_prefix
    found = []
    for page in cloudwatch.get_paginator("describe_alarms").paginate(
            AlarmNamePrefix=prefix, AlarmTypes=["MetricAlarm"]):
        for a in page["MetricAlarms"]:
            found.append({
                "name": a["AlarmName"], "state": a["StateValue"], "reason": a.get("StateReason", ""),
                "since": a["StateUpdatedTimestamp"].isoformat() if a.get("StateUpdatedTimestamp") else None,
                "description": a.get("AlarmDescription", ""), "namespace": a.get("Namespace"),
                "metric": a.get("MetricName"),
                "dimensions": {d["Name"]: d["Value"] for d in a.get("Dimensions", [])},
                "statistic": a.get("Statistic"), "period_s": a.get("Period"),
                "evaluation_periods": a.get("EvaluationPeriods"),
                "threshold": a.get("Threshold"), "comparison": a.get("ComparisonOperator"),
            })
    order = {ALARM: 0, INSUFFICIENT: 1, OK: 2}
    return sorted(found, key=lambda a: (order.get(a["state"], 3), a["name"]))


def counts(found: list[dict[str, Any]]) -> dict[str, int]:
    """How many of the alarms `describe` found are in each state."""
    return {state: sum(a["state"] == state for a in found) for state in STATES}
