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

from stockpred import aws, config, faults, ledger, market, postgres, redis_stores, symbols
from stockpred.accounts import Accounts, Contention
from stockpred.logs import get_logger
from stockpred.money import price_cents
from stockpred.prices import ProviderUnavailable

log = get_logger("trading")
MAX_QUANTITY = 1_000_000


class TransientError(RuntimeError):
    """Worth retrying (a store briefly unreachable, a busy account): the state machine retries it."""


def state_machine_arn() -> str:
    return config.load().trade_state_machine_arn


def parse_order(body: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """`user_id`, `symbol` (normalised) and `quantity` from a request body, and what is wrong."""
    if not isinstance(body, dict):
        return {}, {"body": "must be a JSON object"}
    order: dict[str, Any] = {}
    errors: dict[str, str] = {}
    user_id = body.get("user_id")
    if isinstance(user_id, str) and 1 <= len(user_id) <= 64:
        order["user_id"] = user_id
    else:
        errors["user_id"] = "required, as a string of 1 to 64 characters"
    try:
        order["symbol"] = symbols.normalise(body.get("symbol"))
    except symbols.InvalidSymbol as exc:
        errors["symbol"] = str(exc)
    quantity = body.get("quantity")
    if isinstance(quantity, int) and not isinstance(quantity, bool) and 1 <= quantity <= MAX_QUANTITY:
        order["quantity"] = quantity
    else:
        errors["quantity"] = f"a whole number from 1 to {MAX_QUANTITY}"
    return order, errors


# ---- the steps the state machine calls ---------------------------------------------------------
def quote_step(trade: dict[str, Any]) -> dict[str, Any]:
    """Price (and, for a sell, the cost basis of the shares sold) that both participants use."""
    try:
        quote, _ = market.default().quote(trade["symbol"])
    except ProviderUnavailable as exc:
        raise TransientError(str(exc)) from exc
    cents = price_cents(quote.price)
    out = {"price_cents": cents, "amount_cents": cents * trade["quantity"],
           "as_of": quote.as_of.isoformat(), "cost_cents": 0}
    if trade["side"] == "sell":
        holding = Accounts().state(trade["user_id"]).holdings.get(trade["symbol"])
        if holding and holding.shares:
            out["cost_cents"] = round(holding.cost_cents * trade["quantity"] / holding.shares)
    return out


def account_step(event: dict[str, Any]) -> dict[str, Any]:
    step, trade = event["step"], event["trade"]
    faults.check(f"users.{step}")
    accounts = Accounts()
    try:
        if step == "prepare":
            q = event["quote"]
            accounts.reserve(trade["user_id"], trade["transaction_id"], trade["side"],
                             trade["symbol"], trade["quantity"], q["amount_cents"], q["cost_cents"])
        elif step == "commit":
            accounts.commit(trade["user_id"], trade["transaction_id"])
        elif step == "abort":
            accounts.release(trade["user_id"], trade["transaction_id"])
        else:
            raise ValueError(f"unknown step {step!r}")
    except (pymongo.errors.ConnectionFailure, Contention) as exc:
        raise TransientError(str(exc)) from exc
    return {"participant": "account", "step": step, "ok": True}


def ledger_step(event: dict[str, Any]) -> dict[str, Any]:
    step, trade = event["step"], event["trade"]
    faults.check(f"ledger.{step}")
    try:
        if step == "prepare":
            q = event["quote"]
            ledger.prepare(trade["transaction_id"], trade["user_id"], trade["symbol"],
                           trade["side"], trade["quantity"], q["price_cents"], q["cost_cents"])
        elif step in ("commit", "abort"):
            ledger.finish(trade["transaction_id"], step)
        else:
            raise ValueError(f"unknown step {step!r}")
    except psycopg2.OperationalError as exc:
        raise TransientError(str(exc)) from exc
    return {"participant": "ledger", "step": step, "ok": True}


def decide_step(event: dict[str, Any]) -> dict[str, Any]:
    txid = event["transaction_id"]
    faults.check("coordinator.before_decision")
    try:
        decided = ledger.decide(txid, event["decision"], "coordinator")
    except psycopg2.OperationalError as exc:
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


def _record_intent(txid: str, user_id: str, symbol: str, side: str, quantity: int) -> None:
    with postgres.transaction() as cur:
        cur.execute("""INSERT INTO trade_intents (transaction_id, user_id, symbol, side, quantity)
                       VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
                    (txid, user_id, symbol, side, quantity))


def _finish_intent(txid: str, outcome: str) -> None:
    with postgres.transaction() as cur:
        cur.execute("""UPDATE trade_intents SET finished_at = now(), outcome = %s
                       WHERE transaction_id = %s AND finished_at IS NULL""", (outcome, txid))


def _execution_arn(txid: str) -> str:
    return state_machine_arn().replace(":stateMachine:", ":execution:") + f":{txid}"


def start(txid: str, user_id: str, symbol: str, side: str, quantity: int) -> None:
    _record_intent(txid, user_id, symbol, side, quantity)
    trade = {"transaction_id": txid, "user_id": user_id, "symbol": symbol, "side": side,
             "quantity": quantity}
    aws.client("stepfunctions").start_execution(
        stateMachineArn=state_machine_arn(), name=txid,
        input=json.dumps({"trade": trade, "error": None}))


def _error_of(output: dict[str, Any]) -> tuple[str | None, str | None]:
    err = output.get("error") or {}
    cause = err.get("Cause")
    try:
        message = json.loads(cause).get("errorMessage") if cause else None
    except (ValueError, AttributeError):
        message = cause
    return err.get("Error"), message


def wait(txid: str, deadline_s: float) -> TradeResult:
    """Polls DescribeExecution (Step Functions' synchronous start is not emulated) until it ends."""
    sfn = aws.client("stepfunctions")
    end = time.monotonic() + deadline_s
    delay = 0.02  # a warm trade takes ~0.1-0.2 s: poll finely at first, then back off
    while True:
        described = sfn.describe_execution(executionArn=_execution_arn(txid))
        status = described["status"]
        if status != "RUNNING":
            break
        if time.monotonic() > end:
            return TradeResult(txid, "pending", message="the trade is still being processed")
        time.sleep(delay)
        delay = min(delay * 1.3, 0.25)
    if status != "SUCCEEDED":
        return TradeResult(txid, "failed", error_type=described.get("error"),
                           message=described.get("cause"))
    output = json.loads(described.get("output") or "{}")
    error_type, message = _error_of(output)
    result = TradeResult(txid, output.get("status", "failed"), error_type, message,
                         output.get("price_cents"))
    _finish_intent(txid, result.status)
    return result


def _fingerprint(user_id: str, symbol: str, side: str, quantity: int) -> str:
    return hashlib.sha256(f"{user_id}|{symbol}|{side}|{quantity}".encode()).hexdigest()


def execute(user_id: str, symbol: str, side: str, quantity: int, idempotency_key: str | None,
            deadline_s: float = 25.0) -> TradeResult:
    """Runs one trade to its end; with an Idempotency-Key, a repeat returns the first result."""
    if not idempotency_key:
        txid = str(uuid.uuid4())
        start(txid, user_id, symbol, side, quantity)
        return wait(txid, deadline_s)
    key = f"stockpred:idempotency:{user_id}:{hashlib.sha256(idempotency_key.encode()).hexdigest()}"
    fingerprint = _fingerprint(user_id, symbol, side, quantity)
    state = redis_stores.state()
    txid = str(uuid.uuid4())
    claimed = state.set(key, json.dumps({"transaction_id": txid, "fingerprint": fingerprint}),
                        nx=True, ex=86_400)
    if claimed:
        start(txid, user_id, symbol, side, quantity)
    else:
        first = json.loads(state.get(key) or "{}")
        if first.get("fingerprint") != fingerprint:
            raise IdempotencyConflict()
        txid = first["transaction_id"]
        if first.get("result"):
            return TradeResult(**{**first["result"], "replayed": True})
        _wait_for_start(txid)
    result = wait(txid, deadline_s)
    result.replayed = not claimed
    if result.status != "pending":
        state.set(key, json.dumps({"transaction_id": txid, "fingerprint": fingerprint,
                                   "result": asdict(result)}), ex=86_400)
    return result


def _wait_for_start(txid: str, deadline_s: float = 10.0) -> None:
    """A repeat may arrive before the first request has started the execution."""
    sfn = aws.client("stepfunctions")
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            sfn.describe_execution(executionArn=_execution_arn(txid))
            return
        except sfn.exceptions.ExecutionDoesNotExist:
            time.sleep(0.05)


# ---- recovery: finish what a crash left in doubt ----------------------------------------------
def recover(older_than_s: float = 30.0, stuck_after_s: float = 300.0) -> dict[str, Any]:
    """Finishes every trade older than the threshold that has not finished, by its decision.

    Where no decision exists, recovery writes abort first; if the coordinator wrote one first,
    recovery follows it. A trade whose execution still runs is left alone until `stuck_after_s`,
    when its execution is stopped and it is finished like the others.
    """
    sfn = aws.client("stepfunctions")
    done: dict[str, str] = {}
    with postgres.transaction() as cur:
        cur.execute("""SELECT transaction_id::text, user_id, started_at FROM trade_intents
                       WHERE finished_at IS NULL AND started_at < now() - make_interval(secs => %s)""",
                    (older_than_s,))
        intents = cur.fetchall()
    now = dt.datetime.now(dt.UTC)
    for txid, user_id, started_at in intents:
        try:
            status = sfn.describe_execution(executionArn=_execution_arn(txid))["status"]
        except sfn.exceptions.ExecutionDoesNotExist:
            status = "NEVER_STARTED"
        if status == "RUNNING":
            if (now - started_at).total_seconds() < stuck_after_s:
                continue
            sfn.stop_execution(executionArn=_execution_arn(txid), cause="stopped by recovery")
        done[txid] = _finish(txid, user_id)
    for txid in ledger.in_doubt(older_than_s):
        if txid not in done:
            done[txid] = _finish(txid, None)
    if done:
        log.info("recovery finished trades", extra={"fields": {"trades": done}})
    return {"finished": done}


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
