"""Cross-sectional models that rank a universe of stocks each day, and their Qlib-style evaluation.

Job: learn, from the day-by-day rank-normalised features of `stockml.cross_section`, a score whose
ranking across the universe predicts the ranking of the next day's (or the next `horizon` days')
excess return, and judge that score out of sample the way a Qlib user reads a model: the daily
rank IC (mean, standard deviation, ICIR, t-statistics, share of positive days, decay over longer
horizons), the mean return of each score decile, and portfolios built from the score, after costs,
against the equal-weight universe.

Protocol:

- Models: "ridge" (scikit-learn `Ridge`) and "hgb" (a small `HistGradientBoostingRegressor`) fitted
  on the stacked (day, symbol) rows that have every feature and the label; the label is the
  per-day rank of the `horizon`-day excess return (`cross_section.labels`). Hyper-parameters are
  fixed; a ridge alpha grid (`ridge_alphas`) is chosen at each refit on an inner time split of the
  training window only (the last `INNER_VALIDATION` of its days, embargoed like the outer split),
  and every alpha tried counts as a trial.
- Walk-forward with an embargo: the first test day is the day after `min_train_days` days with
  features (days with at least `MIN_CROSS_SECTION` symbols having every feature); from there the
  model is refitted every `refit_every` days on an expanding window whose last training day is
  `horizon` days before the fold's first day (`walk_forward.walk_forward_splits` with gap =
  horizon), so every training label (close d to close d + horizon) is known at the close the fold
  starts from and none reaches into the fold. Every day and symbol of the fold gets a score,
  predicted one day at a time: a day's scores depend on that day's features and the fold's model
  only, so truncating the panel after day t changes no score before t, bit for bit.
- IC: per day, the Spearman correlation of the score with the next-day excess return over the
  symbols having both (`cross_section.daily_rank_ic`); ICIR = mean / std of the daily ICs,
  t = mean / (std / sqrt(days)), and a Newey-West t (Bartlett, floor(4 (days / 100)^(2/9)) lags,
  at least h - 1 for the overlapping h-day returns of the decay), since persistent scores make
  daily ICs serially correlated. Deciles: each day's scored symbols cut into ten equal groups.
- Missing data: a symbol without a bar, or without every feature, on a day is absent from that
  day's cross-section (no score, no rank, no weight); nothing is forward-filled. A position whose
  stock has no return over a day (a gap or a delisting at either end) earns 0 that day: the move
  across a gap is booked to no day, exactly as `Panel.returns` does.
- Portfolios, decided at close t from the day's scores and filled `lag` closes later
  (`walk_forward.executed`; lag 0 is research only): long-only top-k equal weight with a buffer (a
  stock stays until it leaves the top `band` >= k, then the best unheld names refill to k), and
  long-short (the same rule on both ends, half the capital long the top k and half short the
  bottom k, a name never on both sides). Weights are reset to their targets every day; turnover
  is |target - drifted weights| summed over the symbols (the first day's entry included) and
  costs `cost_bps + spread_bps / 2` per unit. The benchmark holds every symbol with a bar at the
  decision close, equal weight, rebalanced daily, traded the same way at the same cost.
- Tests: each model's long-only portfolio against the equal-weight universe with the studentised
  block bootstrap of `edge.sharpe_difference_test`, Holm-corrected over the run's tests
  (`edge.holm`); `edge` is a corrected p < 0.05. `performance.summary` gives the risk figures and
  the deflated Sharpe ratio for every configuration evaluated on the universe (`trials_counted`:
  this run's and, through `prior_trials`, the earlier runs' kept in its trial record).

numpy and scikit-learn (imported by `make_ranker`), no pandas; `plot_universe` imports matplotlib only
when called. Features and labels are kept in float32 ((T, N, 17) x 4 bytes: 500 symbols x 20 years is
163 MiB); scikit-learn's gradient boosting copies its input to float64 while it bins it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stockml.cross_section import (
    FEATURE_NAMES,
    average_ranks,
    build_cross_section,
    daily_rank_ic,
    labels,
    normalise,
)
from stockml.edge import DEFAULT_RESAMPLES, EDGE_P_VALUE, holm, sharpe_difference_test
from stockml.panel import Panel
from stockml.performance import annual_return, drawdown, sharpe, summary
from stockml.scoring import json_safe
from stockml.text_tables import aligned, cell
from stockml.walk_forward import (
    DEFAULT_COST_BPS,
    DEFAULT_MIN_TRAIN_DAYS,
    DEFAULT_SPREAD_BPS,
    EXECUTION_LAG,
    Split,
    executed,
    walk_forward_splits,
)

TRADING_DAYS = 252
MODEL_KINDS = ("ridge", "hgb")
DEFAULT_REFIT_EVERY = 63
MIN_CROSS_SECTION = 10      # symbols with every feature for a day to count as a day with features
IC_HORIZONS = (1, 2, 5, 10, 20)
DECILES = 10
INNER_VALIDATION = 0.2      # share of the training days an alpha grid is judged on
RIDGE_ALPHA = 1.0
HGB_PARAMS: dict[str, Any] = {"max_iter": 100, "max_depth": 3, "learning_rate": 0.05, "min_samples_leaf": 200,
                              "early_stopping": False, "random_state": 0}

Progress = Callable[[int, int], None]


# ----------------------------------------------------------------------------- data and splits


@dataclass(frozen=True, eq=False)
class RankingData:
    """What the models see: rank-normalised features (T, N, F), the ranked `horizon`-day excess
    return (T, N) they learn, and which (day, symbol) cells have every feature (T, N)."""

    dates: np.ndarray
    features: np.ndarray
    target: np.ndarray
    complete: np.ndarray
    horizon: int

    @property
    def trainable(self) -> np.ndarray:
        """bool (T, N): every feature and the label."""
        return self.complete & np.isfinite(self.target)


def ranking_data(panel: Panel, horizon: int = 1, *, dtype: type | np.dtype = np.float32) -> RankingData:
    """Features of `panel` rank-normalised per day, and the ranked `horizon`-day excess return."""
    features = normalise(build_cross_section(panel, dtype=dtype), "rank")
    complete = np.isfinite(features).all(axis=2)
    _, ranked = labels(panel, horizon)
    return RankingData(panel.dates, features, ranked.astype(features.dtype), complete, int(horizon))


def first_test_row(complete: np.ndarray, min_train_days: int = DEFAULT_MIN_TRAIN_DAYS) -> int:
    """The row after the first `min_train_days` days with features (>= MIN_CROSS_SECTION symbols
    having every feature); ValueError when the panel has no such day."""
    featured = np.flatnonzero(complete.sum(axis=1) >= MIN_CROSS_SECTION)
    if len(featured) <= min_train_days:
        raise ValueError(f"need more than {min_train_days} days with at least {MIN_CROSS_SECTION} symbols "
                         f"having every feature, have {len(featured)}")
    return int(featured[min_train_days])


def ranking_splits(data: RankingData, *, refit_every: int = DEFAULT_REFIT_EVERY,
                   min_train_days: int = DEFAULT_MIN_TRAIN_DAYS) -> list[Split]:
    """Expanding-window folds over the panel's rows from the first test row on; each fold's last
    training row is `horizon` rows before its first test row, so its label ends on or before it."""
    first = first_test_row(data.complete, min_train_days)
    return walk_forward_splits(data.dates, first_test_date=data.dates[first], refit_every=refit_every,
                               gap=data.horizon)


def training_rows(data: RankingData, rows: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stacked (X, y, day) of the trainable (day, symbol) cells of the given rows, day-major."""
    mask = data.trainable[rows]
    day, _ = np.nonzero(mask)
    return data.features[rows][mask], data.target[rows][mask], day + (rows.start or 0)


# ----------------------------------------------------------------------------- models


def make_ranker(kind: str, **params: Any) -> Any:
    """An unfitted scikit-learn regressor of `kind` with the fixed defaults, `params` overriding."""
    if kind == "ridge":
        from sklearn.linear_model import Ridge

        return Ridge(**{"alpha": RIDGE_ALPHA, **params})
    if kind == "hgb":
        from sklearn.ensemble import HistGradientBoostingRegressor

        return HistGradientBoostingRegressor(**{**HGB_PARAMS, **params})
    raise ValueError(f"unknown model kind {kind!r}: one of {', '.join(MODEL_KINDS)}")


def configurations(kind: str, ridge_alphas: Sequence[float] = (RIDGE_ALPHA,)) -> list[dict[str, Any]]:
    """The hyper-parameter settings tried for `kind`: the alpha grid for ridge, one fixed set for hgb."""
    if kind == "ridge":
        return [{"alpha": float(a)} for a in ridge_alphas]
    make_ranker(kind)  # unknown kinds fail here
    return [{}]


def _mean_ic(pred: np.ndarray, target: np.ndarray, day: np.ndarray) -> float:
    """Mean over days of the Spearman correlation of stacked predictions with targets."""
    days, inverse = np.unique(day, return_inverse=True)
    width = int(np.bincount(inverse).max())
    a = np.full((len(days), width), np.nan)
    b = np.full((len(days), width), np.nan)
    slot = np.arange(len(day)) - np.searchsorted(inverse, inverse)  # position within its day (day-major)
    a[inverse, slot], b[inverse, slot] = pred, target
    return float(np.nanmean(daily_rank_ic(a, b)))


def fit_ranker(kind: str, data: RankingData, train_end: int,
               grid: Sequence[dict[str, Any]]) -> tuple[Any, dict[str, Any]]:
    """Fit `kind` on the trainable rows before `train_end`; with more than one setting in `grid`,
    first pick the one with the best mean daily rank IC on the last INNER_VALIDATION of those
    days, fitted on the days before them less the embargo (the training window only)."""
    X, y, day = training_rows(data, slice(0, train_end))
    chosen = grid[0]
    if len(grid) > 1:
        days = np.unique(day)
        cut = days[int(len(days) * (1 - INNER_VALIDATION))]
        inner, valid = day <= cut - data.horizon, day >= cut
        scores = []
        for params in grid:
            model = make_ranker(kind, **params).fit(X[inner], y[inner])
            scores.append(_mean_ic(model.predict(X[valid]), y[valid], day[valid]))
        chosen = grid[int(np.nanargmax(scores))]
    return make_ranker(kind, **chosen).fit(X, y), chosen


@dataclass(frozen=True, eq=False)
class Scores:
    """Out-of-sample scores (T, N), NaN before the first fold and wherever a symbol lacks a
    feature; the folds and the setting chosen at each."""

    kind: str
    scores: np.ndarray
    splits: list[Split]
    chosen: list[dict[str, Any]]


def walk_forward_scores(data: RankingData, kind: str, *, refit_every: int = DEFAULT_REFIT_EVERY,
                        min_train_days: int = DEFAULT_MIN_TRAIN_DAYS,
                        ridge_alphas: Sequence[float] = (RIDGE_ALPHA,),
                        progress: Progress | None = None) -> Scores:
    """Score every test day and symbol with the model fitted on the fold's embargoed past."""
    splits = ranking_splits(data, refit_every=refit_every, min_train_days=min_train_days)
    grid = configurations(kind, ridge_alphas)
    scores = np.full(data.complete.shape, np.nan)
    chosen = []
    for done, split in enumerate(splits, start=1):
        model, params = fit_ranker(kind, data, split.train_end, grid)
        chosen.append(params)
        # Day by day: a day's scores depend on that day's rows and the model only, bit for bit (a
        # batched BLAS product may round a row differently with the batch's size).
        for t in range(split.test_start, split.test_end):
            present = data.complete[t]
            if present.any():
                scores[t, present] = model.predict(data.features[t, present])
        if progress:
            progress(done, len(splits))
    return Scores(kind, scores, splits, chosen)


# ----------------------------------------------------------------------------- IC and deciles


def newey_west_lags(days: int) -> int:
    """floor(4 (days / 100)^(2/9)): the Newey-West (1994) rule of thumb for a Bartlett kernel."""
    return int(4 * (days / 100) ** (2 / 9)) if days > 0 else 0


def newey_west_t(x: np.ndarray, lags: int) -> float:
    """mean / its Newey-West (Bartlett) standard error: robust to the serial correlation daily ICs
    get from persistent scores, and to the overlap of h-day returns (lags >= h - 1)."""
    x = np.asarray(x, dtype=float)
    n = len(x)
    if n < 3:
        return math.nan
    d = x - x.mean()
    variance = float(d @ d) / n
    for lag in range(1, min(lags, n - 1) + 1):
        variance += 2 * (1 - lag / (lags + 1)) * float(d[lag:] @ d[:-lag]) / n
    return float(x.mean() / math.sqrt(variance / n)) if variance > 0 else math.nan


def ic_statistics(ic: np.ndarray, min_lags: int = 0) -> dict[str, Any]:
    """Mean, std, ICIR (mean / std, daily), t = mean / (std / sqrt(days)), Newey-West t, share of
    positive days, over the days with an IC."""
    ic = np.asarray(ic, dtype=float)
    ic = ic[np.isfinite(ic)]
    n = len(ic)
    if n < 2:
        return {"ic_mean": float(ic.mean()) if n else None, "ic_std": None, "icir": None, "t": None,
                "t_newey_west": None, "newey_west_lags": None, "positive": None, "days": n}
    std = float(ic.std(ddof=1))
    mean = float(ic.mean())
    lags = max(newey_west_lags(n), min_lags)
    return {
        "ic_mean": mean,
        "ic_std": std,
        "icir": mean / std if std > 0 else math.nan,
        "t": mean / (std / math.sqrt(n)) if std > 0 else math.nan,
        "t_newey_west": newey_west_t(ic, lags),
        "newey_west_lags": lags,
        "positive": float(np.mean(ic > 0)),
        "days": n,
    }


def decile_returns(score: np.ndarray, realised: np.ndarray, buckets: int = DECILES) -> np.ndarray:
    """Mean over days of each score bucket's mean realised value (bucket 0 the lowest scores), the
    symbols with both values cut into `buckets` equal groups by rank each day (days with at least
    `buckets` such symbols)."""
    pair = np.isfinite(score) & np.isfinite(realised)
    ranks, count = average_ranks(np.where(pair, score, np.nan))
    days = count >= buckets
    with np.errstate(invalid="ignore"):
        bucket = np.floor((ranks - 1) * buckets / count[:, None])
    use = pair & days[:, None]
    row = np.nonzero(use)[0]
    key = row * buckets + bucket[use].astype(np.int64)
    size = len(score) * buckets
    sums = np.bincount(key, weights=realised[use], minlength=size).reshape(-1, buckets)
    counts = np.bincount(key, minlength=size).reshape(-1, buckets)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums[days] / counts[days]
    return np.nanmean(means, axis=0) if len(means) else np.full(buckets, np.nan)


# ----------------------------------------------------------------------------- portfolios


def buffered_top_k(scores: np.ndarray, k: int, band: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """bool (D, N) holdings: each day keep the held names still ranked in the top `band` by score,
    then add the best-ranked unheld names until k are held. Names without a score that day, and
    names in `exclude` (D, N) that day (the other leg), are dropped."""
    if k < 1 or band < k:
        raise ValueError(f"need 1 <= k <= band, got k={k}, band={band}")
    days, n = scores.shape
    out = np.zeros((days, n), dtype=bool)
    held = np.zeros(n, dtype=bool)
    rank = np.empty(n, dtype=np.int64)
    for d in range(days):
        s = scores[d]
        ok = np.isfinite(s)
        present = int(ok.sum())
        order = np.argsort(np.where(ok, -s, np.inf), kind="stable")[:present]
        rank[:] = n
        rank[order] = np.arange(present)
        keep = held & (rank < band)
        free = order[~keep[order]]
        if exclude is not None:
            keep &= ~exclude[d]
            free = free[~exclude[d, free]]
        keep[free[: max(0, k - int(keep.sum()))]] = True
        held = keep
        out[d] = held
    return out


def equal_weights(holdings: np.ndarray) -> np.ndarray:
    """Each day's holdings at equal weight summing to 1 (0 on a day without holdings)."""
    count = holdings.sum(axis=1, keepdims=True)
    return np.where(holdings, 1.0 / np.maximum(count, 1), 0.0)


@dataclass(frozen=True, eq=False)
class PortfolioReturns:
    """Daily gross and net returns, turnover (|trades| as a fraction of capital) and held weights."""

    gross: np.ndarray
    net: np.ndarray
    turnover: np.ndarray
    held: np.ndarray


def portfolio_returns(target: np.ndarray, realised: np.ndarray, *, trade_cost_bps: float,
                      lag: int = EXECUTION_LAG) -> PortfolioReturns:
    """Target weights (D, N) decided at each close, filled `lag` closes later and held to the next
    close, earning `realised` (D, N) (NaN: no return that day, earns 0). Turnover on day d is the
    sum of |held[d] - held[d-1] drifted by day d-1's returns|; costs trade_cost_bps per unit."""
    held = executed(target, lag)
    r = np.nan_to_num(realised, nan=0.0)
    gross = (held * r).sum(axis=1)
    drifted = np.zeros_like(held)
    with np.errstate(divide="ignore", invalid="ignore"):
        drifted[1:] = held[:-1] * (1 + r[:-1]) / (1 + gross[:-1])[:, None]
    turnover = np.abs(held - np.nan_to_num(drifted)).sum(axis=1)
    return PortfolioReturns(gross, gross - turnover * trade_cost_bps / 1e4, turnover, held)


def portfolio_metrics(p: PortfolioReturns, trade_cost_bps: float) -> dict[str, Any]:
    """Annualised return (geometric, net and gross), Sharpe, max drawdown, turnover per year, the
    yearly cost, mean holdings."""
    return {
        "annual_return": annual_return(p.net),
        "gross_annual_return": annual_return(p.gross),
        "mean_daily_gross": float(p.gross.mean()) if len(p.gross) else math.nan,
        "sharpe": sharpe(p.net),
        "gross_sharpe": sharpe(p.gross),
        "max_drawdown": drawdown(p.net)["max_drawdown"],
        "turnover": float(p.turnover.mean() * TRADING_DAYS) if len(p.turnover) else math.nan,
        "cost_per_year": float(p.turnover.mean() * TRADING_DAYS * trade_cost_bps / 1e4)
        if len(p.turnover) else math.nan,
        "mean_names": float((p.held != 0).sum(axis=1).mean()) if len(p.held) else math.nan,
        "days": len(p.net),
    }


# ----------------------------------------------------------------------------- evaluation


@dataclass(frozen=True, eq=False)
class UniverseSeries:
    """The series behind a report, over its out-of-sample days: dates (D,), rows (D,) of the
    panel, per model its scores (T, N) and daily rank IC (D,), the mean excess return by decile,
    and every portfolio's daily returns (`name` as "ridge/long_only", ..., "equal_weight")."""

    dates: np.ndarray
    rows: np.ndarray
    scores: dict[str, np.ndarray]
    ic: dict[str, np.ndarray]
    deciles: dict[str, np.ndarray]
    portfolios: dict[str, PortfolioReturns] = field(default_factory=dict)


def default_top_k(data: RankingData, rows: np.ndarray) -> int:
    """A decile of the typical out-of-sample cross-section: max(1, round(median symbols / 10))."""
    return max(1, round(float(np.median(data.complete[rows].sum(axis=1))) / DECILES))


def evaluate_universe_with_series(
    panel: Panel, *, kinds: Sequence[str] = MODEL_KINDS, horizon: int = 1,
    refit_every: int = DEFAULT_REFIT_EVERY, min_train_days: int = DEFAULT_MIN_TRAIN_DAYS,
    top_k: int | None = None, band: int | None = None, cost_bps: float = DEFAULT_COST_BPS,
    spread_bps: float = DEFAULT_SPREAD_BPS, lag: int = EXECUTION_LAG,
    ridge_alphas: Sequence[float] = (RIDGE_ALPHA,), resamples: int = DEFAULT_RESAMPLES,
    progress: Progress | None = None, data: RankingData | None = None, prior_trials: int = 0,
) -> tuple[dict[str, Any], UniverseSeries]:
    """Like `evaluate_universe`, also returning the series behind the report (for `plot_universe`).
    `data` may pass a precomputed `ranking_data(panel, horizon)`."""
    if data is None:
        data = ranking_data(panel, horizon)
    elif data.horizon != horizon or len(data.dates) != len(panel.dates):
        raise ValueError("data was computed for another horizon or panel")
    trade_cost = cost_bps + spread_bps / 2
    splits = ranking_splits(data, refit_every=refit_every, min_train_days=min_train_days)
    # Out-of-sample days: the test rows that have a next close (the last row has no next-day return).
    rows = np.arange(splits[0].test_start, len(panel.dates) - 1)
    if len(rows) < 2:
        raise ValueError("fewer than 2 out-of-sample days with a next-day return")
    k = top_k or default_top_k(data, rows)
    band = band or 2 * k
    if band < k:
        raise ValueError(f"band ({band}) must be at least top_k ({k})")
    grids = {kind: configurations(kind, ridge_alphas) for kind in kinds}
    trials = sum(len(g) for g in grids.values())
    # The deflated Sharpe ratio counts every configuration ever tried on this universe, not only
    # this run's: a universe retrained daily would otherwise start from one trial each day.
    counted = prior_trials + trials

    total = len(splits) * len(kinds)
    all_scores: dict[str, Scores] = {}
    for i, kind in enumerate(kinds):
        step = None
        if progress:
            def step(done: int, _total: int, i: int = i) -> None:
                progress(i * len(splits) + done, total)
        all_scores[kind] = walk_forward_scores(data, kind, refit_every=refit_every,
                                               min_train_days=min_train_days, ridge_alphas=ridge_alphas,
                                               progress=step)

    excess = {h: labels(panel, h)[0] for h in sorted({1, *IC_HORIZONS})}
    next_excess = excess[1][rows]
    next_return = panel.returns()[rows + 1]
    dates = panel.dates[rows]

    listed = panel.has_bar[rows]
    benchmark = portfolio_returns(equal_weights(listed), next_return, trade_cost_bps=trade_cost, lag=lag)
    portfolios = {"equal_weight": benchmark}
    models: dict[str, dict[str, Any]] = {}
    ics, deciles = {}, {}
    for kind, scored in all_scores.items():
        score = scored.scores[rows]
        ic = daily_rank_ic(score, next_excess)
        ics[kind] = ic
        decay = {}
        for h in IC_HORIZONS:
            cumulative = daily_rank_ic(score, excess[h][rows])
            # The single day h days ahead: the score at t against the excess return t+h-1 -> t+h.
            ahead = np.full(score.shape, np.nan)
            shifted = rows + h - 1
            keep = shifted < len(panel.dates)
            ahead[keep] = excess[1][shifted[keep]]
            stats = ic_statistics(cumulative, min_lags=h - 1)
            decay[str(h)] = {"ic_mean": stats["ic_mean"], "t_newey_west": stats["t_newey_west"],
                             "day_ic_mean": ic_statistics(daily_rank_ic(score, ahead))["ic_mean"],
                             "days": stats["days"]}
        deciles[kind] = decile_returns(score, next_excess)
        long = buffered_top_k(score, k, band)
        short = buffered_top_k(-score, k, band, exclude=long)
        long_only = portfolio_returns(equal_weights(long), next_return, trade_cost_bps=trade_cost, lag=lag)
        long_short = portfolio_returns(0.5 * equal_weights(long) - 0.5 * equal_weights(short), next_return,
                                       trade_cost_bps=trade_cost, lag=lag)
        portfolios[f"{kind}/long_only"], portfolios[f"{kind}/long_short"] = long_only, long_short
        models[kind] = {
            "ic": ic_statistics(ic),
            "ic_decay": decay,
            "deciles": deciles[kind],
            "decile_spread": float(deciles[kind][-1] - deciles[kind][0]),
            "params": {**make_ranker(kind).get_params(), **scored.chosen[-1]},
            "chosen": scored.chosen if len(grids[kind]) > 1 else None,
            "portfolios": {},
        }

    def performance(name: str) -> dict[str, Any]:
        p = portfolios[name]
        return {**portfolio_metrics(p, trade_cost),
                **{key: value for key, value in summary(dates, p.net, benchmark.net, trials=counted).items()
                   if key not in ("annual_return", "sharpe", "max_drawdown")}}

    tests = {}
    for kind in all_scores:
        for style in ("long_only", "long_short"):
            models[kind]["portfolios"][style] = performance(f"{kind}/{style}")
        test = sharpe_difference_test(portfolios[f"{kind}/long_only"].net, benchmark.net, resamples=resamples)
        models[kind]["portfolios"]["long_only"]["vs_equal_weight"] = tests[kind] = test
    corrected = holm({kind: t["p_value"] for kind, t in tests.items()})
    family = sum(p is not None for p in corrected.values())
    for kind, test in tests.items():
        test["p_value_corrected"] = corrected[kind]
        test["tests_in_family"] = family
        test["edge"] = corrected[kind] is not None and corrected[kind] < EDGE_P_VALUE
        models[kind]["edge"] = test["edge"]

    folds = len(splits)
    report = {
        "universe": {"symbols": len(panel.symbols), "days": len(panel.dates), "start": str(panel.dates[0]),
                     "end": str(panel.dates[-1])},
        "out_of_sample": {"start": str(dates[0]), "end": str(dates[-1]), "days": len(rows), "folds": folds,
                          "mean_symbols_scored": float(np.mean(data.complete[rows].sum(axis=1)))},
        "protocol": {
            "features": list(FEATURE_NAMES),
            "normalisation": "per-day cross-sectional rank, (rank - 0.5) / count - 0.5",
            "target": f"per-day rank of the {horizon}-day excess return over the equal-weight universe",
            "validation": f"walk-forward, expanding window, refit every {refit_every} days, last training "
                          f"day {horizon} day(s) before each fold (embargo: no training label reaches "
                          f"into the fold); first test day after {min_train_days} days with features",
            "horizon": horizon, "refit_every": refit_every, "min_train_days": min_train_days,
            "embargo_days": horizon,
            "ic": "Spearman correlation of the score with the next-day excess return across the symbols "
                  "with both, per day; t = mean / (std / sqrt(days)); Newey-West t with Bartlett weights "
                  "and floor(4 (days / 100)^(2/9)) lags (at least h - 1 for h-day returns)",
            "portfolios": f"long-only top {k} equal weight, a name held until it leaves the top {band}; "
                          f"long-short: the same at both ends, half long the top {k}, half short the "
                          f"bottom {k}; weights reset daily; benchmark: every listed symbol, equal weight",
            "top_k": k, "band": band, "lag": lag,
            "execution": f"decided at close t, filled at close t+{lag}" if lag
            else "filled at the close the decision was made from (lag 0: not tradeable, research only)",
            "cost_bps": cost_bps, "spread_bps": spread_bps, "trade_cost_bps": trade_cost,
            "cost": "cost_bps plus half the spread per unit of turnover",
            "missing": "a symbol without a bar or a feature is absent from that day's cross-section; "
                       "a position without a return over a day earns 0 (never forward-filled)",
            "edge_test": "studentised circular block bootstrap of each long-only portfolio against the "
                         "equal-weight universe, one-sided, Holm-corrected over the run's tests; "
                         "edge = corrected p < 0.05",
            "resamples": resamples,
            "ridge_alphas": list(ridge_alphas),
            "inner_validation": f"last {INNER_VALIDATION:.0%} of each training window's days, "
                                f"embargoed {horizon} day(s)" if len(ridge_alphas) > 1 else None,
        },
        "trials": trials,
        "trials_counted": counted,
        "models": models,
        "equal_weight": {**portfolio_metrics(benchmark, trade_cost),
                         **{key: value for key, value in summary(dates, benchmark.net, benchmark.net,
                                                                 trials=counted).items()
                            if key in ("sortino", "calmar", "max_drawdown_days", "psr", "deflated_sharpe",
                                       "yearly")}},
        "tests_in_family": family,
        "edge": any(t["edge"] for t in tests.values()),
    }
    series = UniverseSeries(dates, rows, {kind: s.scores for kind, s in all_scores.items()}, ics, deciles,
                            portfolios)
    return json_safe(report), series


def evaluate_universe(
    panel: Panel, *, kinds: Sequence[str] = MODEL_KINDS, horizon: int = 1,
    refit_every: int = DEFAULT_REFIT_EVERY, min_train_days: int = DEFAULT_MIN_TRAIN_DAYS,
    top_k: int | None = None, band: int | None = None, cost_bps: float = DEFAULT_COST_BPS,
    spread_bps: float = DEFAULT_SPREAD_BPS, lag: int = EXECUTION_LAG,
    ridge_alphas: Sequence[float] = (RIDGE_ALPHA,), resamples: int = DEFAULT_RESAMPLES,
    progress: Progress | None = None, prior_trials: int = 0,
) -> dict[str, Any]:
    """JSON-safe report (None for any undefined number): out-of-sample period, protocol, per model
    its rank IC statistics and decay, decile returns, long-only and long-short portfolios with
    their risk figures and the long-only test against the equal-weight universe; the benchmark's
    figures; `trials` (this run's configurations), `trials_counted` (plus `prior_trials`, those
    tried on the universe before: the deflated Sharpe ratio's count) and `edge` (some long-only
    portfolio beat equal weight with a Holm-corrected p < 0.05). `top_k` defaults to a tenth of
    the typical cross-section, `band` to 2 * top_k."""
    report, _ = evaluate_universe_with_series(
        panel, kinds=kinds, horizon=horizon, refit_every=refit_every, min_train_days=min_train_days,
        top_k=top_k, band=band, cost_bps=cost_bps, spread_bps=spread_bps, lag=lag,
        ridge_alphas=ridge_alphas, resamples=resamples, progress=progress, prior_trials=prior_trials)
    return report


# ----------------------------------------------------------------------------- table and chart


def format_universe_table(report: dict[str, Any]) -> str:
    """Plain text: rank IC statistics and decay per model, mean next-day excess return by score
    decile, and the portfolios beside the equal-weight universe with the Holm-corrected tests."""
    p, oos, models = report["protocol"], report["out_of_sample"], report["models"]
    out = [f"{report['universe']['symbols']} symbols, out-of-sample {oos['start']} to {oos['end']} "
           f"({oos['days']} days, {oos['folds']} folds, "
           f"{oos['mean_symbols_scored']:.0f} symbols scored a day)",
           f"{p['validation']}; {report['trials']} configuration(s) tried in this run, "
           f"{report.get('trials_counted', report['trials'])} on this universe (the deflated Sharpe's count)",
           "",
           "daily rank IC of the score against the next-day excess return"]
    header = ["", "IC mean", "IC std", "ICIR", "t", "t (Newey-West)", "positive", "days"]
    body = [[kind, cell(m["ic"]["ic_mean"], "+.4f"), cell(m["ic"]["ic_std"], ".4f"),
             cell(m["ic"]["icir"], "+.3f"), cell(m["ic"]["t"], "+.2f"),
             f"{cell(m['ic']['t_newey_west'], '+.2f')} ({m['ic']['newey_west_lags']} lags)",
             cell(m["ic"]["positive"], "pct"), str(m["ic"]["days"])] for kind, m in models.items()]
    out += aligned(header, body)
    horizons = list(next(iter(models.values()))["ic_decay"]) if models else []
    out += ["", "IC decay: mean rank IC against the excess return over the next h days (Newey-West t)"]
    body = [[kind, *(f"{cell(d['ic_mean'], '+.4f')} ({cell(d['t_newey_west'], '+.1f')})"
                     for d in (m["ic_decay"][h] for h in horizons))] for kind, m in models.items()]
    out += aligned(["", *(f"{h}d" for h in horizons)], body)
    out += ["", "mean next-day excess return by score decile (bps; D1 lowest scores)"]
    body = [[kind, *(cell(v, "bps") for v in m["deciles"]), cell(m["decile_spread"], "bps")]
            for kind, m in models.items()]
    out += aligned(["", *(f"D{i + 1}" for i in range(DECILES)), "D10-D1"], body)
    out += ["", f"portfolios: {p['portfolios']}; {p['execution']}; {p['trade_cost_bps']:g} bps per unit "
                f"of turnover; p: {p['edge_test']}"]
    header = ["", "ann. return", "gross", "Sharpe", "max DD", "turnover/yr", "IR vs EW", "DSR",
              "dSharpe vs EW", "90% interval", "p (Holm)", "edge"]
    body = []

    def row(name: str, m: dict[str, Any], test: dict[str, Any] | None) -> list[str]:
        cells = [name, cell(m["annual_return"], "pct"), cell(m["gross_annual_return"], "pct"),
                 cell(m["sharpe"], ".2f"), cell(m["max_drawdown"], "pct"), cell(m["turnover"], ".1f"),
                 cell(m.get("information_ratio"), "+.2f"), cell(m.get("deflated_sharpe"), ".3f")]
        if test:
            low, high = test.get("interval_90") or (None, None)
            cells += [cell(test.get("difference"), "+.3f"), f"[{cell(low, '+.2f')}, {cell(high, '+.2f')}]",
                      cell(test.get("p_value_corrected"), ".3f"), "EDGE" if test.get("edge") else "no"]
        else:
            cells += ["", "", "", ""]
        return cells

    for kind, m in models.items():
        for style, perf in m["portfolios"].items():
            body.append(row(f"{kind} {style.replace('_', '-')}", perf, perf.get("vs_equal_weight")))
    body.append(row("equal weight", report["equal_weight"], None))
    out += aligned(header, body)
    out.append(f"edge (a long-only portfolio beats the equal-weight universe, corrected p < 0.05): "
               f"{'yes' if report['edge'] else 'no'}")
    return "\n".join(out)


def plot_universe(report: dict[str, Any], series: UniverseSeries, path: str | Path) -> Path:
    """PNG: cumulative daily rank IC per model, mean next-day excess return by score decile, and
    the after-cost equity curves of the portfolios and the equal-weight universe."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    fig = Figure(figsize=(11, 11), layout="constrained")
    ic_ax, decile_ax, equity_ax = fig.subplots(3, 1, height_ratios=[1, 1, 1.6])
    for kind, ic in series.ic.items():
        stats = report["models"][kind]["ic"]
        ic_ax.plot(series.dates, np.cumsum(np.nan_to_num(ic)), lw=1,
                   label=f"{kind} (mean {cell(stats['ic_mean'], '+.4f')}, t {cell(stats['t'], '+.1f')})")
    ic_ax.axhline(0, color="grey", lw=0.6)
    ic_ax.set_ylabel("cumulative daily rank IC")
    ic_ax.legend(loc="upper left", fontsize=8)
    width = 0.8 / max(1, len(series.deciles))
    positions = np.arange(DECILES)
    for i, (kind, means) in enumerate(series.deciles.items()):
        decile_ax.bar(positions + i * width, 1e4 * means, width, label=kind)
    decile_ax.set_xticks(positions + width * (len(series.deciles) - 1) / 2,
                         [f"D{i + 1}" for i in range(DECILES)])
    decile_ax.axhline(0, color="grey", lw=0.6)
    decile_ax.set_ylabel("mean next-day excess (bps)")
    decile_ax.legend(loc="upper left", fontsize=8)
    for name, p in series.portfolios.items():
        style = {"color": "black", "lw": 1.4} if name == "equal_weight" else {"lw": 1}
        equity_ax.plot(series.dates, np.cumprod(1 + p.net), label=name.replace("/", " "), **style)
    equity_ax.set_yscale("log")
    plain = FuncFormatter(lambda y, _: f"{y:g}")
    equity_ax.yaxis.set_major_formatter(plain)
    equity_ax.yaxis.set_minor_formatter(plain)
    cost = report["protocol"]["trade_cost_bps"]
    equity_ax.set_ylabel(f"growth of 1 (after {cost:g} bps per unit traded)")
    equity_ax.set_title(f"traded {report['protocol']['lag']} bar(s) late")
    equity_ax.legend(loc="upper left", fontsize=8)
    for ax in (ic_ax, decile_ax, equity_ax):
        ax.grid(alpha=0.3)
    fig.suptitle(f"{report['universe']['symbols']} symbols, out-of-sample {report['out_of_sample']['start']} "
                 f"to {report['out_of_sample']['end']}")
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path

