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

VERSION = "1.0.0"
SYMBOL_PATTERN = "^[A-Za-z][A-Za-z0-9.\\-]{0,9}$"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


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
    return _json(_ref("Error"), description)


def _obj(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "object", "required": list(required),
            "properties": {**required, **(optional or {})}}


STRING = {"type": "string"}
NULLABLE_STRING = {"type": ["string", "null"]}
INTEGER = {"type": "integer"}
NUMBER = {"type": "number"}
NULLABLE_NUMBER = {"type": ["number", "null"]}
BOOLEAN = {"type": "boolean"}
MONEY = {"type": "string", "pattern": "^-?[0-9]+\\.[0-9]{2}$", "description": "an amount, e.g. 123.45"}
DATE = {"type": "string", "format": "date"}

SCHEMAS: dict[str, Any] = {
    "Error": _obj({"error": STRING}, {
        "fields": {"type": "object", "additionalProperties": STRING,
                   "description": "each invalid field and what it must be"},
        "transaction_id": STRING, "status": STRING}),
    "Message": _obj({"message": STRING}),
    "SymbolInfo": _obj({"symbol": STRING, "name": STRING, "currency": STRING, "source": STRING}),
    "Universe": _obj({"name": STRING, "symbols": {"type": "array", "items": STRING}, "size": INTEGER,
                      "created_at": STRING, "updated_at": STRING}),
    "Details": _obj(
        {"id": STRING, "symbol": STRING, "price": STRING, "currency": STRING},
        {"name": STRING, "as_of": DATE, "source": STRING, "previous_close": STRING,
         "change": STRING, "change_percent": STRING, "stale": BOOLEAN, "age_seconds": NUMBER}),
    "Bar": _obj({"date": DATE, "open": NUMBER, "high": NUMBER, "low": NUMBER, "close": NUMBER,
                 "volume": INTEGER}),
    "History": _obj({"symbol": STRING, "source": STRING, "from": NULLABLE_STRING,
                     "to": NULLABLE_STRING, "count": INTEGER,
                     "bars": {"type": "array", "items": _ref("Bar")}},
                    {"stale": BOOLEAN}),
    "Prediction": _obj(
        {"symbol": STRING, "prediction": NUMBER, "action": {"enum": ["buy", "sell"]},
         "timestamp": STRING, "_id": STRING},
        {"probability": NUMBER, "confidence": NUMBER, "expected_return": NUMBER,
         "last_close": NUMBER, "model_version": STRING, "as_of": STRING, "edge": BOOLEAN,
         "record": {"type": ["object", "null"]},
         "volatility": {"type": ["object", "null"], "description": "annualised forecasts",
                        "properties": {"next_day": NULLABLE_NUMBER, "next_21_days": NULLABLE_NUMBER,
                                       "model": STRING}},
         "exposure": {"type": ["number", "null"], "minimum": 0,
                      "description": "recommended fraction of capital, 0 to sizing.max_exposure"},
         "sizing": {"type": ["object", "null"],
                    "properties": {"target_volatility": NULLABLE_NUMBER, "max_exposure": NUMBER,
                                   "horizon_days": INTEGER, "conviction_strength": NUMBER,
                                   "reason": STRING}},
         "outcome": {"type": ["object", "null"]},
         "universe_ranks": {"type": "array", "items": _ref("UniverseRank"),
                            "description": "the symbol's place in each universe whose ranking has it"}}),
    "UniverseRank": _obj({"universe": STRING, "as_of": STRING, "rank": INTEGER, "of": INTEGER,
                          "percentile": NUMBER, "decile": INTEGER,
                          "expected_excess_return": NULLABLE_NUMBER, "edge": BOOLEAN},
                         {"horizon_days": INTEGER}),
    "RankedMember": _obj({"symbol": STRING, "rank": INTEGER, "of": INTEGER, "percentile": NUMBER,
                          "decile": INTEGER, "score": NUMBER, "expected_excess_return": NULLABLE_NUMBER}),
    "UniverseRanking": _obj(
        {"universe": STRING, "as_of": STRING, "horizon_days": INTEGER,
         "ranking": {"type": "array", "items": _ref("RankedMember"), "description": "best first"}},
        {"model": {"type": "object"}, "record": {"type": "object", "description":
                                                 "the ranker's walk-forward record: rank IC, deciles, "
                                                 "long-only portfolio against equal weight, edge "
                                                 "(edge_judgement), trials, trials_counted"},
         "expected_excess_return_means": STRING,
         "not_ranked": {"type": "array", "items": STRING},
         "left_out": {"type": "object"}}),
    "Training": _obj({"symbol": STRING, "status": {"const": "training"}, "message": STRING,
                      "retry_after": INTEGER, "started_by_this_request": BOOLEAN}),
    "Registered": _obj({"message": {"const": "User registered successfully"}, "user_id": STRING}),
    "LoggedIn": _obj({"message": {"const": "Login successful"}, "token": STRING,
                      "expires_in": INTEGER},
                     {"device_token": {"type": "string", "description":
                                       "this device's token: send it back as X-Device-Token (browsers "
                                       "get it as the HttpOnly cookie stockpred_device)"}}),
    "Profile": _obj({"user_id": STRING, "name": STRING, "email": STRING},
                    {"roles": {"type": "array", "items": STRING}}),
    "Holding": _obj({"symbol": STRING, "shares": INTEGER, "cost_basis": MONEY,
                     "cost_basis_cents": INTEGER}),
    "Portfolio": _obj({"cash": MONEY, "cash_cents": INTEGER,
                       "holdings": {"type": "array", "items": _ref("Holding")},
                       "total_value": MONEY},
                      {"user_id": STRING, "currency": STRING, "available_cash": MONEY,
                       "market_value": MONEY, "unrealised_pnl": MONEY, "realised_pnl": MONEY,
                       "prices_complete": BOOLEAN}),
    "Order": {**_obj({"user_id": {"type": "string", "minLength": 1, "maxLength": 64},
                      "symbol": {"type": "string", "pattern": SYMBOL_PATTERN},
                      "quantity": {"type": "integer", "minimum": 1, "maximum": 1_000_000}}),
              "additionalProperties": False},
    "Traded": _obj({"message": {"enum": ["Stock bought successfully", "Stock sold successfully"]},
                    "transaction_id": STRING, "price": NULLABLE_STRING}),
    "TradeFailed": _obj({"error": STRING, "transaction_id": STRING, "status": STRING}),
    "TransactionRecord": {**_obj({
        "user_id": {"type": "string", "minLength": 1, "maxLength": 64},
        "symbol": {"type": "string", "pattern": SYMBOL_PATTERN},
        "quantity": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
        "action": {"enum": ["buy", "sell"]},
        "price": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1_000_000_000},
        "timestamp": {"type": "string", "format": "date-time"}})},
    "Stored": _obj({"message": {"const": "Transaction stored successfully"}, "transaction_id": STRING}),
    "Transaction": _obj({"transaction_id": STRING, "symbol": STRING, "action": {"enum": ["buy", "sell"]},
                         "quantity": INTEGER, "price": MONEY, "timestamp": STRING},
                        {"price_cents": INTEGER, "amount_cents": INTEGER, "fee_cents": INTEGER,
                         "realised_pnl_cents": {"type": ["integer", "null"]},
                         "source": NULLABLE_STRING}),
    "Transactions": _obj({"user_id": STRING,
                          "transactions": {"type": "array", "items": _ref("Transaction")}}),
    "Signals": _obj({"symbol": NULLABLE_STRING, "from": NULLABLE_STRING, "to": NULLABLE_STRING,
                     "by_month": {"type": "array", "items": {"type": "object"}}}),
    "Trading": _obj({"by_day": {"type": "array", "items": {"type": "object"}}}),
    "LogLine": _obj({"timestamp": STRING, "service": STRING, "function": STRING, "level": STRING,
                     "message": STRING},
                    {"correlation_id": STRING, "request_id": STRING, "transaction_id": STRING,
                     "execution_arn": STRING, "exception": STRING, "extra": {"type": "object"}}),
    "Logs": _obj({"logs": {"type": "array", "items": _ref("LogLine")}, "count": INTEGER,
                  "total": INTEGER}),
    "ErrorsPerMinute": _obj({"since": STRING, "minutes": {"type": "array", "items": _obj(
        {"minute": STRING, "errors": INTEGER})}}),
    "OpsMetrics": _obj({
        "since": STRING, "until": STRING,
        "routes": {"type": "array", "description": "busiest first", "items": _obj(
            {"function": STRING, "route": STRING, "requests": INTEGER, "rate_per_s": NUMBER,
             "errors_4xx": INTEGER, "errors_5xx": INTEGER, "error_ratio": NUMBER,
             "duration_ms": {"type": "object", "description": "p50, p95, p99 (null without data)"}})},
        "functions": {"type": "object", "description": "per function, each business count's sum"}}),
    "Health": _obj({
        "status": {"type": "string", "enum": ["ok", "degraded", "down"],
                   "description": "down when PostgreSQL, the MongoDB store or the state Redis is down"},
        "mode": {"type": "string", "enum": ["shallow", "deep"]}}, {
        "checked_at": STRING,
        "dependencies": {"type": "object", "description": "deep only: per dependency (postgres, mongo, "
                         "state_redis, cache_ring, step_functions, market_breaker, opensearch) its "
                         "status (up, degraded, down), latency_ms (null past the 2 s deadline) and detail"}}),
    "OpsAlarms": _obj({
        "alarms": {"type": "array", "description": "ALARM first, then INSUFFICIENT_DATA, then OK",
                   "items": _obj(
            {"name": STRING, "state": {"type": "string", "enum": ["OK", "ALARM", "INSUFFICIENT_DATA"]},
             "reason": STRING, "since": {"type": ["string", "null"]}, "description": STRING,
             "namespace": STRING, "metric": STRING, "dimensions": {"type": "object"},
             "statistic": STRING, "period_s": INTEGER, "evaluation_periods": INTEGER,
             "threshold": NUMBER, "comparison": STRING})},
        "counts": {"type": "object", "description": "how many alarms are in each state"}}),
}

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


def _throttled(what: str) -> dict[str, Any]:
    return _json(_ref("Error"), f"too many {what} from this address or for this account",
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
    user_body = {"type": "object", "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 100},
        "email": {"type": "string", "format": "email", "maxLength": 254},
        "password": {"type": "string", "minLength": 10, "maxLength": 128}}}
    trade = {
        "security": BEARER, "parameters": [IDEMPOTENCY_KEY], "requestBody": _body(_ref("Order")),
        "responses": {
            "200": _json(_ref("Traded"), "the trade committed (or a replay of it)", links=AFTER_TRADE),
            "400": _error("invalid input, insufficient cash or shares, or an unknown symbol"),
            "401": UNAUTHORISED, "403": _error("another user's account"),
            "413": TOO_LARGE, "422": _error("Idempotency-Key reused for a different order"),
            "500": _json(_ref("TradeFailed"), "the trade could not complete; recovery finishes "
                                              "it everywhere or nowhere"),
        }}
    return {
        "/api/stocks": {"get": {
            "operationId": "listSymbols", "tags": ["stocks"], "summary": "known symbols",
            "responses": {"200": _json(_obj({"symbols": {"type": "array", "items": _ref("SymbolInfo")}}),
                                       "every symbol a provider knows"),
                          "503": UNAVAILABLE}}},
        "/api/universes": {"get": {
            "operationId": "listUniverses", "tags": ["stocks"],
            "summary": "named sets of symbols to rank (stockpred universe create)",
            "responses": {"200": _json(_obj({"universes": {"type": "array", "items": _ref("Universe")}}),
                                       "every universe, by name")}}},
        "/api/universes/{name}/ranking": {"get": {
            "operationId": "universeRanking", "tags": ["predictions"],
            "summary": "the day's ranking of a universe's members (stockpred train-universe, or the "
                       "retrain after the close)",
            "parameters": [{"name": "name", "in": "path", "required": True,
                            "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$"}}],
            "responses": {"200": _json(_ref("UniverseRanking"), "the latest ranking, best first"),
                          "400": _error("not a universe name"),
                          "404": _error("no such universe, or no ranking yet")}}},
        "/api/stocks/{symbol}/details": {"get": {
            "operationId": "details", "tags": ["stocks"], "summary": "the latest quote",
            "parameters": [SYMBOL],
            "responses": {"200": _json(_ref("Details"), "the quote (X-Cache: HIT, MISS or STALE)",
                                       {"X-Cache": {"schema": {"enum": ["HIT", "MISS", "STALE"]}}}),
                          **symbol_errors}}},
        "/api/stocks/{symbol}/history": {"get": {
            "operationId": "history", "tags": ["stocks"],
            "summary": "daily bars; without from/to the last 100 trading days",
            "parameters": [SYMBOL, _date("from"), _date("to")],
            "responses": {"200": _json(_ref("History"), "the bars between from and to"),
                          **symbol_errors}}},
        "/api/predict/{symbol}": {"get": {
            "operationId": "predict", "tags": ["predictions"],
            "summary": "a buy/sell signal from the symbol's current model",
            "parameters": [SYMBOL],
            "responses": {
                "200": _json(_ref("Prediction"), "the prediction (stored once per as_of and model)"),
                "202": _json(_ref("Training"), "no model yet: one is being trained, ask again",
                             {"Retry-After": {**RETRY_AFTER["Retry-After"], "required": True}}),
                "400": BAD_SYMBOL, "404": UNKNOWN,
                "422": _error("too little history to train honestly"),
                "429": _json(_ref("Error"), "no model yet, and the on-demand training budget (per "
                             "address, or for everyone) is spent for this hour",
                             {"Retry-After": {**RETRY_AFTER["Retry-After"], "required": True}}),
                "503": _error("a provider is down, or the model artifact failed its checks")}}},
        "/api/predictions/{symbol}": {"get": {
            "operationId": "predictions", "tags": ["predictions"], "summary": "stored predictions",
            "parameters": [SYMBOL, {"name": "limit", "in": "query", "required": False,
                                    "schema": {"type": "integer", "minimum": 1, "maximum": 500,
                                               "default": 30}}],
            "responses": {"200": _json(_obj({"symbol": STRING, "predictions": {
                "type": "array", "items": {"type": "object"}}}), "newest first"),
                **symbol_errors}}},
        "/api/users/register": {"post": {
            "operationId": "register", "tags": ["users"], "security": [],
            "requestBody": _body({**user_body, "required": ["name", "email", "password"]}),
            "responses": {
                "201": _json(_ref("Registered"), "registered", links={"Login": {
                    "operationId": "login",
                    "requestBody": {"email": "$request.body#/email",
                                    "password": "$request.body#/password"}}}),
                "400": INVALID, "409": _error("User already exists"), "413": TOO_LARGE,
                "429": _throttled("registrations")}}},
        "/api/users/login": {"post": {
            "operationId": "login", "tags": ["users"], "security": [], "parameters": [DEVICE_TOKEN],
            "requestBody": _body(_obj({"email": STRING, "password": STRING})),
            "responses": {
                "200": _json(_ref("LoggedIn"), "a bearer token (HS256 JWT)", links=AFTER_LOGIN),
                "400": INVALID, "401": _error("Invalid credentials"), "413": TOO_LARGE,
                "429": _throttled("failed logins")}}},
        "/api/users/profile": {"get": {
            "operationId": "profile", "tags": ["users"], "security": BEARER,
            "responses": {"200": _json(_ref("Profile"), "the profile"), "401": UNAUTHORISED}}},
        "/api/users/profile/update": {"post": {
            "operationId": "updateProfile", "tags": ["users"], "security": BEARER,
            "requestBody": _body({"type": "object", "properties": {
                "name": user_body["properties"]["name"], "email": user_body["properties"]["email"]}}),
            "responses": {"200": _json(_ref("Message"), "Profile updated successfully"),
                          "400": INVALID, "401": UNAUTHORISED, "409": _error("Email already in use"),
                          "413": TOO_LARGE}}},
        "/api/users/password": {"post": {
            "operationId": "changePassword", "tags": ["users"], "security": BEARER,
            "description": "every token issued before is refused afterwards",
            "requestBody": _body(_obj({"current_password": STRING,
                                       "new_password": user_body["properties"]["password"]})),
            "responses": {"200": _json(_ref("Message"), "changed"), "400": INVALID,
                          "401": UNAUTHORISED, "403": _error("Current password is incorrect"),
                          "413": TOO_LARGE, "429": _throttled("wrong passwords")}}},
        "/api/users/logout": {"post": {
            "operationId": "logout", "tags": ["users"], "security": BEARER,
            "description": "this token is refused from now until it would have expired",
            "responses": {"200": _json(_ref("Message"), "Logged out"), "400": INVALID,
                          "401": UNAUTHORISED, "413": TOO_LARGE}}},
        "/api/users/portfolio": {"get": {
            "operationId": "portfolio", "tags": ["users"], "security": BEARER,
            "responses": {"200": _json(_ref("Portfolio"), "cash, holdings, P&L"),
                          "401": UNAUTHORISED}}},
        "/api/users/buy": {"post": {"operationId": "buy", "tags": ["trading"], **trade}},
        "/api/users/sell": {"post": {"operationId": "sell", "tags": ["trading"], **trade}},
        "/api/transactions/store": {"post": {
            "operationId": "storeTransaction", "tags": ["trading"],
            "description": "internal: IAM-signed (SigV4) on AWS, X-Service-Token locally",
            "security": [{"serviceToken": []}, {"sigv4": []}],
            "requestBody": _body(_ref("TransactionRecord")),
            "responses": {"201": _json(_ref("Stored"), "stored"), "400": INVALID,
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
            "responses": {"200": _json(_ref("Transactions"), "your ledger, newest first"),
                          "400": INVALID, "401": UNAUTHORISED,
                          "403": _error("You can only read your own transactions")}}},
        "/api/analytics/signals": {"get": {
            "operationId": "analyticsSignals", "tags": ["analytics"],
            "parameters": [{"name": "symbol", "in": "query", "required": False, "schema": STRING},
                           _date("from"), _date("to")],
            "responses": {"200": _json(_ref("Signals"), "hit rate and returns by month"),
                          "400": INVALID}}},
        "/api/analytics/trading": {"get": {
            "operationId": "analyticsTrading", "tags": ["analytics"],
            "responses": {"200": _json(_ref("Trading"), "trades by day")}}},
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
            "responses": {"200": _json(_ref("Logs"), "matching lines"), "400": INVALID,
                          "401": UNAUTHORISED, "403": _error("Operators only"),
                          "503": _error("The log store is unavailable")}}},
        "/api/logs/errors": {"get": {
            "operationId": "errorsPerMinute", "tags": ["operators"], "security": BEARER,
            "description": "ERROR and CRITICAL lines per minute (admin role only), default last hour",
            "parameters": [{"name": "service", "in": "query", "required": False, "schema": STRING},
                           *LOG_WINDOW],
            "responses": {"200": _json(_ref("ErrorsPerMinute"), "errors per minute"),
                          "400": INVALID, "401": UNAUTHORISED, "403": _error("Operators only"),
                          "503": _error("The log store is unavailable")}}},
        "/api/ops/metrics": {"get": {
            "operationId": "opsMetrics", "tags": ["operators"], "security": BEARER,
            "description": "rate, error ratio and duration percentiles per function and route, and "
                           "each function's business counts, from the metric lines (admin role only); "
                           "default last hour",
            "parameters": LOG_WINDOW,
            "responses": {"200": _json(_ref("OpsMetrics"), "the window's summary"),
                          "400": INVALID, "401": UNAUTHORISED, "403": _error("Operators only"),
                          "503": _error("The log store is unavailable")}}},
        "/api/ops/alarms": {"get": {
            "operationId": "opsAlarms", "tags": ["operators"], "security": BEARER,
            "description": "the stack's CloudWatch alarms and their states (admin role only); on the "
                           "local stack devstack evaluates them against the functions' metric lines",
            "responses": {"200": _json(_ref("OpsAlarms"), "every alarm of the stack"),
                          "401": UNAUTHORISED, "403": _error("Operators only"),
                          "503": _error("CloudWatch or the user store is unavailable")}}},
        "/api/health": {"get": {
            "operationId": "health", "tags": ["operators"],
            "description": "shallow (default): this service answers, for a load balancer; deep=true: "
                           "every dependency probed within 2 s, for operators (a bearer token of the "
                           "admin role); 503 when a critical store is down",
            "parameters": [{"name": "deep", "in": "query", "required": False,
                            "schema": {"type": "string", "enum": ["true", "false", "1", "0"]}}],
            "responses": {"200": _json(_ref("Health"), "the service's health"),
                          "400": INVALID, "401": UNAUTHORISED, "403": _error("Operators only"),
                          "503": _json({"anyOf": [_ref("Health"), _ref("Error")]},
                                       "a critical store is down (Health), or the user store is and "
                                       "the caller's role cannot be checked (Error)")}}},
        "/api/openapi.json": {"get": {
            "operationId": "openapi", "tags": ["meta"], "summary": "this document",
            "responses": {"200": _json({"type": "object"}, "the OpenAPI 3.1 document")}}},
    }


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
        "paths": _paths(),
        "components": {
            "schemas": SCHEMAS,
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
