"""Scheduled retraining: a fresh model with its walk-forward record for every symbol.

Runs on the template's `Schedule` event (devstack fires it locally) for RETRAIN_SYMBOLS
(comma-separated) or else every symbol the market data knows, and on an asynchronous invoke
from the predict function (`{"symbols": [...], "on_demand": true, "lease_tokens": {...}}`) for a
symbol without a model, whose training lease it holds while it trains
(stockml.training_lease.TrainingLease: renewed by a thread, so a training killed midway frees the
symbol within TRAINING_LEASE_SECONDS) and frees when done, trained or not. Stops starting new
symbols when the invocation's remaining time runs low; what is left is retrained next time.

After the symbols, a scheduled run ranks every stored universe (stockml.universe_training: the
ranker's walk-forward record, a fit on all history, the day's ranking published for the API);
`{"universes": [...]}` ranks only those, and no symbol.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

from stockml import training, training_lease, universe_ranks
from stockml.universe_data import load_universe_panel
from stockml.universe_training import rank_and_publish
from stockpred import config
from stockpred.market import market_data
from stockpred.market.prices import ProviderUnavailable, UnknownSymbol
from stockpred.observability import metrics
from stockpred.observability.logs import get_logger, lambda_handler
from stockpred.predictions import universes

log = get_logger("retrain")
RESERVE_MS = 120_000


@lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    event = event or {}
    on_demand = bool(event.get("on_demand"))
    requested = [str(s).upper() for s in event.get("symbols") or []]
    named_universes = [str(u) for u in event.get("universes") or []]
    tokens = {str(s).upper(): str(t) for s, t in (event.get("lease_tokens") or {}).items()}
    if named_universes:
        symbols = []
    else:
        symbols = requested or list(config.load().retrain_symbols) or [
            i.symbol for i in market_data.default().symbols()]
    done: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for symbol in symbols:
        lease: AbstractContextManager[Any] = (
            training_lease.TrainingLease(symbol, tokens.get(symbol)) if on_demand else nullcontext())
        try:
            with lease:
                if context is not None and context.get_remaining_time_in_millis() < RESERVE_MS:
                    skipped[symbol] = "out of time"
                    continue
                hist, _ = market_data.default().history(symbol)
                if not on_demand:  # an on-demand training was counted when Predict started it
                    metrics.count("TrainingsStarted")
                meta = training.train(symbol, hist.bars, source=hist.source)
                done[symbol] = meta["version"]
                metrics.count("ModelsTrained")
        except (UnknownSymbol, ProviderUnavailable, training.NotEnoughHistory) as exc:
            skipped[symbol] = f"{type(exc).__name__}: {exc}"
    ranked: dict[str, str] = {}
    if named_universes or not (on_demand or requested):
        names = named_universes or [u["name"] for u in universes.all_universes()]
        for name in names:
            if context is not None and context.get_remaining_time_in_millis() < RESERVE_MS:
                skipped[f"universe {name}"] = "out of time"
                continue
            ranked_as_of = _rank_universe(name, skipped)
            if ranked_as_of:
                ranked[name] = ranked_as_of
                metrics.count("UniversesRanked")
    log.info("retrain finished", extra={"fields": {"trained": done, "ranked": ranked, "skipped": skipped}})
    return {"trained": done, "ranked": ranked, "skipped": skipped}


def _rank_universe(name: str, skipped: dict[str, str]) -> str | None:
    """Trains the universe's ranker and publishes its day's ranking; the ranking's date, or None
    (the reason in `skipped`)."""
    try:
        loaded = load_universe_panel(name)
        ranking = rank_and_publish(name, loaded.panel, universe_ranks.rankings(), missing=loaded.missing)
    except (universes.UniverseError, universes.UnknownUniverse, ValueError) as exc:
        skipped[f"universe {name}"] = f"{type(exc).__name__}: {exc}"
        return None
    return ranking["as_of"]
