"""The template's alarms on the services' own metrics, evaluated as devstack does, against the
session's real moto (SQS, CloudWatch) and OpenSearch: a dead-lettered push raises the push
dead-letter alarm and its drain clears it once the 5-minute window has slid past; a function's
errors raise its Errors alarm. Time is passed in, so no test waits five minutes."""

from __future__ import annotations

import dataclasses
import time
import uuid

import boto3
import pytest

from devstack import alarms as local_alarms
from devstack import service_metrics
from devstack.services import REPO_ROOT
from devstack.template import Template
from stockpred.cloud import aws
from stockpred.observability import alarms, opensearch


@pytest.fixture
def template_alarms(fresh) -> dict[str, local_alarms.LocalAlarm]:
    opensearch.client.cache_clear()
    aws.client.cache_clear()
    return {d.logical_id: d for d in local_alarms.definitions(Template.load(REPO_ROOT / "template.yaml"))}


def renamed(defined: local_alarms.LocalAlarm, **dimensions: str) -> local_alarms.LocalAlarm:
    """The template's alarm, watching a resource of this test's own."""
    alarm = dataclasses.replace(defined.alarm, name=f"test-{defined.logical_id}-{uuid.uuid4().hex[:8]}",
                                dimensions=tuple(dimensions.items()))
    return dataclasses.replace(defined, alarm=alarm)


def state_in_cloudwatch(name: str) -> str:
    (found,) = aws.client("cloudwatch").describe_alarms(AlarmNames=[name])["MetricAlarms"]
    return found["StateValue"]


def refresh() -> None:
    opensearch.client().indices.refresh(index=opensearch.metric_index_pattern())


def test_a_dead_lettered_push_raises_the_alarm_and_its_drain_clears_it(stack, template_alarms) -> None:
    push_dlq = template_alarms["PushDeadLettersAlarm"]
    assert push_dlq.local and push_dlq.alarm.dimensions == (("QueueName", "PushDeadLetterQueue"),)
    sqs = boto3.client("sqs", endpoint_url=stack["AWS_ENDPOINT_URL"], region_name="us-east-1")
    name = f"dlq-{uuid.uuid4().hex[:8]}"
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    watched = renamed(push_dlq, QueueName=name)
    local_alarms.create([watched])
    evaluator = local_alarms.Evaluator([watched])
    now = time.time()

    service_metrics.write(service_metrics.queue_documents(sqs, {name: url}, at=now - 1))
    refresh()
    evaluator.tick(now)
    assert state_in_cloudwatch(watched.alarm.name) == alarms.OK  # an empty queue; notBreaching

    sqs.send_message(QueueUrl=url, MessageBody='{"room": "AAPL", "failed": 5}')
    service_metrics.write(service_metrics.queue_documents(sqs, {name: url}, at=now + 59))
    refresh()
    assert evaluator.tick(now + 61) == {watched.alarm.name: alarms.ALARM}
    assert state_in_cloudwatch(watched.alarm.name) == alarms.ALARM

    sqs.purge_queue(QueueUrl=url)
    service_metrics.write(service_metrics.queue_documents(sqs, {name: url}, at=now + 119))
    refresh()
    assert evaluator.tick(now + 121) == {}  # the breach is still in the last 5 minutes
    service_metrics.write(service_metrics.queue_documents(sqs, {name: url}, at=now + 379))
    refresh()
    assert evaluator.tick(now + 381) == {watched.alarm.name: alarms.OK}
    assert state_in_cloudwatch(watched.alarm.name) == alarms.OK
    sqs.delete_queue(QueueUrl=url)


def test_a_functions_errors_raise_its_lambda_errors_alarm(stack, template_alarms) -> None:
    errors = template_alarms["UsersErrorsAlarm"]
    assert errors.local and errors.alarm.namespace == "AWS/Lambda"
    function = f"TestFunction{uuid.uuid4().hex[:8]}"
    watched = renamed(errors, FunctionName=function)
    local_alarms.create([watched])
    evaluator = local_alarms.Evaluator([watched])
    now = time.time()
    service_metrics.lambda_documents()  # start from nothing counted
    for error in (False, False, True):
        service_metrics.lambda_invoked(function, error=error)
    service_metrics.lambda_invoked(function, throttled=True)
    docs = service_metrics.lambda_documents(at=now - 1)
    (mine,) = [d for d in docs if d["line"]["dimensions"] == {"FunctionName": function}]
    assert mine["line"]["values"] == {"Invocations": 3.0, "Errors": 1.0, "Throttles": 1.0}
    service_metrics.write(docs)
    refresh()
    assert evaluator.tick(now) == {watched.alarm.name: alarms.ALARM}
    assert "1 of 1 datapoints breach" in aws.client("cloudwatch").describe_alarms(
        AlarmNames=[watched.alarm.name])["MetricAlarms"][0]["StateReason"]

    # Someone else sets the state (another process creating the alarms afresh): the next
    # evaluation compares with CloudWatch's state, not its own memory, and puts it right.
    aws.client("cloudwatch").set_alarm_state(AlarmName=watched.alarm.name, StateValue="INSUFFICIENT_DATA",
                                             StateReason="created again")
    assert evaluator.tick(now + 30) == {}  # not due yet: a minute between evaluations
    assert evaluator.tick(now + 60) == {watched.alarm.name: alarms.ALARM}
    assert state_in_cloudwatch(watched.alarm.name) == alarms.ALARM
