"""Users service: register, login, profile, password, logout, the paper portfolio, and trading.

Buy and sell are here (POST /api/users/buy and /api/users/sell): each runs the trade saga
(stockpred.trading.saga) and waits for its end; docs/architecture.md follows one buy through.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from chalice import Chalice, Response

from stockpred import contracts
from stockpred.api.edge import (
    ApiError,
    bearer_claims,
    client_address,
    install,
    invalid_token,
    json_body,
    json_response,
)
from stockpred.identity import auth, devices
from stockpred.identity.users import (
    InvalidCredentials,
    TooManyAttempts,
    UserExists,
    UserNotFound,
)
from stockpred.identity.users import default as users
from stockpred.realtime import rooms
from stockpred.trading import portfolio, saga
from stockpred.trading.money import money

app = Chalice(app_name="users")
log = install(app, "users")

# Bodies are read as JSON whatever the Content-Type says (curl -d sends form-urlencoded).
ANY_BODY = ["*/*"]
def _body() -> Any:
    return json_body(app.current_request.raw_body)


def _claims() -> dict[str, Any]:
    return bearer_claims(app.current_request)


def _invalid(fields: dict[str, str]) -> ApiError:
    return ApiError(400, "Invalid input data", details={"fields": fields})


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """What every user route answers alike: bad input is 400, a user that no longer exists 401."""
    try:
        yield
    except contracts.Invalid as exc:
        raise _invalid(exc.fields) from None
    except UserNotFound:
        raise invalid_token() from None


def _client() -> str:
    """The caller's address (edge.client_address: never a header the caller chose)."""
    return client_address(app.current_request)


def _too_many(exc: TooManyAttempts, error: str) -> ApiError:
    return ApiError(429, error, {"Retry-After": str(max(int(exc.retry_after_s), 1))})


@app.route("/api/users/register", methods=["POST"], content_types=ANY_BODY)
def register() -> Response:
    try:
        with _user_errors():
            user_id = users().register(_body(), _client())
    except TooManyAttempts as exc:
        raise _too_many(exc, "Too many registrations from this address, try again later") from None
    except UserExists:
        raise ApiError(409, "User already exists") from None
    return json_response(201, {"message": "User registered successfully", "user_id": user_id})


@app.route("/api/users/login", methods=["POST"], content_types=ANY_BODY)
def login() -> Response:
    try:
        with _user_errors():
            headers = app.current_request.headers
            signed_in = users().login(_body(), _client(), devices.candidates(
                headers.get(devices.HEADER.lower()), headers.get("cookie")))
    except TooManyAttempts as exc:
        raise _too_many(exc, "Too many failed logins, try again later") from None
    except InvalidCredentials:
        raise ApiError(401, "Invalid credentials") from None
    # The device token: a cookie for the dashboard, a field for API clients (X-Device-Token).
    return json_response(200, {"message": "Login successful", "token": signed_in.token,
                               "expires_in": auth.ttl_seconds(),
                               "device_token": signed_in.device.value},
                         {"Set-Cookie": signed_in.device.cookie})


@app.route("/api/users/profile", methods=["GET"])
def profile() -> Response:
    claims = _claims()
    with _user_errors():
        p = users().profile(claims["sub"])
    return json_response(200, {"user_id": p.user_id, "name": p.name, "email": p.email,
                               "roles": list(p.roles)})


@app.route("/api/users/profile/update", methods=["POST"], content_types=ANY_BODY)
def update_profile() -> Response:
    claims = _claims()
    try:
        with _user_errors():
            users().update_profile(claims["sub"], _body())
    except UserExists:
        raise ApiError(409, "Email already in use") from None
    return json_response(200, {"message": "Profile updated successfully"})


@app.route("/api/users/password", methods=["POST"], content_types=ANY_BODY)
def change_password() -> Response:
    claims = _claims()
    try:
        with _user_errors():
            users().change_password(claims["sub"], _body(), _client())
    except TooManyAttempts as exc:
        raise _too_many(exc, "Too many wrong passwords, try again later") from None
    except InvalidCredentials:
        raise ApiError(403, "Current password is incorrect") from None
    rooms.close_user_connections_quietly(claims["sub"])
    return json_response(200, {"message": "Password changed; sign in again with the new password"})


@app.route("/api/users/logout", methods=["POST"], content_types=ANY_BODY)
def logout() -> Response:
    claims = _claims()
    _body()
    auth.revoke(claims)
    # Open WebSockets must not outlive the sign-out (they are also refused at their next frame).
    rooms.close_user_connections_quietly(claims["sub"])
    return json_response(200, {"message": "Logged out"})


@app.route("/api/users/portfolio", methods=["GET"])
def get_portfolio() -> Response:
    claims = _claims()
    with _user_errors():
        users().profile(claims["sub"])
    return json_response(200, portfolio.portfolio(claims["sub"]))


# ---- trading: buy and sell run the trade state machine and wait for its end --------------------
TRADE_ERRORS = {"buy": "An error occurred processing the buy request",
                "sell": "An error occurred processing the sell request"}
TRADE_DONE = {"buy": "Stock bought successfully", "sell": "Stock sold successfully"}


def _trade(side: str) -> Response:
    claims = _claims()
    with _user_errors():
        order = contracts.parse(contracts.Order, _body())
    user_id, symbol, quantity = order.user_id, order.symbol, order.quantity
    if user_id != claims["sub"]:
        raise ApiError(403, "You can only trade for your own account")
    key = app.current_request.headers.get("idempotency-key")
    if key is not None and not 1 <= len(key) <= 255:
        raise _invalid({"Idempotency-Key": "1 to 255 characters"})
    try:
        result = saga.execute(user_id, symbol, side, quantity, key)
    except saga.IdempotencyConflict:
        raise ApiError(422, "Idempotency-Key was already used for a different request") from None
    if result.status == "committed":
        body = {"message": TRADE_DONE[side], "transaction_id": result.transaction_id,
                "price": money(result.price_cents) if result.price_cents else None}
        if not result.replayed:
            rooms.publish_to_user(user_id, {
                "type": "trade", "action": side, "symbol": symbol, "quantity": quantity, **body})
        return json_response(200, body)
    if result.status == "aborted" and result.error_type in saga.REFUSALS:
        message = ("Stock data not available" if result.error_type == "UnknownSymbol"
                   else result.message or "Insufficient funds")
        message = message[:1].upper() + message[1:]
        return json_response(400, {"error": message, "transaction_id": result.transaction_id})
    log.error("trade did not complete", extra={"fields": {
        "transaction_id": result.transaction_id, "status": result.status,
        "error_type": result.error_type, "detail": (result.message or "")[:500]}})
    return json_response(500, {"error": TRADE_ERRORS[side], "transaction_id": result.transaction_id,
                               "status": result.status})


@app.route("/api/users/buy", methods=["POST"], content_types=ANY_BODY)
def buy() -> Response:
    return _trade("buy")


@app.route("/api/users/sell", methods=["POST"], content_types=ANY_BODY)
def sell() -> Response:
    return _trade("sell")
