"""devstack's SQS event source mapping: the event Lambda builds, and which messages it deletes."""

import hashlib

import pytest

from devstack.queues import sqs_event, to_delete
from devstack.runtime import Invocation
from devstack.services import REPO_ROOT
from devstack.template import Template


def message(n: int) -> dict:
    body = f'{{"n": {n}}}'
    return {"MessageId": f"m{n}", "ReceiptHandle": f"r{n}", "Body": body,
            "MD5OfBody": hashlib.md5(body.encode()).hexdigest(),
            "Attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1700000000000"},
            "MessageAttributes": {"Kind": {"StringValue": "room", "DataType": "String"}}}


def finished(payload=None, error=None) -> Invocation:
    return Invocation(payload=payload, error=error, duration_ms=1.0, cold=False)


def test_the_event_is_lambdas_sqs_event():
    (record,) = sqs_event([message(1)], "PushQueue")["Records"]
    assert record == {
        "messageId": "m1", "receiptHandle": "r1", "body": '{"n": 1}',
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1700000000000"},
        "messageAttributes": {"Kind": {"stringValue": "room", "dataType": "String"}},
        "md5OfBody": hashlib.md5(b'{"n": 1}').hexdigest(),
        "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:PushQueue",
        "awsRegion": "us-east-1"}


def test_a_clean_return_deletes_the_whole_batch():
    batch = [message(1), message(2)]
    assert to_delete(batch, finished({"batchItemFailures": []}), report_failures=True) == batch
    assert to_delete(batch, finished(None), report_failures=True) == batch
    assert to_delete(batch, finished({"batchItemFailures": [{"itemIdentifier": "m1"}]}),
                     report_failures=False) == batch


def test_reported_failures_stay_on_the_queue_and_only_they():
    batch = [message(1), message(2), message(3)]
    done = to_delete(batch, finished({"batchItemFailures": [{"itemIdentifier": "m2"}]}), report_failures=True)
    assert [m["MessageId"] for m in done] == ["m1", "m3"]


@pytest.mark.parametrize("failures", [[{"itemIdentifier": "unknown"}], [{"itemIdentifier": ""}],
                                      [{}], ["m1"], [{"itemIdentifier": None}]])
def test_an_unusable_failure_report_fails_the_whole_batch(failures):
    batch = [message(1), message(2)]
    assert to_delete(batch, finished({"batchItemFailures": failures}), report_failures=True) == []


def test_a_function_error_deletes_nothing():
    error = {"errorMessage": "boom", "errorType": "RuntimeError"}
    assert to_delete([message(1)], finished(error=error), report_failures=True) == []
    assert to_delete([message(1)], finished(error=error), report_failures=False) == []


def test_the_template_maps_the_push_queue_to_the_fanout_function():
    (source,) = Template.load(REPO_ROOT / "template.yaml").queue_sources
    assert (source.function, source.queue, source.batch_size, source.report_failures) == \
        ("FanoutFunction", "PushQueue", 1, True)
