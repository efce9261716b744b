"""Is a strategy's edge over a benchmark more than noise? A stationary block bootstrap test.

The statistic is the difference of annualised Sharpe ratios of two paired daily return series
(strategy minus benchmark, the same days). The paired days are resampled together in blocks of
random (geometric) length (Politis and Romano 1994), the mean block length chosen by Politis and
White (2004, corrected by Patton, Politis and White 2009), so both the serial dependence and the
strong correlation between the two series are kept. The one-sided p-value of "no edge"
(difference <= 0) centres the bootstrap distribution on the observed difference (as in Ledoit
and Wolf 2008); the 90% interval is the matching basic bootstrap interval, so its lower end is
above 0 exactly when p < 0.05. numpy only, seeded: the same inputs always give the same answer.
`arch.bootstrap` has the same resampling; it needs pandas and statsmodels, which the retrain
function cannot carry, and a unit test checks the block length against `arch`'s.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

TRADING_DAYS = 252
EDGE_P_VALUE = 0.05
DEFAULT_RESAMPLES = 2000
SEED = 20081  # fixed: a record must not change between two runs on the same data


def optimal_block_length(x: np.ndarray) -> float:
    """Politis-White mean block length of a stationary bootstrap for one series (at least 1)."""
    x = np.asarray(x, dtype=float)
    n = len(x)
    dev = x - x.mean()
    kn = max(5, int(math.log10(n)))
    m_max = math.ceil(math.sqrt(n)) + kn
    b_max = math.ceil(min(3 * math.sqrt(n), n / 3))
    lags = np.arange(m_max + 1)
    autocov = np.array([np.dot(dev[k:], dev[: n - k]) / n for k in lags])
    if autocov[0] <= 0:
        return 1.0
    band = 2 * math.sqrt(math.log10(n) / n)
    small = np.abs(autocov[1:] / autocov[0]) < band  # small[k-1]: lag k inside the band
    m_hat = None
    for m in range(0, m_max - kn + 1):
        if small[m: m + kn].all():
            m_hat = m
            break
    m = m_max if m_hat is None else min(2 * max(m_hat, 1), m_max)
    k = lags[1: m + 1]
    weight = np.minimum(1.0, 2 * (1 - k / m))
    g = 2 * float(np.sum(weight * k * autocov[1: m + 1]))
    long_run = autocov[0] + 2 * float(np.sum(weight * autocov[1: m + 1]))
    if long_run <= 0 or g == 0:
        return 1.0
    b = (2 * g * g / (2 * long_run * long_run)) ** (1 / 3) * n ** (1 / 3)
    return float(min(max(b, 1.0), b_max))


def stationary_bootstrap_indices(n: int, block: float, resamples: int,
                                 rng: np.random.Generator) -> np.ndarray:
    """(resamples, n) positions: blocks start at uniform positions, each day starts a new block
    with probability 1/block, else continues the block (wrapping around the end)."""
    new_block = rng.random((resamples, n)) < 1 / block
    new_block[:, 0] = True
    starts = rng.integers(0, n, size=(resamples, n))
    steps = np.arange(n)
    block_began = np.maximum.accumulate(np.where(new_block, steps, 0), axis=1)
    first = np.take_along_axis(starts, block_began, axis=1)
    return (first + steps - block_began) % n


def annualised_sharpe(returns: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mean over standard deviation (ddof=1) times sqrt(252); NaN for a constant series."""
    r = np.asarray(returns, dtype=float)
    std = r.std(axis=axis, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(std > 0, r.mean(axis=axis) / std * math.sqrt(TRADING_DAYS), np.nan)


def sharpe_difference_test(strategy: np.ndarray, benchmark: np.ndarray, *,
                           resamples: int = DEFAULT_RESAMPLES, seed: int = SEED,
                           block: float | None = None) -> dict[str, Any]:
    """Tests whether `strategy`'s annualised Sharpe exceeds `benchmark`'s on the same days.

    Returns `difference` (observed), `interval_90` [low, high], `p_value` (one-sided, of "no
    edge"), `block_length`, `resamples`, and `edge`: p_value < 0.05.
    """
    a, b = np.asarray(strategy, dtype=float), np.asarray(benchmark, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError("strategy and benchmark must be paired daily returns of the same days")
    observed = float(annualised_sharpe(a) - annualised_sharpe(b))
    if not math.isfinite(observed):
        return {"difference": math.nan, "interval_90": [math.nan, math.nan], "p_value": math.nan,
                "block_length": math.nan, "resamples": 0, "edge": False}
    block = block or max(optimal_block_length(a), optimal_block_length(b))
    rng = np.random.default_rng(seed)
    diffs = []
    chunk = max(1, 2_000_000 // len(a))
    for done in range(0, resamples, chunk):
        idx = stationary_bootstrap_indices(len(a), block, min(chunk, resamples - done), rng)
        diffs.append(annualised_sharpe(a[idx], axis=1) - annualised_sharpe(b[idx], axis=1))
    boot = np.concatenate(diffs)
    boot = boot[np.isfinite(boot)]
    centred = boot - observed
    p_value = float((1 + np.count_nonzero(centred >= observed - 1e-12)) / (len(boot) + 1))
    low, high = np.quantile(centred, [0.95, 0.05])
    return {
        "difference": observed,
        "interval_90": [float(observed - low), float(observed - high)],
        "p_value": p_value,
        "block_length": float(block),
        "resamples": len(boot),
        "edge": p_value < EDGE_P_VALUE,
    }


def plain_words(test: dict[str, Any], benchmark: str = "holding the index") -> str:
    """One sentence a non-statistician reads, e.g. "no evidence this beats holding the index"."""
    p = test.get("p_value")
    if p is None or not math.isfinite(p):
        return "not enough data to tell"
    if p < EDGE_P_VALUE:
        return f"evidence this beats {benchmark} (p = {p:.3f})"
    if p < 0.2:
        return f"weak, inconclusive evidence this beats {benchmark} (p = {p:.2f})"
    return f"no evidence this beats {benchmark} (p = {p:.2f})"
