"""Performance numbers of a strategy's daily net returns against a benchmark's, on the same days.

The figures a user of Qlib (`qlib.contrib.evaluate.risk_analysis`) or freqtrade (`freqtrade.data.metrics`)
looks for: annualised return, Sharpe, Sortino, Calmar, maximum drawdown and its duration, information
ratio, beta and alpha, the probabilistic and deflated Sharpe ratios, and a row per calendar year.
Annualised over TRADING_DAYS = 252 days, risk-free rate 0. Sources of the formulas:

- Sharpe ratio: Sharpe (1994), "The Sharpe Ratio", Journal of Portfolio Management 21(1).
- Sortino ratio: Sortino and Price (1994), "Performance Measurement in a Downside Risk Framework",
  Journal of Investing 3(3); downside deviation about a target of 0, over all days.
- Calmar ratio: Young (1991), "Calmar Ratio: A Smoother Tool", Futures 20(1).
- Information ratio: Grinold and Kahn (2000), Active Portfolio Management, 2nd ed., ch. 5.
- Beta and alpha: the CAPM regression of Jensen (1968), "The Performance of Mutual Funds in the
  Period 1945-1964", Journal of Finance 23(2).
- Probabilistic Sharpe ratio: Bailey and López de Prado (2012), "The Sharpe Ratio Efficient
  Frontier", Journal of Risk 15(2), eq. (8); the Sharpe estimator's variance under non-normal
  returns from Mertens (2002) and Lo (2002), "The Statistics of Sharpe Ratios", FAJ 58(4).
- Deflated Sharpe ratio: Bailey and López de Prado (2014), "The Deflated Sharpe Ratio: Correcting
  for Selection Bias, Backtest Overfitting and Non-Normality", Journal of Portfolio Management
  40(5), eq. (2) (the expected maximum of N Sharpe ratios).

numpy and the standard library only (`statistics.NormalDist` for the normal CDF and its inverse):
this module runs in an AWS Lambda without scipy or pandas. Undefined statistics (too few days, a
constant series, no drawdown, no downside) are NaN in the single functions and None in `summary`
and `yearly`, whose output is JSON-safe.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import numpy as np

TRADING_DAYS = 252
EULER_GAMMA = 0.5772156649015329
_NORMAL = NormalDist()


def _series(values: Any, name: str = "net") -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    return array


def _paired(net: Any, benchmark: Any) -> tuple[np.ndarray, np.ndarray]:
    a, b = _series(net, "net"), _series(benchmark, "benchmark")
    if a.shape != b.shape:
        raise ValueError(f"net and benchmark differ in shape: {a.shape} != {b.shape}")
    return a, b


def _constant(x: np.ndarray) -> bool:
    """True when every value is the same: its standard deviation is 0, whatever rounding says."""
    return bool(np.all(x == x[0]))


def _mean_over_std(x: np.ndarray) -> float:
    """Per-period Sharpe ratio mean / std (ddof=1); NaN for fewer than 2 days or a constant series."""
    if len(x) < 2 or _constant(x):
        return math.nan
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        std = x.std(ddof=1)
        return float(x.mean() / std) if std > 0 else math.nan


def _equity(net: np.ndarray) -> np.ndarray:
    """Equity curve starting at 1.0 before the first day: len(net) + 1 values."""
    return np.concatenate([[1.0], np.cumprod(1.0 + net)])


def _finite(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def annual_return(net: Any) -> float:
    """Geometric annualised return, final equity ** (252 / days) - 1; NaN for fewer than 2 days."""
    net = _series(net)
    if len(net) < 2:
        return math.nan
    final = float(np.prod(1.0 + net))
    if not math.isfinite(final):
        return math.nan
    if final <= 0:
        return -1.0
    return final ** (TRADING_DAYS / len(net)) - 1


def sharpe(net: Any) -> float:
    """Annualised Sharpe ratio, mean / std (ddof=1) x sqrt(252), risk-free rate 0."""
    return _mean_over_std(_series(net)) * math.sqrt(TRADING_DAYS)


def drawdown(net: Any) -> dict[str, Any]:
    """Maximum drawdown (<= 0, a fraction of the previous peak of the equity curve cumprod(1 + net),
    which starts at 1.0) and `max_drawdown_days`: the longest run of consecutive trading days whose
    equity is below an earlier peak, i.e. from the day after a peak until the equity first regains it
    (the day it does is not counted) or until the end if it never does.

    Empty input: NaN and None.
    """
    net = _series(net)
    if len(net) == 0:
        return {"max_drawdown": math.nan, "max_drawdown_days": None}
    equity = _equity(net)
    peak = np.maximum.accumulate(equity)
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = equity / peak - 1
    below = equity[1:] < peak[1:]
    longest = run = 0
    for underwater in below.tolist():
        run = run + 1 if underwater else 0
        longest = max(longest, run)
    return {"max_drawdown": float(min(depth.min(), 0.0)), "max_drawdown_days": longest}


def sortino(net: Any) -> float:
    """Annualised Sortino ratio: mean / sqrt(mean(min(r, 0)^2)) x sqrt(252), target 0 over all days.

    NaN with no downside (no negative day) or fewer than 2 days.
    """
    net = _series(net)
    if len(net) < 2:
        return math.nan
    downside = math.sqrt(float(np.mean(np.minimum(net, 0.0) ** 2)))
    if not downside > 0:
        return math.nan
    return float(net.mean()) / downside * math.sqrt(TRADING_DAYS)


def calmar(net: Any) -> float:
    """Calmar ratio: geometric annualised return / |maximum drawdown|; NaN when there is no drawdown."""
    net = _series(net)
    worst = drawdown(net)["max_drawdown"]
    if len(net) < 2 or not worst < 0:
        return math.nan
    return annual_return(net) / abs(worst)


def information_ratio(net: Any, benchmark: Any) -> float:
    """Annualised information ratio: mean(net - benchmark) / std(ddof=1) x sqrt(252).

    NaN when the active return is constant (e.g. a series against itself) or fewer than 2 days.
    """
    net, benchmark = _paired(net, benchmark)
    return _mean_over_std(net - benchmark) * math.sqrt(TRADING_DAYS)


def beta_alpha(net: Any, benchmark: Any) -> tuple[float, float]:
    """OLS regression net = alpha_d + beta x benchmark: returns (beta, annualised alpha = alpha_d x 252).

    NaN for fewer than 2 days or a constant benchmark.
    """
    net, benchmark = _paired(net, benchmark)
    if len(net) < 2 or _constant(benchmark):
        return math.nan, math.nan
    b = benchmark - benchmark.mean()
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        beta = float(np.dot(b, net - net.mean()) / np.dot(b, b))
    alpha = float(net.mean() - beta * benchmark.mean())
    return beta, alpha * TRADING_DAYS


def _moments(net: np.ndarray) -> tuple[float, float, float]:
    """Per-period Sharpe (ddof=1), skewness g3 and non-excess kurtosis g4 (population moments)."""
    sr = _mean_over_std(net)
    if math.isnan(sr):
        return math.nan, math.nan, math.nan
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        d = net - net.mean()
        m2 = float(np.mean(d**2))
        g3 = float(np.mean(d**3)) / m2**1.5
        g4 = float(np.mean(d**4)) / m2**2
    return sr, g3, g4


def _psr(sr: float, g3: float, g4: float, n: int, benchmark_sharpe: float) -> float:
    """Phi((SR - SR*) sqrt(n - 1) / sqrt(1 - g3 SR + (g4 - 1) / 4 SR^2)), all per period."""
    if not all(math.isfinite(v) for v in (sr, g3, g4, benchmark_sharpe)) or n < 2:
        return math.nan
    variance = 1 - g3 * sr + (g4 - 1) / 4 * sr**2
    if not variance > 0:
        return math.nan
    return _NORMAL.cdf((sr - benchmark_sharpe) * math.sqrt(n - 1) / math.sqrt(variance))


def probabilistic_sharpe(net: Any, benchmark_sharpe: float = 0.0) -> float:
    """Probabilistic Sharpe ratio (Bailey and López de Prado 2012): the probability that the true
    per-period Sharpe ratio exceeds `benchmark_sharpe` (per period, not annualised), allowing for the
    skewness and kurtosis of the returns. NaN for fewer than 2 days or a constant series.
    """
    net = _series(net)
    sr, g3, g4 = _moments(net)
    return _psr(sr, g3, g4, len(net), float(benchmark_sharpe))


def expected_max_sharpe(trials: int, trial_sharpe_variance: float) -> float:
    """Expected maximum of `trials` per-period Sharpe ratios of zero true Sharpe whose estimates vary
    with variance `trial_sharpe_variance` (Bailey and López de Prado 2014, eq. 2); 0 for one trial."""
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    if trial_sharpe_variance < 0:
        raise ValueError(f"trial_sharpe_variance must be >= 0, got {trial_sharpe_variance}")
    if trials == 1:
        return 0.0
    spread = (1 - EULER_GAMMA) * _NORMAL.inv_cdf(1 - 1 / trials) + EULER_GAMMA * _NORMAL.inv_cdf(
        1 - 1 / (trials * math.e)
    )
    return math.sqrt(trial_sharpe_variance) * spread


def deflated_sharpe(net: Any, trials: int, trial_sharpe_variance: float | None = None) -> dict[str, Any]:
    """Deflated Sharpe ratio (Bailey and López de Prado 2014): the PSR of the chosen series against
    the Sharpe ratio expected of the best of `trials` strategies with no skill.

    `trial_sharpe_variance` is the variance of the per-period Sharpe ratios across the trials; when
    unknown, the sampling variance of a zero Sharpe over n days, 1 / (n - 1). Returns
    `deflated_sharpe` (a probability), `expected_max_sharpe` (the benchmark SR*, annualised for
    display) and `trials`.
    """
    net = _series(net)
    trials = int(trials)
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    n = len(net)
    if trial_sharpe_variance is None:
        trial_sharpe_variance = 1 / (n - 1) if n >= 2 else math.nan
    variance = float(trial_sharpe_variance)
    benchmark = math.nan if math.isnan(variance) else expected_max_sharpe(trials, variance)
    return {
        "deflated_sharpe": probabilistic_sharpe(net, benchmark),
        "expected_max_sharpe": benchmark * math.sqrt(TRADING_DAYS),
        "trials": trials,
    }


def _years(dates: Any, n: int) -> np.ndarray:
    days = np.asarray(dates, dtype="datetime64[D]")
    if days.shape != (n,):
        raise ValueError(f"dates must be 1-D with {n} values, got shape {days.shape}")
    return days.astype("datetime64[Y]").astype(int) + 1970


def yearly(dates: Any, net: Any, benchmark: Any) -> list[dict[str, Any]]:
    """One JSON-safe row per calendar year present, in year order: `year`, `days`, `return` and
    `benchmark_return` (compounded over the year), `excess` (their difference), `sharpe`
    (annualised, None when undefined) and `max_drawdown` (of the year alone, equity restarting at 1).
    """
    net, benchmark = _paired(net, benchmark)
    years = _years(dates, len(net))
    rows = []
    for year in np.unique(years).tolist():
        mask = years == year
        r, b = net[mask], benchmark[mask]
        total = float(np.prod(1.0 + r)) - 1
        bench_total = float(np.prod(1.0 + b)) - 1
        rows.append({
            "year": int(year),
            "days": int(mask.sum()),
            "return": _finite(total),
            "benchmark_return": _finite(bench_total),
            "excess": _finite(total - bench_total),
            "sharpe": _finite(sharpe(r)),
            "max_drawdown": _finite(drawdown(r)["max_drawdown"]),
        })
    return rows


def summary(dates: Any, net: Any, benchmark: Any, trials: int | None = None,
            trial_sharpe_variance: float | None = None) -> dict[str, Any]:
    """All of the above in one JSON-safe dict (floats, ints or None; never NaN or inf).

    Keys: annual_return, sharpe, sortino, calmar, max_drawdown, max_drawdown_days, information_ratio,
    beta, alpha, psr (probability that the true Sharpe is above 0), yearly; with `trials`, also
    deflated_sharpe and expected_max_sharpe (annualised).
    """
    net, benchmark = _paired(net, benchmark)
    rows = yearly(dates, net, benchmark)
    down = drawdown(net)
    beta, alpha = beta_alpha(net, benchmark)
    result: dict[str, Any] = {
        "annual_return": _finite(annual_return(net)),
        "sharpe": _finite(sharpe(net)),
        "sortino": _finite(sortino(net)),
        "calmar": _finite(calmar(net)),
        "max_drawdown": _finite(down["max_drawdown"]),
        "max_drawdown_days": down["max_drawdown_days"],
        "information_ratio": _finite(information_ratio(net, benchmark)),
        "beta": _finite(beta),
        "alpha": _finite(alpha),
        "psr": _finite(probabilistic_sharpe(net)),
        "yearly": rows,
    }
    if trials is not None:
        deflated = deflated_sharpe(net, trials, trial_sharpe_variance)
        result["deflated_sharpe"] = _finite(deflated["deflated_sharpe"])
        result["expected_max_sharpe"] = _finite(deflated["expected_max_sharpe"])
    return result
