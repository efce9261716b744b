"""The `stockpred` command: run the local stack and operate the platform.

    stockpred up | down                  the whole local stack (services + devstack gateway)
    stockpred services up|down|status    the data services alone
    stockpred import-csv DIR             load a folder of daily OHLCV CSV files
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from devstack.services import ServiceError, Stack, default_root


def _stack(args: argparse.Namespace, with_gateway: bool = True) -> Stack:
    return Stack(default_root(), with_gateway=with_gateway)


def _apply_env(stack: Stack) -> None:
    """Point this process at the stack, unless the caller already chose other services."""
    for k, v in stack.client_env().items():
        os.environ.setdefault(k, v)


def cmd_up(args: argparse.Namespace) -> int:
    stack = _stack(args)
    print(f"stockpred: starting the local stack in {stack.root}")
    try:
        env = stack.up()
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    api = env["STOCKPRED_API_URL"]
    print(f"""
stockpred is up.
  REST API      {api}/api/stocks
  try           curl {api}/api/stocks/SPX/details
                curl '{api}/api/stocks/SPX/history?from=2018-12-01&to=2018-12-31'
  Lambda Invoke {api}/2015-03-31/functions/<name>/invocations
  AWS (moto)    {env['AWS_ENDPOINT_URL']}
  PostgreSQL    {env['DATABASE_URL']}
  MongoDB       {env['MONGO_URL']} (FerretDB)
  Redis         state {env['REDIS_URL']}  cache {env['CACHE_REDIS_URLS']}
  logs          {stack.root / 'log'}
Stop everything with: make stop""")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    _stack(args).down()
    return 0


def cmd_services(args: argparse.Namespace) -> int:
    stack = _stack(args, with_gateway=False)
    try:
        if args.action == "up":
            env = stack.up()
            print(json.dumps(env, indent=2))
        elif args.action == "down":
            stack.down()
        else:
            full = _stack(args)
            for name, state, pid in full.status():
                print(f"{name:<26} {state:<24} {pid or ''}")
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_import_csv(args: argparse.Namespace) -> int:
    from stockpred import csv_prices

    _apply_env(_stack(args))
    folder = Path(args.dir)
    if not folder.is_dir():
        print(f"error: {folder} is not a folder", file=sys.stderr)
        return 2
    report = csv_prices.import_folder(folder, currency=args.currency)
    if not report.ok:
        print(f"nothing imported: {len(report.errors)} problem(s) found", file=sys.stderr)
        for line in report.errors[:200]:
            print(f"  {line}", file=sys.stderr)
        if len(report.errors) > 200:
            print(f"  ... and {len(report.errors) - 200} more", file=sys.stderr)
        return 1
    for symbol, rows in report.files.items():
        print(f"imported {symbol}: {rows} daily bars")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stockpred", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("up", help="start the whole local stack and print its URLs")
    p.set_defaults(func=cmd_up)
    p = sub.add_parser("down", help="stop every process the local stack started")
    p.set_defaults(func=cmd_down)

    p = sub.add_parser("services", help="start, stop or show the data services")
    p.add_argument("action", choices=["up", "down", "status"])
    p.set_defaults(func=cmd_services)

    p = sub.add_parser("import-csv", help="import Date,Open,High,Low,Close,Volume CSV files",
                       description="Import every <SYMBOL>.csv in DIR. All rows of all files are "
                       "checked first; if any is bad, the problems are listed with their line "
                       "numbers and nothing is imported.")
    p.add_argument("dir", help="folder of <SYMBOL>.csv files")
    p.add_argument("--currency", default="USD")
    p.set_defaults(func=cmd_import_csv)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(args.func(args))


if __name__ == "__main__":
    main()
