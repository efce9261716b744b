"""The trade state machine's tasks, one handler per state of `statemachines/trade.asl.json`.

Quote (the price both participants use), Account (reserve, commit or release cash and shares),
Ledger (PREPARE TRANSACTION, COMMIT PREPARED or ROLLBACK PREPARED of the ledger row) and Decide
(the commit/abort decision, written once per trade). Each delegates to `stockpred.trading`, which
validates the event as if anyone could invoke the function: a recorded trade whose stored order
matches, the stored quote's prices, and only the phase transitions the saga allows. A refusal
raises `trading.InvalidStep` and moves nothing.
"""

from __future__ import annotations

from typing import Any

from stockpred import trading


def quote(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return trading.quote_step(event)


def account(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return trading.account_step(event)


def ledger(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return trading.ledger_step(event)


def decide(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return trading.decide_step(event)
