"""`stockpred dashboard publish` uploads the site to a bucket (the session's moto S3) as CloudFront
will serve it: each file with its content type and no-cache, the pinned charts library under
vendor/, and a config.json naming the WebSocket API."""

from __future__ import annotations

import json
import uuid

import boto3
import pytest

from devstack import cli, dashboard
from tests.e2e.test_dashboard_serving import make_site


@pytest.fixture
def bucket(stack: dict[str, str]) -> str:
    name = f"dashboard-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=stack["AWS_ENDPOINT_URL"]).create_bucket(Bucket=name)
    return name


def objects(stack: dict[str, str], bucket: str) -> dict[str, dict]:
    s3 = boto3.client("s3", endpoint_url=stack["AWS_ENDPOINT_URL"])
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return {k: s3.get_object(Bucket=bucket, Key=k) for k in keys}


def test_publish_uploads_the_site_the_vendor_file_and_a_generated_config(stack, bucket, tmp_path,
                                                                          monkeypatch, capsys):
    site = make_site(tmp_path / "web")
    (site / "config.json").write_text('{"apiUrl": "", "wsUrl": "ws://127.0.0.1:3000/local"}')
    monkeypatch.setenv("DASHBOARD_ROOT", str(site))
    with pytest.raises(SystemExit) as done:
        cli.main(["dashboard", "publish", "--bucket", bucket, "--ws-url", "wss://x/live",
                  "--no-invalidate"])
    assert done.value.code == 0
    found = objects(stack, bucket)
    assert set(found) == {"index.html", "js/app.js", "css/app.css", "config.json", dashboard.VENDOR_CHARTS}
    types = {k: o["ContentType"].split(";")[0] for k, o in found.items()}
    assert types == {"index.html": "text/html", "js/app.js": "text/javascript", "css/app.css": "text/css",
                     "config.json": "application/json", dashboard.VENDOR_CHARTS: "text/javascript"}
    assert {o["CacheControl"] for o in found.values()} == {"no-cache"}
    # The generated config, never the developer's local one.
    assert json.loads(found["config.json"]["Body"].read()) == {"apiUrl": "", "wsUrl": "wss://x/live"}
    vendor = site / dashboard.VENDOR_SOURCES[dashboard.VENDOR_CHARTS]
    assert found[dashboard.VENDOR_CHARTS]["Body"].read() == vendor.read_bytes()
    out = capsys.readouterr().out
    assert f"s3://{bucket}/index.html" in out and "published 5 file(s)" in out
    assert "invalidat" not in out


def test_publish_invalidates_the_distribution_it_is_given(tmp_path):
    site = make_site(tmp_path / "web")
    calls: list[dict] = []

    class S3:
        def put_object(self, **kw: object) -> None:
            calls.append({"put": kw["Key"]})

    class CloudFront:
        def create_invalidation(self, **kw: object) -> dict:
            calls.append(kw)
            return {"Invalidation": {"Id": "I1"}}

    dashboard.publish("b", "wss://x/live", root=site, distribution_id="E123", s3=S3(),
                      cloudfront=CloudFront(), log=lambda _: None)
    (invalidation,) = [c for c in calls if "DistributionId" in c]
    assert invalidation["DistributionId"] == "E123"
    assert invalidation["InvalidationBatch"]["Paths"] == {"Quantity": 1, "Items": ["/*"]}
    assert calls.index(invalidation) == len(calls) - 1, "invalidated before every upload was done"


def test_publish_reads_the_stack_outputs(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr(dashboard, "stack_outputs", lambda name: {
        "DashboardBucketName": "from-stack", "DashboardDistributionId": "E9",
        "WebSocketUrl": "wss://abc.execute-api.eu-west-1.amazonaws.com/live",
        "DashboardUrl": "https://d1.cloudfront.net/"})

    def publish(bucket, ws_url, **kw):
        seen.update(bucket=bucket, ws_url=ws_url, **kw)
        return []

    monkeypatch.setattr(dashboard, "publish", publish)
    args = cli.build_parser().parse_args(["dashboard", "publish", "--stack", "s", "--bucket", "mine"])
    assert args.func(args) == 0
    assert seen["bucket"] == "mine"  # an explicit option wins over the output
    assert seen["ws_url"] == "wss://abc.execute-api.eu-west-1.amazonaws.com/live"
    assert seen["distribution_id"] == "E9" and seen["invalidate"] is True


def test_publish_refuses_a_site_without_the_npm_packages(tmp_path):
    (tmp_path / "index.html").write_text("<!doctype html>")
    with pytest.raises(FileNotFoundError, match="npm ci"):
        dashboard.publish("b", "wss://x/live", root=tmp_path, s3=object())
