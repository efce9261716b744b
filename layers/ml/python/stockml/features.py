"""Turn daily OHLCV bars into model inputs (features) and next-day labels (targets), with numpy only.

This one module serves both training and the predict function, so a model always sees the same
features it was fitted on. Every feature on row t is computed from bars dated on or before t:
only backward-looking rolling windows, recursive moving averages and past differences are used,
so appending or changing later bars never changes an earlier row. Targets are the only
forward-looking values and live apart, in `build_targets`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, NamedTuple, Self

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

if TYPE_CHECKING:
    from stockpred.market.prices import Bar

OHLCV = ("open", "high", "low", "close", "volume")

RETURN_WINDOWS = (1, 2, 5, 10, 20)
SMA_WINDOWS = (10, 20, 50)
# Rows before the first one with every feature: the longest window (the 50-day average) less one.
WARMUP_ROWS = max(SMA_WINDOWS) - 1

FEATURE_NAMES: tuple[str, ...] = (
    *(f"ret_{n}" for n in RETURN_WINDOWS),
    "vol_5",
    "vol_20",
    "rsi_14",
    "macd",
    "macd_signal",
    "macd_hist",
    *(f"close_sma_{n}" for n in SMA_WINDOWS),
    "volume_z_20",
    "range_hl",
)

Day = str | dt.date | np.datetime64


def as_day(value: Any) -> np.datetime64:
    """A calendar day as numpy datetime64[D] (from a date, ISO string, datetime or datetime64)."""
    return np.datetime64(value, "D")


class DatedRows:
    """Base of dataclasses of parallel arrays, one row per day, `dates` strictly increasing."""

    dates: np.ndarray

    def __len__(self) -> int:
        return len(self.dates)

    def __getitem__(self, rows: slice | np.ndarray) -> Self:
        """The rows at `rows` (a slice, a boolean mask or positions), as a new object."""
        return type(self)(*(getattr(self, f.name)[rows] for f in fields(self)))

    def between(self, first: Day | None = None, last: Day | None = None) -> Self:
        """Rows dated from `first` through `last`, both included (either end open when None)."""
        lo = 0 if first is None else int(np.searchsorted(self.dates, as_day(first), side="left"))
        hi = len(self) if last is None else int(np.searchsorted(self.dates, as_day(last), side="right"))
        return self[lo:hi]


@dataclass(frozen=True, eq=False)
class Frame(DatedRows):
    """Daily bars: `dates` (datetime64[D]) and float64 open, high, low, close, volume."""

    dates: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray


_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()


def frame_from_bars(bars: Iterable[Bar]) -> Frame:
    """A Frame of the bars sorted by date; ValueError if two bars share a date."""
    bars = list(bars)
    days = np.array([b.date.toordinal() for b in bars], dtype=np.int64) - _EPOCH_ORDINAL
    order = np.argsort(days, kind="stable")
    days = days[order]
    if (np.diff(days) == 0).any():
        raise ValueError("bars contain duplicate dates")
    columns = (np.array([getattr(b, name) for b in bars], dtype=np.float64)[order] for name in OHLCV)
    return Frame(days.astype("datetime64[D]"), *columns)


def _diff(x: np.ndarray, n: int = 1) -> np.ndarray:
    out = np.full_like(x, np.nan)
    out[n:] = x[n:] - x[:-n]
    return out


def _flat_run(x: np.ndarray) -> np.ndarray:
    """How many values before t equal x[t] without a break (0 where x[t] differs from x[t-1])."""
    positions = np.arange(len(x))
    changed = np.ones(len(x), dtype=bool)
    changed[1:] = x[1:] != x[:-1]
    return positions - np.maximum.accumulate(np.where(changed, positions, 0))


def _windows(x: np.ndarray, n: int) -> np.ndarray:
    return sliding_window_view(x, n) if len(x) >= n else np.empty((0, n))


def rolling_mean(x: np.ndarray, n: int) -> np.ndarray:
    """Mean of the n values ending at each t (NaN for the first n-1 rows and windows holding a NaN)."""
    out = np.full_like(x, np.nan)
    w = _windows(x, n)
    flat = _flat_run(x)[n - 1:] >= n - 1
    out[n - 1:] = np.where(flat, x[n - 1:], w.mean(axis=1))
    return out


def _rolling_std(x: np.ndarray, n: int) -> np.ndarray:
    """Sample standard deviation (ddof=1) of each window of n values ending at t; exactly 0 if flat."""
    out = np.full_like(x, np.nan)
    dev = _windows(x, n) - rolling_mean(x, n)[n - 1:, None]
    flat = _flat_run(x)[n - 1:] >= n - 1
    out[n - 1:] = np.where(flat, 0.0, np.sqrt(np.einsum("ij,ij->i", dev, dev) / (n - 1)))
    return out


def _ewm_mean(x: np.ndarray, *, com: float, min_periods: int) -> np.ndarray:
    """Recursive (adjust=False) exponential mean, NaN-aware and step for step like pandas'
    `ewm(com=..., adjust=False, min_periods=...).mean()`.

    Leading NaNs are skipped; a NaN inside the series keeps the mean and lets the weight of the
    past decay, and the value is NaN until `min_periods` values have been observed.
    """
    alpha = 1.0 / (1.0 + com)
    decay = 1.0 - alpha
    observed = ~np.isnan(x)
    out = np.full(len(x), np.nan)
    if not observed.any():
        return out
    start = int(observed.argmax())
    values = x[start:].tolist()
    weighted = values[0]
    means = [weighted]
    if observed[start:].all():
        denominator = decay + alpha
        for cur in values[1:]:
            if weighted != cur:
                weighted = (decay * weighted + alpha * cur) / denominator
            means.append(weighted)
    else:
        old_wt = 1.0
        for cur in values[1:]:
            old_wt *= decay
            if cur == cur:
                if weighted != cur:
                    weighted = (old_wt * weighted + alpha * cur) / (old_wt + alpha)
                old_wt = 1.0
            means.append(weighted)
    out[start:] = means
    out[np.cumsum(observed) < min_periods] = np.nan
    return out


def _ema(x: np.ndarray, span: int) -> np.ndarray:
    return _ewm_mean(x, com=(span - 1) / 2, min_periods=span)


def _rsi(close: np.ndarray, n: int = 14) -> np.ndarray:
    """Wilder's RSI scaled to [0, 1]."""
    change = _diff(close)
    com = (1 - 1 / n) / (1 / n)
    gain = _ewm_mean(np.where(change < 0, 0.0, change), com=com, min_periods=n)
    loss = _ewm_mean(np.where(change > 0, 0.0, -change), com=com, min_periods=n)
    return gain / (gain + loss)


def _forward_fill(x: np.ndarray) -> np.ndarray:
    last_valid = np.maximum.accumulate(np.where(np.isnan(x), 0, np.arange(len(x))))
    return x[last_valid]


def build_features(frame: Frame) -> np.ndarray:
    """Array (len(frame), len(FEATURE_NAMES)), columns in FEATURE_NAMES order; row t uses bars <= t.

    Rows without enough history are NaN (the longest window is 50 trading days).
    """
    close, high, low, volume = frame.close, frame.high, frame.low, frame.volume
    out = np.empty((len(frame), len(FEATURE_NAMES)))
    col = {name: i for i, name in enumerate(FEATURE_NAMES)}
    with np.errstate(divide="ignore", invalid="ignore"):
        log_close = np.log(close)
        log_ret = _diff(log_close)
        for n in RETURN_WINDOWS:
            out[:, col[f"ret_{n}"]] = _diff(log_close, n)
        out[:, col["vol_5"]] = _rolling_std(log_ret, 5)
        out[:, col["vol_20"]] = _rolling_std(log_ret, 20)
        out[:, col["rsi_14"]] = _rsi(close, 14)

        macd = _ema(close, 12) - _ema(close, 26)
        signal = _ewm_mean(macd, com=(9 - 1) / 2, min_periods=9)
        out[:, col["macd"]] = macd / close
        out[:, col["macd_signal"]] = signal / close
        out[:, col["macd_hist"]] = (macd - signal) / close

        for n in SMA_WINDOWS:
            out[:, col[f"close_sma_{n}"]] = close / rolling_mean(close, n) - 1

        # Zero volume is a data gap, not a real print: carry the last reported volume forward.
        log_volume = np.log(_forward_fill(np.where(volume > 0, volume, np.nan)))
        # A series without volume (many index CSVs) or with a constant one carries no volume signal: 0.
        std = _rolling_std(log_volume, 20)
        z = (log_volume - rolling_mean(log_volume, 20)) / np.where(std > 0, std, np.nan)
        out[:, col["volume_z_20"]] = np.where(np.isnan(z), 0.0, z)

        out[:, col["range_hl"]] = (high - low) / close
    out[np.isinf(out)] = np.nan
    return out


class Targets(NamedTuple):
    """Next-day labels, NaN on the last row (whose next close is not known yet)."""

    next_return: np.ndarray
    direction: np.ndarray


def build_targets(frame: Frame) -> Targets:
    """`next_return` = close[t+1]/close[t] - 1 and `direction` (1.0 up, 0.0 not up)."""
    close = frame.close
    next_return = np.full(len(close), np.nan)
    next_return[:-1] = close[1:] / close[:-1] - 1
    direction = np.where(np.isnan(next_return), np.nan, (next_return > 0).astype(float))
    return Targets(next_return, direction)


def usable_rows(features: np.ndarray, targets: Targets) -> np.ndarray:
    """Boolean mask of rows whose features and next-day outcome are all known."""
    return ~np.isnan(features).any(axis=1) & ~np.isnan(targets.next_return)
