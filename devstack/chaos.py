"""The fault matrix's faults, made on a running local stack: each a context manager that injects
its fault on entry and heals it on exit (tests/e2e/test_fault_matrix.py, bench/soak.py).

- a service SIGKILLed (PostgreSQL's whole process group: postmaster and backends, as a crash),
  then restarted;
- a service stalled with SIGSTOP, then continued;
- the state Redis failed over losing writes: the one master-to-replica loopback connection cut
  with iptables rules (removed on exit whatever happens), the master SIGKILLed, Sentinel
  promoting the replica that missed them; then the old master back and made master again;
- the state Redis emptied (FLUSHALL);
- a cache shard's master stalled long enough for Sentinel to fail it over, then made master again.

Every fault leaves the topology as it found it (`fail_back`), so clients that reach a server by
its URL rather than through Sentinel still write to a master.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping

import redis
from redis.sentinel import Sentinel

from devstack.services import Stack
from devstack.stack_state import redis_client
from devstack.supervisor import wait_until

Fault = Callable[[Stack, Mapping[str, str]], contextlib.AbstractContextManager[None]]


def sentinel_addresses(env: Mapping[str, str]) -> tuple[tuple[str, int], ...]:
    return tuple((h, int(p)) for h, _, p in (a.rpartition(":") for a in env["REDIS_SENTINELS"].split(",")))


def stack_sentinel(env: Mapping[str, str]) -> Sentinel:
    """The stack's Sentinels, reached from its environment alone (password, TLS)."""
    ca_file = env.get("REDIS_TLS_CA_FILE")
    options: dict[str, object] = {"password": env.get("REDIS_PASSWORD") or None,
                                  "socket_timeout": 2.0, "socket_connect_timeout": 2.0}
    if ca_file:
        options |= {"ssl": True, "ssl_ca_certs": ca_file}
    return Sentinel(list(sentinel_addresses(env)), sentinel_kwargs=options, **options)


def fail_back(sentinel: Sentinel, name: str, address: tuple[str, int], timeout_s: float = 120.0) -> None:
    """Makes `address` the master of `name` again once it has rejoined as a replica.

    Sentinel promotes only a replica it sees linked to its master, so this waits for Sentinel's
    own report of that link before asking; each Sentinel is asked in turn (one with a stale view
    answers NOGOODSLAVE), again until the deadline. A failure says what each Sentinel saw."""
    if _master_of(sentinel, name) == address:
        return

    def rejoined() -> bool:
        return any((r["ip"], int(r["port"])) == address and r.get("role-reported") == "slave"
                   and r.get("master-link-status") == "ok" and not r.get("is_sdown")
                   and not r.get("is_disconnected")
                   for r in sentinel.sentinels[0].sentinel_slaves(name))

    deadline = time.monotonic() + timeout_s
    if not wait_until(rejoined, timeout_s / 2, interval=0.2):
        raise RuntimeError(f"{name}'s old master {address} did not rejoin: {_diagnosis(sentinel, name)}")
    while _master_of(sentinel, name) != address:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not fail back to {address}: {_diagnosis(sentinel, name)}")
        for asked in sentinel.sentinels:
            # Refused while another failover runs or while this Sentinel's view is stale.
            with contextlib.suppress(redis.RedisError):
                asked.sentinel_failover(name)
                break
        wait_until(lambda: _master_of(sentinel, name) == address, 10, interval=0.2)


def _master_of(sentinel: Sentinel, name: str) -> tuple[str, int] | None:
    with contextlib.suppress(redis.RedisError):
        return sentinel.discover_master(name)
    return None


def _diagnosis(sentinel: Sentinel, name: str) -> str:
    """What each Sentinel reports of `name`'s master and replicas, for a fail-back that did not happen."""
    seen: dict[str, object] = {}
    for i, s in enumerate(sentinel.sentinels):
        try:
            master = s.sentinel_master(name)
            seen[f"sentinel-{i}"] = {
                "master": (master.get("ip"), master.get("port"), master.get("flags")),
                "failover_state": master.get("failover-state"),
                "replicas": [(r.get("port"), r.get("flags"), r.get("role-reported"),
                              r.get("master-link-status")) for r in s.sentinel_slaves(name)]}
        except redis.RedisError as exc:
            seen[f"sentinel-{i}"] = repr(exc)
    return repr(seen)


def restart(stack: Stack, name: str) -> None:
    """Starts a service that was killed (its stale pid file removed first)."""
    stack.pidfile(name).unlink(missing_ok=True)
    stack.start(next(s for s in stack.services() if s.name == name))


def _reap(pid: int) -> None:
    """Collects a killed child of this process (when this process started the stack)."""
    with contextlib.suppress(ChildProcessError):
        wait_until(lambda: os.waitpid(pid, os.WNOHANG)[0] == pid, 10)


def _port_names(stack: Stack) -> dict[int, str]:
    return {port: name for name, port in stack.ports.items()}


@contextlib.contextmanager
def killed(stack: Stack, name: str, *, group: bool = False, down_s: float = 1.0) -> Iterator[None]:
    """SIGKILL (the whole process group with `group`), `down_s` of outage, then a restart."""
    pid = stack.pid(name)
    if not pid:
        raise RuntimeError(f"{name} is not running")
    (os.killpg if group else os.kill)(pid, signal.SIGKILL)
    _reap(pid)
    try:
        yield
        time.sleep(down_s)
    finally:
        restart(stack, name)


@contextlib.contextmanager
def stalled(stack: Stack, name: str, seconds: float) -> Iterator[None]:
    """SIGSTOP on the service's process group for `seconds`, then SIGCONT."""
    pid = stack.pid(name)
    if not pid:
        raise RuntimeError(f"{name} is not running")
    os.killpg(pid, signal.SIGSTOP)
    try:
        yield
        time.sleep(seconds)
    finally:
        os.killpg(pid, signal.SIGCONT)


_IPTABLES = shutil.which("iptables") or "/usr/sbin/iptables"  # sbin is off some users' PATH


def can_cut_links() -> bool:
    """Whether this process may add iptables rules (root, and a working iptables)."""
    if os.geteuid() != 0 or not os.access(_IPTABLES, os.X_OK):
        return False
    return subprocess.run([_IPTABLES, "-w", "-S", "INPUT"], capture_output=True).returncode == 0


def _iptables(*args: str) -> None:
    subprocess.run([_IPTABLES, "-w", *args], check=True, capture_output=True)


@contextlib.contextmanager
def replication_cut(master_port: int, replica_port: int) -> Iterator[None]:
    """Drops the one loopback TCP connection between a master's port and a replica's local
    port, both ways; the rules are removed on exit whatever happened."""
    rules = [["-p", "tcp", "-i", "lo", "--sport", str(master_port), "--dport", str(replica_port),
              "-j", "DROP"],
             ["-p", "tcp", "-i", "lo", "--sport", str(replica_port), "--dport", str(master_port),
              "-j", "DROP"]]
    added = []
    try:
        for rule in rules:
            _iptables("-I", "INPUT", *rule)
            added.append(rule)
        yield
    finally:
        for rule in added:
            _iptables("-D", "INPUT", *rule)


@contextlib.contextmanager
def state_failover_losing_writes(stack: Stack, env: Mapping[str, str]) -> Iterator[None]:
    """Writes made while the link is cut reach only the master, which is then killed: Sentinel
    promotes the replica without them (a probe key proves the cut held)."""
    sentinel = stack_sentinel(env)
    _, master_port = sentinel.discover_master("state")
    master = redis_client(env, port=master_port)
    [link] = master.client_list(_type="replica")
    replica_port = int(link["addr"].rpartition(":")[2])
    probe = f"stockpred:fault-probe:{uuid.uuid4().hex}"
    name = _port_names(stack)[master_port]
    try:
        with replication_cut(master_port, replica_port):
            master.set(probe, "written before the failover")
            yield
            time.sleep(1.5)
            pid = stack.pid(name)
            os.kill(pid, signal.SIGKILL)
            _reap(pid)
            if not wait_until(lambda: sentinel.discover_master("state")[1] != master_port, 15):
                raise RuntimeError("Sentinel did not promote the replica")
        new = redis_client(env, port=sentinel.discover_master("state")[1])
        if new.get(probe) is not None:
            raise RuntimeError("the cut did not hold: the replica received the probe")
    finally:
        if not stack.pid(name):
            restart(stack, name)  # back, Sentinel makes it a replica of the new master
    fail_back(sentinel, "state", ("127.0.0.1", master_port))


@contextlib.contextmanager
def state_emptied(stack: Stack, env: Mapping[str, str]) -> Iterator[None]:
    _, port = stack_sentinel(env).discover_master("state")
    redis_client(env, port=port).flushall()
    yield


@contextlib.contextmanager
def cache_shard_stalled(stack: Stack, env: Mapping[str, str]) -> Iterator[None]:
    sentinel = stack_sentinel(env)
    _, port = sentinel.discover_master("cache-1")
    with stalled(stack, _port_names(stack)[port], 4.0):
        yield
    fail_back(sentinel, "cache-1", ("127.0.0.1", port))


FAULTS: dict[str, Fault] = {
    "postgres SIGKILL mid-trade": lambda s, e: killed(s, "postgres", group=True),
    "mongodb store SIGKILL": lambda s, e: killed(s, "ferretdb"),
    "state redis failover losing writes": state_failover_losing_writes,
    "state redis emptied": state_emptied,
    "cache shard master SIGSTOP": cache_shard_stalled,
    "moto SIGSTOP": lambda s, e: stalled(s, "moto", 3.0),
    "opensearch SIGSTOP": lambda s, e: stalled(s, "opensearch", 5.0),
}
NEEDS_IPTABLES = {"state redis failover losing writes"}


def available() -> list[str]:
    """The faults this process can make here."""
    cut = can_cut_links()
    return [f for f in FAULTS if cut or f not in NEEDS_IPTABLES]
