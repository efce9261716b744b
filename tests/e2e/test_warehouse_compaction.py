"""Warehouse compaction end to end (moto's S3, PostgreSQL): closed days merged into one file per
month, every row and every query answer kept, re-runs change nothing, late rows still land, and
a killed or stale writer commits nothing.
"""

import datetime as dt
import uuid

import pandas as pd
import psycopg2
import pytest

from stockpred.analytics import compaction, etl, lake, reports
from stockpred.trading import faults
from tests.conftest import fault_in_this_process


def insert_trades(stack, days, per_day=2):
    """Ledger rows as an import would write them (source 'import': not held to the API's window)."""
    conn = psycopg2.connect(stack["DATABASE_URL"])
    conn.autocommit = True
    with conn.cursor() as cur:
        for day in days:
            for i in range(per_day):
                quantity, price = i + 1, 1_000 + i
                cur.execute("""INSERT INTO transactions (id, user_id, symbol, side, quantity, price_cents,
                                   amount_cents, realised_pnl_cents, source, traded_at)
                               VALUES (%s, 'compaction-user', 'SPX', %s, %s, %s, %s, %s, 'import', %s)""",
                            (str(uuid.uuid4()), "sell" if i else "buy", quantity, price, quantity * price,
                             7 if i else None, dt.datetime.combine(day, dt.time(10, 30, 0, 123_456), dt.UTC)))
    conn.close()


def insert_bars(stack, symbol, days):
    conn = psycopg2.connect(stack["DATABASE_URL"])
    conn.autocommit = True
    with conn.cursor() as cur:
        for day in days:
            cur.execute("""INSERT INTO price_history (symbol, source, day, open, high, low, close, volume)
                           VALUES (%s, 'import', %s, 10, 11, 9, 10.5, 100)""", (symbol, day))
    conn.close()


def closed_days(months_back, day_of_month):
    first = dt.datetime.now(dt.UTC).date().replace(day=1)
    for _ in range(months_back):
        first = (first - dt.timedelta(days=1)).replace(day=1)
    return first.replace(day=day_of_month)


def contents():
    """Every row of every fact, in a fixed order, and every analytics answer."""
    facts = {}
    for name in lake.FACTS:
        frame = lake.table(name).to_pandas()
        facts[name] = frame.sort_values(list(frame.columns)).reset_index(drop=True)
    return facts, reports.trading(), reports.signals(None, None, None)


def assert_same(before, after):
    for name in lake.FACTS:
        pd.testing.assert_frame_equal(before[0][name], after[0][name])
    assert before[1:] == after[1:]


def partition_files(manifest, name):
    out = {}
    for key in manifest["files"][name]:
        out.setdefault(lake.partition_of(key), []).append(key)
    return out


def test_compaction_keeps_every_row_and_answer_and_a_second_compaction_changes_nothing(stack):
    etl.run()
    for day_of_month in (3, 4, 5):  # three runs, each adding a file to the same closed months
        insert_trades(stack, [closed_days(1, day_of_month), closed_days(2, day_of_month)])
        insert_bars(stack, "CMPX", [closed_days(13, day_of_month)])
        etl.run(compact_after=False)
    for _ in range(2):  # two files of today's trades: today is still open, so they stay apart
        insert_trades(stack, [dt.datetime.now(dt.UTC).date()])
        etl.run(compact_after=False)
    before = contents()
    manifest = lake.read_manifest()
    month = closed_days(1, 1).strftime("%Y-%m")
    assert len(partition_files(manifest, "fact_trades")[month]) >= 3

    compacted = compaction.compact()

    assert compacted["fact_trades"] >= 4 and compacted["fact_prices"] >= 2
    after_manifest = lake.read_manifest()
    today = dt.datetime.now(dt.UTC).date().isoformat()
    for name in lake.FACTS:
        for keys in partition_files(after_manifest, name).values():
            closed = [k for k in keys if after_manifest["meta"][k]["last_day"] < today]
            assert len(closed) <= 1, keys
    open_files = {k for k in manifest["files"]["fact_trades"] if manifest["meta"][k]["last_day"] >= today}
    assert len(open_files) >= 2 and open_files <= set(after_manifest["files"]["fact_trades"])
    assert_same(before, contents())
    # The times survive to the microsecond, and every ledger row is there exactly once.
    conn = psycopg2.connect(stack["DATABASE_URL"])
    with conn.cursor() as cur:
        cur.execute("SELECT id::text, traded_at FROM transactions")
        ledger = dict(cur.fetchall())
    conn.close()
    trades = lake.table("fact_trades").to_pandas()
    assert trades["trade_id"].is_unique
    assert {r.trade_id: r.traded_at.to_pydatetime() for r in trades.itertuples()} == ledger

    assert compaction.compact() == {}
    assert lake.read_manifest() == after_manifest
    assert etl.run()["loaded"] == {"fact_trades": 0, "fact_predictions": 0, "fact_prices": 0}
    assert_same(before, contents())


def test_a_late_row_for_a_compacted_day_is_loaded_and_folded_into_its_month(stack):
    day = closed_days(1, 3)
    insert_trades(stack, [day])
    etl.run()
    month = day.strftime("%Y-%m")
    assert len(partition_files(lake.read_manifest(), "fact_trades")[month]) == 1
    by_day = {r["date"]: r["trades"] for r in reports.trading()}

    insert_trades(stack, [day], per_day=1)  # arrives after its day was compacted
    result = etl.run()

    assert result["loaded"]["fact_trades"] == 1 and result["compacted"]["fact_trades"] == 1
    assert {r["date"]: r["trades"] for r in reports.trading()} == {**by_day, day.isoformat(): by_day[
        day.isoformat()] + 1}
    assert len(partition_files(lake.read_manifest(), "fact_trades")[month]) == 1


def test_a_compaction_killed_before_its_commit_changes_nothing(stack, monkeypatch):
    etl.run()
    insert_trades(stack, [closed_days(3, 7)])
    etl.run(compact_after=False)
    insert_trades(stack, [closed_days(3, 8)])
    etl.run(compact_after=False)
    before, manifest = contents(), lake.read_manifest()
    with fault_in_this_process(stack, monkeypatch, "etl.before_compaction_commit"), \
            pytest.raises(faults.InjectedFault):
        compaction.compact()
    assert lake.read_manifest() == manifest
    assert_same(before, contents())
    assert compaction.compact()["fact_trades"] >= 1
    assert_same(before, contents())


def test_a_writer_holding_a_stale_manifest_commits_nothing(stack):
    etl.run()
    stale, etag = lake.read_raw()
    insert_trades(stack, [closed_days(1, 9)])
    etl.run()
    current = lake.read_manifest()
    with pytest.raises(lake.ConcurrentCommit):
        lake.commit(stale, etag)
    assert lake.read_manifest() == current


def test_a_manifest_of_the_daily_layout_is_rebuilt_from_the_sources(stack):
    etl.run()
    raw, etag = lake.read_raw()
    old = {k: v for k, v in raw.items() if k not in ("layout", "meta")}
    lake.commit(old, etag)
    assert lake.read_manifest() is None
    result = etl.run()
    assert result["rebuilt"] is True
    conn = psycopg2.connect(stack["DATABASE_URL"])
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM transactions")
        (count,) = cur.fetchone()
    conn.close()
    assert result["totals"]["trades"] == count == sum(r["trades"] for r in reports.trading())
