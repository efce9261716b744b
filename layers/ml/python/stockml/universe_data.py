"""A stored universe's daily bars as one aligned panel, from the market data providers.

Each member's history comes through the same read-through cache and provider chain as any symbol
(stockpred.market.market_data: split-adjusted, imported CSVs included); a partial last bar is left out
(stockpred.market.bar_checks). A member no provider knows, or whose provider is down, is left out and
named in `missing` with the reason, rather than failing the whole universe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from stockml.panel import Panel, panel_from_bars
from stockpred.market import market_data
from stockpred.market.bar_checks import complete_bars
from stockpred.market.prices import ProviderUnavailable, UnknownSymbol
from stockpred.predictions import universes


@dataclass(frozen=True)
class UniversePanel:
    name: str
    panel: Panel
    missing: dict[str, str]  # symbol -> why it is not in the panel


def load_universe_panel(name: str, progress: Callable[[int, int], None] | None = None) -> UniversePanel:
    """The universe's members' complete daily bars, aligned on the union of their dates.
    universes.UnknownUniverse if there is no such universe; ValueError if fewer than two members
    have any bars."""
    members = universes.get(name)["symbols"]
    data = market_data.default()
    bars, missing = {}, {}
    for done, symbol in enumerate(members, start=1):
        try:
            history, _ = data.history(symbol)
            bars[symbol] = complete_bars(history.bars)
        except (UnknownSymbol, ProviderUnavailable) as exc:
            missing[symbol] = f"{type(exc).__name__}: {exc or 'no data'}"
        if progress:
            progress(done, len(members))
    bars = {symbol: b for symbol, b in bars.items() if b}
    if len(bars) < 2:
        raise ValueError(f"universe {name}: fewer than two members have daily bars "
                         f"({len(missing)} missing)")
    return UniversePanel(name, panel_from_bars(bars), missing)
