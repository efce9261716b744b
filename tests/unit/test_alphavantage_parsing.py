"""Alpha Vantage bodies in their real wire format: data is data, every error shape is an error."""

import datetime as dt

import pytest

from stockpred.market.alphavantage import UnknownToProvider, check_body, parse_daily, parse_quote
from stockpred.market.prices import ProviderUnavailable
from tests.fakes.alphavantage import fixture


def test_daily_series_is_parsed_oldest_first_with_numbers():
    bars = parse_daily(fixture("time_series_daily_ibm.json"))
    assert [b.date for b in bars] == sorted(b.date for b in bars)
    last = bars[-1]
    assert last.date == dt.date(2020, 8, 31)
    assert (last.open, last.high, last.low, last.close, last.volume) == (
        125.25, 125.48, 123.23, 123.31, 4827879)


def test_global_quote_is_parsed():
    q = parse_quote(fixture("global_quote_ibm.json"))
    assert q is not None
    assert (q.symbol, q.price, q.previous_close, q.as_of) == (
        "IBM", 123.31, 125.07, dt.date(2020, 8, 31))


def test_empty_global_quote_means_unknown_symbol():
    assert parse_quote({"Global Quote": {}}) is None


@pytest.mark.parametrize("name", ["error_invalid_call.json", "error_missing_key.json"])
def test_error_message_is_a_client_error_not_data(name):
    with pytest.raises(UnknownToProvider):
        parse_daily(fixture(name))


@pytest.mark.parametrize("name", ["throttle_note.json", "throttle_information.json"])
def test_throttle_bodies_make_the_provider_unavailable(name):
    with pytest.raises(ProviderUnavailable):
        parse_daily(fixture(name))
    with pytest.raises(ProviderUnavailable):
        parse_quote(fixture(name))


@pytest.mark.parametrize("body", [
    [], "text", None,
    {"Meta Data": {}},
    {"Time Series (Daily)": {"2020-08-31": {"1. open": "x"}}},
    {"Time Series (Daily)": {"not-a-date": {"1. open": "1", "2. high": "1", "3. low": "1",
                                            "4. close": "1", "5. volume": "1"}}},
])
def test_malformed_daily_bodies_are_unavailable_not_crashes(body):
    with pytest.raises(ProviderUnavailable):
        parse_daily(body)


def test_malformed_quote_is_unavailable():
    with pytest.raises(ProviderUnavailable):
        parse_quote({"Global Quote": {"01. symbol": "IBM", "05. price": "abc"}})
    with pytest.raises(ProviderUnavailable):
        parse_quote({"Something": 1})


def test_check_body_passes_data_through():
    body = {"Global Quote": {}}
    assert check_body(body) is body
