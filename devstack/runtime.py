"""Lambda semantics for local functions: a pool of warm worker processes.

Each worker is one Lambda instance: it loads a function's handler on first use (layers on the
import path), keeps it warm, and serves one invocation at a time. Chalice keeps per-request
state on the app object, so two requests must never run through one app at once; concurrency
comes from more workers. A worker that overruns its function's timeout is killed and replaced,
as Lambda does.
"""

from __future__ import annotations

import importlib.util
import json
import multiprocessing
import os
import queue
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from devstack.template import Function


class Throttled(RuntimeError):
    """Every worker stayed busy for longer than the acquire deadline."""


class FunctionTimeout(RuntimeError):
    """The invocation ran past the function's Timeout; its worker was replaced."""


@dataclass
class Invocation:
    payload: Any
    error: dict[str, Any] | None
    duration_ms: float
    cold: bool


class LambdaContext:
    """The parts of Lambda's context object that handlers use."""

    def __init__(self, fn: Function, request_id: str) -> None:
        self.function_name = fn.logical_id
        self.function_version = "$LATEST"
        self.invoked_function_arn = fn.arn
        self.memory_limit_in_mb = fn.memory_mb
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{fn.logical_id}"
        self.log_stream_name = f"devstack/{os.getpid()}"
        self._deadline = time.monotonic() + fn.timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _load_handler(fn: Function) -> Any:
    for d in (fn.code_dir, *reversed(fn.layer_dirs)):
        if str(d) not in sys.path:
            sys.path.insert(0, str(d))
    module_name, attr = fn.handler.rsplit(".", 1)
    file = fn.code_dir / (module_name.replace(".", "/") + ".py")
    unique = f"_devstack_fn_{fn.logical_id}_{module_name.replace('.', '_')}"
    spec = importlib.util.spec_from_file_location(unique, file)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load handler {fn.handler} from {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[unique] = module
    spec.loader.exec_module(module)
    return getattr(module, attr)


def _worker_main(conn: Connection, base_env: dict[str, str]) -> None:
    original_env = dict(os.environ)
    handlers: dict[str, Any] = {}
    while True:
        try:
            fn, event, request_id = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        started = time.perf_counter()
        cold = fn.logical_id not in handlers
        os.environ.clear()
        os.environ.update(original_env)
        os.environ.update(fn.env)
        os.environ.update(base_env)
        os.environ["AWS_LAMBDA_FUNCTION_NAME"] = fn.logical_id
        try:
            if cold:
                handlers[fn.logical_id] = _load_handler(fn)
            result = handlers[fn.logical_id](event, LambdaContext(fn, request_id))
            json.dumps(result)
            reply: tuple[str, Any] = ("ok", result)
        except Exception as exc:
            reply = ("error", {
                "errorMessage": str(exc),
                "errorType": type(exc).__name__,
                "stackTrace": traceback.format_exception(exc),
            })
            traceback.print_exc()
        conn.send((*reply, (time.perf_counter() - started) * 1000, cold))


class _Worker:
    def __init__(self, ctx: Any, base_env: dict[str, str]) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, base_env), daemon=True)
        self.process.start()
        child.close()

    def kill(self) -> None:
        self.process.kill()
        self.process.join(5)
        self.conn.close()


class WorkerPool:
    """Up to `size` warm instances shared by all functions; each serves one invocation at a time."""

    def __init__(self, size: int, base_env: dict[str, str], acquire_timeout_s: float = 30.0) -> None:
        self.size = size
        self.base_env = base_env
        self.acquire_timeout_s = acquire_timeout_s
        self._ctx = multiprocessing.get_context("spawn")
        self._idle: queue.LifoQueue[_Worker] = queue.LifoQueue()
        self._lock = threading.Lock()
        self._count = 0
        self.invocations = 0
        self.cold_starts = 0

    def _acquire(self) -> _Worker:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if self._count < self.size:
                self._count += 1
                try:
                    return _Worker(self._ctx, self.base_env)
                except Exception:
                    self._count -= 1
                    raise
        try:
            return self._idle.get(timeout=self.acquire_timeout_s)
        except queue.Empty:
            raise Throttled(f"all {self.size} workers busy for {self.acquire_timeout_s}s") from None

    def _discard(self, worker: _Worker) -> None:
        worker.kill()
        with self._lock:
            self._count -= 1

    def invoke(self, fn: Function, event: Any, request_id: str | None = None) -> Invocation:
        """Runs one invocation on a free worker; blocks, so call it from a thread."""
        worker = self._acquire()
        try:
            worker.conn.send((fn, event, request_id or str(uuid.uuid4())))
            if not worker.conn.poll(fn.timeout_s):
                self._discard(worker)
                raise FunctionTimeout(f"{fn.logical_id} timed out after {fn.timeout_s}s")
            status, payload, duration_ms, cold = worker.conn.recv()
        except (EOFError, OSError, BrokenPipeError) as exc:
            self._discard(worker)
            return Invocation(None, {"errorMessage": f"worker exited: {exc}",
                                     "errorType": "Runtime.ExitError"}, 0.0, True)
        self._idle.put(worker)
        self.invocations += 1
        self.cold_starts += int(cold)
        if status == "ok":
            return Invocation(payload, None, duration_ms, cold)
        return Invocation(None, payload, duration_ms, cold)

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().kill()
            except queue.Empty:
                return
