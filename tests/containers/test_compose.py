"""docker-compose.yml brought up with podman-compose from images built here, used through its
published API as a client would (stock details, register, login, buy with its confirmation
pushed over the published WebSocket API, portfolio); `sam local
invoke` and `start-api` on the locally built Lambda image against it; and the stack taken down
leaving nothing behind (last: the tests in this module run in order)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid

import aiohttp
import pytest
import redis
import requests

from devstack.services import REPO_ROOT
from devstack.stack_state import free_port
from tests.containers.conftest import ComposeStack, report

# Building every image from nothing (the first test's setup) takes minutes on a fresh machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_every_container_is_running_with_loopback_ports(compose_stack: ComposeStack) -> None:
    label = f"label=io.podman.compose.project={compose_stack.project}"
    rows = compose_stack.podman("ps", "--filter", label, "--format", "{{.Names}} {{.Ports}}").splitlines()
    assert len(rows) == 12, rows
    for row in rows:
        for mapping in filter(None, row.split(" ", 1)[1:]):
            for port in mapping.split(", "):
                assert port.startswith("127.0.0.1:"), row


def test_the_published_redis_asks_for_the_stacks_password(compose_stack: ComposeStack) -> None:
    """The compose stack's Redis runs with a password too (containers/redis/server.sh): the
    published state port refuses a client without it, and the stack itself (details above, the
    trade below) gets in with it."""
    port = int(compose_stack.env["STOCKPRED_REDIS_PORT"])
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port, socket_timeout=5).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port, password="not-the-password", socket_timeout=5).ping()
    password = (compose_stack.secrets_dir / "redis-password").read_text().strip()
    assert redis.Redis(port=port, password=password, socket_timeout=5).ping()


def test_stock_details_through_the_published_api(compose_stack: ComposeStack) -> None:
    r = requests.get(f"{compose_stack.api}/api/stocks/SPX/details", timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["symbol"] == "SPX" and body["id"] == "SPX:2018-12-31" and body["price"] == "2506.8501"


def test_register_login_buy_portfolio(compose_stack: ComposeStack) -> None:
    api = compose_stack.api
    email = f"compose-{uuid.uuid4().hex[:10]}@example.com"
    password = "container-pass-phrase 7"
    r = requests.post(f"{api}/api/users/register", json={"name": "Ada", "email": email, "password": password},
                      timeout=60)
    assert r.status_code == 201, r.text
    user_id = r.json()["user_id"]
    r = requests.post(f"{api}/api/users/login", json={"email": email, "password": password}, timeout=60)
    assert r.status_code == 200, r.text
    token = r.json()["token"]
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex}
    # The trade saga: Step Functions in the moto container calling devstack's Invoke API back,
    # two-phase commit across FerretDB and PostgreSQL; its confirmation pushed to the user's socket
    # through the push queue and the fan-out function.
    ws_url = f"ws://127.0.0.1:{compose_stack.env['STOCKPRED_WS_PORT']}/local?token={token}"
    r, pushed = asyncio.run(buy_while_connected(ws_url, lambda: requests.post(
        f"{api}/api/users/buy", json={"user_id": user_id, "symbol": "SPX", "quantity": 3},
        headers=headers, timeout=120)))
    assert r.status_code == 200, r.text
    assert pushed["type"] == "trade" and pushed["transaction_id"] == r.json()["transaction_id"]
    assert r.json()["message"] == "Stock bought successfully"
    r = requests.get(f"{api}/api/users/portfolio", headers={"Authorization": headers["Authorization"]},
                     timeout=60)
    assert r.status_code == 200, r.text
    holdings = {h["symbol"]: h["shares"] for h in r.json()["holdings"]}
    assert holdings == {"SPX": 3}
    assert r.json()["cash_cents"] == 10_000_000 - 3 * 250685


async def buy_while_connected(ws_url: str, buy) -> tuple[requests.Response, dict]:
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url) as ws:
        response = await asyncio.get_running_loop().run_in_executor(None, buy)
        return response, json.loads(await ws.receive_str(timeout=30))


def samlocal(compose_stack: ComposeStack, *args: str) -> list[str]:
    return [sys.executable, "-m", "containers.samlocal", *args, "--project", compose_stack.project,
            "--secrets-dir", str(compose_stack.secrets_dir)]


def test_sam_local_invoke_answers_as_devstack(compose_stack: ComposeStack, gateway) -> None:
    """The stocks function, run by `sam local invoke` in the Lambda image with the event from
    tests/events, returns the body the session's devstack returns for the same request."""
    started = time.monotonic()
    done = subprocess.run(samlocal(compose_stack, "invoke", "StocksFunction",
                                   "--event", str(REPO_ROOT / "tests" / "events" / "details_spx.json")),
                          env=compose_stack.env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    report(f"sam local invoke in {time.monotonic() - started:.1f}s")
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    response = json.loads(done.stdout.strip().splitlines()[-1])
    assert response["statusCode"] == 200, response
    expected = gateway.get("/api/stocks/SPX/details")
    assert expected.status_code == 200
    assert json.loads(response["body"]) == expected.json()


def test_sam_local_start_api_answers_get_stocks(compose_stack: ComposeStack) -> None:
    port = free_port()
    proc = subprocess.Popen(samlocal(compose_stack, "start-api", "--port", str(port), "--warm", "LAZY"),
                            env=compose_stack.env, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    started = time.monotonic()
    try:
        deadline = started + 600
        answer = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/api/stocks", timeout=120)
                break
            except requests.ConnectionError:
                time.sleep(1)
        report(f"sam local start-api: first answer in {time.monotonic() - started:.1f}s")
        assert answer is not None, "sam local start-api never answered"
        assert answer.status_code == 200, answer.text
        assert {s["symbol"] for s in answer.json()["symbols"]} >= {"SPX", "IXIC"}
        again = time.monotonic()
        assert requests.get(f"http://127.0.0.1:{port}/api/stocks", timeout=60).status_code == 200
        report(f"sam local start-api: warm request in {1000 * (time.monotonic() - again):.0f} ms")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        report(f"sam local start-api stopped in {time.monotonic() - started:.1f}s since start")
    left = compose_stack.podman("ps", "-aq", "--filter", "label=sam.cli.container.type=lambda").split()
    assert not left, f"sam left containers: {left}\n{out[-3000:]}"


def test_down_leaves_no_container_network_or_volume(compose_stack: ComposeStack) -> None:
    started = time.monotonic()
    down = compose_stack.run("down", timeout=300)
    report(f"compose down in {time.monotonic() - started:.1f}s")
    assert down.returncode == 0, down.stdout + down.stderr
    assert compose_stack.leftovers() == {"containers": [], "volumes": [], "networks": []}
