"""The data warehouse: incremental ETL into a star schema of Parquet files on S3, and its reads.

Layout under `s3://<WAREHOUSE_BUCKET>/warehouse/` (Hive-style partitions, what Glue and Athena read):
    fact_trades/trade_month=YYYY-MM/part-<run>.parquet       new trades of each run, by month
    fact_trades/trade_month=YYYY-MM/compact-<run>.parquet    the month's closed days, compacted
    fact_predictions/as_of_month=YYYY-MM/...                 predictions and outcomes, the same way
    fact_prices/year=YYYY/...                                daily bars, by year
    dim_symbol/, dim_user/, dim_date/  part-<run>.parquet    rebuilt by every run
    _manifest.json                                           what is committed, and the marks

A run extracts from each source only what is newer than its high-water mark (with an overlap
window, minus what the warehouse already holds), writes one file per partition it touches,
checks the data, and only then replaces `_manifest.json` in one conditional PUT (If-Match: a
concurrent run or compaction that committed first makes this one fail, loading nothing).
Readers see only files the manifest lists, so a run that fails half-way changes nothing
visible, and a run with nothing new loads nothing. An empty bucket, or a manifest of an older
layout, has no usable manifest: the next run rebuilds everything from the sources.

Compaction (after every run) merges, in each partition, the files whose rows all lie on closed
days (before today, UTC) into one file, and commits the swap the same way; the manifest keeps
each file's row count and last day, so it knows which files are closed without reading them,
and checks that the merged file holds exactly their rows. A late row for a closed day lands in
a new file of its month at the next run (queryable at once) and is folded into the month's
compacted file by the compaction that follows. Replaced files stay for a grace period (readers
holding the previous manifest) and are then collected.

Users appear only as a keyed hash of their id (`user_key`); no email or password hash is read.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import io
import json
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from stockpred import config
from stockpred.cloud import aws, secrets
from stockpred.market import market_data
from stockpred.market.sample_data import SAMPLE_SERIES, SampleProvider
from stockpred.observability import metrics
from stockpred.observability.logs import get_logger
from stockpred.stores import mongo, postgres
from stockpred.trading import faults, ledger

log = get_logger("warehouse")
PREFIX = "warehouse"
MANIFEST = f"{PREFIX}/_manifest.json"
LAYOUT = 2  # monthly fact partitions with per-file row counts and last days
OVERLAP = dt.timedelta(hours=1)
EPOCH = "1970-01-01T00:00:00+00:00"
FACTS = ("fact_trades", "fact_predictions", "fact_prices")
DIMS = ("dim_symbol", "dim_user", "dim_date")
# Each fact's Hive partition column, and the column whose newest value says whether a file
# holds only closed days.
PARTITION = {"fact_trades": "trade_month", "fact_predictions": "as_of_month", "fact_prices": "year"}
DAY = {"fact_trades": "trade_date", "fact_predictions": "as_of", "fact_prices": "day"}
IO_THREADS = 8  # concurrent S3 requests of one run (boto3's pool holds 10 connections)


class QualityError(RuntimeError):
    """A data quality check failed: the run loads nothing."""


class ConcurrentCommit(RuntimeError):
    """Another run or compaction committed the manifest first: this one committed nothing."""


def bucket() -> str:
    return config.load().warehouse_bucket


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


# ---- the manifest ------------------------------------------------------------------------------
def _read_raw() -> tuple[dict[str, Any] | None, str | None]:
    """The manifest object as stored, whatever its layout, and its ETag."""
    s3 = aws.client("s3")
    try:
        obj = s3.get_object(Bucket=bucket(), Key=MANIFEST)
    except (s3.exceptions.NoSuchKey, s3.exceptions.NoSuchBucket):
        return None, None
    return json.loads(obj["Body"].read()), obj["ETag"]


def read_manifest() -> dict[str, Any] | None:
    """The committed manifest, or None when there is none of this layout (the next run rebuilds)."""
    manifest, _ = _read_raw()
    return manifest if manifest is not None and manifest.get("layout") == LAYOUT else None


def _commit(manifest: dict[str, Any], etag: str | None) -> None:
    """Replaces the manifest only if it is still the one read (ETag), or creates it only if none."""
    s3 = aws.client("s3")
    condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
    try:
        s3.put_object(Bucket=bucket(), Key=MANIFEST, ContentType="application/json",
                      Body=json.dumps(manifest, indent=1).encode(), **condition)
    except s3.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
            raise ConcurrentCommit("the warehouse manifest changed during this run; nothing committed") \
                from None
        raise


def _empty_manifest() -> dict[str, Any]:
    return {"layout": LAYOUT, "run_id": None, "files": {t: [] for t in (*FACTS, *DIMS)}, "meta": {},
            "hwm": {"trades": EPOCH, "predictions": EPOCH, "prices": EPOCH, "sample": {}},
            "counts": {}}


def _partition_of(key: str) -> str:
    """The partition value in a fact file's key (`.../trade_month=2024-03/part-x.parquet`)."""
    return key.rsplit("/", 2)[-2].partition("=")[2]


# ---- reading the warehouse ---------------------------------------------------------------------
files_read = 0  # Parquet files this process has read from S3 (what a cold query costs)
_loaded: dict[tuple[str, tuple[str, ...], tuple[str, ...] | None], pa.Table] = {}


def _read_file(name: str, key: str, columns: list[str]) -> pa.Table:
    """One Parquet file, fetched whole (one GET: fewer round trips than ranged reads of a file
    this size), with its Hive partition value as a column."""
    schema = SCHEMAS[name]
    body = aws.client("s3").get_object(Bucket=bucket(), Key=key)["Body"].read()
    part = PARTITION.get(name)
    file_schema = schema.remove(schema.get_field_index(part)) if part else schema
    tbl = pq.read_table(io.BytesIO(body), columns=[c for c in columns if c != part], schema=file_schema)
    if part in columns:
        value = pa.array([_partition_of(key)] * tbl.num_rows, pa.string())
        tbl = tbl.append_column(schema.field(part), value)
    return tbl.select(columns)


def _read_files(name: str, keys: Iterable[str], columns: Iterable[str] | None = None) -> pa.Table:
    """The named columns (all by default) of some files of one table, read concurrently."""
    global files_read
    keys = list(keys)
    schema = SCHEMAS[name]
    columns = list(columns) if columns is not None else schema.names
    if not keys:
        return schema.empty_table().select(columns)
    files_read += len(keys)
    return pa.concat_tables(_in_parallel(_read_file, [(name, key, columns) for key in keys]))


def _keys(manifest: dict[str, Any], name: str, first: str | None = None,
          last: str | None = None) -> list[str]:
    """The committed files of one table, only those of partitions in [first, last] if given."""
    keys = manifest["files"].get(name, [])
    if first is None and last is None:
        return list(keys)
    return [k for k in keys if (first is None or _partition_of(k) >= first)
            and (last is None or _partition_of(k) <= last)]


def table(name: str, manifest: dict[str, Any] | None = None, columns: Iterable[str] | None = None,
          keys: Iterable[str] | None = None) -> pa.Table:
    """One table of the committed warehouse (only files the manifest lists, or those of `keys`;
    only the named columns).

    A warm process keeps what it read for the file list it read it from: a query after a new
    commit reads again, a query without one costs only the manifest GET.
    """
    manifest = manifest if manifest is not None else read_manifest() or _empty_manifest()
    files = tuple(keys if keys is not None else _keys(manifest, name))
    cols = tuple(columns) if columns is not None else None
    if (name, files, cols) not in _loaded:
        for stale in [k for k in _loaded if k[0] == name and k[1] != files]:
            del _loaded[stale]
        _loaded[(name, files, cols)] = _read_files(name, files, cols)
    return _loaded[(name, files, cols)]


VIEWS = {
    "fact_predictions": """SELECT * FROM fact_predictions_files QUALIFY row_number()
                           OVER (PARTITION BY prediction_id ORDER BY updated_at DESC) = 1""",
    "fact_prices": """SELECT * FROM fact_prices_files QUALIFY row_number()
                      OVER (PARTITION BY symbol, day ORDER BY loaded_at DESC) = 1""",
}


def connect(manifest: dict[str, Any] | None = None, tables: tuple[str, ...] = (*FACTS, *DIMS),
            columns: dict[str, Iterable[str]] | None = None,
            keys: dict[str, Iterable[str]] | None = None) -> Any:
    """An in-process DuckDB with the named warehouse tables registered (facts deduplicated),
    each read with only its `columns` and `keys` when given."""
    import duckdb

    manifest = manifest if manifest is not None else read_manifest() or _empty_manifest()
    columns, keys = columns or {}, keys or {}
    con = duckdb.connect()
    for name in tables:
        con.register(f"{name}_files", table(name, manifest, columns.get(name), keys.get(name)))
        con.execute(f"CREATE VIEW {name} AS {VIEWS.get(name, f'SELECT * FROM {name}_files')}")
    return con


# ---- schemas -----------------------------------------------------------------------------------
SCHEMAS: dict[str, pa.Schema] = {
    "fact_trades": pa.schema([
        ("trade_id", pa.string()), ("user_key", pa.string()), ("symbol", pa.string()),
        ("side", pa.string()), ("quantity", pa.int64()), ("price_cents", pa.int64()),
        ("amount_cents", pa.int64()), ("fee_cents", pa.int64()), ("realised_pnl_cents", pa.int64()),
        ("source", pa.string()), ("traded_at", pa.timestamp("us", tz="UTC")), ("date_key", pa.int32()),
        ("trade_date", pa.string()), ("trade_month", pa.string())]),
    "fact_predictions": pa.schema([
        ("prediction_id", pa.string()), ("symbol", pa.string()), ("model_version", pa.string()),
        ("action", pa.string()), ("probability_up", pa.float64()), ("expected_return", pa.float64()),
        ("predicted_close", pa.float64()), ("last_close", pa.float64()), ("edge", pa.bool_()),
        ("realised_close", pa.float64()), ("realised_return", pa.float64()), ("correct", pa.bool_()),
        ("updated_at", pa.timestamp("us", tz="UTC")), ("date_key", pa.int32()), ("as_of", pa.string()),
        ("as_of_month", pa.string())]),
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
    loaded = table("fact_trades", manifest, ["trade_id"],
                   [k for k in _keys(manifest, "fact_trades") if _partition_of(k) in set(months)])
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


# ---- load --------------------------------------------------------------------------------------
def _put(key: str, tbl: pa.Table) -> None:
    buf = io.BytesIO()
    pq.write_table(tbl, buf, compression="zstd")
    aws.client("s3").put_object(Bucket=bucket(), Key=key, Body=buf.getvalue())


def _in_parallel(fn: Any, jobs: list[tuple[Any, ...]]) -> list[Any]:
    """fn(*job) for every job, IO_THREADS at a time (S3 requests and Parquet coding release the GIL)."""
    if len(jobs) <= 1:
        return [fn(*job) for job in jobs]
    with ThreadPoolExecutor(min(IO_THREADS, len(jobs))) as pool:
        return list(pool.map(lambda job: fn(*job), jobs))


def _last_day(tbl: pa.Table, column: str) -> str | None:
    newest = pc.max(tbl[column]).as_py()
    return None if newest is None else str(newest)


def _write(name: str, data: list[dict[str, Any]] | pa.Table, run_id: str,
           stem: str = "part") -> dict[str, dict[str, Any]]:
    """Writes a table as Parquet, one file per partition for facts; returns each key written with
    its row count and last day."""
    tbl = data if isinstance(data, pa.Table) else pa.Table.from_pylist(data, schema=SCHEMAS[name])
    if not tbl.num_rows:
        return {}
    part = PARTITION.get(name)
    if part is None:
        key = f"{PREFIX}/{name}/{stem}-{run_id}.parquet"
        _put(key, tbl)
        return {key: {"rows": tbl.num_rows}}
    # Grouped by one stable sort of the partitions' dictionary indices, then sliced.
    values = pc.dictionary_encode(tbl[part]).combine_chunks()
    tbl = tbl.take(pc.sort_indices(values.indices))
    counts = pc.value_counts(values.indices).to_pylist()
    jobs, written = [], {}
    offset = 0
    for counted in sorted(counts, key=lambda c: c["values"]):
        value, count = values.dictionary[counted["values"]].as_py(), counted["counts"]
        group = tbl.slice(offset, count)
        offset += count
        key = f"{PREFIX}/{name}/{part}={value}/{stem}-{run_id}.parquet"
        jobs.append((key, group.drop_columns([part])))
        written[key] = {"rows": count, "last_day": _last_day(group, DAY[name])}
    _in_parallel(_put, jobs)
    return written


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


def _new_run_id() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]


def run(compact_after: bool = True) -> dict[str, Any]:
    """One ETL run: extract what is new, transform, write, check, then commit the manifest;
    then compact the closed days (unless `compact_after` is false)."""
    raw_manifest, etag = _read_raw()
    manifest = read_manifest()
    rebuilt = manifest is None
    manifest = manifest or _empty_manifest()
    before = connect(manifest, ("fact_predictions", "fact_prices", "dim_date"),
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
    totals = _check(batch, before, table("fact_trades", manifest, ["amount_cents"]))

    run_id = _new_run_id()
    jobs = [(name, batch.facts(name) if name in FACTS else batch.rows[name], run_id)
            for name in (*FACTS, *DIMS)]
    written = dict(zip((*FACTS, *DIMS), _in_parallel(_write, jobs), strict=True))
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
    _commit(new_manifest, etag if raw_manifest is not None else None)
    loaded = {name: sum(m["rows"] for m in written[name].values()) for name in FACTS}
    metrics.count("EtlRowsLoaded", sum(loaded.values()))
    log.info("etl run committed", extra={"fields": {"run_id": run_id, "loaded": loaded, "rebuilt": rebuilt}})
    compacted = compact() if compact_after else {}
    removed = _collect_garbage(read_manifest() or new_manifest)
    return {"run_id": run_id, "loaded": loaded, "rebuilt": rebuilt, "totals": totals,
            "compacted": compacted, "files_removed": removed}


# ---- compaction --------------------------------------------------------------------------------
def _merge(name: str, keys: list[str], rows: int, run_id: str) -> tuple[str, dict[str, Any]]:
    """One file holding exactly the rows of `keys` (one partition's), in time order."""
    merged = _read_files(name, keys)
    if merged.num_rows != rows:
        raise QualityError(f"{name}: compacting {len(keys)} files read {merged.num_rows} rows, "
                           f"the manifest lists {rows}")
    ((key, meta),) = _write(name, merged, run_id, stem="compact").items()
    return key, meta


def compact(today: dt.date | None = None) -> dict[str, int]:
    """Merges, in each fact partition, the files holding only closed days (before `today`, UTC)
    into one, and commits the swap; returns how many files each table lost. Idempotent: with at
    most one closed file per partition it changes nothing."""
    manifest, etag = _read_raw()
    if manifest is None or manifest.get("layout") != LAYOUT:
        return {}
    today_iso = (today or dt.datetime.now(dt.UTC).date()).isoformat()
    groups = []
    for name in FACTS:
        closed: dict[str, list[str]] = {}
        for key in manifest["files"][name]:
            last_day = manifest["meta"].get(key, {}).get("last_day")
            if last_day is not None and last_day < today_iso:
                closed.setdefault(_partition_of(key), []).append(key)
        groups += [(name, keys) for keys in closed.values() if len(keys) > 1]
    if not groups:
        return {}
    run_id = _new_run_id()
    merged = _in_parallel(_merge, [(name, keys, sum(manifest["meta"][k]["rows"] for k in keys), run_id)
                                   for name, keys in groups])
    files = {name: list(keys) for name, keys in manifest["files"].items()}
    meta = dict(manifest["meta"])
    removed = {name: 0 for name in FACTS}
    for (name, keys), (key, key_meta) in zip(groups, merged, strict=True):
        position = files[name].index(keys[0])
        files[name] = [k for k in files[name] if k not in set(keys)]
        files[name].insert(position, key)
        for old in keys:
            del meta[old]
        meta[key] = key_meta
        removed[name] += len(keys) - 1
    faults.check("etl.before_compaction_commit")
    _commit({**manifest, "files": files, "meta": meta,
             "compacted_at": dt.datetime.now(dt.UTC).isoformat()}, etag)
    log.info("warehouse compacted", extra={"fields": {"compaction_id": run_id, "files_removed": removed}})
    return removed


def _collect_garbage(manifest: dict[str, Any], grace: dt.timedelta = OVERLAP) -> int:
    """Deletes files no manifest lists (replaced dimensions, compacted files, a failed run's parts)
    once they are older than `grace`, so tools that read whole folders (Glue, Athena) see what
    readers here see."""
    s3 = aws.client("s3")
    listed = {k for keys in manifest["files"].values() for k in keys} | {MANIFEST}
    cutoff = dt.datetime.now(dt.UTC) - grace
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket(), Prefix=f"{PREFIX}/")
    stale = [obj["Key"] for page in pages for obj in page.get("Contents", [])
             if obj["Key"] not in listed and obj["LastModified"] < cutoff]
    for start in range(0, len(stale), 1000):
        s3.delete_objects(Bucket=bucket(), Delete={"Objects": [{"Key": k} for k in stale[start:start + 1000]],
                                                   "Quiet": True})
    return len(stale)


# ---- analytics ---------------------------------------------------------------------------------
def signals(symbol: str | None, start: dt.date | None, end: dt.date | None) -> list[dict[str, Any]]:
    """Per symbol and month: predictions with an outcome, hit rate, mean realised return after buy
    and after sell (reading only the months asked for, and only the columns needed)."""
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
    manifest = read_manifest() or _empty_manifest()
    keys = _keys(manifest, "fact_predictions", start and start.strftime("%Y-%m"),
                 end and end.strftime("%Y-%m"))
    columns = ["prediction_id", "updated_at", "symbol", "as_of", "action", "correct", "realised_return"]
    rows = connect(manifest, ("fact_predictions",), columns={"fact_predictions": columns},
                   keys={"fact_predictions": keys}).execute(f"""
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
    """Per day: trades, volume and realised P&L (sells), in cents (reading only those columns)."""
    columns = ["trade_date", "quantity", "amount_cents", "realised_pnl_cents"]
    rows = connect(tables=("fact_trades",), columns={"fact_trades": columns}).execute("""
        SELECT trade_date, count(*) AS trades, sum(quantity) AS shares,
               sum(amount_cents) AS volume_cents,
               coalesce(sum(realised_pnl_cents), 0) AS realised_pnl_cents
        FROM fact_trades GROUP BY 1 ORDER BY 1""").fetchall()
    cols = ("date", "trades", "shares", "volume_cents", "realised_pnl_cents")
    return [dict(zip(cols, (str(r[0]), *map(int, r[1:])), strict=True)) for r in rows]
