"""The template's CloudWatch alarms, evaluated locally: what CloudWatch does on AWS.

At start every AWS::CloudWatch::Alarm of template.yaml is created in moto's CloudWatch as
`local-<logical id>` (stockpred.config's ALARM_NAME_PREFIX), with its own threshold, period,
evaluation periods, comparison and missing-data treatment. Then every few seconds each alarm on
the functions' own metrics (the namespace their METRICS_NAMESPACE names) is evaluated with
stockpred.alarms.evaluate against the metric lines the shipper put in OpenSearch, and a change of
state is set in moto (`set_alarm_state`), where GET /api/ops/alarms and `stockpred alarms` read it.

An alarm on an AWS service's metrics (AWS/Lambda, AWS/RDS, AWS/SQS, ...) stays INSUFFICIENT_DATA
with a reason saying so: those metrics are made by the services themselves, on AWS only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from devstack.template import Template
from stockpred import alarms, aws, config, metrics, opensearch

log = logging.getLogger("devstack.alarms")
EVERY_S = 5.0


@dataclass(frozen=True)
class LocalAlarm:
    logical_id: str
    alarm: alarms.Alarm
    local: bool  # evaluated here; else an AWS service's metric
    why_not: str = ""


def _text(value: Any, functions: set[str]) -> str | None:
    """A property's local value: plain, a !Ref to a function (its local name is its logical id),
    or a !Sub whose only references are the stack's name; None when it cannot be known here."""
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, dict) and "Ref" in value:
        return value["Ref"] if value["Ref"] in functions else None
    if isinstance(value, dict) and isinstance(value.get("Fn::Sub"), str):
        text = value["Fn::Sub"].replace("${AWS::StackName}", "local")
        return None if "${" in text else text
    return None


def definitions(template: Template) -> list[LocalAlarm]:
    """Every static-threshold metric alarm of the template, resolved for this stack."""
    globals_env = ((template.raw.get("Globals") or {}).get("Function") or {}).get("Environment") or {}
    ours = (globals_env.get("Variables") or {}).get("METRICS_NAMESPACE")
    functions = set(template.functions)
    found = []
    for lid, res in (template.raw.get("Resources") or {}).items():
        if res.get("Type") != "AWS::CloudWatch::Alarm" or "MetricName" not in res.get("Properties", {}):
            continue
        props = dict(res["Properties"])
        local = props["Namespace"] == ours
        props["Namespace"] = metrics.namespace() if local else _text(props["Namespace"], functions)
        props["AlarmDescription"] = _text(props.get("AlarmDescription", ""), functions) or ""
        dims = [(d["Name"], _text(d["Value"], functions)) for d in props.get("Dimensions") or []]
        unknown = [name for name, value in dims if value is None]
        props["Dimensions"] = [{"Name": n, "Value": v or "(on AWS)"} for n, v in dims]
        alarm = alarms.Alarm.from_properties(config.load().alarm_name_prefix + lid, props)
        why_not = "" if local and not unknown else (
            f"{alarm.namespace} metrics are made by the AWS service itself: evaluated on AWS only"
            if not local else f"its dimensions {unknown} name resources that exist on AWS only")
        found.append(LocalAlarm(lid, alarm, local and not unknown, why_not))
    return found


def create(defined: list[LocalAlarm]) -> None:
    """Puts every alarm in CloudWatch (moto), as CloudFormation would; an alarm not evaluated
    here is set to INSUFFICIENT_DATA with its reason."""
    cloudwatch = aws.client("cloudwatch")
    for d in defined:
        a = d.alarm
        cloudwatch.put_metric_alarm(
            AlarmName=a.name, AlarmDescription=a.description, Namespace=a.namespace, MetricName=a.metric,
            Dimensions=[{"Name": n, "Value": v} for n, v in a.dimensions], Statistic=a.statistic,
            Period=a.period_s, EvaluationPeriods=a.evaluation_periods, DatapointsToAlarm=a.m,
            Threshold=a.threshold, ComparisonOperator=a.comparison, TreatMissingData=a.treat_missing,
            ActionsEnabled=False)
        cloudwatch.set_alarm_state(AlarmName=a.name, StateValue=alarms.INSUFFICIENT,
                                   StateReason=d.why_not or "not evaluated yet")


class Evaluator:
    """Evaluates the local alarms and sets each change of state in CloudWatch."""

    def __init__(self, defined: list[LocalAlarm]) -> None:
        self.alarms = [d.alarm for d in defined if d.local]
        self.states = {a.name: alarms.INSUFFICIENT for a in self.alarms}

    def tick(self, now_s: float | None = None) -> dict[str, str]:
        """One evaluation of every local alarm; returns the changes (name: new state)."""
        import datetime as dt

        now_s = time.time() if now_s is None else now_s
        changes = {}
        for a in self.alarms:
            since = dt.datetime.fromtimestamp(a.window(now_s)[0], dt.UTC)
            until = dt.datetime.fromtimestamp(a.window(now_s)[-1] + a.period_s, dt.UTC)
            points = opensearch.metric_datapoints(a.namespace, a.metric, a.dimensions, a.statistic,
                                                  a.period_s, since, until)
            state, reason = alarms.evaluate(a, points, now_s, self.states[a.name])
            if state != self.states[a.name]:
                aws.client("cloudwatch").set_alarm_state(AlarmName=a.name, StateValue=state,
                                                         StateReason=reason[:1023])
                log.info("alarm %s: %s -> %s (%s)", a.name, self.states[a.name], state, reason)
                self.states[a.name] = state
                changes[a.name] = state
        return changes


async def run(template: Template) -> None:
    """Creates the alarms, then evaluates them every EVERY_S seconds until cancelled."""
    defined = definitions(template)
    while True:
        try:
            await asyncio.to_thread(create, defined)
            break
        except Exception as exc:
            log.warning("alarms not created yet: %s", exc)
            await asyncio.sleep(EVERY_S)
    evaluator = Evaluator(defined)
    log.info("%d alarms, %d evaluated locally", len(defined), len(evaluator.alarms))
    while True:
        try:
            await asyncio.to_thread(evaluator.tick)
        except Exception as exc:
            log.warning("alarm evaluation failed: %s", exc)
        await asyncio.sleep(EVERY_S)
