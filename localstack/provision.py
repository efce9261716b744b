"""Creates the AWS resources the local stack needs, and keeps S3 across restarts.

Works against any endpoint speaking the AWS APIs on :4566 (moto server or LocalStack).
moto keeps everything in memory, so `stockpred down` snapshots the project's buckets into
`.local/s3/` and `stockpred up` puts them back: models survive `make stop` / `make run`.
"""

from __future__ import annotations

from pathlib import Path

import boto3

BUCKETS = ("stockpred-models",)


def _s3(endpoint: str):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test")


def provision(endpoint: str, snapshot_dir: Path | None = None) -> dict[str, int]:
    """Creates the buckets; restores their snapshot if there is one. Returns objects restored."""
    s3 = _s3(endpoint)
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    restored: dict[str, int] = {}
    for bucket in BUCKETS:
        if bucket not in existing:
            s3.create_bucket(Bucket=bucket)
        restored[bucket] = 0
        folder = snapshot_dir / bucket if snapshot_dir else None
        if folder and folder.is_dir():
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                s3.put_object(Bucket=bucket, Key=path.relative_to(folder).as_posix(),
                              Body=path.read_bytes())
                restored[bucket] += 1
    return restored


def snapshot(endpoint: str, snapshot_dir: Path) -> dict[str, int]:
    """Writes every object of the project's buckets under snapshot_dir/<bucket>/<key>."""
    s3 = _s3(endpoint)
    saved: dict[str, int] = {}
    for bucket in BUCKETS:
        folder = snapshot_dir / bucket
        tmp = snapshot_dir / f".{bucket}.tmp"
        count = 0
        paginator = s3.get_paginator("list_objects_v2")
        try:
            pages = list(paginator.paginate(Bucket=bucket))
        except s3.exceptions.NoSuchBucket:
            continue
        for page in pages:
            for obj in page.get("Contents", []):
                target = tmp / obj["Key"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
                count += 1
        if folder.exists():
            _rmtree(folder)
        if tmp.exists():
            tmp.rename(folder)
        saved[bucket] = count
    return saved


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path)
