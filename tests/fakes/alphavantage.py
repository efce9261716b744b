"""A local Alpha Vantage: serves recorded-format bodies from tests/events/alphavantage.

Behaves as the real one does (see shared ALPHAVANTAGE.md): HTTP 200 for everything, errors as
`Error Message` / `Note` / `Information` bodies, `{"Global Quote": {}}` for an unknown symbol.
Counts the calls it receives so tests can prove how often the upstream was asked.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

FIXTURES = Path(__file__).resolve().parent.parent / "events" / "alphavantage"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


class FakeAlphaVantage:
    """Knows the symbols given; `mode` switches to throttling ("note", "information") or "down"."""

    def __init__(self, symbols: dict[str, float] | None = None) -> None:
        self.symbols = symbols or {"IBM": 123.31}
        self.mode = "ok"
        self.calls: Counter[tuple[str, str]] = Counter()
        self.keys_seen: set[str] = set()
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                status, body = fake.answer(self.path)
                raw = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeAlphaVantage:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def total(self, function: str | None = None, symbol: str | None = None) -> int:
        with self._lock:
            return sum(n for (f, s), n in self.calls.items()
                       if (function is None or f == function) and (symbol is None or s == symbol))

    def answer(self, path: str) -> tuple[int, dict | None]:
        url = urlparse(path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        function, symbol = q.get("function", ""), q.get("symbol", "")
        with self._lock:
            self.calls[(function, symbol)] += 1
            self.keys_seen.add(q.get("apikey", ""))
        if self.mode == "down":
            return 503, None
        if self.mode == "note":
            return 200, fixture("throttle_note.json")
        if self.mode == "information":
            return 200, fixture("throttle_information.json")
        if url.path != "/query":
            return 404, None
        if not q.get("apikey"):
            return 200, fixture("error_missing_key.json")
        if function == "GLOBAL_QUOTE":
            if symbol not in self.symbols:
                return 200, {"Global Quote": {}}
            body = fixture("global_quote_ibm.json")
            body["Global Quote"]["01. symbol"] = symbol
            body["Global Quote"]["05. price"] = f"{self.symbols[symbol]:.4f}"
            return 200, body
        if function == "TIME_SERIES_DAILY":
            if symbol not in self.symbols:
                return 200, fixture("error_invalid_call.json")
            body = fixture("time_series_daily_ibm.json")
            body["Meta Data"]["2. Symbol"] = symbol
            return 200, body
        return 200, fixture("error_invalid_call.json")
