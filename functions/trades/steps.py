"""The trade state machine's tasks, one handler per state of `statemachines/trade.asl.json`.

Quote (the price both participants use), Account (reserve, commit or release cash and shares),
Ledger (PREPARE TRANSACTION, COMMIT PREPARED or ROLLBACK PREPARED of the ledger row) and Decide
(the commit/abort decision, written once per trade). Each delegates to `stockpred.trading.steps`, which
validates the event as if anyone could invoke the function: a recorded trade whose stored order
matches, the stored quote's prices, and only the phase transitions the saga allows. A refusal
raises `steps.InvalidStep` and moves nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from stockpred.observability import logs
from stockpred.trading import saga, steps

log = logs.get_logger("saga")


def _step(run: Callable[[Any], dict[str, Any]]) -> Callable[[Any, Any], dict[str, Any]]:
    """A task handler: takes the correlation id the state machine passes beside the step's own
    fields (validated without it), and logs with the trade's transaction id and execution ARN."""

    @functools.wraps(run)
    def handler(event: Any, context: Any) -> dict[str, Any]:
        cid = None
        if isinstance(event, dict):
            event = dict(event)
            cid = event.pop("correlation_id", None)
        logs.invocation(context, cid)
        fields = event if isinstance(event, dict) else {}
        trade = fields.get("trade")
        txid = (trade if isinstance(trade, dict) else fields).get("transaction_id")
        if isinstance(txid, str) and len(txid) <= 64:
            logs.bind(transaction_id=txid, execution_arn=saga.execution_arn(txid))
        step = fields.get("step")
        name = f"{run.__name__.removesuffix('_step')}{f' {step}' if isinstance(step, str) else ''}"
        try:
            result = run(event)
        except Exception as exc:
            log.warning("%s failed: %s", name, exc, extra={"fields": {"error_type": type(exc).__name__}})
            raise
        log.info("%s done", name, extra={"fields": {"result": result}})
        return result

    return handler


quote = _step(steps.quote_step)
account = _step(steps.account_step)
ledger = _step(steps.ledger_step)
decide = _step(steps.decide_step)
