"""Compaction of the warehouse: in each fact partition, the files whose rows all lie on closed
days (before today, UTC) merged into one, and the swap committed like a run's.

The manifest keeps each file's row count and last day, so compaction knows which files are
closed without reading them, and checks that the merged file holds exactly their rows. A late row
for a closed day lands in a new file of its month at the next run (queryable at once) and is
folded into the month's compacted file by the compaction that follows. Replaced files stay for a
grace period (readers holding the previous manifest) and are then collected.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from stockpred.analytics import lake
from stockpred.analytics.lake import FACTS, LAYOUT, MANIFEST, OVERLAP, PREFIX, QualityError
from stockpred.cloud import aws
from stockpred.observability.logs import get_logger
from stockpred.trading import faults

log = get_logger("warehouse")


def _merge(name: str, keys: list[str], rows: int, run_id: str) -> tuple[str, dict[str, Any]]:
    """One file holding exactly the rows of `keys` (one partition's), in time order."""
    merged = lake.read_files(name, keys)
    if merged.num_rows != rows:
        raise QualityError(f"{name}: compacting {len(keys)} files read {merged.num_rows} rows, "
                           f"the manifest lists {rows}")
    ((key, meta),) = lake.write(name, merged, run_id, stem="compact").items()
    return key, meta


def compact(today: dt.date | None = None) -> dict[str, int]:
    """Merges, in each fact partition, the files holding only closed days (before `today`, UTC)
    into one, and commits the swap; returns how many files each table lost. Idempotent: with at
    most one closed file per partition it changes nothing."""
    manifest, etag = lake.read_raw()
    if manifest is None or manifest.get("layout") != LAYOUT:
        return {}
    today_iso = (today or dt.datetime.now(dt.UTC).date()).isoformat()
    groups = []
    for name in FACTS:
        closed: dict[str, list[str]] = {}
        for key in manifest["files"][name]:
            last_day = manifest["meta"].get(key, {}).get("last_day")
            if last_day is not None and last_day < today_iso:
                closed.setdefault(lake.partition_of(key), []).append(key)
        groups += [(name, keys) for keys in closed.values() if len(keys) > 1]
    if not groups:
        return {}
    run_id = lake.new_run_id()
    merged = lake.in_parallel(_merge, [(name, keys, sum(manifest["meta"][k]["rows"] for k in keys), run_id)
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
    lake.commit({**manifest, "files": files, "meta": meta,
             "compacted_at": dt.datetime.now(dt.UTC).isoformat()}, etag)
    log.info("warehouse compacted", extra={"fields": {"compaction_id": run_id, "files_removed": removed}})
    return removed


def collect_garbage(manifest: dict[str, Any], grace: dt.timedelta = OVERLAP) -> int:
    """Deletes files no manifest lists (replaced dimensions, compacted files, a failed run's parts)
    once they are older than `grace`, so tools that read whole folders (Glue, Athena) see what
    readers here see."""
    s3 = aws.client("s3")
    listed = {k for keys in manifest["files"].values() for k in keys} | {MANIFEST}
    cutoff = dt.datetime.now(dt.UTC) - grace
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=lake.bucket(), Prefix=f"{PREFIX}/")
    stale = [obj["Key"] for page in pages for obj in page.get("Contents", [])
             if obj["Key"] not in listed and obj["LastModified"] < cutoff]
    for start in range(0, len(stale), 1000):
        batch = [{"Key": k} for k in stale[start:start + 1000]]
        s3.delete_objects(Bucket=lake.bucket(), Delete={"Objects": batch, "Quiet": True})
    return len(stale)


