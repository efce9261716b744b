"""A user's paper portfolio: cash, holdings at average cost, their market value and P&L.

Prices come from the stocks cache (market_data.MarketData.quote). Money leaves as strings with two
decimals and as integer cents; nothing passes through a float on its way to the user.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from stockpred.market import market_data
from stockpred.market.prices import ProviderUnavailable, UnknownSymbol
from stockpred.trading.accounts import Accounts
from stockpred.trading.money import money, price_cents


def portfolio(user_id: str, accounts: Accounts | None = None) -> dict[str, Any]:
    state = (accounts or Accounts()).state(user_id)
    holdings = []
    value_cents = 0
    unrealised_cents = 0
    complete = True
    for symbol, h in sorted(state.holdings.items()):
        row: dict[str, Any] = {
            "symbol": symbol, "shares": h.shares, "cost_basis": money(h.cost_cents),
            "cost_basis_cents": h.cost_cents,
            "average_cost": f"{Decimal(h.cost_cents) / 100 / h.shares:.4f}" if h.shares else "0.0000",
        }
        try:
            quote, _ = market_data.default().quote(symbol)
        except (UnknownSymbol, ProviderUnavailable):
            row.update(price=None, market_value=None, unrealised_pnl=None)
            complete = False
        else:
            mv = price_cents(quote.price) * h.shares
            row.update(price=f"{quote.price:.4f}", price_as_of=quote.as_of.isoformat(),
                       market_value=money(mv), market_value_cents=mv,
                       unrealised_pnl=money(mv - h.cost_cents),
                       unrealised_pnl_cents=mv - h.cost_cents)
            value_cents += mv
            unrealised_cents += mv - h.cost_cents
        holdings.append(row)
    return {
        "user_id": user_id,
        "currency": "USD",
        "cash": money(state.cash_cents),
        "cash_cents": state.cash_cents,
        "available_cash": money(state.available_cash_cents),
        "holdings": holdings,
        "market_value": money(value_cents),
        "total_value": money(state.cash_cents + value_cents),
        "unrealised_pnl": money(unrealised_cents),
        "realised_pnl": money(state.realised_pnl_cents),
        "prices_complete": complete,
    }
