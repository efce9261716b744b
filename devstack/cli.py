"""The `stockpred` command: run the local stack and operate the platform.

    stockpred up | down                  the whole local stack (services, devstack's gateway and
                                         WebSocket API)
    stockpred services up|down|status    the data services alone
    stockpred import-csv DIR             load a folder of daily OHLCV CSV files
    stockpred universe create|list|show  named sets of symbols to rank against each other
    stockpred evaluate-universe NAME     rank IC, deciles and top-k portfolios of a universe
    stockpred train-universe NAME        train its ranker and publish the day's ranking (the API's)
    stockpred train SYMBOL... | --all    train, evaluate and publish models
    stockpred evaluate SYMBOL...         walk-forward report: models, baselines, volatility, sizing
    stockpred cache status               the cache ring, each shard's master and replica, breakers
    stockpred etl run                    one incremental warehouse load (all or nothing)
    stockpred report                     the analytics as a PNG chart and CSV files
    stockpred logs search [filters]      every function's lines from OpenSearch, as a table
    stockpred logs status | maintenance  log indices and dead letters; re-drive and retention now
    stockpred users grant|revoke EMAIL admin   operator rights (GET /api/logs)
    stockpred dashboard publish --stack NAME    upload web/ to the stack's dashboard bucket
    stockpred serve                      `up` in the foreground until SIGTERM (a container's command)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

from devstack.services import Stack, default_root
from devstack.stack_state import redacted
from devstack.supervisor import ServiceError


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
    try:
        import requests

        serving = requests.get(f"{api}/_devstack/health", timeout=5).json().get("serving", "?")
    except (OSError, ValueError):
        serving = "?"
    print(f"""
stockpred is up.
  Dashboard     {api}/
  Operations    {api}/#/operations  (health, alarms, traffic: register, then
                `stockpred users grant EMAIL admin`; or `stockpred health`, `stockpred alarms`)
  functions     {serving}
                (`make run` serves the sources; `make run BUILT=1` what `sam build` made)
  REST API      {api}/api/stocks
  WebSocket     {env['STOCKPRED_WS_URL']}?token=<JWT from /api/users/login>
  @connections  {env['WS_MANAGEMENT_URL']}/@connections/<connection id>  (SigV4, the stack's keys)
  try           curl {api}/api/stocks/SPX/details
                curl '{api}/api/stocks/SPX/history?from=2018-12-01&to=2018-12-31'
  Lambda Invoke {api}/2015-03-31/functions/<name>/invocations
  AWS (moto)    {env['AWS_ENDPOINT_URL']}
  PostgreSQL    {env['DATABASE_URL']}
  MongoDB       {env['MONGO_URL']} (FerretDB)
  OpenSearch    {env['OPENSEARCH_URL']}  (logs: stockpred logs search --help)
  Redis         state {env['REDIS_URL']}  cache {env['CACHE_REDIS_URLS']}
  logs          {stack.root / 'log'}
Stop everything with: make stop""")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    _stack(args).down()
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """`up` in the foreground: starts what no variable points elsewhere (in docker-compose.yml the
    gateway alone), then waits until SIGTERM / SIGINT or a service's exit, and stops it all."""
    import signal
    import threading

    stack = _stack(args)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        env = stack.up()
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        stack.down()
        return 1
    names = [svc.name for svc in stack.services()]
    print(f"stockpred: serving {env['STOCKPRED_API_URL']} ({', '.join(names)}); stop with SIGTERM",
          flush=True)
    code = 0
    while not stop.wait(1.0):
        dead = [name for name in names if stack.pid(name) is None]
        if dead:
            print(f"error: {', '.join(dead)} exited; log in {stack.root / 'log'}", file=sys.stderr)
            code = 1
            break
    stack.down()
    return code


def cmd_services(args: argparse.Namespace) -> int:
    stack = _stack(args, with_gateway=False)
    try:
        if args.action == "up":
            env = stack.up()
            # Secrets are never printed: they are in env.json, which only its owner can read.
            print(json.dumps(redacted(env), indent=2))
            print(f"secrets: {stack.path('env.json')} (0600)", file=sys.stderr)
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
    from stockpred.market import csv_prices

    folder = Path(args.dir)
    if not folder.is_dir():
        print(f"error: {folder} is not a folder", file=sys.stderr)
        return 2
    if args.to:
        bucket, _, prefix = args.to.removeprefix("s3://").partition("/")
        if not args.to.startswith("s3://") or not bucket:
            print("error: --to must be s3://BUCKET[/PREFIX/]", file=sys.stderr)
            return 2
        import boto3

        # Your own AWS credentials and region (the standard chain); AWS_ENDPOINT_URL targets an emulator.
        prefix = (prefix.rstrip("/") + "/") if prefix else csv_prices.S3_PREFIX
        report = csv_prices.upload_folder(folder, boto3.client("s3"), bucket, prefix=prefix,
                                          currency=args.currency)
    else:
        _apply_env(_stack(args))
        report = csv_prices.import_folder(folder, currency=args.currency)
    if not report.ok:
        print(f"nothing imported: {len(report.errors)} problem(s) found", file=sys.stderr)
        for line in report.errors[:200]:
            print(f"  {line}", file=sys.stderr)
        if len(report.errors) > 200:
            print(f"  ... and {len(report.errors) - 200} more", file=sys.stderr)
        return 1
    for symbol, rows in report.files.items():
        print(f"{'uploaded' if args.to else 'imported'} {symbol}: {rows} daily bars")
    return 0


def _progress(desc: str):
    from tqdm import tqdm

    bar = tqdm(desc=desc, unit="refit", leave=False, file=sys.stderr)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return update


def cmd_train(args: argparse.Namespace) -> int:
    from stockml import training
    from stockpred.market import market_data
    from stockpred.market.prices import ProviderUnavailable, UnknownSymbol
    from stockpred.market.symbols import InvalidSymbol, normalise

    _apply_env(_stack(args))
    try:
        wanted = [i.symbol for i in market_data.default().symbols()] if args.all else [
            normalise(s) for s in args.symbols]
    except InvalidSymbol as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not wanted:
        print("error: name one or more symbols, or --all", file=sys.stderr)
        return 2
    failed = 0
    for symbol in wanted:
        try:
            hist, _ = market_data.default().history(symbol)
            meta = training.train(symbol, hist.bars, kind=args.kind, source=hist.source,
                                  progress=_progress(f"{symbol} walk-forward"),
                                  max_exposure=args.max_exposure)
        except (UnknownSymbol, ProviderUnavailable, training.NotEnoughHistory) as exc:
            print(f"{symbol}: not trained ({type(exc).__name__}: {exc or 'no data'})", file=sys.stderr)
            failed += 1
            continue
        rec = meta["record"]
        low, high = rec["sharpe_difference_interval_90"]
        p_value = "n/a" if rec["p_value"] is None else f"{rec['p_value']:.3f}"
        interval = "n/a" if low is None else f"[{low:+.2f}, {high:+.2f}]"
        print(f"{symbol}: model {meta['version']} ({meta['kind']}, {meta['train_seconds']}s) "
              f"out-of-sample accuracy {rec['accuracy']:.1%}, sized Sharpe {rec['sharpe']:.2f} vs "
              f"plain volatility targeting {rec['vol_target_sharpe']:.2f} (difference 90% interval "
              f"{interval}, corrected p = {p_value}): edge={rec['edge']}; buy-and-hold "
              f"{rec['buy_and_hold_sharpe']:.2f}; mean exposure {rec['mean_exposure']:.2f} "
              f"(at most {meta['sizing']['max_exposure']:g})\n  edge (direction skill): {rec['verdict']}"
              f"\n  risk timing (volatility targeting against holding): {rec['risk_timing']['verdict']}")
    return 1 if failed else 0


def cmd_universe(args: argparse.Namespace) -> int:
    from stockpred.predictions import universes

    _apply_env(_stack(args))
    try:
        if args.action == "create":
            symbols = list(args.symbols)
            if args.from_csv:
                folder = Path(args.from_csv)
                if not folder.is_dir():
                    print(f"error: {folder} is not a folder", file=sys.stderr)
                    return 2
                symbols += universes.symbols_in_folder(folder)
            made = universes.create(args.name, symbols, replace=args.replace)
            print(f"universe {made['name']}: {made['size']} symbols "
                  f"({', '.join(made['symbols'][:10])}{', ...' if made['size'] > 10 else ''})")
        elif args.action == "list":
            found = universes.all_universes()
            for u in found:
                print(f"{u['name']:<24} {u['size']:>5} symbols  updated {u['updated_at']}")
            if not found:
                print("no universes yet: stockpred universe create NAME SYMBOL... | --from-csv DIR")
        else:
            u = universes.get(args.name)
            print(f"{u['name']}: {u['size']} symbols, created {u['created_at']}, updated {u['updated_at']}")
            print(" ".join(u["symbols"]))
    except universes.UniverseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except universes.UnknownUniverse as exc:
        print(f"error: no universe {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_evaluate_universe(args: argparse.Namespace) -> int:
    from threadpoolctl import threadpool_limits

    from stockml import trials
    from stockml.ranking import evaluate_universe_with_series, format_universe_table, plot_universe
    from stockml.universe_data import load_universe_panel
    from stockml.universe_ranks import rankings
    from stockpred.predictions import universes

    _apply_env(_stack(args))
    started = time.perf_counter()
    try:
        loaded = load_universe_panel(args.name, progress=_progress(f"{args.name}: loading histories"))
    except universes.UniverseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except universes.UnknownUniverse:
        print(f"error: no universe {args.name}: stockpred universe list", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for symbol, why in loaded.missing.items():
        print(f"left out {symbol}: {why}", file=sys.stderr)
    # Every configuration tried on the universe counts, this evaluation's included (stockml.trials).
    before = rankings().trials(args.name) or trials.empty(args.name)
    try:
        with threadpool_limits(limits=1, user_api="openmp"):
            report, series = evaluate_universe_with_series(
                loaded.panel, kinds=tuple(args.kind) if args.kind else ("ridge", "hgb"),
                horizon=args.horizon, refit_every=args.refit_every, top_k=args.top_k, band=args.band,
                cost_bps=args.cost_bps, spread_bps=args.spread_bps, lag=args.lag,
                progress=_progress(f"{args.name} walk-forward"),
                prior_trials=before.get("configurations", 0))
    except ValueError as exc:  # too short a history for the first test date, too few symbols
        print(f"error: {args.name}: {exc}", file=sys.stderr)
        return 2
    rankings().save_trials(args.name, trials.count(before, report["trials"]))
    report["universe"]["name"] = args.name
    report["universe"]["left_out"] = loaded.missing
    print(format_universe_table(report))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"evaluate-universe-{args.name}.json"
    json_path.write_text(json.dumps(report, indent=2))
    png_path = plot_universe(report, series, out / f"evaluate-universe-{args.name}.png")
    print(f"\nreport: {json_path}\nchart:  {png_path}\n({time.perf_counter() - started:.1f} s)")
    return 0


def cmd_train_universe(args: argparse.Namespace) -> int:
    from threadpoolctl import threadpool_limits

    from stockml.universe_data import load_universe_panel
    from stockml.universe_ranks import rankings
    from stockml.universe_training import rank_and_publish
    from stockpred.predictions import universes

    _apply_env(_stack(args))
    try:
        loaded = load_universe_panel(args.name, progress=_progress(f"{args.name}: loading histories"))
        for symbol, why in loaded.missing.items():
            print(f"left out {symbol}: {why}", file=sys.stderr)
        with threadpool_limits(limits=1, user_api="openmp"):
            ranking = rank_and_publish(args.name, loaded.panel, rankings(), kind=args.kind,
                                       horizon=args.horizon, missing=loaded.missing,
                                       progress=_progress(f"{args.name} walk-forward"))
    except universes.UnknownUniverse:
        print(f"error: no universe {args.name}: stockpred universe list", file=sys.stderr)
        return 2
    except ValueError as exc:  # a bad name, too few members or days
        print(f"error: {args.name}: {exc}", file=sys.stderr)
        return 2
    record, ic, judged = ranking["record"], ranking["record"]["ic"], ranking["record"]["edge_judgement"]
    print(f"universe {args.name}: {ranking['model']['kind']} ranker, {len(ranking['ranking'])} members "
          f"ranked on {ranking['as_of']} ({ranking['model']['seconds']} s)")
    print(f"  out of sample: mean daily rank IC {_num(ic['ic_mean'], '+.4f')} "
          f"(Newey-West t {_num(ic['t_newey_west'], '.2f')}, {ic['days']} days); "
          f"edge over equal weight after costs: {record['edge']} "
          f"(corrected p {_num(record['p_value'], '.3f')}; judgement {judged['number']} of this "
          f"universe, made {'now' if judged['rejudged'] else 'earlier'} on the record through "
          f"{judged['judged_through']}, needs p < {judged['alpha']:.4f}; "
          f"{record['trials_counted']} configurations counted)")
    for entry in ranking["ranking"][:5]:
        print(f"  {entry['rank']:>4}. {entry['symbol']:<8} percentile {entry['percentile']:5.1f}  "
              f"expected excess {_num(entry['expected_excess_return'], '+.4%')}")
    print(f"GET /api/universes/{args.name}/ranking serves it")
    return 0


def _num(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from threadpoolctl import threadpool_limits

    from stockml.evaluation import correct_for_multiple_tests, evaluate_with_frames
    from stockml.evaluation_report import format_table, plot_report
    from stockml.features import frame_from_bars
    from stockml.models import MODEL_KINDS
    from stockpred.market import market_data
    from stockpred.market.prices import ProviderUnavailable, UnknownSymbol
    from stockpred.market.symbols import InvalidSymbol, normalise

    _apply_env(_stack(args))
    histories = {}
    for name in args.symbol:
        try:
            symbol = normalise(name)
            histories[symbol], _ = market_data.default().history(symbol)
        except (InvalidSymbol, UnknownSymbol, ProviderUnavailable) as exc:
            print(f"error: {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 2
    kinds = tuple(args.kind) if args.kind else MODEL_KINDS
    started = time.perf_counter()
    results = {}
    # One OpenMP thread per tree fit: hundreds of small fits gain nothing from threads, and on a
    # shared machine oversubscribed threads made the run several times slower.
    with threadpool_limits(limits=1, user_api="openmp"):
        for symbol, hist in histories.items():
            try:
                results[symbol] = evaluate_with_frames(
                    frame_from_bars(hist.bars), symbol=symbol, kinds=kinds,
                    first_test_date=args.first_test_date, refit_every=args.refit_every,
                    cost_bps=args.cost_bps, spread_bps=args.spread_bps, lag=args.lag,
                    max_exposure=args.max_exposure,
                    progress=_progress(f"{symbol} walk-forward (direction and volatility models)"))
            except ValueError as exc:  # too short a history, or a first test date too late
                print(f"error: {symbol}: {exc}", file=sys.stderr)
                return 2
    tests = correct_for_multiple_tests([report for report, _ in results.values()])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for symbol, (report, series) in results.items():
        print(format_table(report) + "\n")
        json_path = out / f"evaluate-{symbol}.json"
        json_path.write_text(json.dumps(report, indent=2))
        png_path = plot_report(report, series, out / f"evaluate-{symbol}.png")
        print(f"report: {json_path}\nchart:  {png_path}\n")
    print(f"{len(results)} symbol(s), {tests} tests, every p-value Holm-corrected across all of them "
          f"({time.perf_counter() - started:.1f} s)")
    return 0


def cmd_cache_status(args: argparse.Namespace) -> int:
    import redis

    from stockpred import config
    from stockpred.market import breakers
    from stockpred.stores import redis_stores

    _apply_env(_stack(args))
    settings = config.load()
    ring = redis_stores.cache_ring()
    state = (f"Sentinel service {settings.state_service}" if settings.redis_sentinels
             else settings.redis_url)
    print(f"cache ring: {len(ring.shards)} shard(s), ketama; state: {state}")
    print(f"{'shard':<12}{'master':<18}{'replicas':<22}{'keys':>8}{'hits':>10}{'misses':>10}"
          f"{'hit ratio':>11}")
    for name, shard in ring.shards.items():
        master, replicas = name, "-"
        if settings.redis_sentinels:
            s = redis_stores.sentinel(settings.redis_sentinels)
            try:
                master = "{}:{}".format(*s.discover_master(name))
                replicas = ",".join("{}:{}".format(*r) for r in s.discover_slaves(name)) or "none"
            except redis.RedisError as exc:
                master = f"unknown ({type(exc).__name__})"
        try:
            stats = shard.master.info("stats")
            keys = shard.master.dbsize()
        except redis.RedisError as exc:
            print(f"{name:<12}{master:<18}{replicas:<22}  unreachable: {exc}")
            continue
        hits, misses = stats["keyspace_hits"], stats["keyspace_misses"]
        ratio = f"{hits / (hits + misses):.1%}" if hits + misses else "-"
        print(f"{name:<12}{master:<18}{replicas:<22}{keys:>8}{hits:>10}{misses:>10}{ratio:>11}")
    print("breakers: " + ", ".join(f"{n} {b['state']} ({b['failures']} failures)"
                                   for n, b in breakers.states().items()))
    return 0


def cmd_etl_run(args: argparse.Namespace) -> int:
    from stockpred.analytics import etl
    from stockpred.analytics.lake import QualityError

    _apply_env(_stack(args))
    try:
        result = etl.run()
    except QualityError as exc:
        print(f"error: data quality check failed, nothing loaded: {exc}", file=sys.stderr)
        return 1
    loaded = ", ".join(f"{n} {c}" for n, c in result["loaded"].items())
    print(f"run {result['run_id']} committed{' (rebuilt from the sources)' if result['rebuilt'] else ''}: "
          f"loaded {loaded}; warehouse holds {result['totals']['trades']} trades, "
          f"{result['totals']['predictions']} predictions")
    if result.get("compacted"):
        merged = ", ".join(f"{table} {n} fewer files" for table, n in result["compacted"].items())
        print(f"closed days compacted into monthly files: {merged}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from stockpred.analytics import reports

    _apply_env(_stack(args))
    signals = pd.DataFrame(reports.signals(None, None, None))
    trading = pd.DataFrame(reports.trading())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    signals.to_csv(out / "signals_by_month.csv", index=False)
    trading.to_csv(out / "trading_by_day.csv", index=False)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7))
    if signals.empty:
        top.text(0.5, 0.5, "no predictions with an outcome yet", ha="center", transform=top.transAxes)
    for symbol, rows in signals.groupby("symbol") if not signals.empty else []:
        top.plot(rows["month"], rows["hit_rate"], marker="o", label=symbol)
    top.axhline(0.5, color="grey", linestyle="--", linewidth=0.8)
    top.set_title("signal hit rate by month (from the warehouse)")
    top.set_ylabel("hit rate")
    if not signals.empty:
        top.legend()
    if trading.empty:
        bottom.text(0.5, 0.5, "no trades yet", ha="center", transform=bottom.transAxes)
    else:
        bottom.bar(trading["date"], trading["volume_cents"] / 100, label="volume (USD)")
        bottom.plot(trading["date"], trading["realised_pnl_cents"] / 100, color="black", marker="o",
                    label="realised P&L (USD)")
        bottom.legend()
    bottom.set_title("trading by day")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(out / "report.png", dpi=110)
    print(f"wrote {out / 'report.png'}, {out / 'signals_by_month.csv'}, {out / 'trading_by_day.csv'}")
    return 0


def _print_lines(lines: list[dict], wide: bool) -> None:
    width = None if wide else 100
    print(f"{'time':<25}{'level':<9}{'function':<26}{'service':<13}{'correlation id':<38}message")
    for line in lines:
        message = line.get("message", "")
        if line.get("exception") and wide:
            message += "\n" + line["exception"]
        if width:
            message = message.replace("\n", " | ")[:width]
        print(f"{line.get('timestamp', ''):<25}{line.get('level', ''):<9}"
              f"{line.get('function', '')[:25]:<26}{line.get('service', '')[:12]:<13}"
              f"{line.get('correlation_id', '')[:37]:<38}{message}")


def cmd_logs(args: argparse.Namespace) -> int:
    from stockpred.observability import logship, opensearch

    _apply_env(_stack(args))
    try:
        if args.action == "status":
            indices = opensearch.daily_indices()
            counts = logship.dead_letter_counts()
            print(f"log store {os.environ.get('OPENSEARCH_URL')}: {len(indices)} daily indices"
                  + (f" ({min(indices.values())} to {max(indices.values())})" if indices else ""))
            print(f"dead letters waiting: {counts['waiting']} objects; "
                  f"refused lines: {counts['rejected']} objects")
            return 0
        if args.action == "maintenance":
            print(json.dumps(logship.maintenance(), indent=2, default=str))
            return 0
        now = dt.datetime.now(dt.UTC)
        try:
            since = opensearch.parse_time(args.since, now) if args.since else (
                None if args.correlation_id else now - dt.timedelta(hours=1))
        except ValueError as exc:
            print(f"error: --since {exc}", file=sys.stderr)
            return 1
        found = opensearch.search(correlation_id=args.correlation_id, service=args.service,
                                  level=args.level, function=args.function,
                                  transaction_id=args.transaction_id, since=since, text=args.text,
                                  limit=args.limit)
    except opensearch.LogStoreUnavailable as exc:
        print(f"error: {exc} (is the stack up? `make run`)", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(found["lines"], indent=2))
        return 0
    _print_lines(found["lines"], args.wide)
    shown = len(found["lines"])
    print(f"\n{shown} line(s)" + (f" of {found['total']} (the latest; --limit for more)"
                                   if found["total"] > shown else ""))
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    from stockpred.observability import metrics, opensearch

    _apply_env(_stack(args))
    until = dt.datetime.now(dt.UTC)
    try:
        since = opensearch.parse_time(args.since, until)
    except ValueError as exc:
        print(f"error: --since {exc}", file=sys.stderr)
        return 1
    try:
        summary = opensearch.metric_summary(since, until, metrics.COUNTS)
    except opensearch.LogStoreUnavailable as exc:
        print(f"error: {exc} (is the stack up? `make run`)", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"since {since:%Y-%m-%d %H:%M:%S} UTC ({args.since}), from the functions' metric lines")
    print(f"{'function':<24} {'route':<40} {'requests':>8} {'per s':>7} {'4xx':>5} {'5xx':>5} "
          f"{'5xx %':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    for r in summary["routes"]:
        d = r["duration_ms"]
        print(f"{r['function'][:24]:<24} {r['route'][:40]:<40} {r['requests']:>8} {r['rate_per_s']:>7.2f} "
              f"{r['errors_4xx']:>5} {r['errors_5xx']:>5} {r['error_ratio'] * 100:>6.1f} "
              + " ".join(f"{'-' if d.get(k) is None else d[k]:>8}" for k in ("p50", "p95", "p99")))
    if not summary["routes"]:
        print("(no request in the window)")
    for function, counts in sorted(summary["functions"].items()):
        shown = ", ".join(f"{name} {value:g}" for name, value in counts.items() if value)
        if shown:
            print(f"{function}: {shown}")
    return 0


def cmd_alarms(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from stockpred.observability import alarms

    _apply_env(_stack(args))
    try:
        found = alarms.describe()
    except (BotoCoreError, ClientError) as exc:
        print(f"error: CloudWatch (moto) does not answer: {exc} (is the stack up? `make run`)",
              file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    if args.state:
        found = [a for a in found if a["state"] == args.state]
    print(", ".join(f"{n} {state}" for state, n in alarms.counts(found).items()))
    for a in found:
        print(f"{a['state']:<17} {a['name']:<40} {a['reason'][:100]}")
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    from stockpred.observability import health

    _apply_env(_stack(args))
    report = health.check(emit=False)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"overall: {report['status']}")
        for name, dep in report["dependencies"].items():
            latency = "-" if dep["latency_ms"] is None else f"{dep['latency_ms']:.1f} ms"
            print(f"{dep['status']:<9} {name:<15} {latency:>10}  {dep['detail']}")
    return 0 if report["status"] == "ok" else 1


def cmd_users(args: argparse.Namespace) -> int:
    from stockpred.identity.users import UserNotFound, Users

    _apply_env(_stack(args))
    try:
        user_id = Users().set_role(args.email, args.role, granted=args.action == "grant")
    except UserNotFound:
        print(f"error: no user with the email {args.email}", file=sys.stderr)
        return 1
    print(f"{'granted' if args.action == 'grant' else 'revoked'} {args.role} "
          f"{'to' if args.action == 'grant' else 'from'} {args.email} (user {user_id})")
    return 0


def cmd_dashboard_publish(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from devstack import dashboard

    outputs: dict[str, str] = {}
    try:
        if args.stack:
            outputs = dashboard.stack_outputs(args.stack)
        bucket = args.bucket or outputs.get("DashboardBucketName")
        ws_url = args.ws_url or outputs.get("WebSocketUrl")
        distribution = args.distribution_id or outputs.get("DashboardDistributionId")
        if not bucket or not ws_url:
            print("error: give --stack NAME (its DashboardBucketName and WebSocketUrl outputs), or "
                  "--bucket and --ws-url", file=sys.stderr)
            return 2
        uploads = dashboard.publish(bucket, ws_url, root=args.root, distribution_id=distribution,
                                    invalidate=not args.no_invalidate)
    except (FileNotFoundError, BotoCoreError, ClientError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    size = sum(u.size for u in uploads)
    print(f"published {len(uploads)} file(s), {size} bytes, to s3://{bucket}/"
          + (f"; the dashboard: {outputs['DashboardUrl']}" if outputs.get("DashboardUrl") else ""))
    return 0


def _exposure_cap(text: str) -> float:
    from stockpred.config import MAX_LEVERAGE, MIN_EXPOSURE

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not MIN_EXPOSURE <= value <= MAX_LEVERAGE:
        raise argparse.ArgumentTypeError(f"must be between {MIN_EXPOSURE:g} and {MAX_LEVERAGE:g}, not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stockpred", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("up", help="start the whole local stack and print its URLs")
    p.set_defaults(func=cmd_up)
    p = sub.add_parser("down", help="stop every process the local stack started")
    p.set_defaults(func=cmd_down)
    p = sub.add_parser("serve", help="the local stack in the foreground until SIGTERM (a container's "
                       "command: see docker-compose.yml)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("services", help="start, stop or show the data services")
    p.add_argument("action", choices=["up", "down", "status"])
    p.set_defaults(func=cmd_services)

    p = sub.add_parser("import-csv", help="import Date,Open,High,Low,Close,Volume CSV files",
                       description="Import every <SYMBOL>.csv in DIR. All rows of all files are "
                       "checked first; if any is bad, the problems are listed with their line "
                       "numbers and nothing is imported.")
    p.add_argument("dir", help="folder of <SYMBOL>.csv files")
    p.add_argument("--currency", default="USD")
    p.add_argument("--to", metavar="s3://BUCKET[/PREFIX]",
                   help="upload to a market data bucket (on AWS: the stack's MarketDataBucket output) "
                        "instead of the local PostgreSQL; the `s3` provider reads prices/<SYMBOL>.csv")
    p.set_defaults(func=cmd_import_csv)

    p = sub.add_parser("universe", help="named sets of symbols to rank against each other",
                       description="create NAME SYMBOL... stores a universe (2 to 5,000 symbols; "
                       "--from-csv DIR adds every <SYMBOL>.csv of a folder you imported with "
                       "import-csv; --replace changes an existing one); list shows them all (also "
                       "GET /api/universes); show NAME prints one's members.")
    p.add_argument("action", choices=["create", "list", "show"])
    p.add_argument("name", nargs="?", help="the universe's name (create, show): letters, digits, - or _")
    p.add_argument("symbols", nargs="*", help="its symbols (create)")
    p.add_argument("--from-csv", metavar="DIR", help="add the symbols of DIR's <SYMBOL>.csv files")
    p.add_argument("--replace", action="store_true", help="replace an existing universe's members")
    p.set_defaults(func=cmd_universe)

    p = sub.add_parser("train", help="train, evaluate walk-forward and publish models",
                       description="For each symbol: a walk-forward evaluation on its history gives "
                       "the model's out-of-sample record (and its edge flag), then the model is fit "
                       "on all history and published to the registry (S3) and PostgreSQL.")
    p.add_argument("symbols", nargs="*", help="symbols to train")
    p.add_argument("--all", action="store_true", help="every symbol the market data knows")
    p.add_argument("--kind", default="logreg", choices=["logreg", "hgb"])
    p.add_argument("--max-exposure", type=_exposure_cap, default=None,
                   help="largest exposure the model's sizing may recommend (default: the "
                        "MAX_EXPOSURE setting, 1.0: no leverage; at most 4)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="walk-forward report of the models beside four baselines",
                       description="Prints, per symbol, the metrics table (models and buy-and-hold, "
                       "always-up, yesterday's direction, SMA 20/50 on the same out-of-sample days), the "
                       "volatility models' QLIKE/MSE with Diebold-Mariano p-values against the naive "
                       "forecast, and the sized strategies (volatility targeting, with and without the "
                       "model's conviction) with their Sharpe differences to buy and hold and to plain "
                       "volatility targeting, 90%% intervals and studentised bootstrap p-values, "
                       "Holm-corrected across every test of every symbol named. Edge is direction skill "
                       "(a sized model beats plain volatility targeting); risk timing (volatility "
                       "targeting against holding) is reported apart. Every strategy trades a bar late "
                       "(--lag). Writes a JSON report and a PNG of equity curves, exposures and "
                       "volatility per symbol.")
    p.add_argument("symbol", nargs="+", help="one or more symbols, tested as one family")
    p.add_argument("--kind", action="append", choices=["logreg", "hgb"],
                   help="model kind (repeatable; default both)")
    p.add_argument("--first-test-date", default="2009-02-09",
                   help="first out-of-sample day (default 2009-02-09; moved later, with a note, for a "
                        "history without 504 days before it)")
    p.add_argument("--refit-every", type=int, default=21, help="trading days between refits")
    p.add_argument("--cost-bps", type=float, default=10.0,
                   help="cost per unit of turnover (per side), basis points (default 10)")
    p.add_argument("--spread-bps", type=float, default=5.0,
                   help="bid-ask spread, basis points; half of it is paid per unit of turnover (default 5)")
    p.add_argument("--lag", type=int, choices=range(0, 6), default=1, metavar="BARS",
                   help="bars between the close a decision is made from and its fill at a later close "
                        "(default 1; 0 fills at the very close that was read: not tradeable)")
    p.add_argument("--max-exposure", type=_exposure_cap, default=1.0,
                   help="largest recommended exposure (default 1.0: no leverage; at most 4)")
    p.add_argument("--out", default="reports", help="folder for the JSON and PNG (default reports/)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("evaluate-universe", help="rank a universe: IC, deciles, top-k portfolios",
                       description="Walk-forward evaluation of cross-sectional rankers (ridge and "
                       "gradient-boosted trees on per-day rank-normalised features) on a stored "
                       "universe: daily rank IC, ICIR and its t-statistic, IC decay, next-day excess "
                       "return by decile, and long-only top-k and long-short portfolios traded a bar "
                       "late with costs against the equal-weight universe, with Holm-corrected "
                       "bootstrap tests and the deflated Sharpe ratio. Writes a JSON report and a PNG "
                       "(cumulative IC, deciles, equity curves).")
    p.add_argument("name", help="the universe (stockpred universe list)")
    p.add_argument("--kind", action="append", choices=["ridge", "hgb"],
                   help="ranker (repeatable; default both)")
    p.add_argument("--horizon", type=int, choices=[1, 5], default=1,
                   help="label: next 1 or 5 days (default 1)")
    p.add_argument("--refit-every", type=int, default=63, help="trading days between refits (default 63)")
    p.add_argument("--top-k", type=int, default=None, help="names held (default a tenth of the universe)")
    p.add_argument("--band", type=int, default=None,
                   help="hold a name until it leaves the top BAND (default 2 x top-k)")
    p.add_argument("--cost-bps", type=float, default=10.0, help="cost per unit of turnover (default 10)")
    p.add_argument("--spread-bps", type=float, default=5.0, help="bid-ask spread; half paid per unit traded")
    p.add_argument("--lag", type=int, choices=range(0, 6), default=1, metavar="BARS",
                   help="bars between a decision's close and its fill (default 1)")
    p.add_argument("--out", default="reports", help="folder for the JSON and PNG (default reports/)")
    p.set_defaults(func=cmd_evaluate_universe)

    p = sub.add_parser("train-universe", help="train a universe's ranker and publish the day's ranking",
                       description="Evaluates the ranker walk-forward (its out-of-sample rank IC and "
                       "the mean excess return of each score decile), fits it on all history, ranks "
                       "the members on the last day and publishes the ranking to the model bucket, "
                       "where GET /api/universes/NAME/ranking and GET /api/predict/SYMBOL read it. "
                       "The retrain function does the same after every close.")
    p.add_argument("name", help="the universe (stockpred universe list)")
    p.add_argument("--kind", choices=["ridge", "hgb"], default="ridge", help="ranker (default ridge)")
    p.add_argument("--horizon", type=int, choices=[1, 5], default=1,
                   help="label: next 1 or 5 days (default 1)")
    p.set_defaults(func=cmd_train_universe)

    p = sub.add_parser("etl", help="load the data warehouse",
                       description="One incremental ETL run: extracts what is new since the stored "
                       "high-water marks, writes Parquet to the warehouse bucket, checks the data, "
                       "and commits the manifest; a failed check loads nothing.")
    p.add_argument("action", choices=["run"])
    p.set_defaults(func=cmd_etl_run)

    p = sub.add_parser("report", help="the warehouse's analytics as a PNG chart and CSV files")
    p.add_argument("--out", default="reports", help="folder for the files (default reports/)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("cache", help="the cache ring and the circuit breakers")
    p.add_argument("action", choices=["status"])
    p.set_defaults(func=cmd_cache_status)

    p = sub.add_parser("logs", help="search every function's log lines (OpenSearch)",
                       description="Search the centralised logs. Follow one request: "
                                   "`stockpred logs search --correlation-id ID`.")
    p.add_argument("action", choices=["search", "status", "maintenance"],
                   help="search: print matching lines (oldest first); status: indices and dead "
                        "letters; maintenance: re-drive dead letters and apply retention now")
    p.add_argument("--correlation-id", help="one request's id (its X-Correlation-Id header)")
    p.add_argument("--service", help="e.g. users, saga, trading, market, logship")
    p.add_argument("--function", help="a function's name, e.g. UsersFunction")
    p.add_argument("--level", choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
                   type=str.upper)
    p.add_argument("--transaction-id", help="a trade's transaction id")
    p.add_argument("--text", help="words the message must contain")
    p.add_argument("--since", help="15m, 2h, 7d or an ISO time (default 1h; all time with "
                                   "--correlation-id)")
    p.add_argument("--limit", type=int, default=200, help="the latest N lines (default 200)")
    p.add_argument("--wide", action="store_true", help="whole messages and tracebacks")
    p.add_argument("--json", action="store_true", help="the lines as JSON")
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("metrics", help="request rate, errors and latency per function and route",
                       description="Summarise the functions' metric lines (OpenSearch): requests, rate, "
                                   "4xx and 5xx, p50/p95/p99 duration per route, and each function's "
                                   "business counts. The same as GET /api/ops/metrics.")
    p.add_argument("--since", default="1h", help="15m, 2h, 7d or an ISO time (default 1h)")
    p.add_argument("--json", action="store_true", help="the summary as JSON")
    p.set_defaults(func=cmd_metrics)

    p = sub.add_parser("alarms", help="the stack's alarms and their states (OK, ALARM, INSUFFICIENT_DATA)",
                       description="The CloudWatch alarms of template.yaml and their states: on the local "
                                   "stack devstack evaluates them against the functions' metric lines, as "
                                   "CloudWatch does on AWS. The same as GET /api/ops/alarms.")
    p.add_argument("--state", choices=["OK", "ALARM", "INSUFFICIENT_DATA"], help="only alarms in this state")
    p.add_argument("--json", action="store_true", help="the alarms as JSON")
    p.set_defaults(func=cmd_alarms)

    p = sub.add_parser("health", help="probe every dependency of the stack",
                       description="Probes PostgreSQL, the MongoDB store, the state Redis, the cache "
                                   "ring, Step Functions, the market data provider's breaker and "
                                   "OpenSearch, each within 2 s, as GET /api/health?deep=true does. Exits 1 "
                                   "unless every one is up.")
    p.add_argument("--json", action="store_true", help="the report as JSON")
    p.set_defaults(func=cmd_health)

    p = sub.add_parser("users", help="grant or revoke a user's role",
                       description="Roles: admin (operators: GET /api/logs).")
    p.add_argument("action", choices=["grant", "revoke"])
    p.add_argument("email")
    p.add_argument("role", choices=["admin"])
    p.set_defaults(func=cmd_users)

    p = sub.add_parser("dashboard", help="publish the web dashboard to AWS",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="publish: uploads every file of web/ (not node_modules/, not "
                       "package*.json)\nwith its content type and Cache-Control: no-cache, the pinned "
                       "lightweight-charts\nas vendor/lightweight-charts.standalone.production.js, and "
                       "a generated config.json\n({\"apiUrl\": \"\", \"wsUrl\": <the WebSocket API>}) "
                       "to the stack's dashboard bucket, then\ninvalidates /* on its CloudFront "
                       "distribution. AWS credentials and region come from\nboto3's usual settings "
                       "(AWS_PROFILE, AWS_REGION, ...).",
                       epilog="examples:\n"
                              "  stockpred dashboard publish --stack stockpred\n"
                              "  stockpred dashboard publish --bucket B --ws-url wss://ID.execute-api."
                              "REGION.amazonaws.com/live --no-invalidate")
    p.add_argument("action", choices=["publish"])
    p.add_argument("--stack", metavar="NAME",
                   help="read DashboardBucketName, DashboardDistributionId and WebSocketUrl from "
                        "this CloudFormation stack's outputs")
    p.add_argument("--bucket", help="the dashboard bucket (overrides the stack's output)")
    p.add_argument("--ws-url", help="the WebSocket API's URL written to config.json (overrides "
                                    "the stack's WebSocketUrl output)")
    p.add_argument("--distribution-id", help="the CloudFront distribution to invalidate "
                                             "(overrides the stack's output)")
    p.add_argument("--no-invalidate", action="store_true",
                   help="upload only; CloudFront keeps serving its cached copies until they expire")
    p.add_argument("--root", type=Path, default=None,
                   help="the site's folder (default: $DASHBOARD_ROOT, else the repository's web/)")
    p.set_defaults(func=cmd_dashboard_publish)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(args.func(args))


if __name__ == "__main__":
    main()
