"""The stocks API end to end: a real HTTP client against devstack serving template.yaml.

Alpha Vantage is first in the chain (a local server speaking its wire format); symbols it does
not know fall through to imported CSVs and the bundled sample (SPX, IXIC).
"""

import concurrent.futures as cf
import json
import os

import boto3
import psycopg2
import pytest

pytestmark = pytest.mark.usefixtures("flush_cache")


def test_symbols_list_includes_the_sample(gateway):
    r = gateway.get("/api/stocks")
    assert r.status_code == 200
    symbols = {s["symbol"]: s for s in r.json()["symbols"]}
    assert {"SPX", "IXIC"} <= set(symbols)
    assert symbols["SPX"]["source"] == "sample"


def test_details_has_the_spec_shape_and_real_data(gateway):
    r = gateway.get("/api/stocks/SPX/details")
    assert r.status_code == 200
    body = r.json()
    assert {"id", "symbol", "price", "currency"} <= set(body)
    assert all(isinstance(body[k], str) for k in ("id", "symbol", "price", "currency"))
    assert body["symbol"] == "SPX" and body["currency"] == "USD"
    assert body["as_of"] == "2018-12-31" and body["price"] == "2506.8501"
    assert r.headers["Content-Type"] == "application/json"


def test_second_call_is_served_from_the_cache(gateway):
    first = gateway.get("/api/stocks/IXIC/details")
    second = gateway.get("/api/stocks/ixic/details")
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("MISS", "HIT")
    assert first.json() == second.json()


def test_unknown_symbol_is_404_with_the_spec_error(gateway):
    r = gateway.get("/api/stocks/ZZZZ/details")
    assert r.status_code == 404
    assert r.json() == {"error": "Stock data not available"}
    assert gateway.get("/api/stocks/ZZZZ/history").status_code == 404


@pytest.mark.parametrize("raw", ["SP$X", "A" * 30, "1BC", "%27%3B%20DROP%20TABLE%20price_history%3B--",
                                 "%7B%22%24ne%22%3A1%7D", "%00"])
def test_malformed_symbols_are_400_json(gateway, raw):
    r = gateway.get(f"/api/stocks/{raw}/details")
    assert r.status_code == 400
    assert r.json()["error"].startswith("Invalid symbol")


def test_history_range_and_default(gateway):
    r = gateway.get("/api/stocks/SPX/history", params={"from": "2018-12-24", "to": "2018-12-31"})
    assert r.status_code == 200
    body = r.json()
    assert [b["date"] for b in body["bars"]] == ["2018-12-24", "2018-12-26", "2018-12-27",
                                                 "2018-12-28", "2018-12-31"]
    bar = body["bars"][-1]
    assert set(bar) == {"date", "open", "high", "low", "close", "volume"}
    assert bar["low"] <= bar["close"] <= bar["high"]
    default = gateway.get("/api/stocks/SPX/history").json()
    assert default["count"] == 100 and default["to"] == "2018-12-31"


@pytest.mark.parametrize("params,message", [
    ({"from": "2018-02-30"}, "'from' must be a date"),
    ({"to": "yesterday"}, "'to' must be a date"),
    ({"from": "2018-12-31", "to": "2018-01-01"}, "'from' must not be after 'to'"),
])
def test_history_bad_dates_are_400(gateway, params, message):
    r = gateway.get("/api/stocks/SPX/history", params=params)
    assert r.status_code == 400
    assert r.json()["error"].startswith(message)


def test_unknown_route_wrong_method_and_huge_body(gateway):
    assert gateway.get("/api/nothing-here").json() == {"error": "Not found"}
    r = gateway.post("/api/stocks", data="{}")
    assert r.status_code == 405 and "error" in r.json()
    r = gateway.get("/api/stocks", data=b"x" * (7 * 1024 * 1024))
    assert r.status_code == 413 and r.json() == {"error": "Request body too large"}


def test_alphavantage_symbol_is_served_and_its_history_kept(gateway, fake_alphavantage, stack):
    r = gateway.get("/api/stocks/MSFT/details")
    assert r.status_code == 200
    assert r.json()["source"] == "alphavantage" and r.json()["price"] == "410.5000"
    h = gateway.get("/api/stocks/MSFT/history", params={"from": "2020-01-01"})
    assert h.status_code == 200 and h.json()["count"] == 5
    conn = psycopg2.connect(stack["DATABASE_URL"])
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM price_history WHERE symbol = 'MSFT' "
                    "AND source = 'alphavantage'")
        assert cur.fetchone()[0] == 5
    conn.close()
    assert "test-key-not-secret" in fake_alphavantage.keys_seen
    assert "test-key-not-secret" not in gateway.log.read_text()


def test_concurrent_misses_reach_the_upstream_once(gateway, fake_alphavantage):
    before = fake_alphavantage.total("GLOBAL_QUOTE", "AAPL")
    with cf.ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: gateway.get("/api/stocks/AAPL/details"), range(8)))
    assert [r.status_code for r in responses] == [200] * 8
    assert {r.json()["price"] for r in responses} == {"190.2500"}
    assert fake_alphavantage.total("GLOBAL_QUOTE", "AAPL") - before == 1


def test_unknown_symbols_are_remembered_not_asked_again(gateway, fake_alphavantage):
    assert gateway.get("/api/stocks/QQQQ/details").status_code == 404
    asked = fake_alphavantage.total("GLOBAL_QUOTE", "QQQQ")
    assert gateway.get("/api/stocks/QQQQ/details").status_code == 404
    assert fake_alphavantage.total("GLOBAL_QUOTE", "QQQQ") == asked == 1


def test_throttled_upstream_is_503_for_its_symbols_and_sample_still_works(gateway, fake_alphavantage):
    fake_alphavantage.mode = "information"
    try:
        r = gateway.get("/api/stocks/IBM/details")
        assert r.status_code == 503 and r.json() == {"error": "Market data provider unavailable"}
        assert gateway.get("/api/stocks/SPX/details").status_code == 200
    finally:
        fake_alphavantage.mode = "ok"
    assert gateway.get("/api/stocks/IBM/details").status_code == 200


def test_concurrent_requests_do_not_see_each_others_data(gateway):
    symbols = ["SPX", "IXIC"] * 10
    with cf.ThreadPoolExecutor(8) as pool:
        bodies = list(pool.map(lambda s: gateway.get(f"/api/stocks/{s}/details").json(), symbols))
    assert [b["symbol"] for b in bodies] == symbols


def test_lambda_invoke_api_runs_a_function_by_name_and_arn(gateway):
    client = boto3.client("lambda", endpoint_url=gateway.url, region_name="us-east-1",
                          aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"])
    event = json.loads((_events() / "details_spx.json").read_text())
    for name in ("StocksFunction",
                 "arn:aws:lambda:us-east-1:123456789012:function:StocksFunction"):
        out = client.invoke(FunctionName=name, Payload=json.dumps(event))
        assert out["StatusCode"] == 200 and "FunctionError" not in out
        payload = json.loads(out["Payload"].read())
        assert payload["statusCode"] == 200
        assert json.loads(payload["body"])["symbol"] == "SPX"
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.invoke(FunctionName="NoSuchFunction", Payload=b"{}")


def _events():
    from pathlib import Path

    return Path(__file__).resolve().parent.parent / "events"
