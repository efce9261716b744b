"""Predictions end to end: signals through devstack, stored once in PostgreSQL, outcomes filled.

The SYNTH symbol is a synthetic random walk imported as CSV, so a test can add the next day's
close and watch the stored prediction's outcome appear.
"""

import datetime as dt
import os
import re
import subprocess
import sys

import numpy as np
import psycopg2
import pytest
import requests

from devstack.services import REPO_ROOT
from tests.conftest import SourceAddress

pytestmark = pytest.mark.usefixtures("flush_cache")
SPEC_FIELDS = {"symbol": str, "prediction": float, "action": str, "timestamp": str, "_id": str}


def db_rows(stack, sql, *args):
    conn = psycopg2.connect(stack["DATABASE_URL"])
    with conn.cursor() as cur:
        cur.execute(sql, args)
        rows = cur.fetchall()
    conn.close()
    return rows


def write_synth(folder, days, seed=7):
    rng = np.random.default_rng(seed)
    closes = 100 * np.exp(np.cumsum(rng.normal(0.0003, 0.01, 800)))
    start = dt.date(2015, 1, 5)
    dates = [d for d in (start + dt.timedelta(i) for i in range(1200)) if d.weekday() < 5]
    lines = ["Date,Open,High,Low,Close,Volume"]
    for d, c in list(zip(dates, closes, strict=False))[:days]:
        lines.append(f"{d},{c:.4f},{c * 1.01:.4f},{c * 0.99:.4f},{c:.4f},{int(1e6)}")
    folder.mkdir(exist_ok=True)
    (folder / "SYNTH.csv").write_text("\n".join(lines) + "\n")
    return dates[days - 1]


def import_csv(folder, stack):
    out = subprocess.run([sys.executable, "-m", "devstack.cli", "import-csv", str(folder)],
                         env={**os.environ, **stack}, capture_output=True, text=True, cwd=REPO_ROOT)
    assert out.returncode == 0, out.stderr


def test_predict_answers_the_spec_shape_and_stores_one_row(gateway, stack):
    r = gateway.predict("SPX")
    assert r.status_code == 200, r.text
    body = r.json()
    for field, kind in SPEC_FIELDS.items():
        assert isinstance(body[field], kind), field
    assert body["action"] in ("buy", "sell")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", body["timestamp"])
    assert body["as_of"] == "2018-12-31" and body["symbol"] == "SPX"
    assert 0 <= body["probability"] <= 1 and body["confidence"] >= 0.5
    assert body["prediction"] == pytest.approx(body["last_close"] * (1 + body["expected_return"]),
                                               rel=1e-4)
    # One forecast, one story: the predicted close moves the way the action says.
    assert (body["prediction"] > body["last_close"]) == (body["action"] == "buy")
    assert f"{body['prediction']:,.2f}" in body["prediction_explained"]
    record = body["record"]
    assert isinstance(body["edge"], bool) and body["edge"] == record["edge"]
    # Direction skill, judged on the symbol's trial record at that judgement's level.
    judgement = record["edge_judgement"]
    assert body["edge"] == (judgement["p_value"] < judgement["alpha"] <= 0.05 * 6 / 3.14159 ** 2)
    assert record["risk_timing"]["against"] == "holding the index"
    assert record["p_value"] >= record["p_value_uncorrected"]
    low, high = record["sharpe_difference_interval_90"]
    assert low <= record["sharpe_difference"] <= high
    assert 0.4 < record["accuracy"] < 0.65, "an out-of-sample accuracy far from 50% means a leak"

    # How much risk to take, and why: SPX's realised volatility late in 2018 was about 20-30% a
    # year, and an exposure never leaves [0, the model's cap].
    vol = body["volatility"]
    assert vol["model"] in ("naive", "garch", "gjr", "har")
    assert 0.08 < vol["next_day"] < 0.8 and 0.08 < vol["next_21_days"] < 0.8
    sizing = body["sizing"]
    assert 0 <= body["exposure"] <= sizing["max_exposure"] <= 4
    assert sizing["reason"].startswith(f"Hold {body['exposure']:.0%} of your capital")
    assert sizing["horizon_days"] in (1, 21) and 0.05 < sizing["target_volatility"] < 0.5

    again = gateway.get("/api/predict/spx").json()
    assert again["_id"] == body["_id"] and again["timestamp"] == body["timestamp"]
    assert (again["exposure"], again["volatility"]) == (body["exposure"], body["volatility"])
    rows = db_rows(stack, "SELECT id::text, action, model_version, (risk->>'exposure')::float "
                          "FROM predictions WHERE symbol = 'SPX' AND as_of = '2018-12-31'")
    assert rows == [(body["_id"], body["action"], body["model_version"], body["exposure"])]
    models = db_rows(stack, "SELECT sha256, metadata->>'format_version', metadata->>'sklearn_version' "
                            "FROM models WHERE version = %s", body["model_version"])
    assert len(models) == 1 and len(models[0][0]) == 64
    assert models[0][1] == "1" and models[0][2]


def test_predict_errors(gateway):
    assert gateway.get("/api/predict/ZZZZ").json() == {"error": "Stock data not available"}
    assert gateway.get("/api/predict/ZZZZ").status_code == 404
    r = gateway.get("/api/predict/B%24D")
    assert r.status_code == 400 and r.json()["error"].startswith("Invalid symbol")
    for bad in ("0", "501", "ten", "-1"):
        r = gateway.get("/api/predictions/SPX", params={"limit": bad})
        assert r.status_code == 400, bad


def test_short_history_is_a_clear_422(gateway, stack, tmp_path):
    folder = tmp_path / "short"
    folder.mkdir()
    (folder / "TINY.csv").write_text("Date,Open,High,Low,Close,Volume\n"
                                     + "".join(f"2024-01-{d:02d},10,11,9,10,100\n"
                                               for d in range(2, 30)))
    import_csv(folder, stack)
    r = gateway.get("/api/predict/TINY")
    assert r.status_code == 422 and "need at least" in r.json()["error"]


def test_history_fills_the_outcome_once_the_next_close_is_known(gateway, stack, tmp_path):
    as_of = write_synth(tmp_path / "csv", 700)
    import_csv(tmp_path / "csv", stack)
    first = gateway.predict("SYNTH")
    assert first.status_code == 200, first.text
    assert first.json()["as_of"] == as_of.isoformat()
    listed = gateway.get("/api/predictions/SYNTH").json()["predictions"]
    assert [p["_id"] for p in listed] == [first.json()["_id"]] and listed[0]["outcome"] is None

    next_day = write_synth(tmp_path / "csv", 701)
    import_csv(tmp_path / "csv", stack)
    second = gateway.get("/api/predict/SYNTH").json()
    assert second["as_of"] == next_day.isoformat() and second["_id"] != first.json()["_id"]
    listed = gateway.get("/api/predictions/SYNTH", params={"limit": 10}).json()["predictions"]
    assert [p["as_of"] for p in listed] == [next_day.isoformat(), as_of.isoformat()]
    outcome = listed[1]["outcome"]
    realised = outcome["close"] / first.json()["last_close"] - 1
    assert outcome["date"] == next_day.isoformat()
    assert outcome["return"] == pytest.approx(realised, abs=1e-6)
    assert outcome["correct"] == ((realised > 0) == (first.json()["action"] == "buy"))
    assert listed[0]["outcome"] is None


def test_ten_concurrent_first_predictions_start_one_training_then_all_get_the_same_signal(
        gateway, stack, tmp_path):
    """A symbol without a model answers 202 + Retry-After at once (never API Gateway's 29 s 504),
    and the lock on the state Redis lets exactly one of ten concurrent requests start a training."""
    from concurrent.futures import ThreadPoolExecutor

    write_synth(tmp_path / "csv", 700, seed=11)
    (tmp_path / "csv" / "SYNTH.csv").rename(tmp_path / "csv" / "FLIGHT.csv")
    import_csv(tmp_path / "csv", stack)
    with ThreadPoolExecutor(10) as pool:
        first = list(pool.map(lambda _: gateway.get("/api/predict/FLIGHT"), range(10)))
    waiting = [r for r in first if r.status_code == 202]
    # A training of 700 bars takes about a second: requests queued behind busy workers may
    # already find the model (200). Every one answers at once; exactly one starts the training.
    assert waiting and {r.status_code for r in first} <= {200, 202}, [r.text for r in first]
    assert all(r.headers["Retry-After"] == "15" and r.json()["status"] == "training" for r in waiting)
    assert sum(r.json()["started_by_this_request"] for r in waiting) == 1
    assert max(r.elapsed.total_seconds() for r in first) < 10

    ready = gateway.predict("FLIGHT")
    assert ready.status_code == 200, ready.text
    with ThreadPoolExecutor(10) as pool:
        again = list(pool.map(lambda _: gateway.get("/api/predict/FLIGHT"), range(10)))
    assert {r.status_code for r in again} == {200}
    assert {r.json()["_id"] for r in again} == {ready.json()["_id"]}
    assert db_rows(stack, "SELECT count(*) FROM models WHERE symbol = 'FLIGHT'") == [(1,)]


def test_a_spent_training_budget_refuses_a_symbol_without_a_model_and_starts_nothing(
        gateway, stack, state, tmp_path):
    """Over HTTP (stockpred.predictions.training_budget): an address whose on-demand training budget is spent
    gets 429 with Retry-After for a symbol without a model, and nothing is started or locked; a
    symbol with a model is served all the same, and once the budget is back the symbol trains."""
    write_synth(tmp_path / "csv", 700, seed=13)
    (tmp_path / "csv" / "SYNTH.csv").rename(tmp_path / "csv" / "CAPPED.csv")
    import_csv(tmp_path / "csv", stack)
    assert gateway.predict("SPX").status_code == 200
    address = "127.{}.{}.{}".format(*np.random.default_rng().integers(1, 255, 3))
    session = requests.Session()
    session.mount("http://", SourceAddress(address))
    spent = f"stockpred:training-budget:client:{address}"
    state.set(spent, 10**6, ex=600)
    try:
        r = session.get(gateway.url + "/api/predict/CAPPED", timeout=30)
        assert r.status_code == 429, r.text
        assert 0 < int(r.headers["Retry-After"]) <= 600
        assert set(r.json()) == {"error"} and "training budget is spent" in r.json()["error"]
        assert not state.exists("stockpred:training:CAPPED"), "a refused symbol leaves no lock"
        assert session.get(gateway.url + "/api/predict/SPX", timeout=30).status_code == 200
    finally:
        state.delete(spent)
    r = session.get(gateway.url + "/api/predict/CAPPED", timeout=30)
    assert r.status_code == 202 and r.json()["started_by_this_request"], r.text
    assert gateway.predict("CAPPED").status_code == 200
