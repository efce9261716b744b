"""devstack's worker pool keeps Lambda's semantics when the gateway awaits it on its event loop:
one invocation at a time per instance, warm reuse, a timeout that replaces the instance, errors
as Lambda reports them, and the blocking path for callers on threads."""

from __future__ import annotations

import asyncio
import itertools
import os
import textwrap
import time
from pathlib import Path

import pytest

from devstack.runtime import FunctionTimeout, Throttled, WorkerPool
from devstack.template import Function

HANDLER = textwrap.dedent("""
    import os, time

    def handler(event, context):
        started = time.time()
        if event.get("sleep"):
            time.sleep(event["sleep"])
        if event.get("fail"):
            raise ValueError("asked to fail")
        if event.get("unserialisable"):
            return {"value": object()}
        print("log line", context.aws_request_id)
        return {"pid": os.getpid(), "echo": event.get("echo"), "request_id": context.aws_request_id,
                "ran": [started, time.time()]}
""")


@pytest.fixture
def fn(tmp_path: Path) -> Function:
    (tmp_path / "app.py").write_text(HANDLER)
    return Function("Echo", tmp_path, "app.handler", (), timeout_s=3, memory_mb=128)


def test_concurrent_invocations_never_share_an_instance(fn: Function) -> None:
    lines: list[str] = []
    pool = WorkerPool(2, base_env={}, log_sink=lambda _f, _s, new: lines.extend(new))

    async def run() -> list:
        return await asyncio.gather(*(pool.ainvoke(fn, {"sleep": 0.2, "echo": i}, f"r{i}")
                                      for i in range(4)))

    try:
        results = asyncio.run(run())
        assert [r.payload["echo"] for r in results] == [0, 1, 2, 3]
        assert [r.payload["request_id"] for r in results] == ["r0", "r1", "r2", "r3"]
        # two instances at most, and never two invocations on one of them at the same time
        pids = [r.payload["pid"] for r in results]
        assert len(set(pids)) == 2 and pool.cold_starts == 2 and pool.invocations == 4
        for pid in set(pids):
            runs = sorted(r.payload["ran"] for r in results if r.payload["pid"] == pid)
            assert all(earlier[1] <= later[0] for earlier, later in itertools.pairwise(runs))
        warm = pool.invoke(fn, {"echo": "sync"})  # the blocking path reuses the same instances
        assert warm.payload["pid"] in pids and not warm.cold
        deadline = time.monotonic() + 5
        while not {f"log line r{i}" for i in range(4)} <= set(lines) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert {f"log line r{i}" for i in range(4)} <= set(lines)  # each line, whole, to the sink
    finally:
        pool.close()


def test_a_timeout_replaces_the_instance(fn: Function) -> None:
    pool = WorkerPool(1, base_env={})

    async def run() -> tuple[int, int]:
        first = await pool.ainvoke(fn, {})
        with pytest.raises(FunctionTimeout):
            await pool.ainvoke(fn, {"sleep": 10})
        second = await pool.ainvoke(fn, {})
        return first.payload["pid"], second.payload["pid"]

    try:
        before, after = asyncio.run(run())
        assert before != after
        with pytest.raises(ProcessLookupError):
            os.kill(before, 0)
    finally:
        pool.close()


def test_errors_are_reported_as_lambda_does(fn: Function) -> None:
    pool = WorkerPool(1, base_env={})
    try:
        failed = asyncio.run(pool.ainvoke(fn, {"fail": True}))
        assert failed.payload is None and failed.error["errorType"] == "ValueError"
        assert failed.error["errorMessage"] == "asked to fail"
        marshal = asyncio.run(pool.ainvoke(fn, {"unserialisable": True}))
        assert marshal.error["errorType"] == "Runtime.MarshalError"
        assert asyncio.run(pool.ainvoke(fn, {"echo": 1})).payload["echo"] == 1  # still warm
    finally:
        pool.close()


def test_waiting_past_the_acquire_deadline_is_throttled(fn: Function) -> None:
    pool = WorkerPool(1, base_env={}, acquire_timeout_s=0.3)

    async def run() -> None:
        await pool.ainvoke(fn, {})  # warm: the next one is busy in its handler, not starting
        busy = asyncio.create_task(pool.ainvoke(fn, {"sleep": 1.5}))
        await asyncio.sleep(0.1)
        with pytest.raises(Throttled):
            await pool.ainvoke(fn, {})
        await busy

    try:
        asyncio.run(run())
    finally:
        pool.close()
