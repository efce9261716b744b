"""devstack's API Gateway WebSocket API and its `@connections` management API: a process of its
own on a port of its own, as on AWS the WebSocket API is an endpoint apart from the REST API, so
a fan-out's flood of `@connections` POSTs never queues the REST API's requests behind it.
The connections live in this process; its routes run on its own warm workers (one invocation
per worker at a time, as Lambda runs them).

- `GET /local` upgrades to a WebSocket. `$connect` runs first: anything but a 2xx refuses the
  upgrade (as API Gateway answers 403). Each text frame is routed by `$request.body.action`
  (the template's RouteSelectionExpression): a route of that key if the template has one, else
  `$default`; a two-way route's (RouteResponse) returned body goes back to the client.
  `$disconnect` runs when the socket closes, whoever closed it.
- `POST|GET|DELETE /local/@connections/{id}`: send to, describe, disconnect a connection; an
  unknown one is 410 GoneException. boto3's `apigatewaymanagementapi` client reaches it with
  `endpoint_url=http://127.0.0.1:<port>/local`, so the handlers' code is the code on AWS.
- Frames over 32 KB close the connection (1009), as API Gateway's frame limit does.
- Route selection never trusts a frame: it reads `action` only from a JSON object nested at
  most MAX_SELECTION_DEPTH deep (5,000 `[` would otherwise raise RecursionError in the parser),
  and a frame that cannot be routed goes to `$default`. A failure while handling one frame is
  logged and that frame dropped; the connection and the server carry on.
- `@connections` answers only callers with the stack's credentials (devstack/sigv4.py), as IAM
  guards it on AWS.

Run: python -m devstack.wsapi --port 3001 --template template.yaml
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import uvloop
from aiohttp import WSMsgType, web

from devstack import settings as stack_settings
from devstack.events import STAGE, websocket_event
from devstack.logfeed import LogFeed
from devstack.runtime import FunctionTimeout, Invocation, LambdaPython, Throttled, WorkerPool
from devstack.sigv4 import Guard
from devstack.template import Function, Template
from stockpred.api import safejson

log = logging.getLogger("devstack.wsapi")
MAX_FRAME_BYTES = 32 * 1024
MAX_SELECTION_DEPTH = 32
Invoke = Callable[[Function, dict[str, Any], str], Awaitable[Invocation]]


@dataclass
class Connection:
    id: str
    ws: web.WebSocketResponse
    connected_at_ms: int
    source_ip: str
    user_agent: str | None
    last_active: float = field(default_factory=time.time)


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat().replace("+00:00", "Z")


def selection_key(body: str) -> str | None:
    """`$request.body.action` of a frame, or None: never raises, whatever the frame."""
    if safejson.too_deep(body, MAX_SELECTION_DEPTH):
        return None
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return None
    action = parsed.get("action") if isinstance(parsed, dict) else None
    return action if isinstance(action, str) else None


def _gone(conn_id: str) -> web.Response:
    return web.json_response({"message": f"Connection {conn_id} is gone"}, status=410,
                             headers={"x-amzn-ErrorType": "GoneException"})


class WebSocketApi:
    def __init__(self, template: Template, invoke: Invoke, guard: Guard) -> None:
        self.guard = guard
        self.routes = {r.route_key: r for r in template.ws_routes}
        self.functions = template.functions
        self.invoke = invoke
        self.connections: dict[str, Connection] = {}

    def add_to(self, app: web.Application) -> None:
        if not self.routes:
            return
        app.router.add_get(f"/{STAGE}", self.connect)
        path = f"/{STAGE}/@connections/{{connection_id}}"
        app.router.add_post(path, self.guard.protect(self.post_to_connection))
        app.router.add_get(path, self.guard.protect(self.get_connection))
        app.router.add_delete(path, self.guard.protect(self.delete_connection))

    async def _run(self, route_key: str, event: dict[str, Any]) -> tuple[bool, Any]:
        route = self.routes.get(route_key)
        if route is None:
            return True, None
        try:
            inv = await self.invoke(self.functions[route.function], event, str(uuid.uuid4()))
        except (Throttled, FunctionTimeout):
            return False, None
        if inv.error:
            return False, None
        status = inv.payload.get("statusCode", 200) if isinstance(inv.payload, dict) else 200
        return 200 <= int(status) < 300, inv.payload

    async def connect(self, request: web.Request) -> web.StreamResponse:
        conn_id = base64.urlsafe_b64encode(os.urandom(12)).decode()
        connected_at = int(time.time() * 1000)
        ident = {"connection_id": conn_id, "connected_at_ms": connected_at, "domain": request.host,
                 "source_ip": request.remote or "127.0.0.1",
                 "user_agent": request.headers.get("User-Agent")}
        ok, payload = await self._run("$connect", websocket_event(
            event_type="CONNECT", route_key="$connect", headers=request.headers.items(),
            query=request.query.items(), **ident))
        if not ok:
            status = payload.get("statusCode", 403) if isinstance(payload, dict) else 403
            return web.json_response({"message": "Forbidden"}, status=status if status >= 400 else 403)
        ws = web.WebSocketResponse(max_msg_size=MAX_FRAME_BYTES, autoping=True)
        await ws.prepare(request)
        conn = Connection(conn_id, ws, connected_at, ident["source_ip"], ident["user_agent"])
        self.connections[conn_id] = conn
        try:
            async for msg in ws:
                conn.last_active = time.time()
                if msg.type == WSMsgType.TEXT:
                    body = msg.data
                elif msg.type == WSMsgType.BINARY:
                    body = base64.b64encode(msg.data).decode()
                else:
                    break
                try:
                    await self._message(conn, body, ident)
                except Exception:
                    # One bad frame must never end the connection's handler (or the server).
                    log.exception("connection %s: frame dropped", conn_id)
        finally:
            self.connections.pop(conn_id, None)
            await self._run("$disconnect", websocket_event(
                event_type="DISCONNECT", route_key="$disconnect", headers=request.headers.items(),
                disconnect_code=ws.close_code, **ident))
        return ws

    async def _message(self, conn: Connection, body: str, ident: dict[str, Any]) -> None:
        action = selection_key(body)
        route_key = action if action in self.routes else "$default"
        _, payload = await self._run(route_key, websocket_event(
            event_type="MESSAGE", route_key=route_key, body=body, **ident))
        route = self.routes.get(route_key)
        reply = payload.get("body") if isinstance(payload, dict) else None
        if route and route.two_way and reply and not conn.ws.closed:
            await conn.ws.send_str(reply)

    async def post_to_connection(self, request: web.Request) -> web.Response:
        conn = self.connections.get(request.match_info["connection_id"])
        if conn is None or conn.ws.closed:
            return _gone(request.match_info["connection_id"])
        data = await request.read()
        try:
            await conn.ws.send_str(data.decode("utf-8"))
        except UnicodeDecodeError:
            await conn.ws.send_bytes(data)
        except ConnectionError:
            return _gone(conn.id)
        return web.Response(status=200)

    async def get_connection(self, request: web.Request) -> web.Response:
        conn = self.connections.get(request.match_info["connection_id"])
        if conn is None:
            return _gone(request.match_info["connection_id"])
        return web.json_response({"connectedAt": _iso(conn.connected_at_ms / 1000),
                                  "identity": {"sourceIp": conn.source_ip, "userAgent": conn.user_agent},
                                  "lastActiveAt": _iso(conn.last_active)})

    async def delete_connection(self, request: web.Request) -> web.Response:
        conn = self.connections.get(request.match_info["connection_id"])
        if conn is None:
            return _gone(request.match_info["connection_id"])
        await conn.ws.close(code=1008, message=b"disconnected by the server")
        return web.Response(status=204)


def build_app(template: Template, pool: WorkerPool, guard: Guard | None = None,
              log_feed: LogFeed | None = None) -> web.Application:
    """The WebSocket API's stage and `@connections`, its routes invoked on `pool`; and
    `/_devstack/health`."""
    app = web.Application()
    if guard is None:
        guard = Guard(os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY"))

    async def invoke(fn: Function, event: dict[str, Any], request_id: str) -> Invocation:
        return await pool.ainvoke(fn, event, request_id)

    api = WebSocketApi(template, invoke, guard)
    api.add_to(app)

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "connections": len(api.connections),
                                  "workers": pool.size, "invocations": pool.invocations,
                                  "cold_starts": pool.cold_starts})

    app.router.add_get("/_devstack/health", health)

    async def going_away(app: web.Application) -> None:
        await asyncio.gather(*(conn.ws.close(code=1001, message=b"server going away")
                               for conn in list(api.connections.values())), return_exceptions=True)

    async def cleanup(app: web.Application) -> None:
        pool.close()
        if log_feed is not None:
            log_feed.close()

    app.on_shutdown.append(going_away)
    app.on_cleanup.append(cleanup)
    return app


def main(argv: list[str] | None = None) -> None:
    from devstack.gateway import log_feed, server_arguments

    parser = server_arguments("python -m devstack.wsapi",
                              "Serve template.yaml's WebSocket API locally.", 3001)
    parser.add_argument("--workers", type=int, default=stack_settings.WS_WORKERS.read(),
                        help="warm Lambda instances serving the WebSocket routes (default 4)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    template = Template.load(args.template)
    runtime = LambdaPython(built=template.built)
    env = dict(os.environ)
    feed = log_feed(template, runtime, env, shipping=not args.no_log_shipping)
    pool = WorkerPool(args.workers, base_env=env, runtime=runtime, log_sink=feed.sink)

    log.info("WebSocket API of %s on port %d", template.path, args.port)
    web.run_app(build_app(template, pool, log_feed=feed), host=args.host, port=args.port,
                print=None, access_log=None, loop=uvloop.new_event_loop())


if __name__ == "__main__":
    main()
