"""Honest out-of-sample evaluation: walk-forward splits, metrics, baselines, report, table and chart.

Protocol: the model is refitted every `refit_every` trading days on bars that end at least `gap`
days before the fold it predicts, then predicts each day of that fold. Every number reported here
comes from those out-of-sample predictions and is compared with simple baselines on the same days.
The strategy is "long on buy, flat on sell", paying `cost_bps` per side on every position change.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss

from stockml.features import FEATURE_NAMES, build_features, build_targets
from stockml.models import MODEL_KINDS, action_for, make_model

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


def walk_forward_splits(dates: Sequence[Any] | pd.Index, *, first_test_date: Any, refit_every: int = 21,
                        gap: int = 1, window: Window = "expanding",
                        rolling_days: int | None = None) -> list[Split]:
    """Time-ordered folds covering every date from first_test_date on.

    A training row at day d is labelled with the close of day d+1, so with gap=1 the last training
    row is the day before the fold starts and no training label reaches into the fold. `window` is
    "expanding" (all history) or "rolling" (the last `rolling_days` rows, default 5 years).
    """
    index = pd.DatetimeIndex(dates)
    if not index.is_monotonic_increasing or index.has_duplicates:
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

    first = int(index.searchsorted(pd.Timestamp(first_test_date)))
    if first >= len(index):
        raise ValueError(f"no dates on or after {first_test_date}")
    splits = []
    for test_start in range(first, len(index), refit_every):
        train_end = test_start - gap + 1
        train_start = 0 if window == "expanding" else max(0, train_end - rolling_days)
        if train_end <= train_start:
            raise ValueError(f"no training rows before {index[test_start].date()}")
        splits.append(Split(train_start, train_end, test_start, min(test_start + refit_every, len(index))))
    return splits


def walk_forward(df: pd.DataFrame, kind: str, *, first_test_date: Any, refit_every: int = 21, gap: int = 1,
                 window: Window = "expanding", rolling_days: int | None = None, leak_shift: int = 0,
                 params: dict[str, Any] | None = None, progress: Progress | None = None) -> pd.DataFrame:
    """Out-of-sample predictions for every usable day from first_test_date on.

    Columns: prob_up, expected_return, action, realised_return (next-day return), direction.
    `leak_shift=k` deliberately builds each row's features from bars k days in the future; it
    exists only to prove the evaluation catches look-ahead and must stay 0 for real use.
    """
    features = build_features(df)
    if leak_shift:
        features = features.shift(-leak_shift)
    rows = features.join(build_targets(df)).dropna()
    splits = walk_forward_splits(rows.index, first_test_date=first_test_date, refit_every=refit_every,
                                 gap=gap, window=window, rolling_days=rolling_days)
    X = rows[list(FEATURE_NAMES)]
    prob_up = np.empty(len(rows))
    expected = np.empty(len(rows))
    for done, split in enumerate(splits, start=1):
        train = rows.iloc[split.train]
        model = make_model(kind, **(params or {})).fit(X.iloc[split.train], train["direction"],
                                                        train["next_return"])
        prob_up[split.test], expected[split.test] = model.predict(X.iloc[split.test])
        if progress:
            progress(done, len(splits))

    first = splits[0].test_start
    oos = pd.DataFrame({
        "prob_up": prob_up[first:],
        "expected_return": expected[first:],
        "action": [action_for(p) for p in prob_up[first:]],
        "realised_return": rows["next_return"].to_numpy()[first:],
        "direction": rows["direction"].to_numpy(dtype=int)[first:],
    }, index=rows.index[first:])
    oos.index.name = "date"
    return oos


def strategy_returns(position: pd.Series, realised: pd.Series, cost_bps: float = 10) -> pd.Series:
    """Daily net returns of holding `position` (0..1) from each close to the next.

    Every change of position (including the first entry from flat) pays cost_bps per side.
    """
    position = position.astype(float)
    trades = position.diff().abs()
    trades.iloc[:1] = position.iloc[:1].abs()
    return position * realised - trades * cost_bps / 1e4


def strategy_metrics(position: pd.Series, realised: pd.Series, cost_bps: float = 10) -> dict[str, float]:
    """Annualised return and Sharpe (252 days, rf=0), max drawdown (<= 0), turnover per year."""
    net = strategy_returns(position, realised, cost_bps)
    days = len(net)
    equity = np.concatenate([[1.0], (1 + net).cumprod().to_numpy()])
    std = net.std(ddof=1)
    trades = position.astype(float).diff().abs().fillna(abs(float(position.iloc[0])))
    return {
        "annual_return": equity[-1] ** (TRADING_DAYS / days) - 1,
        "total_return": equity[-1] - 1,
        "sharpe": net.mean() / std * math.sqrt(TRADING_DAYS) if std > 0 else math.nan,
        "max_drawdown": float((equity / np.maximum.accumulate(equity) - 1).min()),
        "turnover": trades.sum() / days * TRADING_DAYS,
        "exposure": float(position.mean()),
        "days": days,
    }


def monthly_ic(expected: pd.Series, realised: pd.Series) -> pd.Series:
    """Spearman rank correlation of predicted vs realised return within each calendar month."""
    pairs = pd.DataFrame({"x": expected, "y": realised})
    ics = {}
    for month, group in pairs.groupby(pairs.index.to_period("M")):
        if len(group) >= MIN_IC_DAYS and group["x"].nunique() > 1 and group["y"].nunique() > 1:
            ics[month] = group["x"].rank().corr(group["y"].rank())
    return pd.Series(ics, dtype=float)


def _directional(pred_up: pd.Series, direction: pd.Series) -> dict[str, float]:
    pred, truth = pred_up.astype(int).to_numpy(), direction.astype(int).to_numpy()
    recalls = [(pred[truth == c] == c).mean() for c in (0, 1) if (truth == c).any()]
    return {"accuracy": float((pred == truth).mean()), "balanced_accuracy": float(np.mean(recalls))}


def metrics(oos: pd.DataFrame, *, cost_bps: float = 10) -> dict[str, Any]:
    """Directional, probabilistic, ranking (monthly IC) and after-cost strategy metrics of oos rows."""
    pred_up = oos["action"] == "buy"
    direction = oos["direction"].astype(int)
    prob = oos["prob_up"].to_numpy(dtype=float)
    ic = monthly_ic(oos["expected_return"], oos["realised_return"])
    ic_std = ic.std(ddof=1)
    out: dict[str, Any] = dict.fromkeys(METRIC_KEYS)
    out.update(_directional(pred_up, direction))
    out.update({
        "brier": float(np.mean((prob - direction.to_numpy()) ** 2)),
        "log_loss": float(log_loss(direction, prob, labels=[0, 1])),
        "ic_mean": float(ic.mean()) if len(ic) else math.nan,
        "ic_ir": float(ic.mean() / ic_std) if len(ic) > 1 and ic_std > 0 else math.nan,
        "ic_months": len(ic),
    })
    out.update(strategy_metrics(pred_up.astype(float), oos["realised_return"], cost_bps))
    return out


def baselines(df: pd.DataFrame, oos_index: pd.Index, cost_bps: float = 10) -> dict[str, dict[str, Any]]:
    """Naive rules on the same out-of-sample days, with the same metric keys (None where undefined).

    buy_and_hold: always long. always_up: predict up every day (trades as buy and hold).
    yesterday: predict the direction of the return that ended at t. sma_20_50: long when the
    20-day average close is above the 50-day one at t.
    """
    close = df["close"]
    targets = build_targets(df).reindex(oos_index)
    realised, direction = targets["next_return"], targets["direction"]
    signals = {
        "always_up": pd.Series(True, index=oos_index),
        "yesterday": (close.pct_change() > 0).reindex(oos_index, fill_value=False),
        "sma_20_50": (close.rolling(20).mean() > close.rolling(50).mean()).reindex(oos_index,
                                                                                   fill_value=False),
    }
    out = {}
    for name in BASELINES:
        row: dict[str, Any] = dict.fromkeys(METRIC_KEYS)
        if name == "buy_and_hold":
            row.update(strategy_metrics(pd.Series(1.0, index=oos_index), realised, cost_bps))
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


def evaluate_with_frames(df: pd.DataFrame, *, symbol: str, kinds: Sequence[str] = MODEL_KINDS,
                         first_test_date: Any = "2009-02-09", refit_every: int = 21, gap: int = 1,
                         window: Window = "expanding", cost_bps: float = 10,
                         progress: Progress | None = None) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """Like `evaluate`, also returning each model's out-of-sample frame (for `plot_report`)."""
    frames: dict[str, pd.DataFrame] = {}
    for i, kind in enumerate(kinds):
        step = None
        if progress:
            def step(done: int, total: int, i: int = i) -> None:
                progress(i * total + done, len(kinds) * total)
        frames[kind] = walk_forward(df, kind, first_test_date=first_test_date, refit_every=refit_every,
                                    gap=gap, window=window, progress=step)
    oos_index = next(iter(frames.values())).index
    if any(not f.index.equals(oos_index) for f in frames.values()):
        raise RuntimeError("models were evaluated on different days")

    models = {kind: metrics(frame, cost_bps=cost_bps) for kind, frame in frames.items()}
    base = baselines(df, oos_index, cost_bps=cost_bps)
    bh_sharpe = base["buy_and_hold"]["sharpe"]
    edge = {kind: bool(np.isfinite(m["sharpe"]) and np.isfinite(bh_sharpe) and m["sharpe"] > bh_sharpe)
            for kind, m in models.items()}
    usable = build_features(df).join(build_targets(df)).dropna().index
    report = {
        "symbol": symbol,
        "out_of_sample": {"start": oos_index[0].date().isoformat(),
                          "end": oos_index[-1].date().isoformat(), "days": len(oos_index)},
        "protocol": {
            "target": "next-day close-to-close direction and return",
            "validation": f"walk-forward, {window} window, refit every {refit_every} trading days, "
                          f"last training row {gap} day(s) before each fold",
            "first_test_date": pd.Timestamp(first_test_date).date().isoformat(),
            "train_start": usable[0].date().isoformat(),
            "window": window, "refit_every": refit_every, "gap": gap,
            "folds": math.ceil(len(oos_index) / refit_every),
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


def evaluate(df: pd.DataFrame, *, symbol: str, kinds: Sequence[str] = MODEL_KINDS,
             first_test_date: Any = "2009-02-09", refit_every: int = 21, cost_bps: float = 10,
             progress: Progress | None = None) -> dict[str, Any]:
    """JSON-serialisable report: out-of-sample period, protocol, per-model metrics, baselines, edge.

    `report["edge"][kind]` is True only when the model's after-cost Sharpe beats buy and hold's on
    the same out-of-sample days.
    """
    report, _ = evaluate_with_frames(df, symbol=symbol, kinds=kinds, first_test_date=first_test_date,
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


def plot_report(report: dict[str, Any], oos_frames: dict[str, pd.DataFrame], path: str | Path) -> Path:
    """PNG with after-cost equity curves (models vs buy and hold) and rolling 63-day accuracy."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    cost = report["protocol"]["cost_bps"]
    fig = Figure(figsize=(11, 8), layout="constrained")
    equity_ax, acc_ax = fig.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    first = next(iter(oos_frames.values()))
    realised = first["realised_return"]
    hold = (1 + strategy_returns(pd.Series(1.0, index=first.index), realised, cost)).cumprod()
    equity_ax.plot(hold.index, hold.to_numpy(), color="black", lw=1.2, label="buy and hold")
    up_rate = (first["direction"] == 1).astype(float).rolling(63).mean()
    acc_ax.plot(up_rate.index, up_rate.to_numpy(), color="black", lw=1, label="always up")
    for kind, oos in oos_frames.items():
        position = (oos["action"] == "buy").astype(float)
        curve = (1 + strategy_returns(position, oos["realised_return"], cost)).cumprod()
        sharpe = report["models"][kind]["sharpe"]
        equity_ax.plot(curve.index, curve.to_numpy(), lw=1, label=f"{kind} (Sharpe {_fmt(sharpe, '.2f')})")
        hits = ((oos["action"] == "buy") == (oos["direction"] == 1)).astype(float).rolling(63).mean()
        acc_ax.plot(hits.index, hits.to_numpy(), lw=1, label=kind)
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
