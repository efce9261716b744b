"""Buy/sell signals: train and publish a model per symbol, predict from it, store every prediction.

A model's out-of-sample record comes from a walk-forward evaluation on that symbol's history
(stockml.evaluation), and every prediction carries it with an `edge` flag: true only when the
model beat buy-and-hold's after-cost Sharpe on the same out-of-sample days. A prediction is
stored once per (symbol, as_of, model_version); asking again returns the stored row. Once the
next day's close is known, the stored row's outcome is filled in.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

from stockml.evaluation import evaluate
from stockml.features import FEATURE_NAMES, build_features, build_targets, frame_from_bars
from stockml.models import action_for, make_model
from stockml.registry import LoadedModel, ModelNotFound, ModelRegistry
from stockpred import aws, postgres
from stockpred.logs import get_logger
from stockpred.prices import Bar

log = get_logger("signals")

DEFAULT_KIND = os.environ.get("MODEL_KIND", "logreg")
MIN_TRAIN_DAYS = int(os.environ.get("MIN_TRAIN_DAYS", "504"))
MIN_TEST_DAYS = 126
RECORD_REFIT_EVERY = int(os.environ.get("RECORD_REFIT_EVERY", "21"))


class NotEnoughHistory(ValueError):
    """Too few daily bars to train and evaluate a model honestly."""


@functools.cache
def registry() -> ModelRegistry:
    return ModelRegistry(aws.client("s3"), aws.model_bucket())


def _first_test_date(bars: list[Bar]) -> dt.date:
    if len(bars) < MIN_TRAIN_DAYS + MIN_TEST_DAYS:
        raise NotEnoughHistory(
            f"need at least {MIN_TRAIN_DAYS + MIN_TEST_DAYS} daily bars to train and evaluate "
            f"a model, have {len(bars)}")
    return bars[MIN_TRAIN_DAYS].date


def train(symbol: str, bars: list[Bar], kind: str = DEFAULT_KIND, source: str = "",
          progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Evaluates walk-forward for the record, fits on all history, publishes; returns metadata."""
    started = time.perf_counter()
    first_test = _first_test_date(bars)
    df = frame_from_bars(bars)
    report = evaluate(df, symbol=symbol, kinds=(kind,), first_test_date=first_test.isoformat(),
                      refit_every=RECORD_REFIT_EVERY, progress=progress)
    features = build_features(df)
    targets = build_targets(df)
    usable = features.notna().all(axis=1) & targets["next_return"].notna()
    model = make_model(kind)
    model.fit(features[usable], targets.loc[usable, "direction"], targets.loc[usable, "next_return"])
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
        "training_window": {"from": features[usable].index[0].date().isoformat(),
                            "to": features[usable].index[-1].date().isoformat(),
                            "rows": int(usable.sum())},
        "data_source": source,
        "features": list(FEATURE_NAMES),
        "params": model.params,
        "metrics": report["models"][kind],
        "baselines": report["baselines"],
        "record": record,
        "train_seconds": round(time.perf_counter() - started, 2),
    }
    meta = registry().publish(model, metadata)
    _record_model(meta)
    log.info("model published", extra={"fields": {"symbol": symbol, "version": meta["version"],
                                                  "edge": record["edge"],
                                                  "seconds": metadata["train_seconds"]}})
    return meta


_recorded: set[str] = set()


def _record_model(meta: dict[str, Any]) -> None:
    """Makes sure the model's row exists (once per version in a warm process, not per request)."""
    if meta["version"] in _recorded:
        return
    with postgres.transaction() as cur:
        cur.execute(
            """INSERT INTO models (version, symbol, kind, trained_at, sha256, metadata)
               VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (version) DO NOTHING""",
            (meta["version"], meta["symbol"], meta["kind"], meta["trained_at"], meta["sha256"],
             json.dumps(meta)),
        )
    _recorded.add(meta["version"])


def current_model(symbol: str, bars: list[Bar], source: str, train_on_demand: bool) -> LoadedModel:
    try:
        return registry().latest(symbol)
    except ModelNotFound:
        if not train_on_demand:
            raise
    log.info("no model yet: training on demand", extra={"fields": {"symbol": symbol}})
    train(symbol, bars, source=source)
    return registry().latest(symbol)


def predict(symbol: str, bars: list[Bar], source: str = "",
            train_on_demand: bool = True) -> tuple[dict[str, Any], bool]:
    """The stored prediction for the last bar with the current model, and whether it is new."""
    loaded = current_model(symbol, bars, source, train_on_demand)
    df = frame_from_bars(bars)
    features = build_features(df)
    last = features.iloc[[-1]]
    if last.isna().any(axis=None):
        raise NotEnoughHistory("not enough history to compute today's features")
    prob_up, expected = loaded.model.predict(last)
    prob, exp_ret = float(prob_up[0]), float(expected[0])
    as_of = features.index[-1].date()
    last_close = float(df["close"].iloc[-1])
    record = loaded.metadata["record"]
    _record_model(loaded.metadata)
    with postgres.transaction() as cur:
        cur.execute(
            """INSERT INTO predictions (id, symbol, as_of, model_version, last_close, predicted_close,
                   expected_return, probability_up, action, edge, record)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (symbol, as_of, model_version) DO NOTHING RETURNING id""",
            (str(uuid.uuid4()), symbol, as_of, loaded.version, last_close,
             round(last_close * (1 + exp_ret), 6), exp_ret, prob, action_for(prob),
             bool(record["edge"]), json.dumps(record)),
        )
        created = cur.fetchone() is not None
        cur.execute(f"SELECT {_COLUMNS} FROM predictions WHERE symbol = %s AND as_of = %s "
                    "AND model_version = %s", (symbol, as_of, loaded.version))
        return _body(cur.fetchone()), created


_COLUMNS = ("id, symbol, as_of, model_version, last_close, predicted_close, expected_return, "
            "probability_up, action, edge, record, created_at, outcome_date, realised_close, "
            "realised_return, correct")


def _body(row: tuple) -> dict[str, Any]:
    (pid, symbol, as_of, version, last_close, predicted, exp_ret, prob, action, edge, record,
     created, outcome_date, realised_close, realised_return, correct) = row
    return {
        "symbol": symbol,
        "prediction": round(float(predicted), 4),
        "action": action,
        "timestamp": created.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        "_id": str(pid),
        "probability": round(prob, 4),
        "confidence": round(max(prob, 1 - prob), 4),
        "expected_return": round(exp_ret, 6),
        "last_close": round(float(last_close), 4),
        "model_version": version,
        "as_of": as_of.isoformat(),
        "edge": edge,
        "record": record,
        "outcome": None if correct is None else {
            "date": outcome_date.isoformat(),
            "close": round(float(realised_close), 4),
            "return": round(realised_return, 6),
            "correct": correct,
        },
    }


def fill_outcomes(symbol: str, bars: list[Bar]) -> int:
    """Fills the realised next close of stored predictions whose next day is now known."""
    by_date = {b.date: i for i, b in enumerate(bars)}
    updated = 0
    with postgres.transaction() as cur:
        cur.execute("SELECT id, as_of, last_close, action FROM predictions "
                    "WHERE symbol = %s AND correct IS NULL", (symbol,))
        for pid, as_of, last_close, action in cur.fetchall():
            i = by_date.get(as_of)
            if i is None or i + 1 >= len(bars):
                continue
            nxt = bars[i + 1]
            realised = nxt.close / float(last_close) - 1
            cur.execute(
                """UPDATE predictions SET outcome_date = %s, realised_close = %s,
                       realised_return = %s, correct = %s, updated_at = now() WHERE id = %s""",
                (nxt.date, nxt.close, realised, (realised > 0) == (action == "buy"), pid),
            )
            updated += 1
    return updated


def history(symbol: str, bars: list[Bar], limit: int) -> list[dict[str, Any]]:
    fill_outcomes(symbol, bars)
    with postgres.transaction() as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM predictions WHERE symbol = %s "
                    "ORDER BY as_of DESC, created_at DESC LIMIT %s", (symbol, limit))
        return [_body(r) for r in cur.fetchall()]
