"""Scheduled recovery: finishes, by the durable decision, every trade a crash left in doubt."""

from __future__ import annotations

from typing import Any

from stockpred import config
from stockpred.observability import logs
from stockpred.trading import recovery


@logs.lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    given = (event or {}).get("older_than_seconds")
    older = float(given) if given is not None else config.load().recovery_after_s
    return recovery.recover(older_than_s=older)
