"""Scores of out-of-sample predictions and of the strategies traded on them: metrics and baselines.

The strategy is "long on buy, flat on sell", traded `lag` bars late (stockml.walk_forward) and
paying `cost_bps` per unit of turnover. `metrics` gives a model's directional (accuracy, balanced
accuracy), probabilistic (Brier, log loss) and ranking (monthly rank IC) metrics and its after-cost
strategy metrics; `baselines` the same for simple rules on the same out-of-sample days, which
every model is compared with; `json_safe` makes a report JSON-serialisable.
Training-side tooling: numpy and scikit-learn's metrics, no pandas.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.metrics import log_loss

from stockml.features import Frame, build_targets, rolling_mean
from stockml.walk_forward import EXECUTION_LAG, TRADING_DAYS, OutOfSample, executed

MIN_IC_DAYS = 10
BASELINES = ("buy_and_hold", "always_up", "yesterday", "sma_20_50")
METRIC_KEYS = ("accuracy", "balanced_accuracy", "brier", "log_loss", "ic_mean", "ic_ir", "ic_months",
               "annual_return", "total_return", "sharpe", "max_drawdown", "turnover", "exposure", "days")


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


def mean_sharpe(net: np.ndarray) -> float:
    if len(net) < 2:
        return math.nan
    std = net.std(ddof=1)
    return float(net.mean() / std) if std > 0 else math.nan
