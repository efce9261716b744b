"""Benchmark: log lines through the shipper into OpenSearch, and how soon a logged line is searchable.

Throughput: the LogShipperFunction's handler (in this process) takes CloudWatch Logs payloads of
BATCH realistic JSON lines (decode, parse, redact, bulk index) against bare `helpers.bulk` of the
same documents already built: the ratio is the shipper's own cost. Latency: requests through
devstack with a fresh X-Correlation-Id each; from sending the request (its lines are logged
inside it) to the first of its lines answering a search, polled every 20 ms. That path holds
devstack's feed interval (0.5 s) and OpenSearch's refresh interval (1 s) by design.

Run: .venv/bin/python -m bench.logs [--lines 20000] [--requests 40]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import uuid

import requests

from bench._timing import p
from devstack.logfeed import payload
from devstack.services import REPO_ROOT, ephemeral_stack

BATCH = 500
BENCH_ENV = {"DEVSTACK_SCHEDULES": "off"}


def sample_lines(n: int) -> list[str]:
    from stockpred.observability.logs import JsonFormatter

    formatter = JsonFormatter("users")
    lines = []
    for i in range(n):
        record = logging.LogRecord("stockpred.users", logging.INFO, __file__, 1,
                                   "trade %s for user@example.com", ("committed",), None)
        record.fields = {"transaction_id": str(uuid.uuid4()), "quantity": i % 7, "symbol": "SPX"}
        lines.append(formatter.format(record))
    return lines


def payloads(lines: list[str]) -> list[dict]:
    now = int(time.time() * 1000)
    out = []
    for start in range(0, len(lines), BATCH):
        events = [{"id": f"{uuid.uuid4().int:039d}{start + i:017d}", "timestamp": now, "message": m}
                  for i, m in enumerate(lines[start:start + BATCH])]
        out.append(payload("/aws/lambda/UsersFunction", "bench", events))
    return out


def throughput(n: int) -> tuple[float, float]:
    from opensearchpy import helpers

    from devstack.runtime import import_handler
    from devstack.template import Template
    from stockpred.observability import logship, opensearch

    shipper = import_handler(Template.load(REPO_ROOT / "template.yaml").functions["LogShipperFunction"])
    batches = payloads(sample_lines(n))
    shipper(batches[0], None)  # warm: the index template, the client's connection
    t0 = time.perf_counter()
    for event in batches:
        result = shipper(event, None)
        assert result["dead_lettered"] == 0 and result["rejected"] == 0, result
    ours = n / (time.perf_counter() - t0)

    docs = [d for event in payloads(sample_lines(n)) for d in logship.documents(logship.decode(event))]
    actions = [{"_index": d["_index"], "_id": d["_id"], "_source": d["line"]} for d in docs]
    t0 = time.perf_counter()
    for start in range(0, len(actions), BATCH):
        helpers.bulk(opensearch.client(), actions[start:start + BATCH], refresh=False)
    bare = n / (time.perf_counter() - t0)
    return ours, bare


def searchable_latency(api: str, search_url: str, requests_n: int) -> list[float]:
    session = requests.Session()
    out = []
    for _ in range(requests_n):
        cid = f"bench-{uuid.uuid4()}"
        t0 = time.perf_counter()
        session.get(f"{api}/api/stocks/SPX/details", headers={"X-Correlation-Id": cid},
                    timeout=30).raise_for_status()
        query = {"query": {"term": {"correlation_id": cid}}, "size": 1}
        while True:
            r = session.post(search_url, json=query, timeout=10)
            if r.ok and r.json()["hits"]["total"]["value"] > 0:
                break
            if time.perf_counter() - t0 > 30:
                raise RuntimeError(f"line of {cid} not searchable after 30 s")
            time.sleep(0.02)
        out.append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=20_000, help="lines through the shipper")
    parser.add_argument("--requests", type=int, default=40, help="requests timed to searchable")
    args = parser.parse_args(argv)
    with ephemeral_stack(prefix="stockpred-bench-", with_gateway=True, extra_env=BENCH_ENV,
                         log=lambda m: print(m, file=sys.stderr)) as (_, env):
        os.environ.update(env)
        ours, bare = throughput(args.lines)
        search_url = f"{env['OPENSEARCH_URL']}/stockpred-logs-*/_search"
        requests.get(f"{env['STOCKPRED_API_URL']}/api/stocks/SPX/details", timeout=60)  # warm
        latency = searchable_latency(env["STOCKPRED_API_URL"], search_url, args.requests)
    print(json.dumps({"lines": args.lines, "batch": BATCH}))
    print(f"{'shipper (decode, parse, redact, bulk)':<40}{ours:>10,.0f} lines/s")
    print(f"{'bare helpers.bulk of built documents':<40}{bare:>10,.0f} lines/s")
    print(f"{'ratio shipper / bare':<40}{ours / bare:>10.2f}")
    print(f"log call -> searchable, {args.requests} requests: p50 {p(latency, 50):.0f} ms, "
          f"p99 {p(latency, 99):.0f} ms (feed flush 0.5 s + refresh 1 s by design)")


if __name__ == "__main__":
    main()
