"""Benchmark: what writing the metrics costs a request, in CPU, against the same request without them.

A Chalice app with stockpred.api.edge' middleware (as every HTTP function has) serves one route
that counts two cache hits, in this process through Chalice's test client. The same requests run
with stockpred.observability.metrics as it ships and with its `start`, `count` and `flush` replaced by no-ops,
in alternating rounds, stdout and stderr sent to /dev/null (Lambda's are a pipe). Printed: the CPU
microseconds per request each way, the difference (the metrics' cost) and the ratio.

No stack is needed. Run: .venv/bin/python -m bench.metrics [--requests 3000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time


def _app():
    from chalice import Chalice

    from stockpred.api.edge import install
    from stockpred.observability import metrics

    app = Chalice(app_name="bench")
    install(app, "bench")

    @app.route("/api/things/{name}", methods=["GET"])
    def thing(name: str) -> dict:
        metrics.count("CacheHits")
        metrics.count("CacheHits")
        return {"name": name}

    return app


def _cpu_per_request(client, requests: int) -> float:
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        started = time.process_time()
        for i in range(requests):
            client.http.get(f"/api/things/t{i % 50}")
        return (time.process_time() - started) / requests * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per round and mode")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    import logging

    from chalice.test import Client

    from stockpred.observability import metrics

    app = _app()
    devnull = open(os.devnull, "w")  # noqa: SIM115 - the log handler keeps it for the whole run
    for handler in logging.getLogger("stockpred.bench").handlers:
        handler.setStream(devnull)  # the access line is written both ways: only metrics differ
    real = {name: getattr(metrics, name) for name in ("start", "count", "flush")}
    off = {"start": lambda: None, "count": lambda *a, **k: None, "flush": lambda *a, **k: None}
    timings: dict[str, list[float]] = {"with": [], "without": []}
    with Client(app) as client:
        _cpu_per_request(client, 200)  # warm up both paths' imports and caches
        for _ in range(args.rounds):
            for mode, fns in (("with", real), ("without", off)):
                for name, fn in fns.items():
                    setattr(metrics, name, fn)
                timings[mode].append(_cpu_per_request(client, args.requests))
    for name, fn in real.items():
        setattr(metrics, name, fn)
    with_us, without_us = (statistics.median(timings[m]) for m in ("with", "without"))
    print(f"metrics per request: {args.rounds} rounds x {args.requests} requests each way, CPU time, median")
    print(f"  with the metric line:    {with_us:7.1f} us")
    print(f"  without:                 {without_us:7.1f} us")
    cost = with_us - without_us
    print(f"  the metrics' cost:       {cost:7.1f} us a request ({with_us / without_us:.2f}x)")


if __name__ == "__main__":
    main()
