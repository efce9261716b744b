"""The OpenAPI 3.1 document of the whole REST API, served at GET /api/openapi.json (stocks app).

Every route of template.yaml's `Api` events is here with its parameters, request body, each
status it answers with the JSON schema of that answer, and its security (a bearer JWT, or the
service credential of /api/transactions/store). Links chain register -> login -> the routes that
need the token, so a client (or schemathesis's stateful run) can follow the API as a user does.
A unit test keeps the paths and methods equal to template.yaml's.
"""

from __future__ import annotations

import functools
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from stockpred import contracts

VERSION = "1.0.0"


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(schema: dict[str, Any], description: str, headers: dict[str, Any] | None = None,
          links: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description,
                           "content": {"application/json": {"schema": schema}}}
    if headers:
        out["headers"] = headers
    if links:
        out["links"] = links
    return out


def _error(description: str) -> dict[str, Any]:
    return _json(_ref(contracts.Error), description)


def _schemas() -> dict[str, Any]:
    """Every model's JSON schema, as the validator of a request or answer sees it."""
    models = [(m, "validation") for m in (*contracts.REQUESTS, *contracts.ANSWERS)]
    _, top = models_json_schema(models, ref_template="#/components/schemas/{model}")
    return top["$defs"]


STRING = {"type": "string"}
DATE = {"type": "string", "format": "date"}

SYMBOL = {"name": "symbol", "in": "path", "required": True,
          "description": "a ticker, case-insensitive: a letter, then up to nine letters, digits, . or -",
          "schema": {"type": "string"}}
IDEMPOTENCY_KEY = {"name": "Idempotency-Key", "in": "header", "required": False,
                   "description": "the same key with the same order replays its first answer; "
                                  "with another order it is a 422",
                   "schema": {"type": "string", "minLength": 1, "maxLength": 255}}
DEVICE_TOKEN = {"name": "X-Device-Token", "in": "header", "required": False,
                "description": "the device_token of an earlier login to this account: its failed "
                               "logins are then counted for this device alone, not for its address",
                "schema": STRING}
BEARER = [{"bearerAuth": []}]
LOG_WINDOW = [{"name": n, "in": "query", "required": False, "schema": STRING,
               "description": "an ISO 8601 time or a duration back from now: 15m, 2h, 7d"}
              for n in ("since", "until")]
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "string"}}}
TOKEN = "Bearer {$response.body#/token}"

BAD_SYMBOL = _error("malformed symbol")
UNKNOWN = _error("Stock data not available")
UNAVAILABLE = _error("every provider that might know the symbol is down or throttled")
INVALID = _error("Invalid input data (with `fields` where a field is wrong)")
TOO_LARGE = _error("body over 64 KiB")
UNAUTHORISED = _error("Invalid or missing token")
# What every operators' route may answer besides its own: no token, not an operator.
OPERATORS_ONLY = {"401": UNAUTHORISED, "403": _error("Operators only")}
LOG_STORE_DOWN = _error("The log store is unavailable")


def _throttled(what: str) -> dict[str, Any]:
    return _json(_ref(contracts.Error), f"too many {what} from this address or for this account",
                 {"Retry-After": {**RETRY_AFTER["Retry-After"], "required": True}})


def _date(name: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": DATE,
            "description": "YYYY-MM-DD"}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _with_token(operation_id: str, **extra: Any) -> dict[str, Any]:
    return {"operationId": operation_id, "parameters": {"header.Authorization": TOKEN}, **extra}


AFTER_LOGIN = {
    "Profile": _with_token("profile"),
    "Portfolio": _with_token("portfolio"),
    "Transactions": _with_token("listTransactions"),
    "Buy": _with_token("buy"),
    "Sell": _with_token("sell"),
    "ProfileUpdate": _with_token("updateProfile"),
    "Logout": _with_token("logout"),
}


# After a trade, the same user goes on: sells what was bought, looks at the portfolio and ledger.
# (The token is the one the login gave: a link cannot read a request's Authorization header,
# which no operation declares as a parameter; clients keep it, as schemathesis's run does.)
AFTER_TRADE = {
    "Sell": {"operationId": "sell", "requestBody": {
        "user_id": "$request.body#/user_id", "symbol": "$request.body#/symbol",
        "quantity": "$request.body#/quantity"}},
    "Portfolio": {"operationId": "portfolio"},
    "Transactions": {"operationId": "listTransactions",
                     "parameters": {"query.user_id": "$request.body#/user_id"}},
}


def _paths() -> dict[str, Any]:
    symbol_errors = {"400": BAD_SYMBOL, "404": UNKNOWN, "503": UNAVAILABLE}
    trade = {
        "security": BEARER, "parameters": [IDEMPOTENCY_KEY], "requestBody": _body(_ref(contracts.Order)),
        "responses": {
            "200": _json(_ref(contracts.Traded), "the trade committed (or a replay of it)",
                         links=AFTER_TRADE),
            "400": _error("invalid input, insufficient cash or shares, or an unknown symbol"),
            "401": UNAUTHORISED, "403": _error("another user's account"),
            "413": TOO_LARGE, "422": _error("Idempotency-Key reused for a different order"),
            "500": _json({"anyOf": [_ref(contracts.TradeFailed), _ref(contracts.Error)]},
                         "the trade could not complete (TradeFailed: recovery finishes it everywhere "
                         "or nowhere), or the request failed before a trade began (Error)"),
        }}
    return {
        "/api/stocks": {"get": {
            "operationId": "listSymbols", "tags": ["stocks"], "summary": "known symbols",
            "responses": {"200": _json(_ref(contracts.SymbolList), "every symbol a provider knows"),
                          "503": UNAVAILABLE}}},
        "/api/universes": {"get": {
            "operationId": "listUniverses", "tags": ["stocks"],
            "summary": "named sets of symbols to rank (stockpred universe create)",
            "responses": {"200": _json(_ref(contracts.UniverseList), "every universe, by name")}}},
        "/api/universes/{name}/ranking": {"get": {
            "operationId": "universeRanking", "tags": ["predictions"],
            "summary": "the day's ranking of a universe's members (stockpred train-universe, or the "
                       "retrain after the close)",
            "parameters": [{"name": "name", "in": "path", "required": True,
                            "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$"}}],
            "responses": {"200": _json(_ref(contracts.UniverseRanking), "the latest ranking, best first"),
                          "400": _error("not a universe name"),
                          "404": _error("no such universe, or no ranking yet")}}},
        "/api/stocks/{symbol}/details": {"get": {
            "operationId": "details", "tags": ["stocks"], "summary": "the latest quote",
            "parameters": [SYMBOL],
            "responses": {"200": _json(_ref(contracts.Details), "the quote (X-Cache: HIT, MISS or STALE)",
                                       {"X-Cache": {"schema": {"enum": ["HIT", "MISS", "STALE"]}}}),
                          **symbol_errors}}},
        "/api/stocks/{symbol}/history": {"get": {
            "operationId": "history", "tags": ["stocks"],
            "summary": "daily bars; without from/to the last 100 trading days",
            "parameters": [SYMBOL, _date("from"), _date("to")],
            "responses": {"200": _json(_ref(contracts.History), "the bars between from and to"),
                          **symbol_errors}}},
        "/api/predict/{symbol}": {"get": {
            "operationId": "predict", "tags": ["predictions"],
            "summary": "a buy/sell signal from the symbol's current model",
            "parameters": [SYMBOL],
            "responses": {
                "200": _json(_ref(contracts.Prediction), "the prediction (stored once per as_of and model)"),
                "202": _json(_ref(contracts.Training), "no model yet: one is being trained, ask again",
                             {"Retry-After": {**RETRY_AFTER["Retry-After"], "required": True}}),
                "400": BAD_SYMBOL, "404": UNKNOWN,
                "422": _error("too little history to train honestly"),
                "429": _json(_ref(contracts.Error), "no model yet, and the on-demand training budget (per "
                             "address, or for everyone) is spent for this hour",
                             {"Retry-After": {**RETRY_AFTER["Retry-After"], "required": True}}),
                "503": _error("a provider is down, or the model artifact failed its checks")}}},
        "/api/predictions/{symbol}": {"get": {
            "operationId": "predictions", "tags": ["predictions"], "summary": "stored predictions",
            "parameters": [SYMBOL, {"name": "limit", "in": "query", "required": False,
                                    "schema": {"type": "integer", "minimum": 1, "maximum": 500,
                                               "default": 30}}],
            "responses": {"200": _json(_ref(contracts.StoredPredictions), "newest first"),
                          **symbol_errors}}},
        "/api/users/register": {"post": {
            "operationId": "register", "tags": ["users"], "security": [],
            "requestBody": _body(_ref(contracts.Registration)),
            "responses": {
                "201": _json(_ref(contracts.Registered), "registered", links={"Login": {
                    "operationId": "login",
                    "requestBody": {"email": "$request.body#/email",
                                    "password": "$request.body#/password"}}}),
                "400": INVALID, "409": _error("User already exists"), "413": TOO_LARGE,
                "429": _throttled("registrations")}}},
        "/api/users/login": {"post": {
            "operationId": "login", "tags": ["users"], "security": [], "parameters": [DEVICE_TOKEN],
            "requestBody": _body(_ref(contracts.Credentials)),
            "responses": {
                "200": _json(_ref(contracts.LoggedIn), "a bearer token (HS256 JWT)", links=AFTER_LOGIN),
                "400": INVALID, "401": _error("Invalid credentials"), "413": TOO_LARGE,
                "429": _throttled("failed logins")}}},
        "/api/users/profile": {"get": {
            "operationId": "profile", "tags": ["users"], "security": BEARER,
            "responses": {"200": _json(_ref(contracts.Profile), "the profile"), "401": UNAUTHORISED}}},
        "/api/users/profile/update": {"post": {
            "operationId": "updateProfile", "tags": ["users"], "security": BEARER,
            "requestBody": _body(_ref(contracts.ProfileChange)),
            "responses": {"200": _json(_ref(contracts.Message), "Profile updated successfully"),
                          "400": INVALID, "401": UNAUTHORISED, "409": _error("Email already in use"),
                          "413": TOO_LARGE}}},
        "/api/users/password": {"post": {
            "operationId": "changePassword", "tags": ["users"], "security": BEARER,
            "description": "every token issued before is refused afterwards",
            "requestBody": _body(_ref(contracts.PasswordChange)),
            "responses": {"200": _json(_ref(contracts.Message), "changed"), "400": INVALID,
                          "401": UNAUTHORISED, "403": _error("Current password is incorrect"),
                          "413": TOO_LARGE, "429": _throttled("wrong passwords")}}},
        "/api/users/logout": {"post": {
            "operationId": "logout", "tags": ["users"], "security": BEARER,
            "description": "this token is refused from now until it would have expired",
            "responses": {"200": _json(_ref(contracts.Message), "Logged out"), "400": INVALID,
                          "401": UNAUTHORISED, "413": TOO_LARGE}}},
        "/api/users/portfolio": {"get": {
            "operationId": "portfolio", "tags": ["users"], "security": BEARER,
            "responses": {"200": _json(_ref(contracts.Portfolio), "cash, holdings, P&L"),
                          "401": UNAUTHORISED}}},
        "/api/users/buy": {"post": {"operationId": "buy", "tags": ["trading"], **trade}},
        "/api/users/sell": {"post": {"operationId": "sell", "tags": ["trading"], **trade}},
        "/api/transactions/store": {"post": {
            "operationId": "storeTransaction", "tags": ["trading"],
            "description": "internal: IAM-signed (SigV4) on AWS, X-Service-Token locally",
            "security": [{"serviceToken": []}, {"sigv4": []}],
            "requestBody": _body(_ref(contracts.TransactionRecord)),
            "responses": {"201": _json(_ref(contracts.Stored), "stored"), "400": INVALID,
                          "401": _error("Service credentials required"),
                          "403": _error("Not allowed to write the ledger"), "413": TOO_LARGE,
                          "500": _error("Internal Server Error")}}},
        "/api/transactions": {"get": {
            "operationId": "listTransactions", "tags": ["trading"], "security": BEARER,
            "parameters": [
                {"name": "user_id", "in": "query", "required": False, "schema": STRING,
                 "description": "your own user id (the default); any other is a 403"},
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}}],
            "responses": {"200": _json(_ref(contracts.Transactions), "your ledger, newest first"),
                          "400": INVALID, "401": UNAUTHORISED,
                          "403": _error("You can only read your own transactions")}}},
        "/api/analytics/signals": {"get": {
            "operationId": "analyticsSignals", "tags": ["analytics"],
            "parameters": [{"name": "symbol", "in": "query", "required": False, "schema": STRING},
                           _date("from"), _date("to")],
            "responses": {"200": _json(_ref(contracts.Signals), "hit rate and returns by month"),
                          "400": INVALID}}},
        "/api/analytics/trading": {"get": {
            "operationId": "analyticsTrading", "tags": ["analytics"],
            "responses": {"200": _json(_ref(contracts.Trading), "trades by day")}}},
        "/api/logs": {"get": {
            "operationId": "searchLogs", "tags": ["operators"], "security": BEARER,
            "description": "every function's log lines (admin role only), the latest `limit` "
                           "matching, oldest first; without correlation_id or since: the last 24 h",
            "parameters": [
                *({"name": n, "in": "query", "required": False,
                   "schema": {"type": "string", "minLength": 1, "maxLength": 128}}
                  for n in ("correlation_id", "service", "function", "transaction_id", "q")),
                {"name": "level", "in": "query", "required": False,
                 "schema": {"enum": ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]}},
                *LOG_WINDOW,
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 200}}],
            "responses": {"200": _json(_ref(contracts.Logs), "matching lines"), "400": INVALID,
                          **OPERATORS_ONLY, "503": LOG_STORE_DOWN}}},
        "/api/logs/errors": {"get": {
            "operationId": "errorsPerMinute", "tags": ["operators"], "security": BEARER,
            "description": "ERROR and CRITICAL lines per minute (admin role only), default last hour",
            "parameters": [{"name": "service", "in": "query", "required": False, "schema": STRING},
                           *LOG_WINDOW],
            "responses": {"200": _json(_ref(contracts.ErrorsPerMinute), "errors per minute"),
                          "400": INVALID, **OPERATORS_ONLY, "503": LOG_STORE_DOWN}}},
        "/api/ops/metrics": {"get": {
            "operationId": "opsMetrics", "tags": ["operators"], "security": BEARER,
            "description": "rate, error ratio and duration percentiles per function and route, and "
                           "each function's business counts, from the metric lines (admin role only); "
                           "default last hour",
            "parameters": LOG_WINDOW,
            "responses": {"200": _json(_ref(contracts.OpsMetrics), "the window's summary"),
                          "400": INVALID, **OPERATORS_ONLY, "503": LOG_STORE_DOWN}}},
        "/api/ops/alarms": {"get": {
            "operationId": "opsAlarms", "tags": ["operators"], "security": BEARER,
            "description": "the stack's CloudWatch alarms and their states (admin role only); on the "
                           "local stack devstack evaluates them against the functions' metric lines",
            "responses": {"200": _json(_ref(contracts.OpsAlarms), "every alarm of the stack"),
                          **OPERATORS_ONLY,
                          "503": _error("CloudWatch or the user store is unavailable")}}},
        "/api/health": {"get": {
            "operationId": "health", "tags": ["operators"],
            "description": "shallow (default): this service answers, for a load balancer; deep=true: "
                           "every dependency probed within 2 s, for operators (a bearer token of the "
                           "admin role); 503 when a critical store is down",
            "parameters": [{"name": "deep", "in": "query", "required": False,
                            "schema": {"type": "string", "enum": ["true", "false", "1", "0"]}}],
            "responses": {"200": _json(_ref(contracts.Health), "the service's health"),
                          "400": INVALID, **OPERATORS_ONLY,
                          "503": _json({"anyOf": [_ref(contracts.Health), _ref(contracts.Error)]},
                                       "a critical store is down (Health), or the user store is and "
                                       "the caller's role cannot be checked (Error)")}}},
        "/api/openapi.json": {"get": {
            "operationId": "openapi", "tags": ["meta"], "summary": "this document",
            "responses": {"200": _json({"type": "object"}, "the OpenAPI 3.1 document")}}},
    }


# Any route may meet a store or AWS service out of reach (stockpred.api.edge.dependency_unavailable).
DEPENDENCY_DOWN = _json(_ref(contracts.Error), "a store or AWS service this route needs cannot be "
                        "reached: try again after Retry-After seconds",
                        {"Retry-After": {**RETRY_AFTER["Retry-After"], "required": True}})


def _with_dependency_down(paths: dict[str, Any]) -> dict[str, Any]:
    for path, operations in paths.items():
        for operation in operations.values():
            if path != "/api/openapi.json":
                operation["responses"].setdefault("503", DEPENDENCY_DOWN)
    return paths


@functools.cache
def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "stockpred REST API", "version": VERSION,
                 "description": "Stock details, buy/sell signals, users, paper trading and "
                                "analytics. Every error is JSON `{\"error\": \"...\"}`; every "
                                "response carries X-Correlation-Id, X-Content-Type-Options: nosniff "
                                "and Cache-Control: no-store. Bodies are JSON, 64 KiB at most, "
                                "nested 32 levels at most."},
        "security": [],
        "paths": _with_dependency_down(_paths()),
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                               "description": "the token of POST /api/users/login (15 minutes)"},
                "serviceToken": {"type": "apiKey", "in": "header", "name": "X-Service-Token",
                                 "description": "internal callers, local stack only"},
                "sigv4": {"type": "apiKey", "in": "header", "name": "Authorization",
                          "description": "AWS Signature Version 4 (API Gateway AWS_IAM), on AWS"},
            },
        },
    }
