"""Publishing a push: an event goes on the queue only when someone is there to receive it.

Against the session's real state Redis and moto's SQS: a room or a user with no connection costs
the request one Redis EXISTS, and no queue message (so no fan-out invocation either)."""

import uuid

import boto3
import pytest

from stockpred import config
from stockpred.realtime import rooms


@pytest.fixture
def queue(stack, monkeypatch):
    sqs = boto3.client("sqs", endpoint_url=stack["AWS_ENDPOINT_URL"], region_name="us-east-1")
    url = sqs.create_queue(QueueName=f"push-audience-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    monkeypatch.setenv("PUSH_QUEUE_URL", url)
    config.load.cache_clear()
    yield sqs, url
    config.load.cache_clear()
    sqs.delete_queue(QueueUrl=url)


def queued(sqs, url):
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    return [m["Body"] for m in got.get("Messages", [])]


def test_an_empty_room_or_a_user_without_connections_queues_nothing(queue):
    sqs, url = queue
    symbol, user = f"E{uuid.uuid4().hex[:6].upper()}", f"u-{uuid.uuid4().hex}"
    rooms.publish_to_room(symbol, {"type": "prediction"})
    rooms.publish_to_user(user, {"type": "trade"})
    assert queued(sqs, url) == []

    conn = f"c-{uuid.uuid4().hex}"
    rooms.connected(conn, user)
    rooms.subscribe(conn, symbol)
    try:
        rooms.publish_to_room(symbol, {"type": "prediction"})
        rooms.publish_to_user(user, {"type": "trade"})
        bodies = queued(sqs, url)
        assert len(bodies) == 2 and any(symbol in b for b in bodies) and any(user in b for b in bodies)
    finally:
        rooms.forget(conn)
    rooms.publish_to_room(symbol, {"type": "prediction"})
    assert queued(sqs, url) == [], "the room emptied when its last connection left"
