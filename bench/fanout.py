"""Benchmark: WebSocket fan-out through devstack's WebSocket API, in one run.

For 1, 100 and 1000 subscribers in one room: delivery latency from the moment a broadcast
starts (stockpred.realtime.broadcast_symbol, as a function does it: one PostToConnection per
subscriber through the management API, 16 at a time) to receipt by each client, p50 and p99,
and deliveries per second. Clients are aiohttp WebSocket connections in this process; they join
the room through the real $connect route, and the room membership is then set in Redis directly
so that 1000 subscriptions do not dominate the run.

Run: .venv/bin/python -m bench.fanout [--sizes 1,100,1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import time
import uuid

import aiohttp
import redis
import requests

from devstack.services import ephemeral_stack

ROOM = "FANOUT"
BENCH_ENV = {"DEVSTACK_SCHEDULES": "off"}


PASSWORD = "quiet harbour lantern 42"  # passes the sign-in rules (12+ characters, not common)

def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def measure(env: dict[str, str], token: str, user: str, size: int,
                  broadcasts: int) -> tuple[float, ...]:
    from stockpred import realtime

    state = redis.Redis.from_url(env["REDIS_URL"])
    received: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        sockets = await asyncio.gather(*[session.ws_connect(f"{env['STOCKPRED_WS_URL']}?token={token}")
                                         for _ in range(size)])
        conns = [c.decode() for c in state.smembers(f"stockpred:ws:user:{user}")]
        state.delete(f"stockpred:ws:room:{ROOM}")
        state.sadd(f"stockpred:ws:room:{ROOM}", *conns)

        async def listen(ws: aiohttp.ClientWebSocketResponse) -> None:
            for _ in range(broadcasts):
                msg = await ws.receive_json(timeout=60)
                received.append(time.time() - msg["sent"])

        listeners = [asyncio.create_task(listen(ws)) for ws in sockets]
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        for i in range(broadcasts):
            await loop.run_in_executor(None, realtime.broadcast_symbol, ROOM, {"sent": time.time(), "i": i})
        await asyncio.gather(*listeners)
        wall = time.perf_counter() - t0
        for ws in sockets:
            await ws.close()
        state.delete(f"stockpred:ws:user:{user}")
    return _percentile(received, 0.50), _percentile(received, 0.99), len(received) / wall


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,100,1000", help="subscribers per run (1,100,1000)")
    args = parser.parse_args(argv)
    _raise_fd_limit()
    with ephemeral_stack(prefix="stockpred-bench-", with_gateway=True, extra_env=BENCH_ENV,
                         log=lambda m: print(m, file=sys.stderr)) as (_, env):
        os.environ.update(env)
        api = env["STOCKPRED_API_URL"]
        email = f"fanout-{uuid.uuid4().hex[:8]}@example.com"
        user = requests.post(f"{api}/api/users/register", timeout=30,
                             json={"name": "f", "email": email, "password": PASSWORD}).json()["user_id"]
        token = requests.post(f"{api}/api/users/login", timeout=30,
                              json={"email": email, "password": PASSWORD}).json()["token"]
        rows = []
        for size in (int(s) for s in args.sizes.split(",")):
            broadcasts = max(5, 2000 // size)
            rows.append((size, broadcasts, *asyncio.run(measure(env, token, user, size, broadcasts))))
    print(f"\nbroadcast to one room through devstack's management API; {os.cpu_count()} CPUs")
    print(f"{'subscribers':>12}{'broadcasts':>12}{'p50 ms':>10}{'p99 ms':>10}{'deliveries/s':>14}")
    for size, n, p50, p99, rate in rows:
        print(f"{size:>12}{n:>12}{p50:>10.1f}{p99:>10.1f}{rate:>14.0f}")


if __name__ == "__main__":
    main()
