"""CSV edge cases: every bad row is reported with its line number, good rows parse exactly."""

import datetime as dt

from stockpred.market.csv_prices import parse_file

HEADER = "Date,Open,High,Low,Close,Volume\n"


def write(tmp_path, text, name="ACME.csv"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_good_file_parses_sorted_with_both_date_styles(tmp_path):
    p = write(tmp_path, HEADER + "2024-01-03,10,11,9,10.5,1000\n1/2/2024,9,10,8.5,9.5,2000\n")
    bars, errors = parse_file(p)
    assert errors == []
    assert [b.date for b in bars] == [dt.date(2024, 1, 2), dt.date(2024, 1, 3)]
    assert bars[1].close == 10.5 and bars[0].volume == 2000


def test_extra_columns_bom_and_quoted_thousands_are_accepted(tmp_path):
    p = tmp_path / "ACME.csv"
    p.write_bytes("\ufeffDate,Open,High,Low,Close,Adj Close,Volume\n"
                  '2024-01-02,1,2,0.5,1.5,1.4,"1,000"\n'.encode())
    bars, errors = parse_file(p)
    assert errors == [] and bars[0].volume == 1000


def test_each_bad_row_is_reported_with_its_line(tmp_path):
    p = write(tmp_path, HEADER
              + "2024-01-02,10,11,9,10,100\n"       # line 2 ok
              + "2024-13-01,10,11,9,10,100\n"       # line 3 bad date
              + "2024-01-04,abc,11,9,10,100\n"      # line 4 bad number
              + "2024-01-05,10,9,11,10,100\n"       # line 5 high < low
              + "2024-01-02,10,11,9,10,100\n"       # line 6 duplicate date
              + "2024-01-08,10,11,9,10\n"           # line 7 missing field
              + "2024-01-09,-1,11,9,10,100\n"       # line 8 negative price
              + "2024-01-10,10,11,9,10,1.5\n"       # line 9 fractional volume
              + "2024-01-11,10,11,9,nan,100\n")     # line 10 not finite
    _, errors = parse_file(p)
    lines = [int(e.split(":")[1]) for e in errors]
    assert lines == [3, 4, 5, 6, 7, 8, 9, 10]
    assert all(e.startswith("ACME.csv:") for e in errors)


def test_missing_columns_and_empty_files_are_errors(tmp_path):
    _, errors = parse_file(write(tmp_path, "Date,Close\n2024-01-02,1\n"))
    assert errors and "missing column" in errors[0]
    _, errors = parse_file(write(tmp_path, HEADER, name="EMPTY.csv"))
    assert errors == ["EMPTY.csv: no data rows"]
