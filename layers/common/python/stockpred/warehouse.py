"""The data warehouse: incremental ETL into a star schema of Parquet files on S3, and its reads.

Layout under `s3://<WAREHOUSE_BUCKET>/warehouse/` (Hive-style partitions, what Glue and Athena read):
    fact_trades/trade_date=YYYY-MM-DD/part-<run>.parquet     new trades of each run
    fact_predictions/as_of=YYYY-MM-DD/part-<run>.parquet     new predictions and new outcomes
    fact_prices/year=YYYY/part-<run>.parquet                 new daily bars
    dim_symbol/, dim_user/, dim_date/  part-<run>.parquet    rebuilt by every run
    _manifest.json                                           what is committed, and the marks

A run extracts from each source only what is newer than its high-water mark (with an overlap
window, minus what the warehouse already holds), writes its files, checks the data, and only
then replaces `_manifest.json` in one PUT. Readers see only files the manifest lists, so a run
that fails half-way changes nothing visible, and a run with nothing new loads nothing. An empty
bucket has no manifest: the next run rebuilds everything from the sources.

Users appear only as a keyed hash of their id (`user_key`); no email or password hash is read.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import io
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from stockpred import aws, config, faults, ledger, market, mongo, postgres, secrets
from stockpred.logs import get_logger
from stockpred.sample_data import SAMPLE_SERIES, SampleProvider

log = get_logger("warehouse")
PREFIX = "warehouse"
MANIFEST = f"{PREFIX}/_manifest.json"
OVERLAP = dt.timedelta(hours=1)
EPOCH = "1970-01-01T00:00:00+00:00"
FACTS = ("fact_trades", "fact_predictions", "fact_prices")
DIMS = ("dim_symbol", "dim_user", "dim_date")


class QualityError(RuntimeError):
    """A data quality check failed: the run loads nothing."""


def bucket() -> str:
    return config.load().warehouse_bucket


def user_key(user_id: str) -> str:
    """A stable pseudonym: the same user always gets the same key; the key does not give the id."""
    secret = secrets.pseudonym_key()
    if len(secret) < 32:
        raise config.ConfigError("the pseudonym key (PSEUDONYM_KEY_SECRET_ARN's secret) must be 32+ "
                                 "characters")
    return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()[:24]


# ---- the manifest ------------------------------------------------------------------------------
def read_manifest() -> dict[str, Any] | None:
    s3 = aws.client("s3")
    try:
        return json.loads(s3.get_object(Bucket=bucket(), Key=MANIFEST)["Body"].read())
    except (s3.exceptions.NoSuchKey, s3.exceptions.NoSuchBucket):
        return None


def _empty_manifest() -> dict[str, Any]:
    return {"run_id": None, "files": {t: [] for t in (*FACTS, *DIMS)},
            "hwm": {"trades": EPOCH, "predictions": EPOCH, "prices": EPOCH, "sample": {}},
            "counts": {}}


# ---- reading the warehouse ---------------------------------------------------------------------
def _filesystem() -> Any:
    from pyarrow import fs

    settings = config.load()
    endpoint = settings.aws_endpoint_for("s3")
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        return fs.S3FileSystem(endpoint_override=host, scheme=scheme, region=settings.aws_region,
                               access_key=settings.aws_access_key_id,
                               secret_key=settings.aws_secret_access_key)
    return fs.S3FileSystem(region=settings.aws_region)


_loaded: dict[tuple[str, tuple[str, ...]], pa.Table] = {}


def table(name: str, manifest: dict[str, Any] | None = None) -> pa.Table:
    """One table of the committed warehouse (only files the manifest lists).

    A warm process keeps what it read for the file list it read it from: a query after a new
    commit reads again, a query without one costs only the manifest GET.
    """
    import pyarrow.dataset as ds

    manifest = manifest if manifest is not None else read_manifest() or _empty_manifest()
    files = tuple(manifest["files"].get(name, []))
    if not files:
        return pa.table(SCHEMAS[name].empty_table())
    if (name, files) not in _loaded:
        dataset = ds.dataset([f"{bucket()}/{k}" for k in files], filesystem=_filesystem(),
                             format="parquet", partitioning="hive", schema=SCHEMAS[name])
        for key in [k for k in _loaded if k[0] == name]:
            del _loaded[key]
        _loaded[(name, files)] = dataset.to_table()
    return _loaded[(name, files)]


VIEWS = {
    "fact_predictions": """SELECT * FROM fact_predictions_files QUALIFY row_number()
                           OVER (PARTITION BY prediction_id ORDER BY updated_at DESC) = 1""",
    "fact_prices": """SELECT * FROM fact_prices_files QUALIFY row_number()
                      OVER (PARTITION BY symbol, day ORDER BY loaded_at DESC) = 1""",
}


def connect(manifest: dict[str, Any] | None = None, tables: tuple[str, ...] = (*FACTS, *DIMS)) -> Any:
    """An in-process DuckDB with the named warehouse tables registered (facts deduplicated)."""
    import duckdb

    manifest = manifest if manifest is not None else read_manifest() or _empty_manifest()
    con = duckdb.connect()
    for name in tables:
        con.register(f"{name}_files", table(name, manifest))
        con.execute(f"CREATE VIEW {name} AS {VIEWS.get(name, f'SELECT * FROM {name}_files')}")
    return con


# ---- schemas -----------------------------------------------------------------------------------
SCHEMAS: dict[str, pa.Schema] = {
    "fact_trades": pa.schema([
        ("trade_id", pa.string()), ("user_key", pa.string()), ("symbol", pa.string()),
        ("side", pa.string()), ("quantity", pa.int64()), ("price_cents", pa.int64()),
        ("amount_cents", pa.int64()), ("fee_cents", pa.int64()), ("realised_pnl_cents", pa.int64()),
        ("source", pa.string()), ("traded_at", pa.timestamp("us", tz="UTC")), ("date_key", pa.int32()),
        ("trade_date", pa.string())]),
    "fact_predictions": pa.schema([
        ("prediction_id", pa.string()), ("symbol", pa.string()), ("model_version", pa.string()),
        ("action", pa.string()), ("probability_up", pa.float64()), ("expected_return", pa.float64()),
        ("predicted_close", pa.float64()), ("last_close", pa.float64()), ("edge", pa.bool_()),
        ("realised_close", pa.float64()), ("realised_return", pa.float64()), ("correct", pa.bool_()),
        ("updated_at", pa.timestamp("us", tz="UTC")), ("date_key", pa.int32()), ("as_of", pa.string())]),
    "fact_prices": pa.schema([
        ("symbol", pa.string()), ("day", pa.date32()), ("open", pa.float64()), ("high", pa.float64()),
        ("low", pa.float64()), ("close", pa.float64()), ("volume", pa.int64()), ("source", pa.string()),
        ("loaded_at", pa.timestamp("us", tz="UTC")), ("date_key", pa.int32()), ("year", pa.string())]),
    "dim_symbol": pa.schema([("symbol", pa.string()), ("name", pa.string()), ("currency", pa.string()),
                             ("source", pa.string())]),
    "dim_user": pa.schema([("user_key", pa.string()), ("registered_date", pa.date32()),
                           ("registered_month", pa.string())]),
    "dim_date": pa.schema([("date_key", pa.int32()), ("date", pa.date32()), ("year", pa.int16()),
                           ("month", pa.int8()), ("day", pa.int8()), ("weekday", pa.int8()),
                           ("is_weekend", pa.bool_())]),
}
PARTITION = {"fact_trades": "trade_date", "fact_predictions": "as_of", "fact_prices": "year"}


def _micros(ts: dt.datetime) -> int:
    return (ts - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)


def _date_key(d: dt.date) -> int:
    return d.year * 10000 + d.month * 100 + d.day


# ---- extract -----------------------------------------------------------------------------------
@dataclass
class Batch:
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {t: [] for t in (*FACTS, *DIMS)})
    hwm: dict[str, Any] = field(default_factory=dict)
    source_counts: dict[str, int] = field(default_factory=dict)
    implausible_trades: list[str] = field(default_factory=list)


# A row the internal /store wrote must carry a client time within the window the API allows
# around its server time (ledger.MAX_BACKDATE / MAX_FUTURE), give or take this slack.
TRADE_TIME_SLACK = dt.timedelta(hours=1)


def _since(hwm: str) -> dt.datetime:
    """Where an incremental read starts: the mark minus the overlap, never after now (a mark in
    the future, from a bad clock or an old bad row, would otherwise hide every new row)."""
    mark = dt.datetime.fromisoformat(hwm)
    return min(mark, dt.datetime.now(dt.UTC)) - OVERLAP


def _plausible(source: str, traded_at: dt.datetime, recorded_at: dt.datetime) -> bool:
    """Whether a ledger row could have come through the services: the saga stamps both times
    itself; /store accepts a client's time only within a window of the server's."""
    if source != "api":
        return True
    return (recorded_at - ledger.MAX_BACKDATE - TRADE_TIME_SLACK <= traded_at
            <= recorded_at + ledger.MAX_FUTURE + TRADE_TIME_SLACK)


def _extract_trades(cur: Any, batch: Batch, hwm: str, loaded: set[str]) -> None:
    """New ledger rows by `recorded_at`, the server's clock: a client's `traded_at`, whatever it
    is, cannot move the mark or hide a row from the next run. A row that could not have come
    through the services (written to the database by hand) is not loaded, so the run fails its
    reconciliation and says which rows to repair."""
    cur.execute("""SELECT id::text, user_id, symbol, side, quantity, price_cents, amount_cents, fee_cents,
                          realised_pnl_cents, source, traded_at, recorded_at
                   FROM transactions WHERE recorded_at > %s ORDER BY recorded_at""", (_since(hwm),))
    newest = min(dt.datetime.fromisoformat(hwm), dt.datetime.now(dt.UTC))
    implausible = []
    for tid, uid, sym, side, qty, price, amount, fee, pnl, src, at, recorded in cur.fetchall():
        newest = max(newest, recorded)
        if tid in loaded:
            continue
        if not _plausible(src, at, recorded):
            implausible.append(tid)
            continue
        day = at.astimezone(dt.UTC).date()
        batch.rows["fact_trades"].append({
            "trade_id": tid, "user_key": user_key(uid), "symbol": sym, "side": side, "quantity": qty,
            "price_cents": price, "amount_cents": amount, "fee_cents": fee, "realised_pnl_cents": pnl,
            "source": src, "traded_at": at, "date_key": _date_key(day), "trade_date": day.isoformat()})
    batch.hwm["trades"] = newest.isoformat()
    batch.implausible_trades = implausible
    cur.execute("SELECT count(*), coalesce(sum(amount_cents), 0) FROM transactions")
    batch.source_counts["trades"], batch.source_counts["trade_amount_cents"] = map(int, cur.fetchone())


def _extract_predictions(cur: Any, batch: Batch, hwm: str, loaded: set[tuple[str, int]]) -> None:
    since = dt.datetime.fromisoformat(hwm) - OVERLAP
    cur.execute("""SELECT id::text, symbol, as_of, model_version, action, probability_up,
                          expected_return, predicted_close, last_close, edge, realised_close,
                          realised_return, correct, updated_at
                   FROM predictions WHERE updated_at > %s ORDER BY updated_at""", (since,))
    newest = dt.datetime.fromisoformat(hwm)
    for (pid, sym, as_of, version, action, prob, exp, pred, last, edge, rclose, rret, correct,
         updated) in cur.fetchall():
        newest = max(newest, updated)
        if (pid, _micros(updated)) in loaded:
            continue
        batch.rows["fact_predictions"].append({
            "prediction_id": pid, "symbol": sym, "model_version": version, "action": action,
            "probability_up": prob, "expected_return": exp, "predicted_close": float(pred),
            "last_close": float(last), "edge": edge,
            "realised_close": None if rclose is None else float(rclose), "realised_return": rret,
            "correct": correct, "updated_at": updated, "date_key": _date_key(as_of),
            "as_of": as_of.isoformat()})
    batch.hwm["predictions"] = newest.isoformat()
    cur.execute("SELECT count(*) FROM predictions")
    batch.source_counts["predictions"] = int(cur.fetchone()[0])


def _price_row(sym: str, bar: Any, source: str, now: dt.datetime) -> dict[str, Any]:
    return {"symbol": sym, "day": bar.date, "open": bar.open, "high": bar.high, "low": bar.low,
            "close": bar.close, "volume": bar.volume, "source": source, "loaded_at": now,
            "date_key": _date_key(bar.date), "year": str(bar.date.year)}


def _extract_prices(cur: Any, batch: Batch, hwm: str, sample_hwm: dict[str, str],
                    loaded: set[tuple[str, str, int]]) -> None:
    now = dt.datetime.now(dt.UTC)
    since = dt.datetime.fromisoformat(hwm) - OVERLAP
    cur.execute("""SELECT symbol, day, open, high, low, close, volume, source, loaded_at
                   FROM price_history WHERE loaded_at > %s""", (since,))
    newest = dt.datetime.fromisoformat(hwm)
    for sym, day, o, h, lo, c, v, src, loaded_at in cur.fetchall():
        newest = max(newest, loaded_at)
        if (sym, day.isoformat(), _micros(loaded_at)) in loaded:
            continue
        batch.rows["fact_prices"].append({
            "symbol": sym, "day": day, "open": float(o), "high": float(h), "low": float(lo),
            "close": float(c), "volume": int(v), "source": src, "loaded_at": loaded_at,
            "date_key": _date_key(day), "year": str(day.year)})
    batch.hwm["prices"] = newest.isoformat()
    sample = SampleProvider()
    marks = dict(sample_hwm)
    for sym in SAMPLE_SERIES:
        bars = sample.daily_bars(sym) or []
        last = dt.date.fromisoformat(marks.get(sym, "0001-01-01"))
        batch.rows["fact_prices"] += [_price_row(sym, b, "sample", now) for b in bars if b.date > last]
        if bars:
            marks[sym] = bars[-1].date.isoformat()
    batch.hwm["sample"] = marks


def _dimensions(batch: Batch, dates: set[dt.date]) -> None:
    for info in market.default().symbols():
        batch.rows["dim_symbol"].append({"symbol": info.symbol, "name": info.name,
                                         "currency": info.currency, "source": info.source})
    known = {r["symbol"] for r in batch.rows["dim_symbol"]}
    for name in ("fact_trades", "fact_predictions"):
        for r in batch.rows[name]:
            if r["symbol"] not in known:
                known.add(r["symbol"])
                batch.rows["dim_symbol"].append({"symbol": r["symbol"], "name": r["symbol"],
                                                 "currency": "USD", "source": "unknown"})
    for u in mongo.db().users.find({}, {"_id": 1, "created_at": 1}):
        created = u["created_at"].date()
        batch.rows["dim_user"].append({"user_key": user_key(u["_id"]), "registered_date": created,
                                       "registered_month": created.strftime("%Y-%m")})
    if dates:
        day, last = min(dates), max(dates)
        while day <= last:
            batch.rows["dim_date"].append({
                "date_key": _date_key(day), "date": day, "year": day.year, "month": day.month,
                "day": day.day, "weekday": day.isoweekday(), "is_weekend": day.weekday() >= 5})
            day += dt.timedelta(days=1)


# ---- load --------------------------------------------------------------------------------------
def _put(key: str, tbl: pa.Table) -> None:
    buf = io.BytesIO()
    pq.write_table(tbl, buf, compression="zstd")
    aws.client("s3").put_object(Bucket=bucket(), Key=key, Body=buf.getvalue())


def _write(name: str, rows: list[dict[str, Any]], run_id: str) -> list[str]:
    """Writes rows as Parquet, one file per partition for facts; returns the keys written."""
    schema = SCHEMAS[name]
    part = PARTITION.get(name)
    if not rows:
        return []
    if part is None:
        key = f"{PREFIX}/{name}/part-{run_id}.parquet"
        _put(key, pa.Table.from_pylist(rows, schema=schema))
        return [key]
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r[part], []).append(r)
    file_schema = schema.remove(schema.get_field_index(part))
    keys = []
    for value, group in sorted(groups.items()):
        key = f"{PREFIX}/{name}/{part}={value}/part-{run_id}.parquet"
        _put(key, pa.Table.from_pylist([{k: v for k, v in r.items() if k != part} for r in group],
                                       schema=file_schema))
        keys.append(key)
    return keys


def _check(batch: Batch, before: Any, loaded_trades: set[str]) -> dict[str, int]:
    """The run's quality gate: no null keys, no duplicate facts, totals reconcile with sources."""
    problems = []
    trades = batch.rows["fact_trades"]
    preds = batch.rows["fact_predictions"]
    for name, key_fields in (("fact_trades", ("trade_id", "user_key", "symbol", "trade_date")),
                             ("fact_predictions", ("prediction_id", "symbol", "as_of", "updated_at")),
                             ("fact_prices", ("symbol", "day"))):
        nulls = sum(any(r.get(k) is None for k in key_fields) for r in batch.rows[name])
        if nulls:
            problems.append(f"{name}: {nulls} row(s) with a null key")
    ids = [r["trade_id"] for r in trades]
    if len(ids) != len(set(ids)) or loaded_trades & set(ids):
        problems.append("fact_trades: a trade would be loaded twice")
    old_trades, old_amount = before.execute(
        "SELECT count(*), coalesce(sum(amount_cents), 0) FROM fact_trades").fetchone()
    total = old_trades + len(trades)
    amount = old_amount + sum(r["amount_cents"] for r in trades)
    if total != batch.source_counts["trades"] or amount != batch.source_counts["trade_amount_cents"]:
        problems.append(f"fact_trades: {total} rows / {amount} cents do not reconcile with the ledger's "
                        f"{batch.source_counts['trades']} / {batch.source_counts['trade_amount_cents']}")
    old_preds = {pid for (pid,) in before.execute("SELECT prediction_id FROM fact_predictions").fetchall()}
    n_preds = len(old_preds | {r["prediction_id"] for r in preds})
    if n_preds != batch.source_counts["predictions"]:
        problems.append(f"fact_predictions: {n_preds} predictions, the service has "
                        f"{batch.source_counts['predictions']}")
    if batch.implausible_trades:
        problems.append(f"ledger: {len(batch.implausible_trades)} row(s) whose trade time is outside "
                        f"the window around their recorded time, not loaded: "
                        f"{', '.join(batch.implausible_trades[:5])}")
    if problems:
        raise QualityError("; ".join(problems))
    return {"trades": total, "predictions": n_preds}


def run() -> dict[str, Any]:
    """One ETL run: extract what is new, transform, write, check, then commit the manifest."""
    manifest = read_manifest()
    rebuilt = manifest is None
    manifest = manifest or _empty_manifest()
    before = connect(manifest)
    loaded_trades = {tid for (tid,) in before.execute("SELECT trade_id FROM fact_trades").fetchall()}
    loaded_preds = set(before.execute(
        "SELECT prediction_id, epoch_us(updated_at) FROM fact_predictions_files").fetchall())
    loaded_prices = {(sym, str(day), us) for sym, day, us in before.execute(
        "SELECT symbol, CAST(day AS VARCHAR), epoch_us(loaded_at) FROM fact_prices_files "
        "WHERE source <> 'sample'").fetchall()}
    batch = Batch()
    conn = postgres.connect()
    try:
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with conn, conn.cursor() as cur:
            _extract_trades(cur, batch, manifest["hwm"]["trades"], loaded_trades)
            _extract_predictions(cur, batch, manifest["hwm"]["predictions"], loaded_preds)
            _extract_prices(cur, batch, manifest["hwm"]["prices"], manifest["hwm"]["sample"], loaded_prices)
    finally:
        conn.close()
    dates = {dt.date.fromisoformat(r["trade_date"]) for r in batch.rows["fact_trades"]}
    dates |= {dt.date.fromisoformat(r["as_of"]) for r in batch.rows["fact_predictions"]}
    dates |= {r["day"] for r in batch.rows["fact_prices"]}
    old_dates = before.execute("SELECT min(date), max(date) FROM dim_date").fetchone()
    dates |= {d for d in old_dates if d is not None}
    _dimensions(batch, dates)
    totals = _check(batch, before, loaded_trades)

    run_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    files = {name: list(manifest["files"].get(name, [])) + _write(name, batch.rows[name], run_id)
             for name in FACTS}
    files.update({name: _write(name, batch.rows[name], run_id) for name in DIMS})
    faults.check("etl.before_commit")
    new_manifest = {
        "run_id": run_id, "committed_at": dt.datetime.now(dt.UTC).isoformat(), "files": files,
        "hwm": {**manifest["hwm"], **batch.hwm}, "counts": totals,
    }
    aws.client("s3").put_object(Bucket=bucket(), Key=MANIFEST, ContentType="application/json",
                                Body=json.dumps(new_manifest, indent=1).encode())
    removed = _collect_garbage(new_manifest)
    loaded = {name: len(batch.rows[name]) for name in FACTS}
    log.info("etl run committed", extra={"fields": {"run_id": run_id, "loaded": loaded, "rebuilt": rebuilt}})
    return {"run_id": run_id, "loaded": loaded, "rebuilt": rebuilt, "totals": totals,
            "files_removed": removed}


def _collect_garbage(manifest: dict[str, Any], grace: dt.timedelta = OVERLAP) -> int:
    """Deletes files no manifest lists (replaced dimensions, a failed run's parts) once they are
    older than `grace`, so tools that read whole folders (Glue, Athena) see what readers here see."""
    s3 = aws.client("s3")
    listed = {k for keys in manifest["files"].values() for k in keys} | {MANIFEST}
    cutoff = dt.datetime.now(dt.UTC) - grace
    removed = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket(), Prefix=f"{PREFIX}/"):
        for obj in page.get("Contents", []):
            if obj["Key"] not in listed and obj["LastModified"] < cutoff:
                s3.delete_object(Bucket=bucket(), Key=obj["Key"])
                removed += 1
    return removed


# ---- analytics ---------------------------------------------------------------------------------
def signals(symbol: str | None, start: dt.date | None, end: dt.date | None) -> list[dict[str, Any]]:
    """Per symbol and month: predictions with an outcome, hit rate, mean realised return after buy
    and after sell."""
    where, params = ["correct IS NOT NULL"], []
    if symbol:
        where.append("symbol = ?")
        params.append(symbol)
    if start:
        where.append("CAST(as_of AS DATE) >= ?")
        params.append(start)
    if end:
        where.append("CAST(as_of AS DATE) <= ?")
        params.append(end)
    rows = connect(tables=("fact_predictions",)).execute(f"""
        SELECT symbol, substr(as_of, 1, 7) AS month, count(*) AS predictions,
               avg(CAST(correct AS DOUBLE)) AS hit_rate,
               avg(realised_return) FILTER (WHERE action = 'buy') AS mean_return_after_buy,
               avg(realised_return) FILTER (WHERE action = 'sell') AS mean_return_after_sell,
               count(*) FILTER (WHERE action = 'buy') AS buys,
               count(*) FILTER (WHERE action = 'sell') AS sells
        FROM fact_predictions WHERE {' AND '.join(where)}
        GROUP BY 1, 2 ORDER BY 1, 2""", params).fetchall()
    cols = ("symbol", "month", "predictions", "hit_rate", "mean_return_after_buy",
            "mean_return_after_sell", "buys", "sells")
    return [dict(zip(cols, r, strict=True)) for r in rows]


def trading() -> list[dict[str, Any]]:
    """Per day: trades, volume and realised P&L (sells), in cents."""
    rows = connect(tables=("fact_trades",)).execute("""
        SELECT trade_date, count(*) AS trades, sum(quantity) AS shares,
               sum(amount_cents) AS volume_cents,
               coalesce(sum(realised_pnl_cents), 0) AS realised_pnl_cents
        FROM fact_trades GROUP BY 1 ORDER BY 1""").fetchall()
    cols = ("date", "trades", "shares", "volume_cents", "realised_pnl_cents")
    return [dict(zip(cols, (str(r[0]), *map(int, r[1:])), strict=True)) for r in rows]
