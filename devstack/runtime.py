"""Lambda semantics for local functions: warm worker processes, one function and one invocation each.

Each worker is one Lambda instance of one function (devstack/lambda_worker.py in its own
interpreter): it imports the handler on its first invocation (a cold start), keeps it warm and
serves one invocation at a time. Chalice keeps per-request state on the app object, so two
requests must never run through one app at once; concurrency comes from more workers. A worker
that overruns its function's timeout is killed and replaced, as Lambda does.

Two ways to load a function (`LambdaPython`):
- built (`sam build`'s output): Python 3.13 in isolated mode without site-packages, its import
  path exactly Lambda's (the function folder, each layer's python/lib/python3.13/site-packages
  and python/, then the managed runtime's boto3), so what passes here is what deploys;
- source (the fast edit loop of `make run`): devstack's own interpreter and virtualenv, with the
  function folder first.
"""

from __future__ import annotations

import asyncio
import glob
import importlib.util
import json
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack import service_metrics
from devstack import settings as stack_settings
from devstack.binaries import cache_dir
from devstack.template import Function

WORKER_SCRIPT = Path(__file__).with_name("lambda_worker.py")
LAMBDA_PYTHON_VERSION = "3.13"
BOTO3_VERSION = "1.44.5"
READ_SIZE = 1 << 16
_LENGTH = struct.Struct("!i")
# Variables of devstack's own process that must not leak into a Lambda-like worker.
HOST_ONLY_VARS = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE")


class Throttled(RuntimeError):
    """Every worker stayed busy for longer than the acquire deadline."""


class FunctionTimeout(RuntimeError):
    """The invocation ran past the function's Timeout; its worker was replaced."""


class RuntimeMissing(RuntimeError):
    """Python 3.13 or the managed runtime's packages are not installed (run devstack/bootstrap.sh)."""


@dataclass
class Invocation:
    payload: Any
    error: dict[str, Any] | None
    duration_ms: float
    cold: bool
    init_ms: float = 0.0


def find_lambda_python() -> Path | None:
    """A Python 3.13 interpreter: $LAMBDA_PYTHON, then pyenv's, then python3.13 on PATH."""
    given = stack_settings.LAMBDA_PYTHON.read()
    if given:
        return given
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    found = sorted(glob.glob(str(root / "versions" / f"{LAMBDA_PYTHON_VERSION}.*" / "bin"
                                 / f"python{LAMBDA_PYTHON_VERSION}")))
    if found:
        return Path(found[-1])
    which = shutil.which(f"python{LAMBDA_PYTHON_VERSION}")
    return Path(which) if which else None


def managed_runtime_dir() -> Path:
    """What Lambda's python3.13 runtime provides beyond the standard library: boto3 and its deps."""
    return (stack_settings.LAMBDA_RUNTIME_PACKAGES.read()
            or cache_dir() / f"lambda-runtime-py{LAMBDA_PYTHON_VERSION}-boto3-{BOTO3_VERSION}")


class LambdaPython:
    """How a worker process is started and which import path its function sees."""

    def __init__(self, built: bool) -> None:
        self.built = built
        if built:
            python = find_lambda_python()
            if python is None or not python.exists():
                raise RuntimeMissing(
                    f"Python {LAMBDA_PYTHON_VERSION} not found: install it (`pyenv install "
                    f"{LAMBDA_PYTHON_VERSION}`) or point LAMBDA_PYTHON at one")
            if not managed_runtime_dir().is_dir():
                raise RuntimeMissing(f"{managed_runtime_dir()} is missing: run devstack/bootstrap.sh")
            self.argv = [str(python), "-I", "-S", "-B"]  # -B: /var/task and /opt are read-only
        else:
            self.argv = [sys.executable, "-I"]

    def import_path(self, fn: Function) -> list[str]:
        if not self.built:
            return [str(fn.code_dir)]
        site = f"python/lib/python{LAMBDA_PYTHON_VERSION}/site-packages"
        return [str(fn.code_dir),
                *(str(layer / site) for layer in fn.layer_dirs),
                *(str(layer / "python") for layer in fn.layer_dirs),
                str(managed_runtime_dir())]

    def describe(self) -> str:
        return (f"built artifacts on {self.argv[0]} (Lambda's import path)" if self.built
                else f"sources on {self.argv[0]}")


def import_handler(fn: Function) -> Any:
    """fn's handler imported into this process under a name of its own (tests, benchmarks): not
    Lambda's isolation, which the workers give, but the same object a worker calls."""
    module_name, attr = fn.handler.rsplit(".", 1)
    spec = importlib.util.spec_from_file_location(f"_inprocess_{fn.logical_id}",
                                                  fn.code_dir / f"{module_name}.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {fn.handler} from {fn.code_dir}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, attr)


# Where a worker's output lines go: (function, log stream, lines), as Lambda sends them to the
# function's CloudWatch log group (devstack.logfeed ships them on); the lines that arrived
# together come in one call. None: devstack's own stderr.
LogSink = Callable[[str, str, list[str]], None]


class _Worker:
    def __init__(self, fn: Function, runtime: LambdaPython, env: dict[str, str],
                 log_sink: LogSink | None = None) -> None:
        self.fn = fn
        self.last_used = time.monotonic()
        parent, child = socket.socketpair()
        config = {"function": fn.logical_id, "arn": fn.arn, "handler": fn.handler,
                  "memory_mb": fn.memory_mb, "timeout_s": fn.timeout_s,
                  "path": runtime.import_path(fn)}
        output = subprocess.PIPE if log_sink else None
        try:
            self.process = subprocess.Popen(
                [*runtime.argv, str(WORKER_SCRIPT), str(child.fileno()), json.dumps(config)],
                env=env, pass_fds=[child.fileno()], stdin=subprocess.DEVNULL, cwd=str(fn.code_dir),
                stdout=output, stderr=subprocess.STDOUT if log_sink else None)
        finally:
            child.close()
        self.sock = parent
        if log_sink:
            threading.Thread(target=self._read_output, args=(log_sink,), daemon=True,
                             name=f"log-{fn.logical_id}-{self.process.pid}").start()

    def _read_output(self, sink: LogSink) -> None:
        """Whatever the worker wrote since the last read, at once (many lines under load), so the
        gateway's threads wake once per burst rather than once per line."""
        stream = f"devstack/{self.process.pid}"
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        rest = b""
        while chunk := os.read(fd, READ_SIZE):
            *lines, rest = (rest + chunk).split(b"\n")
            if lines:
                sink(self.fn.logical_id, stream, [raw.decode("utf-8", errors="replace") for raw in lines])
        if rest:
            sink(self.fn.logical_id, stream, [rest.decode("utf-8", errors="replace")])

    def request(self, event: Any, request_id: str) -> bytes:
        """One invocation as a message in multiprocessing.connection's framing (lambda_worker's):
        a 4-byte big-endian length, then the JSON. Payloads stay far below its 2 GiB bound."""
        data = json.dumps({"event": event, "request_id": request_id}).encode()
        return _LENGTH.pack(len(data)) + data

    def call(self, message: bytes, timeout_s: float) -> bytes | None:
        """Sends message and waits for the reply (None: none within timeout_s); blocking."""
        self.sock.settimeout(None)
        self.sock.sendall(message)
        if not select.select([self.sock], [], [], timeout_s)[0]:
            return None
        buf = self.sock.recv(READ_SIZE)
        while (need := _missing(buf)) > 0:
            chunk = self.sock.recv(max(need, READ_SIZE))
            if not chunk:
                raise EOFError("worker closed its connection")
            buf += chunk
        return buf[_LENGTH.size:]

    async def acall(self, message: bytes) -> bytes:
        """Sends message and waits for the reply on the running event loop."""
        loop = asyncio.get_running_loop()
        self.sock.setblocking(False)
        await loop.sock_sendall(self.sock, message)
        buf = await loop.sock_recv(self.sock, READ_SIZE)
        while (need := _missing(buf)) > 0:
            chunk = await loop.sock_recv(self.sock, max(need, READ_SIZE))
            if not chunk:
                raise EOFError("worker closed its connection")
            buf += chunk
        return buf[_LENGTH.size:]

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(5)
        self.sock.close()


class WorkerPool:
    """Warm instances per function: at most `size` of one function at once, `max_total` in all.

    When every slot is taken, an idle instance of another function (the least recently used) is
    shut down to make room, as Lambda reclaims idle environments. `invoke` blocks (call it from a
    thread); `ainvoke` waits on the running event loop without taking a thread.
    """

    def __init__(self, size: int, base_env: dict[str, str], runtime: LambdaPython | None = None,
                 max_total: int | None = None, acquire_timeout_s: float = 30.0,
                 log_sink: LogSink | None = None) -> None:
        self.size = size
        self.log_sink = log_sink
        self.max_total = max_total or size * 4
        self.base_env = base_env
        self.runtime = runtime or LambdaPython(built=False)
        self.acquire_timeout_s = acquire_timeout_s
        self._idle: dict[str, list[_Worker]] = defaultdict(list)
        self._busy: dict[str, int] = defaultdict(int)
        self._total = 0
        self._cond = threading.Condition()
        # Event-loop callers waiting for a slot, woken one at a time as slots free up.
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()
        self.invocations = 0
        self.cold_starts = 0

    def _env(self, fn: Function) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in HOST_ONLY_VARS}
        env.update(fn.env)
        # The local environment wins over the template's plain values, as `sam local --env-vars` does.
        env.update({k: v for k, v in self.base_env.items() if k not in HOST_ONLY_VARS})
        region = env.get("AWS_DEFAULT_REGION", "us-east-1")
        env.update({
            "AWS_LAMBDA_FUNCTION_NAME": fn.logical_id,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{fn.logical_id}",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_python{LAMBDA_PYTHON_VERSION}",
            "AWS_REGION": region, "AWS_DEFAULT_REGION": region,
            "LAMBDA_TASK_ROOT": str(fn.code_dir), "_HANDLER": fn.handler,
        })
        return env

    def _lru_idle(self) -> _Worker | None:
        idle = [w for workers in self._idle.values() for w in workers]
        return min(idle, key=lambda w: w.last_used) if idle else None

    def _try_acquire(self, fn: Function) -> tuple[_Worker | None, bool, _Worker | None]:
        """Under self._cond: (an idle worker, whether a new one may start, a victim to kill)."""
        mine = self._idle[fn.logical_id]
        if mine:
            self._busy[fn.logical_id] += 1
            return mine.pop(), False, None
        if self._busy[fn.logical_id] < self.size:
            if self._total < self.max_total:
                self._total += 1
                self._busy[fn.logical_id] += 1
                return None, True, None
            victim = self._lru_idle()
            if victim is not None:
                self._idle[victim.fn.logical_id].remove(victim)
                self._busy[fn.logical_id] += 1
                return None, True, victim
        return None, False, None

    def _start(self, fn: Function, victim: _Worker | None) -> _Worker:
        if victim is not None:
            victim.kill()
        try:
            return _Worker(fn, self.runtime, self._env(fn), self.log_sink)
        except Exception:
            with self._cond:
                self._total -= 1
                self._busy[fn.logical_id] -= 1
                self._wake()
            raise

    def _acquire(self, fn: Function) -> _Worker:
        deadline = time.monotonic() + self.acquire_timeout_s
        with self._cond:
            while True:
                worker, start, victim = self._try_acquire(fn)
                if worker is not None:
                    return worker
                if start:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise Throttled(f"{fn.logical_id}: all workers busy for {self.acquire_timeout_s}s")
                self._cond.wait(remaining)
        return self._start(fn, victim)

    async def _aacquire(self, fn: Function) -> _Worker:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.acquire_timeout_s):
                while True:
                    with self._cond:
                        worker, start, victim = self._try_acquire(fn)
                        if worker is not None:
                            return worker
                        if not start:
                            waiter = loop.create_future()
                            self._waiters.append((loop, waiter))
                    if start:
                        break
                    try:
                        await waiter
                    except BaseException:
                        with self._cond:
                            try:
                                self._waiters.remove((loop, waiter))
                            except ValueError:  # woken for a slot it will not take: pass it on
                                self._wake()
                        raise
        except TimeoutError:
            raise Throttled(f"{fn.logical_id}: all workers busy for {self.acquire_timeout_s}s") from None
        return await loop.run_in_executor(None, self._start, fn, victim)

    def _wake(self) -> None:
        """Under self._cond: a slot may be free; wake the thread callers and one loop caller."""
        self._cond.notify_all()
        while self._waiters:
            loop, waiter = self._waiters.popleft()
            if not waiter.done():
                loop.call_soon_threadsafe(_resolve, waiter)
                return

    def _release(self, worker: _Worker, keep: bool) -> None:
        if not keep:
            worker.kill()
        with self._cond:
            self._busy[worker.fn.logical_id] -= 1
            if keep:
                worker.last_used = time.monotonic()
                self._idle[worker.fn.logical_id].append(worker)
            else:
                self._total -= 1
            self._wake()

    def _result(self, raw: bytes) -> Invocation:
        reply = json.loads(raw)
        with self._cond:
            self.invocations += 1
            self.cold_starts += int(reply["cold"])
        payload = reply["payload"]
        ok = reply["status"] == "ok"
        return Invocation(payload if ok else None, None if ok else payload, reply["duration_ms"],
                          reply["cold"], reply.get("init_ms", 0.0))

    def invoke(self, fn: Function, event: Any, request_id: str | None = None) -> Invocation:
        """Runs one invocation on a warm (or new) instance of fn; blocks, so call it from a thread.
        Counted as Lambda counts it (devstack.service_metrics)."""
        try:
            inv = self._invoke(fn, event, request_id)
        except (Throttled, FunctionTimeout) as exc:
            _counted(fn, exc)
            raise
        _counted(fn, inv)
        return inv

    async def ainvoke(self, fn: Function, event: Any, request_id: str | None = None) -> Invocation:
        """`invoke` on the running event loop: no thread waits, for a worker or for its answer."""
        try:
            inv = await self._ainvoke(fn, event, request_id)
        except (Throttled, FunctionTimeout) as exc:
            _counted(fn, exc)
            raise
        _counted(fn, inv)
        return inv

    def _invoke(self, fn: Function, event: Any, request_id: str | None = None) -> Invocation:
        worker = self._acquire(fn)
        try:
            raw = worker.call(worker.request(event, request_id or str(uuid.uuid4())), fn.timeout_s)
        except (EOFError, OSError) as exc:
            self._release(worker, keep=False)
            return _exited(exc)
        except BaseException:
            self._release(worker, keep=False)
            raise
        if raw is None:
            self._release(worker, keep=False)
            raise FunctionTimeout(f"{fn.logical_id} timed out after {fn.timeout_s}s")
        self._release(worker, keep=True)
        return self._result(raw)

    async def _ainvoke(self, fn: Function, event: Any, request_id: str | None = None) -> Invocation:
        worker = await self._aacquire(fn)
        try:
            message = worker.request(event, request_id or str(uuid.uuid4()))
            async with asyncio.timeout(fn.timeout_s):
                raw = await worker.acall(message)
        except TimeoutError:
            self._release(worker, keep=False)
            raise FunctionTimeout(f"{fn.logical_id} timed out after {fn.timeout_s}s") from None
        except (EOFError, OSError) as exc:
            self._release(worker, keep=False)
            return _exited(exc)
        except BaseException:  # cancelled mid-invocation: the worker's state is unknown
            self._release(worker, keep=False)
            raise
        self._release(worker, keep=True)
        return self._result(raw)

    def close(self) -> None:
        with self._cond:
            workers = [w for ws in self._idle.values() for w in ws]
            self._idle.clear()
        for w in workers:
            w.kill()


def _counted(fn: Function, outcome: Invocation | Exception) -> None:
    """Counts an invocation's outcome as Lambda would (devstack.service_metrics): a throttle is
    no invocation; a timeout and an unhandled error are errors."""
    if isinstance(outcome, Throttled):
        service_metrics.lambda_invoked(fn.logical_id, throttled=True)
    else:
        service_metrics.lambda_invoked(fn.logical_id, error=not isinstance(outcome, Invocation)
                                       or outcome.error is not None)


def _missing(buf: bytes) -> int:
    """Bytes still to read for the whole message that starts buf."""
    if not buf:
        raise EOFError("worker closed its connection")
    if len(buf) < _LENGTH.size:
        return _LENGTH.size - len(buf)
    return _LENGTH.size + _LENGTH.unpack_from(buf)[0] - len(buf)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _exited(exc: BaseException) -> Invocation:
    return Invocation(None, {"errorMessage": f"worker exited: {exc}", "errorType": "Runtime.ExitError"},
                      0.0, True)
