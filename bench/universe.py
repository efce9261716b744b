"""Benchmark: a universe's ranker at scale, against the Retrain function's limits, in one run.

On a synthetic universe (default 500 symbols x 20 years, 10% listed late and 10% delisted, a
planted reversal) it times, in one run:

- the cross-sectional features (`build_cross_section`) in blocks of SYMBOL_BLOCK symbols, as
  they ship, against the same numpy code over the whole panel at once and one symbol at a time;
- one whole `train_universe` (walk-forward record with refits every 63 days, the final fit, the
  day's ranking), in a child process so its peak resident memory is its own; printed beside the
  Retrain function's timeout (900 s) and memory (2,048 MB) from template.yaml.

No stack is needed: the ranker reads a panel, the registry only stores the result.

Run: .venv/bin/python -m bench.universe [--symbols 500] [--days 5040] [--kind ridge]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np


def retrain_limits() -> tuple[int, int]:
    """The Retrain function's timeout (s) and memory (MB), as template.yaml declares them."""
    from devstack.services import REPO_ROOT
    from devstack.template import load_yaml

    props = load_yaml(REPO_ROOT / "template.yaml")["Resources"]["RetrainFunction"]["Properties"]
    return int(props["Timeout"]), int(props["MemorySize"])


def _panel(symbols: int, days: int):
    from stockml.synthetic import synthetic_panel

    return synthetic_panel(symbols, days, seed=0, reversal=0.05, listings=0.1, delistings=0.1).panel


def features_seconds(symbols: int, days: int) -> dict[str, float]:
    """Seconds to build the features in blocks of SYMBOL_BLOCK symbols (what ships), of the whole
    panel at once, and of one symbol at a time: the same numpy code, only the block differs."""
    from stockml.cross_section import SYMBOL_BLOCK, build_cross_section

    panel = _panel(symbols, days)
    build_cross_section(_panel(2, 300), dtype=np.float32)  # first-call costs out of every timing
    seconds = {}
    for label, block in (("blocks", SYMBOL_BLOCK), ("whole", symbols), ("one", 1)):
        started = time.perf_counter()
        build_cross_section(panel, dtype=np.float32, block=block)
        seconds[label] = time.perf_counter() - started
    return seconds


def train_in_child(symbols: int, days: int, kind: str) -> dict:
    """Runs `--child` in a fresh interpreter: its time and peak RSS are the training's alone."""
    done = subprocess.run([sys.executable, "-m", "bench.universe", "--child", "--symbols", str(symbols),
                           "--days", str(days), "--kind", kind], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def child(symbols: int, days: int, kind: str) -> None:
    from threadpoolctl import threadpool_limits

    from stockml.universe_training import train_universe

    panel = _panel(symbols, days)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with threadpool_limits(limits=1, user_api="openmp"):
        doc = train_universe("bench", panel, kind=kind)
    seconds = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "peak_mb": peak_kb / 1024,
                      "panel_mb": before / 1024, "ranked": len(doc["ranking"]),
                      "ic": doc["record"]["ic"]["ic_mean"], "days": doc["record"]["out_of_sample"]["days"]}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--days", type=int, default=5040, help="business days (default 20 years)")
    parser.add_argument("--kind", choices=["ridge", "hgb"], default="ridge")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.symbols, args.days, args.kind)
        return
    print(f"universe ranker: {args.symbols} synthetic symbols x {args.days} days, {args.kind}", flush=True)
    from stockml.cross_section import SYMBOL_BLOCK

    t = features_seconds(args.symbols, args.days)
    print(f"features in blocks of {SYMBOL_BLOCK} symbols: {t['blocks']:.2f} s; "
          f"the whole panel at once: {t['whole']:.2f} s ({t['whole'] / t['blocks']:.1f}x ours); "
          f"one symbol at a time: {t['one']:.2f} s ({t['one'] / t['blocks']:.1f}x ours)", flush=True)
    trained = train_in_child(args.symbols, args.days, args.kind)
    print(f"train_universe (walk-forward record, final fit, the day's ranking): {trained['seconds']:.1f} s, "
          f"peak RSS {trained['peak_mb']:.0f} MB (the panel alone {trained['panel_mb']:.0f} MB); "
          f"{trained['ranked']} ranked, out-of-sample IC {trained['ic']:+.4f} over {trained['days']} days")
    timeout_s, memory_mb = retrain_limits()
    print(f"Retrain function: {trained['seconds'] / timeout_s:.0%} of its "
          f"{timeout_s} s timeout, "
          f"{trained['peak_mb'] / memory_mb:.0%} of its {memory_mb} MB "
          "(measured on this machine's cores; Lambda gives 2,048 MB about 1.2 vCPU)")


if __name__ == "__main__":
    main()
