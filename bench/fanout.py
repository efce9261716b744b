"""Benchmark: WebSocket pushes through devstack, off the request path, in one run.

1. Broadcast to 1, 100, 1000 subscribers of one room, the way the functions do it: one event on
   the push queue (stockpred.realtime.rooms.publish_to_room), delivered by FanoutFunction (a chunk of
   WS_PUSH_CHUNK per invocation, parallel invocations for the rest). Latency from publishing to
   receipt by each client, p50 and p99, deliveries/s; beside the old way, one boto3
   PostToConnection per subscriber from 16 threads in the publishing process.
   With the most subscribers, a REST call (cached details) in a loop during more broadcasts,
   against the same calls with nothing running: what a fan-out costs the REST API.
2. GET /api/predict/SPX with SPX's room empty, with 1 subscriber, then with 1000: the request's
   own latency (the target: 1000 within 1.5x of empty; an empty room queues no event, so this
   compares one SQS SendMessage with none, and 1000 against 1 shows what the room's size costs),
   and from the request's start to each subscriber's receipt of the prediction (the target: p99
   within 200 ms), none missing.

Clients are aiohttp WebSocket connections in this process that connect through the real
$connect route; room membership is then set in Redis directly, so that 1000 subscriptions do
not dominate the run.

Run: .venv/bin/python -m bench.fanout [--sizes 1,100,1000] [--predicts 10]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures as cf
import json
import os
import resource
import sys
import threading
import time
import uuid

import aiohttp
import boto3
import requests
from botocore.config import Config

from bench._accounts import sign_up
from bench._cpu import StackCpu, delta
from bench._timing import p
from devstack.services import ephemeral_stack
from devstack.stack_state import redis_client

ROOM = "FANOUT"
PREDICT_SYMBOL = "SPX"
BENCH_ENV = {"DEVSTACK_SCHEDULES": "off"}
P99_TARGET_MS = 200.0
PREDICT_RATIO_TARGET = 1.5


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))


def _met(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


class Subscribers:
    """`size` open sockets of one user; what each receives is timed as it arrives."""

    def __init__(self, env: dict[str, str], token: str, user: str) -> None:
        self.env, self.token, self.user = env, token, user
        self.state = redis_client(env)
        self.arrivals: list[tuple[float, dict]] = []
        self.sockets: list[aiohttp.ClientWebSocketResponse] = []

    async def open(self, session: aiohttp.ClientSession, size: int) -> list[str]:
        url = f"{self.env['STOCKPRED_WS_URL']}?token={self.token}"
        self.sockets = list(await asyncio.gather(*[session.ws_connect(url) for _ in range(size)]))
        self.listeners = [asyncio.create_task(self._listen(ws)) for ws in self.sockets]
        return [c.decode() for c in self.state.smembers(f"stockpred:ws:user:{self.user}")]

    async def _listen(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.arrivals.append((time.time(), json.loads(msg.data)))

    def join(self, room: str, conns: list[str]) -> None:
        self.state.delete(f"stockpred:ws:room:{room}")
        if conns:
            self.state.sadd(f"stockpred:ws:room:{room}", *conns)

    async def wait_for(self, count: int, match, timeout_s: float = 30) -> list[tuple[float, dict]]:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            got = [a for a in self.arrivals if match(a[1])]
            if len(got) >= count:
                return got
            await asyncio.sleep(0.005)
        return [a for a in self.arrivals if match(a[1])]

    async def close(self) -> None:
        for ws in self.sockets:
            await ws.close()
        for t in self.listeners:
            t.cancel()
        self.state.delete(f"stockpred:ws:user:{self.user}")


def _boto3_broadcast(env: dict[str, str], conns: list[str], message: dict) -> None:
    """The old way, for comparison: a boto3 client, one PostToConnection each, 16 threads."""
    client = boto3.client("apigatewaymanagementapi", endpoint_url=env["WS_MANAGEMENT_URL"],
                          region_name=env["AWS_DEFAULT_REGION"], config=Config(max_pool_connections=16),
                          aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    data = json.dumps(message).encode()
    with cf.ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda c: client.post_to_connection(ConnectionId=c, Data=data), conns))


class RestProbe:
    """GET /api/stocks/<symbol>/details in a loop on a thread, one at a time, while switched on:
    the REST API's latency while a fan-out runs, against the same calls while nothing does."""

    def __init__(self, api: str) -> None:
        self.url = f"{api}/api/stocks/{PREDICT_SYMBOL}/details"
        self.session = requests.Session()
        self.latencies: dict[str, list[float]] = {"idle": [], "during fan-out": []}
        self.label: str | None = None
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop:
            label = self.label
            if label is None:
                time.sleep(0.005)
                continue
            t0 = time.perf_counter()
            self.session.get(self.url, timeout=30).raise_for_status()
            took = time.perf_counter() - t0
            if self.label == label:
                self.latencies[label].append(took)
            time.sleep(0.005)

    async def idle(self, seconds: float) -> None:
        self.label = "idle"
        await asyncio.sleep(seconds)
        self.label = None

    def close(self) -> None:
        self.stop = True
        self.thread.join(30)


async def broadcasts(subs: Subscribers, session: aiohttp.ClientSession, size: int,
                     cpu: StackCpu, spent: dict, probe: RestProbe | None = None) -> dict:
    """Per way: rounds, p50, p99, deliveries/s, missing; `spent[(size, way)]` the CPU seconds per
    process label over the timed rounds, and the deliveries they made."""
    from stockpred.realtime import rooms

    conns = await subs.open(session, size)
    subs.join(ROOM, conns)
    loop = asyncio.get_running_loop()
    rounds = max(3, min(20, 2000 // size))
    out = {}
    for way in ("queued", "boto3 inline"):
        latencies, missing, t_start = [], 0, time.perf_counter()
        for i in range(-1, rounds):  # round -1 warms the fan-out function's instances up
            tag = f"{way}-{i}-{uuid.uuid4().hex[:6]}"
            subs.arrivals.clear()
            sent = time.time()
            message = {"type": "bench", "tag": tag, "sent": sent}
            if way == "queued":
                await loop.run_in_executor(None, rooms.publish_to_room, ROOM, message)
            else:
                await loop.run_in_executor(None, _boto3_broadcast, subs.env, conns, message)
            got = await subs.wait_for(size, lambda m, tag=tag: m.get("tag") == tag)
            if i < 0:
                t_start = time.perf_counter()
                cpu_before = cpu.snapshot()
                continue
            missing += size - len(got)
            latencies += [t - sent for t, _ in got]
        wall = time.perf_counter() - t_start
        spent[(size, way)] = (delta(cpu_before, cpu.snapshot()), len(latencies))
        out[way] = (rounds, p(latencies, 50), p(latencies, 99), len(latencies) / wall, missing)
        if probe is not None and way == "queued":
            await _probe_rest(subs, probe, size)
    await subs.close()
    return out


async def _probe_rest(subs: Subscribers, probe: RestProbe, size: int, rounds: int = 5) -> None:
    """REST calls during `rounds` more queued broadcasts (outside the timed ones), and as long
    again after each with nothing running."""
    from stockpred.realtime import rooms

    loop = asyncio.get_running_loop()
    for i in range(rounds):
        tag = f"probe-{i}-{uuid.uuid4().hex[:6]}"
        started = time.time()
        probe.label = "during fan-out"
        await loop.run_in_executor(None, rooms.publish_to_room, ROOM, {"type": "bench", "tag": tag})
        await subs.wait_for(size, lambda m, tag=tag: m.get("tag") == tag)
        probe.label = None
        await asyncio.sleep(0.05)
        await probe.idle(time.time() - started)


def _where_the_time_goes(log_path: str, started: float) -> list[tuple[str, float, float]]:
    """From FanoutFunction's own log lines ("push delivered") since `started`: per invocation kind,
    p50 and p99 of the wait on the queue (publish -> invocation), the room read and chunk
    queueing, and the PostToConnection calls."""
    fields: dict[str, list[float]] = {}
    with open(log_path, errors="replace") as f:
        for line in f:
            if '"push delivered"' not in line:
                continue
            try:
                entry = json.loads(line[line.index("{"):])
            except ValueError:
                continue
            if entry.get("queued_ms") is None or entry["timestamp"] < started or not entry["delivered"]:
                continue
            kind = entry["kind"]
            for name in ("queued_ms", "split_ms", "post_ms"):
                if name != "split_ms" or kind == "room":
                    fields.setdefault(f"{kind}: {name.removesuffix('_ms')}", []).append(entry[name] / 1000)
    return [(name, p(values, 50), p(values, 99))
            for name, values in sorted(fields.items()) if len(values) > 1]


def _predict(api: str) -> tuple[int, float]:
    t0 = time.perf_counter()
    r = requests.get(f"{api}/api/predict/{PREDICT_SYMBOL}", timeout=60)
    return r.status_code, (time.perf_counter() - t0) * 1000


def _await_model(api: str) -> None:
    deadline = time.time() + 180
    while time.time() < deadline:
        if _predict(api)[0] == 200:
            return
        time.sleep(1)
    raise SystemExit(f"no model for {PREDICT_SYMBOL} after 180 s")


async def predicts(subs: Subscribers, session: aiohttp.ClientSession, size: int, rounds: int,
                   cpu: StackCpu, spent: dict) -> dict:
    api = subs.env["STOCKPRED_API_URL"]
    conns = await subs.open(session, size)
    loop = asyncio.get_running_loop()
    out = {}
    for room_size in (0, 1, size):
        subs.join(PREDICT_SYMBOL, conns[:room_size])
        request_ms, deliveries, missing = [], [], 0
        cpu_before = cpu.snapshot()
        for _ in range(rounds):
            subs.arrivals.clear()
            started = time.time()
            status, took = await loop.run_in_executor(None, _predict, api)
            assert status == 200, f"predict answered {status}"
            request_ms.append(took / 1000)
            if room_size:
                got = await subs.wait_for(room_size, lambda m: m.get("type") == "prediction")
                missing += room_size - len(got)
                deliveries += [t - started for t, _ in got]
            # The same pause after each request whatever the room: the next request starts after
            # the fan-out invocations have finished, not during their last writes.
            await asyncio.sleep(0.05)
        spent[(room_size, "predict")] = (delta(cpu_before, cpu.snapshot()), len(deliveries) or rounds)
        out[room_size] = (p(request_ms, 50), p(request_ms, 99),
                          p(deliveries, 50) if deliveries else None,
                          p(deliveries, 99) if deliveries else None, missing)
    subs.join(PREDICT_SYMBOL, [])
    await subs.close()
    return out


async def run(env: dict[str, str], token: str, user: str, sizes: list[int],
              rounds: int, cpu: StackCpu, spent: dict) -> tuple[dict, dict, str, dict]:
    """The broadcasts by size, the predicts by room size, when the predicts started, and the REST
    probe's latencies; `spent` gets the CPU per process of each timed part."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        subs = Subscribers(env, token, user)
        probe = RestProbe(env["STOCKPRED_API_URL"])
        rows = {size: await broadcasts(subs, session, size, cpu, spent,
                                       probe if size == max(sizes) else None) for size in sizes}
        probe.close()
        await asyncio.get_running_loop().run_in_executor(None, _await_model, env["STOCKPRED_API_URL"])
        predict_started = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        predict_rows = await predicts(subs, session, max(sizes), rounds, cpu, spent)
    return rows, predict_rows, predict_started, probe.latencies


def _print_cpu(spent: dict, keys: list[tuple[int, str]]) -> None:
    """CPU ms per delivery (per request for an empty room's predicts), per process label."""
    labels = sorted({label for key in keys for label in spent[key][0]},
                    key=lambda label: -max(spent[k][0].get(label, 0) / spent[k][1] for k in keys))
    heads = [f"{size} {way}" for size, way in keys]
    print(f"{'process':<36}" + "".join(f"{h:>18}" for h in heads))
    for label in labels:
        cells = [spent[k][0].get(label, 0.0) * 1000 / spent[k][1] for k in keys]
        if max(cells) >= 0.005:
            print(f"{label:<36}" + "".join(f"{c:>18.3f}" for c in cells))
    totals = [sum(spent[k][0].values()) * 1000 / spent[k][1] for k in keys]
    print(f"{'total':<36}" + "".join(f"{t:>18.3f}" for t in totals))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,100,1000", help="subscribers per run (1,100,1000)")
    parser.add_argument("--predicts", type=int, default=10, help="predict requests per room size")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    _raise_fd_limit()
    with ephemeral_stack(prefix="stockpred-bench-", with_gateway=True, extra_env=BENCH_ENV,
                         log=lambda m: print(m, file=sys.stderr)) as (stack, env):
        os.environ.update(env)
        api = env["STOCKPRED_API_URL"]
        user, token = sign_up(api)
        spent: dict = {}
        rows, predict_rows, predict_started, probed = asyncio.run(
            run(env, token, user, sizes, args.predicts, StackCpu(stack), spent))
        time.sleep(0.5)  # the last invocations' lines
        spans = _where_the_time_goes(str(stack.logfile("gateway")), predict_started)

    print(f"\nbroadcast to one room through devstack's WebSocket API; {os.cpu_count()} CPUs")
    print(f"{'subscribers':>12} {'way':<14}{'rounds':>7}{'p50 ms':>9}{'p99 ms':>9}{'deliveries/s':>14}"
          f"{'missing':>9}")
    for size, ways in rows.items():
        for way, (n, p50, p99, rate, missing) in ways.items():
            print(f"{size:>12} {way:<14}{n:>7}{p50:>9.1f}{p99:>9.1f}{rate:>14.0f}{missing:>9}")
    big = max(sizes)
    empty, full = predict_rows[0], predict_rows[big]
    print(f"\nGET /api/predict/{PREDICT_SYMBOL}, {args.predicts} requests per room size")
    print(f"{'room':>6}{'request p50 ms':>16}{'p99 ms':>9}{'delivery p50 ms':>17}{'p99 ms':>9}{'missing':>9}")
    for room, (r50, r99, d50, d99, missing) in predict_rows.items():
        print(f"{room:>6}{r50:>16.1f}{r99:>9.1f}{(d50 or 0):>17.1f}{(d99 or 0):>9.1f}{missing:>9}")
    if spans:
        print("\nwhere a predict's pushes spend their time, from FanoutFunction's log lines")
        print(f"{'invocation: span':<28}{'p50 ms':>9}{'p99 ms':>9}")
        for name, p50, p99 in spans:
            print(f"{name:<28}{p50:>9.1f}{p99:>9.1f}")
    if all(len(v) > 1 for v in probed.values()):
        print(f"\nGET /api/stocks/{PREDICT_SYMBOL}/details, one at a time, while {big} subscribers get "
              "each broadcast and for as long again with nothing running")
        for label, values in probed.items():
            print(f"{label:<16}{len(values):>6} calls  p50 {p(values, 50):>7.1f} ms  "
                  f"p99 {p(values, 99):>7.1f} ms")
    print("\nCPU ms per delivery by process (/proc/<pid>/stat; for the empty room, per request)")
    _print_cpu(spent, [(big, "queued"), (big, "boto3 inline"), (0, "predict"), (big, "predict")])
    ratio = full[0] / empty[0]
    print(f"target: predict p50 with {big} subscribers <= {PREDICT_RATIO_TARGET}x with an empty room "
          f"-> {ratio:.2f}x {_met(ratio <= PREDICT_RATIO_TARGET)}")
    print(f"  ({big} subscribers vs 1: {full[0] / predict_rows[1][0]:.2f}x; an empty room queues no "
          f"event, a room with anyone in it queues one SQS message, whatever its size)")
    print(f"target: {big} subscribers, p99 from the request to each delivery <= {P99_TARGET_MS:.0f} ms "
          f"-> {full[3]:.0f} ms {_met(full[3] <= P99_TARGET_MS and full[4] == 0)} ({full[4]} missing)")


if __name__ == "__main__":
    main()
