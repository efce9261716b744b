"""stockpred.predictions.universes, without a database: names, members and a folder's symbols."""

import pytest

from stockpred.predictions import universes
from stockpred.predictions.universes import UniverseError


@pytest.mark.parametrize("name", ["sp500", "Tech-10", "a", "x_1", "A" * 40])
def test_good_names(name):
    assert universes.check_name(name) == name


@pytest.mark.parametrize("name", ["", "-lead", "with space", "A" * 41, "semi;colon", "ümlaut", None, 7,
                                  "zero\u200bwidth", "a'; DROP TABLE universes;--"])
def test_bad_names_are_refused_with_the_rule(name):
    with pytest.raises(UniverseError, match="1-40 letters"):
        universes.check_name(name)


def test_members_are_normalised_deduplicated_and_every_bad_one_named():
    assert universes.members(["aapl", "MSFT", "AAPL", " msft "]) == ["AAPL", "MSFT"]
    with pytest.raises(UniverseError) as refused:
        universes.members(["AAPL", "bad symbol", "", 42])
    assert "'bad symbol'" in str(refused.value) and "42" in str(refused.value)
    with pytest.raises(UniverseError, match="2 to 5000 distinct symbols, not 1"):
        universes.members(["AAPL", "aapl"])


def test_symbols_of_a_csv_folder(tmp_path):
    for name in ("MSFT.csv", "AAPL.csv", "notes.txt"):
        (tmp_path / name).write_text("Date,Open,High,Low,Close,Volume\n")
    (tmp_path / "sub.csv").mkdir()
    assert universes.symbols_in_folder(tmp_path) == ["AAPL", "MSFT"]
