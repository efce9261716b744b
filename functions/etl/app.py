"""ETL service: the scheduled warehouse load, and analytics read from the warehouse only."""

from __future__ import annotations

from typing import Any

from chalice import Chalice, Response

from stockpred.analytics import etl, reports
from stockpred.api.edge import ApiError, install, json_response, query_date
from stockpred.market import symbols
from stockpred.observability import logs

app = Chalice(app_name="etl")
log = install(app, "etl")


@app.route("/api/analytics/signals", methods=["GET"])
def signals() -> Response:
    params = app.current_request.query_params or {}
    symbol = None
    if params.get("symbol"):
        try:
            symbol = symbols.normalise(params["symbol"])
        except symbols.InvalidSymbol as exc:
            raise ApiError(400, f"Invalid symbol: {exc}") from None
    start, end = query_date(params, "from"), query_date(params, "to")
    if start and end and start > end:
        raise ApiError(400, "'from' must not be after 'to'")
    return json_response(200, {"symbol": symbol, "from": start and start.isoformat(),
                               "to": end and end.isoformat(),
                               "by_month": reports.signals(symbol, start, end)})


@app.route("/api/analytics/trading", methods=["GET"])
def trading() -> Response:
    return json_response(200, {"by_day": reports.trading()})


@logs.lambda_handler
def run(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Schedule event's handler: one ETL run (QualityError fails it loudly, loading nothing)."""
    return etl.run()
