"""The warehouse's ETL run: extract what is new from PostgreSQL, MongoDB and the sample data,
pseudonymise users, check the batch, write it and commit the manifest (then compact).

A run extracts from each source only what is newer than its high-water mark (with an overlap
window, minus what the warehouse already holds), writes one file per partition it touches,
checks the data, and only then commits the manifest. Readers see only files the manifest lists,
so a run that fails half-way changes nothing visible, and a run with nothing new loads nothing.
An empty bucket, or a manifest of an older layout, has no usable manifest: the next run rebuilds
everything from the sources.

Users appear only as a keyed hash of their id (`user_key`); no email or password hash is read.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import io
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from stockpred import config
from stockpred.analytics import compaction, lake
from stockpred.analytics.lake import DIMS, FACTS, LAYOUT, OVERLAP, SCHEMAS, QualityError
from stockpred.cloud import secrets
from stockpred.market import market_data
from stockpred.market.sample_data import SAMPLE_SERIES, SampleProvider
from stockpred.observability import metrics
from stockpred.observability.logs import get_logger
from stockpred.stores import mongo, postgres
from stockpred.trading import faults, ledger

log = get_logger("warehouse")


def _pseudonym_secret() -> bytes:
    secret = secrets.pseudonym_key()
    if len(secret) < 32:
        raise config.ConfigError("the pseudonym key (PSEUDONYM_KEY_SECRET_ARN's secret) must be 32+ "
                                 "characters")
    return secret.encode()


def user_key(user_id: str) -> str:
    """A stable pseudonym: the same user always gets the same key; the key does not give the id."""
    return _user_keys([user_id])[0]


def _user_keys(user_ids: list[str]) -> list[str]:
    secret = _pseudonym_secret()
    return [hmac.new(secret, u.encode(), hashlib.sha256).hexdigest()[:24] for u in user_ids]


def _micros(ts: dt.datetime) -> int:
    return (ts - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)


def _date_key(d: dt.date) -> int:
    return d.year * 10000 + d.month * 100 + d.day


# ---- extract -----------------------------------------------------------------------------------
@dataclass
class Batch:
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {t: [] for t in (*FACTS, *DIMS)})
    trades: pa.Table = field(default_factory=lambda: SCHEMAS["fact_trades"].empty_table())
    hwm: dict[str, Any] = field(default_factory=dict)
    source_counts: dict[str, int] = field(default_factory=dict)
    implausible_trades: list[str] = field(default_factory=list)

    def facts(self, name: str) -> pa.Table:
        if name == "fact_trades":
            return self.trades
        return pa.Table.from_pylist(self.rows[name], schema=SCHEMAS[name])


# A row the internal /store wrote must carry a client time within the window the API allows
# around its server time (ledger.MAX_BACKDATE / MAX_FUTURE), give or take this slack.
TRADE_TIME_SLACK = dt.timedelta(hours=1)


def _since(hwm: str) -> dt.datetime:
    """Where an incremental read starts: the mark minus the overlap, never after now (a mark in
    the future, from a bad clock or an old bad row, would otherwise hide every new row)."""
    mark = dt.datetime.fromisoformat(hwm)
    return min(mark, dt.datetime.now(dt.UTC)) - OVERLAP


def _plausible(source: pa.Array, traded_us: pa.Array, recorded_us: pa.Array) -> pa.Array:
    """Whether each ledger row could have come through the services: the saga stamps both times
    itself; /store accepts a client's time only within a window of the server's."""
    us = dt.timedelta(microseconds=1)
    earliest = pc.subtract(recorded_us, (ledger.MAX_BACKDATE + TRADE_TIME_SLACK) // us)
    latest = pc.add(recorded_us, (ledger.MAX_FUTURE + TRADE_TIME_SLACK) // us)
    in_window = pc.and_(pc.greater_equal(traded_us, earliest), pc.less_equal(traded_us, latest))
    return pc.or_(pc.not_equal(source, "api"), in_window)


# What COPY sends for each ledger row (times in UTC, as text Arrow parses).
_LEDGER_COLUMNS = {
    "trade_id": ("id", pa.string()), "user_id": ("user_id", pa.string()),
    "symbol": ("symbol", pa.string()), "side": ("side", pa.string()),
    "quantity": ("quantity", pa.int64()), "price_cents": ("price_cents", pa.int64()),
    "amount_cents": ("amount_cents", pa.int64()), "fee_cents": ("fee_cents", pa.int64()),
    "realised_pnl_cents": ("realised_pnl_cents", pa.int64()), "source": ("source", pa.string()),
    "traded_at": ("traded_at", pa.timestamp("us", tz="UTC")),
    "recorded_at": ("recorded_at", pa.timestamp("us", tz="UTC")),
}


def _copy_ledger(cur: Any, since: dt.datetime) -> pa.Table:
    """Ledger rows recorded after `since`, streamed by COPY as CSV and parsed by Arrow."""
    import pyarrow.csv as pacsv

    select = ", ".join(sql for sql, _ in _LEDGER_COLUMNS.values())
    cur.execute("SET LOCAL TIME ZONE 'UTC'")
    query = cur.mogrify(f"COPY (SELECT {select} FROM transactions WHERE recorded_at > %s) "
                        "TO STDOUT WITH (FORMAT csv)", (since,)).decode()
    buf = io.BytesIO()
    cur.copy_expert(query, buf)
    types = {name: typ for name, (_, typ) in _LEDGER_COLUMNS.items()}
    if not buf.getbuffer().nbytes:
        return pa.schema(list(types.items())).empty_table()
    buf.seek(0)
    return pacsv.read_csv(buf, read_options=pacsv.ReadOptions(column_names=list(types)),
                          parse_options=pacsv.ParseOptions(newlines_in_values=True),
                          convert_options=pacsv.ConvertOptions(column_types=types))


def _extract_trades(cur: Any, batch: Batch, hwm: str, manifest: dict[str, Any]) -> None:
    """New ledger rows by `recorded_at`, the server's clock: a client's `traded_at`, whatever it
    is, cannot move the mark or hide a row from the next run. A row that could not have come
    through the services (written to the database by hand) is not loaded, so the run fails its
    reconciliation and says which rows to repair. Rows already in the warehouse (the overlap
    window) are found in the committed files of the months the new rows fall in."""
    raw = _copy_ledger(cur, _since(hwm))
    newest = min(dt.datetime.fromisoformat(hwm), dt.datetime.now(dt.UTC))
    if raw.num_rows:
        newest = max(newest, pc.max(raw["recorded_at"]).as_py())
    traded_at = raw["traded_at"]
    trade_date = pc.cast(pc.cast(traded_at, pa.date32()), pa.string())
    trade_month = pc.utf8_slice_codeunits(trade_date, 0, 7)
    months = sorted(pc.unique(trade_month).to_pylist())
    touched = [k for k in lake.committed_keys(manifest, "fact_trades") if lake.partition_of(k) in set(months)]
    loaded = lake.table("fact_trades", manifest, ["trade_id"], touched)
    new = pc.invert(pc.is_in(raw["trade_id"], value_set=loaded["trade_id"].combine_chunks()))
    plausible = _plausible(raw["source"], pc.cast(traded_at, pa.int64()),
                           pc.cast(raw["recorded_at"], pa.int64()))
    batch.implausible_trades = raw["trade_id"].filter(pc.and_(new, pc.invert(plausible))).to_pylist()
    keep = pc.and_(new, plausible)
    if not pc.all(keep).as_py():
        raw, trade_date, trade_month = (x.filter(keep) for x in (raw, trade_date, trade_month))
        traded_at = raw["traded_at"]
    users = pc.dictionary_encode(raw["user_id"].combine_chunks())
    keys = pa.array(_user_keys(users.dictionary.to_pylist()), pa.string())
    columns = {
        "trade_id": raw["trade_id"], "user_key": keys.take(users.indices),
        **{c: raw[c] for c in ("symbol", "side", "quantity", "price_cents", "amount_cents",
                               "fee_cents", "realised_pnl_cents", "source")},
        "traded_at": traded_at,
        "date_key": pc.add(pc.add(pc.multiply(pc.year(traded_at), 10000),
                                  pc.multiply(pc.month(traded_at), 100)),
                           pc.day(traded_at)).cast(pa.int32()),
        "trade_date": trade_date, "trade_month": trade_month,
    }
    batch.trades = pa.table(columns, schema=SCHEMAS["fact_trades"])
    batch.hwm["trades"] = newest.isoformat()
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
            "as_of": as_of.isoformat(), "as_of_month": as_of.strftime("%Y-%m")})
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


def _dimensions(batch: Batch, first: dt.date | None, last: dt.date | None) -> None:
    for info in market_data.default().symbols():
        batch.rows["dim_symbol"].append({"symbol": info.symbol, "name": info.name,
                                         "currency": info.currency, "source": info.source})
    known = {r["symbol"] for r in batch.rows["dim_symbol"]}
    seen = set(pc.unique(batch.trades["symbol"]).to_pylist())
    seen |= {r["symbol"] for r in batch.rows["fact_predictions"]}
    for symbol in sorted(seen - known):
        batch.rows["dim_symbol"].append({"symbol": symbol, "name": symbol, "currency": "USD",
                                         "source": "unknown"})
    users = list(mongo.db().users.find({}, {"_id": 1, "created_at": 1}))
    for u, key in zip(users, _user_keys([u["_id"] for u in users]), strict=True):
        created = u["created_at"].date()
        batch.rows["dim_user"].append({"user_key": key, "registered_date": created,
                                       "registered_month": created.strftime("%Y-%m")})
    day = first
    while day is not None and last is not None and day <= last:
        batch.rows["dim_date"].append({
            "date_key": _date_key(day), "date": day, "year": day.year, "month": day.month,
            "day": day.day, "weekday": day.isoweekday(), "is_weekend": day.weekday() >= 5})
        day += dt.timedelta(days=1)


def _check(batch: Batch, before: Any, old_trades: pa.Table) -> dict[str, int]:
    """The run's quality gate: no null keys, totals reconcile with sources (a trade loaded twice,
    or missed, breaks the ledger's count)."""
    problems = []
    trades = batch.trades
    preds = batch.rows["fact_predictions"]
    nulls = trades.select(["trade_id", "user_key", "symbol", "trade_date"]).drop_null().num_rows
    if nulls != trades.num_rows:
        problems.append(f"fact_trades: {trades.num_rows - nulls} row(s) with a null key")
    for name, key_fields in (("fact_predictions", ("prediction_id", "symbol", "as_of", "updated_at")),
                             ("fact_prices", ("symbol", "day"))):
        null_keys = sum(any(r.get(k) is None for k in key_fields) for r in batch.rows[name])
        if null_keys:
            problems.append(f"{name}: {null_keys} row(s) with a null key")
    total = old_trades.num_rows + trades.num_rows
    amount = (pc.sum(old_trades["amount_cents"]).as_py() or 0) + (pc.sum(trades["amount_cents"]).as_py() or 0)
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


def run(compact_after: bool = True) -> dict[str, Any]:
    """One ETL run: extract what is new, transform, write, check, then commit the manifest;
    then compact the closed days (unless `compact_after` is false)."""
    raw_manifest, etag = lake.read_raw()
    manifest = lake.read_manifest()
    rebuilt = manifest is None
    manifest = manifest or lake.empty_manifest()
    before = lake.connect(manifest, ("fact_predictions", "fact_prices", "dim_date"),
                     columns={"fact_predictions": ["prediction_id", "updated_at"],
                              "fact_prices": ["symbol", "day", "loaded_at", "source"],
                              "dim_date": ["date"]})
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
            _extract_trades(cur, batch, manifest["hwm"]["trades"], manifest)
            _extract_predictions(cur, batch, manifest["hwm"]["predictions"], loaded_preds)
            _extract_prices(cur, batch, manifest["hwm"]["prices"], manifest["hwm"]["sample"], loaded_prices)
    finally:
        conn.close()
    trade_days = pc.min_max(pc.cast(batch.trades["trade_date"], pa.date32()))
    days = [d for d in (trade_days["min"].as_py(), trade_days["max"].as_py(),
                        *before.execute("SELECT min(date), max(date) FROM dim_date").fetchone()) if d]
    days += [dt.date.fromisoformat(r["as_of"]) for r in batch.rows["fact_predictions"]]
    days += [r["day"] for r in batch.rows["fact_prices"]]
    _dimensions(batch, min(days, default=None), max(days, default=None))
    totals = _check(batch, before, lake.table("fact_trades", manifest, ["amount_cents"]))

    run_id = lake.new_run_id()
    jobs = [(name, batch.facts(name) if name in FACTS else batch.rows[name], run_id)
            for name in (*FACTS, *DIMS)]
    written = dict(zip((*FACTS, *DIMS), lake.in_parallel(lake.write, jobs), strict=True))
    files = {name: list(manifest["files"].get(name, [])) + list(written[name]) for name in FACTS}
    files.update({name: list(written[name]) for name in DIMS})
    meta = {k: m for k, m in manifest["meta"].items() if any(k in keys for keys in files.values())}
    for name in FACTS:
        meta.update(written[name])
    faults.check("etl.before_commit")
    new_manifest = {
        "layout": LAYOUT, "run_id": run_id, "committed_at": dt.datetime.now(dt.UTC).isoformat(),
        "files": files, "meta": meta, "hwm": {**manifest["hwm"], **batch.hwm}, "counts": totals,
    }
    lake.commit(new_manifest, etag if raw_manifest is not None else None)
    loaded = {name: sum(m["rows"] for m in written[name].values()) for name in FACTS}
    metrics.count("EtlRowsLoaded", sum(loaded.values()))
    log.info("etl run committed", extra={"fields": {"run_id": run_id, "loaded": loaded, "rebuilt": rebuilt}})
    compacted = compaction.compact() if compact_after else {}
    removed = compaction.collect_garbage(lake.read_manifest() or new_manifest)
    return {"run_id": run_id, "loaded": loaded, "rebuilt": rebuilt, "totals": totals,
            "compacted": compacted, "files_removed": removed}


