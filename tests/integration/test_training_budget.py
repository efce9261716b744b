"""The on-demand training budget: GET /api/predict/X for symbols without a model starts at most so
many trainings an hour, per client address and stack-wide, counted atomically on the real state
Redis; the predict app runs in-process on API Gateway events (moto S3 for the registry, PostgreSQL
for stored predictions), with the retrain function's asynchronous invoke recorded, not run."""

from __future__ import annotations

import importlib.util
import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest

from stockml import artifact, training_lease
from stockml import registry as model_registry
from stockml.features import frame_from_bars
from stockml.models import make_model, training_rows
from stockml.registry import ModelRegistry
from stockml.sizing import SizingRule
from stockpred import config
from stockpred.cloud import aws
from stockpred.market import market_data
from stockpred.market.market_data import MarketData
from stockpred.predictions import training_budget
from stockpred.stores import redis_stores
from stockpred.stores.cache import ReadThroughCache
from tests.fakes.market import AnySymbol, predict

ROOT = Path(__file__).resolve().parents[2]
ALL = "stockpred:training-budget:all"
PREFIX = f"B{uuid.uuid4().hex[:3].upper()}"  # every symbol of this module, none of another's


class RecordedInvokes:
    """The retrain function's asynchronous invokes, recorded (or failing, when told to)."""

    def __init__(self) -> None:
        self.symbols: list[str] = []
        self.fail = False
        self._lock = threading.Lock()

    def invoke(self, FunctionName, InvocationType, Payload):
        assert InvocationType == "Event"
        if self.fail:
            raise RuntimeError("Lambda is unreachable")
        with self._lock:
            self.symbols.extend(json.loads(Payload)["symbols"])
        return {"StatusCode": 202}


@pytest.fixture(scope="module")
def predict_app(stack):
    from stockpred.stores import postgres

    postgres.connect().close()  # applies the migrations, as the first function to run would
    spec = importlib.util.spec_from_file_location("predict_app_under_test", ROOT / "functions/predict/app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app


@pytest.fixture(scope="module")
def registry(stack):
    s3 = boto3.client("s3", endpoint_url=stack["AWS_ENDPOINT_URL"], region_name="us-east-1")
    bucket = f"budget-models-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    return ModelRegistry(s3, bucket)


@pytest.fixture
def invokes(stack, registry, monkeypatch):
    """Caps of 4 an hour in all and 2 per address (each test may set its own), the module's
    market and registry, recorded invokes, and no budget spent before or after."""
    state = redis_stores.state()
    recorded = RecordedInvokes()
    real_client = aws.client
    monkeypatch.setattr(aws, "client", lambda name, *a, **kw: recorded if name == "lambda"
                        else real_client(name, *a, **kw))
    # The registry signals.current_model and training_lease.request_training both look in.
    monkeypatch.setattr(model_registry, "stack_registry", lambda: registry)
    shared = MarketData([AnySymbol(PREFIX)], ReadThroughCache(redis_stores.cache_ring()))
    monkeypatch.setattr(market_data, "default", lambda: shared)
    caps(monkeypatch, 4, 2)
    state.delete(ALL)
    yield recorded
    state.delete(ALL, *state.scan_iter("stockpred:training-budget:client:10.9.*"))
    config.load.cache_clear()


def caps(monkeypatch, everyone: int, per_client: int) -> None:
    monkeypatch.setenv("TRAIN_ON_DEMAND_MAX_PER_HOUR", str(everyone))
    monkeypatch.setenv("TRAIN_ON_DEMAND_MAX_PER_CLIENT_PER_HOUR", str(per_client))
    config.load.cache_clear()


def new_symbol() -> str:
    return f"{PREFIX}{uuid.uuid4().hex[:4].upper()}"


def lock_of(symbol: str) -> bool:
    return bool(redis_stores.state().exists(f"stockpred:training:{symbol}"))


def publish_model(registry: ModelRegistry, symbol: str) -> None:
    rows = training_rows(frame_from_bars(AnySymbol(PREFIX).bars()))
    fitted = make_model("logreg").fit(rows.X, rows.direction, rows.next_return)
    registry.publish(artifact.export(fitted), {
        "symbol": symbol, "kind": "logreg", "trained_at": "2026-11-24T09:00:00Z",
        "record": {"edge": False, "sharpe": 0.1, "buy_and_hold_sharpe": 0.2},
        "volatility": {"kind": "naive", "params": {}}, "sizing": SizingRule().to_dict()})


def assert_refused(out: dict, symbol: str, whose: str) -> int:
    assert out["statusCode"] == 429, out
    assert set(out["json"]) == {"error"}
    message = out["json"]["error"]
    assert "training budget is spent" in message and whose in message and symbol in message
    wait = int(out["headers"]["Retry-After"])
    assert 0 < wait <= training_budget.WINDOW_S and f"ask again in {wait} s" in message
    assert not lock_of(symbol), "a refused symbol leaves no lock behind"
    return wait


def test_the_third_request_from_one_address_is_refused_while_another_address_trains_until_the_global_cap(
        predict_app, invokes):
    first = [new_symbol() for _ in range(3)]
    answers = [predict(predict_app, s, "10.9.0.1") for s in first]
    assert [a["statusCode"] for a in answers[:2]] == [202, 202]
    assert all(a["json"]["started_by_this_request"] for a in answers[:2])
    assert_refused(answers[2], first[2], "from one address")
    assert invokes.symbols == first[:2]

    second = [new_symbol() for _ in range(2)]
    assert [predict(predict_app, s, "10.9.0.2")["statusCode"] for s in second] == [202, 202]
    # The stack-wide cap (4) is spent now: a third address, with none of its own spent, waits too.
    late = new_symbol()
    assert_refused(predict(predict_app, late, "10.9.0.3"), late, "for everyone")
    assert invokes.symbols == first[:2] + second

    state = redis_stores.state()
    assert int(state.get(ALL)) == 4, "refused requests count nothing"
    assert int(state.get("stockpred:training-budget:client:10.9.0.1")) == 2
    assert 0 < state.ttl(ALL) <= training_budget.WINDOW_S


def test_a_symbol_with_a_model_or_a_training_in_flight_costs_nothing(
        predict_app, invokes, registry, monkeypatch):
    caps(monkeypatch, 1, 1)
    known = new_symbol()
    publish_model(registry, known)
    for _ in range(3):
        assert predict(predict_app, known, "10.9.1.1")["statusCode"] == 200

    flying = new_symbol()
    started = predict(predict_app, flying, "10.9.1.1")
    assert started["statusCode"] == 202 and started["json"]["started_by_this_request"]
    for address in ("10.9.1.1", "10.9.1.2"):  # the training runs: ask again, from anywhere
        again = predict(predict_app, flying, address)
        assert again["statusCode"] == 202 and not again["json"]["started_by_this_request"]
    assert predict(predict_app, known, "10.9.1.1")["statusCode"] == 200, "a model is never refused"

    other = new_symbol()
    assert_refused(predict(predict_app, other, "10.9.1.1"), other, "from one address")
    assert_refused(predict(predict_app, other, "10.9.1.2"), other, "for everyone")
    assert invokes.symbols == [flying]


def test_concurrent_requests_never_start_more_trainings_than_the_cap(invokes, monkeypatch):
    caps(monkeypatch, 5, 3)
    symbols = [new_symbol() for _ in range(24)]
    addresses = [f"10.9.2.{i % 4}" for i in range(24)]  # 4 addresses x 6 symbols each

    def ask(i: int) -> str:
        try:
            return "started" if training_lease.request_training(symbols[i], addresses[i]) else "waiting"
        except training_budget.BudgetSpent as spent:
            return spent.scope

    with ThreadPoolExecutor(12) as pool:
        outcomes = list(pool.map(ask, range(24)))
    assert outcomes.count("started") == 5 and len(invokes.symbols) == 5, outcomes
    assert set(outcomes) <= {"started", "client", "all"}
    state = redis_stores.state()
    assert int(state.get(ALL)) == 5
    assert sum(int(state.get(f"stockpred:training-budget:client:10.9.2.{i}") or 0) for i in range(4)) == 5
    assert all(int(state.get(f"stockpred:training-budget:client:10.9.2.{i}") or 0) <= 3 for i in range(4))
    started = set(invokes.symbols)
    assert all(lock_of(s) == (s in started) for s in symbols), "only started trainings hold a lock"


def test_a_training_that_could_not_be_started_gives_its_budget_and_lock_back(invokes, monkeypatch):
    caps(monkeypatch, 1, 1)
    invokes.fail = True
    symbol = new_symbol()
    with pytest.raises(RuntimeError, match="unreachable"):
        training_lease.request_training(symbol, "10.9.3.1")
    assert not lock_of(symbol)
    state = redis_stores.state()
    assert int(state.get(ALL) or 0) == 0
    assert int(state.get("stockpred:training-budget:client:10.9.3.1") or 0) == 0

    invokes.fail = False
    assert training_lease.request_training(symbol, "10.9.3.1"), "the budget given back is spent again"
    assert invokes.symbols == [symbol]


def test_a_cap_of_zero_starts_nothing_and_nothing_is_counted(predict_app, invokes, monkeypatch):
    caps(monkeypatch, 0, 3)
    symbol = new_symbol()
    assert_refused(predict(predict_app, symbol, "10.9.4.1"), symbol, "for everyone")
    state = redis_stores.state()
    assert int(state.get(ALL) or 0) == 0
    assert int(state.get("stockpred:training-budget:client:10.9.4.1") or 0) == 0
    assert invokes.symbols == []
