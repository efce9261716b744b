"""Runs a stack's services as its child processes. A `Service` says how to start one process,
when it is ready and how to stop it (service_specs makes them); the `Supervisor` of a stack
launches each in its own session with a pid file in the stack's run/ and its output in log/,
waits for its readiness check within its deadline, stops it by PID (SIGKILL after a grace
period), and reports which run. The process helpers it uses are here too: pid_alive,
wait_until, and run_as (a child as another user).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from devstack.stack_state import StackState


class ServiceError(RuntimeError):
    """A service could not be started or stopped; the message says which and why."""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return True


def wait_until(check: Callable[[], bool], deadline_s: float, interval: float = 0.1) -> bool:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            if check():
                return True
        except Exception:
            pass
        time.sleep(interval)
    return False


def run_as(user: str | None) -> dict[str, object]:
    """Popen's arguments that run a child as `user` (None: as ourselves), with the user's own
    supplementary groups: `stockpred-services` lets it reach its folder in the stack's."""
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid,
            "extra_groups": os.getgrouplist(user, entry.pw_gid)}


@dataclass
class Service:
    """One process of the stack: how to start it, when it is ready, how to stop it."""

    name: str
    argv: list[str]
    ready: Callable[[], bool]
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    prepare: Callable[[], None] | None = None
    after_start: Callable[[], None] | None = None
    before_stop: Callable[[], None] | None = None
    stop_signal: int = signal.SIGTERM
    ready_deadline_s: float = 60.0
    # Launched before the other services and waited for after them, so that a long boot
    # (OpenSearch's JVM) overlaps theirs instead of adding to it.
    slow_start: bool = False
    # False: the child gets PATH, the locale and `env` only, not the caller's environment (which may
    # hold secrets) - for services that run as another user.
    inherit_env: bool = True


class Supervisor:
    """Starts, waits for and stops the services of one stack, by the pid files in its folder."""

    def __init__(self, stack: StackState) -> None:
        self.stack = stack

    def pid(self, name: str) -> int | None:
        """The PID of the stack's service `name` while it runs (from its pid file), else None."""
        try:
            pid = int(self.stack.pidfile(name).read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def start(self, svc: Service) -> None:
        launched = self.launch(svc)
        if launched:
            self.await_ready(svc, *launched)

    def launch(self, svc: Service) -> tuple[subprocess.Popen, float] | None:
        """Starts the service's process (None if it runs already); `await_ready` waits for it."""
        stack = self.stack
        if self.pid(svc.name):
            return None
        for d in ("run", "log", "data"):
            stack.path(d).mkdir(parents=True, exist_ok=True)
        if svc.prepare:
            svc.prepare()
        logf = open(stack.logfile(svc.name), "ab")  # noqa: SIM115 - handed to the child
        base = (stack.environ if svc.inherit_env else
                {k: v for k, v in stack.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ")})
        started = time.monotonic()
        proc = subprocess.Popen(
            svc.argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**base, **svc.env}, start_new_session=True,
            cwd=str(stack.root), **run_as(svc.user),
        )
        logf.close()
        stack.pidfile(svc.name).write_text(f"{proc.pid}\n")
        return proc, started

    def await_ready(self, svc: Service, proc: subprocess.Popen, started: float) -> None:
        stack = self.stack
        if not wait_until(lambda: proc.poll() is None and svc.ready(), svc.ready_deadline_s):
            tail = stack.logfile(svc.name).read_text(errors="replace")[-2000:]
            self.stop_pid(svc.name, proc.pid, svc.stop_signal)
            raise ServiceError(f"{svc.name} did not become ready in {svc.ready_deadline_s:.0f}s; "
                               f"log {stack.logfile(svc.name)}:\n{tail}")
        if svc.after_start:
            svc.after_start()
        stack.log(f"  {svc.name:<14} ready in {time.monotonic() - started:4.1f}s (pid {proc.pid})")

    def stop_pid(self, name: str, pid: int, sig: int, deadline_s: float = 20.0) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        if not wait_until(lambda: not pid_alive(pid), deadline_s):
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not pid_alive(pid), 5)
        # Reap it if it is our own child (tests start the stack in-process).
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        self.stack.pidfile(name).unlink(missing_ok=True)

    def start_all(self, services: list[Service]) -> None:
        """Starts `services` in their order, each ready before the next; those already running are
        left as they are."""
        # Slow starters boot while the others start; they are waited for last.
        launched = [(svc, self.launch(svc)) for svc in services if svc.slow_start]
        for svc in services:
            if not svc.slow_start:
                self.start(svc)
        for svc, started in launched:
            if started:
                self.await_ready(svc, *started)

    def stop_all(self, services: list[Service]) -> None:
        """Stops `services` in the reverse order, each after its `before_stop`; forgets the pid
        files of those that no longer run."""
        for svc in reversed(services):
            pid = self.pid(svc.name)
            if pid:
                if svc.before_stop:
                    try:
                        svc.before_stop()
                    except Exception as exc:
                        self.stack.log(f"  {svc.name}: could not save state before stopping: {exc}")
                self.stop_pid(svc.name, pid, svc.stop_signal)
                self.stack.log(f"  {svc.name:<14} stopped (pid {pid})")
            else:
                self.stack.pidfile(svc.name).unlink(missing_ok=True)

    def status(self, services: list[Service]) -> list[tuple[str, str, int | None]]:
        """(name, state, pid) of each of `services`: stopped, ready, or running but not answering."""
        rows: list[tuple[str, str, int | None]] = []
        for svc in services:
            pid = self.pid(svc.name)
            if pid is None:
                rows.append((svc.name, "stopped", None))
                continue
            try:
                ok = svc.ready()
            except Exception:
                ok = False
            rows.append((svc.name, "ready" if ok else "running, not answering", pid))
        return rows
