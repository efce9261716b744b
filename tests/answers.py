"""Every answer the suite receives from the REST API, checked against its model.

`Recorder` wraps requests' `Session.send` for the whole session, so it sees what every test
receives through `requests` (the gateway fixture's helpers, test clients, schemathesis), and
keeps each answer from a gateway under `/api/`. After each test, `violations` checks the answers
of every operation the OpenAPI document gives (not a CORS preflight, which API Gateway answers
itself): an answer whose status the document gives for it must validate against that schema,
which is generated from stockpred.contracts' models; any other 4xx or 5xx must still be the
documented error shape (`{"error": "..."}`). A 2xx or 3xx the document does not give is a
violation too: the document would be lying about what the route answers.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import requests
from jsonschema import Draft202012Validator

from stockpred.api import openapi


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    status: int
    content_type: str
    body: bytes


@cache
def _document() -> dict[str, Any]:
    return json.loads(json.dumps(openapi.document()))


@cache
def _routes() -> tuple[tuple[re.Pattern[str], str], ...]:
    return tuple((re.compile(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$"), path)
                 for path in _document()["paths"])


@cache
def _validator(schema_json: str) -> Draft202012Validator:
    schema = {**json.loads(schema_json), "components": _document()["components"]}
    return Draft202012Validator(schema)


def _check(schema: dict[str, Any], body: Any) -> list[str]:
    validator = _validator(json.dumps(schema, sort_keys=True))
    return [f"{'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message[:200]}"
            for e in validator.iter_errors(body)][:5]


ERROR_SCHEMA = {"$ref": "#/components/schemas/Error"}


def violations(answers: list[Received]) -> list[str]:
    """What in these answers their models do not allow, one line each."""
    found = []
    for a in answers:
        template = next((path for pattern, path in _routes() if pattern.match(a.path)), None)
        if template is None:
            continue  # not a route of ours: the gateway's own 404
        operation = _document()["paths"][template].get(a.method.lower())
        if operation is None:
            continue  # not an operation of ours: a CORS preflight, or a method the gateway refuses
        documented = operation["responses"].get(str(a.status))
        if documented is None and a.status < 400:
            found.append(f"{a.method} {a.path} -> {a.status}: a status the document does not give")
            continue
        if "json" not in a.content_type:
            found.append(f"{a.method} {a.path} -> {a.status}: not JSON ({a.content_type or 'no type'})")
            continue
        try:
            body = json.loads(a.body)
        except ValueError:
            found.append(f"{a.method} {a.path} -> {a.status}: a body that is not JSON")
            continue
        schema = documented["content"]["application/json"]["schema"] if documented else ERROR_SCHEMA
        found += [f"{a.method} {a.path} -> {a.status}: {problem}" for problem in _check(schema, body)]
    return found


class Recorder:
    """Keeps what the REST API answers at the bases it is told, until taken."""

    def __init__(self) -> None:
        self.bases: set[str] = set()
        self._answers: list[Received] = []
        self._lock = threading.Lock()
        self._send = None

    def install(self) -> None:
        original = self._send = requests.Session.send
        recorder = self

        def send(session: requests.Session, request: requests.PreparedRequest, **kw: Any) -> Any:
            response = original(session, request, **kw)
            if not kw.get("stream"):  # a streamed answer is the caller's to read
                recorder._keep(request, response)
            return response

        requests.Session.send = send  # type: ignore[method-assign]

    def uninstall(self) -> None:
        if self._send is not None:
            requests.Session.send = self._send  # type: ignore[method-assign]

    def _keep(self, request: requests.PreparedRequest, response: requests.Response) -> None:
        url = request.url or ""
        base = next((b for b in self.bases if url.startswith(b)), None)
        if base is None:
            return
        path = urlsplit(url).path
        if not path.startswith("/api/"):
            return
        with self._lock:
            self._answers.append(Received(request.method or "GET", path, response.status_code,
                                          response.headers.get("Content-Type", ""), response.content))

    def take(self) -> list[Received]:
        with self._lock:
            answers, self._answers = self._answers, []
        return answers
