"""Honest out-of-sample evaluation: walk-forward splits, metrics, baselines, report, table and chart.

Protocol: the model is refitted every `refit_every` trading days on bars that end at least `gap`
days before the fold it predicts, then predicts each day of that fold. Every number reported here
comes from those out-of-sample predictions and is compared with simple baselines on the same days.
The strategy is "long on buy, flat on sell", paying `cost_bps` per side on every position change.
Training-side tooling: numpy and scikit-learn's metrics, no pandas; `plot_report` imports
matplotlib only when called.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sklearn.metrics import log_loss

from stockml.artifact import action_for
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

TRADING_DAYS = 252
DEFAULT_ROLLING_DAYS = 5 * TRADING_DAYS
MIN_IC_DAYS = 10
BASELINES = ("buy_and_hold", "always_up", "yesterday", "sma_20_50")
METRIC_KEYS = ("accuracy", "balanced_accuracy", "brier", "log_loss", "ic_mean", "ic_ir", "ic_months",
               "annual_return", "total_return", "sharpe", "max_drawdown", "turnover", "exposure", "days")

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

    `leak_shift=k` deliberately builds each row's features from bars k days in the future; it
    exists only to prove the evaluation catches look-ahead and must stay 0 for real use.
    """
    features = build_features(frame)
    if leak_shift:
        shifted = np.full_like(features, np.nan)
        shifted[:-leak_shift] = features[leak_shift:]
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


def metrics(oos: OutOfSample, *, cost_bps: float = 10) -> dict[str, Any]:
    """Directional, probabilistic, ranking (monthly IC) and after-cost strategy metrics of oos rows."""
    direction = oos.direction.astype(int)
    prob = oos.prob_up.astype(float)
    ic = monthly_ic(oos.dates, oos.expected_return, oos.realised_return)
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
    out.update(strategy_metrics(oos.buy.astype(float), oos.realised_return, cost_bps))
    return out


def baselines(frame: Frame, oos_dates: np.ndarray, cost_bps: float = 10) -> dict[str, dict[str, Any]]:
    """Naive rules on the same out-of-sample days, with the same metric keys (None where undefined).

    buy_and_hold: always long. always_up: predict up every day (trades as buy and hold).
    yesterday: predict the direction of the return that ended at t. sma_20_50: long when the
    20-day average close is above the 50-day one at t.
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
        "always_up": np.ones(len(at), dtype=bool),
        "yesterday": up_today[at],
        "sma_20_50": sma_up[at],
    }
    out = {}
    for name in BASELINES:
        row: dict[str, Any] = dict.fromkeys(METRIC_KEYS)
        if name == "buy_and_hold":
            row.update(strategy_metrics(np.ones(len(at)), realised, cost_bps))
        else:
            row.update(_directional(signals[name], direction))
            row.update(strategy_metrics(signals[name].astype(float), realised, cost_bps))
        out[name] = row
    return out


def _clean(value: Any) -> Any:
    """JSON-safe copy: numpy scalars become Python numbers, NaN/inf become None."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | float):
        return float(value) if math.isfinite(value) else None
    return value


def evaluate_with_frames(frame: Frame, *, symbol: str, kinds: Sequence[str] = MODEL_KINDS,
                         first_test_date: Any = "2009-02-09", refit_every: int = 21, gap: int = 1,
                         window: Window = "expanding", cost_bps: float = 10,
                         progress: Progress | None = None) -> tuple[dict[str, Any], dict[str, OutOfSample]]:
    """Like `evaluate`, also returning each model's out-of-sample rows (for `plot_report`)."""
    frames: dict[str, OutOfSample] = {}
    for i, kind in enumerate(kinds):
        step = None
        if progress:
            def step(done: int, total: int, i: int = i) -> None:
                progress(i * total + done, len(kinds) * total)
        frames[kind] = walk_forward(frame, kind, first_test_date=first_test_date, refit_every=refit_every,
                                    gap=gap, window=window, progress=step)
    oos_dates = next(iter(frames.values())).dates
    if any(not np.array_equal(f.dates, oos_dates) for f in frames.values()):
        raise RuntimeError("models were evaluated on different days")

    models = {kind: metrics(oos, cost_bps=cost_bps) for kind, oos in frames.items()}
    base = baselines(frame, oos_dates, cost_bps=cost_bps)
    bh_sharpe = base["buy_and_hold"]["sharpe"]
    edge = {kind: bool(np.isfinite(m["sharpe"]) and np.isfinite(bh_sharpe) and m["sharpe"] > bh_sharpe)
            for kind, m in models.items()}
    usable = frame.dates[usable_rows(build_features(frame), build_targets(frame))]
    report = {
        "symbol": symbol,
        "out_of_sample": {"start": str(oos_dates[0]), "end": str(oos_dates[-1]), "days": len(oos_dates)},
        "protocol": {
            "target": "next-day close-to-close direction and return",
            "validation": f"walk-forward, {window} window, refit every {refit_every} trading days, "
                          f"last training row {gap} day(s) before each fold",
            "first_test_date": str(as_day(first_test_date)),
            "train_start": str(usable[0]),
            "window": window, "refit_every": refit_every, "gap": gap,
            "folds": math.ceil(len(oos_dates) / refit_every),
            "strategy": "long on buy, flat on sell",
            "cost_bps": cost_bps,
            "features": list(FEATURE_NAMES),
        },
        "params": {kind: make_model(kind).params for kind in kinds},
        "models": models,
        "baselines": base,
        "edge": edge,
    }
    return _clean(report), frames


def evaluate(frame: Frame, *, symbol: str, kinds: Sequence[str] = MODEL_KINDS,
             first_test_date: Any = "2009-02-09", refit_every: int = 21, cost_bps: float = 10,
             progress: Progress | None = None) -> dict[str, Any]:
    """JSON-serialisable report: out-of-sample period, protocol, per-model metrics, baselines, edge.

    `report["edge"][kind]` is True only when the model's after-cost Sharpe beats buy and hold's on
    the same out-of-sample days.
    """
    report, _ = evaluate_with_frames(frame, symbol=symbol, kinds=kinds, first_test_date=first_test_date,
                                     refit_every=refit_every, cost_bps=cost_bps, progress=progress)
    return report


def _fmt(value: Any, style: str) -> str:
    if value is None:
        return "-"
    if style == "pct":
        return f"{100 * value:.1f}%"
    return format(value, style)


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
    body = [[name, *(_fmt(m.get(key), style) for _, key, style in TABLE_COLUMNS)] for name, m in rows]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths,
                                                                                            strict=True)))

    rule = "-" * len(line(header))
    out = [
        f"{report['symbol']}: out-of-sample {period['start']} to {period['end']} ({period['days']} days)",
        f"{p['validation']}; {p['strategy']}, {p['cost_bps']:g} bps per side",
        rule, line(header), rule,
        *(line(r) for r in body[: len(report["models"])]),
        rule,
        *(line(r) for r in body[len(report["models"]):]),
        rule,
    ]
    bh_sharpe = _fmt(report["baselines"]["buy_and_hold"]["sharpe"], ".2f")
    for kind, has_edge in report["edge"].items():
        sharpe = _fmt(report["models"][kind]["sharpe"], ".2f")
        out.append(f"{kind}: {'EDGE' if has_edge else 'no edge'} "
                   f"(Sharpe {sharpe} vs buy and hold {bh_sharpe}, after costs)")
    return "\n".join(out)


def plot_report(report: dict[str, Any], oos_frames: dict[str, OutOfSample], path: str | Path) -> Path:
    """PNG with after-cost equity curves (models vs buy and hold) and rolling 63-day accuracy."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    cost = report["protocol"]["cost_bps"]
    fig = Figure(figsize=(11, 8), layout="constrained")
    equity_ax, acc_ax = fig.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    first = next(iter(oos_frames.values()))
    hold = (1 + strategy_returns(np.ones(len(first)), first.realised_return, cost)).cumprod()
    equity_ax.plot(first.dates, hold, color="black", lw=1.2, label="buy and hold")
    up_rate = rolling_mean((first.direction == 1).astype(float), 63)
    acc_ax.plot(first.dates, up_rate, color="black", lw=1, label="always up")
    for kind, oos in oos_frames.items():
        curve = (1 + strategy_returns(oos.buy.astype(float), oos.realised_return, cost)).cumprod()
        sharpe = report["models"][kind]["sharpe"]
        equity_ax.plot(oos.dates, curve, lw=1, label=f"{kind} (Sharpe {_fmt(sharpe, '.2f')})")
        hits = rolling_mean((oos.buy == (oos.direction == 1)).astype(float), 63)
        acc_ax.plot(oos.dates, hits, lw=1, label=kind)
    equity_ax.set_yscale("log")
    plain = FuncFormatter(lambda y, _: f"{y:g}")
    equity_ax.yaxis.set_major_formatter(plain)
    equity_ax.yaxis.set_minor_formatter(plain)
    equity_ax.set_ylabel(f"growth of 1 (after {cost:g} bps/side)")
    equity_ax.set_title(f"{report['symbol']}: out-of-sample walk-forward, long on buy / flat on sell")
    equity_ax.legend(loc="upper left")
    acc_ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    acc_ax.set_ylabel("rolling 63-day accuracy")
    acc_ax.legend(loc="lower left", ncol=len(oos_frames) + 1)
    for ax in (equity_ax, acc_ax):
        ax.grid(alpha=0.3)
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path
