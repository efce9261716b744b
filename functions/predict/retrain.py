"""Scheduled retraining: a fresh model with its walk-forward record for every symbol.

Runs on the template's `Schedule` event (devstack fires it locally). Symbols come from
RETRAIN_SYMBOLS (comma-separated) or else every symbol the market data knows. Stops starting
new symbols when the invocation's remaining time runs low; what is left is retrained next time.
"""

from __future__ import annotations

import os
from typing import Any

from stockpred import market, signals
from stockpred.logs import get_logger
from stockpred.prices import ProviderUnavailable, UnknownSymbol

log = get_logger("retrain")
RESERVE_MS = 120_000


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    wanted = os.environ.get("RETRAIN_SYMBOLS", "")
    symbols = [s.strip().upper() for s in wanted.split(",") if s.strip()] or [
        i.symbol for i in market.default().symbols()]
    done: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for symbol in symbols:
        if context is not None and context.get_remaining_time_in_millis() < RESERVE_MS:
            skipped[symbol] = "out of time"
            continue
        try:
            hist, _ = market.default().history(symbol)
            meta = signals.train(symbol, hist.bars, source=hist.source)
            done[symbol] = meta["version"]
        except (UnknownSymbol, ProviderUnavailable, signals.NotEnoughHistory) as exc:
            skipped[symbol] = f"{type(exc).__name__}: {exc}"
    log.info("retrain finished", extra={"fields": {"trained": done, "skipped": skipped}})
    return {"trained": done, "skipped": skipped}
