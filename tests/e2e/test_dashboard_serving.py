"""devstack serves the dashboard (web/) from the gateway's own origin, beside the API, and never in
its way: the gateway app of devstack.gateway.build_app with a temporary web root (DASHBOARD_ROOT),
run in this process (no worker starts: no API route is called), and the session's gateway.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from devstack import dashboard
from devstack.gateway import build_app
from devstack.runtime import WorkerPool
from devstack.services import REPO_ROOT
from devstack.sigv4 import Guard
from devstack.stack_state import free_port
from devstack.template import Template

WS_URL = "ws://127.0.0.1:3999/local"
INDEX = "<!doctype html><title>stockpred</title><h1>dashboard</h1>"


def make_site(root: Path) -> Path:
    (root / "js").mkdir(parents=True)
    (root / "css").mkdir()
    (root / "index.html").write_text(INDEX)
    (root / "js/app.js").write_text("console.log('app');\n")
    (root / "css/app.css").write_text("body { margin: 0 }\n")
    (root / "package.json").write_text("{}")
    (root / "package-lock.json").write_text("{}")
    vendor = root / dashboard.VENDOR_SOURCES[dashboard.VENDOR_CHARTS]
    vendor.parent.mkdir(parents=True)
    vendor.write_text("window.LightweightCharts = {};\n")
    (root / "node_modules/lightweight-charts/package.json").write_text("{}")
    return root


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("dashboard")
    (base / "outside.txt").write_text("not part of the site")
    root = make_site(base / "web")
    (root / "escape.txt").symlink_to(base / "outside.txt")
    return root


@pytest.fixture(scope="module")
def app(site: Path) -> web.Application:
    # Read while the app is built, and only then: the session's gateway (started later, with this
    # process's environment) must keep the repository's web/ and its own WebSocket URL.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DASHBOARD_ROOT", str(site))
        mp.setenv("STOCKPRED_WS_URL", WS_URL)
        template = Template.load(REPO_ROOT / "template.yaml")
        return build_app(template, WorkerPool(1, base_env={}), WorkerPool(1, base_env={}),
                         schedules=False, guard=Guard("AKIDTEST", "not-a-secret"))


@pytest.fixture(scope="module")
def served(app: web.Application) -> Iterator[int]:
    """The app on a free port, in a thread with its own event loop."""
    port = free_port()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def get(port: int, raw_path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """The path sent exactly as written (http.client normalises nothing, unlike requests)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, raw_path)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def assert_dashboard_headers(headers: dict[str, str]) -> None:
    assert headers["Content-Security-Policy"] == dashboard.CSP
    assert "script-src 'self';" in dashboard.CSP and "frame-ancestors 'none'" in dashboard.CSP
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-cache"


def test_root_is_the_index_with_the_security_headers(served):
    status, headers, body = get(served, "/")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert body.decode() == INDEX
    assert_dashboard_headers(headers)


def test_config_names_the_websocket_url_and_the_same_origin_api(served):
    status, headers, body = get(served, "/config.json")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert json.loads(body) == {"apiUrl": "", "wsUrl": WS_URL}
    assert_dashboard_headers(headers)


@pytest.mark.parametrize(("path", "ctype"), [
    ("/vendor/lightweight-charts.standalone.production.js", "text/javascript"),
    ("/js/app.js", "text/javascript"),
    ("/css/app.css", "text/css"),
])
def test_files_are_served_with_their_content_type(served, site, path, ctype):
    status, headers, body = get(served, path)
    assert status == 200, body
    assert headers["Content-Type"].split(";")[0] == ctype
    assert_dashboard_headers(headers)
    source = dashboard.resolve(site, path)
    assert source is not None and body == source.read_bytes()


@pytest.mark.parametrize("path", [
    "/../pyproject.toml", "/../outside.txt", "/%2e%2e/outside.txt", "/js/../../outside.txt",
    "/js/..%2f..%2foutside.txt", "/escape.txt", "/package.json", "/package-lock.json",
    "/node_modules/lightweight-charts/package.json", "/missing.js",
])
def test_nothing_outside_the_site_nor_npm_files_is_served(served, path):
    status, _, body = get(served, path)
    assert status == 404, (path, body[:200])
    assert b"not part of the site" not in body and b"[build-system]" not in body


def test_the_template_api_invoke_and_devstack_routes_are_not_shadowed(app):
    dashboard_handlers = {r.handler for r in app.router.routes()
                          if getattr(r.handler, "__module__", None) == dashboard.__name__}
    assert len(dashboard_handlers) == 3  # /, /config.json, the files

    async def handler_of(method: str, path: str) -> Any:
        match = await app.router.resolve(make_mocked_request(method, path, app=app))
        return match.handler if match.http_exception is None else match.http_exception.status

    template = Template.load(REPO_ROOT / "template.yaml")
    concrete = [(r.method, r.path.replace("{proxy+}", "a/b").replace("{", "x").replace("}", ""))
                for r in template.routes]
    others = [("POST", "/2015-03-31/functions/StocksFunction/invocations"),
              ("GET", "/_devstack/health")]
    for method, path in concrete + others:
        found = asyncio.run(handler_of(method, path))
        assert found not in dashboard_handlers and not isinstance(found, int), (method, path, found)
    # Unknown paths under the API keep the gateway's answers, not the dashboard's.
    assert asyncio.run(handler_of("GET", "/api/no-such-route")) == 404
    assert asyncio.run(handler_of("GET", "/_devstack/nothing")) == 404
    assert asyncio.run(handler_of("GET", "/2015-03-31/functions")) == 404
    # The WebSocket stage is another endpoint (devstack/wsapi.py); the dashboard never takes its path.
    assert asyncio.run(handler_of("GET", "/local")) == 404
    assert asyncio.run(handler_of("GET", "/local/@connections/abc")) == 404


def test_unknown_api_paths_answer_the_gateways_json_404(served):
    status, headers, body = get(served, "/api/no-such-route")
    assert status == 404 and json.loads(body) == {"error": "Not found"}
    assert "Content-Security-Policy" not in headers


# ---- the session's gateway: the repository's web/ and the stack's WebSocket URL ---------------
def test_the_gateway_serves_the_config_and_the_pinned_charts_library(gateway, stack):
    r = gateway.get("/config.json")
    assert r.status_code == 200
    assert r.json() == {"apiUrl": "", "wsUrl": stack["STOCKPRED_WS_URL"]}
    assert r.headers["Content-Security-Policy"] == dashboard.CSP
    vendor = gateway.get("/vendor/lightweight-charts.standalone.production.js")
    assert vendor.status_code == 200, "web/node_modules is missing: run devstack/bootstrap.sh"
    assert vendor.headers["Content-Type"].startswith("text/javascript")
    assert b"LightweightCharts" in vendor.content
    lock = json.loads((REPO_ROOT / "web/package-lock.json").read_text())
    assert lock["packages"]["node_modules/lightweight-charts"]["version"] in vendor.text[:400]
