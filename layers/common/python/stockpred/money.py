"""Money as integer cents: parsing quoted prices and showing amounts, never through a float sum."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal


def money(cents: int) -> str:
    return f"{Decimal(cents) / 100:.2f}"


def price_cents(price: float | str) -> int:
    """A quoted price in whole cents, rounded half-even."""
    return int((Decimal(str(price)) * 100).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
