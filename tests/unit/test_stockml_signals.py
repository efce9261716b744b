"""stockml.signals (serving): imports numpy but no training stack, and trains on demand only when it may."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import stockml
from devstack.services import REPO_ROOT
from stockml import signals
from stockml.registry import ModelNotFound, OutdatedArtifact

TRAINING_ONLY = ("sklearn", "scipy", "pandas", "joblib")

PROBE = """
import importlib.util, json, sys
import stockml.signals
spec = importlib.util.spec_from_file_location("predict_app", "functions/predict/app.py")
spec.loader.exec_module(importlib.util.module_from_spec(spec))
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def test_serving_imports_no_training_package_even_indirectly():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=REPO_ROOT,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert "numpy" in loaded and "stockml" in loaded
    assert not loaded & set(TRAINING_ONLY), sorted(loaded & set(TRAINING_ONLY))


def test_stockml_signals_alone_loads_no_training_module():
    not_serving = {"stockml.training", "stockml.models", "stockml.evaluation"}
    code = ("import sys, stockml.signals; print(sorted(m for m in sys.modules if m.split('.')[0] in "
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
        monkeypatch.setattr(signals, "registry", lambda: fake)
        return fake
    return install


ENOUGH_BARS = [object()] * (504 + signals.MIN_TEST_DAYS)


@pytest.mark.parametrize("error", [ModelNotFound("models/SPX/latest.json"), OutdatedArtifact("format None")])
def test_without_a_usable_model_a_training_is_requested_not_run_here(fake_registry, monkeypatch, error):
    fake_registry(error)
    requested = []
    monkeypatch.setattr(signals, "request_training",
                        lambda symbol, client=None: requested.append(symbol) or True)
    with pytest.raises(signals.TrainingStarted) as started:
        signals.current_model("SPX", ENOUGH_BARS, train_on_demand=True)
    assert started.value.started and requested == ["SPX"]


def test_too_short_a_history_is_refused_before_any_training_is_requested(fake_registry, monkeypatch):
    fake_registry(ModelNotFound("models/SPX/latest.json"))
    monkeypatch.setattr(signals, "request_training",
                        lambda symbol, client=None: pytest.fail("must not train"))
    with pytest.raises(signals.NotEnoughHistory):
        signals.current_model("SPX", ENOUGH_BARS[:-1], train_on_demand=True)


@pytest.mark.parametrize("error", [ModelNotFound("models/SPX/latest.json"), OutdatedArtifact("format None")])
def test_without_training_on_demand_the_registry_error_stands(fake_registry, error):
    fake_registry(error)
    with pytest.raises(type(error)):
        signals.current_model("SPX", ENOUGH_BARS, train_on_demand=False)
