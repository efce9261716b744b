"""Buy and sell as a saga with two-phase commit, coordinated by Step Functions: what the buy and
sell functions do around an execution.

The state machine (statemachines/trade.asl.json) runs: Quote -> Prepare (in parallel: the
account reserves cash or shares, the ledger PREPAREs its row) -> Decide (a row written once) ->
Commit both or Abort both; its steps are stockpred.trading.steps. This module records the
trade's intent, starts the execution, waits for its end, keeps Idempotency-Keys, and finishes a
trade by its durable decision when recovery (stockpred.trading.recovery) finds one in doubt.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

import psycopg2
import redis

from stockpred import config
from stockpred.cloud import aws
from stockpred.observability import logs, metrics
from stockpred.observability.logs import get_logger
from stockpred.stores import postgres, redis_stores
from stockpred.trading import faults, ledger, steps
from stockpred.trading.accounts import Accounts

log = get_logger("trading")


def state_machine_arn() -> str:
    return config.load().trade_state_machine_arn



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
SIGNAL_WAIT_S = 0.5  # below the state Redis client's 1 s socket timeout



def _await_participants(txid: str, finished: set[str], end: float) -> bool:
    """Adds to `finished` the participants that signal within SIGNAL_WAIT_S (or until `end`);
    False when the state Redis cannot be read (then the caller polls)."""
    state = redis_stores.state()
    until = min(end, time.monotonic() + SIGNAL_WAIT_S)
    try:
        while finished < PARTICIPANTS and (left := until - time.monotonic()) > 0:
            popped = state.blpop([steps.finished_key(txid)], timeout=max(0.01, left))
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
    outcome = finish_in_doubt(txid, user_id)
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


def finish_in_doubt(txid: str, user_id: str | None) -> str:
    """Finishes a trade by its decision (abort where none was written), everywhere."""
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
