"""The @connections client: what it sends (a SigV4-signed call devstack's IAM accepts), and what
it makes of the API's answers (410 gone, throttles and 5xx retried, anything else refused)."""

import datetime as dt
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from devstack.sigv4 import Guard
from stockpred.realtime import connections_api
from stockpred.realtime.connections_api import ConnectionsApi, PushFailed, SigV4Signer
from stockpred.realtime.keepalive import Origin

KEY, SECRET = "AKIDSTACK", "stack-secret"


class Api:
    """A stand-in @connections endpoint answering a scripted status per call."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.calls: list[tuple[str, str, bytes, bool]] = []
        guard = Guard(KEY, SECRET)
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                url = f"http://{self.headers['Host']}{self.path}"
                try:
                    guard.check(self.command, url, list(self.headers.items()), body)
                    signed = True
                except Exception:
                    signed = False
                api.calls.append((self.command, self.path, body, signed))
                status = api.statuses.pop(0) if api.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_DELETE = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/local"


@pytest.fixture
def api(monkeypatch) -> Iterator[Api]:
    monkeypatch.setattr(connections_api, "RETRY_BASE_S", 0.001)
    a = Api()
    yield a
    a.server.shutdown()


def client(api: Api) -> ConnectionsApi:
    return ConnectionsApi(api.url, "us-east-1", Credentials(KEY, SECRET))


def test_a_post_is_signed_and_carries_the_data(api):
    assert client(api).post("abc+/=", b'{"type": "quote"}') is True
    ((method, path, body, signed),) = api.calls
    assert (method, path, body, signed) == \
        ("POST", "/local/@connections/abc%2B%2F%3D", b'{"type": "quote"}', True)


def test_a_gone_connection_is_false_not_an_error(api):
    api.statuses = [410, 410]
    assert client(api).post("c1", b"x") is False
    assert client(api).delete("c1") is False


def test_throttles_and_server_errors_are_retried(api):
    api.statuses = [429, 503]
    assert client(api).post("c1", b"x") is True
    assert len(api.calls) == 3


@pytest.mark.parametrize("statuses", [[500, 500, 500], [403], [400]])
def test_what_still_fails_raises(api, statuses):
    api.statuses = list(statuses)
    with pytest.raises(PushFailed) as failed:
        client(api).post("c1", b"x")
    assert failed.value.status == statuses[-1]


def test_an_unreachable_endpoint_raises_after_retries(monkeypatch):
    monkeypatch.setattr(connections_api, "RETRY_BASE_S", 0.001)
    with pytest.raises(PushFailed):
        ConnectionsApi("http://127.0.0.1:9/local", "us-east-1", Credentials(KEY, SECRET)).post("c1", b"x")


def test_wrong_credentials_are_refused_by_devstacks_iam(api):
    ConnectionsApi(api.url, "us-east-1", Credentials(KEY, "not-the-secret")).post("c1", b"x")
    assert api.calls[-1][3] is False


def _botocore_headers(credentials: Credentials, method: str, url: str, body: bytes,
                      when: dt.datetime, region: str) -> dict[str, str]:
    request = AWSRequest(method=method, url=url, data=body)
    signer = SigV4Auth(credentials, "execute-api", region)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("botocore.auth.get_current_datetime", lambda: when.replace(tzinfo=None))
        signer.add_auth(request)
    return dict(request.headers.items())


@pytest.mark.parametrize("credentials", [Credentials(KEY, SECRET),
                                         Credentials("ASIATEMP", "temp-secret", "the  session\ttoken")],
                         ids=["long-term", "temporary"])
@pytest.mark.parametrize(("method", "url", "body"), [
    ("POST", "http://127.0.0.1:3001/local/@connections/abc%2B%2F%3D", b'{"type": "quote"}'),
    ("DELETE", "http://127.0.0.1:3001/local/@connections/L0SM9cOFvHcCIhw%3D", b""),
    ("POST", "https://abc123.execute-api.eu-west-1.amazonaws.com/live/@connections/x-_y", "é".encode()),
    ("POST", "http://localhost:80/local/@connections/c1", b"x"),
])
def test_the_signers_headers_are_botocores_for_the_same_request_and_time(credentials, method, url, body):
    when = dt.datetime(2026, 11, 24, 23, 59, 59, tzinfo=dt.UTC)
    ours = SigV4Signer("eu-west-1", "execute-api").headers(
        credentials.get_frozen_credentials(), method, Origin(url).host_header, urlsplit(url).path,
        body, now=when.timestamp())
    assert ours == _botocore_headers(credentials, method, url, body, when, "eu-west-1")


def test_a_new_day_is_signed_with_that_days_key():
    signer = SigV4Signer("us-east-1", "execute-api")
    credentials = Credentials(KEY, SECRET)
    url = "http://127.0.0.1:3001/local/@connections/c1"
    for when in (dt.datetime(2026, 11, 24, 23, 59, 59, tzinfo=dt.UTC),
                 dt.datetime(2026, 11, 25, 0, 0, 0, tzinfo=dt.UTC)):
        ours = signer.headers(credentials.get_frozen_credentials(), "POST", "127.0.0.1:3001",
                              "/local/@connections/c1", b"x", now=when.timestamp())
        assert ours == _botocore_headers(credentials, "POST", url, b"x", when, "us-east-1")
        assert f"/{when:%Y%m%d}/us-east-1/" in ours["Authorization"]
