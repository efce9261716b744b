"""Stored predictions (PostgreSQL): the `predictions` rows the predict function serves and lists,
and the `models` row each of them names.

A prediction is stored once per (symbol, as_of, model_version); asking again returns the stored
row (`find_or_store` makes one only when there is none yet). Once the next day's close is known,
the stored row's outcome is filled in (`fill_outcomes`, which `history` runs before it lists). A
row reads as the API's body, its predicted close explained in words (`prediction_words`).

On the predict function's path (numpy only, no training stack); training records its models'
rows here too (`record_model`).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from stockml.volatility import TRADING_DAYS
from stockpred.market.bar_checks import complete_bars
from stockpred.stores import postgres

if TYPE_CHECKING:
    from stockpred.market.prices import Bar

_COLUMNS = ("id, symbol, as_of, model_version, last_close, predicted_close, expected_return, "
            "probability_up, action, edge, record, created_at, outcome_date, realised_close, "
            "realised_return, correct, risk")

_recorded: set[str] = set()


def record_model(meta: dict[str, Any]) -> None:
    """Makes sure the model's row exists (once per version in a warm process, not per request)."""
    if meta["version"] in _recorded:
        return
    with postgres.transaction() as cur:
        cur.execute(
            """INSERT INTO models (version, symbol, kind, trained_at, sha256, metadata)
               VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (version) DO NOTHING""",
            (meta["version"], meta["symbol"], meta["kind"], meta["trained_at"], meta["sha256"],
             json.dumps(meta)),
        )
    _recorded.add(meta["version"])


class NewPrediction(NamedTuple):
    """What a model says about a symbol's last complete bar, to be stored (stockml.signals)."""

    last_close: float
    predicted_close: float
    expected_return: float
    probability_up: float
    action: str
    record: dict[str, Any]  # the model's out-of-sample record, with its `edge`
    risk: dict[str, Any]  # stockml.signals.risk_for


def find_or_store(symbol: str, as_of: dt.date, model_version: str,
                  make: Callable[[], NewPrediction]) -> tuple[dict[str, Any], bool]:
    """The stored prediction for (symbol, as_of, model_version), and whether it is new: `make` is
    called, in the transaction that looked first, only when none is stored yet. When a concurrent
    request stores it first, that row is the answer (not new)."""
    with postgres.transaction() as cur:
        row = _stored(cur, symbol, as_of, model_version)
        if row is not None:
            return _body(row), False
        new = make()
        cur.execute(
            f"""INSERT INTO predictions (id, symbol, as_of, model_version, last_close, predicted_close,
                   expected_return, probability_up, action, edge, record, risk)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (symbol, as_of, model_version) DO NOTHING RETURNING {_COLUMNS}""",
            (str(uuid.uuid4()), symbol, as_of, model_version, new.last_close, new.predicted_close,
             new.expected_return, new.probability_up, new.action, bool(new.record["edge"]),
             json.dumps(new.record), json.dumps(new.risk)),
        )
        row = cur.fetchone()
        if row is not None:
            return _body(row), True
        # A concurrent request stored it after this transaction's first read: read it now.
        return _body(_stored(cur, symbol, as_of, model_version)), False


def _stored(cur: Any, symbol: str, as_of: dt.date, version: str) -> tuple | None:
    cur.execute(f"SELECT {_COLUMNS} FROM predictions WHERE symbol = %s AND as_of = %s "
                "AND model_version = %s", (symbol, as_of, version))
    return cur.fetchone()


def _body(row: tuple) -> dict[str, Any]:
    (pid, symbol, as_of, version, last_close, predicted, exp_ret, prob, action, edge, record,
     created, outcome_date, realised_close, realised_return, correct, risk) = row
    return {
        "symbol": symbol,
        "prediction": round(float(predicted), 4),
        "action": action,
        "timestamp": created.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        "_id": str(pid),
        "probability": round(prob, 4),
        "confidence": round(max(prob, 1 - prob), 4),
        "expected_return": round(exp_ret, 6),
        "prediction_explained": prediction_words(prob, exp_ret, float(predicted), risk),
        "last_close": round(float(last_close), 4),
        "model_version": version,
        "as_of": as_of.isoformat(),
        "edge": edge,
        "record": record,
        "volatility": risk and risk["volatility"],
        "exposure": risk and risk["exposure"],
        "sizing": risk and {k: v for k, v in risk.items() if k not in ("volatility", "exposure")},
        "outcome": None if correct is None else {
            "date": outcome_date.isoformat(),
            "close": round(float(realised_close), 4),
            "return": round(realised_return, 6),
            "correct": correct,
        },
    }


def prediction_words(prob_up: float, expected: float, predicted: float, risk: dict[str, Any] | None) -> str:
    """Why the predicted close is what it is, for a reader who is not a statistician."""
    vol = (risk or {}).get("volatility") or {}
    swing = vol.get("next_day")
    lean = "an up day" if prob_up >= 0.5 else "a down day"
    chance = prob_up if prob_up >= 0.5 else 1 - prob_up
    words = f"The model gives a {chance:.1%} chance of {lean}"
    if swing:
        words += f"; the next day's swing is forecast at about {swing / math.sqrt(TRADING_DAYS):.2%}"
    return (words + f". Together that is an expected move of {expected:+.3%}, a predicted close of "
            f"{predicted:,.2f}: the lean times the typical size of a day's move, so it points the same "
            "way as the buy/sell call.")


def fill_outcomes(symbol: str, bars: list[Bar]) -> int:
    """Fills the realised next close of stored predictions whose next day is now known."""
    by_date = {b.date: i for i, b in enumerate(bars)}
    updated = 0
    with postgres.transaction() as cur:
        cur.execute("SELECT id, as_of, last_close, action FROM predictions "
                    "WHERE symbol = %s AND correct IS NULL", (symbol,))
        for pid, as_of, last_close, action in cur.fetchall():
            i = by_date.get(as_of)
            if i is None or i + 1 >= len(bars):
                continue
            nxt = bars[i + 1]
            realised = nxt.close / float(last_close) - 1
            cur.execute(
                """UPDATE predictions SET outcome_date = %s, realised_close = %s,
                       realised_return = %s, correct = %s, updated_at = now() WHERE id = %s""",
                (nxt.date, nxt.close, realised, (realised > 0) == (action == "buy"), pid),
            )
            updated += 1
    return updated


def history(symbol: str, bars: list[Bar], limit: int) -> list[dict[str, Any]]:
    """The symbol's stored predictions, newest first, with outcomes filled where now known (from
    complete bars only: a partial bar's price is not an outcome)."""
    fill_outcomes(symbol, complete_bars(bars))
    with postgres.transaction() as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM predictions WHERE symbol = %s "
                    "ORDER BY as_of DESC, created_at DESC LIMIT %s", (symbol, limit))
        return [_body(r) for r in cur.fetchall()]
