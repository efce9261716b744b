"""Keep-alive HTTP/1.1 connections to one origin, for many small requests from many threads.

Made for the `@connections` fan-out (stockpred.realtime.connections_api), where urllib3 and http.client
cost about 0.27 ms of CPU a request here (the email-package header parser, urllib3's checks and
wrappers) against well under 0.1 ms for this: a request is one write of its head and body; a
response is read into one buffer, its status line and headers split by hand. What it supports is
what those calls need: requests with a bytes body (sent with Content-Length), responses with a
Content-Length, chunked, or delimited by the connection's close; http and https (the system's
trusted CAs, the host name checked). Idle connections are kept (at most `size`); one the server
has closed or written to while idle is dropped before use. Errors raise OSError (a malformed
response raises BadResponse, an OSError); the connection they happened on is closed.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
from urllib.parse import urlsplit

MAX_HEAD_BYTES = 64 * 1024
DEFAULT_PORTS = {"http": 80, "https": 443}


class BadResponse(OSError):
    """The server's answer is not an HTTP/1.1 response this client can read."""


class Origin:
    """Connections to scheme://host:port of `url`; `request` is safe to call from many threads."""

    def __init__(self, url: str, size: int = 16, connect_timeout_s: float = 2.0,
                 read_timeout_s: float = 5.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.host = parts.hostname
        self.port = parts.port or DEFAULT_PORTS[parts.scheme]
        self.host_header = self.host if self.port == DEFAULT_PORTS[parts.scheme] else \
            f"{self.host}:{self.port}"
        self.size = size
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self._tls = ssl.create_default_context() if parts.scheme == "https" else None
        self._idle: list[socket.socket] = []
        self._lock = threading.Lock()

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout_s)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls is not None:
                sock = self._tls.wrap_socket(sock, server_hostname=self.host)
            sock.settimeout(self.read_timeout_s)
        except BaseException:
            sock.close()
            raise
        return sock

    def _take(self) -> socket.socket:
        while True:
            with self._lock:
                sock = self._idle.pop() if self._idle else None
            if sock is None:
                return self._connect()
            # An idle connection with something to read was closed (or spoken on) by the server.
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            if not poller.poll(0):
                return sock
            sock.close()

    def _give(self, sock: socket.socket) -> None:
        with self._lock:
            if len(self._idle) < self.size:
                self._idle.append(sock)
                return
        sock.close()

    def request(self, method: str, path: str, headers: dict[str, str],
                body: bytes = b"") -> tuple[int, bytes]:
        """`method path` with `headers` (Host and Content-Length are added) and `body`: the
        response's status and body."""
        head = "".join((f"{method} {path} HTTP/1.1\r\nHost: {self.host_header}\r\n",
                        *(f"{name}: {value}\r\n" for name, value in headers.items()),
                        f"Content-Length: {len(body)}\r\n\r\n"))
        sock = self._take()
        try:
            sock.sendall(head.encode("latin-1") + body)
            status, data, reusable = _read_response(sock)
        except BaseException:
            sock.close()
            raise
        if reusable:
            self._give(sock)
        else:
            sock.close()
        return status, data

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for sock in idle:
            sock.close()


class _Reader:
    """Bytes from a socket, buffered."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise BadResponse("the connection closed in the middle of a response")
        self.buf += chunk

    def until(self, marker: bytes, limit: int) -> bytes:
        """Everything before `marker` (consumed with it)."""
        while (end := self.buf.find(marker)) < 0:
            if len(self.buf) > limit:
                raise BadResponse("response head too long")
            self.fill()
        out, self.buf = self.buf[:end], self.buf[end + len(marker):]
        return out

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self.fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def rest(self) -> bytes:
        while chunk := self.sock.recv(65536):
            self.buf += chunk
        out, self.buf = self.buf, b""
        return out


def _read_response(sock: socket.socket) -> tuple[int, bytes, bool]:
    """Status, body, and whether the connection can carry another request."""
    reader = _Reader(sock)
    while True:
        lines = reader.until(b"\r\n\r\n", MAX_HEAD_BYTES).decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise BadResponse(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
        status = int(code)
        if status >= 200:
            break  # 1xx interim responses (100 Continue) precede the real one
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise BadResponse(f"malformed header line: {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    reusable = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    if status in (204, 304):
        body = b""
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        parts = []
        while size := _chunk_size(reader.until(b"\r\n", MAX_HEAD_BYTES)):
            parts.append(reader.exactly(size))
            reader.exactly(2)
        while reader.until(b"\r\n", MAX_HEAD_BYTES):  # trailers, up to the empty line
            pass
        body = b"".join(parts)
    elif "content-length" in headers:
        try:
            length = int(headers["content-length"])
        except ValueError:
            raise BadResponse("malformed Content-Length") from None
        body = reader.exactly(length)
    else:
        body, reusable = reader.rest(), False
    return status, body, reusable and not reader.buf


def _chunk_size(line: bytes) -> int:
    try:
        return int(line.split(b";", 1)[0], 16)
    except ValueError:
        raise BadResponse(f"malformed chunk size: {line[:40]!r}") from None
