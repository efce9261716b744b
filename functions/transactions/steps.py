"""The trade state machine's ledger tasks (PREPARE / COMMIT / ROLLBACK PREPARED) and its decision."""

from __future__ import annotations

from typing import Any

from stockpred import trading


def ledger(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return trading.ledger_step(event)


def decide(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return trading.decide_step(event)
