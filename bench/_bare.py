"""The floor a REST path is compared with: a bare uvicorn endpoint answering one fixed JSON body.

Run by bench.details as `python -m uvicorn bench._bare:app`; the body and the headers to answer
come from BENCH_BARE_BODY and BENCH_BARE_HEADERS (JSON), copied from devstack's own answer.
"""

from __future__ import annotations

import json
import os
from typing import Any

BODY = os.environ.get("BENCH_BARE_BODY", '{"ok": true}').encode()
HEADERS = [(k.lower().encode(), str(v).encode())
           for k, v in json.loads(os.environ.get("BENCH_BARE_HEADERS", "{}")).items()
           if k.lower() not in ("content-length", "date", "server", "connection")]
START = {"type": "http.response.start", "status": 200, "headers": HEADERS}
ANSWER = {"type": "http.response.body", "body": BODY}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """ASGI: every HTTP request gets the same answer."""
    if scope["type"] == "http":
        await send(START)
        await send(ANSWER)
