"""Fitting and judging volatility models (training side: scipy).

GARCH(1,1) and GJR-GARCH(1,1,1) by Gaussian quasi-maximum likelihood (zero mean, percent returns,
the same backcast as `arch`; a unit test checks the estimates against `arch`'s own), HAR by least
squares. `walk_forward_volatility` refits every kind on the bars before each fold and forecasts
each day of the fold from returns up to that day; `diebold_mariano` compares two forecasts' losses.
`arch` itself is not used here: it needs pandas and statsmodels, which would take the retrain
function over Lambda's 250 MiB.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy.optimize import minimize
from scipy.signal import lfilter

from stockml.volatility import (
    HORIZONS,
    VOLATILITY_KINDS,
    VolatilityModel,
    backcast,
    future_mean_square,
    har_regressors,
)

Progress = Callable[[int, int], None]


def _garch_nll(theta: np.ndarray, r2: np.ndarray, down: np.ndarray, start: float,
               asymmetric: bool) -> float:
    omega, alpha, beta = theta[0], theta[1], theta[-1]
    gamma = theta[2] if asymmetric else 0.0
    if omega <= 0 or alpha < 0 or beta < 0 or alpha + gamma < 0 or alpha + gamma / 2 + beta >= 1:
        return 1e12
    shock = omega + (alpha + gamma * down[:-1]) * r2[:-1]
    tail = lfilter([1.0], [1.0, -beta], shock, zi=[beta * start])[0]
    variance = np.concatenate([[start], tail])
    return 0.5 * float(np.sum(np.log(variance) + r2 / variance))


def fit_garch(returns: np.ndarray, asymmetric: bool = False) -> VolatilityModel:
    """GARCH(1,1) (or GJR with `asymmetric`) fitted by quasi-maximum likelihood on `returns`."""
    r = np.asarray(returns, dtype=float)
    r = r[~np.isnan(r)]
    r2, down = r * r, (r < 0).astype(float)
    start = backcast(r)
    var = float(r2.mean())
    alpha, gamma, beta = (0.03, 0.09, 0.88) if asymmetric else (0.08, 0.0, 0.9)
    theta0 = np.array([var * (1 - alpha - gamma / 2 - beta), alpha, *([gamma] if asymmetric else []), beta])
    bounds = [(1e-6 * var, 2 * var), (0.0, 1.0), *([(-1.0, 2.0)] if asymmetric else []), (0.0, 1.0)]
    persistence_left = {"type": "ineq",
                        "fun": lambda t: 1 - 1e-6 - t[1] - (t[2] / 2 if asymmetric else 0) - t[-1]}
    positive_down = {"type": "ineq", "fun": lambda t: t[1] + t[2]} if asymmetric else None
    result = minimize(_garch_nll, theta0, args=(r2, down, start, asymmetric), method="SLSQP", bounds=bounds,
                    constraints=[c for c in (persistence_left, positive_down) if c],
                    options={"ftol": 1e-9, "maxiter": 500})
    theta = result.x
    params = {"omega": float(theta[0]), "alpha": float(theta[1]),
              "gamma": float(theta[2]) if asymmetric else 0.0, "beta": float(theta[-1]),
              "loglik": float(-result.fun - 0.5 * len(r) * math.log(2 * math.pi))}
    return VolatilityModel("gjr" if asymmetric else "garch", params)


def fit_har(returns: np.ndarray, horizons: Sequence[int] = HORIZONS) -> VolatilityModel:
    """HAR regressions, one per horizon, on rows whose whole target lies inside `returns`."""
    r = np.asarray(returns, dtype=float)
    r = r[~np.isnan(r)]
    X = har_regressors(r)
    coef = {}
    for h in horizons:
        y = future_mean_square(r, h)
        ok = ~np.isnan(X).any(axis=1) & ~np.isnan(y)
        coef[str(h)] = [float(c) for c in np.linalg.lstsq(X[ok], y[ok], rcond=None)[0]]
    return VolatilityModel("har", {"coef": coef})


def fit_volatility(kind: str, returns: np.ndarray) -> VolatilityModel:
    """A fitted VolatilityModel of `kind` (see VOLATILITY_KINDS) from returns known so far."""
    if kind == "naive":
        return VolatilityModel("naive")
    if kind in ("garch", "gjr"):
        return fit_garch(returns, asymmetric=kind == "gjr")
    if kind == "har":
        return fit_har(returns)
    raise ValueError(f"unknown volatility kind {kind!r}; expected one of {VOLATILITY_KINDS}")


def walk_forward_volatility(returns: np.ndarray, fold_starts: Sequence[int], *,
                            kinds: Sequence[str] = VOLATILITY_KINDS, horizons: Sequence[int] = HORIZONS,
                            progress: Progress | None = None) -> dict[str, dict[int, np.ndarray]]:
    """Out-of-sample forecasts per kind and horizon, one per row from fold_starts[0] on.

    A fold [fold_starts[i], fold_starts[i+1]) is forecast by a model fitted on returns[:start]
    (a forecast made at row t then uses returns through t: the fold's first forecast is made at
    its first row's close). HAR's own targets are cut to end before the fold. Rows before the
    first fold are NaN.
    """
    r = np.asarray(returns, dtype=float)
    out = {kind: {h: np.full(len(r), np.nan) for h in horizons} for kind in kinds}
    bounds = [*fold_starts, len(r)]
    total = len(fold_starts) * len(kinds)
    done = 0
    for start, end in itertools.pairwise(bounds):
        for kind in kinds:
            model = fit_volatility(kind, r[:start])
            for h in horizons:
                out[kind][h][start:end] = model.forecasts(r[:end], h)[start:end]
            done += 1
            if progress:
                progress(done, total)
    return out


def hac_lags(d: np.ndarray, horizon: int = 1) -> int:
    """Newey-West lags for the long-run variance of mean(d), chosen from the data: Andrews' (1991)
    AR(1) plug-in bandwidth for the Bartlett kernel, 1.1447 (a n)^(1/3) with
    a = 4 rho^2 / ((1 - rho)^2 (1 + rho)^2), never fewer than horizon - 1 (overlapping h-day
    targets) and at most n / 4. rho is capped at 0.97 so a near unit root cannot blow it up."""
    n = len(d)
    centred = d - d.mean()
    denominator = float(np.dot(centred[:-1], centred[:-1]))
    rho = float(np.dot(centred[1:], centred[:-1])) / denominator if denominator > 0 else 0.0
    rho = min(max(rho, -0.97), 0.97)
    a = 4 * rho * rho / ((1 - rho) ** 2 * (1 + rho) ** 2)
    lags = int(1.1447 * (a * n) ** (1 / 3))
    return int(min(max(lags, horizon - 1, 0), n // 4))


def diebold_mariano(loss_a: np.ndarray, loss_b: np.ndarray, horizon: int = 1) -> dict[str, float]:
    """Diebold-Mariano test that forecast b has lower expected loss than forecast a.

    d = loss_a - loss_b; the long-run variance of mean(d) uses Bartlett (Newey-West) weights over
    `hac_lags(d, horizon)` lags, chosen from d's own autocorrelation: overlapping h-day targets
    make d autocorrelated at least up to h-1 lags, and volatility clustering keeps it so for
    longer. Returns the statistic, the one-sided p-value (small: b beats a) and the lags used.
    """
    d = np.asarray(loss_a, dtype=float) - np.asarray(loss_b, dtype=float)
    d = d[~np.isnan(d)]
    n = len(d)
    if n < 10:
        return {"statistic": math.nan, "p_value": math.nan, "lags": 0}
    lags = hac_lags(d, horizon)
    centred = d - d.mean()
    lrv = float(np.dot(centred, centred)) / n
    for lag in range(1, lags + 1):
        weight = 1 - lag / (lags + 1)
        lrv += 2 * weight * float(np.dot(centred[lag:], centred[:-lag])) / n
    if lrv <= 0:
        return {"statistic": math.nan, "p_value": math.nan, "lags": lags}
    stat = float(d.mean() / math.sqrt(lrv / n))
    return {"statistic": stat, "p_value": 0.5 * math.erfc(stat / math.sqrt(2)), "lags": lags}
