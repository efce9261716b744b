"""devstack's SQS event source mappings: the template's `Type: SQS` events, polled as Lambda does.

For each mapping, `min(MaximumConcurrency, DEVSTACK_QUEUE_CONCURRENCY)` pollers long-poll the
queue (moto's SQS, where the stack provisioned it: localstack/provision.py) for up to BatchSize
messages and invoke the function with Lambda's SQS event. Then, as on AWS:
- the function returned: every message is deleted, except those its `batchItemFailures` names
  (with ReportBatchItemFailures); a failure entry without a valid id fails the whole batch;
- the function raised, timed out or was throttled: nothing is deleted, so the batch comes back
  once the queue's visibility timeout passes, and after maxReceiveCount receives moto moves it to
  the dead-letter queue (the queue's RedrivePolicy).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from botocore.config import Config

from devstack import settings as stack_settings
from devstack.runtime import FunctionTimeout, Invocation, Throttled
from devstack.template import LOCAL_ACCOUNT, LOCAL_REGION, Function, QueueSource, Template
from localstack.provision import queue_url

log = logging.getLogger("devstack.queues")
WAIT_S = 2  # long-poll slices: short enough that a stopping gateway is not held up
Invoke = Callable[[Function, dict[str, Any], str], Awaitable[Invocation]]


def sqs_event(messages: list[dict[str, Any]], queue: str) -> dict[str, Any]:
    """Lambda's SQS event for messages as ReceiveMessage returned them."""
    arn = f"arn:aws:sqs:{LOCAL_REGION}:{LOCAL_ACCOUNT}:{queue}"
    records = []
    for m in messages:
        records.append({
            "messageId": m["MessageId"],
            "receiptHandle": m["ReceiptHandle"],
            "body": m["Body"],
            "attributes": m.get("Attributes") or {},
            # Lambda keeps each attribute's name and camel-cases its fields (StringValue -> stringValue).
            "messageAttributes": {name: {(k[0].lower() + k[1:]): v for k, v in value.items()}
                                  for name, value in (m.get("MessageAttributes") or {}).items()},
            "md5OfBody": m.get("MD5OfBody") or hashlib.md5(m["Body"].encode()).hexdigest(),
            "eventSource": "aws:sqs",
            "eventSourceARN": arn,
            "awsRegion": LOCAL_REGION,
        })
    return {"Records": records}


def to_delete(messages: list[dict[str, Any]], inv: Invocation, report_failures: bool) -> list[dict[str, Any]]:
    """The messages a finished invocation is done with (Lambda's rules, see the module's docstring)."""
    if inv.error:
        return []
    if not report_failures:
        return messages
    failures = inv.payload.get("batchItemFailures") if isinstance(inv.payload, dict) else None
    if not failures:
        return messages
    ids = {m["MessageId"] for m in messages}
    failed = {f.get("itemIdentifier") for f in failures if isinstance(f, dict)}
    if len(failed) != len(failures) or not failed <= ids:
        return []  # an unusable failure report fails the whole batch
    return [m for m in messages if m["MessageId"] not in failed]


class QueuePollers:
    """Every SQS event source of the template, polled while the gateway runs."""

    def __init__(self, template: Template, invoke: Invoke, endpoint_url: str) -> None:
        self.template = template
        self.invoke = invoke
        self.endpoint_url = endpoint_url
        limit = stack_settings.QUEUE_CONCURRENCY.read()
        self.concurrency = {s.name: max(1, min(s.max_concurrency, limit)) for s in template.queue_sources}
        total = sum(self.concurrency.values())
        # Twice the pollers: a poller's delete never waits behind the others' long polls.
        self.executor = ThreadPoolExecutor(max_workers=2 * max(1, total), thread_name_prefix="sqs")
        self.sqs = boto3.client("sqs", endpoint_url=endpoint_url, region_name=LOCAL_REGION,
                                aws_access_key_id="test", aws_secret_access_key="test",
                                config=Config(max_pool_connections=2 * max(1, total),
                                              read_timeout=WAIT_S + 10, retries={"max_attempts": 2}))

    async def poll_forever(self, source: QueueSource) -> None:
        loop = asyncio.get_running_loop()
        fn = self.template.functions[source.function]
        url = queue_url(self.endpoint_url, source.queue)
        while True:
            try:
                received = await loop.run_in_executor(self.executor, lambda: self.sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=min(10, source.batch_size),
                    WaitTimeSeconds=WAIT_S, AttributeNames=["All"], MessageAttributeNames=["All"]))
            except Exception as exc:  # moto restarting, the queue not there yet: try again soon
                log.warning("%s: receive failed: %s", source.name, exc)
                await asyncio.sleep(1)
                continue
            messages = received.get("Messages") or []
            if messages:
                await self._deliver(source, fn, url, messages)

    async def _deliver(self, source: QueueSource, fn: Function, url: str,
                       messages: list[dict[str, Any]]) -> None:
        try:
            inv = await self.invoke(fn, sqs_event(messages, source.queue), str(uuid.uuid4()))
        except (Throttled, FunctionTimeout) as exc:
            log.warning("%s: %s; %d message(s) come back after the visibility timeout",
                        source.name, exc, len(messages))
            return
        done = to_delete(messages, inv, source.report_failures)
        if len(done) < len(messages):
            log.info("%s: %d of %d message(s) failed%s", source.name, len(messages) - len(done),
                     len(messages), f" ({inv.error['errorMessage']})" if inv.error else "")
        if done:
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)]
            await asyncio.get_running_loop().run_in_executor(
                self.executor, lambda: self.sqs.delete_message_batch(QueueUrl=url, Entries=entries))

    async def run(self) -> None:
        tasks = [asyncio.create_task(self.poll_forever(s))
                 for s in self.template.queue_sources for _ in range(self.concurrency[s.name])]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            self.executor.shutdown(wait=False, cancel_futures=True)
