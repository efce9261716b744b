"""stockml.signals (serving) and the modules it writes through (stockml.prediction_store,
stockml.training_lease): numpy but no training stack, and a training on demand only when it may."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import stockml
from devstack.services import REPO_ROOT
from stockml import prediction_store, registry, signals, training_lease
from stockml.registry import ModelNotFound, OutdatedArtifact

TRAINING_ONLY = ("sklearn", "scipy", "pandas", "joblib")
# The predict path's own stockml modules: signals predicts, the other two write (PostgreSQL, Redis
# and the retrain function's invoke).
SERVING = ("stockml.signals", "stockml.prediction_store", "stockml.training_lease")

PROBE = f"""
import importlib.util, json, sys
import {", ".join(SERVING)}
spec = importlib.util.spec_from_file_location("predict_app", "functions/predict/app.py")
spec.loader.exec_module(importlib.util.module_from_spec(spec))
print(json.dumps(sorted(sys.modules)))
"""


def test_serving_imports_no_training_package_even_indirectly():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=REPO_ROOT,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    modules = set(json.loads(out.stdout.strip().splitlines()[-1]))
    loaded = {name.split(".")[0] for name in modules}
    assert "numpy" in loaded and "stockml" in loaded
    assert not loaded & set(TRAINING_ONLY), sorted(loaded & set(TRAINING_ONLY))
    assert set(SERVING) <= modules


def test_signals_imports_the_modules_it_writes_through():
    """So that checking SERVING alone checks every stockml module of the predict path's own."""
    assert (signals.prediction_store, signals.training_lease) == (prediction_store, training_lease)


@pytest.mark.parametrize("module", SERVING)
def test_a_serving_module_alone_loads_no_training_module(module):
    not_serving = {"stockml.training", "stockml.models", "stockml.walk_forward", "stockml.scoring",
                   "stockml.sizing_selection", "stockml.evaluation", "stockml.evaluation_report"}
    code = (f"import sys, {module}; print(sorted(m for m in sys.modules if m.split('.')[0] in "
            f"{set(TRAINING_ONLY)!r} or m in {not_serving!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT,
                         timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_no_stockml_module_imports_pandas_joblib_or_pickle():
    """Checked in the source: scikit-learn itself imports pandas whenever it is installed (as here),
    so only Lambda, where the layers ship no pandas, could tell at run time."""
    for path in sorted(Path(stockml.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            roots = {name.split(".")[0] for name in names}
            assert not roots & {"pandas", "joblib", "pickle"}, f"{path.name} imports {sorted(roots)}"


class FakeRegistry:
    def __init__(self, error: Exception) -> None:
        self.error: Exception | None = error

    def latest(self, symbol: str) -> str:
        if self.error:
            raise self.error
        return f"model of {symbol}"


@pytest.fixture
def fake_registry(monkeypatch):
    def install(error: Exception) -> FakeRegistry:
        fake = FakeRegistry(error)
        monkeypatch.setattr(registry, "stack_registry", lambda: fake)
        return fake
    return install


ENOUGH_BARS = [object()] * (signals.WARMUP_ROWS + 504 + signals.MIN_TEST_DAYS + 1)  # 680


@pytest.mark.parametrize("error", [ModelNotFound("models/SPX/latest.json"), OutdatedArtifact("format None")])
def test_without_a_usable_model_a_training_is_requested_not_run_here(fake_registry, monkeypatch, error):
    fake_registry(error)
    requested = []
    monkeypatch.setattr(training_lease, "request_training",
                        lambda symbol, client=None: requested.append(symbol) or True)
    with pytest.raises(training_lease.TrainingStarted) as started:
        signals.current_model("SPX", ENOUGH_BARS, train_on_demand=True)
    assert started.value.started and requested == ["SPX"]


def test_too_short_a_history_is_refused_before_any_training_is_requested(fake_registry, monkeypatch):
    fake_registry(ModelNotFound("models/SPX/latest.json"))
    monkeypatch.setattr(training_lease, "request_training",
                        lambda symbol, client=None: pytest.fail("must not train"))
    with pytest.raises(signals.NotEnoughHistory):
        signals.current_model("SPX", ENOUGH_BARS[:-1], train_on_demand=True)


@pytest.mark.parametrize("error", [ModelNotFound("models/SPX/latest.json"), OutdatedArtifact("format None")])
def test_without_training_on_demand_the_registry_error_stands(fake_registry, error):
    fake_registry(error)
    with pytest.raises(type(error)):
        signals.current_model("SPX", ENOUGH_BARS, train_on_demand=False)


@pytest.mark.parametrize("prob_up", [0.01, 0.3, 0.499, 0.5, 0.501, 0.502, 0.7, 0.99])
@pytest.mark.parametrize("volatility", [0.16, None])
def test_the_predicted_close_never_points_against_the_action(prob_up, volatility):
    close = 2500 * np.exp(np.cumsum(np.random.default_rng(3).normal(0, 0.01, 60)))
    move = signals.expected_move(prob_up, volatility, close)
    action = signals.action_for(prob_up)
    assert (move > 0) == (action == "buy")
    if prob_up == 0.5:
        assert move == 0.0
    if volatility:  # 16% a year is about 1% a day; E|r| = 1% x sqrt(2/pi), times the lean 2p - 1
        assert move == pytest.approx((2 * prob_up - 1) * 0.16 / np.sqrt(252) * np.sqrt(2 / np.pi))


def test_the_prediction_is_explained_in_words():
    words = prediction_store.prediction_words(0.502, 0.00005, 2505.34, {"volatility": {"next_day": 0.16}})
    assert "50.2% chance of an up day" in words and "+0.005%" in words and "2,505.34" in words
    assert "same way as the buy/sell call" in words
    down = prediction_store.prediction_words(0.3, -0.003, 99.7, None)
    assert "70.0% chance of a down day" in down and "-0.300%" in down


def bars_until(last: str, days: int = 80) -> list:
    from stockpred.market.prices import Bar

    dates = np.busday_offset(last, -np.arange(days)[::-1], roll="backward")
    return [Bar(d.item(), 100.0 + i, 101.0 + i, 99.0 + i, 100.5 + i, 1e6) for i, d in enumerate(dates)]


def test_a_bar_of_a_session_still_open_is_left_out_and_the_history_gets_its_own_version():
    import datetime as dt

    from stockpred.market.market_data import History

    history = History("SPX", "alphavantage", bars_until("2026-07-15"), "v1")
    during = dt.datetime(2026, 7, 15, 19, 59, tzinfo=dt.UTC)  # 15:59 in New York (EDT)
    trimmed = signals.completed(history, during)
    assert trimmed.bars == history.bars[:-1] and trimmed.version == "v1:complete"
    after = dt.datetime(2026, 7, 15, 20, 0, tzinfo=dt.UTC)  # 16:00 in New York
    assert signals.completed(history, after) is history


def test_a_model_is_never_served_for_a_day_inside_its_training_window(fake_registry, monkeypatch):
    from stockpred.market.market_data import History

    class Loaded:
        metadata = {"training_window": {"from": "2015-01-02", "to": "2026-03-02"}}

    loaded_only = type("R", (), {"latest": lambda self, s: Loaded()})()
    monkeypatch.setattr(registry, "stack_registry", lambda: loaded_only)
    monkeypatch.setattr(prediction_store, "record_model", lambda meta: pytest.fail("must not serve"))
    monkeypatch.setattr(prediction_store, "find_or_store", lambda *a: pytest.fail("must not serve"))
    history = History("SPX", "csv", bars_until("2026-03-02"), None)
    with pytest.raises(signals.HistoryBehindModel, match="inside the model's training window"):
        signals.predict(history, train_on_demand=False)
