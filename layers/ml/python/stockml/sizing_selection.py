"""Volatility-model choice and sizing rules chosen walk-forward, and the volatility forecasts' scores.

Volatility forecasts (stockml.volatility) are scored with QLIKE and MSE against the next 1, 5 and
21 days' squared returns, with Diebold-Mariano tests against the naive forecast
(`volatility_scores`). Sized strategies (stockml.sizing): plain volatility targeting and, per
model, volatility targeting scaled by its conviction, with the same costs and lag as the long/flat
strategy (`size_strategies`). Every choice behind them (the volatility model, the target, the
horizon, the conviction strength) is made at each refit from days before it only.
Training-side tooling: numpy, and scipy through stockml.volatility_fit; no pandas.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from stockml.features import Frame, build_targets
from stockml.scoring import mean_sharpe, strategy_returns
from stockml.sizing import (
    CONVICTION_STRENGTHS,
    DEFAULT_MAX_EXPOSURE,
    SIZING_HORIZONS,
    TARGET_MULTIPLES,
    SizingRule,
    exposure,
    realised_volatility_so_far,
)
from stockml.volatility import future_mean_square, qlike, squared_error
from stockml.volatility_fit import diebold_mariano
from stockml.walk_forward import EXECUTION_LAG, executed

MIN_SELECTION_DAYS = 126
DEFAULT_VOL_KIND = "garch"
DEFAULT_RULE = SizingRule()


def volatility_scores(forecasts: dict[str, dict[int, np.ndarray]], returns: np.ndarray,
                      rows: np.ndarray) -> dict[str, dict[str, Any]]:
    """Per kind and horizon on `rows`: mean QLIKE and MSE against the realised mean squared return
    of the next h days, and one-sided Diebold-Mariano p-values of beating the naive forecast."""
    out: dict[str, dict[str, Any]] = {}
    for kind, by_h in forecasts.items():
        out[kind] = {}
        for h, forecast in by_h.items():
            realised = future_mean_square(returns, h)[rows]
            f = forecast[rows]
            ok = np.isfinite(realised) & np.isfinite(f) & (f > 0)
            if "naive" in forecasts:
                naive = forecasts["naive"][h][rows]
                ok &= np.isfinite(naive) & (naive > 0)
            score: dict[str, Any] = {
                "qlike": float(qlike(f[ok], realised[ok]).mean()),
                "mse": float(squared_error(f[ok], realised[ok]).mean()),
                "days": int(ok.sum()),
            }
            if kind != "naive" and "naive" in forecasts:
                naive = forecasts["naive"][h][rows][ok]
                score["dm_qlike_p"] = diebold_mariano(qlike(naive, realised[ok]), qlike(f[ok], realised[ok]),
                                                      horizon=h)["p_value"]
                score["dm_mse_p"] = diebold_mariano(squared_error(naive, realised[ok]),
                                                    squared_error(f[ok], realised[ok]), horizon=h)["p_value"]
            out[kind][str(h)] = score
    return out


def decision_rows(first_judged: int, start: int, end: int, every: int) -> list[int]:
    """Rows where choices are made: every `every` rows, aligned on the first judged day."""
    before = list(range(first_judged - every, start, -every))[::-1]
    return [start, *before, *range(first_judged, end, every)] if start < first_judged else [
        *range(first_judged, end, every)]


def select_volatility_kind(forecasts: dict[str, dict[int, np.ndarray]], returns: np.ndarray, start: int,
                           decide_at: int) -> str:
    """The kind whose one-day forecasts made on rows [start, decide_at - 1] had the lowest mean
    QLIKE: every such forecast's target is known by decide_at's close."""
    realised = future_mean_square(returns, 1)
    best, best_loss = None, math.inf
    for kind, by_h in forecasts.items():
        f, y = by_h[1][start:decide_at], realised[start:decide_at]
        ok = np.isfinite(f) & np.isfinite(y) & (f > 0)
        if ok.sum() == 0:
            continue
        loss = float(qlike(f[ok], y[ok]).mean())
        if loss < best_loss:
            best, best_loss = kind, loss
    if best is None:
        return DEFAULT_VOL_KIND if DEFAULT_VOL_KIND in forecasts else next(iter(forecasts))
    return best


@dataclass
class SizedStrategies:
    """Decided positions of the sized strategies on every frame row (0 before the first decision;
    a model's sized strategy holds plain volatility targeting's before its first judged day), the
    choices made at each decision row, and the next-day simple return of every row."""

    positions: dict[str, np.ndarray]
    choices: dict[str, list[dict[str, Any]]]
    next_return: np.ndarray


def size_strategies(frame: Frame, forecasts: dict[str, dict[int, np.ndarray]], returns: np.ndarray,
                    prob_up: dict[str, np.ndarray], *, start: int, first_judged: int, refit_every: int,
                    cost_bps: float, max_exposure: float = DEFAULT_MAX_EXPOSURE,
                    lag: int = EXECUTION_LAG) -> SizedStrategies:
    """Plain volatility targeting ("vol_target") and, per direction model, volatility targeting
    scaled by its conviction ("sized_<kind>"), every choice made on past days only (nested).

    At each decision row d: the volatility kind with the lowest past QLIKE; then for plain
    volatility targeting the rule (target multiple x horizon) whose after-cost Sharpe over rows
    before d was highest, among candidates with at least MIN_SELECTION_DAYS past days (else the
    default rule), each candidate traded `lag` bars late; and for a model, on top of that very
    rule, the conviction strength chosen the same way. A model's sized strategy thus differs from
    plain volatility targeting by its direction calls alone: with strength 0 they are the same.
    Positions are the decisions (`executed` gives what is held). `prob_up[kind]` is NaN where the
    model made no out-of-sample call.
    """
    n = len(frame)
    next_return = build_targets(frame).next_return
    target_vol = realised_volatility_so_far(returns)
    decisions = decision_rows(first_judged, start, n, refit_every)
    vol_choice = {d: select_volatility_kind(forecasts, returns, start, d) for d in decisions}

    def plain_candidates() -> dict[SizingRule, np.ndarray]:
        out = {}
        for m in TARGET_MULTIPLES:
            for h in SIZING_HORIZONS:
                rule = SizingRule(m, h, 0.0, max_exposure)
                pos = np.zeros(n)
                for d, end in zip(decisions, [*decisions[1:], n], strict=True):
                    pos[d:end] = exposure(forecasts[vol_choice[d]][h][d:end], m * target_vol[d:end], rule)
                out[rule] = pos
        return out

    def best(nets: dict[Any, np.ndarray], past: slice) -> Any:
        scores = {key: mean_sharpe(net[past]) for key, net in nets.items()}
        finite = {key: v for key, v in scores.items() if math.isfinite(v)}
        return max(finite, key=finite.__getitem__) if finite else None

    def compose(name: str, cands: dict[Any, np.ndarray], first: int, default: Callable[[int], Any],
                rule_at: Callable[[Any, int], SizingRule], before: np.ndarray | None = None) -> np.ndarray:
        known = np.nan_to_num(next_return)
        nets = {key: strategy_returns(executed(pos, lag), known, cost_bps) for key, pos in cands.items()}
        final = np.zeros(n) if before is None else before.copy()
        choices[name] = []
        for d, end in zip(decisions, [*decisions[1:], n], strict=True):
            if d < first:
                continue
            key = best(nets, slice(first, d)) if d - first >= MIN_SELECTION_DAYS else None
            key = default(d) if key is None else key
            final[d:end] = cands[key][d:end]
            choices[name].append({"row": d, "volatility": vol_choice[d], **rule_at(key, d).to_dict()})
        return final

    def conviction_candidates(prob: np.ndarray) -> dict[float, np.ndarray]:
        """Per conviction strength: plain volatility targeting's own rule at every decision,
        scaled by the model's conviction (strength 0 is plain volatility targeting itself)."""
        out = {}
        for strength in CONVICTION_STRENGTHS:
            pos = np.zeros(n)
            for d, end in zip(decisions, [*decisions[1:], n], strict=True):
                rule = with_strength(strength, d)
                f = forecasts[vol_choice[d]][rule.horizon][d:end]
                pos[d:end] = exposure(f, rule.target_multiple * target_vol[d:end], rule, prob[d:end])
            out[strength] = pos
        return out

    choices: dict[str, list[dict[str, Any]]] = {}
    plain_default = SizingRule(DEFAULT_RULE.target_multiple, DEFAULT_RULE.horizon, 0.0, max_exposure)
    positions = {"vol_target": compose("vol_target", plain_candidates(), start,
                                       lambda d: plain_default, lambda rule, d: rule)}
    plain_rule = {c["row"]: SizingRule(c["target_multiple"], c["horizon"], 0.0, max_exposure)
                  for c in choices["vol_target"]}

    def with_strength(strength: float, d: int) -> SizingRule:
        return replace(plain_rule[d], conviction_strength=strength)

    for kind, prob in prob_up.items():
        positions[f"sized_{kind}"] = compose(f"sized_{kind}", conviction_candidates(prob), first_judged,
                                             lambda d: 0.0, with_strength, before=positions["vol_target"])
    return SizedStrategies(positions, choices, next_return)


def choice_summary(choices: list[dict[str, Any]], dates: np.ndarray, first_judged: int) -> dict[str, Any]:
    judged = [c for c in choices if c["row"] >= first_judged]
    count: dict[str, dict[str, int]] = {}
    for key in ("volatility", "target_multiple", "horizon", "conviction_strength"):
        values = [str(c[key]) for c in judged]
        count[key] = {v: values.count(v) for v in sorted(set(values))}
    last = {k: v for k, v in judged[-1].items() if k != "row"} if judged else None
    return {"decisions": len(judged), "counts": count, "last": last,
            "last_date": str(dates[judged[-1]["row"]]) if judged else None}
