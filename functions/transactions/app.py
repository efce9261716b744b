"""Transactions service: the ledger's internal write endpoint and each user's own ledger."""

from __future__ import annotations

import datetime as dt
import hmac
from typing import Any

from chalice import Chalice, Response

from stockpred import auth, ledger, secrets, trading
from stockpred.handlers import ApiError, install, json_body, json_response, query_int
from stockpred.money import price_cents

app = Chalice(app_name="transactions")
log = install(app, "transactions")



def _service_caller() -> None:
    """Only other services write the ledger: IAM-signed on AWS, else the service token (its secret)."""
    request = app.current_request
    if request.context.get("identity", {}).get("userArn"):
        return
    given = request.headers.get("x-service-token")
    if not given:
        raise ApiError(401, "Service credentials required")
    expected = secrets.service_token()
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise ApiError(403, "Not allowed to write the ledger")


def _record(body: Any) -> dict[str, Any]:
    order, errors = trading.parse_order(body)
    if "body" in errors:
        raise ApiError(400, "Invalid input data")
    if body.get("action") not in ("buy", "sell"):
        errors["action"] = "buy or sell"
    price = body.get("price")
    if isinstance(price, bool) or not isinstance(price, int | float) or not 0 < price < 10**9:
        errors["price"] = "a positive number"
    try:
        timestamp = dt.datetime.fromisoformat(str(body.get("timestamp")).replace("Z", "+00:00"))
        if timestamp.tzinfo is None:
            timestamp = timestamp.replace(tzinfo=dt.UTC)
    except ValueError:
        errors["timestamp"] = "an ISO 8601 date-time"
    if errors:
        raise ApiError(400, "Invalid input data: " + "; ".join(f"{k} {v}" for k, v in errors.items()))
    return {**order, "action": body["action"], "price_cents": price_cents(price), "timestamp": timestamp}


@app.route("/api/transactions/store", methods=["POST"], content_types=["*/*"])
def store() -> Response:
    _service_caller()
    txid = ledger.store(_record(json_body(app.current_request.raw_body)))
    return json_response(201, {"message": "Transaction stored successfully", "transaction_id": txid})


@app.route("/api/transactions", methods=["GET"])
def list_transactions() -> Response:
    try:
        claims = auth.verify(auth.bearer(app.current_request.headers))
    except auth.InvalidToken:
        raise ApiError(401, "Invalid or missing token") from None
    params = app.current_request.query_params or {}
    user_id = params.get("user_id") or claims["sub"]
    if user_id != claims["sub"]:
        raise ApiError(403, "You can only read your own transactions")
    limit = query_int(params, "limit", 100, 1, 1000)
    return json_response(200, {"user_id": user_id, "transactions": ledger.for_user(user_id, limit)})
