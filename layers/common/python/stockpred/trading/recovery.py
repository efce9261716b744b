"""Recovery: every minute, finish by its durable decision each trade a crash left in doubt, and
delete the Idempotency-Key records past their window."""

from __future__ import annotations

import datetime as dt
from typing import Any

from stockpred.cloud import aws
from stockpred.observability import metrics
from stockpred.observability.logs import get_logger
from stockpred.stores import postgres
from stockpred.trading import ledger, saga

log = get_logger("trading")


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
            status = sfn.describe_execution(executionArn=saga.execution_arn(txid))["status"]
        except sfn.exceptions.ExecutionDoesNotExist:
            status = "NEVER_STARTED"
        if status == "RUNNING":
            if (now - started_at).total_seconds() < stuck_after_s:
                continue
            sfn.stop_execution(executionArn=saga.execution_arn(txid), cause="stopped by recovery")
        to_finish.append((txid, user_id))
    found = {txid for txid, _ in to_finish}
    to_finish += [(txid, None) for txid in ledger.in_doubt(older_than_s) if txid not in found]
    # In doubt past the recovery period when this run started: a run finishes them, so a count
    # that stays above 0 run after run means recovery cannot (the TradesInDoubt alarm).
    metrics.emit("TradesInDoubt", len(to_finish))
    for txid, user_id in to_finish:
        done[txid] = saga.finish_in_doubt(txid, user_id)
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
                       WHERE updated_at < now() - make_interval(secs => %s)""", (saga.KEY_TTL_S,))
        return cur.rowcount
