"""Centralised logs, end to end: functions' lines through devstack's feed and the LogShipperFunction
(as built) into the session's OpenSearch, then found by `stockpred logs search` and GET /api/logs."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import boto3
import pytest
import requests

from devstack.logfeed import payload
from devstack.services import REPO_ROOT
from devstack.supervisor import wait_until

pytestmark = pytest.mark.usefixtures("flush_cache")
SAGA_FUNCTIONS = {"QuoteStepFunction", "AccountStepFunction", "LedgerStepFunction", "DecisionStepFunction"}
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJsZWFrIiwiaWF0IjoxNzY0MDAwMDAwfQ."
       "c2lnbmF0dXJlLW9mLWEtbGVha2VkLXRva2Vu")


def opensearch_lines(stack: dict[str, str], **terms: str) -> list[dict[str, Any]]:
    query = {"bool": {"filter": [{"term": {k: v}} for k, v in terms.items()]}}
    r = requests.post(f"{stack['OPENSEARCH_URL']}/stockpred-logs-*/_search", timeout=10,
                      json={"query": query, "size": 500, "sort": [{"timestamp": "asc"}, {"event_id": "asc"}]})
    if r.status_code == 404:
        return []
    r.raise_for_status()
    return [h["_source"] for h in r.json()["hits"]["hits"]]


def wait_for(find: Callable[[], list[dict[str, Any]]], enough: Callable[[list], bool],
             deadline_s: float = 30) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def check() -> bool:
        nonlocal found
        found = find()
        return enough(found)

    wait_until(check, deadline_s, interval=0.5)
    return found


def cli(stack: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "devstack.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **stack}, cwd=REPO_ROOT, timeout=60)


def invoke_shipper(gateway: Any, event: dict[str, Any]) -> dict[str, Any]:
    client = boto3.client("lambda", endpoint_url=gateway.url, region_name="us-east-1",
                          aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"])
    out = client.invoke(FunctionName="LogShipperFunction", Payload=json.dumps(event))
    body = json.loads(out["Payload"].read())
    assert "FunctionError" not in out, body
    return body


def test_one_buy_is_found_by_its_correlation_id_across_the_http_function_and_every_saga_task(
        gateway: Any, stack: dict[str, str]) -> None:
    user = gateway.new_user()
    cid = f"buy-{uuid.uuid4()}"
    r = gateway.post("/api/users/buy", json={"user_id": user.user_id, "symbol": "SPX", "quantity": 1},
                     headers={**user.headers, "X-Correlation-Id": cid})
    assert r.status_code == 200, r.text
    assert r.headers["X-Correlation-Id"] == cid
    txid = r.json()["transaction_id"]

    lines = wait_for(lambda: opensearch_lines(stack, correlation_id=cid),
                     lambda found: {"UsersFunction", *SAGA_FUNCTIONS} <= {x["function"] for x in found}
                     and any(x["message"] == "trade committed" for x in found))
    functions = {x["function"] for x in lines}
    assert {"UsersFunction", *SAGA_FUNCTIONS} <= functions, functions
    stamps = [x["timestamp"] for x in lines]
    assert stamps == sorted(stamps)
    assert lines[0]["message"] == "trade started"  # the HTTP function's line comes first
    saga = [x for x in lines if x["function"] in SAGA_FUNCTIONS]
    assert all(x["transaction_id"] == txid for x in saga)
    assert all(x["execution_arn"].endswith(f":execution:TradeStateMachine:{txid}") for x in saga)
    assert all(x["request_id"] not in ("", "-") for x in lines)
    assert len({x["request_id"] for x in saga}) >= len(SAGA_FUNCTIONS)

    # The newcomer's one command: the same story, in time order, as a table.
    out = cli(stack, "logs", "search", "--correlation-id", cid)
    assert out.returncode == 0, out.stderr
    table = [row for row in out.stdout.splitlines() if cid[:30] in row]
    assert len(table) == len(lines)
    assert all(any(fn[:25] in row for row in table) for fn in {"UsersFunction", *SAGA_FUNCTIONS})


def test_an_error_is_found_by_level_and_a_leaked_password_token_and_email_are_found_nowhere(
        gateway: Any, stack: dict[str, str]) -> None:
    cid = f"leak-{uuid.uuid4()}"
    careless = json.dumps({
        "timestamp": "2026-11-24T12:00:00.000Z", "service": "users", "function": "UsersFunction",
        "level": "ERROR", "correlation_id": cid, "request_id": "r-1",
        "message": f"login failed for leaky@example.com password=Tr0ub4dor-leak token={JWT}",
        "password": "Tr0ub4dor-leak", "headers": {"Authorization": f"Bearer {JWT}"}})
    event = payload("/aws/lambda/UsersFunction", "2026/11/24/[$LATEST]leak",
                    [{"id": f"9{uuid.uuid4().int:055d}"[:56], "timestamp": int(time.time() * 1000),
                      "message": careless}])
    result = invoke_shipper(gateway, event)
    assert result["indexed"] == 1, result

    found = wait_for(lambda: opensearch_lines(stack, correlation_id=cid, level="ERROR"), bool)
    assert len(found) == 1 and found[0]["message"].startswith("login failed for [email]")
    for secret in ("Tr0ub4dor-leak", JWT, "leaky@example.com", JWT.split(".")[2]):
        anywhere = requests.post(f"{stack['OPENSEARCH_URL']}/_all/_search", timeout=10, json={
            "query": {"query_string": {"query": json.dumps(secret), "lenient": True}}}).json()
        assert anywhere["hits"]["total"]["value"] == 0, secret
        assert secret not in json.dumps(found)


def test_api_logs_answers_operators_only(gateway: Any, stack: dict[str, str]) -> None:
    assert gateway.get("/api/logs").status_code == 401
    user = gateway.new_user()
    r = gateway.get("/api/logs", headers=user.headers)
    assert r.status_code == 403 and r.json() == {"error": "Operators only: this needs the admin role"}

    granted = cli(stack, "users", "grant", user.email, "admin")
    assert granted.returncode == 0 and "granted admin" in granted.stdout, granted.stderr
    cid = f"api-{uuid.uuid4()}"
    assert gateway.get("/api/stocks/SPX/details", headers={"X-Correlation-Id": cid}).status_code == 200
    body: dict[str, Any] = {}

    def found() -> list[dict[str, Any]]:
        nonlocal body
        r = gateway.get("/api/logs", params={"correlation_id": cid}, headers=user.headers)
        assert r.status_code == 200, r.text
        body = r.json()
        return body["logs"]

    lines = wait_for(found, bool)
    assert lines and all(x["correlation_id"] == cid for x in lines)
    assert body["count"] == len(lines) <= body["total"]
    assert gateway.get("/api/users/profile", headers=user.headers).json()["roles"] == ["admin"]
    errors = gateway.get("/api/logs/errors", params={"since": "2h"}, headers=user.headers)
    assert errors.status_code == 200 and isinstance(errors.json()["minutes"], list)

    for params in ({"level": "LOUD"}, {"since": "yesterday"}, {"since": "1h", "until": "2h"},
                   {"limit": "0"}, {"correlation_id": "x" * 129}, {"service": "\u0000"}):
        r = gateway.get("/api/logs", params=params, headers=user.headers)
        assert r.status_code == 400, (params, r.text)

    revoked = cli(stack, "users", "revoke", user.email, "admin")
    assert revoked.returncode == 0
    assert gateway.get("/api/logs", headers=user.headers).status_code == 403
    assert cli(stack, "users", "grant", "nobody@example.com", "admin").returncode == 1


@pytest.mark.slow
def test_lines_made_while_opensearch_is_down_arrive_when_it_returns(
        gateway: Any, stack: dict[str, str], stack_handle: Any) -> None:
    service = next(s for s in stack_handle.services() if s.name == "opensearch")
    pid = stack_handle.pid("opensearch")
    assert pid
    stack_handle.supervisor.stop_pid("opensearch", pid, service.stop_signal)
    try:
        cid = f"outage-{uuid.uuid4()}"
        for _ in range(5):  # the functions answer while the store is down
            r = gateway.get("/api/stocks/SPX/details", headers={"X-Correlation-Id": cid})
            assert r.status_code == 200
        assert gateway.get("/api/predict/NOPE1", headers={"X-Correlation-Id": cid}).status_code == 404
        s3 = boto3.client("s3", endpoint_url=stack["AWS_ENDPOINT_URL"], region_name="us-east-1")
        assert wait_until(lambda: s3.list_objects_v2(Bucket="stockpred-log-dead-letters",
                                                     Prefix="dead-letter/")["KeyCount"] > 0, 30), \
            "nothing was dead-lettered while the store was down"
        written = gateway.log.read_text(errors="replace").splitlines()
        made = [line for line in written if cid in line]
        assert made, "the functions logged nothing for the outage requests"
        # The shipper counted them too (a metric line CloudWatch would turn into a point).
        assert wait_until(lambda: any('"LogLinesDeadLettered"' in line for line in
                                      gateway.log.read_text(errors="replace").splitlines()), 10)
    finally:
        stack_handle.start(service)
    # The next batch the shipper indexes (or its scheduled maintenance) re-drives the backlog.
    gateway.get("/api/stocks/SPX/details")
    arrived = wait_for(lambda: opensearch_lines(stack, correlation_id=cid),
                       lambda found: len(found) >= len(made), deadline_s=60)
    assert len(arrived) == len(made)
    assert cli(stack, "logs", "status").stdout.count("dead letters waiting: 0 objects") == 1


def test_maintenance_deletes_daily_indices_past_retention_and_keeps_the_rest(
        gateway: Any, stack: dict[str, str]) -> None:
    url = stack["OPENSEARCH_URL"]
    for name in ("stockpred-logs-2020.01.01", "stockpred-logs-2999.12.31", "unrelated-2020.01.01"):
        assert requests.put(f"{url}/{name}", timeout=10).status_code in (200, 400)
    result = invoke_shipper(gateway, {"action": "maintenance"})
    assert result["deleted"] == ["stockpred-logs-2020.01.01"]
    assert result["ism"] is False  # no ISM plugin in the local distribution: the clean-up does it
    assert requests.head(f"{url}/stockpred-logs-2020.01.01", timeout=10).status_code == 404
    assert requests.head(f"{url}/stockpred-logs-2999.12.31", timeout=10).status_code == 200
    assert requests.head(f"{url}/unrelated-2020.01.01", timeout=10).status_code == 200
    requests.delete(f"{url}/stockpred-logs-2999.12.31,unrelated-2020.01.01", timeout=10)


def test_a_malformed_batch_is_refused_without_error(gateway: Any) -> None:
    result = invoke_shipper(gateway, {"awslogs": {"data": "bm90IGd6aXA="}})
    assert result["indexed"] == 0 and "not base64 gzip" in result["error"]


def test_a_burst_of_requests_shows_in_the_operators_metrics_with_its_errors(
        gateway: Any, stack: dict[str, str]) -> None:
    """Every request's metric line goes through the same shipper into the metric indices, and
    GET /api/ops/metrics (and `stockpred metrics`) sums them per function and route."""
    operator = gateway.new_user()
    assert cli(stack, "users", "grant", operator.email, "admin").returncode == 0
    assert gateway.get("/api/ops/metrics").status_code == 401
    since = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)).isoformat()
    for _ in range(6):
        assert gateway.get("/api/openapi.json").status_code == 200
    for _ in range(4):
        assert gateway.get("/api/predict/not%20a%20symbol").status_code == 400
    body: dict[str, Any] = {}

    def routes() -> list[dict[str, Any]]:
        nonlocal body
        r = gateway.get("/api/ops/metrics", params={"since": since}, headers=operator.headers)
        assert r.status_code == 200, r.text
        body = r.json()
        return [x for x in body["routes"]
                if x["route"] in ("GET /api/openapi.json", "GET /api/predict/{symbol}")]

    found = wait_for(routes, lambda rows: sum(x["requests"] for x in rows) >= 10)
    by_route = {x["route"]: x for x in found}
    spec, predict = by_route["GET /api/openapi.json"], by_route["GET /api/predict/{symbol}"]
    assert (spec["requests"], spec["errors_4xx"], spec["errors_5xx"]) == (6, 0, 0)
    assert (predict["requests"], predict["errors_4xx"], predict["errors_5xx"]) == (4, 4, 0)
    assert predict["function"] == "PredictFunction" and predict["error_ratio"] == 0
    assert 0 < spec["duration_ms"]["p50"] <= spec["duration_ms"]["p99"]
    assert spec["rate_per_s"] > 0
    # The same lines never reach the log indices' searches.
    assert not opensearch_lines(stack, function="PredictFunction", service="-")

    printed = cli(stack, "metrics", "--since", since, "--json")
    assert printed.returncode == 0, printed.stderr
    same = {x["route"]: x for x in json.loads(printed.stdout)["routes"]}
    assert same["GET /api/predict/{symbol}"]["errors_4xx"] == 4
    for params in ({"since": "yesterday"}, {"since": "1h", "until": "2h"}):
        assert gateway.get("/api/ops/metrics", params=params, headers=operator.headers).status_code == 400
    assert gateway.get("/api/ops/metrics", headers=gateway.new_user().headers).status_code == 403
