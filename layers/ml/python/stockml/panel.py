"""Daily bars of a whole universe aligned on one calendar, for cross-sectional work (numpy only).

A `Panel` holds open, high, low, close and volume as float64 arrays of shape (days, symbols): row t
is one calendar day, column i one symbol, and NaN marks a day on which a symbol has no bar (not
listed yet, delisted, or a gap in its history). Nothing is ever forward-filled: a missing bar stays
missing, so a return, a rank or a portfolio on day t only ever uses bars that really exist.
`panel_from_bars` builds one from per-symbol lists of `stockpred.market.prices.Bar`, on the union of their
dates.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from stockpred.market.prices import Bar

FIELDS = ("open", "high", "low", "close", "volume")
# datetime64[D] counts days from 1970-01-01; date.toordinal() counts them from 0001-01-01 (day 1).
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_DATE = operator.attrgetter("date")
_GETTERS = tuple(operator.attrgetter(name) for name in FIELDS)


@dataclass(frozen=True, eq=False)
class Panel:
    """Daily bars of a universe on one calendar: arrays of shape (days, symbols), NaN where a
    symbol has no bar that day (not listed yet, delisted, or a gap)."""

    dates: np.ndarray  # datetime64[D], strictly increasing, shape (T,)
    symbols: tuple[str, ...]  # shape (N,)
    open: np.ndarray  # float64 (T, N)
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __post_init__(self) -> None:
        dates = np.asarray(self.dates)
        if dates.ndim != 1:
            raise ValueError(f"Panel dates must be one-dimensional, got shape {dates.shape}")
        if dates.size and dates.dtype.kind in "biufc":
            raise ValueError(f"Panel dates must be dates (datetime64), got dtype {dates.dtype}")
        dates = dates.astype("datetime64[D]")
        if bool(np.isnat(dates).any()):
            raise ValueError("Panel dates must not contain NaT")
        if dates.size > 1 and not bool(np.all(dates[1:] > dates[:-1])):
            at = int(np.argmin(dates[1:] > dates[:-1]))
            raise ValueError(
                f"Panel dates must be strictly increasing: {dates[at]} is followed by {dates[at + 1]}"
            )
        symbols = tuple(self.symbols)
        if not all(isinstance(s, str) for s in symbols):
            raise ValueError("Panel symbols must be strings")
        if len(set(symbols)) != len(symbols):
            repeated = sorted({s for s in symbols if symbols.count(s) > 1})
            raise ValueError(f"Panel symbols must be unique; repeated: {', '.join(repeated)}")
        shape = (dates.size, len(symbols))
        object.__setattr__(self, "dates", dates)
        object.__setattr__(self, "symbols", symbols)
        for name in FIELDS:
            values = np.asarray(getattr(self, name), dtype=np.float64)
            if values.shape != shape:
                raise ValueError(
                    f"Panel {name} has shape {values.shape}; (days, symbols) = {shape} expected"
                )
            object.__setattr__(self, name, values)

    @property
    def shape(self) -> tuple[int, int]:
        """(days, symbols)."""
        return self.close.shape

    @property
    def has_bar(self) -> np.ndarray:
        """bool (T, N): the symbol has a bar (a close) that day."""
        return ~np.isnan(self.close)

    @property
    def listed(self) -> np.ndarray:
        """bool (T, N): on or between the symbol's first and last bar (gaps inside count as
        listed); all False for a symbol with no bar at all."""
        has = self.has_bar
        days = has.shape[0]
        if days == 0:
            return has
        any_bar = has.any(axis=0)
        first = np.argmax(has, axis=0)
        last = days - 1 - np.argmax(has[::-1], axis=0)
        rows = np.arange(days)[:, None]
        return (rows >= first) & (rows <= last) & any_bar

    def returns(self) -> np.ndarray:
        """Simple close-to-close returns (T, N): close[t] / close[t-1] - 1.

        A return exists only when BOTH consecutive calendar rows have a close. The first row,
        the first bar of a symbol, and the day of and the day after a gap are NaN: a missing close
        is never forward-filled, so no return ever bridges a gap (the move across it is not
        attributed to either day)."""
        out = np.full(self.close.shape, np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            np.divide(self.close[1:], self.close[:-1], out=out[1:])
        out[1:] -= 1.0
        return out

    def between(self, first: Any, last: Any) -> Panel:
        """The days from `first` to `last`, both inclusive (dates, ISO strings or datetime64); the
        arrays are views of this panel's."""
        lo = np.searchsorted(self.dates, np.datetime64(first, "D"), side="left")
        hi = np.searchsorted(self.dates, np.datetime64(last, "D"), side="right")
        return self._take(slice(lo, max(lo, hi)), slice(None), self.symbols)

    def select(self, symbols: Iterable[str]) -> Panel:
        """The given symbols' columns, in the order given (KeyError naming any unknown one)."""
        wanted = tuple(symbols)
        column = {s: i for i, s in enumerate(self.symbols)}
        missing = [s for s in wanted if s not in column]
        if missing:
            raise KeyError(f"symbols not in the panel: {', '.join(missing)}")
        return self._take(slice(None), np.array([column[s] for s in wanted], dtype=np.intp), wanted)

    @property
    def memory_bytes(self) -> int:
        """Bytes held by the arrays (dates and the five (T, N) float64 fields)."""
        return int(self.dates.nbytes + sum(getattr(self, name).nbytes for name in FIELDS))

    def _take(self, rows: slice, columns: slice | np.ndarray, symbols: tuple[str, ...]) -> Panel:
        fields = {name: getattr(self, name)[rows][:, columns] for name in FIELDS}
        return Panel(self.dates[rows], symbols, **fields)


def panel_from_bars(bars_by_symbol: Mapping[str, Sequence[Bar]]) -> Panel:
    """Align per-symbol bars on one calendar: the sorted union of all their dates.

    Symbols keep the mapping's order; bars may come in any order. A symbol with no bars becomes
    an all-NaN column. Raises ValueError for an empty mapping, for no bars at all, and for a
    symbol with two bars on one date (naming the symbol). Vectorised per symbol: dates go through
    ordinals, placement through searchsorted and fancy indexing."""
    if not bars_by_symbol:
        raise ValueError("panel_from_bars: no symbols given")
    symbols = tuple(bars_by_symbol)
    days_of: list[np.ndarray] = []
    values_of: list[np.ndarray] = []
    for symbol in symbols:
        bars = bars_by_symbol[symbol]
        count = len(bars)
        ordinals = np.fromiter(map(dt.date.toordinal, map(_DATE, bars)), dtype=np.int64, count=count)
        values = np.stack([np.fromiter(map(get, bars), dtype=np.float64, count=count) for get in _GETTERS])
        order = np.argsort(ordinals, kind="stable")
        ordinals = ordinals[order]
        if ordinals.size > 1 and bool(np.any(ordinals[1:] == ordinals[:-1])):
            at = int(np.argmax(ordinals[1:] == ordinals[:-1]))
            repeated = dt.date.fromordinal(int(ordinals[at]))
            raise ValueError(f"panel_from_bars: {symbol} has more than one bar dated {repeated}")
        days_of.append(ordinals)
        values_of.append(values[:, order])
    calendar = np.unique(np.concatenate(days_of))
    if calendar.size == 0:
        raise ValueError("panel_from_bars: no bars at all")
    shape = (calendar.size, len(symbols))
    arrays = {name: np.full(shape, np.nan) for name in FIELDS}
    for column, (ordinals, values) in enumerate(zip(days_of, values_of, strict=True)):
        rows = np.searchsorted(calendar, ordinals)
        for k, name in enumerate(FIELDS):
            arrays[name][rows, column] = values[k]
    dates = (calendar - _EPOCH_ORDINAL).astype("datetime64[D]")
    return Panel(dates, symbols, **arrays)
