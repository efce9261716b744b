"""The template's CloudWatch alarms, evaluated locally: what CloudWatch does on AWS.

At start every AWS::CloudWatch::Alarm of template.yaml is created in moto's CloudWatch as
`local-<logical id>` (stockpred.config's ALARM_NAME_PREFIX), with its own threshold, period,
evaluation periods, comparison and missing-data treatment. Then each alarm on the functions' own
metrics (the namespace their METRICS_NAMESPACE names) is evaluated as often as CloudWatch would
(every minute; every 10 s for a high-resolution one) with stockpred.observability.alarms.evaluate against the
metric lines the shipper put in OpenSearch, and a change of state is set in moto
(`set_alarm_state`), where GET /api/ops/alarms and `stockpred alarms` read it.

The services devstack plays make their metrics here too (devstack/service_metrics.py: AWS/Lambda's
per function, AWS/SQS's per queue), so the alarms on them are evaluated alike. An alarm on another
service's metrics (AWS/RDS, AWS/States, AWS/ES, ...) stays INSUFFICIENT_DATA with a reason saying
so: those exist on AWS only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any

from devstack import service_metrics
from devstack.template import Template
from stockpred import config
from stockpred.cloud import aws
from stockpred.observability import alarms, metrics, opensearch

log = logging.getLogger("devstack.alarms")
EVERY_S = 2.0  # how often to look for alarms due
SAMPLE_QUEUES_EVERY_S = 60.0


@dataclass(frozen=True)
class LocalAlarm:
    logical_id: str
    alarm: alarms.Alarm
    local: bool  # evaluated here; else an AWS service's metric
    why_not: str = ""


def _text(value: Any, functions: set[str], queues: set[str] = frozenset()) -> str | None:
    """A property's local value: plain, a !Ref to a function or a queue's !GetAtt QueueName
    (locally each is named by its logical id), or a !Sub whose only references are the stack's
    name; None when it cannot be known here."""
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, dict) and "Ref" in value:
        return value["Ref"] if value["Ref"] in functions else None
    if isinstance(value, dict) and value.get("Fn::GetAtt", [None, None])[1:] == ["QueueName"]:
        return value["Fn::GetAtt"][0] if value["Fn::GetAtt"][0] in queues else None
    if isinstance(value, dict) and isinstance(value.get("Fn::Sub"), str):
        text = value["Fn::Sub"].replace("${AWS::StackName}", "local")
        return None if "${" in text else text
    return None


def definitions(template: Template) -> list[LocalAlarm]:
    """Every static-threshold metric alarm of the template, resolved for this stack."""
    globals_env = ((template.raw.get("Globals") or {}).get("Function") or {}).get("Environment") or {}
    ours = (globals_env.get("Variables") or {}).get("METRICS_NAMESPACE")
    functions, queues = set(template.functions), set(queue_names(template))
    found = []
    for lid, res in (template.raw.get("Resources") or {}).items():
        if res.get("Type") != "AWS::CloudWatch::Alarm" or "MetricName" not in res.get("Properties", {}):
            continue
        props = dict(res["Properties"])
        ours_ = props["Namespace"] == ours
        props["Namespace"] = metrics.namespace() if ours_ else _text(props["Namespace"], functions)
        props["AlarmDescription"] = _text(props.get("AlarmDescription", ""), functions) or ""
        dims = [(d["Name"], _text(d["Value"], functions, queues)) for d in props.get("Dimensions") or []]
        unknown = [name for name, value in dims if value is None]
        props["Dimensions"] = [{"Name": n, "Value": v or "(on AWS)"} for n, v in dims]
        alarm = alarms.Alarm.from_properties(config.load().alarm_name_prefix + lid, props)
        made_here = ours_ or alarm.namespace in service_metrics.NAMESPACES
        why_not = "" if made_here and not unknown else (
            f"{alarm.namespace} metrics are made by the AWS service itself: evaluated on AWS only"
            if not made_here else f"its dimensions {unknown} name resources that exist on AWS only")
        found.append(LocalAlarm(lid, alarm, made_here and not unknown, why_not))
    return found


def queue_names(template: Template) -> list[str]:
    """The template's SQS queues (locally each is named by its logical id)."""
    return sorted(lid for lid, res in (template.raw.get("Resources") or {}).items()
                  if res.get("Type") == "AWS::SQS::Queue")


def sample_queues(template: Template) -> None:
    """Each queue's depth now, as SQS publishes it every minute on AWS."""
    from localstack.provision import queue_url

    endpoint = config.load().aws_endpoint_url
    queues = {name: queue_url(endpoint, name) for name in queue_names(template)}
    service_metrics.write(service_metrics.queue_documents(aws.client("sqs"), queues))


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
    """Evaluates the local alarms, each as often as CloudWatch would (Alarm.every_s), and sets
    each change of state in CloudWatch."""

    def __init__(self, defined: list[LocalAlarm]) -> None:
        self.alarms = [d.alarm for d in defined if d.local]
        self.due = {a.name: 0.0 for a in self.alarms}

    def tick(self, now_s: float | None = None) -> dict[str, str]:
        """One evaluation of every local alarm that is due; returns the changes (name: state).
        The state each is compared with is CloudWatch's own, read afresh: whoever else set it
        (another process creating the alarms again), the next evaluation puts it right."""
        now_s = time.time() if now_s is None else now_s
        due = [a for a in self.alarms if now_s >= self.due[a.name]]
        states = current_states([a.name for a in due])
        changes = {}
        for a in due:
            self.due[a.name] = now_s + a.every_s
            window = a.window(now_s)
            since = dt.datetime.fromtimestamp(window[0], dt.UTC)
            until = dt.datetime.fromtimestamp(window[-1] + a.period_s, dt.UTC)
            points = opensearch.metric_datapoints(a.namespace, a.metric, a.dimensions, a.statistic,
                                                  a.period_s, since, until)
            current = states.get(a.name, alarms.INSUFFICIENT)
            state, reason = alarms.evaluate(a, points, now_s, current)
            if state != current:
                aws.client("cloudwatch").set_alarm_state(AlarmName=a.name, StateValue=state,
                                                         StateReason=reason[:1023])
                log.info("alarm %s: %s -> %s (%s)", a.name, current, state, reason)
                changes[a.name] = state
        return changes


def current_states(names: list[str]) -> dict[str, str]:
    """The alarms' states as CloudWatch holds them (100 names a call, its limit)."""
    cloudwatch = aws.client("cloudwatch")
    found = {}
    for i in range(0, len(names), 100):
        for alarm in cloudwatch.describe_alarms(AlarmNames=names[i:i + 100])["MetricAlarms"]:
            found[alarm["AlarmName"]] = alarm["StateValue"]
    return found


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
    sampled = 0.0
    while True:
        try:
            if time.time() - sampled >= SAMPLE_QUEUES_EVERY_S:
                sampled = time.time()
                await asyncio.to_thread(sample_queues, template)
            await asyncio.to_thread(evaluator.tick)
        except Exception as exc:
            log.warning("alarm evaluation failed: %s", exc)
        await asyncio.sleep(EVERY_S)
