"""Buy/sell signals (serving): predict from a symbol's current model, store and list every prediction.

This is the predict function's path and imports numpy, the feature module and the registry only:
no scikit-learn, scipy, pandas or joblib, even indirectly (a unit test keeps it that way). Models
come from the registry as numpy artifacts. A symbol without a usable model is not trained here:
API Gateway gives a request 29 s, so `request_training` starts one training in the retrain
function (an asynchronous Lambda invoke) and the caller answers 202. A lease on the state Redis
makes that single-flight across concurrent requests and warm instances: ten first requests for a
symbol start one training. Each training started so is counted against the on-demand training
budget (stockpred.predictions.training_budget: per hour, stack-wide and per client address); over it, the
request is refused (BudgetSpent) and leaves no lease behind.

The lease lasts only while its holder lives. The request takes it for TRAINING_FIRST_LEASE_SECONDS
(90 s: the asynchronous invoke's queueing plus the retrain function's cold start) under a random
token it passes to the retrain function, which holds it (`TrainingLease`) while it trains: a
thread renews it to TRAINING_LEASE_SECONDS (30 s) every third of that, only while the key still
holds its token (compare-and-extend, one Lua script), and frees it (compare-and-delete) when the
training ends, trained or not. A training killed midway (timeout, out of memory, a stopped
devstack) renews nothing more, and its symbol is free again within the lease.

Every prediction carries its model's out-of-sample record with an `edge` flag: direction skill,
true only when its sized strategy beat plain volatility targeting's after-cost Sharpe, traded a
bar late, with a Holm-corrected bootstrap p below 0.05 (stockml.training.record_from). Its
`action` and its predicted close come from one forecast, the direction model's probability of an
up day (`expected_move`), so they never point opposite ways. It also says how much risk to
take: annualised volatility forecasts for the next day and the next 21 days and a recommended
exposure (fraction of capital, stockml.sizing), sized by the model's own volatility model and
sizing rule when the prediction is made. A prediction is
stored once per (symbol, as_of, model_version); asking again returns the stored row. Once the next
day's close is known, the stored row's outcome is filled in.

A warm instance computes a history's features once: `FeatureCache` keeps the last bar's feature
row per (symbol, history version), the version being the digest of the cached history entry the
bars came from (stockpred.market.market_data), so a new as_of or any corrected bar is a new key.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import math
import threading
import uuid
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from stockml.artifact import action_for
from stockml.features import WARMUP_ROWS, build_features, frame_from_bars
from stockml.registry import LoadedModel, ModelNotFound, ModelRegistry, OutdatedArtifact
from stockml.sizing import recommend
from stockml.volatility import TRADING_DAYS
from stockpred import config
from stockpred.cloud import aws
from stockpred.market.bar_checks import complete_bars
from stockpred.observability import logs
from stockpred.observability.logs import get_logger
from stockpred.predictions import training_budget
from stockpred.stores import postgres, redis_stores

if TYPE_CHECKING:
    from stockpred.market.market_data import History
    from stockpred.market.prices import Bar

log = get_logger("signals")


MIN_TEST_DAYS = 126
TRAINING_RETRY_AFTER_S = 15

# KEYS: the lease; ARGV: its holder's token, the new TTL (ms). Extends it only while it holds the
# token: a lease that expired and was taken by another request is not extended.
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# KEYS: the lease; ARGV: its holder's token. Deletes it only while it holds the token.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


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


class TrainingStarted(Exception):
    """No usable model yet; a training for the symbol runs (`started`: by this request)."""

    def __init__(self, symbol: str, started: bool) -> None:
        super().__init__(symbol)
        self.symbol = symbol
        self.started = started


def check_history(bars: list[Bar]) -> None:
    """NotEnoughHistory unless there are enough bars for the record and the final fit: the
    features' warm-up, MIN_TRAIN_DAYS to train on, MIN_TEST_DAYS to judge and the last bar (whose
    next day is not known yet)."""
    needed = WARMUP_ROWS + config.load().min_train_days + MIN_TEST_DAYS + 1
    if len(bars) < needed:
        raise NotEnoughHistory(f"need at least {needed} daily bars to train and evaluate a model, "
                               f"have {len(bars)}")


def _training_lock(symbol: str) -> str:
    return f"stockpred:training:{symbol}"


def request_training(symbol: str, client: str | None = None) -> bool:
    """Starts one training of `symbol` in the retrain function unless one already runs; True if
    this call started it. A training started is counted against `client`'s (the caller's address;
    None: the global budget only) on-demand budget first: training_budget.BudgetSpent when it is
    spent, with the symbol's lease freed, so nothing is left half-started. The retrain function
    gets the lease's token (`lease_tokens`) to hold it while it trains (`TrainingLease`)."""
    state = redis_stores.state()
    token = str(uuid.uuid4())
    first_lease_ms = int(config.load().training_first_lease_s * 1000)
    if not state.set(_training_lock(symbol), token, nx=True, px=first_lease_ms):
        return False
    try:
        registry().latest(symbol)
    except (ModelNotFound, OutdatedArtifact):
        pass
    else:  # published (and its lease freed) between the caller's look and this lease
        release_training(symbol, token)
        return False
    try:
        training_budget.spend(client)
    except BaseException:  # spent, or the count failed: no lease may stay behind
        release_training(symbol, token)
        raise
    try:
        aws.client("lambda").invoke(
            FunctionName=config.load().train_function_name, InvocationType="Event",
            Payload=json.dumps({"symbols": [symbol], "on_demand": True,
                                "lease_tokens": {symbol: token},
                                "correlation_id": logs.correlation_id.get()}).encode())
    except Exception:
        release_training(symbol, token)
        training_budget.refund(client)
        raise
    log.info("training requested", extra={"fields": {"symbol": symbol}})
    return True


def extend_training(symbol: str, token: str, seconds: float) -> bool:
    """Extends the symbol's training lease to `seconds` from now if `token` still holds it; False
    (nothing changed) if it expired or another holder took it since."""
    return bool(redis_stores.state().register_script(_EXTEND)(
        keys=[_training_lock(symbol)], args=[token, int(seconds * 1000)]))


def release_training(symbol: str, token: str | None) -> bool:
    """Frees the symbol's training lease if `token` still holds it (None, from an invoke made
    before leases had tokens: whoever holds it); True if it was freed."""
    if token is None:
        return bool(redis_stores.state().delete(_training_lock(symbol)))
    return bool(redis_stores.state().register_script(_RELEASE)(
        keys=[_training_lock(symbol)], args=[token]))


class TrainingLease:
    """Holds a symbol's training lease while a training runs (`with TrainingLease(...)`): a daemon
    thread extends it to TRAINING_LEASE_SECONDS at once and every third of that, as long as it
    still holds the token; leaving the block stops the thread (trained or raised) and frees the
    lease. A lease lost (expired, taken by another training) is left alone: the thread stops and
    says so, the training goes on. A Redis error skips one renewal; the next one tries again."""

    def __init__(self, symbol: str, token: str | None, lease_s: float | None = None) -> None:
        self.symbol = symbol
        self.token = token
        self.lease_s = config.load().training_lease_s if lease_s is None else lease_s
        self.renewals = 0
        self.lost = False
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._renew, name=f"training-lease-{symbol}",
                                       daemon=True)

    def __enter__(self) -> TrainingLease:
        if self.token is not None:  # an old invoke without a token: nothing to renew
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.thread.is_alive():
            self.thread.join()
        try:
            release_training(self.symbol, self.token)
        except Exception:  # the lease expires on its own
            log.exception("training lease not freed", extra={"fields": {"symbol": self.symbol}})

    def _renew(self) -> None:
        while not self._stop.is_set():
            try:
                if not extend_training(self.symbol, self.token, self.lease_s):
                    self.lost = True
                    log.warning("training lease lost", extra={"fields": {"symbol": self.symbol}})
                    return
                self.renewals += 1
            except Exception:
                log.exception("training lease not renewed", extra={"fields": {"symbol": self.symbol}})
            self._stop.wait(self.lease_s / 3)


@functools.cache
def registry() -> ModelRegistry:
    return ModelRegistry(aws.client("s3"), aws.model_bucket())


_recorded: set[str] = set()


def record_model(meta: dict[str, Any]) -> None:
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


def current_model(symbol: str, bars: list[Bar], train_on_demand: bool,
                  client: str | None = None) -> LoadedModel:
    """The symbol's published model. Without one (or with one in an outdated artifact format):
    with `train_on_demand`, TrainingStarted after asking for one training on `client`'s budget
    (training_budget.BudgetSpent if it is spent); otherwise the registry's ModelNotFound /
    OutdatedArtifact."""
    try:
        return registry().latest(symbol)
    except (ModelNotFound, OutdatedArtifact):
        if not train_on_demand:
            raise
    check_history(bars)
    raise TrainingStarted(symbol, request_training(symbol, client))


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
    record_model(loaded.metadata)
    with postgres.transaction() as cur:
        row = _stored(cur, symbol, latest.as_of, loaded.version)
        if row is not None:
            return _body(row), False
        prob = float(loaded.model.predict(latest.features)[0][0])
        record = loaded.metadata["record"]
        risk = risk_for(loaded.metadata, latest.close, prob)
        exp_ret = expected_move(prob, risk["volatility"]["next_day"], latest.close)
        cur.execute(
            f"""INSERT INTO predictions (id, symbol, as_of, model_version, last_close, predicted_close,
                   expected_return, probability_up, action, edge, record, risk)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (symbol, as_of, model_version) DO NOTHING RETURNING {_COLUMNS}""",
            (str(uuid.uuid4()), symbol, latest.as_of, loaded.version, latest.last_close,
             round(latest.last_close * (1 + exp_ret), 6), exp_ret, prob, action_for(prob),
             bool(record["edge"]), json.dumps(record), json.dumps(risk)),
        )
        row = cur.fetchone()
        if row is not None:
            return _body(row), True
        # A concurrent request stored it after this transaction's first read: read it now.
        return _body(_stored(cur, symbol, latest.as_of, loaded.version)), False


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


def _stored(cur: Any, symbol: str, as_of: dt.date, version: str) -> tuple | None:
    cur.execute(f"SELECT {_COLUMNS} FROM predictions WHERE symbol = %s AND as_of = %s "
                "AND model_version = %s", (symbol, as_of, version))
    return cur.fetchone()


_COLUMNS = ("id, symbol, as_of, model_version, last_close, predicted_close, expected_return, "
            "probability_up, action, edge, record, created_at, outcome_date, realised_close, "
            "realised_return, correct, risk")


def _body(row: tuple) -> dict[str, Any]:
    (pid, symbol, as_of, version, last_close, predicted, exp_ret, prob, action, edge, record,
     created, outcome_date, realised_close, realised_return, correct, risk) = row
    return {
        "symbol": symbol,
        "prediction": round(float(predicted), 4),
        "action": action,
        "timestamp": created.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        "_id": str(pid),
        "probability": round(prob, 4),
        "confidence": round(max(prob, 1 - prob), 4),
        "expected_return": round(exp_ret, 6),
        "prediction_explained": prediction_words(prob, exp_ret, float(predicted), risk),
        "last_close": round(float(last_close), 4),
        "model_version": version,
        "as_of": as_of.isoformat(),
        "edge": edge,
        "record": record,
        "volatility": risk and risk["volatility"],
        "exposure": risk and risk["exposure"],
        "sizing": risk and {k: v for k, v in risk.items() if k not in ("volatility", "exposure")},
        "outcome": None if correct is None else {
            "date": outcome_date.isoformat(),
            "close": round(float(realised_close), 4),
            "return": round(realised_return, 6),
            "correct": correct,
        },
    }


def prediction_words(prob_up: float, expected: float, predicted: float, risk: dict[str, Any] | None) -> str:
    """Why the predicted close is what it is, for a reader who is not a statistician."""
    vol = (risk or {}).get("volatility") or {}
    swing = vol.get("next_day")
    lean = "an up day" if prob_up >= 0.5 else "a down day"
    chance = prob_up if prob_up >= 0.5 else 1 - prob_up
    words = f"The model gives a {chance:.1%} chance of {lean}"
    if swing:
        words += f"; the next day's swing is forecast at about {swing / math.sqrt(TRADING_DAYS):.2%}"
    return (words + f". Together that is an expected move of {expected:+.3%}, a predicted close of "
            f"{predicted:,.2f}: the lean times the typical size of a day's move, so it points the same "
            "way as the buy/sell call.")


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
    """The symbol's stored predictions, newest first, with outcomes filled where now known (from
    complete bars only: a partial bar's price is not an outcome)."""
    fill_outcomes(symbol, complete_bars(bars))
    with postgres.transaction() as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM predictions WHERE symbol = %s "
                    "ORDER BY as_of DESC, created_at DESC LIMIT %s", (symbol, limit))
        return [_body(r) for r in cur.fetchall()]
