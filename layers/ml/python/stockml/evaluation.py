"""Honest out-of-sample evaluation: walk-forward splits, metrics, baselines, report, table and chart.

Protocol: the model is refitted every `refit_every` trading days on bars that end at least `gap`
days before the fold it predicts, then predicts each day of that fold. Every number reported here
comes from those out-of-sample predictions and is compared with simple baselines on the same days.
The strategy is "long on buy, flat on sell". Every strategy trades a bar late: a decision made
from close t is filled at close t+1 (`lag`, default one bar) and earns close t+1 to close t+2,
paying `cost_bps` plus half of `spread_bps` per unit of turnover.
Beside it: volatility forecasts (stockml.volatility) scored with QLIKE and MSE against the next 1,
5 and 21 days' squared returns, with Diebold-Mariano tests against the naive forecast; and sized
strategies (stockml.sizing): plain volatility targeting and, per model, volatility targeting
scaled by its conviction, with the same costs and lag. Every choice behind them (the
volatility model, the target, the horizon, the conviction strength) is made at each refit from
days before it only. Each is tested against buy and hold and each sized model against plain
volatility targeting with a studentised block bootstrap (stockml.edge); every p-value of an
evaluation is Holm-corrected as one family (`correct_for_multiple_tests`, also across the symbols
of one run). `edge` is direction skill: a model's sized strategy beat plain volatility targeting
with a corrected p < 0.05. What volatility targeting does against holding is "risk timing",
reported on its own. Too short a history moves the first test date to the first day with
`min_train_days` of usable history before it, and the report says so.
Training-side tooling: numpy and scikit-learn's metrics, no pandas; `plot_report` imports
matplotlib only when called.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sklearn.metrics import log_loss

from stockml.artifact import action_for
from stockml.edge import DEFAULT_RESAMPLES, EDGE_P_VALUE, holm, plain_words, sharpe_difference_test
from stockml.features import (
    FEATURE_NAMES,
    DatedRows,
    Frame,
    as_day,
    build_features,
    build_targets,
    rolling_mean,
    usable_rows,
)
from stockml.models import MODEL_KINDS, make_model
from stockml.performance import summary
from stockml.sizing import (
    CONVICTION_STRENGTHS,
    DEFAULT_MAX_EXPOSURE,
    SIZING_HORIZONS,
    TARGET_MULTIPLES,
    SizingRule,
    exposure,
    realised_volatility_so_far,
)
from stockml.text_tables import aligned, cell
from stockml.volatility import (
    HORIZONS,
    VOLATILITY_KINDS,
    future_mean_square,
    percent_returns,
    qlike,
    squared_error,
)
from stockml.volatility_fit import diebold_mariano, walk_forward_volatility

TRADING_DAYS = 252
EXECUTION_LAG = 1
DEFAULT_COST_BPS = 10.0
DEFAULT_SPREAD_BPS = 5.0
DEFAULT_MIN_TRAIN_DAYS = 504
MIN_TEST_DAYS = 126
HOLDING = "holding the index"
VOL_TARGETING = "plain volatility targeting"
DEFAULT_ROLLING_DAYS = 5 * TRADING_DAYS
MIN_IC_DAYS = 10
BASELINES = ("buy_and_hold", "always_up", "yesterday", "sma_20_50")
METRIC_KEYS = ("accuracy", "balanced_accuracy", "brier", "log_loss", "ic_mean", "ic_ir", "ic_months",
               "annual_return", "total_return", "sharpe", "max_drawdown", "turnover", "exposure", "days")

VOL_REFIT_EVERY = 63
VOL_MIN_TRAIN = 252
MIN_SELECTION_DAYS = 126
DEFAULT_VOL_KIND = "garch"
DEFAULT_RULE = SizingRule()

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


def strategy_returns(position: np.ndarray, realised: np.ndarray, cost_bps: float = 10) -> np.ndarray:
    """Daily net returns of holding `position` (0..1) from each close to the next.

    Every change of position (including the first entry from flat) pays cost_bps per side.
    """
    position = np.asarray(position, dtype=float)
    trades = np.abs(np.diff(position, prepend=0.0))
    return position * np.asarray(realised, dtype=float) - trades * cost_bps / 1e4


def strategy_metrics(position: np.ndarray, realised: np.ndarray, cost_bps: float = 10) -> dict[str, float]:
    """Annualised return and Sharpe (252 days, rf=0), max drawdown (<= 0), turnover per year."""
    position = np.asarray(position, dtype=float)
    net = strategy_returns(position, realised, cost_bps)
    days = len(net)
    equity = np.concatenate([[1.0], (1 + net).cumprod()])
    std = net.std(ddof=1) if days > 1 else math.nan
    trades = np.abs(np.diff(position, prepend=0.0))
    return {
        "annual_return": equity[-1] ** (TRADING_DAYS / days) - 1,
        "total_return": equity[-1] - 1,
        "sharpe": net.mean() / std * math.sqrt(TRADING_DAYS) if std > 0 else math.nan,
        "max_drawdown": float((equity / np.maximum.accumulate(equity) - 1).min()),
        "turnover": trades.sum() / days * TRADING_DAYS,
        "exposure": float(position.mean()),
        "days": days,
    }


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing the average of their ranks."""
    order = np.argsort(x, kind="mergesort")
    ordered = x[order]
    first_of_run = np.ones(len(x), dtype=bool)
    first_of_run[1:] = ordered[1:] != ordered[:-1]
    starts = np.flatnonzero(first_of_run)
    counts = np.diff(np.append(starts, len(x)))
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(starts + (counts + 1) / 2, counts)
    return ranks


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation, scaled before the dot products for accuracy; NaN if either is constant."""
    a, b = a - a.mean(), b - b.mean()
    a_scale, b_scale = np.abs(a).max(), np.abs(b).max()
    if len(a) < 2 or a_scale == 0 or b_scale == 0:
        return math.nan
    a, b = a / a_scale, b / b_scale
    fact = len(a) - 1
    a_std, b_std = np.sqrt(np.dot(a, a) / fact), np.sqrt(np.dot(b, b) / fact)
    if a_std == 0 or b_std == 0:
        return math.nan
    return float(np.clip(np.dot(a, b) / fact / a_std / b_std, -1.0, 1.0))


def monthly_ic(dates: np.ndarray, expected: np.ndarray, realised: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of predicted vs realised return within each calendar month.

    Months with fewer than MIN_IC_DAYS days, or a constant side, are left out.
    """
    months = np.asarray(dates, dtype="datetime64[D]").astype("datetime64[M]")
    ics = []
    for month in np.unique(months):
        x, y = expected[months == month], realised[months == month]
        if len(x) >= MIN_IC_DAYS and len(np.unique(x)) > 1 and len(np.unique(y)) > 1:
            ics.append(_pearson(_average_ranks(x), _average_ranks(y)))
    return np.array(ics, dtype=float)


def _directional(pred_up: np.ndarray, direction: np.ndarray) -> dict[str, float]:
    pred, truth = np.asarray(pred_up).astype(int), np.asarray(direction).astype(int)
    recalls = [(pred[truth == c] == c).mean() for c in (0, 1) if (truth == c).any()]
    return {"accuracy": float((pred == truth).mean()), "balanced_accuracy": float(np.mean(recalls))}


def metrics(oos: OutOfSample, *, cost_bps: float = 10, lag: int = EXECUTION_LAG) -> dict[str, Any]:
    """Directional, probabilistic and ranking metrics of oos rows (the monthly rank IC of the
    probability of an up day, the forecast that is served, with the next return), and the after-cost
    metrics of trading them `lag` bars late (long on buy, flat on sell)."""
    direction = oos.direction.astype(int)
    prob = oos.prob_up.astype(float)
    ic = monthly_ic(oos.dates, oos.prob_up, oos.realised_return)
    ic_std = ic.std(ddof=1) if len(ic) > 1 else math.nan
    out: dict[str, Any] = dict.fromkeys(METRIC_KEYS)
    out.update(_directional(oos.buy, direction))
    out.update({
        "brier": float(np.mean((prob - direction) ** 2)),
        "log_loss": float(log_loss(direction, prob, labels=[0, 1])),
        "ic_mean": float(ic.mean()) if len(ic) else math.nan,
        "ic_ir": float(ic.mean() / ic_std) if len(ic) > 1 and ic_std > 0 else math.nan,
        "ic_months": len(ic),
    })
    out.update(strategy_metrics(executed(oos.buy.astype(float), lag), oos.realised_return, cost_bps))
    return out


def baselines(frame: Frame, oos_dates: np.ndarray, cost_bps: float = 10,
              lag: int = EXECUTION_LAG) -> dict[str, dict[str, Any]]:
    """Naive rules on the same out-of-sample days, with the same metric keys (None where undefined).

    buy_and_hold: always long. always_up: predict up every day (trades as buy and hold).
    yesterday: predict the direction of the return that ended at t. sma_20_50: long when the
    20-day average close is above the 50-day one at t. Rules trade `lag` bars late, as models do.
    """
    oos_dates = np.asarray(oos_dates, dtype="datetime64[D]")
    at = np.searchsorted(frame.dates, oos_dates)
    if (at >= len(frame)).any() or (frame.dates[np.minimum(at, len(frame) - 1)] != oos_dates).any():
        raise ValueError("every out-of-sample day must be a day of the frame")
    close = frame.close
    targets = build_targets(frame)
    realised, direction = targets.next_return[at], targets.direction[at]
    with np.errstate(invalid="ignore"):
        up_today = np.zeros(len(close), dtype=bool)
        up_today[1:] = close[1:] / close[:-1] - 1 > 0
        sma_up = rolling_mean(close, 20) > rolling_mean(close, 50)
    signals = {
        "always_up": np.ones(len(close), dtype=bool),
        "yesterday": up_today,
        "sma_20_50": sma_up,
    }
    out = {}
    for name in BASELINES:
        row: dict[str, Any] = dict.fromkeys(METRIC_KEYS)
        if name == "buy_and_hold":
            row.update(strategy_metrics(np.ones(len(at)), realised, cost_bps))
        else:
            row.update(_directional(signals[name][at], direction))
            held = executed(signals[name].astype(float), lag)[at]
            row.update(strategy_metrics(held, realised, cost_bps))
        out[name] = row
    return out


def json_safe(value: Any) -> Any:
    """A JSON-safe copy of a report: numpy scalars and arrays as Python numbers and lists, NaN and
    inf as None (the single-symbol and the universe evaluations both use it)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [json_safe(v) for v in value]
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | float):
        return float(value) if math.isfinite(value) else None
    return value


def _mean_sharpe(net: np.ndarray) -> float:
    if len(net) < 2:
        return math.nan
    std = net.std(ddof=1)
    return float(net.mean() / std) if std > 0 else math.nan


def volatility_scores(forecasts: dict[str, dict[int, np.ndarray]], returns: np.ndarray,
                      rows: np.ndarray) -> dict[str, dict[str, Any]]:
    """Per kind and horizon on `rows`: mean QLIKE and MSE against the realised mean squared return
    of the next h days, and one-sided Diebold-Mariano p-values of beating the naive forecast."""
    out: dict[str, dict[str, Any]] = {}
    for kind, by_h in forecasts.items():
        out[kind] = {}
        for h, forecast in by_h.items():
            realised = future_mean_square(returns, h)[rows]
            f = forecast[rows]
            ok = np.isfinite(realised) & np.isfinite(f) & (f > 0)
            if "naive" in forecasts:
                naive = forecasts["naive"][h][rows]
                ok &= np.isfinite(naive) & (naive > 0)
            score: dict[str, Any] = {
                "qlike": float(qlike(f[ok], realised[ok]).mean()),
                "mse": float(squared_error(f[ok], realised[ok]).mean()),
                "days": int(ok.sum()),
            }
            if kind != "naive" and "naive" in forecasts:
                naive = forecasts["naive"][h][rows][ok]
                score["dm_qlike_p"] = diebold_mariano(qlike(naive, realised[ok]), qlike(f[ok], realised[ok]),
                                                      horizon=h)["p_value"]
                score["dm_mse_p"] = diebold_mariano(squared_error(naive, realised[ok]),
                                                    squared_error(f[ok], realised[ok]), horizon=h)["p_value"]
            out[kind][str(h)] = score
    return out


def _decision_rows(first_judged: int, start: int, end: int, every: int) -> list[int]:
    """Rows where choices are made: every `every` rows, aligned on the first judged day."""
    before = list(range(first_judged - every, start, -every))[::-1]
    return [start, *before, *range(first_judged, end, every)] if start < first_judged else [
        *range(first_judged, end, every)]


def select_volatility_kind(forecasts: dict[str, dict[int, np.ndarray]], returns: np.ndarray, start: int,
                           decide_at: int) -> str:
    """The kind whose one-day forecasts made on rows [start, decide_at - 1] had the lowest mean
    QLIKE: every such forecast's target is known by decide_at's close."""
    realised = future_mean_square(returns, 1)
    best, best_loss = None, math.inf
    for kind, by_h in forecasts.items():
        f, y = by_h[1][start:decide_at], realised[start:decide_at]
        ok = np.isfinite(f) & np.isfinite(y) & (f > 0)
        if ok.sum() == 0:
            continue
        loss = float(qlike(f[ok], y[ok]).mean())
        if loss < best_loss:
            best, best_loss = kind, loss
    if best is None:
        return DEFAULT_VOL_KIND if DEFAULT_VOL_KIND in forecasts else next(iter(forecasts))
    return best


@dataclass
class SizedStrategies:
    """Decided positions of the sized strategies on every frame row (0 before the first decision;
    a model's sized strategy holds plain volatility targeting's before its first judged day), the
    choices made at each decision row, and the next-day simple return of every row."""

    positions: dict[str, np.ndarray]
    choices: dict[str, list[dict[str, Any]]]
    next_return: np.ndarray


def size_strategies(frame: Frame, forecasts: dict[str, dict[int, np.ndarray]], returns: np.ndarray,
                    prob_up: dict[str, np.ndarray], *, start: int, first_judged: int, refit_every: int,
                    cost_bps: float, max_exposure: float = DEFAULT_MAX_EXPOSURE,
                    lag: int = EXECUTION_LAG) -> SizedStrategies:
    """Plain volatility targeting ("vol_target") and, per direction model, volatility targeting
    scaled by its conviction ("sized_<kind>"), every choice made on past days only (nested).

    At each decision row d: the volatility kind with the lowest past QLIKE; then for plain
    volatility targeting the rule (target multiple x horizon) whose after-cost Sharpe over rows
    before d was highest, among candidates with at least MIN_SELECTION_DAYS past days (else the
    default rule), each candidate traded `lag` bars late; and for a model, on top of that very
    rule, the conviction strength chosen the same way. A model's sized strategy thus differs from
    plain volatility targeting by its direction calls alone: with strength 0 they are the same.
    Positions are the decisions (`executed` gives what is held). `prob_up[kind]` is NaN where the
    model made no out-of-sample call.
    """
    n = len(frame)
    next_return = build_targets(frame).next_return
    target_vol = realised_volatility_so_far(returns)
    decisions = _decision_rows(first_judged, start, n, refit_every)
    vol_choice = {d: select_volatility_kind(forecasts, returns, start, d) for d in decisions}

    def plain_candidates() -> dict[SizingRule, np.ndarray]:
        out = {}
        for m in TARGET_MULTIPLES:
            for h in SIZING_HORIZONS:
                rule = SizingRule(m, h, 0.0, max_exposure)
                pos = np.zeros(n)
                for d, end in zip(decisions, [*decisions[1:], n], strict=True):
                    pos[d:end] = exposure(forecasts[vol_choice[d]][h][d:end], m * target_vol[d:end], rule)
                out[rule] = pos
        return out

    def best(nets: dict[Any, np.ndarray], past: slice) -> Any:
        scores = {key: _mean_sharpe(net[past]) for key, net in nets.items()}
        finite = {key: v for key, v in scores.items() if math.isfinite(v)}
        return max(finite, key=finite.__getitem__) if finite else None

    def compose(name: str, cands: dict[Any, np.ndarray], first: int, default: Callable[[int], Any],
                rule_at: Callable[[Any, int], SizingRule], before: np.ndarray | None = None) -> np.ndarray:
        known = np.nan_to_num(next_return)
        nets = {key: strategy_returns(executed(pos, lag), known, cost_bps) for key, pos in cands.items()}
        final = np.zeros(n) if before is None else before.copy()
        choices[name] = []
        for d, end in zip(decisions, [*decisions[1:], n], strict=True):
            if d < first:
                continue
            key = best(nets, slice(first, d)) if d - first >= MIN_SELECTION_DAYS else None
            key = default(d) if key is None else key
            final[d:end] = cands[key][d:end]
            choices[name].append({"row": d, "volatility": vol_choice[d], **rule_at(key, d).to_dict()})
        return final

    def conviction_candidates(prob: np.ndarray) -> dict[float, np.ndarray]:
        """Per conviction strength: plain volatility targeting's own rule at every decision,
        scaled by the model's conviction (strength 0 is plain volatility targeting itself)."""
        out = {}
        for strength in CONVICTION_STRENGTHS:
            pos = np.zeros(n)
            for d, end in zip(decisions, [*decisions[1:], n], strict=True):
                rule = with_strength(strength, d)
                f = forecasts[vol_choice[d]][rule.horizon][d:end]
                pos[d:end] = exposure(f, rule.target_multiple * target_vol[d:end], rule, prob[d:end])
            out[strength] = pos
        return out

    choices: dict[str, list[dict[str, Any]]] = {}
    plain_default = SizingRule(DEFAULT_RULE.target_multiple, DEFAULT_RULE.horizon, 0.0, max_exposure)
    positions = {"vol_target": compose("vol_target", plain_candidates(), start,
                                       lambda d: plain_default, lambda rule, d: rule)}
    plain_rule = {c["row"]: SizingRule(c["target_multiple"], c["horizon"], 0.0, max_exposure)
                  for c in choices["vol_target"]}

    def with_strength(strength: float, d: int) -> SizingRule:
        return replace(plain_rule[d], conviction_strength=strength)

    for kind, prob in prob_up.items():
        positions[f"sized_{kind}"] = compose(f"sized_{kind}", conviction_candidates(prob), first_judged,
                                             lambda d: 0.0, with_strength, before=positions["vol_target"])
    return SizedStrategies(positions, choices, next_return)


def _choice_summary(choices: list[dict[str, Any]], dates: np.ndarray, first_judged: int) -> dict[str, Any]:
    judged = [c for c in choices if c["row"] >= first_judged]
    count: dict[str, dict[str, int]] = {}
    for key in ("volatility", "target_multiple", "horizon", "conviction_strength"):
        values = [str(c[key]) for c in judged]
        count[key] = {v: values.count(v) for v in sorted(set(values))}
    last = {k: v for k, v in judged[-1].items() if k != "row"} if judged else None
    return {"decisions": len(judged), "counts": count, "last": last,
            "last_date": str(dates[judged[-1]["row"]]) if judged else None}


@dataclass
class Evaluation:
    """Series behind a report, for `plot_report`: each model's out-of-sample rows, and the sized
    strategies' positions and next-day returns on the same days."""

    models: dict[str, OutOfSample]
    dates: np.ndarray
    realised: np.ndarray
    positions: dict[str, np.ndarray]
    volatility: dict[int, np.ndarray]


def evaluate_with_frames(frame: Frame, *, symbol: str, kinds: Sequence[str] = MODEL_KINDS,
                         first_test_date: Any = None, refit_every: int = 21, gap: int = 1,
                         window: Window = "expanding", cost_bps: float = DEFAULT_COST_BPS,
                         spread_bps: float = DEFAULT_SPREAD_BPS, lag: int = EXECUTION_LAG,
                         min_train_days: int = DEFAULT_MIN_TRAIN_DAYS,
                         vol_kinds: Sequence[str] = VOLATILITY_KINDS, vol_refit_every: int = VOL_REFIT_EVERY,
                         max_exposure: float = DEFAULT_MAX_EXPOSURE, resamples: int = DEFAULT_RESAMPLES,
                         progress: Progress | None = None) -> tuple[dict[str, Any], Evaluation]:
    """Like `evaluate`, also returning the series behind it (for `plot_report`)."""
    usable = frame.dates[usable_rows(build_features(frame), build_targets(frame))]
    first_test_date, first_test_reason = choose_first_test_date(usable, first_test_date, min_train_days)
    trade_cost = cost_bps + spread_bps / 2
    n_folds = len(walk_forward_splits(usable, first_test_date=first_test_date, refit_every=refit_every,
                                      gap=gap, window=window))
    first_row = int(np.searchsorted(frame.dates, usable[np.searchsorted(usable, as_day(first_test_date))]))
    vol_start = max(min(VOL_MIN_TRAIN, first_row), 2)
    vol_folds = list(range(vol_start, len(frame), vol_refit_every))
    total = n_folds * len(kinds) + len(vol_folds) * len(vol_kinds)

    frames: dict[str, OutOfSample] = {}
    for i, kind in enumerate(kinds):
        step = None
        if progress:
            def step(done: int, _total: int, i: int = i) -> None:
                progress(i * n_folds + done, total)
        frames[kind] = walk_forward(frame, kind, first_test_date=first_test_date, refit_every=refit_every,
                                    gap=gap, window=window, progress=step)
    oos_dates = next(iter(frames.values())).dates
    if any(not np.array_equal(f.dates, oos_dates) for f in frames.values()):
        raise RuntimeError("models were evaluated on different days")

    returns = percent_returns(frame.close)
    vol_step = (lambda done, _t: progress(n_folds * len(kinds) + done, total)) if progress else None
    forecasts = walk_forward_volatility(returns, vol_folds, kinds=vol_kinds, horizons=HORIZONS,
                                        progress=vol_step)
    rows = np.searchsorted(frame.dates, oos_dates)
    first_judged = int(rows[0])
    selected = {h: np.full(len(frame), np.nan) for h in HORIZONS}
    decisions = _decision_rows(first_judged, vol_start, len(frame), refit_every)
    for d, end in zip(decisions, [*decisions[1:], len(frame)], strict=True):
        kind = select_volatility_kind(forecasts, returns, vol_start, d)
        for h in HORIZONS:
            selected[h][d:end] = forecasts[kind][h][d:end]
    vol_scores = volatility_scores({**forecasts, "selected": selected}, returns, rows)

    prob_up = {}
    for kind, oos in frames.items():
        p = np.full(len(frame), np.nan)
        p[rows] = oos.prob_up
        prob_up[kind] = p
    sized = size_strategies(frame, forecasts, returns, prob_up, start=vol_start, first_judged=first_judged,
                            refit_every=refit_every, cost_bps=trade_cost, max_exposure=max_exposure, lag=lag)
    realised = sized.next_return[rows]
    held = {name: executed(pos, lag)[rows] for name, pos in sized.positions.items()}
    held = {"buy_and_hold": np.ones(len(rows)), **held}

    models = {kind: metrics(oos, cost_bps=trade_cost, lag=lag) for kind, oos in frames.items()}
    base = baselines(frame, oos_dates, cost_bps=trade_cost, lag=lag)
    net = {name: strategy_returns(pos, realised, trade_cost) for name, pos in held.items()}

    def test(name: str, against: str) -> dict[str, Any]:
        result = sharpe_difference_test(net[name], net[against], resamples=resamples)
        return {**result, "against": HOLDING if against == "buy_and_hold" else VOL_TARGETING}

    trials = configurations_tried(len(kinds), len(vol_kinds))

    def performance(name: str) -> dict[str, Any]:
        """Sortino, Calmar, drawdown duration, information ratio, beta and alpha against holding,
        PSR and the deflated Sharpe ratio for this evaluation's trials, and a row per year."""
        return summary(oos_dates, net[name], net["buy_and_hold"], trials=trials)

    sizing = {}
    for name, pos in held.items():
        row: dict[str, Any] = strategy_metrics(pos, realised, trade_cost)
        row.update({k: v for k, v in performance(name).items() if k not in row})
        if name != "buy_and_hold":
            row["vs_buy_and_hold"] = test(name, "buy_and_hold")
        if name.startswith("sized_"):
            row["vs_vol_target"] = test(name, "vol_target")
        if name in sized.choices:
            row["choices"] = _choice_summary(sized.choices[name], frame.dates, first_judged)
        sizing[name] = row
    for kind, oos in frames.items():
        long_flat = executed(oos.buy.astype(float), lag)
        net[f"long_flat_{kind}"] = strategy_returns(long_flat, realised, trade_cost)
        models[kind]["vs_buy_and_hold"] = test(f"long_flat_{kind}", "buy_and_hold")
        models[kind].update({k: v for k, v in performance(f"long_flat_{kind}").items()
                             if k not in models[kind]})
    report = {
        "symbol": symbol,
        "out_of_sample": {"start": str(oos_dates[0]), "end": str(oos_dates[-1]), "days": len(oos_dates)},
        "protocol": {
            "target": "next-day close-to-close direction and return",
            "validation": f"walk-forward, {window} window, refit every {refit_every} trading days, "
                          f"last training row {gap} day(s) before each fold",
            "first_test_date": str(as_day(first_test_date)),
            "first_test_date_reason": first_test_reason,
            "min_train_days": min_train_days,
            "train_start": str(usable[0]),
            "window": window, "refit_every": refit_every, "gap": gap,
            "folds": math.ceil(len(oos_dates) / refit_every),
            "strategy": "long on buy, flat on sell",
            "sized_strategy": "exposure = target volatility / forecast volatility, in [0, max exposure], "
                              "optionally scaled by the direction model's conviction; volatility model, "
                              "target, horizon and conviction chosen every refit on past days only",
            "execution": f"a decision made from close t is filled at close t+{lag} and earns the returns "
                         "after it" if lag else "filled at the very close the decision was made from "
                         "(lag 0: not tradeable, for research only)",
            "lag": lag,
            "max_exposure": max_exposure,
            "cost_bps": cost_bps,
            "spread_bps": spread_bps,
            "trade_cost_bps": trade_cost,
            "cost": "cost_bps plus half the spread per unit of turnover (|change of exposure|)",
            "volatility": f"{', '.join(vol_kinds)} refitted every {vol_refit_every} trading days on the "
                          f"returns before each fold (the first from {frame.dates[vol_start]}), "
                          "forecasts updated daily",
            "edge_test": "studentised circular block bootstrap of paired daily returns (Ledoit-Wolf), "
                         "one-sided p of 'Sharpe not above the benchmark', 90% interval; every p of the "
                         "evaluation Holm-corrected as one family; edge = a sized model beats plain "
                         "volatility targeting with a corrected p < 0.05",
            "resamples": resamples,
            "configurations": trials,
            "features": list(FEATURE_NAMES),
        },
        "params": {kind: make_model(kind).params for kind in kinds},
        "models": models,
        "baselines": base,
        "volatility": vol_scores,
        "sizing": sizing,
    }
    correct_for_multiple_tests([report])
    series = Evaluation(frames, oos_dates, realised, held, {h: selected[h][rows] for h in HORIZONS})
    return json_safe(report), series


def configurations_tried(models: int, volatility_models: int) -> int:
    """Strategies one evaluation tries, as trials for the deflated Sharpe ratio: every
    volatility model x target multiple x horizon for plain volatility targeting, and the same with
    each non-zero conviction strength per direction model; plus each model's long/flat rule."""
    rules = volatility_models * len(TARGET_MULTIPLES) * len(SIZING_HORIZONS)
    return rules * (1 + models * (len(CONVICTION_STRENGTHS) - 1)) + models


def _tests(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every hypothesis test of a report, by a name unique across symbols."""
    found = {}
    for name, row in report["sizing"].items():
        for key in ("vs_buy_and_hold", "vs_vol_target"):
            if row.get(key):
                found[f"{report['symbol']}/{name}/{key}"] = row[key]
    for kind, row in report["models"].items():
        if row.get("vs_buy_and_hold"):
            found[f"{report['symbol']}/{kind}/long_flat/vs_buy_and_hold"] = row["vs_buy_and_hold"]
    return found


def correct_for_multiple_tests(reports: list[dict[str, Any]]) -> int:
    """Holm-corrects every p-value of `reports` (one or several symbols' evaluations) as one
    family, in place: each test gets `p_value_corrected`, `tests_in_family`, `edge` (corrected
    p < 0.05) and its `words`; each report its `edge` per model (direction skill: the sized model
    against plain volatility targeting) and its `risk_timing` (plain volatility targeting against
    holding). Returns the family's size."""
    family = {name: t for report in reports for name, t in _tests(report).items()}
    corrected = holm({name: t.get("p_value") for name, t in family.items()})
    size = sum(p is not None for p in corrected.values())
    for name, t in family.items():
        t["p_value_corrected"] = corrected[name]
        t["tests_in_family"] = size
        t["edge"] = corrected[name] is not None and corrected[name] < EDGE_P_VALUE
        t["words"] = plain_words(t, t.get("against", HOLDING))
    for report in reports:
        report["edge"] = {kind: bool(report["sizing"][f"sized_{kind}"]["vs_vol_target"]["edge"])
                          for kind in report["models"]}
        timing = report["sizing"]["vol_target"]["vs_buy_and_hold"]
        report["risk_timing"] = {"edge": bool(timing["edge"]), "words": timing["words"],
                                 "what": "plain volatility targeting against holding the index"}
    return size


def evaluate(frame: Frame, *, symbol: str, kinds: Sequence[str] = MODEL_KINDS,
             first_test_date: Any = None, refit_every: int = 21, cost_bps: float = DEFAULT_COST_BPS,
             max_exposure: float = DEFAULT_MAX_EXPOSURE, progress: Progress | None = None) -> dict[str, Any]:
    """JSON-serialisable report: out-of-sample period, protocol, per-model metrics, baselines,
    volatility forecasts' scores, sized strategies with their bootstrap tests, edge and risk timing.

    `report["edge"][kind]` is True only when the model's sized strategy beat plain volatility
    targeting's after-cost Sharpe on the same out-of-sample days, traded a bar late, with a
    Holm-corrected bootstrap p-value below 0.05.
    """
    report, _ = evaluate_with_frames(frame, symbol=symbol, kinds=kinds, first_test_date=first_test_date,
                                     refit_every=refit_every, cost_bps=cost_bps, max_exposure=max_exposure,
                                     progress=progress)
    return report


TABLE_COLUMNS = (
    ("accuracy", "accuracy", "pct"),
    ("balanced acc", "balanced_accuracy", "pct"),
    ("Brier", "brier", ".4f"),
    ("IC mean", "ic_mean", "+.3f"),
    ("IC IR", "ic_ir", "+.2f"),
    ("ann. return", "annual_return", "pct"),
    ("Sharpe", "sharpe", ".2f"),
    ("max DD", "max_drawdown", "pct"),
    ("turnover", "turnover", ".1f"),
)


def format_table(report: dict[str, Any]) -> str:
    """Plain-text table: models and baselines (rows) against the headline metrics (columns)."""
    p, period = report["protocol"], report["out_of_sample"]
    rows = [(kind, m) for kind, m in report["models"].items()]
    rows += [(name, m) for name, m in report["baselines"].items()]
    header = ["", *(title for title, _, _ in TABLE_COLUMNS)]
    body = [[name, *(cell(m.get(key), style) for _, key, style in TABLE_COLUMNS)] for name, m in rows]
    table = aligned(header, body)
    models = len(report["models"])
    out = [
        f"{report['symbol']}: out-of-sample {period['start']} to {period['end']} ({period['days']} days)",
        f"{p['validation']}; {p['strategy']}, {p['trade_cost_bps']:g} bps per unit traded "
        f"({p['cost_bps']:g} cost + half a {p['spread_bps']:g} bps spread); {p['execution']}",
        f"first test date {p['first_test_date']}: {p['first_test_date_reason']}",
        *table[: 3 + models], table[0], *table[3 + models:],  # a rule between models and baselines
    ]
    out += ["", *volatility_table(report), "", *sizing_table(report)]
    return "\n".join(out)


def volatility_table(report: dict[str, Any]) -> list[str]:
    """Lines: each volatility model's QLIKE and MSE per horizon, with Diebold-Mariano p-values of
    beating the naive 21-day forecast (one-sided; small means better than naive)."""
    scores = report["volatility"]
    horizons = list(next(iter(scores.values())))
    header = [""]
    for h in horizons:
        header += [f"QLIKE {h}d", "p", f"MSE {h}d", "p"]
    body = []
    for kind, by_h in scores.items():
        row = [kind]
        for h in horizons:
            s = by_h[h]
            row += [cell(s["qlike"], ".4f"), cell(s.get("dm_qlike_p"), ".3f"), cell(s["mse"], ".3f"),
                    cell(s.get("dm_mse_p"), ".3f")]
        body.append(row)
    return [f"volatility forecasts (variance of percent returns; target: mean squared return of the next "
            f"h days; p: Diebold-Mariano, beats naive), {report['protocol']['volatility']}",
            *aligned(header, body)]


def sizing_table(report: dict[str, Any]) -> list[str]:
    """Lines: the sized strategies beside buy and hold, each Sharpe difference with its 90%
    interval and Holm-corrected p-value, against holding and against plain volatility targeting;
    then the verdicts in plain words: edge (direction skill) apart from risk timing."""
    header = ["", "ann. return", "Sharpe", "max DD", "exposure", "turnover", "dSharpe vs hold",
              "90% interval", "p (corr.)", "dSharpe vs vol target", "90% interval", "p (corr.)"]
    body = []

    def cells(test: dict[str, Any]) -> list[str]:
        if not test:
            return ["", "", ""]
        low, high = test.get("interval_90") or (None, None)
        return [cell(test.get("difference"), "+.3f"), f"[{cell(low, '+.3f')}, {cell(high, '+.3f')}]",
                cell(test.get("p_value_corrected"), ".3f")]

    for name, m in report["sizing"].items():
        body.append([name, cell(m["annual_return"], "pct"), cell(m["sharpe"], ".2f"),
                     cell(m["max_drawdown"], "pct"), cell(m["exposure"], ".2f"), cell(m["turnover"], ".1f"),
                     *cells(m.get("vs_buy_and_hold") or {}), *cells(m.get("vs_vol_target") or {})])
    words = []
    timing = report.get("risk_timing")
    if timing:
        words.append(f"risk timing (vol_target against holding): {'yes' if timing['edge'] else 'no'}, "
                     f"{timing['words']}")
    for kind, edge in report.get("edge", {}).items():
        test = report["sizing"][f"sized_{kind}"]["vs_vol_target"]
        words.append(f"edge of {kind} (direction skill: sized_{kind} against vol_target): "
                     f"{'EDGE' if edge else 'no edge'}, {test['words']}")
    for kind, m in report["models"].items():
        test = m.get("vs_buy_and_hold") or {}
        if test:
            words.append(f"{kind} long/flat: Sharpe {cell(m['sharpe'], '.2f')}, difference "
                         f"{cell(test['difference'], '+.3f')}, {test['words']}")
    p = report["protocol"]
    risk_header = ["", "Sortino", "Calmar", "max DD days", "IR vs hold", "beta", "alpha", "PSR",
                   f"DSR ({p['configurations']} trials)"]
    risk_body = [[name, cell(m.get("sortino"), ".2f"), cell(m.get("calmar"), ".2f"),
                  cell(m.get("max_drawdown_days"), "d"), cell(m.get("information_ratio"), "+.2f"),
                  cell(m.get("beta"), ".2f"), cell(m.get("alpha"), "pct"), cell(m.get("psr"), ".3f"),
                  cell(m.get("deflated_sharpe"), ".3f")] for name, m in report["sizing"].items()]
    by_year = {name: {row["year"]: row["return"] for row in m.get("yearly") or []}
               for name, m in report["sizing"].items()}
    years = sorted({year for returns in by_year.values() for year in returns})
    year_body = [[str(year), *(cell(returns.get(year), "pct") for returns in by_year.values())]
                 for year in years]
    words += ["", "risk and performance (IR, beta, alpha against holding; PSR: chance the true Sharpe is "
              "above 0; DSR: the same against the best of the trials an evaluation makes)",
              *aligned(risk_header, risk_body), "", "return by calendar year",
              *aligned(["year", *by_year], year_body)]
    return [f"sized strategies: exposure in [0, {p['max_exposure']:g}], {p['trade_cost_bps']:g} bps per "
            f"unit of turnover, traded {p['lag']} bar(s) late; p: studentised bootstrap, Holm-corrected "
            f"across the evaluation's tests; edge = corrected p < 0.05 against vol_target",
            *aligned(header, body), *words]


def plot_report(report: dict[str, Any], series: Evaluation, path: str | Path) -> Path:
    """PNG: after-cost equity curves (buy and hold, volatility-targeted, each model sized and
    long/flat), the exposures, and the forecast against the realised 21-day volatility."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    cost = report["protocol"]["trade_cost_bps"]
    fig = Figure(figsize=(11, 10), layout="constrained")
    equity_ax, exposure_ax, vol_ax = fig.subplots(3, 1, sharex=True, height_ratios=[2.2, 1, 1])
    dates = series.dates
    styles = {"buy_and_hold": {"color": "black", "lw": 1.4}, "vol_target": {"lw": 1.4}}
    for name, pos in series.positions.items():
        curve = (1 + strategy_returns(pos, series.realised, cost)).cumprod()
        m = report["sizing"][name]
        p_value = (m.get("vs_buy_and_hold") or {}).get("p_value_corrected")
        label = f"{name} (Sharpe {cell(m['sharpe'], '.2f')}" + (f", p = {p_value:.2f})" if p_value is not None
                                                                 else ")")
        equity_ax.plot(dates, curve, label=label, **styles.get(name, {"lw": 1}))
        if name != "buy_and_hold":
            exposure_ax.plot(dates, pos, label=name, **styles.get(name, {"lw": 0.8}))
    for kind, oos in series.models.items():
        held = executed(oos.buy.astype(float), report["protocol"]["lag"])
        curve = (1 + strategy_returns(held, oos.realised_return, cost)).cumprod()
        equity_ax.plot(oos.dates, curve, lw=0.8, ls="--",
                       label=f"{kind} long/flat (Sharpe {cell(report['models'][kind]['sharpe'], '.2f')})")
    equity_ax.set_yscale("log")
    plain = FuncFormatter(lambda y, _: f"{y:g}")
    equity_ax.yaxis.set_major_formatter(plain)
    equity_ax.yaxis.set_minor_formatter(plain)
    equity_ax.set_ylabel(f"growth of 1 (after {cost:g} bps per unit traded)")
    equity_ax.set_title(f"{report['symbol']}: out-of-sample walk-forward")
    equity_ax.legend(loc="upper left", fontsize=8)
    exposure_ax.set_ylabel("exposure")
    exposure_ax.legend(loc="lower left", fontsize=8)
    realised = np.sqrt(rolling_mean(series.realised ** 2, 21) * 252)
    vol_ax.plot(dates, np.sqrt(series.volatility[21] * 252) / 100, lw=1,
                label="forecast, next 21 days (selected model)")
    vol_ax.plot(dates, realised, lw=0.8, color="grey", label="realised, last 21 days")
    vol_ax.set_ylabel("annualised volatility")
    vol_ax.legend(loc="upper right", fontsize=8)
    for ax in (equity_ax, exposure_ax, vol_ax):
        ax.grid(alpha=0.3)
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path
