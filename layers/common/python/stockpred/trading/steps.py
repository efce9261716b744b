"""The trade state machine's steps (statemachines/trade.asl.json): Quote, each participant's
Prepare, Commit and Abort, and Decide.

Each step validates its input as if anyone could invoke it, is idempotent by transaction id
(Step Functions' retries and recovery may repeat it), and a participant's commit or abort
tells the waiting buy or sell function that it finished (`finished_key`; see stockpred.trading.saga).
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg2
import pymongo.errors
import redis

from stockpred import contracts
from stockpred.market import market_data
from stockpred.market.prices import ProviderUnavailable
from stockpred.observability.logs import get_logger
from stockpred.stores import postgres, redis_stores
from stockpred.trading import faults, ledger
from stockpred.trading.accounts import Accounts, Contention
from stockpred.trading.money import price_cents

log = get_logger("trading")
MAX_QUANTITY = ledger.MAX_QUANTITY


class TransientError(RuntimeError):
    """Worth retrying (a store briefly unreachable, a busy account): the state machine retries it."""



# ---- the steps the state machine calls ---------------------------------------------------------
# Each handler validates its input as if anyone could invoke it: the event must describe a trade
# whose intent is recorded (same user, symbol, side and quantity), the prices must be the ones the
# Quote step stored for it, and a participant moves only in the order the saga allows (prepare
# before any decision, commit only after a commit decision, abort only after an abort decision).
# A refusal raises InvalidStep and changes nothing.
class InvalidStep(ValueError):
    """The step's input is not what this trade's own execution would send: refused, nothing moved."""


TRADE_FIELDS = frozenset({"transaction_id", "user_id", "symbol", "side", "quantity"})
MAX_PRICE_CENTS = ledger.MAX_PRICE_CENTS


def _whole(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidStep(f"{name} must be a whole number from {low} to {high}")
    return value


def _txid(value: Any) -> str:
    try:
        if isinstance(value, str) and str(uuid.UUID(value)) == value:
            return value
    except ValueError:
        pass
    raise InvalidStep("transaction_id must be a transaction id (a lower-case UUID)")


def _trade_of(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) != TRADE_FIELDS:
        raise InvalidStep(f"trade must be an object with exactly {', '.join(sorted(TRADE_FIELDS))}")
    try:
        order = contracts.parse(contracts.Order, value)
    except contracts.Invalid as exc:
        raise InvalidStep(f"trade is malformed: {exc.fields}") from None
    if order.symbol != value["symbol"]:
        raise InvalidStep("trade is malformed: symbol not normalised")
    if value["side"] not in ("buy", "sell"):
        raise InvalidStep("side must be buy or sell")
    return {"transaction_id": _txid(value["transaction_id"]), **order.model_dump(), "side": value["side"]}


def _intent(txid: str) -> dict[str, Any] | None:
    try:
        with postgres.transaction() as cur:
            cur.execute("""SELECT user_id, symbol, side, quantity, price_cents, cost_cents, as_of
                           FROM trade_intents WHERE transaction_id = %s""", (txid,))
            row = cur.fetchone()
    except psycopg2.OperationalError as exc:
        raise TransientError(str(exc)) from exc
    if row is None:
        return None
    return dict(zip(("user_id", "symbol", "side", "quantity", "price_cents", "cost_cents", "as_of"),
                    row, strict=True))


def _known(trade: dict[str, Any]) -> dict[str, Any]:
    """The recorded intent of the trade, which must be the same order the event describes."""
    intent = _intent(trade["transaction_id"])
    if intent is None:
        raise InvalidStep(f"unknown transaction {trade['transaction_id']}")
    if any(intent[k] != trade[k] for k in ("user_id", "symbol", "side", "quantity")):
        raise InvalidStep(f"transaction {trade['transaction_id']} is not this order")
    return intent


def _stored_quote(intent: dict[str, Any]) -> dict[str, Any]:
    price, cost = intent["price_cents"], intent["cost_cents"]
    return {"price_cents": price, "amount_cents": price * intent["quantity"], "as_of": intent["as_of"],
            "cost_cents": cost}


def _quote_of(value: Any, intent: dict[str, Any]) -> dict[str, Any]:
    """The quote in a prepare event: it must be the one the Quote step stored for this trade."""
    if not isinstance(value, dict):
        raise InvalidStep("quote must be an object")
    if intent["price_cents"] is None:
        raise InvalidStep("the trade has not been quoted")
    price = _whole(value.get("price_cents"), "price_cents", 1, MAX_PRICE_CENTS)
    amount = _whole(value.get("amount_cents"), "amount_cents", 1, MAX_PRICE_CENTS * MAX_QUANTITY)
    cost = _whole(value.get("cost_cents"), "cost_cents", 0, MAX_PRICE_CENTS * MAX_QUANTITY)
    stored = _stored_quote(intent)
    if (price, amount, cost) != (stored["price_cents"], stored["amount_cents"], stored["cost_cents"]):
        raise InvalidStep("quote is not the one this trade was given")
    return stored


def _decision(txid: str) -> str | None:
    try:
        with postgres.transaction() as cur:
            return ledger.decision(cur, txid)
    except psycopg2.OperationalError as exc:
        raise TransientError(str(exc)) from exc


def _step_event(event: Any, fields: set[str]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    if not isinstance(event, dict) or not set(event) <= fields | {"step"}:
        raise InvalidStep("the event must be an object with step, trade (and quote to prepare)")
    step = event.get("step")
    if step not in ("prepare", "commit", "abort"):
        raise InvalidStep(f"unknown step {step!r}")
    if (step == "prepare") != ("quote" in event):
        raise InvalidStep("a quote goes with prepare, and only with prepare")
    trade = _trade_of(event.get("trade"))
    return step, trade, _known(trade)


def _in_order(step: str, decided: str | None, prepared: bool) -> None:
    """Prepare before any decision (or an already prepared participant, repeated); commit after a
    commit decision; abort after an abort decision."""
    if step == "prepare" and decided is not None and not prepared:
        raise InvalidStep(f"the trade was already decided ({decided}); it cannot prepare now")
    if step in ("commit", "abort") and decided != step:
        raise InvalidStep(f"the trade's decision is {decided or 'not made'}; it cannot {step}")


def quote_step(trade: Any) -> dict[str, Any]:
    """Price (and, for a sell, the cost basis of the shares sold) that both participants use,
    stored with the intent the first time so that every later step is held to it."""
    trade = _trade_of(trade)
    intent = _known(trade)
    if intent["price_cents"] is not None:
        return _stored_quote(intent)
    try:
        quote, _ = market_data.default().quote(trade["symbol"])
    except ProviderUnavailable as exc:
        raise TransientError(str(exc)) from exc
    cents = price_cents(quote.price)
    if not 1 <= cents <= MAX_PRICE_CENTS:
        raise InvalidStep(f"the quoted price of {trade['symbol']} cannot be traded")
    cost = 0
    if trade["side"] == "sell":
        holding = Accounts().state(trade["user_id"]).holdings.get(trade["symbol"])
        if holding and holding.shares:
            cost = max(0, round(holding.cost_cents * trade["quantity"] / holding.shares))
    try:
        with postgres.transaction() as cur:
            cur.execute("""UPDATE trade_intents SET price_cents = %s, cost_cents = %s, as_of = %s
                           WHERE transaction_id = %s AND price_cents IS NULL""",
                        (cents, cost, quote.as_of.isoformat(), trade["transaction_id"]))
    except psycopg2.OperationalError as exc:
        raise TransientError(str(exc)) from exc
    return _stored_quote(_known(trade))


def account_step(event: Any) -> dict[str, Any]:
    faults.check(f"users.{event.get('step') if isinstance(event, dict) else None}")
    step, trade, intent = _step_event(event, {"trade", "quote"})
    txid = trade["transaction_id"]
    accounts = Accounts()
    try:
        if step == "prepare":
            q = _quote_of(event["quote"], intent)
            reserved = f"reserve:{txid}" in accounts.state(trade["user_id"]).applied_refs
            _in_order(step, _decision(txid), reserved)
            accounts.reserve(trade["user_id"], txid, trade["side"], trade["symbol"], trade["quantity"],
                             q["amount_cents"], q["cost_cents"])
        elif step == "commit":
            _in_order(step, _decision(txid), True)
            accounts.commit(trade["user_id"], txid)
        else:
            _in_order(step, _decision(txid), True)
            accounts.release(trade["user_id"], txid)
    except (pymongo.errors.ConnectionFailure, Contention) as exc:
        raise TransientError(str(exc)) from exc
    if step != "prepare":
        _signal_finished(txid, "account")
    return {"participant": "account", "step": step, "ok": True}


def ledger_step(event: Any) -> dict[str, Any]:
    faults.check(f"ledger.{event.get('step') if isinstance(event, dict) else None}")
    step, trade, intent = _step_event(event, {"trade", "quote"})
    txid = trade["transaction_id"]
    try:
        if step == "prepare":
            q = _quote_of(event["quote"], intent)
            _in_order(step, _decision(txid), ledger.prepared_or_written(txid))
            ledger.prepare(txid, trade["user_id"], trade["symbol"], trade["side"], trade["quantity"],
                           q["price_cents"], q["cost_cents"])
        else:
            _in_order(step, _decision(txid), True)
            ledger.finish(txid, step)
    except psycopg2.OperationalError as exc:
        raise TransientError(str(exc)) from exc
    if step != "prepare":
        _signal_finished(txid, "ledger")
    return {"participant": "ledger", "step": step, "ok": True}


def decide_step(event: Any) -> dict[str, Any]:
    faults.check("coordinator.before_decision")
    if not isinstance(event, dict) or set(event) != {"transaction_id", "decision"}:
        raise InvalidStep("the event must be an object with exactly transaction_id and decision")
    txid = _txid(event["transaction_id"])
    wanted = event["decision"]
    if wanted not in ("commit", "abort"):
        raise InvalidStep("decision must be commit or abort")
    intent = _intent(txid)
    if intent is None:
        raise InvalidStep(f"unknown transaction {txid}")
    try:
        decided = _decision(txid)
        if decided is None and wanted == "commit":
            # Commit only what both participants hold: otherwise the decision could not be kept.
            if not ledger.prepared_or_written(txid):
                raise InvalidStep(f"trade {txid}: the ledger has not prepared it")
            if f"reserve:{txid}" not in Accounts().state(intent["user_id"]).applied_refs:
                raise InvalidStep(f"trade {txid}: the account has not reserved it")
        decided = decided or ledger.decide(txid, wanted, "coordinator")
    except psycopg2.OperationalError as exc:
        raise TransientError(str(exc)) from exc
    except pymongo.errors.ConnectionFailure as exc:
        raise TransientError(str(exc)) from exc
    faults.check("coordinator.after_decision")
    return {"decision": decided}


# ---- telling the waiting function ---------------------------------------------------------------
SIGNAL_POINT = "participants.signal"  # fault point: the signal is lost, the step still succeeds
SIGNAL_TTL_S = 300


def finished_key(txid: str) -> str:
    return f"stockpred:trade-finished:{txid}"


def _signal_finished(txid: str, participant: str) -> None:
    try:
        faults.check(SIGNAL_POINT)
        with redis_stores.state().pipeline(transaction=True) as pipe:
            pipe.rpush(finished_key(txid), participant).expire(finished_key(txid), SIGNAL_TTL_S)
            pipe.execute()
    except (redis.RedisError, faults.InjectedFault) as exc:  # its waiter falls back to polling
        log.warning("could not signal %s finished: %s", participant, exc,
                    extra={"fields": {"transaction_id": txid}})
