"""The trade state machine's account tasks: reserve (prepare), commit, release (abort)."""

from __future__ import annotations

from typing import Any

from stockpred import trading


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return trading.account_step(event)
