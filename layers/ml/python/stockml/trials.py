"""Every test counted: a symbol's trial record, and when its edge may be judged again.

A symbol is retrained every weekday, and each retrain re-evaluates it. Judged afresh at 5% every
day, a symbol with no skill would get a new chance at `edge: true` each day. Instead:

- **A growing record, judged at most every JUDGE_EVERY_DAYS trading days.** Between judgements
  the last verdict stands, with the date its record ended (`judged_through`); a retrain whose
  record has grown by fewer days changes the record's numbers, not the verdict.
- **Each judgement spends part of 5%.** The k-th judgement of a symbol needs a corrected p below
  alpha_k = 0.05 x 6 / (pi^2 k^2); the alpha_k sum to 0.05, so the chance that a symbol with no
  skill is ever flagged, over any number of retrains, is at most 5% (a union bound), and so is
  the share of its days with `edge: true`. A slow test checks it by simulating a year of retrains.
- **Every configuration counted.** Each evaluation adds the configurations it tried (direction
  models x volatility models x sizing rules) to the symbol's count, which the deflated Sharpe
  ratio (stockml.performance) takes as its number of trials.

The record is a small JSON document kept with the model registry (`models/<SYMBOL>/trials.json`).
A universe's ranker keeps one the same way (`universes/<NAME>/trials.json`): its ranking's edge is
judged by the same rules, and an `evaluate-universe` run counts its configurations without a
judgement. Pure functions here; stockml.training and stockml.universe_training read and write them.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from stockml.edge import EDGE_P_VALUE

JUDGE_EVERY_DAYS = 63


def alpha_for(judgement: int) -> float:
    """The significance level of a symbol's `judgement`-th judgement (1, 2, ...)."""
    if judgement < 1:
        raise ValueError("judgements are counted from 1")
    return EDGE_P_VALUE * 6 / (math.pi ** 2 * judgement ** 2)


def empty(symbol: str) -> dict[str, Any]:
    """The trial record of a symbol (or universe) never evaluated."""
    return {"symbol": symbol, "configurations": 0, "evaluations": 0, "judgements": []}


def count(trials: dict[str, Any], configurations: int) -> dict[str, Any]:
    """The record with one more evaluation of `configurations` configurations, judged or not."""
    return {**trials, "configurations": trials.get("configurations", 0) + configurations,
            "evaluations": trials.get("evaluations", 0) + 1,
            "judgements": list(trials.get("judgements", []))}


def is_due(trials: dict[str, Any], record_days: int) -> bool:
    """Whether a record of `record_days` trading days may be judged: never judged before, or
    grown by JUDGE_EVERY_DAYS since the last judgement."""
    judgements = trials.get("judgements") or []
    return not judgements or record_days - judgements[-1]["record_days"] >= JUDGE_EVERY_DAYS


def judge(trials: dict[str, Any], *, record_end: str, record_days: int, p_value: float | None,
          configurations: int, now: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Counts one evaluation and judges the edge if it is due; returns (the new trial record,
    the verdict the model carries).

    Due when the symbol was never judged, or its record has grown by JUDGE_EVERY_DAYS trading days
    or more since the last judgement (`record_days` is the record's length in trading days). The
    verdict is `edge`, the judgement's number, alpha and p-value, `judged_through` (the record's
    last day then) and whether it was made now (`rejudged`)."""
    now = now or dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    updated = count(trials, configurations)
    judgements = updated["judgements"]
    due = is_due(trials, record_days)
    last = judgements[-1] if judgements else None
    if due or last is None:
        number = len(judgements) + 1
        alpha = alpha_for(number)
        edge = p_value is not None and math.isfinite(p_value) and p_value < alpha
        last = {"number": number, "judged_at": now, "judged_through": record_end,
                "record_days": record_days, "alpha": alpha, "p_value": p_value, "edge": edge}
        judgements.append(last)
    verdict = {**last, "rejudged": due, "next_judgement_after_days": last["record_days"] + JUDGE_EVERY_DAYS,
               "configurations_tried": updated["configurations"]}
    return updated, verdict
