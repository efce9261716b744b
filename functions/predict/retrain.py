"""Scheduled retraining: a fresh model with its walk-forward record for every symbol.

Runs on the template's `Schedule` event (devstack fires it locally) for RETRAIN_SYMBOLS
(comma-separated) or else every symbol the market data knows, and on an asynchronous invoke
from the predict function (`{"symbols": [...], "on_demand": true, "lease_tokens": {...}}`) for a
symbol without a model, whose training lease it holds while it trains (stockml.signals.TrainingLease:
renewed by a thread, so a training killed midway frees the symbol within TRAINING_LEASE_SECONDS)
and frees when done, trained or not. Stops starting new symbols when the invocation's remaining
time runs low; what is left is retrained next time.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

from stockml import signals, training
from stockpred import config, market
from stockpred.logs import get_logger, lambda_handler
from stockpred.prices import ProviderUnavailable, UnknownSymbol

log = get_logger("retrain")
RESERVE_MS = 120_000


@lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    on_demand = bool((event or {}).get("on_demand"))
    requested = [str(s).upper() for s in (event or {}).get("symbols") or []]
    tokens = {str(s).upper(): str(t) for s, t in ((event or {}).get("lease_tokens") or {}).items()}
    symbols = requested or list(config.load().retrain_symbols) or [
        i.symbol for i in market.default().symbols()]
    done: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for symbol in symbols:
        lease: AbstractContextManager[Any] = (
            signals.TrainingLease(symbol, tokens.get(symbol)) if on_demand else nullcontext())
        try:
            with lease:
                if context is not None and context.get_remaining_time_in_millis() < RESERVE_MS:
                    skipped[symbol] = "out of time"
                    continue
                hist, _ = market.default().history(symbol)
                meta = training.train(symbol, hist.bars, source=hist.source)
                done[symbol] = meta["version"]
        except (UnknownSymbol, ProviderUnavailable, training.NotEnoughHistory) as exc:
            skipped[symbol] = f"{type(exc).__name__}: {exc}"
    log.info("retrain finished", extra={"fields": {"trained": done, "skipped": skipped}})
    return {"trained": done, "skipped": skipped}
