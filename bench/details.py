"""Benchmark: what a cached `GET /api/stocks/SPX/details` costs, against its floors, in one run.

The ways to the same cached quote, measured side by side in one process so that a noisy machine
moves them all alike (the ratios are the result, not the absolute numbers):

1. HTTP through devstack (aiohttp -> proxy event -> warm worker process -> Chalice -> Redis),
   sequentially on one keep-alive connection;
2. the same Chalice handler called in this process with an API Gateway proxy event (no HTTP, no
   worker pool), pointed at the same cache Redis;
3. a raw Redis GET of the cached quote key on that cache shard;
4. req/s over N concurrent connections (16 by default) from one load client (bench._load), in
   alternating rounds: devstack, and a bare uvicorn endpoint (bench._bare) answering the same
   body and headers, the floor of any Python HTTP path. Target: devstack >= 0.4x bare uvicorn.

The sequential rows run interleaved in rounds after a warm-up. The stack is started on free
ports in a temporary folder and stopped at the end; the local `make run` stack is not touched.

Run: .venv/bin/python -m bench.details [--requests 2000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

import requests

from bench._load import load
from bench._timing import Call, interleaved, p, timed
from devstack.events import rest_proxy_event
from devstack.lambda_worker import LambdaContext
from devstack.runtime import import_handler
from devstack.service_specs import served_template
from devstack.services import REPO_ROOT, ephemeral_stack
from devstack.stack_state import free_port, redis_client
from devstack.template import Template

SYMBOL = "SPX"
HTTP, INPROC, REDIS = "HTTP devstack (1 conn)", "in-process handler", "raw Redis GET"
DEVSTACK_LOADED, QUIET_LOADED = "HTTP devstack ({n} conns)", "  without log shipping"
BARE_LOADED = "bare uvicorn ({n} conns)"
PATH = f"/api/stocks/{SYMBOL}/details"
# The long TTL keeps the quote cached for the whole run: every measured request must be a hit.
BENCH_ENV = {"DEVSTACK_SCHEDULES": "off", "QUOTE_TTL_SECONDS": "3600"}
Row = tuple[list[float], float]  # latencies (s), wall time (s)
LOAD_FACTOR = 6  # requests per loaded row, per sequential row's
TARGET_RATIO = 0.4  # devstack's req/s over a bare uvicorn endpoint's, same client and connections

@contextmanager
def bench_stack() -> Iterator[dict[str, str]]:
    """The stack with devstack's gateway on free ports; yields its env, also put in os.environ."""
    with ephemeral_stack(prefix="stockpred-bench-", with_gateway=True, extra_env=BENCH_ENV,
                         log=lambda m: print(m, file=sys.stderr)) as (_, env):
        os.environ.update(env)
        yield env


def http_call(session: requests.Session, url: str) -> Call:
    def call() -> None:
        r = session.get(url, timeout=10)
        if r.status_code != 200 or r.headers.get("X-Cache") != "HIT":
            raise RuntimeError(f"HTTP {r.status_code} X-Cache={r.headers.get('X-Cache')}: {r.text[:200]}")
    return call


def in_process_call() -> Call:
    """The StocksFunction handler loaded here, with its template env under the local stack's env
    (which wins, as in devstack: the template's CACHE_MODE=cluster is AWS's)."""
    from stockpred import config

    fn = Template.load(REPO_ROOT / "template.yaml").functions["StocksFunction"]
    local = dict(os.environ)
    os.environ.update(fn.env)
    os.environ.update(local)
    config.load.cache_clear()
    handler = import_handler(fn)
    _log_lines_to_devnull()
    context = {"function": fn.logical_id, "arn": fn.arn, "memory_mb": fn.memory_mb, "timeout_s": fn.timeout_s}

    def call() -> None:
        event = rest_proxy_event(method="GET", path=PATH, resource="/api/stocks/{symbol}/details",
                                 path_params={"symbol": SYMBOL}, headers=[("User-Agent", "bench")],
                                 query=[], body=b"", source_ip="127.0.0.1")
        result = handler(event, LambdaContext(context, event["requestContext"]["requestId"]))
        if result["statusCode"] != 200 or result["headers"].get("X-Cache") != "HIT":
            raise RuntimeError(f"in-process call answered {result}")
    return call


def _log_lines_to_devnull() -> None:
    """The in-process handler still formats and writes its access line on every call, as in
    Lambda, but to /dev/null rather than above the bench's table."""
    devnull = open(os.devnull, "w")  # noqa: SIM115 - open for the process's life
    for name, logger in logging.Logger.manager.loggerDict.items():
        if name.startswith("stockpred") and isinstance(logger, logging.Logger):
            for h in logger.handlers:
                if isinstance(h, logging.StreamHandler):
                    h.setStream(devnull)


def redis_call(env: dict[str, str]) -> Call:
    from stockpred.stores import cache
    from stockpred.stores.redis_stores import CacheRing

    quote_key = cache.key("quote", SYMBOL)
    node = CacheRing.from_urls(tuple(env["CACHE_REDIS_URLS"].split(","))).node_for(quote_key)
    client = redis_client(env, node, cache=True)

    def call() -> None:
        if client.get(quote_key) is None:
            raise RuntimeError(f"{quote_key} is not cached")
    return call


def pool_stats(env: dict[str, str]) -> dict[str, int]:
    """devstack's worker pool: size, invocations, cold starts."""
    return requests.get(env["STOCKPRED_API_URL"] + "/_devstack/health", timeout=10).json()


@contextmanager
def server(argv: list[str], url: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """A server process of this bench, until it answers url; stopped at the end. Its output
    (a quiet gateway writes every function's log line there) goes to a temporary file, shown
    only if it does not start: thousands of access lines would bury the bench's table."""
    with tempfile.TemporaryFile("w+") as output:
        proc = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    requests.get(url, timeout=10).raise_for_status()
                    break
                except requests.ConnectionError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        output.seek(0)
                        raise RuntimeError(f"{argv} did not start:\n{output.read()[-3000:]}") from None
                    time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            proc.wait(10)


def quiet_gateway() -> AbstractContextManager[str]:
    """A second devstack gateway on the same stack that does not ship its functions' lines to
    OpenSearch (DEVSTACK_LOG_SHIPPING=off): the REST path without CloudWatch Logs' part."""
    port = free_port()
    argv = [sys.executable, "-m", "devstack.gateway", "--host", "127.0.0.1", "--port", str(port),
            "--template", str(served_template()), "--no-schedules", "--no-log-shipping"]
    return server(argv, f"http://127.0.0.1:{port}{PATH}", {**os.environ, **BENCH_ENV})


@contextmanager
def bare_uvicorn(body: bytes, headers: dict[str, str]) -> Iterator[str]:
    """bench._bare under uvicorn (one process, its default loop and parser) on a free port."""
    port = free_port()
    env = {**os.environ, "BENCH_BARE_BODY": body.decode(), "BENCH_BARE_HEADERS": json.dumps(headers)}
    argv = [sys.executable, "-m", "uvicorn", "bench._bare:app", "--host", "127.0.0.1",
            "--port", str(port), "--no-access-log", "--log-level", "warning", "--lifespan", "off"]
    with server(argv, f"http://127.0.0.1:{port}{PATH}", env) as url:
        yield url


def loaded(urls: dict[str, str], n: int, connections: int, rounds: int) -> dict[str, Row]:
    """n requests per url from one client over `connections` connections, in alternating rounds."""
    rows: dict[str, Row] = {name: ([], 0.0) for name in urls}
    per_round = max(connections, n // rounds)
    for _ in range(rounds):
        for name, url in urls.items():
            lat, wall = load(url, per_round, connections, ("X-Cache", "HIT"))
            rows[name] = (rows[name][0] + lat, rows[name][1] + wall)
    return rows


def report(rows: dict[str, Row]) -> None:
    redis_p50, inproc_p50 = p(rows[REDIS][0], 50), p(rows[INPROC][0], 50)
    print(f"{'':<28}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'p50/Redis':>11}{'p50/in-proc':>13}")
    for name, (lat, wall) in rows.items():
        p50 = p(lat, 50)
        print(f"{name:<28}{len(lat) / wall:>10.0f}{p50:>10.3f}{p(lat, 99):>10.3f}"
              f"{p50 / redis_p50:>10.1f}x{p50 / inproc_p50:>12.1f}x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for flag, default, what in (("--requests", 2000, "measured requests per row"),
                                ("--concurrency", 16, "connections of the req/s rows"),
                                ("--warmup", 100, "unmeasured calls per row first"),
                                ("--rounds", 10, "interleaved rounds of the sequential rows")):
        parser.add_argument(flag, type=int, default=default, metavar="N", help=f"{what} ({default})")
    args = parser.parse_args(argv)

    with bench_stack() as env:
        url = env["STOCKPRED_API_URL"] + PATH
        first = requests.get(url, timeout=30)
        print(f"first request: HTTP {first.status_code} X-Cache={first.headers.get('X-Cache')}",
              file=sys.stderr)
        first.raise_for_status()
        calls = {
            HTTP: http_call(requests.Session(), url),
            INPROC: in_process_call(),
            REDIS: redis_call(env),
        }
        for call in calls.values():
            timed(call, args.warmup)
        answer = requests.get(url, timeout=10)
        with bare_uvicorn(answer.content, dict(answer.headers)) as bare_url, \
                quiet_gateway() as quiet_url:
            load_rows = {DEVSTACK_LOADED.format(n=args.concurrency): url,
                         QUIET_LOADED.format(n=args.concurrency): quiet_url,
                         BARE_LOADED.format(n=args.concurrency): bare_url}
            # Workers start lazily, one per concurrent invocation: let all of them start here,
            # a few at a time (many cold starts at once on a small machine overrun the timeout).
            for connections in sorted({min(2 ** i, args.concurrency) for i in range(9)}):
                loaded(load_rows, max(args.warmup, 10 * connections), connections, 1)
            cold_before = pool_stats(env)["cold_starts"]
            measured = interleaved(calls, args.requests, args.rounds)
            under_load = loaded(load_rows, args.requests * LOAD_FACTOR, args.concurrency,
                                args.rounds)
        pool = pool_stats(env)
        if pool["cold_starts"] != cold_before:
            print(f"warning: {pool['cold_starts'] - cold_before} cold starts while measuring",
                  file=sys.stderr)

    rows = {HTTP: measured[HTTP], **under_load, INPROC: measured[INPROC], REDIS: measured[REDIS]}
    print(f"\nGET {PATH}, cached; {len(measured[HTTP][0])} sequential calls per row in "
          f"{args.rounds} interleaved rounds; {len(next(iter(under_load.values()))[0])} requests "
          f"per loaded row in {args.rounds} alternating rounds from one client; "
          f"{pool['workers']} devstack workers, {os.cpu_count()} CPUs")
    report(rows)
    rps = {name: len(lat) / wall for name, (lat, wall) in under_load.items()}
    bare = rps[BARE_LOADED.format(n=args.concurrency)]
    ratio = rps[DEVSTACK_LOADED.format(n=args.concurrency)] / bare
    quiet = rps[QUIET_LOADED.format(n=args.concurrency)] / bare
    print(f"target: devstack >= {TARGET_RATIO}x bare uvicorn req/s ({args.concurrency} connections)"
          f" -> {ratio:.2f}x {'MET' if ratio >= TARGET_RATIO else 'NOT MET'}"
          f" (without log shipping: {quiet:.2f}x)")


if __name__ == "__main__":
    main()
