"""The trade state machine's Quote task: the price both participants of a trade use."""

from __future__ import annotations

from typing import Any

from stockpred import trading


def quote(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return trading.quote_step(event)
