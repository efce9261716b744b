"""WebSocket routes: $connect (JWT in ?token=), $disconnect, subscribe, unsubscribe, $default.

One handler for every route of the WebSocket API (API Gateway's `$request.body.action` picks the
route; devstack does the same locally). Rooms live on the state Redis (stockpred.realtime.rooms).
Replies to two-way routes are the returned `body`; pushes go through the management API.
Every frame is parsed with stockpred.api.safejson (bounded depth). The token a connection was opened
with is checked for revocation at every message: once revoked (logout, password change) the
connection is disconnected.
"""

from __future__ import annotations

import json
from typing import Any

from stockpred import config
from stockpred.api import safejson
from stockpred.identity import auth
from stockpred.market import symbols
from stockpred.observability.logs import get_logger, invocation
from stockpred.realtime import rooms

log = get_logger("ws")


def _reply(message: dict[str, Any], status: int = 200) -> dict[str, Any]:
    return {"statusCode": status, "body": json.dumps(message)}


def _error(message: str) -> dict[str, Any]:
    return _reply({"type": "error", "error": message})


def on_connect(event: dict[str, Any], conn_id: str) -> dict[str, Any]:
    token = (event.get("queryStringParameters") or {}).get("token")
    try:
        claims = auth.verify(token)
    except auth.InvalidToken:
        return {"statusCode": 401, "body": "Invalid or missing token"}
    rooms.connected(conn_id, claims["sub"], claims=claims)
    return {"statusCode": 200}


def on_room(event: dict[str, Any], conn_id: str, join: bool) -> dict[str, Any]:
    try:
        body = safejson.loads(event.get("body") or "", max_depth=32)
        symbol = symbols.normalise(body.get("symbol"))
    except (ValueError, AttributeError):
        return _error("expected {\"action\": \"subscribe\", \"symbol\": \"SPX\"}")
    except symbols.InvalidSymbol as exc:
        return _error(f"invalid symbol: {exc}")
    if not join:
        rooms.unsubscribe(conn_id, symbol)
        return _reply({"type": "unsubscribed", "symbol": symbol})
    joined = rooms.rooms_of(conn_id)
    max_rooms = config.load().ws_max_rooms_per_connection
    if len(joined) >= max_rooms and symbol not in joined:
        return _error(f"at most {max_rooms} rooms per connection")
    rooms.subscribe(conn_id, symbol)
    return _reply({"type": "subscribed", "symbol": symbol})


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    ctx = event["requestContext"]
    route, conn_id = ctx["routeKey"], ctx["connectionId"]
    invocation(context, ctx.get("requestId"))
    if route == "$connect":
        return on_connect(event, conn_id)
    if route == "$disconnect":
        rooms.forget(conn_id)
        return {"statusCode": 200}
    if not rooms.authorised(conn_id):
        log.info("token revoked: connection cut", extra={"fields": {"connection": conn_id}})
        rooms.disconnect(conn_id)
        return {"statusCode": 403, "body": json.dumps({"type": "error", "error": "token revoked"})}
    if not rooms.count_message(conn_id, config.load().ws_max_messages_per_second):
        log.warning("connection flooding: cut off", extra={"fields": {"connection": conn_id}})
        rooms.disconnect(conn_id)
        return {"statusCode": 429}
    if route in ("subscribe", "unsubscribe"):
        return on_room(event, conn_id, join=route == "subscribe")
    return _error("unknown action: send {\"action\": \"subscribe\" | \"unsubscribe\", \"symbol\": ...}")
