"""Money as integer cents: parsing quoted prices and showing amounts, never through a float sum."""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

MAX_PRICE = 10**9  # a price per share, in dollars, below which a client value is believable


def money(cents: int) -> str:
    return f"{Decimal(cents) / 100:.2f}"


def price_cents(price: float | str) -> int:
    """A quoted price in whole cents, rounded half-even."""
    return int((Decimal(str(price)) * 100).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def client_price_cents(value: object) -> int:
    """A price a client sent, in whole cents; ValueError unless it is a finite JSON number (not a
    boolean, not a string) below MAX_PRICE that is still at least one cent once rounded."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("a finite number")
    if not 0 < value < MAX_PRICE:
        raise ValueError(f"a positive number below {MAX_PRICE}")
    try:
        cents = price_cents(value)
    except (InvalidOperation, ValueError, OverflowError):
        raise ValueError("a finite number") from None
    if cents < 1:
        raise ValueError("at least 0.01 (it rounds to 0 cents)")
    return cents
