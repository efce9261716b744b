"""The REST API's bodies as pydantic models: what a request must be, what an answer is.

One source for three uses: request bodies are validated through `parse` (every field error as
users see it: `{"error": "Invalid input data", "fields": {field: what it must be}}`); the OpenAPI
document's schemas are generated from these models (stockpred.api.openapi); the e2e suite checks
every answer it receives against them. Answers may carry fields beyond a model's (the design's
shapes may grow, never shrink), so answer models allow extra fields.

A request field's rule is one before-validator raising `Problem` with the words users read, and
`Missing` says what an absent field is told; the Field constraints beside them are what the
OpenAPI document shows (the validator has already enforced them).
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

import pydantic
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from stockpred.market import symbols
from stockpred.trading import ledger, money

SYMBOL_PATTERN = "^[A-Za-z][A-Za-z0-9.\\-]{0,9}$"
MAX_QUANTITY = ledger.MAX_QUANTITY
USER_ID_MAX = 64


class Invalid(ValueError):
    """A request body that its model refuses: each wrong field and what it must be."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k} {v}" for k, v in fields.items()))
        self.fields = fields


def problem(message: str) -> PydanticCustomError:
    """A field's refusal in the words users read (raised from a field's before-validator)."""
    return PydanticCustomError("stockpred", message)


@dataclass(frozen=True)
class Missing:
    """What a request field that is absent is told (Annotated metadata)."""

    message: str


class Request(BaseModel):
    """A request body: unknown fields are ignored, as they always were."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    def problems(self) -> dict[str, str]:
        """Checks across fields, run once each field has passed its own."""
        return {}


class Answer(BaseModel):
    """An answer body: a client must accept fields beyond these."""

    model_config = ConfigDict(extra="allow")


R = TypeVar("R", bound=Request)


def parse(model: type[R], body: Any) -> R:
    """`body` as a `model`, or Invalid naming every wrong field (the first problem of each)."""
    if not isinstance(body, dict):
        raise Invalid({"body": "must be a JSON object"})
    try:
        parsed = model.model_validate(body)
    except pydantic.ValidationError as exc:
        raise Invalid(_fields(model, exc)) from None
    if errors := parsed.problems():
        raise Invalid(errors)
    return parsed


def _fields(model: type[BaseModel], exc: pydantic.ValidationError) -> dict[str, str]:
    fields: dict[str, str] = {}
    unknown = sorted(str(e["loc"][0]) for e in exc.errors() if e["type"] == "extra_forbidden")
    if unknown:
        fields["body"] = f"unknown field(s): {', '.join(unknown)[:200]}"
    for error in exc.errors(include_url=False):
        if error["type"] == "extra_forbidden":
            continue
        name = str(error["loc"][0]) if error["loc"] else "body"
        if name in fields:
            continue
        if error["type"] == "stockpred":
            fields[name] = error["msg"]
            continue
        info = model.model_fields.get(name)
        missing = next((m for m in (info.metadata if info else ()) if isinstance(m, Missing)), None)
        fields[name] = missing.message if missing else error["msg"]
    return fields


# ---- request fields ------------------------------------------------------------------------------
def _user_id(value: Any) -> str:
    if isinstance(value, str) and 1 <= len(value) <= USER_ID_MAX:
        return value
    raise problem(f"required, as a string of 1 to {USER_ID_MAX} characters")


def _symbol(value: Any) -> str:
    try:
        return symbols.normalise(value)
    except symbols.InvalidSymbol as exc:
        raise problem(str(exc)) from None


def _quantity(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_QUANTITY:
        return value
    raise problem(f"a whole number from 1 to {MAX_QUANTITY}")


UserId = Annotated[str, Field(min_length=1, max_length=USER_ID_MAX), BeforeValidator(_user_id),
                   Missing(f"required, as a string of 1 to {USER_ID_MAX} characters")]
Symbol = Annotated[str, Field(pattern=SYMBOL_PATTERN, description="a ticker, case-insensitive: a letter, "
                              "then up to nine letters, digits, . or -"),
                   BeforeValidator(_symbol), Missing("symbol must be a string")]
Quantity = Annotated[int, Field(ge=1, le=MAX_QUANTITY), BeforeValidator(_quantity),
                     Missing(f"a whole number from 1 to {MAX_QUANTITY}")]


class Order(Request):
    """A buy or sell order (POST /api/users/buy, /api/users/sell): the symbol comes normalised."""

    user_id: UserId
    symbol: Symbol
    quantity: Quantity


def _side(value: Any) -> str:
    if value in ("buy", "sell"):
        return value
    raise problem("buy or sell")


def _price(value: Any) -> float:
    try:
        money.client_price_cents(value)
    except ValueError as exc:
        raise problem(f"a positive number: {exc}") from None
    return value


def _timestamp(value: Any) -> dt.datetime:
    try:
        return ledger.parse_timestamp(value)
    except ValueError as exc:
        raise problem(str(exc)) from None


class TransactionRecord(Order):
    """A trade an internal caller writes to the ledger (POST /api/transactions/store)."""

    action: Annotated[Side, BeforeValidator(_side), Missing("buy or sell")]
    price: Annotated[float, Field(gt=0, lt=money.MAX_PRICE), BeforeValidator(_price),
                     Missing("a positive number: a number")]
    timestamp: Annotated[dt.datetime, Field(description="within the last 24 hours, at most 5 minutes ahead"),
                         BeforeValidator(_timestamp), Missing("an ISO 8601 date-time string")]

    @property
    def price_cents(self) -> int:
        return money.client_price_cents(self.price)


# Control (Cc), format (Cf: bidi overrides, zero-width characters), line and paragraph
# separators (Zl, Zp) and lone surrogates (Cs) are refused in names and emails: they hide or
# reorder text where it is shown again.
INVISIBLE = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
VISIBLE = ("L", "N", "P", "S")  # a name needs at least one letter, number, mark of punctuation or symbol
EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                   r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")
PASSWORD_MIN, PASSWORD_MAX = 12, 128
A_STRING = "required, as a string"
A_GIVEN_PASSWORD = f"required, as a string of at most {PASSWORD_MAX} characters"


def encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate ("\ud800" in JSON)
        return False
    return True


def _text(low: int, high: int) -> Any:
    """A name-like string: no invisible characters, `low` to `high` once stripped, something visible."""
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise problem(A_STRING)
        if len(value) > high + 64:  # far too long: say so before looking at each character
            raise problem(f"must be {low} to {high} characters")
        if any(unicodedata.category(c) in INVISIBLE for c in value):
            raise problem("must not contain control or invisible characters")
        value = value.strip()
        if not low <= len(value) <= high:
            raise problem(f"must be {low} to {high} characters")
        if not any(unicodedata.category(c).startswith(VISIBLE) for c in value):
            raise problem("must contain a visible character")
        return value
    return check


_email_text = _text(3, 254)


def _email(value: Any) -> str:
    value = _email_text(value)
    if not EMAIL.fullmatch(value):
        raise problem("is not an email address")
    return value


def _new_password(value: Any) -> str:
    """A new password's shape (its strength is stockpred.identity.users' to judge)."""
    if not isinstance(value, str):
        raise problem(A_STRING)
    if not PASSWORD_MIN <= len(value) <= PASSWORD_MAX:
        raise problem(f"must be {PASSWORD_MIN} to {PASSWORD_MAX} characters")
    if not encodable(value):
        raise problem("must be valid Unicode text")
    return value


def _given_password(value: Any) -> str:
    if isinstance(value, str) and 1 <= len(value) <= PASSWORD_MAX and encodable(value):
        return value
    raise problem(A_GIVEN_PASSWORD)


Name = Annotated[str, Field(min_length=1, max_length=100), BeforeValidator(_text(1, 100)), Missing(A_STRING)]
Email = Annotated[str, Field(min_length=3, max_length=254, json_schema_extra={"format": "email"}),
                  BeforeValidator(_email), Missing(A_STRING)]
NewPassword = Annotated[str, Field(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX),
                        BeforeValidator(_new_password), Missing(A_STRING)]
GivenPassword = Annotated[str, Field(min_length=1, max_length=PASSWORD_MAX), BeforeValidator(_given_password),
                          Missing(A_GIVEN_PASSWORD)]


class Registration(Request):
    name: Name
    email: Email
    password: NewPassword = Field(description="12 to 128 characters, not easy to guess, not "
                                  "containing the email or name")


class Credentials(Request):
    email: Email
    password: GivenPassword


class ProfileChange(Request):
    """Either field or both; no other field."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Name = None  # type: ignore[assignment]  # absent: unchanged; null is refused
    email: Email = None  # type: ignore[assignment]

    def problems(self) -> dict[str, str]:
        return {} if self.model_fields_set else {"body": "give name and/or email"}


class PasswordChange(Request):
    current_password: GivenPassword
    new_password: NewPassword


# ---- answer fields -------------------------------------------------------------------------------
Money = Annotated[str, Field(pattern=r"^-?[0-9]+\.[0-9]{2}$", description="an amount, e.g. 123.45")]
Date = Annotated[dt.date, Field(description="YYYY-MM-DD")]
Side = Literal["buy", "sell"]
Object = dict[str, Any]


class Error(Answer):
    error: str
    fields: dict[str, str] | None = Field(None, description="each invalid field and what it must be")
    transaction_id: str | None = None
    status: str | None = None


class Message(Answer):
    message: str


# ---- stocks --------------------------------------------------------------------------------------
class SymbolInfo(Answer):
    symbol: str
    name: str
    currency: str
    source: str


class SymbolList(Answer):
    symbols: list[SymbolInfo]


class Universe(Answer):
    name: str
    symbols: list[str]
    size: int
    created_at: str
    updated_at: str


class UniverseList(Answer):
    universes: list[Universe]


class Details(Answer):
    id: str
    symbol: str
    price: str
    currency: str
    name: str | None = None
    as_of: Date | None = None
    source: str | None = None
    previous_close: str | None = None
    change: str | None = None
    change_percent: str | None = None
    stale: bool | None = None
    age_seconds: float | None = None


class Bar(Answer):
    date: Date
    open: float
    high: float
    low: float
    close: float
    volume: int


class History(Answer):
    model_config = ConfigDict(populate_by_name=True)
    symbol: str
    source: str
    from_: str | None = Field(alias="from")
    to: str | None
    count: int
    bars: list[Bar]
    stale: bool | None = None


# ---- predictions ---------------------------------------------------------------------------------
class UniverseRank(Answer):
    universe: str
    as_of: str
    rank: int
    of: int
    percentile: float
    decile: int
    expected_excess_return: float | None
    edge: bool
    horizon_days: int | None = None


class Volatility(Answer):
    next_day: float | None = None
    next_21_days: float | None = None
    model: str | None = None


class Sizing(Answer):
    target_volatility: float | None = None
    max_exposure: float | None = None
    horizon_days: int | None = None
    conviction_strength: float | None = None
    reason: str | None = None


class Prediction(Answer):
    model_config = ConfigDict(populate_by_name=True)
    symbol: str
    prediction: float
    action: Side
    timestamp: str
    id_: str = Field(alias="_id")
    probability: float | None = None
    confidence: float | None = None
    expected_return: float | None = None
    last_close: float | None = None
    model_version: str | None = None
    as_of: str | None = None
    edge: bool | None = None
    record: Object | None = None
    volatility: Volatility | None = Field(None, description="annualised forecasts")
    exposure: float | None = Field(None, ge=0, description="recommended fraction of capital, 0 to "
                                   "sizing.max_exposure")
    sizing: Sizing | None = None
    outcome: Object | None = None
    universe_ranks: list[UniverseRank] | None = Field(
        None, description="the symbol's place in each universe whose ranking has it")


class StoredPredictions(Answer):
    symbol: str
    predictions: list[Object] = Field(description="newest first")


class Training(Answer):
    symbol: str
    status: Literal["training"]
    message: str
    retry_after: int
    started_by_this_request: bool


class RankedMember(Answer):
    symbol: str
    rank: int
    of: int
    percentile: float
    decile: int
    score: float
    expected_excess_return: float | None


class UniverseRanking(Answer):
    universe: str
    as_of: str
    horizon_days: int
    ranking: list[RankedMember] = Field(description="best first")
    model: Object | None = None
    record: Object | None = Field(None, description="the ranker's walk-forward record: rank IC, "
                                  "deciles, long-only portfolio against equal weight, edge "
                                  "(edge_judgement), trials, trials_counted")
    expected_excess_return_means: str | None = None
    not_ranked: list[str] | None = None
    left_out: Object | None = None


# ---- users ---------------------------------------------------------------------------------------
class Registered(Answer):
    message: Literal["User registered successfully"]
    user_id: str


class LoggedIn(Answer):
    message: Literal["Login successful"]
    token: str
    expires_in: int
    device_token: str | None = Field(None, description="this device's token: send it back as "
                                     "X-Device-Token (browsers get it as the HttpOnly cookie "
                                     "stockpred_device)")


class Profile(Answer):
    user_id: str
    name: str
    email: str
    roles: list[str] | None = None


class Holding(Answer):
    symbol: str
    shares: int
    cost_basis: Money
    cost_basis_cents: int


class Portfolio(Answer):
    cash: Money
    cash_cents: int
    holdings: list[Holding]
    total_value: Money
    user_id: str | None = None
    currency: str | None = None
    available_cash: Money | None = None
    market_value: Money | None = None
    unrealised_pnl: Money | None = None
    realised_pnl: Money | None = None
    prices_complete: bool | None = None


# ---- trading -------------------------------------------------------------------------------------
class Traded(Answer):
    message: Literal["Stock bought successfully", "Stock sold successfully"]
    transaction_id: str
    price: str | None


class TradeFailed(Answer):
    error: str
    transaction_id: str
    status: str


class Stored(Answer):
    message: Literal["Transaction stored successfully"]
    transaction_id: str


class Transaction(Answer):
    transaction_id: str
    symbol: str
    action: Side
    quantity: int
    price: Money
    timestamp: str
    price_cents: int | None = None
    amount_cents: int | None = None
    fee_cents: int | None = None
    realised_pnl_cents: int | None = None
    source: str | None = None


class Transactions(Answer):
    user_id: str
    transactions: list[Transaction]


# ---- analytics -----------------------------------------------------------------------------------
class Signals(Answer):
    model_config = ConfigDict(populate_by_name=True)
    symbol: str | None
    from_: str | None = Field(alias="from")
    to: str | None
    by_month: list[Object]


class Trading(Answer):
    by_day: list[Object]


# ---- operators -----------------------------------------------------------------------------------
class LogLine(Answer):
    timestamp: str
    service: str
    function: str
    level: str
    message: str
    correlation_id: str | None = None
    request_id: str | None = None
    transaction_id: str | None = None
    execution_arn: str | None = None
    exception: str | None = None
    extra: Object | None = None


class Logs(Answer):
    logs: list[LogLine]
    count: int
    total: int


class ErrorsInMinute(Answer):
    minute: str
    errors: int


class ErrorsPerMinute(Answer):
    since: str
    minutes: list[ErrorsInMinute]


class RouteMetrics(Answer):
    function: str
    route: str
    requests: int
    rate_per_s: float
    errors_4xx: int
    errors_5xx: int
    error_ratio: float
    duration_ms: Object = Field(description="p50, p95, p99 (null without data)")


class OpsMetrics(Answer):
    since: str
    until: str
    routes: list[RouteMetrics] = Field(description="busiest first")
    functions: Object = Field(description="per function, each business count's sum")


class Health(Answer):
    status: Literal["ok", "degraded", "down"] = Field(
        description="down when PostgreSQL, the MongoDB store or the state Redis is down")
    mode: Literal["shallow", "deep"]
    checked_at: str | None = None
    dependencies: Object | None = Field(
        None, description="deep only: per dependency (postgres, mongo, state_redis, cache_ring, "
        "step_functions, market_breaker, opensearch) its status (up, degraded, down), latency_ms "
        "(null past the 2 s deadline) and detail")


class AlarmState(Answer):
    name: str
    state: Literal["OK", "ALARM", "INSUFFICIENT_DATA"]
    reason: str
    since: str | None
    description: str
    namespace: str
    metric: str
    dimensions: Object
    statistic: str
    period_s: int
    evaluation_periods: int
    threshold: float
    comparison: str


class OpsAlarms(Answer):
    alarms: list[AlarmState] = Field(description="ALARM first, then INSUFFICIENT_DATA, then OK")
    counts: Object = Field(description="how many alarms are in each state")


ANSWERS: tuple[type[Answer], ...] = tuple(
    m for m in list(globals().values())
    if isinstance(m, type) and issubclass(m, Answer) and m is not Answer)
REQUESTS: tuple[type[Request], ...] = (Order, TransactionRecord, Registration, Credentials,
                                       ProfileChange, PasswordChange)
