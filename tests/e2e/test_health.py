"""Health and alarms, end to end: GET /api/health (shallow, public; deep, operators only), and the
template's DependencyDownAlarm firing when a store is stopped and clearing when it is back, as
devstack evaluates it against the LogsFunction's metric lines in OpenSearch."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import boto3
import pytest

from devstack.supervisor import wait_until
from tests.e2e.test_logs import cli

DEPENDENCIES = {"postgres", "mongo", "state_redis", "cache_ring", "step_functions", "market_breaker",
                "opensearch"}


@pytest.fixture
def operator(gateway: Any, stack: dict[str, str]) -> Any:
    user = gateway.new_user()
    assert cli(stack, "users", "grant", user.email, "admin").returncode == 0
    return user


def alarm_state(gateway: Any, operator: Any, name: str = "local-DependencyDownAlarm") -> dict[str, Any]:
    r = gateway.get("/api/ops/alarms", headers=operator.headers)
    assert r.status_code == 200, r.text
    return next(a for a in r.json()["alarms"] if a["name"] == name)


def test_shallow_health_is_public_and_deep_health_is_for_operators(gateway: Any, operator: Any) -> None:
    r = gateway.get("/api/health")
    assert r.status_code == 200 and r.json() == {"status": "ok", "mode": "shallow"}
    assert gateway.get("/api/health", params={"deep": "true"}).status_code == 401
    assert gateway.get("/api/health", params={"deep": "true"},
                       headers=gateway.new_user().headers).status_code == 403
    assert gateway.get("/api/health", params={"deep": "maybe"}).status_code == 400

    r = gateway.get("/api/health", params={"deep": "true"}, headers=operator.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ok" and body["mode"] == "deep", json.dumps(body)
    assert set(body["dependencies"]) == DEPENDENCIES
    for name, dep in body["dependencies"].items():
        assert dep["status"] == "up" and 0 <= dep["latency_ms"] < 2000, (name, dep)


def test_every_template_alarm_is_listed_with_a_state(
        gateway: Any, operator: Any, stack: dict[str, str]) -> None:
    assert gateway.get("/api/ops/alarms").status_code == 401
    assert gateway.get("/api/ops/alarms", headers=gateway.new_user().headers).status_code == 403
    r = gateway.get("/api/ops/alarms", headers=operator.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["alarms"]) >= 40 and sum(body["counts"].values()) == len(body["alarms"])
    by_name = {a["name"]: a for a in body["alarms"]}
    rds = by_name["local-DatabaseCpuAlarm"]
    assert rds["state"] == "INSUFFICIENT_DATA" and "AWS/RDS" in rds["reason"]
    # Evaluated here: devstack makes Lambda's metrics, as it plays Lambda.
    lambda_errors = by_name["local-UsersErrorsAlarm"]
    assert lambda_errors["dimensions"] == {"FunctionName": "UsersFunction"}
    assert wait_until(lambda: alarm_state(gateway, operator, "local-UsersErrorsAlarm")["state"] in
                      ("OK", "ALARM"), 30)
    printed = cli(stack, "alarms", "--json")
    assert printed.returncode == 0, printed.stderr
    assert {a["name"] for a in json.loads(printed.stdout)} == set(by_name)


def probe(gateway: Any) -> dict[str, Any]:
    """What the LogsFunction's scheduled probe does every minute, invoked now."""
    client = boto3.client("lambda", endpoint_url=gateway.url, region_name="us-east-1",
                          aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"])
    out = client.invoke(FunctionName="LogsFunction", Payload=json.dumps({"action": "probe"}))
    body = json.loads(out["Payload"].read())
    assert "FunctionError" not in out, body
    return body


@pytest.mark.slow
def test_a_stopped_store_turns_health_red_and_fires_the_alarm_and_both_clear_when_it_returns(
        gateway: Any, operator: Any, stack: dict[str, str], stack_handle: Any) -> None:
    """The user store (FerretDB) stopped: the probe finds it down, the alarm fires (read with
    the CLI: the API cannot check an operator's role meanwhile, and says so with a 503); back,
    the probe finds every dependency up and the alarm clears."""

    def alarm_becomes(state: str, deadline_s: float = 60) -> dict[str, Any]:
        seen: dict[str, Any] = {}

        def check() -> bool:
            nonlocal seen
            probe(gateway)  # each probe writes its metric lines
            printed = cli(stack, "alarms", "--json")
            assert printed.returncode == 0, printed.stderr
            seen = next(a for a in json.loads(printed.stdout) if a["name"] == "local-DependencyDownAlarm")
            return seen["state"] == state

        assert wait_until(check, deadline_s, interval=2), seen
        return seen

    alarm_becomes("OK")
    service = next(s for s in stack_handle.services() if s.name == "ferretdb")
    pid = stack_handle.pid("ferretdb")
    assert pid
    stack_handle.supervisor.stop_pid("ferretdb", pid, service.stop_signal)
    try:
        started = time.monotonic()
        assert probe(gateway) == {"status": "down", "down": ["mongo"]}
        r = gateway.get("/api/health", params={"deep": "true"}, headers=operator.headers)
        assert r.status_code == 503 and "user store is unavailable" in r.json()["error"], r.text
        assert gateway.get("/api/health").status_code == 200  # the shallow check stays green
        fired = alarm_becomes("ALARM")
        fired_after = time.monotonic() - started
        assert "1 of 1 datapoints breach" in fired["reason"], fired
    finally:
        stack_handle.start(service)
    started = time.monotonic()
    assert wait_until(lambda: probe(gateway)["status"] == "ok", 30, interval=1)
    cleared = alarm_becomes("OK")
    print(f"alarm fired {fired_after:.1f} s after the stop, cleared {time.monotonic() - started:.1f} s "
          f"after the store came back")
    assert "0 of 1 datapoints breach" in cleared["reason"], cleared
    assert alarm_state(gateway, operator)["state"] == "OK"
    r = gateway.get("/api/health", params={"deep": "true"}, headers=operator.headers)
    assert r.status_code == 200 and r.json()["status"] == "ok", r.text
