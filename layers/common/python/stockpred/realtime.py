"""Real-time pushes over the WebSocket API: rooms per symbol, and each user's own connections.

Rooms are state, so they live on the state Redis (never on the cache ring):
    stockpred:ws:room:<SYMBOL>     connection ids subscribed to the symbol
    stockpred:ws:rooms:<conn>      the symbols a connection joined (for clean-up)
    stockpred:ws:user:<user>       a user's connection ids (trade confirmations)
    stockpred:ws:conn:<conn>       the connection's user
    stockpred:ws:auth:<conn>       what its token's revocation is checked by (jti, tv, exp)
Messages go out only through boto3's `apigatewaymanagementapi` client (WS_MANAGEMENT_URL locally,
the API's https endpoint on AWS); a connection the API answers 410 Gone for is removed.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import json
import time
from typing import Any

from stockpred import auth, aws, config, redis_stores
from stockpred.logs import get_logger

log = get_logger("realtime")
PREFIX = "stockpred:ws"
FANOUT_THREADS = 16


def _key(*parts: str) -> str:
    return ":".join((PREFIX, *parts))


def management() -> Any:
    """The management API client (aws.py builds it, pooled for FANOUT_THREADS concurrent pushes)."""
    url = config.load().ws_management_url
    if not url:
        raise RuntimeError("WS_MANAGEMENT_URL is not set: no WebSocket API to push to")
    return aws.websocket_management(url, FANOUT_THREADS)


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
    """auth.verify's revocation checks, for a token already verified at $connect."""
    if redis_stores.state().exists(f"stockpred:revoked-jti:{jti}"):
        return True
    return token_version < auth._token_version(user_id)


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


# ---- pushes ------------------------------------------------------------------------------------
def send(conn_id: str, message: dict[str, Any]) -> bool:
    """Sends to one connection; a gone connection is forgotten and False returned."""
    client = management()
    try:
        client.post_to_connection(ConnectionId=conn_id, Data=json.dumps(message).encode())
        return True
    except client.exceptions.GoneException:
        forget(conn_id)
        return False


def disconnect(conn_id: str) -> None:
    client = management()
    with contextlib.suppress(client.exceptions.GoneException):
        client.delete_connection(ConnectionId=conn_id)
    forget(conn_id)


def close_user_connections(user_id: str) -> int:
    """Closes every open connection of the user through the management API's DELETE and forgets
    them (logout, password change); returns how many were open."""
    members = [c.decode() for c in redis_stores.state().smembers(_key("user", user_id))]
    if not members:
        return 0
    client = management()
    closed = 0
    for conn_id in members:
        try:
            client.delete_connection(ConnectionId=conn_id)
            closed += 1
        except client.exceptions.GoneException:
            pass
        finally:
            forget(conn_id)
    return closed


def _fan_out(conn_ids: list[str], message: dict[str, Any]) -> int:
    if not conn_ids:
        return 0
    if len(conn_ids) == 1:
        return int(send(conn_ids[0], message))
    with cf.ThreadPoolExecutor(min(FANOUT_THREADS, len(conn_ids))) as pool:
        return sum(pool.map(lambda c: send(c, message), conn_ids))


def broadcast_symbol(symbol: str, message: dict[str, Any]) -> int:
    """Pushes to everyone in the symbol's room; returns how many received it."""
    members = [c.decode() for c in redis_stores.state().smembers(_key("room", symbol))]
    return _fan_out(members, message)


def notify_user(user_id: str, message: dict[str, Any]) -> int:
    """Pushes to the user's own connections only, and only those whose token is still valid: a
    connection opened with a since revoked token is disconnected instead."""
    members = [c.decode() for c in redis_stores.state().smembers(_key("user", user_id))]
    live = []
    for conn_id in members:
        if authorised(conn_id):
            live.append(conn_id)
        else:
            disconnect(conn_id)
    return _fan_out(live, message)


def publish(kind: str, fn: Any, *args: Any) -> None:
    """Best effort from a request path: a push that fails is logged, never fails the request."""
    if not config.load().ws_management_url:
        return
    try:
        fn(*args)
    except Exception as exc:
        log.warning("push failed", extra={"fields": {"kind": kind, "error": str(exc)[:300]}})
