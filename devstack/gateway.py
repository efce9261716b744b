"""devstack's front door: template.yaml's API routes, Lambda's Invoke API, and the schedules.

- Every `Api` event of every function becomes a route; a request becomes an API Gateway REST
  proxy event, runs on a warm worker (runtime.WorkerPool), and its proxy response maps back.
- `POST /2015-03-31/functions/{name}/invocations` is Lambda's Invoke API, so a boto3 `lambda`
  client with an endpoint override (and moto's Step Functions engine) runs any function by name
  or ARN. As IAM does on AWS, it answers only requests SigV4-signed with the stack's credentials
  (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; devstack/sigv4.py).
- `Schedule` events fire on their rate()/cron() expressions.
- The template's CloudWatch alarms are evaluated against the local metrics (devstack/alarms.py).
- The template's WebSocket API and its `@connections` management API are another process on a
  port of their own, as on AWS they are another endpoint (devstack/wsapi.py).
- The dashboard's static files (web/) at `/`, `/config.json` and their paths (devstack/dashboard.py).

Run: python -m devstack.gateway --port 3000 --template template.yaml
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import os
import re
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvloop
from aiohttp import web

from devstack import alarms, dashboard, logfeed
from devstack import settings as stack_settings
from devstack.events import proxy_response, rest_proxy_event, scheduled_event
from devstack.logfeed import LogFeed
from devstack.queues import QueuePollers
from devstack.runtime import FunctionTimeout, Invocation, LambdaPython, Throttled, WorkerPool
from devstack.schedules import next_fire
from devstack.sigv4 import Guard
from devstack.template import Function, Route, Template
from stockpred.api import safejson

log = logging.getLogger("devstack.gateway")

# API Gateway accepts 10 MB; a synchronous Lambda invocation accepts 6 MB.
MAX_BODY_BYTES = 6 * 1024 * 1024

POOL = web.AppKey("pool", WorkerPool)
INVOKE_POOL = web.AppKey("invoke_pool", WorkerPool)
LOG_FEED = web.AppKey("log_feed", object)
TEMPLATE = web.AppKey("template", Template)


def _json(status: int, body: object, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json",
                        headers=headers)


def aiohttp_path(sam_path: str) -> str:
    """API Gateway's `{name}` matches any one segment (braces included) and `{name+}` the rest."""
    greedy = re.sub(r"\{(\w+)\+\}", r"{\1:.*}", sam_path)
    return re.sub(r"\{(\w+)\}", r"{\1:[^/]+}", greedy)


async def _invoke(app: web.Application, fn: Function, event: object, request_id: str,
                  pool: web.AppKey[WorkerPool] = POOL) -> Invocation:
    return await app[pool].ainvoke(fn, event, request_id)


def _route_handler(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        fn = request.app[TEMPLATE].functions[route.function]
        request_id = str(uuid.uuid4())
        body = await request.read()
        event = rest_proxy_event(
            method=request.method, path=request.path, resource=route.path,
            path_params=dict(request.match_info), headers=request.headers.items(),
            query=request.query.items(), body=body, source_ip=request.remote or "127.0.0.1",
            request_id=request_id,
        )
        ids = {"x-amzn-RequestId": request_id}
        try:
            inv = await _invoke(request.app, fn, event, request_id)
        except Throttled:
            return _json(429, {"error": "Too many requests"}, ids)
        except FunctionTimeout:
            return _json(504, {"error": "Endpoint request timed out"}, ids)
        if inv.error:
            log.error("%s failed: %s", fn.logical_id, inv.error.get("errorMessage"))
            return _json(502, {"error": "Internal server error"}, ids)
        try:
            status, headers, raw = proxy_response(inv.payload)
        except ValueError:
            return _json(502, {"error": "Internal server error"}, ids)
        resp = web.Response(status=status, body=raw)
        for k, v in headers:
            resp.headers.add(k, v)
        resp.headers.update(ids)
        return resp

    return handle


async def _lambda_invoke(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    fn = request.app[TEMPLATE].resolve(name)
    if fn is None:
        return _json(404, {"Type": "User", "message": f"Function not found: {name}"},
                     {"x-amzn-ErrorType": "ResourceNotFoundException"})
    raw = await request.read()
    try:
        event = safejson.loads(raw, max_depth=64) if raw else {}
    except safejson.InvalidJson:
        return _json(400, {"Type": "User", "message": "Could not parse request body into json"},
                     {"x-amzn-ErrorType": "InvalidRequestContentException"})
    request_id = str(uuid.uuid4())
    kind = request.headers.get("X-Amz-Invocation-Type", "RequestResponse")
    if kind == "DryRun":
        return web.Response(status=204)
    if kind == "Event":
        task = asyncio.create_task(_invoke(request.app, fn, event, request_id, INVOKE_POOL))
        request.app.setdefault("background", set()).add(task)
        task.add_done_callback(request.app["background"].discard)
        return web.Response(status=202, headers={"x-amzn-RequestId": request_id})
    headers = {"x-amzn-RequestId": request_id, "X-Amz-Executed-Version": "$LATEST"}
    try:
        inv = await _invoke(request.app, fn, event, request_id, INVOKE_POOL)
    except Throttled:
        return _json(429, {"Type": "User", "message": "Rate Exceeded."},
                     {"x-amzn-ErrorType": "TooManyRequestsException"})
    except FunctionTimeout:
        headers["X-Amz-Function-Error"] = "Unhandled"
        return _json(200, {"errorMessage": f"Task timed out after {fn.timeout_s}.00 seconds",
                           "errorType": "Sandbox.Timedout"}, headers)
    if inv.error:
        headers["X-Amz-Function-Error"] = "Unhandled"
        return _json(200, inv.error, headers)
    return _json(200, inv.payload, headers)


def _preflight(cors: dict) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """API Gateway's answer to a CORS preflight (SAM's `Api.Cors`, a mock integration): 200, with
    the allow headers only for the configured origin (CORS_ORIGIN locally, CorsOrigin on AWS)."""
    def literal(value: object, default: str) -> str:
        return value.strip("'") if isinstance(value, str) else default

    allow = {"Access-Control-Allow-Methods": literal(cors.get("AllowMethods"), "GET,POST,OPTIONS"),
             "Access-Control-Allow-Headers": literal(cors.get("AllowHeaders"), "Content-Type"),
             "Access-Control-Max-Age": literal(cors.get("MaxAge"), "600")}

    async def handle(request: web.Request) -> web.StreamResponse:
        allowed = os.environ.get("CORS_ORIGIN", "").rstrip("/")
        if allowed and request.headers.get("Origin") == allowed:
            return web.Response(status=200, headers={"Access-Control-Allow-Origin": allowed, **allow})
        return web.Response(status=200)

    return handle


async def _health(request: web.Request) -> web.Response:
    pools = {"api": request.app[POOL], "invoke": request.app[INVOKE_POOL]}
    feed = request.app[LOG_FEED]
    return _json(200, {"status": "ok", "functions": sorted(request.app[TEMPLATE].functions),
                       "serving": pools["api"].runtime.describe(),
                       "template": str(request.app[TEMPLATE].path),
                       "workers": pools["api"].size,
                       "invocations": sum(p.invocations for p in pools.values()),
                       "cold_starts": sum(p.cold_starts for p in pools.values()),
                       "pools": {name: {"workers": p.size, "invocations": p.invocations,
                                        "cold_starts": p.cold_starts} for name, p in pools.items()},
                       "logs": {"shipping": bool(feed and feed.shipper), "shipped": feed.shipped,
                                "lost": feed.lost} if feed else {"shipping": False}})


@web.middleware
async def _json_errors(request: web.Request, handler: Callable) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        return _json(413, {"error": "Request body too large"})
    except web.HTTPMethodNotAllowed:
        return _json(405, {"error": "Method not allowed"})
    except web.HTTPNotFound:
        return _json(404, {"error": "Not found"})


async def _run_schedules(app: web.Application) -> None:
    template = app[TEMPLATE]

    async def fire_forever(schedule_name: str, fn: Function, expression: str,
                           input_json: str | None) -> None:
        while True:
            now = dt.datetime.now(dt.UTC)
            when = next_fire(expression, now)
            await asyncio.sleep((when - now).total_seconds())
            event = json.loads(input_json) if input_json else scheduled_event(schedule_name, when)
            try:
                inv = await _invoke(app, fn, event, str(uuid.uuid4()), INVOKE_POOL)
                status = "error: " + inv.error["errorMessage"] if inv.error else "ok"
            except (Throttled, FunctionTimeout) as exc:
                status = f"error: {exc}"
            log.info("schedule %s fired %s: %s", schedule_name, fn.logical_id, status)

    tasks = [
        asyncio.create_task(fire_forever(s.name, template.functions[s.function], s.expression,
                                         s.input))
        for s in template.schedules if s.enabled
    ]
    yield
    for t in tasks:
        t.cancel()


async def _poll_queues(app: web.Application) -> None:
    """The template's SQS event sources, invoked on the Invoke API's pool (as event source
    mappings invoke functions on AWS)."""

    async def invoke(fn: Function, event: dict, request_id: str) -> Invocation:
        return await _invoke(app, fn, event, request_id, INVOKE_POOL)

    pollers = asyncio.create_task(QueuePollers(app[TEMPLATE], invoke, os.environ["AWS_ENDPOINT_URL"]).run())
    yield
    pollers.cancel()


async def _evaluate_alarms(app: web.Application) -> None:
    """The template's alarms, evaluated against the local metrics (devstack/alarms.py)."""
    task = asyncio.create_task(alarms.run(app[TEMPLATE]))
    yield
    task.cancel()


def build_app(template: Template, pool: WorkerPool, invoke_pool: WorkerPool, *,
              schedules: bool = True, guard: Guard | None = None,
              log_feed: LogFeed | None = None, alarms_evaluated: bool = False) -> web.Application:
    """`pool` serves API requests; `invoke_pool` the Invoke API and schedules. The stack's one
    gateway also evaluates the alarms (`alarms_evaluated`): an app a test builds must not, or it
    would create them afresh over the states the gateway keeps.

    Two pools, because an API function may wait on work that arrives through Invoke (a buy waits
    for its state machine, whose tasks are Lambda invocations): with one shared pool, enough
    waiting requests would hold every worker and starve the tasks they wait for.
    """
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[_json_errors])
    app[TEMPLATE] = template
    app[POOL] = pool
    app[INVOKE_POOL] = invoke_pool
    app[LOG_FEED] = log_feed
    for route in template.routes:
        app.router.add_route(route.method, aiohttp_path(route.path), _route_handler(route))
    cors = ((template.raw.get("Globals") or {}).get("Api") or {}).get("Cors")
    if isinstance(cors, dict):
        preflight = _preflight(cors)
        declared = {(r.method, r.path) for r in template.routes}
        for path in sorted({r.path for r in template.routes}):
            if ("OPTIONS", path) not in declared:
                app.router.add_route("OPTIONS", aiohttp_path(path), preflight)
    if guard is None:
        guard = Guard(os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY"))
    app.router.add_post("/2015-03-31/functions/{name}/invocations", guard.protect(_lambda_invoke))

    app.router.add_get("/_devstack/health", _health)
    # The dashboard's files from this same origin (as CloudFront serves them beside /api/* on AWS).
    dashboard.add_routes(app)
    if schedules:
        app.cleanup_ctx.append(_run_schedules)
    if template.queue_sources and os.environ.get("AWS_ENDPOINT_URL"):
        app.cleanup_ctx.append(_poll_queues)
    if alarms_evaluated and os.environ.get("AWS_ENDPOINT_URL") and os.environ.get("OPENSEARCH_URL"):
        app.cleanup_ctx.append(_evaluate_alarms)

    async def shutdown(app: web.Application) -> None:
        pool.close()
        invoke_pool.close()
        if log_feed is not None:
            log_feed.close()

    app.on_cleanup.append(shutdown)
    return app


def log_feed(template: Template, runtime: LambdaPython, env: dict[str, str], *,
             shipping: bool) -> LogFeed:
    """The functions' lines go to the log shipper as CloudWatch Logs would send them, when there
    is a log store to ship to; its own small pool, so shipping never holds an API worker.
    Without shipping (`feed.sink` is None), the workers write straight to devstack's own stderr:
    no thread here reads, echoes and batches every line."""
    shipper = template.functions.get(logfeed.SHIPPER) if shipping and env.get("OPENSEARCH_URL") else None
    ship_pool = WorkerPool(1, base_env=env, runtime=runtime, max_total=1) if shipper else None
    feed = LogFeed(shipper, ship_pool)
    if ship_pool is not None:
        ship_pool.log_sink = feed.sink
    return feed


def server_arguments(prog: str, description: str, port: int) -> argparse.ArgumentParser:
    """The arguments every devstack server of the template takes: where to listen, which
    template, and whether to ship the functions' logs."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=port)
    parser.add_argument("--template", type=Path, default=Path("template.yaml"),
                        help="template.yaml (serves the sources) or .aws-sam/build/template.yaml "
                             "(serves `sam build`'s output the way Lambda loads it)")
    parser.add_argument("--no-log-shipping", action="store_true",
                        default=not stack_settings.LOG_SHIPPING.read(),
                        help="only echo the functions' lines, do not ship them to OPENSEARCH_URL")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = server_arguments("python -m devstack.gateway", "Serve template.yaml's functions locally.",
                              3000)
    parser.add_argument("--workers", type=int, default=stack_settings.WORKERS.read(),
                        help="warm Lambda instances serving API requests (default 4)")
    parser.add_argument("--invoke-workers", type=int,
                        default=stack_settings.INVOKE_WORKERS.read(),
                        help="warm Lambda instances serving the Invoke API and schedules (default 4)")
    parser.add_argument("--no-schedules", action="store_true",
                        default=not stack_settings.SCHEDULES.read(),
                        help="do not fire Schedule events")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    template = Template.load(args.template)
    runtime = LambdaPython(built=template.built)
    log.info("serving %s from %s", runtime.describe(), template.path)
    env = dict(os.environ)
    feed = log_feed(template, runtime, env, shipping=not args.no_log_shipping)
    pool = WorkerPool(args.workers, base_env=env, runtime=runtime, log_sink=feed.sink)
    invoke_pool = WorkerPool(args.invoke_workers, base_env=env, runtime=runtime, log_sink=feed.sink)
    # uvloop: the loop's socket and timer work in C, which the REST path's hops are made of.
    web.run_app(build_app(template, pool, invoke_pool, schedules=not args.no_schedules, log_feed=feed,
                          alarms_evaluated=True),
                host=args.host, port=args.port, print=None, access_log=None,
                loop=uvloop.new_event_loop())


if __name__ == "__main__":
    main()
