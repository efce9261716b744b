"""Buy/sell signals (serving): the prediction for a symbol's last complete bar from its current model.

`predict` orchestrates and writes nothing itself: the model (`current_model`, from the registry),
the features (`FeatureCache`), the forecast and the risk it recommends (`expected_move`,
`risk_for`), then the store. The writes are elsewhere: stockml.prediction_store does every
PostgreSQL read and write (the model's row, the prediction, and the outcomes it fills in before
it lists a symbol's predictions, `prediction_store.history`), and stockml.training_lease takes the
Redis lease and invokes the retrain function when there is no usable model yet.

This is the predict function's path: it and the two modules it writes through import numpy, the
feature module and the registry only, no scikit-learn, scipy, pandas or joblib, even indirectly (a
unit test keeps it that way). Models come from the registry as numpy artifacts. A symbol without a
usable model is not trained here: `current_model` asks stockml.training_lease for one training
in the retrain function (`request_training`, on the caller's training budget) and raises
TrainingStarted, and the caller answers 202.

Every prediction carries its model's out-of-sample record with an `edge` flag: direction skill,
true only when its sized strategy beat plain volatility targeting's after-cost Sharpe, traded a
bar late, with a Holm-corrected bootstrap p below 0.05 (stockml.training.record_from). Its
`action` and its predicted close come from one forecast, the direction model's probability of an
up day (`expected_move`), so they never point opposite ways. It also says how much risk to
take: annualised volatility forecasts for the next day and the next 21 days and a recommended
exposure (fraction of capital, stockml.sizing), sized by the model's own volatility model and
sizing rule when the prediction is made. A prediction is stored once per (symbol, as_of,
model_version): asking again returns the stored row, and its forecast is not made again.

A warm instance computes a history's features once: `FeatureCache` keeps the last bar's feature
row per (symbol, history version), the version being the digest of the cached history entry the
bars came from (stockpred.market.market_data), so a new as_of or any corrected bar is a new key.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from stockml import prediction_store, registry, training_lease
from stockml.artifact import action_for
from stockml.features import WARMUP_ROWS, build_features, frame_from_bars
from stockml.registry import LoadedModel, ModelNotFound, OutdatedArtifact
from stockml.sizing import recommend
from stockml.volatility import TRADING_DAYS
from stockpred import config
from stockpred.market.bar_checks import complete_bars
from stockpred.observability.logs import get_logger

if TYPE_CHECKING:
    from stockpred.market.market_data import History
    from stockpred.market.prices import Bar

log = get_logger("signals")


MIN_TEST_DAYS = 126


class NotEnoughHistory(ValueError):
    """Too few daily bars to train and evaluate a model honestly, or to compute today's features."""


class HistoryBehindModel(RuntimeError):
    """The history's last complete bar is inside the model's training window: the model has seen
    that day's outcome, so its prediction for it would be an in-sample one (stale data served)."""

    def __init__(self, symbol: str, as_of: dt.date, trained_through: str) -> None:
        super().__init__(f"the price history of {symbol} ends {as_of}, inside the model's training "
                         f"window (through {trained_through}): a prediction for it would not be out of "
                         "sample; ask again once the history is current")
        self.symbol = symbol


def check_history(bars: list[Bar]) -> None:
    """NotEnoughHistory unless there are enough bars for the record and the final fit: the
    features' warm-up, MIN_TRAIN_DAYS to train on, MIN_TEST_DAYS to judge and the last bar (whose
    next day is not known yet)."""
    needed = WARMUP_ROWS + config.load().min_train_days + MIN_TEST_DAYS + 1
    if len(bars) < needed:
        raise NotEnoughHistory(f"need at least {needed} daily bars to train and evaluate a model, "
                               f"have {len(bars)}")


def current_model(symbol: str, bars: list[Bar], train_on_demand: bool,
                  client: str | None = None) -> LoadedModel:
    """The symbol's published model. Without one (or with one in an outdated artifact format):
    with `train_on_demand`, training_lease.TrainingStarted after asking for one training on
    `client`'s budget (training_budget.BudgetSpent if it is spent); otherwise the registry's
    ModelNotFound / OutdatedArtifact."""
    try:
        return registry.stack_registry().latest(symbol)
    except (ModelNotFound, OutdatedArtifact):
        if not train_on_demand:
            raise
    check_history(bars)
    raise training_lease.TrainingStarted(symbol, training_lease.request_training(symbol, client))


class LatestBar(NamedTuple):
    """What a prediction needs from a history: its last bar's date and close, its features, and
    every close (for the volatility forecasts)."""

    as_of: dt.date
    last_close: float
    features: np.ndarray  # one read-only row, columns in FEATURE_NAMES order
    close: np.ndarray  # read-only, oldest first


def latest_bar(bars: list[Bar]) -> LatestBar:
    """The last bar's features computed on the whole history; NotEnoughHistory if incomplete."""
    frame = frame_from_bars(bars)
    last = build_features(frame)[-1:]
    if len(last) == 0 or np.isnan(last).any():
        raise NotEnoughHistory("not enough history to compute today's features")
    last.setflags(write=False)
    close = np.array(frame.close, dtype=float)
    close.setflags(write=False)
    return LatestBar(frame.dates[-1].item(), float(close[-1]), last, close)


class FeatureCache:
    """The last bar's features per (symbol, history version), in this instance's memory.

    Features depend on the bars alone (not on the model), and a history version names its bars
    exactly, so a hit is the very row `latest_bar` would compute. A history without a version
    (just loaded from a provider, or stale) is computed every time.
    """

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._rows: OrderedDict[tuple[str, str], LatestBar] = OrderedDict()
        self._lock = threading.Lock()

    def latest(self, history: History) -> LatestBar:
        if history.version is None:
            return latest_bar(history.bars)
        key = (history.symbol, history.version)
        with self._lock:
            found = self._rows.get(key)
            if found is not None:
                self._rows.move_to_end(key)
                return found
        found = latest_bar(history.bars)
        with self._lock:
            self._rows[key] = found
            while len(self._rows) > self.size:
                self._rows.popitem(last=False)
        return found

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()


features_cache = FeatureCache()


def completed(history: History, now: dt.datetime | None = None) -> History:
    """The history without a last bar the exchange has not closed yet (stockpred.market.bar_checks): no
    prediction is made, and stored, from a partial bar. A trimmed history gets its own version."""
    bars = complete_bars(history.bars, now)
    if len(bars) == len(history.bars):
        return history
    log.info("partial bar left out", extra={"fields": {"symbol": history.symbol,
                                                        "date": history.bars[-1].date.isoformat()}})
    version = None if history.version is None else f"{history.version}:complete"
    return dataclasses.replace(history, bars=bars, version=version)


def predict(history: History, train_on_demand: bool = True,
            client: str | None = None) -> tuple[dict[str, Any], bool]:
    """The stored prediction for the last complete bar with the current model, and whether it is
    new (`client`: the requester's address, whose training budget a training started spends).
    HistoryBehindModel when that bar is inside the model's training window."""
    symbol = history.symbol
    history = completed(history)
    loaded = current_model(symbol, history.bars, train_on_demand, client)
    latest = features_cache.latest(history)
    trained_through = (loaded.metadata.get("training_window") or {}).get("to")
    if trained_through and latest.as_of.isoformat() <= trained_through:
        raise HistoryBehindModel(symbol, latest.as_of, trained_through)
    prediction_store.record_model(loaded.metadata)

    def forecast() -> prediction_store.NewPrediction:  # made only when none is stored yet
        prob = float(loaded.model.predict(latest.features)[0][0])
        record = loaded.metadata["record"]
        risk = risk_for(loaded.metadata, latest.close, prob)
        exp_ret = expected_move(prob, risk["volatility"]["next_day"], latest.close)
        return prediction_store.NewPrediction(
            latest.last_close, round(latest.last_close * (1 + exp_ret), 6), exp_ret, prob,
            action_for(prob), record, risk)

    return prediction_store.find_or_store(symbol, latest.as_of, loaded.version, forecast)


def expected_move(prob_up: float, next_day_volatility: float | None, close: np.ndarray) -> float:
    """The direction model's forecast as a return: (2 p - 1) E|r|, with E|r| = sigma sqrt(2 / pi)
    for the next day's standard deviation sigma (the model's own volatility forecast, annualised
    in; the last 21 days' when there is none). Its sign is the action's, so the predicted close
    never points against the buy/sell call, and it is 0 at p = 1/2."""
    if next_day_volatility is not None and math.isfinite(next_day_volatility) and next_day_volatility > 0:
        sigma = next_day_volatility / math.sqrt(TRADING_DAYS)
    else:
        recent = np.diff(np.log(close[-22:]))
        sigma = float(recent.std()) if len(recent) > 1 else 0.0
    return (2 * prob_up - 1) * sigma * math.sqrt(2 / math.pi)


def risk_for(metadata: dict[str, Any], close: np.ndarray, prob_up: float) -> dict[str, Any]:
    """The risk a prediction recommends after the last close, with the reason in words: the
    model's volatility forecasts, and its sizing rule's exposure given the direction model's
    probability of an up day."""
    sized = recommend(close, metadata["volatility"], metadata["sizing"], prob_up=prob_up)
    sizing = metadata["sizing"]
    return {**sized, "horizon_days": sizing["horizon"],
            "conviction_strength": sizing["conviction_strength"],
            "reason": exposure_reason(sized, sizing, prob_up)}


def exposure_reason(sized: dict[str, Any], sizing: dict[str, Any], prob_up: float) -> str:
    """Why this exposure, for a reader who is not a statistician."""
    forecast = sized["volatility"]["next_21_days" if sizing["horizon"] > 1 else "next_day"]
    horizon = "the next 21 days" if sizing["horizon"] > 1 else "the next day"
    target, cap = sized["target_volatility"], sized["max_exposure"]
    if forecast is None:
        return "No volatility forecast could be made, so hold nothing."
    words = (f"Hold {sized['exposure']:.0%} of your capital: prices are forecast to swing "
             f"{forecast:.0%} a year over {horizon}, against a target of {target:.0%}")
    if sizing["conviction_strength"]:
        lean = "up" if prob_up > 0.5 else "down" if prob_up < 0.5 else "neither way"
        words += f", scaled by the model's lean ({lean}, {prob_up:.1%} chance of an up day)"
    if sized["exposure"] >= cap:
        words += f", capped at {cap:.0%}"
    return words + "."
