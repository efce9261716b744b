"""The health of each dependency, probed in parallel, each within a deadline.

`check()` asks every dependency one cheap question (a `SELECT 1`, a `ping`, a describe call, a
breaker's state) and reports its status (`up`, `degraded` or `down`), its latency and, when it is
not up, why. The overall status is `down` when a store the platform cannot work without is down
(CRITICAL: the ledger, the accounts, the state Redis), `degraded` when anything else is not up,
else `ok`.

Each deep check also writes its result as metric lines (stockpred.observability.metrics, high resolution):
DependencyDown (1 when down, else 0) by Dependency, and DependenciesDown (how many are down),
which the template's DependencyDownAlarm watches; `degraded` is shown, never alarmed on. On AWS
the LogsFunction runs a check every minute.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import time
from collections.abc import Callable
from typing import Any

from stockpred import config
from stockpred.cloud import aws
from stockpred.market import breakers
from stockpred.observability import metrics, opensearch
from stockpred.stores import mongo, postgres, redis_stores

DEADLINE_S = 2.0
CRITICAL = ("postgres", "mongo", "state_redis")
STATUSES = ("up", "degraded", "down")


class Degraded(Exception):
    """The dependency answers, but not fully (a cache shard of several is down, a breaker open)."""


def _postgres() -> str:
    conn = postgres.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()
    finally:
        conn.close()
    return "SELECT 1 answered"


def _mongo() -> str:
    mongo.client().admin.command("ping")
    return "ping answered"


def _state_redis() -> str:
    redis_stores.state().ping()
    return "ping answered"


def _cache_ring() -> str:
    clients = redis_stores.cache_ring().clients
    failed = []
    for name, client in clients.items():
        try:
            client.ping()
        except Exception:  # any failure of a shard is that shard being down
            failed.append(name)
    if len(failed) == len(clients):
        raise RuntimeError(f"no cache shard answers ({len(clients)} of {len(clients)} down)")
    if failed:
        raise Degraded(f"{len(failed)} of {len(clients)} cache shards down: its keys load from the source")
    return f"{len(clients)} of {len(clients)} shards answer"


def _step_functions() -> str:
    arn = config.load().trade_state_machine_arn
    status = aws.client("stepfunctions").describe_state_machine(stateMachineArn=arn).get("status", "ACTIVE")
    if status != "ACTIVE":
        raise RuntimeError(f"the trade state machine is {status}")
    return "the trade state machine is ACTIVE"


def _market_breaker() -> str:
    state = breakers.states()["alphavantage"]
    if state["state"] != "closed":
        raise Degraded(f"the provider's breaker is {state['state']} after {state['failures']} failures: "
                       "prices come from the other providers")
    return f"closed ({state['failures']} recent failures)"


def _opensearch() -> str:
    status = opensearch.client().cluster.health(params={"request_timeout": DEADLINE_S})["status"]
    if status == "red":
        raise RuntimeError("the log store's cluster is red")
    return f"cluster {status}"


PROBES: dict[str, Callable[[], str]] = {
    "postgres": _postgres,
    "mongo": _mongo,
    "state_redis": _state_redis,
    "cache_ring": _cache_ring,
    "step_functions": _step_functions,
    "market_breaker": _market_breaker,
    "opensearch": _opensearch,
}

# Daemon-like workers shared by every check: a probe past its deadline keeps its thread until
# its own client times out, and is no longer waited for.
_pool = concurrent.futures.ThreadPoolExecutor(max_workers=2 * len(PROBES), thread_name_prefix="health")


def _run(probe: Callable[[], str]) -> tuple[str, str, float]:
    started = time.perf_counter()
    try:
        detail = probe()
        status = "up"
    except Degraded as exc:
        status, detail = "degraded", str(exc)
    except Exception as exc:  # whatever a client raises, the dependency is down
        status, detail = "down", f"{type(exc).__name__}: {str(exc)[:200]}"
    return status, detail, round((time.perf_counter() - started) * 1000, 1)


def overall(dependencies: dict[str, dict[str, Any]]) -> str:
    if any(dependencies[name]["status"] == "down" for name in CRITICAL if name in dependencies):
        return "down"
    return "ok" if all(d["status"] == "up" for d in dependencies.values()) else "degraded"


def check(probes: dict[str, Callable[[], str]] | None = None, deadline_s: float = DEADLINE_S,
          emit: bool = True) -> dict[str, Any]:
    """Every dependency's status, latency (ms) and detail, and the overall status; with `emit`,
    written as metric lines too."""
    probes = PROBES if probes is None else probes
    futures = {name: _pool.submit(_run, probe) for name, probe in probes.items()}
    concurrent.futures.wait(futures.values(), timeout=deadline_s)
    dependencies: dict[str, dict[str, Any]] = {}
    for name, future in futures.items():
        if future.done():
            status, detail, latency = future.result()
        else:
            status, detail, latency = "down", f"no answer within {deadline_s:g} s", None
        dependencies[name] = {"status": status, "latency_ms": latency, "detail": detail}
    report = {"status": overall(dependencies), "checked_at": dt.datetime.now(dt.UTC).isoformat(),
              "dependencies": dependencies}
    if emit:
        record(dependencies)
    return report


def record(dependencies: dict[str, dict[str, Any]]) -> None:
    """The check's result as metric lines: DependencyDown by Dependency, and DependenciesDown."""
    for name, dep in dependencies.items():
        metrics.write(metrics.document({"DependencyDown": (int(dep["status"] == "down"), "Count")},
                                       {"Dependency": name}, high_resolution=True))
    down = sum(dep["status"] == "down" for dep in dependencies.values())
    metrics.write(metrics.document({"DependenciesDown": (down, "Count")}, high_resolution=True))
