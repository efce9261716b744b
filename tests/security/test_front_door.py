"""One front door: with an origin secret set (ORIGIN_VERIFY_SECRET_ARN on AWS, ORIGIN_VERIFY_SECRET
locally), the REST API answers only requests that carry CloudFront's `X-Origin-Verify` header, except
routes API Gateway authorised with IAM; and the throttles' client address is CloudFront's
`CloudFront-Viewer-Address` only on requests that carried it.

In-process (a Chalice app called with a generated API Gateway event): no service is started.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from chalice import Chalice

from stockpred import config
from stockpred.api.edge import client_address, install, json_response, viewer_ip
from stockpred.cloud import secrets

ROOT = Path(__file__).resolve().parents[2]
SECRET = "front-door-secret-0123456789abcdef"
SOURCE_IP = "198.51.100.7"
STORE = "/api/transactions/store"
SESSION = "arn:aws:sts::123456789012:assumed-role/stockpred-Users-ABC/users-fn"


def _app() -> Chalice:
    app = Chalice(app_name="front-door-test")
    install(app, "front-door-test")

    @app.route("/api/whoami", methods=["GET"])
    def whoami() -> Any:
        return json_response(200, {"client": client_address(app.current_request)})

    return app


def _event(path: str = "/api/whoami", method: str = "GET", headers: dict[str, str] | None = None,
           identity: dict[str, Any] | None = None, body: str | None = None) -> dict[str, Any]:
    headers = headers or {}
    return {"resource": path, "path": path, "httpMethod": method, "headers": headers,
            "multiValueHeaders": {k: [v] for k, v in headers.items()},
            "queryStringParameters": None, "multiValueQueryStringParameters": None,
            "pathParameters": None, "stageVariables": None, "body": body, "isBase64Encoded": False,
            "requestContext": {"resourcePath": path, "httpMethod": method, "requestId": "r-1",
                               "path": path, "identity": identity or {"sourceIp": SOURCE_IP}}}


def _call(app: Chalice, **kw: Any) -> tuple[int, dict[str, Any]]:
    out = app(_event(**kw), None)
    return out["statusCode"], json.loads(out["body"])


@pytest.fixture
def origin_secret(monkeypatch):
    """Sets (or, with None, unsets) the local stand-in of the origin secret."""
    def set_secret(value: str | None) -> None:
        monkeypatch.delenv("ORIGIN_VERIFY_SECRET_ARN", raising=False)
        if value is None:
            monkeypatch.delenv("ORIGIN_VERIFY_SECRET", raising=False)
        else:
            monkeypatch.setenv("ORIGIN_VERIFY_SECRET", value)
        config.load.cache_clear()

    set_secret(SECRET)
    yield set_secret
    config.load.cache_clear()


# ---- the origin header -------------------------------------------------------------------------
def test_without_an_origin_secret_every_request_is_served_as_before(origin_secret):
    origin_secret(None)
    assert secrets.origin_verify_secret() is None
    app = _app()
    assert _call(app) == (200, {"client": SOURCE_IP})
    # A CloudFront-Viewer-Address is nobody's word without the front door: ignored.
    assert _call(app, headers={"CloudFront-Viewer-Address": "203.0.113.9:443"}) == \
        (200, {"client": SOURCE_IP})


def test_a_request_without_the_origin_header_is_403_json(origin_secret):
    out = _app()(_event(), None)
    assert out["statusCode"] == 403
    assert json.loads(out["body"]) == {"error": "Forbidden"}
    assert out["headers"]["Content-Type"] == "application/json"
    assert out["headers"]["X-Content-Type-Options"] == "nosniff"
    assert out["headers"]["X-Correlation-Id"]


@pytest.mark.parametrize("given", [
    "", "wrong", SECRET[:-1], SECRET + "x", SECRET.upper(), " " + SECRET, SECRET + " ",
    SECRET + "\u200b", "\u200b" + SECRET, SECRET[:8] + "\u200d" + SECRET[8:], SECRET + "\x00",
    "\ufeff" + SECRET, SECRET.replace("-", "\u2010"), SECRET * 2,
], ids=repr)
def test_a_wrong_origin_header_is_403(origin_secret, given):
    assert _call(_app(), headers={"X-Origin-Verify": given}) == (403, {"error": "Forbidden"})


def test_the_right_origin_header_in_any_letter_case_of_its_name_is_served(origin_secret):
    app = _app()
    for name in ("X-Origin-Verify", "x-origin-verify", "X-ORIGIN-VERIFY"):
        assert _call(app, headers={name: SECRET})[0] == 200, name


def test_the_origin_check_comes_before_the_view(origin_secret):
    app = Chalice(app_name="front-door-order")
    install(app, "front-door-order")
    ran: list[str] = []

    @app.route("/api/thing", methods=["POST"], content_types=["*/*"])
    def thing() -> Any:
        ran.append("view")
        return json_response(200, {})

    assert _call(app, path="/api/thing", method="POST", body="{}")[0] == 403
    assert ran == []


def test_a_too_short_origin_secret_is_refused_not_trusted(origin_secret):
    origin_secret("short")
    with pytest.raises(config.ConfigError):
        secrets.origin_verify_secret()
    status, body = _call(_app(), headers={"X-Origin-Verify": "short"})
    assert (status, body) == (500, {"error": "Internal Server Error"})


# ---- routes API Gateway authorises with IAM ----------------------------------------------------
def _transactions_app():
    spec = importlib.util.spec_from_file_location("transactions_front_door_test",
                                                  ROOT / "functions/transactions/app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app


def test_an_iam_authorised_request_needs_no_origin_header(origin_secret):
    """POST /api/transactions/store is AWS_IAM in template.yaml: internal callers reach it
    directly, signed; API Gateway then puts their ARN in the context. Past the front door it is
    the route's own check that answers (locally an IAM identity is not trusted: 401)."""
    app = _transactions_app()
    iam = {"sourceIp": "10.0.0.5", "userArn": SESSION, "accessKey": "ASIAEXAMPLE"}
    status, body = _call(app, path=STORE, method="POST", body="{}", identity=iam)
    assert (status, body) == (401, {"error": "Service credentials required"})
    # The same route without an IAM identity (as if reached through anything but API Gateway's
    # IAM check) stops at the front door.
    status, body = _call(app, path=STORE, method="POST", body="{}")
    assert (status, body) == (403, {"error": "Forbidden"})
    for not_iam in ({"sourceIp": "10.0.0.5", "userArn": None}, {"sourceIp": "10.0.0.5", "userArn": ""},
                    {"sourceIp": "10.0.0.5", "userArn": 7}):
        assert _call(app, path=STORE, method="POST", body="{}", identity=not_iam)[0] == 403, not_iam


def test_an_iam_identity_does_not_change_the_client_address(origin_secret):
    iam = {"sourceIp": "10.0.0.5", "userArn": SESSION}
    assert _call(_app(), identity=iam,
                 headers={"CloudFront-Viewer-Address": "203.0.113.9:443"}) == (200, {"client": "10.0.0.5"})


# ---- the client address ------------------------------------------------------------------------
@pytest.mark.parametrize("viewer,expected", [
    ("203.0.113.9:443", "203.0.113.9"),
    ("203.0.113.9:0", "203.0.113.9"),
    ("2001:db8::1:443", "2001:db8::1"),
    ("2001:DB8:0:0:0:0:0:1:51234", "2001:db8::1"),  # one bucket per address, whatever its spelling
    ("[2001:db8::1]:443", "2001:db8::1"),
    ("::ffff:203.0.113.9:443", "203.0.113.9"),
])
def test_the_viewer_address_is_the_client_behind_the_front_door(origin_secret, viewer, expected):
    headers = {"X-Origin-Verify": SECRET, "CloudFront-Viewer-Address": viewer}
    assert _call(_app(), headers=headers) == (200, {"client": expected})


@pytest.mark.parametrize("viewer", [
    "", "203.0.113.9", "203.0.113.9:", ":443", "203.0.113.9:99999", "203.0.113.9:http",
    "203.0.113.9:\uff14\uff14\uff13", "203.0.113.999:443", "evil.example.com:443", "2001:db8::1",
    "fe80::1%eth0:443", "203.0.113.9:443, 198.51.100.1:443", "1" * 100 + ":443", "127.0.0.1\u200b:443",
], ids=repr)
def test_a_malformed_viewer_address_falls_back_to_the_source_ip(origin_secret, viewer):
    headers = {"X-Origin-Verify": SECRET, "CloudFront-Viewer-Address": viewer}
    assert _call(_app(), headers=headers) == (200, {"client": SOURCE_IP})


def test_a_forged_viewer_address_without_the_secret_is_ignored(origin_secret):
    """Behind the front door, a wrong secret is a 403; and where the request is served anyway
    (an IAM route, or no secret set) the viewer address it names is never used."""
    app = _app()
    forged = {"CloudFront-Viewer-Address": "203.0.113.9:443"}
    assert _call(app, headers={**forged, "X-Origin-Verify": "guess"})[0] == 403
    origin_secret(None)
    assert _call(app, headers={**forged, "X-Origin-Verify": SECRET}) == (200, {"client": SOURCE_IP})


def test_without_a_source_ip_the_address_is_unknown(origin_secret):
    origin_secret(None)
    assert _call(_app(), identity={"sourceIp": None}) == (200, {"client": "unknown"})


def test_viewer_ip_parses_only_ip_and_port():
    assert viewer_ip("192.0.2.1:1") == "192.0.2.1"
    assert viewer_ip("2001:db8:85a3::8a2e:370:7334:65535") == "2001:db8:85a3::8a2e:370:7334"
    for bad in (None, 7, "x" * 65, "192.0.2.1:65536", "192.0.2.1:-1", " : "):
        assert viewer_ip(bad) is None, bad  # type: ignore[arg-type]


def test_every_place_that_needs_the_client_address_asks_one_helper():
    """No app reads identity.sourceIp itself: only handlers.client_address decides whose
    address a request is."""
    for path in sorted(ROOT.glob("functions/**/*.py")):
        assert "sourceIp" not in path.read_text(), f"{path}: use handlers.client_address"
