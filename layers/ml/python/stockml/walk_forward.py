"""The walk-forward protocol: time-ordered folds, out-of-sample predictions, execution lag, first test date.

Protocol: the model is refitted every `refit_every` trading days on bars that end at least `gap`
days before the fold it predicts, then predicts each day of that fold. Every number an evaluation
reports (stockml.evaluation) comes from those out-of-sample predictions and is compared with simple
baselines on the same days (stockml.scoring). Every strategy trades a bar late: a decision made
from close t is filled at close t+1 (`lag`, default one bar: `executed`) and earns close t+1 to
close t+2, paying `cost_bps` plus half of `spread_bps` per unit of turnover (the defaults are
here). Too short a history moves the first test date to the first day with `min_train_days` of
usable history before it (`choose_first_test_date`), and the report says so. The cross-sectional
rankers (stockml.ranking) use the same splits and execution lag.
Training-side tooling: numpy and scikit-learn (the models of stockml.models), no pandas.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from stockml.artifact import action_for
from stockml.features import DatedRows, Frame, as_day, build_features, build_targets, usable_rows
from stockml.models import make_model

TRADING_DAYS = 252
EXECUTION_LAG = 1
DEFAULT_COST_BPS = 10.0
DEFAULT_SPREAD_BPS = 5.0
DEFAULT_MIN_TRAIN_DAYS = 504
MIN_TEST_DAYS = 126
DEFAULT_ROLLING_DAYS = 5 * TRADING_DAYS

Progress = Callable[[int, int], None]
Window = Literal["expanding", "rolling"]


@dataclass(frozen=True)
class Split:
    """One walk-forward fold as half-open positions: train rows [train_start, train_end), test rows
    [test_start, test_end). The last training row is at least `gap` rows before test_start."""

    train_start: int
    train_end: int
    test_start: int
    test_end: int

    @property
    def train(self) -> slice:
        return slice(self.train_start, self.train_end)

    @property
    def test(self) -> slice:
        return slice(self.test_start, self.test_end)


def walk_forward_splits(dates: Sequence[Any] | np.ndarray, *, first_test_date: Any, refit_every: int = 21,
                        gap: int = 1, window: Window = "expanding",
                        rolling_days: int | None = None) -> list[Split]:
    """Time-ordered folds covering every date from first_test_date on.

    A training row at day d is labelled with the close of day d+1, so with gap=1 the last training
    row is the day before the fold starts and no training label reaches into the fold. `window` is
    "expanding" (all history) or "rolling" (the last `rolling_days` rows, default 5 years).
    """
    index = np.asarray(dates, dtype="datetime64[D]")
    if (np.diff(index) <= np.timedelta64(0, "D")).any():
        raise ValueError("dates must be strictly increasing")
    if gap < 1:
        raise ValueError("gap must be at least 1 day: a row's label is the next day's close")
    if refit_every < 1:
        raise ValueError("refit_every must be positive")
    if window == "expanding":
        if rolling_days is not None:
            raise ValueError("rolling_days only applies to window='rolling'")
    elif window == "rolling":
        rolling_days = rolling_days or DEFAULT_ROLLING_DAYS
    else:
        raise ValueError(f"unknown window {window!r}")

    first = int(np.searchsorted(index, as_day(first_test_date)))
    if first >= len(index):
        raise ValueError(f"no dates on or after {first_test_date}")
    splits = []
    for test_start in range(first, len(index), refit_every):
        train_end = test_start - gap + 1
        train_start = 0 if window == "expanding" else max(0, train_end - rolling_days)
        if train_end <= train_start:
            raise ValueError(f"no training rows before {index[test_start]}")
        splits.append(Split(train_start, train_end, test_start, min(test_start + refit_every, len(index))))
    return splits


@dataclass(frozen=True, eq=False)
class OutOfSample(DatedRows):
    """Out-of-sample predictions, one row per day t: what the model said at t, what happened next.

    `action` is "buy" or "sell"; `realised_return` is close[t+1]/close[t] - 1 and `direction` its
    sign (1 up, 0 not up).
    """

    dates: np.ndarray
    prob_up: np.ndarray
    expected_return: np.ndarray
    action: np.ndarray
    realised_return: np.ndarray
    direction: np.ndarray

    @property
    def buy(self) -> np.ndarray:
        return self.action == "buy"


def walk_forward(frame: Frame, kind: str, *, first_test_date: Any, refit_every: int = 21, gap: int = 1,
                 window: Window = "expanding", rolling_days: int | None = None, leak_shift: int = 0,
                 params: dict[str, Any] | None = None, progress: Progress | None = None) -> OutOfSample:
    """Out-of-sample predictions for every usable day from first_test_date on.

    `leak_shift=k` deliberately builds each row's features from bars k days in the future (k > 0:
    look-ahead, which the evaluation must catch) or -k days in the past (k < 0: a placebo whose
    label lies beyond what the features can know); it must stay 0 for real use.
    """
    features = build_features(frame)
    if leak_shift:
        shifted = np.full_like(features, np.nan)
        if leak_shift > 0:
            shifted[:-leak_shift] = features[leak_shift:]
        else:
            shifted[-leak_shift:] = features[:leak_shift]
        features = shifted
    targets = build_targets(frame)
    ok = usable_rows(features, targets)
    dates, X = frame.dates[ok], features[ok]
    direction, next_return = targets.direction[ok], targets.next_return[ok]
    splits = walk_forward_splits(dates, first_test_date=first_test_date, refit_every=refit_every,
                                 gap=gap, window=window, rolling_days=rolling_days)
    prob_up = np.empty(len(dates))
    expected = np.empty(len(dates))
    for done, split in enumerate(splits, start=1):
        model = make_model(kind, **(params or {})).fit(X[split.train], direction[split.train],
                                                        next_return[split.train])
        prob_up[split.test], expected[split.test] = model.predict(X[split.test])
        if progress:
            progress(done, len(splits))

    oos = slice(splits[0].test_start, None)
    return OutOfSample(
        dates=dates[oos],
        prob_up=prob_up[oos],
        expected_return=expected[oos],
        action=np.array([action_for(p) for p in prob_up[oos]]),
        realised_return=next_return[oos],
        direction=direction[oos].astype(int),
    )


def executed(position: np.ndarray, lag: int = EXECUTION_LAG) -> np.ndarray:
    """The exposure held from each close to the next when the decision made at close t is filled
    `lag` closes later: flat until the first decision is filled."""
    position = np.asarray(position, dtype=float)
    if lag < 0:
        raise ValueError("lag must be 0 or more bars")
    if lag == 0:
        return position
    held = np.zeros_like(position)
    held[lag:] = position[:-lag]
    return held


def choose_first_test_date(usable: np.ndarray, wanted: Any = None,
                           min_train_days: int = DEFAULT_MIN_TRAIN_DAYS) -> tuple[np.datetime64, str]:
    """The first out-of-sample day and why: `wanted` when at least `min_train_days` usable rows
    come before it, else the first day that has them (a stock listed later still evaluates);
    ValueError when the history cannot give MIN_TEST_DAYS out-of-sample days after that."""
    usable = np.asarray(usable, dtype="datetime64[D]")
    needed = min_train_days + MIN_TEST_DAYS
    if len(usable) < needed:
        raise ValueError(f"need at least {needed} days with features and a known next day "
                         f"({min_train_days} to train, {MIN_TEST_DAYS} to test), have {len(usable)}")
    earliest = usable[min_train_days]
    if wanted is None:
        return earliest, f"the first day with {min_train_days} days of history before it"
    wanted = as_day(wanted)
    if wanted < earliest:
        return earliest, (f"moved from {wanted} to {earliest}: the first day with {min_train_days} days "
                          f"of history before it (the history's first usable day is {usable[0]})")
    if wanted > usable[-MIN_TEST_DAYS]:
        raise ValueError(f"first test date {wanted} leaves fewer than {MIN_TEST_DAYS} out-of-sample days")
    return wanted, "as asked"
