"""Scheduled recovery: finishes, by the durable decision, every trade a crash left in doubt."""

from __future__ import annotations

import os
from typing import Any

from stockpred import trading


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    given = (event or {}).get("older_than_seconds")
    older = float(given if given is not None else os.environ.get("RECOVERY_AFTER_SECONDS", "30"))
    return trading.recover(older_than_s=older)
