"""stockpred.realtime.keepalive against a server scripted byte for byte: the requests it writes, the
responses it reads (Content-Length, chunked, read to close, 204), connections reused, and a
connection the server closed while idle never used again."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from stockpred.realtime.keepalive import BadResponse, Origin


class Scripted:
    """Accepts connections; answers each request (head + Content-Length body) with the next
    scripted response; a response of None closes the connection instead."""

    def __init__(self, responses: list[bytes | None]) -> None:
        self.responses = responses
        self.requests: list[tuple[int, bytes]] = []  # (connection number, raw request)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/local"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        number = 0
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            number += 1
            threading.Thread(target=self._serve, args=(conn, number), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(buf) < length:
                    buf += conn.recv(65536)
                self.requests.append((number, head + b"\r\n\r\n" + buf[:length]))
                buf = buf[length:]
                response = (self.responses.pop(0) if self.responses
                            else b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                if response is None:
                    return
                conn.sendall(response)
                if b"Connection: close" in response or response.startswith(b"HTTP/1.0"):
                    return

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def server() -> Iterator[Scripted]:
    s = Scripted([])
    yield s
    s.close()


def test_the_request_is_one_http11_message_with_host_and_length(server):
    server.responses = [b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"]
    origin = Origin(server.url)
    assert origin.request("POST", "/local/@connections/a%3D", {"X-Amz-Date": "20261124T000000Z"},
                          b'{"a": 1}') == (200, b"")
    ((_, raw),) = server.requests
    assert raw == (b"POST /local/@connections/a%3D HTTP/1.1\r\nHost: " + origin.host_header.encode()
                   + b"\r\nX-Amz-Date: 20261124T000000Z\r\nContent-Length: 8\r\n\r\n" + b'{"a": 1}')


def test_bodies_by_length_chunked_and_none_and_one_connection_for_all(server):
    server.responses = [
        b"HTTP/1.1 410 Gone\r\ncontent-length: 25\r\n\r\n{\"message\": \"gone away\"}\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\n\r\n",
    ]
    origin = Origin(server.url)
    assert origin.request("POST", "/p", {}, b"x") == (410, b'{"message": "gone away"}\n')
    assert origin.request("POST", "/p", {}, b"x") == (200, b"Wikipedia")
    assert origin.request("DELETE", "/p", {}) == (204, b"")
    assert {number for number, _ in server.requests} == {1}


def test_a_response_read_to_close_and_connection_close_are_not_reused(server):
    server.responses = [b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
                        b"HTTP/1.0 200 OK\r\n\r\nall of it"]
    origin = Origin(server.url)
    assert origin.request("POST", "/p", {}, b"x") == (200, b"ok")
    assert origin.request("POST", "/p", {}, b"x")[0] == 200
    assert origin.request("POST", "/p", {}, b"x") == (200, b"")
    assert [number for number, _ in server.requests] == [1, 2, 3]


def test_a_connection_closed_in_the_middle_of_a_request_raises_and_is_not_used_again(server):
    origin = Origin(server.url)
    assert origin.request("POST", "/p", {}, b"x")[0] == 200
    server.responses = [None]  # the server closes connection 1 at its next request...
    with pytest.raises(OSError):
        origin.request("POST", "/p", {}, b"x")
    assert origin.request("POST", "/p", {}, b"x")[0] == 200  # ...and a new one serves this
    assert [number for number, _ in server.requests] == [1, 1, 2]


def test_an_idle_connection_closed_by_the_server_is_replaced_before_use():
    listener = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
    origin = Origin(url)
    served = []

    def serve_one_request_per_connection() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                served.append(conn.getpeername())
                # Answers as if to keep the connection, then closes it, as an idle timeout would.
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    threading.Thread(target=serve_one_request_per_connection, daemon=True).start()
    try:
        for _ in range(3):
            assert origin.request("POST", "/", {}, b"x") == (200, b"")
            threading.Event().wait(0.05)
        assert len(served) == 3
    finally:
        listener.close()


@pytest.mark.parametrize("response", [b"SSH-2.0-OpenSSH\r\n\r\n",
                                      b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
                                      b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
                                      b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"])
def test_what_is_not_http_raises_bad_response(server, response):
    server.responses = [response]
    with pytest.raises(BadResponse):
        Origin(server.url).request("POST", "/p", {}, b"x")


def test_an_unreachable_origin_raises_oserror():
    with pytest.raises(OSError):
        Origin("http://127.0.0.1:9/").request("POST", "/", {}, b"x")
