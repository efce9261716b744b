"""Turn daily OHLCV bars into model inputs (features) and next-day labels (targets).

Every feature on row t is computed from bars dated on or before t: only backward-looking rolling
windows, recursive moving averages and past shifts are used, so appending or changing later bars
never changes an earlier row. Targets are the only forward-looking columns and live apart, in
`build_targets`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from stockpred.prices import Bar

OHLCV = ("open", "high", "low", "close", "volume")

RETURN_WINDOWS = (1, 2, 5, 10, 20)
SMA_WINDOWS = (10, 20, 50)

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


def frame_from_bars(bars: Iterable[Bar]) -> pd.DataFrame:
    """OHLCV frame (float columns) indexed by a sorted DatetimeIndex named "date"."""
    rows = [(b.date, b.open, b.high, b.low, b.close, b.volume) for b in bars]
    df = pd.DataFrame(rows, columns=["date", *OHLCV])
    df["date"] = pd.to_datetime(df["date"])
    df = df.set_index("date").sort_index().astype(float)
    if df.index.has_duplicates:
        raise ValueError("bars contain duplicate dates")
    return df


def _ema(x: pd.Series, span: int) -> pd.Series:
    return x.ewm(span=span, adjust=False, min_periods=span).mean()


def _rsi(close: pd.Series, n: int = 14) -> pd.Series:
    """Wilder's RSI scaled to [0, 1]."""
    change = close.diff()
    gain = change.clip(lower=0).ewm(alpha=1 / n, adjust=False, min_periods=n).mean()
    loss = (-change).clip(lower=0).ewm(alpha=1 / n, adjust=False, min_periods=n).mean()
    return gain / (gain + loss)


def build_features(df: pd.DataFrame) -> pd.DataFrame:
    """Feature frame with columns FEATURE_NAMES; row t uses only bars up to and including t.

    Rows without enough history are NaN (the longest window is 50 trading days).
    """
    close, high, low = df["close"], df["high"], df["low"]
    log_close = np.log(close)
    log_ret = log_close.diff()
    f = pd.DataFrame(index=df.index)

    for n in RETURN_WINDOWS:
        f[f"ret_{n}"] = log_close.diff(n)
    f["vol_5"] = log_ret.rolling(5).std()
    f["vol_20"] = log_ret.rolling(20).std()
    f["rsi_14"] = _rsi(close, 14)

    macd = _ema(close, 12) - _ema(close, 26)
    signal = macd.ewm(span=9, adjust=False, min_periods=9).mean()
    f["macd"] = macd / close
    f["macd_signal"] = signal / close
    f["macd_hist"] = (macd - signal) / close

    for n in SMA_WINDOWS:
        f[f"close_sma_{n}"] = close / close.rolling(n).mean() - 1

    # Zero volume is a data gap, not a real print: carry the last reported volume forward.
    log_volume = np.log(df["volume"].where(df["volume"] > 0).ffill())
    # A series without volume (many index CSVs) or with a constant one carries no volume signal: 0.
    std = log_volume.rolling(20).std()
    f["volume_z_20"] = ((log_volume - log_volume.rolling(20).mean()) / std.where(std > 0)).fillna(0.0)

    f["range_hl"] = (high - low) / close

    f = f.replace([np.inf, -np.inf], np.nan)
    return f[list(FEATURE_NAMES)]


def build_targets(df: pd.DataFrame) -> pd.DataFrame:
    """Next-day labels: `next_return` = close[t+1]/close[t] - 1 and `direction` (1 up, 0 not up).

    Both are NaN on the last row, whose next close is not known yet.
    """
    next_return = df["close"].shift(-1) / df["close"] - 1
    direction = (next_return > 0).astype(float).where(next_return.notna())
    return pd.DataFrame({"next_return": next_return, "direction": direction}, index=df.index)
