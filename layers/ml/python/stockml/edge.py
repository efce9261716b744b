"""Is a strategy's edge over a benchmark more than noise? A studentised block bootstrap test.

The statistic is the difference of Sharpe ratios of two paired daily return series (strategy
minus benchmark, the same days), reported annualised. Following Ledoit and Wolf (2008), the test
is studentised: the difference is divided by its standard error, computed by the delta method
from the four moments (mean and mean square of each series) with a block (HAC) variance, and the
bootstrap resamples that t-statistic, each resample divided by its own standard error. The paired
days are resampled together in circular blocks (Politis and Romano 1992) of a fixed length chosen
from the data by Politis and White (2004, corrected by Patton, Politis and White 2009) on the
statistic's own influence series, so the serial dependence, the volatility clustering and the
strong correlation between the two series are all kept. The one-sided p-value of "no edge"
(difference <= 0) compares the observed t with the resampled t centred on the observed
difference; the 90% interval is the matching studentised interval, so its lower end is above 0
exactly when p < 0.05 (up to the resampling grid). A slow test checks the size under a null of
equal Sharpe with GARCH returns (2.5%-7.5% at 5%) and prints the power under a planted edge.

`holm` adjusts a family of p-values for multiple testing (Holm 1979). numpy only, seeded: the
same inputs always give the same answer. `arch.bootstrap` has the same block length; it needs
pandas and statsmodels, which the retrain function cannot carry, and a unit test checks the block
length against `arch`'s.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

TRADING_DAYS = 252
EDGE_P_VALUE = 0.05
DEFAULT_RESAMPLES = 2000
SEED = 20081  # fixed: a record must not change between two runs on the same data


def optimal_block_length(x: np.ndarray, kind: str = "stationary") -> float:
    """Politis-White block length for one series (at least 1): the mean block length of a
    stationary bootstrap, or (kind="circular") the fixed length of a circular block bootstrap."""
    if kind not in ("stationary", "circular"):
        raise ValueError(f"unknown bootstrap kind {kind!r}")
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
    d = (2 if kind == "stationary" else 4 / 3) * long_run * long_run
    b = (2 * g * g / d) ** (1 / 3) * n ** (1 / 3)
    return float(min(max(b, 1.0), b_max))


def annualised_sharpe(returns: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mean over standard deviation (ddof=1) times sqrt(252); NaN for a constant series."""
    r = np.asarray(returns, dtype=float)
    std = r.std(axis=axis, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(std > 0, r.mean(axis=axis) / std * math.sqrt(TRADING_DAYS), np.nan)


def circular_block_indices(n: int, block: int, resamples: int,
                           rng: np.random.Generator) -> np.ndarray:
    """(resamples, blocks, block) positions: ceil(n / block) blocks of `block` consecutive days
    each, starting at uniform positions and wrapping around the end."""
    blocks = -(-n // block)
    starts = rng.integers(0, n, size=(resamples, blocks, 1))
    return (starts + np.arange(block)) % n


def _moments(y: np.ndarray) -> np.ndarray:
    """Mean of (a, b, a^2, b^2) over the day axis (-2) of (..., days, 4) observations."""
    return y.mean(axis=-2)


def _sharpe_gap_and_gradient(mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-day Sharpe(a) - Sharpe(b) from the moments (..., 4), and its gradient (..., 4)."""
    ma, mb, ga, gb = np.moveaxis(mu, -1, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        va, vb = ga - ma * ma, gb - mb * mb
        gap = ma / np.sqrt(va) - mb / np.sqrt(vb)
        grad = np.stack([ga / va ** 1.5, -gb / vb ** 1.5, -ma / (2 * va ** 1.5), mb / (2 * vb ** 1.5)],
                        axis=-1)
    return gap, grad


def _block_standard_error(influence: np.ndarray, block: int) -> np.ndarray:
    """Standard error of the mean of `influence` (..., days, whole blocks of `block` days) from
    the sums over those blocks: the natural variance of a block bootstrap (Ledoit-Wolf 2008)."""
    shape = (*influence.shape[:-1], influence.shape[-1] // block, block)
    sums = influence.reshape(shape).sum(axis=-1)
    return np.sqrt((sums * sums).mean(axis=-1) / block / influence.shape[-1])


def _overlapping_standard_error(influence: np.ndarray, block: int) -> float:
    """Standard error of the mean of one series from all its overlapping blocks (Bartlett-like)."""
    n = len(influence)
    block = min(block, n)
    sums = np.convolve(influence, np.ones(block), mode="valid")
    return float(np.sqrt(np.mean(sums * sums) / block / n))


def sharpe_difference_test(strategy: np.ndarray, benchmark: np.ndarray, *,
                           resamples: int = DEFAULT_RESAMPLES, seed: int = SEED,
                           block: float | None = None) -> dict[str, Any]:
    """Tests whether `strategy`'s Sharpe ratio exceeds `benchmark`'s on the same days.

    Returns `difference` (observed, annualised), `standard_error` (annualised), `interval_90`
    [low, high], `p_value` (one-sided, of "no edge"), `block_length`, `resamples`, and `edge`:
    p_value < 0.05 (uncorrected: see `holm` for a family of tests).
    """
    a, b = np.asarray(strategy, dtype=float), np.asarray(benchmark, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError("strategy and benchmark must be paired daily returns of the same days")
    undefined = {"difference": math.nan, "standard_error": math.nan, "interval_90": [math.nan, math.nan],
                 "p_value": math.nan, "block_length": math.nan, "resamples": 0, "edge": False}
    if len(a) < 10:
        return undefined
    y = np.stack([a, b, a * a, b * b], axis=-1)
    mu = _moments(y)
    gap, grad = _sharpe_gap_and_gradient(mu)
    gap = float(gap)
    if not math.isfinite(gap):
        return undefined
    influence = (y - mu) @ grad
    length = max(1, round(block or optimal_block_length(influence, "circular")))
    se = _overlapping_standard_error(influence, length)
    annual = math.sqrt(TRADING_DAYS)
    if not se > 0:  # the two series move as one: no difference to test
        return {**undefined, "difference": gap * annual, "standard_error": 0.0,
                "interval_90": [gap * annual] * 2, "p_value": 1.0 if gap <= 0 else math.nan,
                "block_length": float(length)}
    rng = np.random.default_rng(seed)
    t_stats = []
    chunk = max(1, 4_000_000 // (4 * len(a)))
    for done in range(0, resamples, chunk):
        idx = circular_block_indices(len(a), length, min(chunk, resamples - done), rng).reshape(
            -1, (-(-len(a) // length)) * length)
        resampled = y[idx]
        mu_star = _moments(resampled)
        gap_star, grad_star = _sharpe_gap_and_gradient(mu_star)
        influence_star = np.einsum("rdk,rk->rd", resampled - mu_star[:, None, :], grad_star)
        se_star = _block_standard_error(influence_star, length)
        with np.errstate(divide="ignore", invalid="ignore"):
            t_stats.append((gap_star - gap) / se_star)
    t_star = np.concatenate(t_stats)
    t_star = t_star[np.isfinite(t_star)]
    t_observed = gap / se
    p_value = float((1 + np.count_nonzero(t_star >= t_observed)) / (len(t_star) + 1))
    upper_q, lower_q = np.quantile(t_star, [0.95, 0.05])
    return {
        "difference": gap * annual,
        "standard_error": se * annual,
        "interval_90": [float(gap - upper_q * se) * annual, float(gap - lower_q * se) * annual],
        "p_value": p_value,
        "block_length": float(length),
        "resamples": len(t_star),
        "edge": p_value < EDGE_P_VALUE,
    }


def holm(p_values: dict[str, float | None]) -> dict[str, float | None]:
    """Holm-adjusted p-values of a family of tests (None or NaN: not a test, left out): reject
    each adjusted p below alpha and the family's chance of any false rejection stays <= alpha."""
    valid = sorted(((p, name) for name, p in p_values.items() if p is not None and math.isfinite(p)))
    m = len(valid)
    adjusted: dict[str, float | None] = dict.fromkeys(p_values)
    running = 0.0
    for rank, (p, name) in enumerate(valid):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[name] = running
    return adjusted


def plain_words(test: dict[str, Any], benchmark: str = "holding the index") -> str:
    """One sentence a non-statistician reads, e.g. "no evidence this beats holding the index".
    Uses the corrected p-value when the test has one (`p_value_corrected`, see `holm`)."""
    p = test.get("p_value_corrected", test.get("p_value"))
    if p is None or not math.isfinite(p):
        return "not enough data to tell"
    tests = test.get("tests_in_family")
    corrected = f", corrected for {tests} tests" if "p_value_corrected" in test and tests else ""
    if p < EDGE_P_VALUE:
        return f"evidence this beats {benchmark} (p = {p:.3f}{corrected})"
    if p < 0.2:
        return f"weak, inconclusive evidence this beats {benchmark} (p = {p:.2f}{corrected})"
    return f"no evidence this beats {benchmark} (p = {p:.2f}{corrected})"
