"""A warm predict: the history decoded once per cache entry, the features once per history version,
and a prediction made from them identical to one computed afresh (real Redis, PostgreSQL, moto S3)."""

import json
import uuid

import boto3
import psycopg2
import pytest

from stockml import artifact, signals
from stockml import registry as model_registry
from stockml.features import frame_from_bars
from stockml.models import make_model, training_rows
from stockml.registry import ModelRegistry
from stockml.sizing import SizingRule
from stockpred.market.market_data import MarketData
from stockpred.market.prices import SymbolInfo, quote_from_bars
from stockpred.market.sample_data import load_series
from stockpred.stores import cache, redis_stores
from stockpred.stores.cache import ReadThroughCache

SPX_DAYS = 900


class ListProvider:
    """The last `days` SPX sample bars under another name: a test can add the next day."""

    name = "list"

    def __init__(self, symbol: str, days: int) -> None:
        self.symbol, self.days = symbol, days

    def bars(self):
        return list(load_series("SPX")[-SPX_DAYS - 20:][:self.days])

    def symbols(self):
        return [SymbolInfo(self.symbol, "Test", "USD", self.name)]

    def daily_bars(self, symbol):
        return self.bars() if symbol == self.symbol else None

    def quote(self, symbol):
        return quote_from_bars(self.symbols()[0], self.bars()) if symbol == self.symbol else None


@pytest.fixture
def symbol():
    return f"C{uuid.uuid4().hex[:6].upper()}"


@pytest.fixture
def provider(symbol):
    return ListProvider(symbol, SPX_DAYS)


@pytest.fixture
def market(stack, provider):
    return MarketData([provider], ReadThroughCache(redis_stores.cache_ring()))


@pytest.fixture
def model(stack, symbol, monkeypatch, provider):
    s3 = boto3.client("s3", endpoint_url=stack["AWS_ENDPOINT_URL"], region_name="us-east-1")
    bucket = f"models-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    registry = ModelRegistry(s3, bucket)
    rows = training_rows(frame_from_bars(provider.bars()))
    fitted = make_model("logreg").fit(rows.X, rows.direction, rows.next_return)
    meta = registry.publish(artifact.export(fitted), {
        "symbol": symbol, "kind": "logreg", "trained_at": "2026-11-24T09:00:00Z",
        "record": {"edge": False, "sharpe": 0.1, "buy_and_hold_sharpe": 0.2},
        "volatility": {"kind": "naive", "params": {}}, "sizing": SizingRule().to_dict()})
    monkeypatch.setattr(model_registry, "stack_registry", lambda: registry)
    return meta


def delete_predictions(stack, symbol):
    conn = psycopg2.connect(stack["DATABASE_URL"])
    with conn, conn.cursor() as cur:
        cur.execute("DELETE FROM predictions WHERE symbol = %s", (symbol,))
    conn.close()


def computed_fields(body):
    """The prediction's fields, without the stored row's identity (id, creation time)."""
    return {k: v for k, v in json.loads(json.dumps(body)).items() if k not in ("_id", "timestamp")}


def test_a_cached_history_is_decoded_once_per_entry_and_versioned(market, symbol, provider):
    loaded, _ = market.history(symbol)
    cached, got = market.history(symbol)
    again, _ = market.history(symbol)
    assert got.hit and loaded.version is None and cached.version
    assert cached.bars == loaded.bars and again.version == cached.version
    assert again.bars is not cached.bars, "each caller gets its own list"

    provider.days += 1
    market.cache.forget(cache.key("history", symbol))
    market.history(symbol)
    tomorrow, _ = market.history(symbol)
    assert tomorrow.version != cached.version
    assert tomorrow.bars[-1].date > cached.bars[-1].date and tomorrow.bars[:-1] == cached.bars


def test_a_prediction_from_cached_features_equals_one_computed_afresh(
        stack, market, symbol, provider, model, monkeypatch):
    signals.features_cache.clear()
    market.history(symbol)
    history, _ = market.history(symbol)
    fresh, created = signals.predict(history)
    assert created and fresh["as_of"] == history.bars[-1].date.isoformat()

    delete_predictions(stack, symbol)
    computed = []
    monkeypatch.setattr(signals, "latest_bar", lambda bars: computed.append(1))
    from_cache, created = signals.predict(market.history(symbol)[0])
    assert created and computed == [], "the second predict must use the cached features"
    assert computed_fields(from_cache) == computed_fields(fresh)
    assert from_cache["model_version"] == model["version"]


def test_a_new_as_of_is_computed_and_equals_a_cold_computation(stack, market, symbol, provider, model):
    signals.features_cache.clear()
    market.history(symbol)
    today, _ = signals.predict(market.history(symbol)[0])

    provider.days += 1
    market.cache.forget(cache.key("history", symbol))
    market.history(symbol)
    warm, created = signals.predict(market.history(symbol)[0])
    assert created and warm["as_of"] > today["as_of"]
    assert warm["as_of"] == provider.bars()[-1].date.isoformat()

    delete_predictions(stack, symbol)
    signals.features_cache.clear()
    cold, _ = signals.predict(MarketData([provider], market.cache).history(symbol)[0])
    assert computed_fields(cold) == computed_fields(warm)
