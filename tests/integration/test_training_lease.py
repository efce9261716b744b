"""A symbol's training lease lasts only while its training lives: on the real state Redis, with
leases of a second or two (TRAINING_LEASE_SECONDS, TRAINING_FIRST_LEASE_SECONDS). A lease nobody
renews (a training killed, a stack stopped) frees its symbol within the lease and the next request
starts a training; a training that renews keeps it as long as it runs; a renewer never extends a
lease another holder took; the renewer stops when the training ends, trained or raised. The
predict app and the retrain function run in-process; the retrain invoke is recorded, not run."""

from __future__ import annotations

import importlib.util
import json
import threading
import time
import uuid
from pathlib import Path

import pytest

from stockml import registry, training_lease
from stockml.registry import ModelNotFound
from stockpred import config
from stockpred.cloud import aws
from stockpred.market import market_data
from stockpred.market.market_data import MarketData
from stockpred.stores import redis_stores
from stockpred.stores.cache import ReadThroughCache
from tests.fakes.market import AnySymbol, predict

ROOT = Path(__file__).resolve().parents[2]
PREFIX = f"L{uuid.uuid4().hex[:3].upper()}"  # every symbol of this module, none of another's
MARGIN_S = 0.5  # how late an expired key may still be seen (Redis expires keys when read anyway)


class RecordedInvokes:
    """The retrain function's asynchronous invokes: their payloads, recorded."""

    def __init__(self) -> None:
        self.payloads: list[dict] = []

    def invoke(self, FunctionName, InvocationType, Payload):
        assert InvocationType == "Event"
        self.payloads.append(json.loads(Payload))
        return {"StatusCode": 202}

    @property
    def symbols(self) -> list[str]:
        return [s for p in self.payloads for s in p["symbols"]]


def load_function(name: str, file: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def predict_app(stack):
    from stockpred.stores import postgres

    postgres.connect().close()  # applies the migrations, as the first function to run would
    return load_function("predict_app_lease_test", "functions/predict/app.py").app


@pytest.fixture(scope="module")
def retrain(stack):
    return load_function("retrain_lease_test", "functions/predict/retrain.py")


@pytest.fixture
def invokes(stack, monkeypatch):
    """Leases of 1 s (the first one too), no model for any symbol, this module's market, recorded
    invokes, and room in the training budget for this module's addresses."""
    recorded = RecordedInvokes()
    real_client = aws.client
    monkeypatch.setattr(aws, "client", lambda name, *a, **kw: recorded if name == "lambda"
                        else real_client(name, *a, **kw))

    class NoModels:
        def latest(self, symbol):
            raise ModelNotFound(symbol)

    # The registry signals.current_model and training_lease.request_training both look in.
    monkeypatch.setattr(registry, "stack_registry", lambda: NoModels())
    shared = MarketData([AnySymbol(PREFIX)], ReadThroughCache(redis_stores.cache_ring()))
    monkeypatch.setattr(market_data, "default", lambda: shared)
    monkeypatch.setenv("TRAINING_LEASE_SECONDS", "1")
    monkeypatch.setenv("TRAINING_FIRST_LEASE_SECONDS", "1")
    monkeypatch.setenv("TRAIN_ON_DEMAND_MAX_PER_HOUR", "1000")
    monkeypatch.setenv("TRAIN_ON_DEMAND_MAX_PER_CLIENT_PER_HOUR", "1000")
    config.load.cache_clear()
    yield recorded
    state = redis_stores.state()
    spent = list(state.scan_iter("stockpred:training-budget:client:10.8.*"))
    if spent:
        state.delete(*spent)
    config.load.cache_clear()


@pytest.fixture
def leases(monkeypatch):
    """Every TrainingLease the retrain function makes, kept for a look afterwards."""
    made: list[training_lease.TrainingLease] = []

    class Kept(training_lease.TrainingLease):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(training_lease, "TrainingLease", Kept)
    return made


def new_symbol() -> str:
    return f"{PREFIX}{uuid.uuid4().hex[:4].upper()}"


def key(symbol: str) -> str:
    return f"stockpred:training:{symbol}"


def gone_within(symbol: str, seconds: float) -> float:
    """Seconds until the symbol's lease is gone; fails if it is still there after `seconds`."""
    started = time.monotonic()
    state = redis_stores.state()
    while state.exists(key(symbol)):
        assert time.monotonic() - started < seconds, "the lease outlived its holder"
        time.sleep(0.05)
    return time.monotonic() - started


def held_throughout(symbol: str, token: str, seconds: float) -> None:
    """Asserts the symbol's lease holds `token` at every look for `seconds`."""
    state = redis_stores.state()
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        assert state.get(key(symbol)) == token.encode(), "the renewed lease was lost"
        time.sleep(0.05)


def test_a_lease_nobody_renews_frees_its_symbol_and_the_next_request_starts_a_training(
        predict_app, invokes):
    """A training requested but never started (a stack stopped a second later), or one killed
    after renewing a few times: its symbol is free within the lease, not the function's 15 min."""
    symbol = new_symbol()
    first = predict(predict_app, symbol)
    assert first["statusCode"] == 202 and first["json"]["started_by_this_request"]
    assert first["headers"]["Retry-After"] == str(training_lease.TRAINING_RETRY_AFTER_S)
    token = invokes.payloads[0]["lease_tokens"][symbol]
    assert redis_stores.state().get(key(symbol)) == token.encode()
    assert 0 < redis_stores.state().pttl(key(symbol)) <= 1000
    waiting = predict(predict_app, symbol, "10.8.0.2")
    assert waiting["statusCode"] == 202 and not waiting["json"]["started_by_this_request"]

    gone_within(symbol, 1 + MARGIN_S)  # nothing ever renewed it
    again = predict(predict_app, symbol)
    assert again["statusCode"] == 202 and again["json"]["started_by_this_request"]
    assert invokes.symbols == [symbol, symbol]

    # The second training starts, renews twice, then dies without freeing anything.
    second = invokes.payloads[1]["lease_tokens"][symbol]
    assert second != token
    for _ in range(2):
        assert training_lease.extend_training(symbol, second, 1)
        time.sleep(0.3)
    gone_within(symbol, 1 + MARGIN_S)
    assert predict(predict_app, symbol)["json"]["started_by_this_request"]
    assert invokes.symbols == [symbol] * 3


def test_a_training_that_renews_keeps_its_lease_past_several_lease_periods_then_frees_it(
        predict_app, retrain, invokes, leases, monkeypatch):
    symbol = new_symbol()
    assert predict(predict_app, symbol)["json"]["started_by_this_request"]
    payload = invokes.payloads[0]
    token = payload["lease_tokens"][symbol]
    seen = []

    def slow_training(sym, bars, source=""):  # 3.5 lease periods
        held_throughout(sym, token, 3.5)
        seen.append(predict(predict_app, sym, "10.8.0.3"))
        return {"version": "v-test"}

    monkeypatch.setattr(retrain.training, "train", slow_training)
    assert retrain.handler(payload, None)["trained"] == {symbol: "v-test"}
    assert seen[0]["statusCode"] == 202 and not seen[0]["json"]["started_by_this_request"]
    assert invokes.symbols == [symbol], "a request while it trains starts nothing"
    (lease,) = leases
    assert lease.renewals >= 4 and not lease.lost
    assert not lease.thread.is_alive(), "the renewer stops with the training"
    assert not redis_stores.state().exists(key(symbol)), "a finished training frees its symbol"


def test_a_renewer_never_extends_a_lease_another_holder_took(invokes):
    state = redis_stores.state()
    symbol = new_symbol()
    state.set(key(symbol), "mine", px=1000)
    with training_lease.TrainingLease(symbol, "mine", lease_s=1) as lease:
        time.sleep(0.2)
        # Taken over, as when this lease expired unseen and another request started a training.
        state.set(key(symbol), "theirs", px=1000)
        time.sleep(1 + MARGIN_S)
        assert lease.lost and not lease.thread.is_alive(), "the renewer gives up a lost lease"
        assert not state.exists(key(symbol)), "theirs was never extended by this renewer"
        state.set(key(symbol), "theirs", px=2000)
    assert state.get(key(symbol)) == b"theirs", "leaving frees only one's own lease"
    assert not training_lease.extend_training(symbol, "mine", 5)
    assert 0 < state.pttl(key(symbol)) <= 2000
    assert not training_lease.release_training(symbol, "mine")
    assert training_lease.release_training(symbol, "theirs") and not state.exists(key(symbol))


def test_the_renewer_stops_and_the_lease_is_freed_when_the_training_raises(
        predict_app, retrain, invokes, leases, monkeypatch):
    symbol = new_symbol()
    assert predict(predict_app, symbol)["json"]["started_by_this_request"]
    payload = invokes.payloads[0]

    def failing_training(sym, bars, source=""):
        held_throughout(sym, payload["lease_tokens"][sym], 1.5)
        raise MemoryError("the training ran out of memory")

    monkeypatch.setattr(retrain.training, "train", failing_training)
    with pytest.raises(MemoryError):
        retrain.handler(payload, None)
    (lease,) = leases
    assert lease.renewals >= 2 and not lease.thread.is_alive()
    assert not redis_stores.state().exists(key(symbol))
    names = {t.name for t in threading.enumerate()}
    assert f"training-lease-{symbol}" not in names
    again = predict(predict_app, symbol)
    assert again["statusCode"] == 202 and again["json"]["started_by_this_request"]


def test_a_skipped_symbol_frees_its_lease_at_once(predict_app, retrain, invokes, leases):
    """A symbol the retrain function does not train (here: no market data) is freed at once."""
    symbol = f"X{new_symbol()}"  # not this module's market's: unknown
    token = str(uuid.uuid4())
    redis_stores.state().set(key(symbol), token, px=1000)
    out = retrain.handler({"symbols": [symbol], "on_demand": True,
                           "lease_tokens": {symbol: token}}, None)
    assert symbol in out["skipped"]
    (lease,) = leases
    assert not lease.thread.is_alive() and not redis_stores.state().exists(key(symbol))
