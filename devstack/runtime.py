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

import glob
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from devstack.template import Function

WORKER_SCRIPT = Path(__file__).with_name("lambda_worker.py")
LAMBDA_PYTHON_VERSION = "3.13"
BOTO3_VERSION = "1.44.5"
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


def cache_dir() -> Path:
    return Path(os.environ.get("STOCKPRED_CACHE_DIR")
                or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "stockpred")


def find_lambda_python() -> Path | None:
    """A Python 3.13 interpreter: $LAMBDA_PYTHON, then pyenv's, then python3.13 on PATH."""
    given = os.environ.get("LAMBDA_PYTHON")
    if given:
        return Path(given)
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    found = sorted(glob.glob(str(root / "versions" / f"{LAMBDA_PYTHON_VERSION}.*" / "bin"
                                 / f"python{LAMBDA_PYTHON_VERSION}")))
    if found:
        return Path(found[-1])
    which = shutil.which(f"python{LAMBDA_PYTHON_VERSION}")
    return Path(which) if which else None


def managed_runtime_dir() -> Path:
    """What Lambda's python3.13 runtime provides beyond the standard library: boto3 and its deps."""
    return Path(os.environ.get("LAMBDA_RUNTIME_PACKAGES")
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


# Where a worker's output lines go: (function, log stream, line), as Lambda sends them to the
# function's CloudWatch log group (devstack.logfeed ships them on). None: devstack's own stderr.
LogSink = Callable[[str, str, str], None]


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
        self.conn = Connection(parent.detach())
        if log_sink:
            threading.Thread(target=self._read_output, args=(log_sink,), daemon=True,
                             name=f"log-{fn.logical_id}-{self.process.pid}").start()

    def _read_output(self, sink: LogSink) -> None:
        stream = f"devstack/{self.process.pid}"
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            sink(self.fn.logical_id, stream, raw.decode("utf-8", errors="replace").rstrip("\n"))

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(5)
        self.conn.close()


class WorkerPool:
    """Warm instances per function: at most `size` of one function at once, `max_total` in all.

    When every slot is taken, an idle instance of another function (the least recently used) is
    shut down to make room, as Lambda reclaims idle environments.
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

    def _acquire(self, fn: Function) -> _Worker:
        deadline = time.monotonic() + self.acquire_timeout_s
        victim = None
        with self._cond:
            while True:
                mine = self._idle[fn.logical_id]
                if mine:
                    worker = mine.pop()
                    self._busy[fn.logical_id] += 1
                    return worker
                if self._busy[fn.logical_id] < self.size:
                    if self._total < self.max_total:
                        self._total += 1
                        break
                    victim = self._lru_idle()
                    if victim is not None:
                        self._idle[victim.fn.logical_id].remove(victim)
                        break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise Throttled(f"{fn.logical_id}: all workers busy for {self.acquire_timeout_s}s")
                self._cond.wait(remaining)
            self._busy[fn.logical_id] += 1
        if victim is not None:
            victim.kill()
        try:
            return _Worker(fn, self.runtime, self._env(fn), self.log_sink)
        except Exception:
            with self._cond:
                self._total -= 1
                self._busy[fn.logical_id] -= 1
                self._cond.notify_all()
            raise

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
            self._cond.notify_all()

    def invoke(self, fn: Function, event: Any, request_id: str | None = None) -> Invocation:
        """Runs one invocation on a warm (or new) instance of fn; blocks, so call it from a thread."""
        worker = self._acquire(fn)
        try:
            worker.conn.send_bytes(json.dumps({"event": event,
                                               "request_id": request_id or str(uuid.uuid4())}).encode())
            if not worker.conn.poll(fn.timeout_s):
                self._release(worker, keep=False)
                raise FunctionTimeout(f"{fn.logical_id} timed out after {fn.timeout_s}s")
            reply = json.loads(worker.conn.recv_bytes())
        except (EOFError, OSError) as exc:
            self._release(worker, keep=False)
            return Invocation(None, {"errorMessage": f"worker exited: {exc}",
                                     "errorType": "Runtime.ExitError"}, 0.0, True)
        self._release(worker, keep=True)
        with self._cond:
            self.invocations += 1
            self.cold_starts += int(reply["cold"])
        payload = reply["payload"]
        ok = reply["status"] == "ok"
        return Invocation(payload if ok else None, None if ok else payload, reply["duration_ms"],
                          reply["cold"], reply.get("init_ms", 0.0))

    def close(self) -> None:
        with self._cond:
            workers = [w for ws in self._idle.values() for w in ws]
            self._idle.clear()
        for w in workers:
            w.kill()
