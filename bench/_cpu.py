"""CPU time per process of a running stack, from /proc/<pid>/stat (robust to a loaded machine).

`StackCpu(stack)` labels the stack's processes: its services by name (gateway, websocket,
opensearch, ...), each Lambda worker by its function's logical id, and this process as `bench`.
`snapshot()` reads their user + system CPU seconds; `delta(before, after)` sums per label.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

from devstack.services import Stack

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of one process (its own threads, not its children), or None if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _worker_function(pid: int) -> str | None:
    """The logical id of the function a devstack worker serves (its argv's config JSON)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    for arg in argv:
        if arg.startswith(b"{") and b'"function"' in arg:
            try:
                return json.loads(arg)["function"]
            except (ValueError, KeyError):
                return None
    return None


class StackCpu:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack

    def processes(self) -> dict[int, str]:
        """pid -> label, for the stack's services, their Lambda workers, and this process."""
        labels = {os.getpid(): "bench"}
        for svc in self.stack.services():
            pid = self.stack.pid(svc.name)
            if pid is None:
                continue
            labels[pid] = svc.name
            for child in _children(pid):
                function = _worker_function(child)
                if function:
                    labels[child] = f"{svc.name}: {function}"
        return labels

    def snapshot(self) -> dict[int, tuple[str, float]]:
        out = {}
        for pid, label in self.processes().items():
            seconds = cpu_seconds(pid)
            if seconds is not None:
                out[pid] = (label, seconds)
        return out


def delta(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds spent per label between two snapshots (a process new since `before` counts whole)."""
    spent: dict[str, float] = defaultdict(float)
    for pid, (label, seconds) in after.items():
        spent[label] += seconds - before.get(pid, (label, 0.0))[1]
    return dict(spent)
