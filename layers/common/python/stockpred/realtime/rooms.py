"""Real-time pushes over the WebSocket API: rooms per symbol, and each user's own connections.

Rooms are state, so they live on the state Redis (never on the cache ring):
    stockpred:ws:room:<SYMBOL>     connection ids subscribed to the symbol
    stockpred:ws:rooms:<conn>      the symbols a connection joined (for clean-up)
    stockpred:ws:user:<user>       a user's connection ids (trade confirmations)
    stockpred:ws:conn:<conn>       the connection's user
    stockpred:ws:auth:<conn>       what its token's revocation is checked by (jti, tv, exp)
Pushes never run inside the request that causes them. A publisher (predict, a quote, a trade)
puts one event on the push queue (SQS, PUSH_QUEUE_URL) and answers, unless the room (or the
user's set of connections) is empty: nobody to tell costs one Redis EXISTS, not a queue message
and a fan-out invocation. The fan-out function (functions/push) takes it from there:
- a room's event: the room is read and split into chunks of WS_PUSH_CHUNK connections; the
  first chunk is delivered by this invocation, the others go back on the queue as chunk events,
  which parallel invocations deliver (API Gateway's guidance for a large broadcast);
- a user's event (a trade confirmation): only to that user's connections whose token is still
  valid; a connection opened with a since revoked token is closed instead;
- a chunk event: those connections.
Each delivery is one PostToConnection (stockpred.realtime.connections_api, WS_PUSH_THREADS at a time);
410 Gone forgets the connection; a connection that could not be reached (throttled, an error) is
queued again in a chunk event of its own, delayed 1, 2, 4, 8 s, up to MAX_ATTEMPTS: at least once.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from stockpred import config
from stockpred.cloud import aws
from stockpred.identity import auth
from stockpred.observability.logs import correlation_id, get_logger
from stockpred.realtime.connections_api import ConnectionsApi, PushFailed
from stockpred.stores import redis_stores
from stockpred.trading import faults

log = get_logger("realtime")
PREFIX = "stockpred:ws"
MAX_ATTEMPTS = 5
MAX_EVENT_BYTES = 256 * 1024  # SQS's message size limit


def _key(*parts: str) -> str:
    return ":".join((PREFIX, *parts))


def management() -> ConnectionsApi:
    """The `@connections` client of this stack's WebSocket API, pooled for WS_PUSH_THREADS."""
    settings = config.load()
    if not settings.ws_management_url:
        raise RuntimeError("WS_MANAGEMENT_URL is not set: no WebSocket API to push to")
    return _management(settings.ws_management_url, settings.ws_push_threads)


@functools.cache
def _management(url: str, threads: int) -> ConnectionsApi:
    settings = config.load()
    credentials = None
    if settings.local:
        from botocore.credentials import Credentials

        credentials = Credentials(settings.aws_access_key_id, settings.aws_secret_access_key)
    return ConnectionsApi(url, settings.aws_region, credentials, pool_size=threads)


@functools.cache
def _delivery_pool(threads: int) -> cf.ThreadPoolExecutor:
    """Kept for the life of the container: a warm invocation starts no threads."""
    return cf.ThreadPoolExecutor(threads, thread_name_prefix="push")


# ---- connection state --------------------------------------------------------------------------
def connected(conn_id: str, user_id: str, ttl_s: int = 7200,
              claims: dict[str, Any] | None = None) -> None:
    """Records a connection of user_id; `claims` (of the token it connected with) are kept so
    every later message and push can check that token was not revoked since."""
    pipe = redis_stores.state().pipeline()
    pipe.set(_key("conn", conn_id), user_id, ex=ttl_s)
    if claims is not None:
        session = {"sub": user_id, "jti": claims["jti"], "tv": claims["tv"], "exp": claims["exp"]}
        pipe.set(_key("auth", conn_id), json.dumps(session), ex=ttl_s)
    pipe.sadd(_key("user", user_id), conn_id)
    pipe.execute()


def authorised(conn_id: str) -> bool:
    """False once the token the connection was opened with is revoked (logout: its jti; password
    change: the user's token version moved past it), or if nothing is known of that token."""
    raw = redis_stores.state().get(_key("auth", conn_id))
    if not raw:
        return False
    try:
        session = json.loads(raw)
        return not _revoked(session["sub"], session["jti"], int(session["tv"]))
    except (ValueError, KeyError, TypeError):
        return False


def _revoked(user_id: str, jti: str, token_version: int) -> bool:
    """auth.verify's revocation checks (the durable store's), for a token verified at $connect."""
    return auth.ended(user_id, jti, token_version)


def user_of(conn_id: str) -> str | None:
    raw = redis_stores.state().get(_key("conn", conn_id))
    return raw.decode() if raw else None


def subscribe(conn_id: str, symbol: str) -> int:
    """Joins the symbol's room; returns how many rooms the connection is in now."""
    pipe = redis_stores.state().pipeline()
    pipe.sadd(_key("room", symbol), conn_id)
    pipe.sadd(_key("rooms", conn_id), symbol)
    pipe.scard(_key("rooms", conn_id))
    return pipe.execute()[-1]


def unsubscribe(conn_id: str, symbol: str) -> None:
    pipe = redis_stores.state().pipeline()
    pipe.srem(_key("room", symbol), conn_id)
    pipe.srem(_key("rooms", conn_id), symbol)
    pipe.execute()


def rooms_of(conn_id: str) -> set[str]:
    return {s.decode() for s in redis_stores.state().smembers(_key("rooms", conn_id))}


def forget(conn_id: str) -> None:
    """Removes a connection from every room and from its user: on $disconnect, or when gone."""
    state = redis_stores.state()
    user = user_of(conn_id)
    pipe = state.pipeline()
    for symbol in rooms_of(conn_id):
        pipe.srem(_key("room", symbol), conn_id)
    pipe.delete(_key("rooms", conn_id), _key("conn", conn_id), _key("auth", conn_id))
    if user:
        pipe.srem(_key("user", user), conn_id)
    pipe.execute()


def count_message(conn_id: str, limit_per_s: int) -> bool:
    """Counts one inbound message; False once the connection sends more than limit_per_s a second."""
    key = _key("rate", conn_id, str(int(time.time())))
    pipe = redis_stores.state().pipeline()
    pipe.incr(key)
    pipe.expire(key, 5)
    return pipe.execute()[0] <= limit_per_s


# ---- closing connections (logout, password change, revoked tokens) ---------------------------
def disconnect(conn_id: str) -> None:
    management().delete(conn_id)
    forget(conn_id)


def close_user_connections(user_id: str) -> int:
    """Closes every open connection of the user through the management API's DELETE and forgets
    them (logout, password change); returns how many were open."""
    closed = 0
    for conn_id in _members("user", user_id):
        try:
            closed += management().delete(conn_id)
        finally:
            forget(conn_id)
    return closed


def close_user_connections_quietly(user_id: str) -> None:
    """close_user_connections from a request path: a failure is logged, never fails the request."""
    if not config.load().ws_management_url:
        return
    try:
        close_user_connections(user_id)
    except Exception as exc:
        log.warning("closing connections failed", extra={"fields": {"error": str(exc)[:300]}})


def _members(kind: str, name: str) -> list[str]:
    return [c.decode() for c in redis_stores.state().smembers(_key(kind, name))]


# ---- publishing: one event on the push queue, from the request path --------------------------
def publish_to_room(symbol: str, message: dict[str, Any]) -> None:
    """Everyone in the symbol's room gets `message`, soon, whoever is in it when it is delivered."""
    if _anyone_in("room", symbol):
        _enqueue({"kind": "room", "symbol": symbol, "message": message})


def publish_to_user(user_id: str, message: dict[str, Any]) -> None:
    """The user's own connections (and no one else's) get `message`."""
    if _anyone_in("user", user_id):
        _enqueue({"kind": "user", "user_id": user_id, "message": message})


def _anyone_in(kind: str, name: str) -> bool:
    """Whether the set has a member (Redis keeps no empty set); True if Redis cannot say, so a
    push is never dropped for want of an answer."""
    if not config.load().push_queue_url:
        return False
    try:
        return bool(redis_stores.state().exists(_key(kind, name)))
    except RedisError as exc:
        log.warning("push audience unknown, queueing anyway", extra={"fields": {"error": str(exc)[:300]}})
        return True


def _enqueue(event: dict[str, Any], delay_s: int = 0, *, quiet: bool = True) -> None:
    """Puts an event on the push queue. From a request path (quiet) a failure is logged and the
    request goes on: the push is lost, never the request's own work."""
    queue_url = config.load().push_queue_url
    if not queue_url:
        return
    event.setdefault("id", uuid.uuid4().hex)
    event.setdefault("published_at", time.time())
    event.setdefault("correlation_id", correlation_id.get())
    body = json.dumps(event, separators=(",", ":"))
    try:
        if (size := len(body.encode())) > MAX_EVENT_BYTES:
            raise ValueError(f"push event of {size} bytes is over SQS's 256 KiB")
        aws.client("sqs").send_message(QueueUrl=queue_url, MessageBody=body, DelaySeconds=delay_s)
    except Exception as exc:
        if not quiet:
            raise
        log.warning("push not queued", extra={"fields": {"kind": event["kind"], "error": str(exc)[:300]}})


def _enqueue_chunks(events: list[dict[str, Any]]) -> None:
    """Chunk events, ten to a SendMessageBatch; raises if any is not queued."""
    queue_url = config.load().push_queue_url
    sqs = aws.client("sqs")
    for start in range(0, len(events), 10):
        entries = [{"Id": str(i), "MessageBody": json.dumps(e, separators=(",", ":"))}
                   for i, e in enumerate(events[start:start + 10])]
        failed = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries).get("Failed") or []
        if failed:
            raise RuntimeError(f"{len(failed)} chunk event(s) not queued: {failed[0].get('Message')}")


# ---- delivering: the fan-out function's work -------------------------------------------------
@dataclass
class Delivery:
    """What one push event came to: for the fan-out function's log line."""

    kind: str
    delivered: int = 0
    gone: int = 0
    requeued: int = 0
    dropped: int = 0
    chunks_queued: int = 0
    split_ms: float = 0.0  # reading the room and queueing its other chunks
    post_ms: float = 0.0  # this invocation's PostToConnection calls


def deliver(event: dict[str, Any]) -> Delivery:
    """Delivers one push event (see the module's docstring). Raises only when the event cannot
    be handled or its follow-ups cannot be queued: then the queue delivers it again."""
    kind, message = event["kind"], event["message"]
    if kind == "room":
        started = time.perf_counter()
        members = sorted(_members("room", event["symbol"]))
        size = config.load().ws_push_chunk
        chunks = [members[i:i + size] for i in range(0, len(members), size)]
        base = {"kind": "connections", "message": message, **_trace(event)}
        _enqueue_chunks([{**base, "connections": chunk} for chunk in chunks[1:]])
        split_ms = (time.perf_counter() - started) * 1000
        result = _post_all(chunks[0] if chunks else [], event)
        result.chunks_queued, result.split_ms = max(0, len(chunks) - 1), round(split_ms, 1)
        return result
    if kind == "user":
        live = []
        for conn_id in _members("user", event["user_id"]):
            if authorised(conn_id):
                live.append(conn_id)
            else:
                disconnect(conn_id)
        return _post_all(live, event)
    if kind == "connections":
        return _post_all(list(event["connections"]), event)
    raise ValueError(f"unknown push event kind {kind!r}")


def _trace(event: dict[str, Any]) -> dict[str, Any]:
    """What a follow-up event keeps of the one it came from: for the logs and the latency."""
    return {k: event[k] for k in ("id", "published_at", "correlation_id") if k in event}


def _post_one(conn_id: str, data: bytes) -> bool | None:
    """True sent, False gone (and forgotten), None not reached (to be tried again)."""
    try:
        faults.check("push.post")
        if management().post(conn_id, data):
            return True
    except (PushFailed, faults.InjectedFault) as exc:
        log.info("push not delivered", extra={"fields": {"connection_id": conn_id, "error": str(exc)[:200]}})
        return None
    forget(conn_id)
    return False


def _post_all(conn_ids: Iterable[str], event: dict[str, Any]) -> Delivery:
    conn_ids = list(conn_ids)
    result = Delivery(event["kind"])
    if not conn_ids:
        return result
    started = time.perf_counter()
    data = json.dumps(event["message"]).encode()
    threads = min(config.load().ws_push_threads, len(conn_ids))
    # One task per thread, each posting its share in turn: a future per connection cost more
    # than the post itself.
    shares = [conn_ids[i::threads] for i in range(threads)]

    def post_share(share: list[str]) -> list[bool | None]:
        return [_post_one(c, data) for c in share]

    if threads == 1:
        done = [post_share(conn_ids)]
    else:
        done = list(_delivery_pool(config.load().ws_push_threads).map(post_share, shares))
    pairs = [(c, ok) for share, oks in zip(shares, done, strict=True)
             for c, ok in zip(share, oks, strict=True)]
    outcomes = [ok for _, ok in pairs]
    failed = [c for c, ok in pairs if ok is None]
    result.post_ms = round((time.perf_counter() - started) * 1000, 1)
    result.delivered = outcomes.count(True)
    result.gone = outcomes.count(False)
    attempt = int(event.get("attempt", 1))
    if failed and attempt < MAX_ATTEMPTS:
        _enqueue({"kind": "connections", "connections": failed, "message": event["message"],
                  **_trace(event), "attempt": attempt + 1}, delay_s=2 ** (attempt - 1), quiet=False)
        result.requeued = len(failed)
    elif failed:
        log.error("push dropped after retries", extra={"fields": {
            "connections": len(failed), "attempts": attempt, "event_id": event.get("id")}})
        result.dropped = len(failed)
    return result
