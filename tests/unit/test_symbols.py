import pytest

from stockpred.market.symbols import InvalidSymbol, normalise


@pytest.mark.parametrize("raw,expected", [("spx", "SPX"), (" ibm ", "IBM"), ("BRK.B", "BRK.B"),
                                          ("RDS-A", "RDS-A"), ("X", "X")])
def test_valid_symbols_are_normalised(raw, expected):
    assert normalise(raw) == expected


@pytest.mark.parametrize("raw", ["", "1ABC", "SP$X", "A" * 11, "'; DROP TABLE x;--", "{\"$ne\":1}",
                                 "IBM\nX", "../etc", None, 42, ["IBM"], "É"])
def test_anything_else_is_refused(raw):
    with pytest.raises(InvalidSymbol):
        normalise(raw)
