"""Stocks service: symbols, details (the latest quote) and daily history, behind the cache; the
universes (named sets of symbols to rank); and the OpenAPI document of the whole REST API
(stockpred.api.openapi), which has no store to reach."""

from __future__ import annotations

from chalice import Chalice, Response

from stockpred.api import openapi
from stockpred.api.edge import ApiError, install, json_response, market_errors, query_date, symbol_param
from stockpred.market import market_data
from stockpred.market.prices import ProviderUnavailable
from stockpred.predictions import universes
from stockpred.realtime import rooms
from stockpred.stores.cache import Lookup

app = Chalice(app_name="stocks")
log = install(app, "stocks")

DEFAULT_HISTORY_DAYS = 100


def _cache_header(got: Lookup) -> dict[str, str]:
    return {"X-Cache": "STALE" if got.stale else "HIT" if got.hit else "MISS"}


@app.route("/api/stocks", methods=["GET"])
def list_symbols() -> Response:
    try:
        infos = market_data.default().symbols()
    except ProviderUnavailable:
        raise ApiError(503, "Market data provider unavailable") from None
    return json_response(200, {"symbols": [
        {"symbol": i.symbol, "name": i.name, "currency": i.currency, "source": i.source}
        for i in infos]})


@app.route("/api/universes", methods=["GET"])
def list_universes() -> Response:
    return json_response(200, {"universes": universes.all_universes()})


@app.route("/api/stocks/{symbol}/details", methods=["GET"])
def details(symbol: str) -> Response:
    symbol = symbol_param(symbol)
    with market_errors():
        quote, got = market_data.default().quote(symbol)
    body = market_data.details_body(quote, got)
    if not got.hit and not got.stale:
        rooms.publish_to_room(symbol, {"type": "quote", **body})
    return json_response(200, body, _cache_header(got))


@app.route("/api/stocks/{symbol}/history", methods=["GET"])
def history(symbol: str) -> Response:
    symbol = symbol_param(symbol)
    params = app.current_request.query_params
    start, end = query_date(params, "from"), query_date(params, "to")
    if start and end and start > end:
        raise ApiError(400, "'from' must not be after 'to'")
    with market_errors():
        hist, got = market_data.default().history(symbol)
    bars = hist.bars
    if start is None and end is None:
        bars = bars[-DEFAULT_HISTORY_DAYS:]
    else:
        bars = [b for b in bars if (start is None or b.date >= start)
                and (end is None or b.date <= end)]
    return json_response(200, {
        "symbol": symbol,
        "source": hist.source,
        "from": bars[0].date.isoformat() if bars else None,
        "to": bars[-1].date.isoformat() if bars else None,
        "count": len(bars),
        "bars": [b.to_json() for b in bars],
        "stale": got.stale,
    }, _cache_header(got))


@app.route("/api/openapi.json", methods=["GET"])
def openapi_document() -> Response:
    return json_response(200, openapi.document())
