"""Position sizing: how much of one's capital to hold, from a volatility forecast and a signal.

Volatility targeting (Moreira and Muir 2017): exposure = target volatility / forecast volatility,
capped at `max_exposure` (1.0 unless leverage is configured) and never below 0. The target is a
multiple of the symbol's own realised volatility so far, so on average the exposure stays near
full. Optionally scaled by the direction model's conviction: multiplier max(0, 1 + strength *
(2 p_up - 1)), 1 at p_up = 0.5. Every rule here is a causal function of data up to the day it
sizes; which rule (multiple, horizon, strength) is chosen on past days only, in
stockml.sizing_selection. numpy only: the predict function sizes with it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from stockml.volatility import TRADING_DAYS, VolatilityModel, annualised, percent_returns

DEFAULT_MAX_EXPOSURE = 1.0
TARGET_MULTIPLES = (0.75, 1.0, 1.25)
SIZING_HORIZONS = (1, 21)
CONVICTION_STRENGTHS = (0.0, 4.0, 8.0)


@dataclass(frozen=True)
class SizingRule:
    """Target = target_multiple x realised volatility so far; forecasts over `horizon` days;
    conviction scaling of `conviction_strength` (0: plain volatility targeting)."""

    target_multiple: float = 1.0
    horizon: int = 21
    conviction_strength: float = 0.0
    max_exposure: float = DEFAULT_MAX_EXPOSURE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def realised_volatility_so_far(returns: np.ndarray) -> np.ndarray:
    """Annualised volatility of all percent returns up to each t (expanding, zero mean)."""
    sq = np.where(np.isnan(returns), 0.0, np.asarray(returns, dtype=float) ** 2)
    count = np.cumsum(~np.isnan(returns))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(count > 0, np.sqrt(np.cumsum(sq) / count * TRADING_DAYS) / 100, np.nan)


def conviction_multiplier(prob_up: np.ndarray | float, strength: float) -> np.ndarray:
    """max(0, 1 + strength (2 p - 1)): below 1 when the model leans down, above when up."""
    return np.maximum(0.0, 1 + strength * (2 * np.asarray(prob_up, dtype=float) - 1))


def exposure(forecast_variance: np.ndarray, target_volatility: np.ndarray, rule: SizingRule,
             prob_up: np.ndarray | float | None = None) -> np.ndarray:
    """Fraction of capital to hold at each t, in [0, max_exposure] (NaN forecasts give 0)."""
    vol = np.asarray(annualised(forecast_variance), dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = np.asarray(target_volatility, dtype=float) / vol
    if prob_up is not None and rule.conviction_strength:
        raw = raw * conviction_multiplier(prob_up, rule.conviction_strength)
    return np.clip(np.nan_to_num(raw, nan=0.0, posinf=rule.max_exposure), 0.0, rule.max_exposure)


def recommend(close: np.ndarray, volatility: dict[str, Any], sizing: dict[str, Any],
              prob_up: float | None = None) -> dict[str, Any]:
    """What a prediction says about risk, after the last close: annualised volatility forecasts
    (next day, next 21 days) and the recommended exposure, from a model's stored metadata
    (`volatility`: a VolatilityModel as a dict, `sizing`: a SizingRule as a dict)."""
    model = VolatilityModel.from_dict(volatility)
    rule = SizingRule(**sizing)
    returns = percent_returns(close)
    forecast = model.forecasts(returns, rule.horizon)[-1:]
    target = realised_volatility_so_far(returns)[-1:] * rule.target_multiple
    size = float(exposure(forecast, target, rule, prob_up)[0])
    vols = model.forecast_next(close)
    return {
        "volatility": {**{k: _finite(v) for k, v in vols.items()}, "model": model.kind},
        "exposure": round(size, 4),
        "target_volatility": _finite(float(target[0])),
        "max_exposure": rule.max_exposure,
    }


def _finite(value: float) -> float | None:
    return round(value, 4) if math.isfinite(value) else None
