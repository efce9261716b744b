"""The warehouse end to end: a scripted day of activity, ETL runs, and analytics from Parquet.

Runs are made both through the scheduled function (Lambda Invoke through devstack) and
in-process; the checks read the committed Parquet files directly (pyarrow on moto's S3) and
compare with PostgreSQL and MongoDB.
"""

import datetime as dt
import json
import os
import uuid

import boto3
import pandas as pd
import psycopg2
import pymongo
import pytest

from stockpred.analytics import compaction, etl, lake
from stockpred.trading import faults
from tests.conftest import fault_in_this_process
from tests.e2e.test_predict_api import import_csv, write_synth


def pg(stack, sql, *args):
    conn = psycopg2.connect(stack["DATABASE_URL"])
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql, args)
        rows = cur.fetchall() if cur.description else None
    conn.close()
    return rows


def trader(gateway):
    user = gateway.new_user(name="Warehouse Person")
    return user.user_id, user.headers, user.email


def trade(gateway, side, user, headers, quantity=1, symbol="SPX"):
    r = gateway.post(f"/api/users/{side}", json={"user_id": user, "symbol": symbol, "quantity": quantity},
                     headers=headers)
    assert r.status_code == 200, r.text


def scheduled_run(gateway):
    client = boto3.client("lambda", endpoint_url=gateway.url, region_name="us-east-1",
                          aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"])
    out = client.invoke(FunctionName="EtlRunFunction", Payload=b"{}")
    assert "FunctionError" not in out, out["Payload"].read()
    return json.loads(out["Payload"].read())


def committed(name):
    """A fact or dimension as committed, read straight from the Parquet files."""
    return lake.table(name).to_pandas()


def test_a_scripted_day_reconciles_with_the_sources(gateway, stack, tmp_path):
    a, ha, email_a = trader(gateway)
    b, hb, email_b = trader(gateway)
    trade(gateway, "buy", a, ha, 3)
    trade(gateway, "sell", a, ha, 1)
    trade(gateway, "buy", b, hb, 2, symbol="IXIC")
    write_synth(tmp_path / "csv", 700)
    import_csv(tmp_path / "csv", stack)
    assert gateway.predict("SYNTH").status_code == 200
    write_synth(tmp_path / "csv", 701)
    import_csv(tmp_path / "csv", stack)
    assert gateway.get("/api/predictions/SYNTH").status_code == 200  # fills the outcome

    result = scheduled_run(gateway)
    assert result["totals"]["trades"] == pg(stack, "SELECT count(*) FROM transactions")[0][0]

    trades = committed("fact_trades")
    assert len(trades) == trades["trade_id"].nunique() == pg(stack, "SELECT count(*) FROM transactions")[0][0]
    assert trades["amount_cents"].sum() == pg(stack, "SELECT sum(amount_cents) FROM transactions")[0][0]
    per_user = trades.groupby("user_key").size()
    assert per_user[etl.user_key(a)] == 2 and per_user[etl.user_key(b)] == 1
    predictions = committed("fact_predictions")
    assert predictions["prediction_id"].nunique() == pg(stack, "SELECT count(*) FROM predictions")[0][0]
    users = committed("dim_user")
    mongo_users = pymongo.MongoClient(stack["MONGO_URL"])["stockpred"].users.count_documents({})
    assert len(users) == mongo_users and users["user_key"].is_unique
    assert set(users.columns) == {"user_key", "registered_date", "registered_month"}
    # No email, name or raw user id anywhere in the warehouse's files.
    s3 = boto3.client("s3", endpoint_url=stack["AWS_ENDPOINT_URL"], region_name="us-east-1")
    for obj in s3.list_objects_v2(Bucket=lake.bucket(), Prefix="warehouse/")["Contents"]:
        body = s3.get_object(Bucket=lake.bucket(), Key=obj["Key"])["Body"].read()
        for secret in (email_a, email_b, a, b, "Warehouse Person"):
            assert secret.encode() not in body, (obj["Key"], secret)
    assert {"SPX", "IXIC", "SYNTH"} <= set(committed("dim_symbol")["symbol"])
    dates = committed("dim_date")
    assert set(trades["date_key"]) <= set(dates["date_key"])


def test_a_second_run_with_nothing_new_loads_nothing_and_new_trades_appear_after_the_next(gateway, stack):
    etl.run()
    before = lake.read_manifest()
    second = etl.run()
    assert second["loaded"] == {"fact_trades": 0, "fact_predictions": 0, "fact_prices": 0}
    after = lake.read_manifest()
    assert {t: after["files"][t] for t in lake.FACTS} == {t: before["files"][t] for t in lake.FACTS}

    user, headers, _ = trader(gateway)
    trade(gateway, "buy", user, headers, 4)
    third = etl.run()
    assert third["loaded"]["fact_trades"] == 1
    trades = committed("fact_trades")
    assert (trades["user_key"] == etl.user_key(user)).sum() == 1


def test_a_run_killed_half_way_leaves_the_warehouse_as_it_was(gateway, stack, monkeypatch):
    etl.run()
    before = lake.read_manifest()
    analytics_before = gateway.get("/api/analytics/trading").json()
    user, headers, _ = trader(gateway)
    trade(gateway, "buy", user, headers, 5)
    with fault_in_this_process(stack, monkeypatch, "etl.before_commit"), pytest.raises(faults.InjectedFault):
        etl.run()
    assert lake.read_manifest() == before
    assert gateway.get("/api/analytics/trading").json() == analytics_before
    assert etl.run()["loaded"]["fact_trades"] == 1
    assert gateway.get("/api/analytics/trading").json() != analytics_before
    # The dead run's files, and replaced dimensions, are collected once past the grace period.
    manifest = lake.read_manifest()
    s3 = boto3.client("s3", endpoint_url=stack["AWS_ENDPOINT_URL"], region_name="us-east-1")

    def keys():
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=lake.bucket(), Prefix="warehouse/")
        return {o["Key"] for page in pages for o in page.get("Contents", [])}

    listed = {k for files in manifest["files"].values() for k in files} | {lake.MANIFEST}
    assert keys() > listed
    assert compaction.collect_garbage(manifest, grace=dt.timedelta(0)) > 0
    assert keys() == listed


def test_a_failed_quality_check_loads_nothing(stack):
    etl.run()
    before = lake.read_manifest()
    late = str(uuid.uuid4())
    pg(stack, """INSERT INTO transactions (id, user_id, symbol, side, quantity, price_cents, amount_cents,
                  source, traded_at) VALUES (%s, 'late-user', 'SPX', 'buy', 1, 100, 100, 'api',
                  now() - interval '3 days')""", late)
    try:
        with pytest.raises(lake.QualityError, match="do not reconcile"):
            etl.run()
        assert lake.read_manifest() == before
    finally:
        pg(stack, "DELETE FROM transactions WHERE id = %s", late)


def test_analytics_equal_the_same_queries_by_hand_on_the_parquet_files(gateway, stack, tmp_path):
    user, headers, _ = trader(gateway)
    trade(gateway, "buy", user, headers, 2)
    trade(gateway, "sell", user, headers, 1)
    etl.run()

    trades = committed("fact_trades")
    by_hand = (trades.groupby("trade_date")
               .agg(trades=("trade_id", "size"), shares=("quantity", "sum"),
                    volume_cents=("amount_cents", "sum"), realised_pnl_cents=("realised_pnl_cents", "sum"))
               .reset_index().rename(columns={"trade_date": "date"}))
    api = pd.DataFrame(gateway.get("/api/analytics/trading").json()["by_day"])
    pd.testing.assert_frame_equal(api, by_hand.astype(api.dtypes.to_dict()), check_dtype=False)

    preds = committed("fact_predictions").sort_values("updated_at")
    preds = preds.drop_duplicates("prediction_id", keep="last")
    done = preds[preds["correct"].notna()].copy()
    done["month"] = done["as_of"].str[:7]
    expected = {(r.symbol, r.month): r for r in done.groupby(["symbol", "month"]).agg(
        predictions=("prediction_id", "size"), hit_rate=("correct", "mean")).reset_index().itertuples()}
    body = gateway.get("/api/analytics/signals").json()["by_month"]
    assert {(r["symbol"], r["month"]) for r in body} == set(expected)
    for r in body:
        e = expected[(r["symbol"], r["month"])]
        assert r["predictions"] == e.predictions and r["hit_rate"] == pytest.approx(e.hit_rate)
    one = gateway.get("/api/analytics/signals", params={"symbol": "synth", "from": "2000-01-01"}).json()
    assert all(r["symbol"] == "SYNTH" for r in one["by_month"])
    assert gateway.get("/api/analytics/signals", params={"from": "2020-13-01"}).status_code == 400
    assert gateway.get("/api/analytics/signals", params={"symbol": "$$"}).status_code == 400


def test_etl_and_report_commands(stack, tmp_path):
    import subprocess
    import sys

    from devstack.services import REPO_ROOT

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "devstack.cli", *args], env={**os.environ, **stack},
                              capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)

    run = cli("etl", "run")
    assert run.returncode == 0 and " committed" in run.stdout, run.stderr
    report = cli("report", "--out", str(tmp_path))
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"
    by_day = pd.read_csv(tmp_path / "trading_by_day.csv")
    assert list(by_day.columns) == ["date", "trades", "shares", "volume_cents", "realised_pnl_cents"]
    assert by_day["trades"].sum() == pg(stack, "SELECT count(*) FROM transactions")[0][0]


def test_an_empty_bucket_is_rebuilt_from_the_sources(stack):
    etl.run()
    s3 = boto3.client("s3", endpoint_url=stack["AWS_ENDPOINT_URL"], region_name="us-east-1")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=lake.bucket(), Prefix="warehouse/"):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=lake.bucket(), Key=obj["Key"])
    assert lake.read_manifest() is None
    result = etl.run()
    assert result["rebuilt"] is True
    assert result["totals"]["trades"] == pg(stack, "SELECT count(*) FROM transactions")[0][0]
    assert len(committed("fact_trades")) == result["totals"]["trades"]
    assert len(committed("fact_prices")) > 10_000
