"""A load client for the benches: keep-alive HTTP/1.1 connections, one request at a time on each.

asyncio with httptools' response parser (and uvloop when installed), so that one client process
costs little CPU per request and the servers it compares get the same share of the machine.
Every answer must be a 200 carrying `expect_header` (name, value) when one is given.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

import httptools


class _Connection(asyncio.Protocol):
    def __init__(self, request: bytes, count: int, expect: tuple[bytes, bytes] | None,
                 done: asyncio.Future[None], latencies: list[float]) -> None:
        self.request = request
        self.left = count
        self.expect = expect
        self.done = done
        self.latencies = latencies
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.sent_at = 0.0
        self.matched = expect is None
        self.seen = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._send()

    def _send(self) -> None:
        self.matched = self.expect is None
        self.seen = b""
        self.sent_at = time.perf_counter()
        self.transport.write(self.request)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(RuntimeError(f"bad HTTP answer: {exc}"))

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.expect and name.lower() == self.expect[0]:
            self.seen = value
            self.matched = value == self.expect[1]

    def on_message_complete(self) -> None:
        self.latencies.append(time.perf_counter() - self.sent_at)
        if self.parser.get_status_code() != 200 or not self.matched:
            self._fail(RuntimeError(f"HTTP {self.parser.get_status_code()} with {self.seen!r}, "
                                    f"expected 200 with {self.expect}"))
            return
        self.left -= 1
        if self.left > 0:
            self._send()
        elif not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.left > 0:
            self._fail(exc or RuntimeError("connection closed by the server"))

    def _fail(self, exc: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(exc)
        if self.transport is not None:
            self.transport.close()


async def _run(url: str, requests: int, connections: int,
               expect: tuple[bytes, bytes] | None) -> tuple[list[float], float]:
    parts = urlsplit(url)
    request = (f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
               "User-Agent: stockpred-bench\r\nAccept: */*\r\n\r\n").encode()
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    done = [loop.create_future() for _ in range(connections)]
    counts = [requests // connections + (i < requests % connections) for i in range(connections)]
    started = time.perf_counter()
    transports = []
    for count, fut in zip(counts, done, strict=True):
        if count:
            transport, _ = await loop.create_connection(
                lambda c=count, f=fut: _Connection(request, c, expect, f, latencies),
                parts.hostname, parts.port)
            transports.append(transport)
        else:
            fut.set_result(None)
    try:
        await asyncio.gather(*done)
    finally:
        for transport in transports:
            transport.close()
    return latencies, time.perf_counter() - started


def load(url: str, requests: int, connections: int,
         expect_header: tuple[str, str] | None = None) -> tuple[list[float], float]:
    """`requests` GETs of url over `connections` concurrent connections: latencies (s), wall (s)."""
    expect = (expect_header[0].lower().encode(), expect_header[1].encode()) if expect_header else None
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_run(url, requests, connections, expect))
    return uvloop.run(_run(url, requests, connections, expect))
