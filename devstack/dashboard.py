"""The dashboard's static files (web/): served by devstack from the gateway's own origin, and
published to the stack's dashboard bucket on AWS, where CloudFront serves them beside /api/*.

One origin in both places, so the browser never makes a cross-origin call:

    /                     web/index.html
    /config.json          {"apiUrl": "", "wsUrl": <the WebSocket API's URL>} (generated)
    /vendor/lightweight-charts.standalone.production.js
                          web/node_modules/lightweight-charts/dist/... (npm ci, web/package-lock.json)
    /<path>               any other file under web/ (not node_modules/, not package*.json)

The web root is `DASHBOARD_ROOT` (default: the repository's web/).
"""

from __future__ import annotations

import json
import mimetypes
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack import settings as stack_settings
from devstack.events import STAGE
from devstack.services import REPO_ROOT

VENDOR_CHARTS = "vendor/lightweight-charts.standalone.production.js"
VENDOR_SOURCES = {
    VENDOR_CHARTS: Path("node_modules/lightweight-charts/dist/lightweight-charts.standalone.production.js"),
}
# The same policy as the CloudFront response headers policy in template.yaml (DashboardHeaders).
CSP = ("default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
       "style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'; "
       "base-uri 'self'; form-action 'self'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
# Never served nor published: npm's files and what npm installs.
EXCLUDED_DIRS = {"node_modules"}
EXCLUDED_NAMES = {"package.json", "package-lock.json"}
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".webmanifest": "application/manifest+json",
    ".txt": "text/plain; charset=utf-8",
    ".woff2": "font/woff2",
}


# Paths the dashboard never answers, so that an unknown or wrong-method request there keeps the
# answer it had without the dashboard (404/405 of the API, Invoke, WebSocket stage, devstack).
RESERVED_PREFIXES = ("api", "2015-03-31", "_devstack", STAGE)
STATIC_PATH = r"(?!(?:" + "|".join(map(re.escape, RESERVED_PREFIXES)) + r")(?:/|$)).+"


def web_root() -> Path:
    return (stack_settings.DASHBOARD_ROOT.read() or REPO_ROOT / "web").resolve()


def content_type(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix in CONTENT_TYPES:
        return CONTENT_TYPES[suffix]
    guessed, _ = mimetypes.guess_type(str(path))
    return guessed or "application/octet-stream"


def config(ws_url: str, api_url: str = "") -> dict[str, str]:
    """What the page reads first: the API is on its own origin (""), the WebSocket API is not."""
    return {"apiUrl": api_url, "wsUrl": ws_url}


def _excluded(relative: Path) -> bool:
    return (any(part in EXCLUDED_DIRS or part.startswith(".") for part in relative.parts)
            or relative.name in EXCLUDED_NAMES)


def site_files(root: Path) -> Iterator[tuple[str, Path]]:
    """(key, file) of every file the dashboard serves, keys relative to the site's root."""
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if path.is_file() and not _excluded(relative):
            yield relative.as_posix(), path
    for key, source in VENDOR_SOURCES.items():
        if (root / source).is_file():
            yield key, root / source


def resolve(root: Path, url_path: str) -> Path | None:
    """The file a request path names under `root`, or None (missing, excluded, or outside it)."""
    relative = url_path.lstrip("/")
    if relative in VENDOR_SOURCES:
        candidate = root / VENDOR_SOURCES[relative]
    else:
        if not relative or "\\" in relative or "\0" in relative:
            return None
        parts = Path(relative).parts
        if any(p in ("..", ".") for p in parts) or _excluded(Path(relative)):
            return None
        candidate = root / relative
    try:
        real = candidate.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not real.is_file() or not real.is_relative_to(root):
        return None
    return real


# ---- devstack: the routes on the gateway's aiohttp app -------------------------------------------
def add_routes(app: Any, root: Path | None = None, ws_url: str | None = None) -> None:
    """GET (and HEAD) `/`, `/config.json` and every dashboard file, on the gateway's app.

    The catch-all file route refuses the template's /api/*, Invoke's /2015-03-31/*, the WebSocket
    stage /local (and its @connections) and /_devstack/* by its pattern, so it never shadows them,
    whatever the order the routes were added in.
    """
    from aiohttp import web

    site = (root or web_root()).resolve()
    ws = ws_url if ws_url is not None else stack_settings.WS_URL.read() or ""

    def answer(body: bytes, ctype: str) -> web.Response:
        response = web.Response(body=body, headers=SECURITY_HEADERS)
        response.content_type, _, charset = ctype.partition("; charset=")
        if charset:
            response.charset = charset
        return response

    async def index(request: web.Request) -> web.Response:
        found = resolve(site, "index.html")
        if found is None:
            raise web.HTTPNotFound()
        return answer(found.read_bytes(), content_type(found))

    async def config_json(request: web.Request) -> web.Response:
        return answer(json.dumps(config(ws)).encode(), "application/json")

    async def static(request: web.Request) -> web.Response:
        found = resolve(site, request.match_info["path"])
        if found is None:
            raise web.HTTPNotFound()
        return answer(found.read_bytes(), content_type(found))

    app.router.add_get("/", index)
    app.router.add_get("/config.json", config_json)
    app.router.add_get("/{path:" + STATIC_PATH + "}", static)


# ---- AWS: publishing to the dashboard bucket ---------------------------------------------------
@dataclass(frozen=True)
class Upload:
    key: str
    content_type: str
    size: int


def stack_outputs(stack_name: str, cloudformation: Any = None) -> dict[str, str]:
    import boto3

    cfn = cloudformation or boto3.client("cloudformation")
    (described,) = cfn.describe_stacks(StackName=stack_name)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}


def publish(bucket: str, ws_url: str, *, root: Path | None = None, distribution_id: str | None = None,
            invalidate: bool = True, s3: Any = None, cloudfront: Any = None,
            log: Callable[[str], None] = print) -> list[Upload]:
    """Uploads the site and a generated config.json; invalidates /* on the distribution if given.

    Every object is `Cache-Control: no-cache` (the browser revalidates; CloudFront's copies are
    replaced by the invalidation), with its content type. Files are not deleted from the bucket.
    """
    import boto3

    site = (root or web_root()).resolve()
    if not (site / "index.html").is_file():
        raise FileNotFoundError(f"{site}/index.html is missing: nothing to publish")
    missing = [str(site / src) for src in VENDOR_SOURCES.values() if not (site / src).is_file()]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)} missing: run `npm ci` in {site} "
                                "(devstack/bootstrap.sh does)")
    s3 = s3 or boto3.client("s3")
    uploads = []
    # A config.json in web/ (a developer's local one) is replaced by the one generated here.
    objects = [(key, path.read_bytes(), content_type(path)) for key, path in site_files(site)
               if key != "config.json"]
    objects.append(("config.json", json.dumps(config(ws_url)).encode(), "application/json"))
    for key, body, ctype in objects:
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=ctype, CacheControl="no-cache")
        uploads.append(Upload(key, ctype, len(body)))
        log(f"uploaded s3://{bucket}/{key} ({ctype}, {len(body)} bytes)")
    if distribution_id and invalidate:
        import time

        cloudfront = cloudfront or boto3.client("cloudfront")
        answer = cloudfront.create_invalidation(
            DistributionId=distribution_id,
            InvalidationBatch={"Paths": {"Quantity": 1, "Items": ["/*"]},
                               "CallerReference": f"stockpred-dashboard-{time.time_ns()}"})
        log(f"invalidated /* on CloudFront distribution {distribution_id} "
            f"(invalidation {answer['Invalidation']['Id']})")
    elif distribution_id:
        log(f"not invalidated: CloudFront ({distribution_id}) serves cached copies until they expire")
    return uploads
