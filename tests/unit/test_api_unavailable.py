"""A store or AWS service out of reach is a 503 with Retry-After, never a 500.

Each driver's error is the real one, raised by connecting to a loopback port nothing listens on;
an error that is not a dependency's stays a 500 that says nothing more.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import boto3
import psycopg2
import pymongo
import pytest
import redis
from botocore.config import Config
from chalice import Chalice
from chalice.test import Client

from devstack.stack_state import free_port
from stockpred.api.edge import UNAVAILABLE_MESSAGE, ApiError, install, json_response


def _postgres(port: int) -> None:
    psycopg2.connect(host="127.0.0.1", port=port, dbname="x", user="x", connect_timeout=2)


def _redis(port: int) -> None:
    redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=2).ping()


def _mongo(port: int) -> None:
    pymongo.MongoClient(f"mongodb://127.0.0.1:{port}/", serverSelectionTimeoutMS=300).admin.command("ping")


def _s3(port: int) -> None:
    boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                 aws_access_key_id="x", aws_secret_access_key="x",
                 config=Config(retries={"max_attempts": 1}, connect_timeout=2)).list_buckets()


def _app(fail: Callable[[int], None]) -> Chalice:
    app = Chalice(app_name="unavailable-test")
    install(app, "unavailable-test")
    port = free_port()

    @app.route("/api/thing", methods=["GET"])
    def thing() -> object:
        fail(port)
        return json_response(200, {"ok": True})

    return app


@pytest.mark.parametrize("fail", [_postgres, _redis, _mongo, _s3], ids=["postgres", "redis", "mongo", "s3"])
def test_a_dependency_out_of_reach_is_a_503_with_retry_after(fail):
    with Client(_app(fail)) as client:
        r = client.http.get("/api/thing")
    assert r.status_code == 503
    assert json.loads(r.body) == {"error": UNAVAILABLE_MESSAGE}
    assert int(r.headers["Retry-After"]) > 0
    assert r.headers["X-Correlation-Id"]


def _bug(port: int) -> None:
    raise KeyError(f"port {port}")


def _refusal(port: int) -> None:
    raise ApiError(409, "Already there")


def test_an_error_of_our_own_stays_a_500_that_says_nothing_more():
    with Client(_app(_bug)) as client:
        r = client.http.get("/api/thing")
    assert (r.status_code, json.loads(r.body)) == (500, {"error": "Internal Server Error"})
    assert "Retry-After" not in r.headers


def test_a_views_own_answer_is_untouched():
    with Client(_app(_refusal)) as client:
        r = client.http.get("/api/thing")
    assert (r.status_code, json.loads(r.body)) == (409, {"error": "Already there"})


def test_the_openapi_document_gives_every_route_its_503():
    from stockpred.api import openapi

    for path, operations in openapi.document()["paths"].items():
        for method, operation in operations.items():
            if path == "/api/openapi.json":
                continue
            assert "503" in operation["responses"], f"{method.upper()} {path}: no 503 documented"
    login = openapi.document()["paths"]["/api/users/login"]["post"]["responses"]["503"]
    assert login == openapi.DEPENDENCY_DOWN and login["headers"]["Retry-After"]["required"]
