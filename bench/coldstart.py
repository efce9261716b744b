"""Cold-start import time of every built handler under Python 3.13, beside a bare `import boto3`.

Each handler is imported in a fresh `python3.13 -I -S` process with exactly Lambda's import path
(what `sam build` made: .aws-sam/build), the same way devstack's built mode and Lambda load it.
Rounds are interleaved so machine noise hits every row alike; the ratio to `import boto3` (what
every Lambda Python function pays anyway) is the number to compare across machines.

Run: make build && python -m bench.coldstart [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from devstack.runtime import LambdaPython, managed_runtime_dir
from devstack.service_specs import BUILT_TEMPLATE
from devstack.template import Template

PROBE = """
import importlib, json, sys, time
t0 = time.perf_counter()
target = sys.argv[1]
if target == "boto3":
    import boto3
else:
    module_name, attr = target.rsplit(".", 1)
    getattr(importlib.import_module(module_name), attr)
print(json.dumps({"import_s": time.perf_counter() - t0}))
"""


def import_seconds(runtime: LambdaPython, path: list[str], target: str, env: dict[str, str],
                   cwd: str) -> float:
    argv = [*runtime.argv, "-c", f"import sys; sys.path[:0] = {path!r}\n{PROBE}", target]
    out = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["import_s"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.coldstart", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="fresh processes per handler (default 5)")
    args = parser.parse_args(argv)
    if not BUILT_TEMPLATE.is_file():
        sys.exit(f"{BUILT_TEMPLATE} is missing: run `make build` first")
    template = Template.load(BUILT_TEMPLATE)
    runtime = LambdaPython(built=True)
    base_env = {"PATH": "/usr/bin:/bin", "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"}
    rows: dict[str, tuple[list[str], str, dict[str, str], str]] = {
        "import boto3": ([str(managed_runtime_dir())], "boto3", base_env, "/"),
    }
    for name, fn in sorted(template.functions.items()):
        rows[f"{name} ({fn.handler})"] = (runtime.import_path(fn), fn.handler,
                                           {**base_env, **fn.env}, str(fn.code_dir))
    times: dict[str, list[float]] = {row: [] for row in rows}
    failed: dict[str, str] = {}
    for i in range(args.rounds):
        print(f"round {i + 1}/{args.rounds}", file=sys.stderr)
        for row, (path, target, env, cwd) in rows.items():
            if row in failed:
                continue
            try:
                times[row].append(import_seconds(runtime, path, target, env, cwd))
            except subprocess.CalledProcessError as exc:
                failed[row] = (exc.stderr.strip().splitlines() or ["?"])[-1]
                del times[row]
    base = statistics.median(times["import boto3"])
    print(f"\nimport time under {runtime.argv[0]} (median of {args.rounds} fresh processes)")
    print(f"{'handler':<52}{'median ms':>10}{'min ms':>9}{'x boto3':>9}")
    for row, values in sorted(times.items(), key=lambda kv: statistics.median(kv[1])):
        med = statistics.median(values)
        print(f"{row:<52}{med * 1000:>10.0f}{min(values) * 1000:>9.0f}{med / base:>9.2f}")
    for row, error in failed.items():
        print(f"{row:<52} does not import: {error}")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
