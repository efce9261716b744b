"""The REST surface: bodies parsed with bounded depth, security headers, CORS for one origin, and
an OpenAPI document that lists exactly template.yaml's routes."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from chalice import Chalice

from devstack.services import REPO_ROOT
from devstack.template import Template
from stockpred import config
from stockpred.api import edge, openapi
from stockpred.api.edge import ApiError, install, json_body, json_response

DEEP = b"[" * 5000 + b"]" * 5000
DASHBOARD = "https://dashboard.example.com"


# ---- bodies ------------------------------------------------------------------------------------
def test_deep_nesting_is_invalid_input_not_a_recursion_error():
    for raw in (DEEP, b'{"a":' * 5000 + b"1" + b"}" * 5000, b"[" * 33 + b"]" * 33):
        with pytest.raises(ApiError) as exc:
            json_body(raw)
        assert (exc.value.status, exc.value.message) == (400, "Invalid input data")
    assert json_body(b"[" * 32 + b"]" * 32) is not None
    assert json_body(b'{"name": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}') == {"name": "[" * 40}


@pytest.mark.parametrize("raw", [b"\xff\xfe", b"{", b"nope", b'{"a": 1} x'])
def test_malformed_bodies_are_400(raw):
    with pytest.raises(ApiError) as exc:
        json_body(raw)
    assert exc.value.status == 400


def test_body_size_limit_still_holds():
    with pytest.raises(ApiError) as exc:
        json_body(b" " * (64 * 1024 + 1))
    assert exc.value.status == 413
    assert json_body(b"") is None and json_body(None) is None


def test_no_app_parses_a_body_any_other_way():
    """Chalice's current_request.json_body (and json.loads) recurse without a bound: only
    edge.json_body may read a request body."""
    apps = sorted(REPO_ROOT.glob("functions/*/app.py"))
    assert apps
    for app in [*apps, REPO_ROOT / "layers/common/python/stockpred/api/edge.py"]:
        text = app.read_text()
        assert not re.search(r"\.json_body\b(?!`)", text), f"{app}: Chalice's json_body on untrusted input"
        assert not re.search(r"\bjson\.loads\(", text), f"{app}: json.loads on untrusted input"


# ---- headers and CORS --------------------------------------------------------------------------
def _app() -> Chalice:
    app = Chalice(app_name="surface-test")
    install(app, "surface-test")

    @app.route("/api/thing", methods=["POST"], content_types=["*/*"])
    def thing() -> Any:
        return json_response(200, {"got": json_body(app.current_request.raw_body)})

    @app.route("/api/boom", methods=["GET"])
    def boom() -> Any:
        raise RuntimeError("no")

    return app


def _event(method: str, path: str, headers: dict[str, str] | None = None, body: str | None = None) -> dict:
    return {"resource": path, "path": path, "httpMethod": method, "headers": headers or {},
            "multiValueHeaders": {k: [v] for k, v in (headers or {}).items()},
            "queryStringParameters": None, "multiValueQueryStringParameters": None,
            "pathParameters": None, "stageVariables": None, "body": body, "isBase64Encoded": False,
            "requestContext": {"resourcePath": path, "httpMethod": method, "requestId": "r-1",
                               "path": path, "identity": {"sourceIp": "127.0.0.1"}}}


@pytest.fixture
def cors(monkeypatch):
    def set_origin(origin: str | None) -> None:
        if origin is None:
            monkeypatch.delenv("CORS_ORIGIN", raising=False)
        else:
            monkeypatch.setenv("CORS_ORIGIN", origin)
        config.load.cache_clear()

    yield set_origin
    config.load.cache_clear()


def test_every_response_is_nosniff_and_no_store(cors):
    cors(None)
    app = _app()
    for event in (_event("POST", "/api/thing", body="[1]"), _event("POST", "/api/thing", body=DEEP.decode()),
                  _event("GET", "/api/boom")):
        resp = app(event, None)
        assert resp["headers"]["X-Content-Type-Options"] == "nosniff"
        assert resp["headers"]["Cache-Control"] == "no-store"
        assert "Access-Control-Allow-Origin" not in resp["headers"]
    assert app(_event("POST", "/api/thing", body=DEEP.decode()), None)["statusCode"] == 400
    assert json.loads(app(_event("GET", "/api/boom"), None)["body"]) == {"error": "Internal Server Error"}


def test_cors_answers_the_dashboard_origin_only(cors):
    cors(DASHBOARD)
    app = _app()
    ok = app(_event("POST", "/api/thing", {"Origin": DASHBOARD}, "{}"), None)["headers"]
    assert ok["Access-Control-Allow-Origin"] == DASHBOARD
    assert ok["Vary"] == "Origin"
    assert "X-Correlation-Id" in ok["Access-Control-Expose-Headers"]
    for other in ("https://evil.example.com", DASHBOARD + ".evil.com", "null", "*"):
        headers = app(_event("POST", "/api/thing", {"Origin": other}, "{}"), None)["headers"]
        assert "Access-Control-Allow-Origin" not in headers, other
        assert headers["Vary"] == "Origin"
    assert edge.cors_headers(DASHBOARD, DASHBOARD, preflight=True)["Access-Control-Allow-Methods"]


@pytest.mark.parametrize("bad", ["*", "https://a.com,https://b.com", "https://a.com/path", "a.com",
                                 "https://*.a.com"])
def test_cors_origin_must_be_one_exact_origin(bad):
    with pytest.raises(config.ConfigError):
        config.from_environ({"CORS_ORIGIN": bad})
    assert config.from_environ({"CORS_ORIGIN": DASHBOARD + "/"}).cors_origin == DASHBOARD
    assert config.from_environ({}).cors_origin is None


# ---- the OpenAPI document ----------------------------------------------------------------------
def test_openapi_lists_exactly_the_template_routes():
    routes = {(r.method, r.path) for r in Template.load(REPO_ROOT / "template.yaml").routes}
    documented = {(method.upper(), path) for path, item in openapi.document()["paths"].items()
                  for method in item}
    assert documented == routes


def test_openapi_is_a_valid_3_1_document_with_what_clients_need():
    import schemathesis

    doc = openapi.document()
    assert doc["openapi"].startswith("3.1")
    schema = schemathesis.openapi.from_dict(json.loads(json.dumps(doc)))
    assert len(list(schema.get_all_operations())) == sum(len(i) for i in doc["paths"].values())
    paths = doc["paths"]
    assert set(paths["/api/predict/{symbol}"]["get"]["responses"]) >= {"200", "202", "404"}
    assert paths["/api/predict/{symbol}"]["get"]["responses"]["202"]["headers"]["Retry-After"]
    for side in ("buy", "sell"):
        op = paths[f"/api/users/{side}"]["post"]
        assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in op["parameters"])
    # Every protected route says so; the public ones say they are public.
    for path, item in paths.items():
        for method, op in item.items():
            protected = path.startswith(("/api/users/", "/api/transactions", "/api/logs", "/api/ops/")) and \
                path not in ("/api/users/register", "/api/users/login")
            assert bool(op.get("security")) == protected, f"{method} {path}"
            assert all(re.fullmatch(r"[1-5][0-9][0-9]", s) for s in op["responses"]), f"{method} {path}"
            for status, resp in op["responses"].items():
                assert "application/json" in resp["content"], f"{method} {path} {status}"


# ---- the same, served --------------------------------------------------------------------------
POSTS = ["/api/users/register", "/api/users/login", "/api/users/profile/update", "/api/users/password",
         "/api/users/logout", "/api/users/buy", "/api/users/sell", "/api/transactions/store"]


def test_served_deep_bodies_are_400_and_headers_are_set(gateway):
    from stockpred.cloud import secrets

    user = gateway.new_user()
    for path in POSTS:
        headers = {**user.headers, "Content-Type": "application/json"}
        if path.endswith("/store"):
            headers["X-Service-Token"] = secrets.service_token()
        r = gateway.post(path, data=DEEP, headers=headers)
        assert r.status_code == 400, (path, r.status_code, r.text)
        assert r.json()["error"].startswith("Invalid input data"), (path, r.text)
        assert r.headers["X-Content-Type-Options"] == "nosniff", path
        assert r.headers["Cache-Control"] == "no-store", path
    r = gateway.get("/api/openapi.json")
    assert r.status_code == 200 and r.json() == json.loads(json.dumps(openapi.document()))
    assert r.headers["X-Content-Type-Options"] == "nosniff"


def test_served_preflight_and_responses_answer_the_dashboard_origin_only(gateway):
    """devstack answers OPTIONS as API Gateway's `Api.Cors` mock does; only CORS_ORIGIN is allowed."""
    from tests.conftest import DASHBOARD_ORIGIN

    ok = gateway.session_request("OPTIONS", "/api/users/buy", headers={
        "Origin": DASHBOARD_ORIGIN, "Access-Control-Request-Method": "POST"})
    assert ok.status_code == 200
    assert ok.headers["Access-Control-Allow-Origin"] == DASHBOARD_ORIGIN
    assert "Idempotency-Key" in ok.headers["Access-Control-Allow-Headers"]
    stranger = gateway.session_request("OPTIONS", "/api/users/buy", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in stranger.headers
    got = gateway.get("/api/stocks", headers={"Origin": DASHBOARD_ORIGIN})
    assert got.headers["Access-Control-Allow-Origin"] == DASHBOARD_ORIGIN
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    assert "Access-Control-Allow-Origin" not in gateway.get(
        "/api/stocks", headers={"Origin": "https://evil.example"}).headers


def test_the_invoke_api_refuses_deeply_nested_json_as_lambda_does(gateway, stack):
    import boto3
    import botocore.exceptions

    client = boto3.client("lambda", endpoint_url=gateway.url, region_name="us-east-1",
                          aws_access_key_id=stack["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=stack["AWS_SECRET_ACCESS_KEY"])
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        client.invoke(FunctionName="StocksFunction", Payload=b"[" * 5000)
    assert refused.value.response["Error"]["Code"] == "InvalidRequestContentException"
    assert gateway.get("/_devstack/health").status_code == 200
