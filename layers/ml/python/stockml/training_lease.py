"""The on-demand training lease: at most one training per symbol, started in the retrain function.

A symbol without a usable model is not trained in the predict function: API Gateway gives a
request 29 s, so `request_training` starts one training in the retrain function (an asynchronous
Lambda invoke) and the caller answers 202 (stockml.signals.current_model raises TrainingStarted).
A lease on the state Redis makes that single-flight across concurrent requests and warm
instances: ten first requests for a symbol start one training. Each training started so is
counted against the on-demand training budget (stockpred.predictions.training_budget: per hour,
stack-wide and per client address); over it, the request is refused (BudgetSpent) and leaves no
lease behind.

The lease lasts only while its holder lives. The request takes it for TRAINING_FIRST_LEASE_SECONDS
(90 s: the asynchronous invoke's queueing plus the retrain function's cold start) under a random
token it passes to the retrain function, which holds it (`TrainingLease`) while it trains: a
thread renews it to TRAINING_LEASE_SECONDS (30 s) every third of that, only while the key still
holds its token (compare-and-extend, one Lua script), and frees it (compare-and-delete) when the
training ends, trained or not. A training killed midway (timeout, out of memory, a stopped
devstack) renews nothing more, and its symbol is free again within the lease.

On the predict function's path (numpy only, no training stack) and the retrain function's.
"""

from __future__ import annotations

import json
import threading
import uuid

from stockml import registry
from stockml.registry import ModelNotFound, OutdatedArtifact
from stockpred import config
from stockpred.cloud import aws
from stockpred.observability import logs
from stockpred.observability.logs import get_logger
from stockpred.predictions import training_budget
from stockpred.stores import redis_stores

log = get_logger("training_lease")

TRAINING_RETRY_AFTER_S = 15

# KEYS: the lease; ARGV: its holder's token, the new TTL (ms). Extends it only while it holds the
# token: a lease that expired and was taken by another request is not extended.
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# KEYS: the lease; ARGV: its holder's token. Deletes it only while it holds the token.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class TrainingStarted(Exception):
    """No usable model yet; a training for the symbol runs (`started`: by this request)."""

    def __init__(self, symbol: str, started: bool) -> None:
        super().__init__(symbol)
        self.symbol = symbol
        self.started = started


def _training_lock(symbol: str) -> str:
    return f"stockpred:training:{symbol}"


def request_training(symbol: str, client: str | None = None) -> bool:
    """Starts one training of `symbol` in the retrain function unless one already runs; True if
    this call started it. A training started is counted against `client`'s (the caller's address;
    None: the global budget only) on-demand budget first: training_budget.BudgetSpent when it is
    spent, with the symbol's lease freed, so nothing is left half-started. The retrain function
    gets the lease's token (`lease_tokens`) to hold it while it trains (`TrainingLease`)."""
    state = redis_stores.state()
    token = str(uuid.uuid4())
    first_lease_ms = int(config.load().training_first_lease_s * 1000)
    if not state.set(_training_lock(symbol), token, nx=True, px=first_lease_ms):
        return False
    try:
        registry.stack_registry().latest(symbol)
    except (ModelNotFound, OutdatedArtifact):
        pass
    else:  # published (and its lease freed) between the caller's look and this lease
        release_training(symbol, token)
        return False
    try:
        training_budget.spend(client)
    except BaseException:  # spent, or the count failed: no lease may stay behind
        release_training(symbol, token)
        raise
    try:
        aws.client("lambda").invoke(
            FunctionName=config.load().train_function_name, InvocationType="Event",
            Payload=json.dumps({"symbols": [symbol], "on_demand": True,
                                "lease_tokens": {symbol: token},
                                "correlation_id": logs.correlation_id.get()}).encode())
    except Exception:
        release_training(symbol, token)
        training_budget.refund(client)
        raise
    log.info("training requested", extra={"fields": {"symbol": symbol}})
    return True


def extend_training(symbol: str, token: str, seconds: float) -> bool:
    """Extends the symbol's training lease to `seconds` from now if `token` still holds it; False
    (nothing changed) if it expired or another holder took it since."""
    return bool(redis_stores.state().register_script(_EXTEND)(
        keys=[_training_lock(symbol)], args=[token, int(seconds * 1000)]))


def release_training(symbol: str, token: str | None) -> bool:
    """Frees the symbol's training lease if `token` still holds it (None, from an invoke made
    before leases had tokens: whoever holds it); True if it was freed."""
    if token is None:
        return bool(redis_stores.state().delete(_training_lock(symbol)))
    return bool(redis_stores.state().register_script(_RELEASE)(
        keys=[_training_lock(symbol)], args=[token]))


class TrainingLease:
    """Holds a symbol's training lease while a training runs (`with TrainingLease(...)`): a daemon
    thread extends it to TRAINING_LEASE_SECONDS at once and every third of that, as long as it
    still holds the token; leaving the block stops the thread (trained or raised) and frees the
    lease. A lease lost (expired, taken by another training) is left alone: the thread stops and
    says so, the training goes on. A Redis error skips one renewal; the next one tries again."""

    def __init__(self, symbol: str, token: str | None, lease_s: float | None = None) -> None:
        self.symbol = symbol
        self.token = token
        self.lease_s = config.load().training_lease_s if lease_s is None else lease_s
        self.renewals = 0
        self.lost = False
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._renew, name=f"training-lease-{symbol}",
                                       daemon=True)

    def __enter__(self) -> TrainingLease:
        if self.token is not None:  # an old invoke without a token: nothing to renew
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.thread.is_alive():
            self.thread.join()
        try:
            release_training(self.symbol, self.token)
        except Exception:  # the lease expires on its own
            log.exception("training lease not freed", extra={"fields": {"symbol": self.symbol}})

    def _renew(self) -> None:
        while not self._stop.is_set():
            try:
                if not extend_training(self.symbol, self.token, self.lease_s):
                    self.lost = True
                    log.warning("training lease lost", extra={"fields": {"symbol": self.symbol}})
                    return
                self.renewals += 1
            except Exception:
                log.exception("training lease not renewed", extra={"fields": {"symbol": self.symbol}})
            self._stop.wait(self.lease_s / 3)
