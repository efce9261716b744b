"""The warehouse's files on S3: its layout and schemas, the manifest and its conditional commit,
and reading and writing Parquet (the rest of `analytics` reads and writes only through this).

Readers see only files the manifest lists; a writer replaces `_manifest.json` in one conditional
PUT (If-Match), so a run or compaction that lost a race to another commits nothing.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from stockpred import config
from stockpred.cloud import aws
from stockpred.observability.logs import get_logger

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


# ---- the manifest ------------------------------------------------------------------------------
def read_raw() -> tuple[dict[str, Any] | None, str | None]:
    """The manifest object as stored, whatever its layout, and its ETag."""
    s3 = aws.client("s3")
    try:
        obj = s3.get_object(Bucket=bucket(), Key=MANIFEST)
    except (s3.exceptions.NoSuchKey, s3.exceptions.NoSuchBucket):
        return None, None
    return json.loads(obj["Body"].read()), obj["ETag"]


def read_manifest() -> dict[str, Any] | None:
    """The committed manifest, or None when there is none of this layout (the next run rebuilds)."""
    manifest, _ = read_raw()
    return manifest if manifest is not None and manifest.get("layout") == LAYOUT else None


def commit(manifest: dict[str, Any], etag: str | None) -> None:
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


def empty_manifest() -> dict[str, Any]:
    return {"layout": LAYOUT, "run_id": None, "files": {t: [] for t in (*FACTS, *DIMS)}, "meta": {},
            "hwm": {"trades": EPOCH, "predictions": EPOCH, "prices": EPOCH, "sample": {}},
            "counts": {}}


def partition_of(key: str) -> str:
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
        value = pa.array([partition_of(key)] * tbl.num_rows, pa.string())
        tbl = tbl.append_column(schema.field(part), value)
    return tbl.select(columns)


def read_files(name: str, keys: Iterable[str], columns: Iterable[str] | None = None) -> pa.Table:
    """The named columns (all by default) of some files of one table, read concurrently."""
    global files_read
    keys = list(keys)
    schema = SCHEMAS[name]
    columns = list(columns) if columns is not None else schema.names
    if not keys:
        return schema.empty_table().select(columns)
    files_read += len(keys)
    return pa.concat_tables(in_parallel(_read_file, [(name, key, columns) for key in keys]))


def committed_keys(manifest: dict[str, Any], name: str, first: str | None = None,
          last: str | None = None) -> list[str]:
    """The committed files of one table, only those of partitions in [first, last] if given."""
    keys = manifest["files"].get(name, [])
    if first is None and last is None:
        return list(keys)
    return [k for k in keys if (first is None or partition_of(k) >= first)
            and (last is None or partition_of(k) <= last)]


def table(name: str, manifest: dict[str, Any] | None = None, columns: Iterable[str] | None = None,
          keys: Iterable[str] | None = None) -> pa.Table:
    """One table of the committed warehouse (only files the manifest lists, or those of `keys`;
    only the named columns).

    A warm process keeps what it read for the file list it read it from: a query after a new
    commit reads again, a query without one costs only the manifest GET.
    """
    manifest = manifest if manifest is not None else read_manifest() or empty_manifest()
    files = tuple(keys if keys is not None else committed_keys(manifest, name))
    cols = tuple(columns) if columns is not None else None
    if (name, files, cols) not in _loaded:
        for stale in [k for k in _loaded if k[0] == name and k[1] != files]:
            del _loaded[stale]
        _loaded[(name, files, cols)] = read_files(name, files, cols)
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

    manifest = manifest if manifest is not None else read_manifest() or empty_manifest()
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


# ---- load --------------------------------------------------------------------------------------
def put(key: str, tbl: pa.Table) -> None:
    buf = io.BytesIO()
    pq.write_table(tbl, buf, compression="zstd")
    aws.client("s3").put_object(Bucket=bucket(), Key=key, Body=buf.getvalue())


def in_parallel(fn: Any, jobs: list[tuple[Any, ...]]) -> list[Any]:
    """fn(*job) for every job, IO_THREADS at a time (S3 requests and Parquet coding release the GIL)."""
    if len(jobs) <= 1:
        return [fn(*job) for job in jobs]
    with ThreadPoolExecutor(min(IO_THREADS, len(jobs))) as pool:
        return list(pool.map(lambda job: fn(*job), jobs))


def _last_day(tbl: pa.Table, column: str) -> str | None:
    newest = pc.max(tbl[column]).as_py()
    return None if newest is None else str(newest)


def write(name: str, data: list[dict[str, Any]] | pa.Table, run_id: str,
           stem: str = "part") -> dict[str, dict[str, Any]]:
    """Writes a table as Parquet, one file per partition for facts; returns each key written with
    its row count and last day."""
    tbl = data if isinstance(data, pa.Table) else pa.Table.from_pylist(data, schema=SCHEMAS[name])
    if not tbl.num_rows:
        return {}
    part = PARTITION.get(name)
    if part is None:
        key = f"{PREFIX}/{name}/{stem}-{run_id}.parquet"
        put(key, tbl)
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
    in_parallel(put, jobs)
    return written


def new_run_id() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]


