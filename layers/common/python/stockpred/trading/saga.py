"""Buy and sell as a saga with two-phase commit, coordinated by Step Functions.

The state machine (statemachines/trade.asl.json) runs: Quote -> Prepare (in parallel: the
account reserves cash or shares, the ledger PREPAREs its row) -> Decide (a row written once) ->
Commit both or Abort both. This module holds each step's behaviour, what the buy and sell
functions do around an execution (intent, start, wait, idempotency), and recovery, which
finishes by the durable decision whatever a crash left in doubt. Every step is idempotent by
transaction id, so Step Functions' retries and recovery can repeat any of them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

import psycopg2
import pymongo.errors
import redis

from stockpred import config, contracts
from stockpred.cloud import aws
from stockpred.market import market_data
from stockpred.market.prices import ProviderUnavailable
from stockpred.observability import logs, metrics
from stockpred.observability.logs import get_logger
from stockpred.stores import postgres, redis_stores
from stockpred.trading import faults, ledger
from stockpred.trading.accounts import Accounts, Contention
from stockpred.trading.money import price_cents

log = get_logger("trading")
MAX_QUANTITY = ledger.MAX_QUANTITY


class TransientError(RuntimeError):
    """Worth retrying (a store briefly unreachable, a busy account): the state machine retries it."""


def state_machine_arn() -> str:
    return config.load().trade_state_machine_arn


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


# ---- around an execution: what the buy and sell functions do ----------------------------------
@dataclass
class TradeResult:
    transaction_id: str
    status: str  # committed | aborted | failed | pending
    error_type: str | None = None
    message: str | None = None
    price_cents: int | None = None
    replayed: bool = False  # the answer of an earlier request with the same Idempotency-Key


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before for a different request."""


class _KeyTaken(Exception):
    """PostgreSQL's record of the Idempotency-Key names another trade: this one must not start."""


# The key's durable record (idempotency_keys), taken in the intent's own transaction: a new key
# inserts it; a retry that settled the key's failed trade (`previous`) replaces it; a record older
# than the key's window (KEY_TTL_S) is replaced as if absent. Anything else: another trade holds it.
_TAKE_KEY = """INSERT INTO idempotency_keys AS k
                   (user_id, key_hash, symbol, side, quantity, transaction_id, phase)
               VALUES (%(user_id)s, %(key_hash)s, %(symbol)s, %(side)s, %(quantity)s, %(txid)s,
                       'started')
               ON CONFLICT (user_id, key_hash) DO UPDATE
                   SET symbol = EXCLUDED.symbol, side = EXCLUDED.side, quantity = EXCLUDED.quantity,
                       transaction_id = EXCLUDED.transaction_id, phase = 'started', result = NULL,
                       created_at = CASE WHEN k.transaction_id = %(previous)s THEN k.created_at
                                         ELSE now() END,
                       updated_at = now()
                   WHERE (k.transaction_id = %(previous)s AND k.phase <> 'done')
                      OR k.updated_at < now() - make_interval(secs => %(window)s)
               RETURNING 1"""


def _record_intent(txid: str, user_id: str, symbol: str, side: str, quantity: int,
                   key_hash: str | None = None, previous: str | None = None) -> None:
    """Records the intent and, with an Idempotency-Key, the key's record, in one transaction;
    raises _KeyTaken (nothing written) when the key's record belongs to another trade."""
    with postgres.transaction() as cur:
        if key_hash is not None:
            cur.execute(_TAKE_KEY, {"user_id": user_id, "key_hash": key_hash, "symbol": symbol,
                                    "side": side, "quantity": quantity, "txid": txid,
                                    "previous": previous, "window": KEY_TTL_S})
            if cur.fetchone() is None:
                raise _KeyTaken(txid)
        cur.execute("""INSERT INTO trade_intents (transaction_id, user_id, symbol, side, quantity)
                       VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
                    (txid, user_id, symbol, side, quantity))


def _finish_intent(txid: str, outcome: str) -> None:
    with postgres.transaction() as cur:
        cur.execute("""UPDATE trade_intents SET finished_at = now(), outcome = %s
                       WHERE transaction_id = %s AND finished_at IS NULL""", (outcome, txid))


def execution_arn(txid: str) -> str:
    """The ARN of a trade's execution, named by its transaction id."""
    return state_machine_arn().replace(":stateMachine:", ":execution:") + f":{txid}"


def start(txid: str, user_id: str, symbol: str, side: str, quantity: int,
          key_hash: str | None = None, previous: str | None = None) -> None:
    _record_intent(txid, user_id, symbol, side, quantity, key_hash, previous)
    trade = {"transaction_id": txid, "user_id": user_id, "symbol": symbol, "side": side,
             "quantity": quantity}
    log.info("trade started", extra={"fields": {
        "transaction_id": txid, "execution_arn": execution_arn(txid), "symbol": symbol, "side": side,
        "quantity": quantity}})
    # The correlation id rides in the execution's input; the state machine hands it to every task.
    aws.client("stepfunctions").start_execution(
        stateMachineArn=state_machine_arn(), name=txid,
        input=json.dumps({"trade": trade, "error": None, "correlation_id": logs.correlation_id.get()}))


def _error_of(output: dict[str, Any]) -> tuple[str | None, str | None]:
    err = output.get("error") or {}
    cause = err.get("Cause")
    try:
        message = json.loads(cause).get("errorMessage") if cause else None
    except (ValueError, AttributeError):
        message = cause
    return err.get("Error"), message


# The participants tell the waiting buy or sell function that they finished (committed or
# aborted), through a list in the state Redis, so that it asks Step Functions for the outcome
# once the execution is about to end instead of polling DescribeExecution all along (Step
# Functions' synchronous start is for Express workflows only, which have no DescribeExecution,
# no StopExecution and no exactly-once start by name, all of which recovery and idempotency use).
# The signal only says when to look: the outcome is always the execution's own, and a lost
# signal (Redis failing over, a participant that never finishes) costs a poll every
# SIGNAL_WAIT_S instead.
PARTICIPANTS = frozenset({"account", "ledger"})
SIGNAL_POINT = "participants.signal"  # fault point: the signal is lost, the step still succeeds
SIGNAL_TTL_S = 300
SIGNAL_WAIT_S = 0.5  # below the state Redis client's 1 s socket timeout


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


def _await_participants(txid: str, finished: set[str], end: float) -> bool:
    """Adds to `finished` the participants that signal within SIGNAL_WAIT_S (or until `end`);
    False when the state Redis cannot be read (then the caller polls)."""
    state = redis_stores.state()
    until = min(end, time.monotonic() + SIGNAL_WAIT_S)
    try:
        while finished < PARTICIPANTS and (left := until - time.monotonic()) > 0:
            popped = state.blpop([finished_key(txid)], timeout=max(0.01, left))
            if popped is None:
                break
            finished.add(popped[1].decode() if isinstance(popped[1], bytes) else popped[1])
    except redis.RedisError as exc:
        log.warning("trade signals unreadable, polling: %s", exc, extra={"fields": {"transaction_id": txid}})
        return False
    return True


def wait(txid: str, deadline_s: float) -> TradeResult:
    """Waits for the trade's execution to end: asks DescribeExecution once both participants
    have signalled that they finished (then backing off from 20 ms), or every SIGNAL_WAIT_S
    without their signals; only polls (backing off from 20 ms) when the signals are unreadable.
    Counts the outcome: TradesCommitted, TradesAborted, TradesFailed or TradesPending."""
    result = _wait(txid, deadline_s)
    metrics.count(f"Trades{result.status.capitalize()}")
    return result


def _wait(txid: str, deadline_s: float) -> TradeResult:
    sfn = aws.client("stepfunctions")
    end = time.monotonic() + deadline_s
    finished: set[str] = set()
    signals = True
    delay = 0.02  # a warm trade takes ~0.1-0.2 s: poll finely at first, then back off
    while True:
        pause = True
        if signals and finished < PARTICIPANTS:
            signals = _await_participants(txid, finished, end)
            # Both finished: the last one's task is returning to the engine just now.
            pause = not signals or finished >= PARTICIPANTS
        if pause:
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)
        try:
            described = sfn.describe_execution(executionArn=execution_arn(txid))
        except sfn.exceptions.ExecutionDoesNotExist:
            return TradeResult(txid, "failed", error_type="ExecutionDoesNotExist",
                               message="the trade's execution was never started")
        status = described["status"]
        if status != "RUNNING":
            break
        if time.monotonic() > end:
            return TradeResult(txid, "pending", message="the trade is still being processed")
    if status != "SUCCEEDED":
        return TradeResult(txid, "failed", error_type=described.get("error"),
                           message=described.get("cause"))
    output = json.loads(described.get("output") or "{}")
    error_type, message = _error_of(output)
    result = TradeResult(txid, output.get("status", "failed"), error_type, message,
                         output.get("price_cents"))
    _finish_intent(txid, result.status)
    log.info("trade %s", result.status, extra={"fields": {
        "transaction_id": txid, "execution_arn": execution_arn(txid), "error_type": error_type}})
    return result


def _fingerprint(user_id: str, symbol: str, side: str, quantity: int) -> str:
    return hashlib.sha256(f"{user_id}|{symbol}|{side}|{quantity}".encode()).hexdigest()


# What a key's record answers for good: a committed trade, or a refusal a repeat would get again.
# Any other end (a crash, a failed or stopped execution) is settled and re-run by the next retry.
REFUSALS = frozenset({"InsufficientFunds", "InsufficientShares", "UnknownSymbol"})
KEY_TTL_S = 86_400
START_POINT = "coordinator.before_start"  # fault point: after the key is claimed, before the start
_SWAP = """if redis.call('GET', KEYS[1]) == ARGV[1] then
  if ARGV[2] == '' then redis.call('DEL', KEYS[1])
  else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
  return 1
end
return 0"""


def _final(result: dict[str, Any] | TradeResult) -> bool:
    r = asdict(result) if isinstance(result, TradeResult) else result
    return r.get("status") == "committed" or (r.get("status") == "aborted"
                                              and r.get("error_type") in REFUSALS)


def _swap(state: Any, key: str, old: str | bytes, new: dict[str, Any] | None, ttl_s: float) -> str | None:
    """Replaces the key's record only if it is still `old` (or deletes it, new=None); returns the
    new raw value, or None when another request changed it first."""
    raw = json.dumps(new) if new is not None else ""
    if state.eval(_SWAP, 1, key, old, raw, max(1, int(ttl_s * 1000))):
        return raw
    return None


def _status(txid: str) -> str | None:
    sfn = aws.client("stepfunctions")
    try:
        return sfn.describe_execution(executionArn=execution_arn(txid))["status"]
    except sfn.exceptions.ExecutionDoesNotExist:
        return None


def _settle(txid: str, user_id: str) -> TradeResult:
    """Finishes a trade whose request failed, everywhere or nowhere, by its durable decision
    (abort, unless commit was decided first): a retry can then tell whether it happened."""
    outcome = _finish(txid, user_id)
    if outcome != "commit":
        return TradeResult(txid, "aborted")
    with postgres.transaction() as cur:
        cur.execute("SELECT price_cents FROM transactions WHERE id = %s", (txid,))
        row = cur.fetchone()
    return TradeResult(txid, "committed", price_cents=row[0] if row else None)


def execute(user_id: str, symbol: str, side: str, quantity: int, idempotency_key: str | None,
            deadline_s: float = 25.0) -> TradeResult:
    """Runs one trade to its end; with an Idempotency-Key, a repeat returns the first result.

    The key's record goes through phases: `claimed` (state Redis only, expiring after
    IDEMPOTENCY_CLAIM_SECONDS, so a request that dies before starting blocks nobody for long),
    `started` (a day; set by compare-and-swap before the execution starts, so a claim that expired
    meanwhile is never started twice), `failed` (the trade ended without an answer worth
    repeating), or `done` with a final result. From `started` on, the record is also in
    PostgreSQL (idempotency_keys), inserted in the same transaction as the trade's intent and
    unique per user and key: the state Redis is the fast path in front, and when it has lost its
    copy (failover, eviction, flush) the record is read back from PostgreSQL, and a second trade
    for the key is refused by PostgreSQL before it starts. A retry waits for a running trade,
    repeats a final result, and after a failure settles the old trade by its decision: if it
    committed, that is the answer; if not, it is aborted everywhere and the retry runs the order
    afresh.
    """
    if not idempotency_key:
        txid = str(uuid.uuid4())
        start(txid, user_id, symbol, side, quantity)
        return wait(txid, deadline_s)
    key_hash = hashlib.sha256(idempotency_key.encode()).hexdigest()
    key = f"stockpred:idempotency:{user_id}:{key_hash}"
    fingerprint = _fingerprint(user_id, symbol, side, quantity)
    state = redis_stores.state()
    claim_s = config.load().idempotency_claim_s
    end = time.monotonic() + deadline_s
    replayed = False
    order = (user_id, key_hash, symbol, side, quantity)
    while True:
        raw = state.get(key)
        if raw is None:
            stored = _stored_key(user_id, key_hash)
            if stored is not None:  # Redis lost its copy: put the durable record back, go on
                record, ttl_s = stored
                state.set(key, json.dumps(record), nx=True, px=max(1, int(ttl_s * 1000)))
                continue
            txid = str(uuid.uuid4())
            claim = {"transaction_id": txid, "fingerprint": fingerprint, "phase": "claimed"}
            claim_raw = json.dumps(claim)
            if state.set(key, claim_raw, nx=True, px=int(claim_s * 1000)):
                result = _run(state, key, claim, claim_raw, order, end, None)
                if result is not None:
                    result.replayed = replayed
                    return result
            continue
        record = json.loads(raw)
        if record.get("fingerprint") != fingerprint:
            raise IdempotencyConflict()
        replayed = True
        txid = record["transaction_id"]
        if record.get("result") and _final(record["result"]):
            return TradeResult(**{**record["result"], "replayed": True})
        if time.monotonic() > end:
            return TradeResult(txid, "pending", message="the trade is still being processed",
                               replayed=True)
        phase = record.get("phase") or ("failed" if record.get("result") else "started")
        if phase == "claimed":  # another request is about to start it, or died: it expires soon
            time.sleep(0.05)
            continue
        status = _status(txid)
        if phase == "started" and status is None \
                and time.time() < record.get("started_at", 0) + claim_s:
            time.sleep(0.05)  # its request is starting the execution right now
            continue
        if phase == "started" and status is not None:
            result = wait(txid, max(0.0, end - time.monotonic()))
            result.replayed = True
            if result.status == "pending":
                return result
            _remember(state, key, raw, user_id, key_hash, _record(record, result))
            if _final(result):
                return result
            continue
        if status == "RUNNING":  # failed by its request, but its execution still runs: wait
            wait(txid, max(0.0, end - time.monotonic()))
        if _status(txid) == "RUNNING":
            continue
        settled = _settle(txid, user_id)  # failed, or never started: finish it everywhere first
        if settled.status == "committed":
            _remember(state, key, raw, user_id, key_hash, _record(record, settled))
            settled.replayed = True
            return settled
        previous = txid
        txid = str(uuid.uuid4())
        claim = {"transaction_id": txid, "fingerprint": fingerprint, "phase": "claimed"}
        claim_raw = _swap(state, key, raw, claim, claim_s)
        if claim_raw is not None:
            result = _run(state, key, claim, claim_raw, order, end, previous)
            if result is not None:
                return result  # a new trade in place of the failed one: not a replay


def _record(record: dict[str, Any], result: TradeResult) -> dict[str, Any]:
    phase = "done" if _final(result) else "failed"
    return {"transaction_id": result.transaction_id, "fingerprint": record["fingerprint"],
            "phase": phase, "result": asdict(result)}


def _stored_key(user_id: str, key_hash: str) -> tuple[dict[str, Any], float] | None:
    """PostgreSQL's record of the key, as the state Redis holds it, and the seconds left of its
    window; None when there is none, or only one older than the window (ignored, as if expired)."""
    with postgres.transaction() as cur:
        cur.execute("""SELECT symbol, side, quantity, transaction_id::text, phase, result,
                              extract(epoch FROM updated_at)::float8,
                              extract(epoch FROM now() - updated_at)::float8
                       FROM idempotency_keys WHERE user_id = %s AND key_hash = %s""",
                    (user_id, key_hash))
        row = cur.fetchone()
    if row is None or row[7] >= KEY_TTL_S:
        return None
    symbol, side, quantity, txid, phase, result, updated, age = row
    record = {"transaction_id": txid, "fingerprint": _fingerprint(user_id, symbol, side, quantity),
              "phase": phase, "started_at": updated}
    if result:
        record["result"] = result
    return record, KEY_TTL_S - age


def _store_key(user_id: str, key_hash: str, record: dict[str, Any]) -> None:
    """Writes a `failed` or `done` phase (and its result) to the key's PostgreSQL record, if that
    record is still this trade's and not already done."""
    with postgres.transaction() as cur:
        cur.execute("""UPDATE idempotency_keys SET phase = %s, result = %s::jsonb, updated_at = now()
                       WHERE user_id = %s AND key_hash = %s AND transaction_id = %s
                         AND phase <> 'done'""",
                    (record["phase"], json.dumps(record["result"]) if record.get("result") else None,
                     user_id, key_hash,
                     record["transaction_id"]))


def _remember(state: Any, key: str, old: str | bytes, user_id: str, key_hash: str,
              record: dict[str, Any]) -> None:
    """A key's new phase: in PostgreSQL first (the record that counts), then the state Redis."""
    _store_key(user_id, key_hash, record)
    _swap(state, key, old, record, KEY_TTL_S)


def _run(state: Any, key: str, claim: dict[str, Any], claim_raw: str,
         order: tuple[str, str, str, str, int], end: float, previous: str | None) -> TradeResult | None:
    """Starts the claimed trade and waits for it; None if the claim was lost before the start, or
    PostgreSQL's record of the key names another trade (`previous`: the settled trade this one
    replaces)."""
    user_id, key_hash, symbol, side, quantity = order
    txid = claim["transaction_id"]
    started_raw = None
    try:
        faults.check(START_POINT)
        started = {**claim, "phase": "started", "started_at": time.time()}
        started_raw = _swap(state, key, claim_raw, started, KEY_TTL_S)
        if started_raw is None:
            return None  # the claim expired and another request holds the key now
        start(txid, user_id, symbol, side, quantity, key_hash, previous)
    except _KeyTaken:  # Redis had lost the key and another trade holds it: mirror that, go on
        stored = _stored_key(user_id, key_hash)
        if stored is not None:
            _swap(state, key, started_raw or claim_raw, stored[0], stored[1])
        else:
            _swap(state, key, started_raw or claim_raw, None, 1)
        return None
    except Exception:
        if started_raw is None:  # release the claim: a retry need not wait for it to expire
            _swap(state, key, claim_raw, None, 1)
        else:  # it may or may not have started: the next retry settles it
            failed = {**claim, "phase": "failed"}
            try:
                _store_key(user_id, key_hash, failed)
            except psycopg2.Error as exc:  # still `started` there: a retry settles it the same way
                log.warning("could not record the key's failure: %s", exc,
                            extra={"fields": {"transaction_id": txid}})
            _swap(state, key, started_raw, failed, KEY_TTL_S)
        raise
    result = wait(txid, max(0.0, end - time.monotonic()))
    if result.status != "pending":
        _remember(state, key, started_raw, user_id, key_hash, _record(claim, result))
    return result


# ---- recovery: finish what a crash left in doubt ----------------------------------------------
def recover(older_than_s: float = 30.0, stuck_after_s: float = 300.0) -> dict[str, Any]:
    """Finishes every trade older than the threshold that has not finished, by its decision.

    Where no decision exists, recovery writes abort first; if the coordinator wrote one first,
    recovery follows it. A trade whose execution still runs is left alone until `stuck_after_s`,
    when its execution is stopped and it is finished like the others.
    Idempotency-Key records past their window are deleted (`expired_keys`).
    """
    sfn = aws.client("stepfunctions")
    done: dict[str, str] = {}
    with postgres.transaction() as cur:
        cur.execute("""SELECT transaction_id::text, user_id, started_at FROM trade_intents
                       WHERE finished_at IS NULL AND started_at < now() - make_interval(secs => %s)""",
                    (older_than_s,))
        intents = cur.fetchall()
    now = dt.datetime.now(dt.UTC)
    to_finish: list[tuple[str, str | None]] = []
    for txid, user_id, started_at in intents:
        try:
            status = sfn.describe_execution(executionArn=execution_arn(txid))["status"]
        except sfn.exceptions.ExecutionDoesNotExist:
            status = "NEVER_STARTED"
        if status == "RUNNING":
            if (now - started_at).total_seconds() < stuck_after_s:
                continue
            sfn.stop_execution(executionArn=execution_arn(txid), cause="stopped by recovery")
        to_finish.append((txid, user_id))
    found = {txid for txid, _ in to_finish}
    to_finish += [(txid, None) for txid in ledger.in_doubt(older_than_s) if txid not in found]
    # In doubt past the recovery period when this run started: a run finishes them, so a count
    # that stays above 0 run after run means recovery cannot (the TradesInDoubt alarm).
    metrics.emit("TradesInDoubt", len(to_finish))
    for txid, user_id in to_finish:
        done[txid] = _finish(txid, user_id)
    if done:
        log.info("recovery finished trades", extra={"fields": {"trades": done}})
    expired = expire_keys()
    if expired:
        log.info("recovery deleted expired idempotency keys", extra={"fields": {"keys": expired}})
    return {"finished": done, "expired_keys": expired}


def expire_keys() -> int:
    """Deletes the Idempotency-Key records older than the key's window (KEY_TTL_S, as long as the
    state Redis keeps its copy): execute ignores them already, so a deletion changes no answer."""
    with postgres.transaction() as cur:
        cur.execute("""DELETE FROM idempotency_keys
                       WHERE updated_at < now() - make_interval(secs => %s)""", (KEY_TTL_S,))
        return cur.rowcount


def _finish(txid: str, user_id: str | None) -> str:
    outcome = ledger.decide(txid, "abort", "recovery")
    ledger.finish(txid, outcome)
    if user_id is None:
        with postgres.transaction() as cur:
            cur.execute("SELECT user_id FROM trade_intents WHERE transaction_id = %s", (txid,))
            row = cur.fetchone()
        user_id = row[0] if row else None
    if user_id is not None:
        accounts = Accounts()
        if outcome == "commit":
            accounts.commit(user_id, txid)
        else:
            accounts.release(user_id, txid)
    _finish_intent(txid, "committed" if outcome == "commit" else "aborted")
    return outcome
