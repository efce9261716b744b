"""Every benchmark in bench/ runs, at a small size, in `make test`: a broken bench fails CI.

The numbers are not judged here (ratios on a noisy machine are for `make bench` to print); that
each bench starts its stack, does its work and prints its table is.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from devstack.services import REPO_ROOT, SERVICE_VARS

SMALL = {
    "cache": ["--requests", "60"],
    "coldstart": ["--rounds", "1"],
    "details": ["--requests", "40", "--warmup", "5", "--rounds", "2", "--concurrency", "2"],
    "etl": ["--sizes", "2000"],
    "fanout": ["--sizes", "1,5", "--predicts", "2"],
    "logs": ["--lines", "1000", "--requests", "3"],
    "metrics": ["--requests", "50", "--rounds", "1"],
    "predict": ["--requests", "10"],
    "soak": ["--seconds", "10", "--users", "2", "--fault-every", "4", "--faults", "state redis emptied"],
    "trade": ["--trades", "4", "--concurrency", "2"],
    "universe": ["--symbols", "40", "--days", "900"],
}


def test_every_bench_has_a_small_size() -> None:
    benches = {p.stem for p in (REPO_ROOT / "bench").glob("[a-z]*.py")}
    assert benches == set(SMALL), "give each bench a small size here"


@pytest.mark.slow
@pytest.mark.parametrize("bench", sorted(SMALL))
def test_the_bench_runs_at_a_small_size(bench: str) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARS}  # its own stack, not the session's
    done = subprocess.run([sys.executable, "-m", f"bench.{bench}", *SMALL[bench]], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"bench.{bench} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    assert done.stdout.strip(), f"bench.{bench} printed no results"
