"""Volatility forecasts from fitted parameters, with numpy only (serving and training share it).

Returns are daily log returns in percent (`percent_returns`). A forecast made at the close of day
t uses returns up to and including t and predicts the variance of the next day's return, or the
average daily variance over the next h days. Four kinds:

- `naive`: the mean squared return of the last 21 days, for every horizon;
- `garch`: GARCH(1,1) with zero mean, sigma2[t+1] = omega + alpha r[t]^2 + beta sigma2[t];
- `gjr`: GJR-GARCH(1,1,1), adding gamma r[t]^2 on down days;
- `har`: a HAR regression (Corsi 2009) of the next h days' mean squared return on the last day's,
  week's and month's, one regression per horizon.

Fitting (`stockml.volatility_fit`) needs scipy and runs in training only; a fitted
`VolatilityModel` is plain floats, stored in a model's metadata and replayed here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

TRADING_DAYS = 252
NAIVE_DAYS = 21
HAR_WINDOWS = (1, 5, 22)
HORIZONS = (1, 5, 21)
VOLATILITY_KINDS: tuple[str, ...] = ("naive", "garch", "gjr", "har")
BACKCAST_DAYS = 75
# Floor of a HAR forecast, as a fraction of the naive one: a linear regression can go negative.
HAR_FLOOR = 0.1


def percent_returns(close: np.ndarray) -> np.ndarray:
    """100 * log(close[t] / close[t-1]); NaN on the first row."""
    close = np.asarray(close, dtype=float)
    out = np.full(len(close), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        out[1:] = 100 * np.log(close[1:] / close[:-1])
    return out


def annualised(variance: np.ndarray | float) -> np.ndarray | float:
    """Daily variance of percent returns as an annualised volatility fraction (0.16 = 16%)."""
    return np.sqrt(np.asarray(variance) * TRADING_DAYS) / 100


def backcast(returns: np.ndarray) -> float:
    """Starting variance of the GARCH recursion: an exponentially weighted mean of the first
    squared returns (weights 0.94^i over up to 75 days)."""
    head = np.asarray(returns[:BACKCAST_DAYS], dtype=float) ** 2
    weights = 0.94 ** np.arange(len(head))
    return float(np.dot(weights, head) / weights.sum())


def rolling_mean_square(returns: np.ndarray, days: int) -> np.ndarray:
    """Mean of returns^2 over the `days` days ending at each t; NaN until `days` are known."""
    sq = np.asarray(returns, dtype=float) ** 2
    out = np.full(len(sq), np.nan)
    if len(sq) >= days:
        csum = np.concatenate([[0.0], np.cumsum(sq)])
        out[days - 1:] = (csum[days:] - csum[:-days]) / days
    return out


def har_regressors(returns: np.ndarray) -> np.ndarray:
    """(len, 4) array: 1 and the mean squared return of the last 1, 5 and 22 days at each t."""
    columns = [np.ones(len(returns))] + [rolling_mean_square(returns, n) for n in HAR_WINDOWS]
    return np.column_stack(columns)


def future_mean_square(returns: np.ndarray, horizon: int) -> np.ndarray:
    """Realised target of a forecast made at t: mean of returns^2 over t+1..t+horizon (NaN where
    not yet known)."""
    sq = np.asarray(returns, dtype=float) ** 2
    out = np.full(len(sq), np.nan)
    if len(sq) > horizon:
        csum = np.concatenate([[0.0], np.cumsum(np.nan_to_num(sq))])
        gaps = np.concatenate([[0], np.cumsum(np.isnan(sq))])
        t = np.arange(len(sq) - horizon)
        window = (csum[t + 1 + horizon] - csum[t + 1]) / horizon
        out[: len(t)] = np.where(gaps[t + 1 + horizon] > gaps[t + 1], np.nan, window)
    return out


def garch_variance(returns: np.ndarray, omega: float, alpha: float, gamma: float, beta: float,
                   start: float) -> np.ndarray:
    """Conditional variances s with s[0] = start and s[t+1] = omega + (alpha + gamma [r[t] < 0])
    r[t]^2 + beta s[t]: s[t] is the variance of r[t] known at t-1, so len(s) = len(returns) + 1
    and s[-1] is the forecast for the day after the last return."""
    r = np.asarray(returns, dtype=float)
    shock = (alpha + gamma * (r < 0)) * r * r + omega
    out = np.empty(len(r) + 1)
    out[0] = s = start
    for t, x in enumerate(shock.tolist(), start=1):
        s = x + beta * s
        out[t] = s
    return out


@dataclass
class VolatilityModel:
    """A fitted volatility model: its kind and parameters (plain floats, JSON-safe)."""

    kind: str
    params: dict[str, Any] = field(default_factory=dict)

    def forecasts(self, returns: np.ndarray, horizon: int = 1) -> np.ndarray:
        """Forecast made at each t of the mean daily variance over t+1..t+horizon, from returns up
        to t only (NaN where not enough history). `returns[0]` may be NaN (the first day)."""
        r = np.asarray(returns, dtype=float)
        out = np.full(len(r), np.nan)
        first = int(np.argmax(~np.isnan(r))) if (~np.isnan(r)).any() else len(r)
        clean = r[first:]
        if len(clean) == 0:
            return out
        if self.kind == "naive":
            out[first:] = rolling_mean_square(clean, NAIVE_DAYS)
        elif self.kind in ("garch", "gjr"):
            p = self.params
            s = garch_variance(clean, p["omega"], p["alpha"], p.get("gamma", 0.0), p["beta"],
                               p.get("backcast", backcast(clean)))[1:]
            out[first:] = self._garch_mean_ahead(s, horizon)
        elif self.kind == "har":
            coef = np.asarray(self.params["coef"][str(horizon)], dtype=float)
            fitted = har_regressors(clean) @ coef
            floor = HAR_FLOOR * rolling_mean_square(clean, NAIVE_DAYS)
            out[first:] = np.maximum(fitted, floor)
        else:
            raise ValueError(f"unknown volatility kind {self.kind!r}")
        return out

    def _garch_mean_ahead(self, next_day: np.ndarray, horizon: int) -> np.ndarray:
        """Mean of E[sigma2] over the next `horizon` days, given the next day's variance."""
        p = self.params
        persistence = p["alpha"] + p.get("gamma", 0.0) / 2 + p["beta"]
        if horizon == 1 or persistence >= 1:
            return next_day
        long_run = p["omega"] / (1 - persistence)
        decay = (1 - persistence ** horizon) / ((1 - persistence) * horizon)
        return long_run + (next_day - long_run) * decay

    def forecast_next(self, close: np.ndarray) -> dict[str, float]:
        """Annualised volatility forecasts made after the last close: the next day and the mean
        of the next 21 days (for the predict function)."""
        returns = percent_returns(close)
        out = {}
        for label, horizon in (("next_day", 1), ("next_21_days", 21)):
            value = self.forecasts(returns, horizon)[-1]
            out[label] = float(annualised(value)) if math.isfinite(value) else math.nan
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "params": self.params}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VolatilityModel:
        return cls(data["kind"], dict(data.get("params", {})))


def qlike(forecast: np.ndarray, realised: np.ndarray) -> np.ndarray:
    """Patton's (2011) QLIKE loss per day, log f + y / f: robust to a noisy variance proxy, and
    defined when the realised squared return is 0. Lower is better."""
    f = np.asarray(forecast, dtype=float)
    return np.log(f) + np.asarray(realised, dtype=float) / f


def squared_error(forecast: np.ndarray, realised: np.ndarray) -> np.ndarray:
    """(realised - forecast)^2 per day."""
    return (np.asarray(realised, dtype=float) - np.asarray(forecast, dtype=float)) ** 2
