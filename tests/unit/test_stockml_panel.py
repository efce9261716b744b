"""stockml.panel: bars of symbols with different calendars align on the union of their dates with
the exact NaN pattern, no return bridges a gap, slicing by date and symbol, and bad input refused."""

import dataclasses
import datetime as dt

import numpy as np
import pytest

from stockml.panel import Panel, panel_from_bars
from stockml.synthetic import synthetic_panel, to_bars
from stockpred.market.prices import Bar

# Tue 2 Jan 2024 .. Tue 9 Jan 2024 without the weekend: six calendar rows.
DAYS = [dt.date(2024, 1, d) for d in (2, 3, 4, 5, 8, 9)]
LIFE = {
    "LATE": [2, 3, 4, 5],  # listed on the third day
    "EARLY": [0, 1, 2, 3],  # delisted after the fourth
    "GAP": [0, 1, 3, 4, 5],  # no bar on the third day
}
N = np.nan


def close_of(column: int, row: int) -> float:
    return 10.0 * (column + 1) + row + 0.5 * row * row


def bars_of(symbol: str, column: int) -> list[Bar]:
    rows = LIFE[symbol]
    bars = [Bar(DAYS[r], close_of(column, r) - 0.25, close_of(column, r) + 1, close_of(column, r) - 1,
                close_of(column, r), 1000 * (column + 1) + r) for r in rows]
    return bars[::-1]  # newest first: the order of the input must not matter


@pytest.fixture
def panel() -> Panel:
    return panel_from_bars({s: bars_of(s, i) for i, s in enumerate(LIFE)})


def test_alignment_gives_the_union_calendar_and_the_exact_nan_pattern(panel: Panel) -> None:
    assert panel.symbols == ("LATE", "EARLY", "GAP")
    assert panel.dates.dtype == np.dtype("datetime64[D]")
    assert panel.dates.tolist() == DAYS
    expected = np.full((6, 3), np.nan)
    for column, symbol in enumerate(LIFE):
        for row in LIFE[symbol]:
            expected[row, column] = close_of(column, row)
    np.testing.assert_array_equal(panel.close, expected)
    np.testing.assert_array_equal(np.isnan(panel.open), np.isnan(expected))
    np.testing.assert_array_equal(panel.volume[:, 2], [3000, 3001, N, 3003, 3004, 3005])
    assert panel.high[4, 0] == close_of(0, 4) + 1 and panel.low[4, 0] == close_of(0, 4) - 1
    assert panel.shape == (6, 3)


def test_listed_spans_first_to_last_bar_and_includes_gaps(panel: Panel) -> None:
    np.testing.assert_array_equal(panel.listed, np.array([
        [False, True, True],
        [False, True, True],
        [True, True, True],  # GAP has no bar here but is listed
        [True, True, True],
        [True, False, True],
        [True, False, True],
    ]))
    np.testing.assert_array_equal(panel.has_bar[2], [True, True, False])


def test_returns_never_bridge_a_gap(panel: Panel) -> None:
    r = panel.returns()
    c = panel.close
    expected = np.full((6, 3), np.nan)
    for column, rows in ((0, [3, 4, 5]), (1, [1, 2, 3]), (2, [1, 4, 5])):
        for row in rows:
            expected[row, column] = c[row, column] / c[row - 1, column] - 1
    np.testing.assert_allclose(r, expected, rtol=0, atol=1e-15)
    # Day 3 of GAP: closes on days 1 and 3 both exist, but the move spans two days: no return.
    assert np.isfinite(c[1, 2]) and np.isfinite(c[3, 2]) and np.isnan(r[3, 2])
    assert np.isnan(r[0]).all()  # nothing before the first row


def test_between_is_inclusive_and_accepts_dates_and_strings(panel: Panel) -> None:
    part = panel.between(dt.date(2024, 1, 4), "2024-01-08")
    assert part.dates.tolist() == DAYS[2:5]
    np.testing.assert_array_equal(part.close, panel.close[2:5])
    assert part.symbols == panel.symbols
    weekend = panel.between("2024-01-06", "2024-01-07")
    assert weekend.shape == (0, 3) and weekend.listed.shape == weekend.returns().shape == (0, 3)
    assert panel.between("2023-01-01", "2030-01-01").dates.tolist() == DAYS


def test_select_takes_columns_in_the_order_asked(panel: Panel) -> None:
    part = panel.select(["GAP", "LATE"])
    assert part.symbols == ("GAP", "LATE")
    np.testing.assert_array_equal(part.close, panel.close[:, [2, 0]])
    np.testing.assert_array_equal(part.volume, panel.volume[:, [2, 0]])
    with pytest.raises(KeyError, match="NOPE"):
        panel.select(["GAP", "NOPE"])


def test_memory_bytes_and_immutability(panel: Panel) -> None:
    assert panel.memory_bytes == 6 * 8 + 5 * 6 * 3 * 8
    with pytest.raises(dataclasses.FrozenInstanceError):
        panel.close = panel.open  # type: ignore[misc]


def test_duplicate_dates_and_empty_input_are_refused() -> None:
    bars = bars_of("GAP", 0)
    with pytest.raises(ValueError, match="DUP has more than one bar dated 2024-01-08"):
        panel_from_bars({"OK": bars_of("LATE", 1), "DUP": [*bars, bars[1]]})
    with pytest.raises(ValueError, match="no symbols"):
        panel_from_bars({})
    with pytest.raises(ValueError, match="no bars"):
        panel_from_bars({"A": [], "B": []})


def test_a_symbol_without_bars_is_an_all_nan_column() -> None:
    panel = panel_from_bars({"A": bars_of("GAP", 0), "NONE": []})
    assert np.isnan(panel.close[:, 1]).all() and not panel.listed[:, 1].any()


def test_panel_validation() -> None:
    dates = np.array(DAYS, dtype="datetime64[D]")
    ok = np.ones((6, 2))
    Panel(dates, ("A", "B"), ok, ok, ok, ok, ok)
    with pytest.raises(ValueError, match=r"close has shape \(6, 3\)"):
        Panel(dates, ("A", "B"), ok, ok, ok, np.ones((6, 3)), ok)
    with pytest.raises(ValueError, match="strictly increasing"):
        Panel(dates[::-1], ("A", "B"), ok, ok, ok, ok, ok)
    with pytest.raises(ValueError, match="strictly increasing"):
        Panel(np.concatenate([dates[:3], dates[2:5]]), ("A", "B"), ok, ok, ok, ok, ok)
    with pytest.raises(ValueError, match="unique; repeated: A"):
        Panel(dates, ("A", "A"), ok, ok, ok, ok, ok)
    with pytest.raises(ValueError, match="datetime64"):
        Panel(np.arange(6), ("A", "B"), ok, ok, ok, ok, ok)


def test_round_trip_through_bars_is_exact() -> None:
    synthetic = synthetic_panel(40, 300, seed=3, listings=0.25, delistings=0.25, gaps=0.01)
    original = synthetic.panel
    assert (original.listed & ~original.has_bar).any()  # the draw has gaps to carry through
    bars = to_bars(original)
    assert list(bars) == list(original.symbols)
    assert sum(map(len, bars.values())) == int(original.has_bar.sum())
    again = panel_from_bars(bars)
    assert again.symbols == original.symbols
    np.testing.assert_array_equal(again.dates, original.dates)
    for name in ("open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(again, name), getattr(original, name), err_msg=name)
