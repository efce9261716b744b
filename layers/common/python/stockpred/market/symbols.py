"""Ticker symbols: what a valid one looks like, in one place."""

from __future__ import annotations

import re

# Exchange tickers and index codes: a letter, then letters, digits, '.' or '-' (BRK.B, RDS-A).
_SYMBOL = re.compile(r"^[A-Z][A-Z0-9.\-]{0,9}$")


class InvalidSymbol(ValueError):
    """The text cannot be a ticker symbol."""


def normalise(raw: object) -> str:
    """Upper-cased symbol, or InvalidSymbol for anything that is not one."""
    if not isinstance(raw, str):
        raise InvalidSymbol("symbol must be a string")
    symbol = raw.strip().upper()
    if not _SYMBOL.match(symbol):
        raise InvalidSymbol("symbol must be 1-10 characters: a letter, then letters, digits, '.' or '-'")
    return symbol
