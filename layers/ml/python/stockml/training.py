"""Training (retrain function, `stockpred train`): record, fit, export and publish a symbol's model.

A model's out-of-sample record comes from a walk-forward evaluation on that symbol's history
(stockml.evaluation); the model is then fitted on all of it, exported to a numpy artifact
(stockml.artifact), published to the registry and recorded in the `models` table. Needs
scikit-learn, so it runs in the retrain function (MlTrainingLayer) and `stockpred train`; the
predict function never imports it, it asks for a training (stockml.signals.request_training).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import sklearn

from stockml import artifact
from stockml.evaluation import evaluate
from stockml.features import FEATURE_NAMES, frame_from_bars
from stockml.models import make_model, training_rows
from stockml.signals import NotEnoughHistory, check_history, record_model, registry
from stockpred import config
from stockpred.logs import get_logger

if TYPE_CHECKING:
    from stockpred.prices import Bar

__all__ = ["NotEnoughHistory", "train"]

log = get_logger("training")

def _first_test_date(bars: list[Bar]) -> dt.date:
    check_history(bars)
    return bars[config.load().min_train_days].date


def train(symbol: str, bars: list[Bar], kind: str | None = None, source: str = "",
          progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Evaluates walk-forward for the record, fits on all history, publishes; returns metadata."""
    kind = kind or config.load().model_kind
    started = time.perf_counter()
    first_test = _first_test_date(bars)
    frame = frame_from_bars(bars)
    report = evaluate(frame, symbol=symbol, kinds=(kind,), first_test_date=first_test.isoformat(),
                      refit_every=config.load().record_refit_every, progress=progress)
    rows = training_rows(frame)
    model = make_model(kind).fit(rows.X, rows.direction, rows.next_return,
                                 trained_through=str(rows.dates[-1]))
    model_metrics = report["models"][kind]
    bh = report["baselines"]["buy_and_hold"]
    record = {
        "out_of_sample": report["out_of_sample"],
        "accuracy": round(model_metrics["accuracy"], 4),
        "balanced_accuracy": round(model_metrics["balanced_accuracy"], 4),
        "sharpe": round(model_metrics["sharpe"], 3),
        "annual_return": round(model_metrics["annual_return"], 4),
        "buy_and_hold_sharpe": round(bh["sharpe"], 3),
        "always_up_accuracy": round(report["baselines"]["always_up"]["accuracy"], 4),
        "edge": bool(report["edge"][kind]),
    }
    metadata = {
        "symbol": symbol,
        "kind": kind,
        "trained_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "training_window": {"from": str(rows.dates[0]), "to": str(rows.dates[-1]),
                            "rows": len(rows.dates)},
        "data_source": source,
        "features": list(FEATURE_NAMES),
        "params": model.params,
        "metrics": report["models"][kind],
        "baselines": report["baselines"],
        "record": record,
        "sklearn_version": sklearn.__version__,
        "train_seconds": round(time.perf_counter() - started, 2),
    }
    meta = registry().publish(artifact.export(model), metadata)
    record_model(meta)
    log.info("model published", extra={"fields": {"symbol": symbol, "version": meta["version"],
                                                  "edge": record["edge"],
                                                  "seconds": metadata["train_seconds"]}})
    return meta
