"""Test session fixtures: real services on free ports, and devstack serving template.yaml.

The session starts its own PostgreSQL, Redis (state + cache shard), FerretDB and moto server in
a temporary folder on free ports (never the ones `make run` uses), points this process at them,
and stops them by PID at the end. Unit tests use none of it and start nothing.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter

from devstack.service_specs import served_template
from devstack.services import (
    REPO_ROOT,
    SERVICE_VARS,
    Stack,
    ephemeral_stack,
    forget_process_clients,
)
from devstack.stack_state import redis_client
from devstack.supervisor import wait_until
from tests import answers
from tests.fakes.alphavantage import FakeAlphaVantage

STACKS: list[Stack] = []
ANSWERS = answers.Recorder()
DASHBOARD_ORIGIN = "http://127.0.0.1:8080"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The browser tests run last: Playwright's sync API keeps an event loop running in this
    thread for the rest of the session, and tests that run their own asyncio loop would fail."""
    items.sort(key=lambda item: "tests/browser/" in item.nodeid.replace("\\", "/"))


@pytest.fixture(scope="session", autouse=True)
def answers_recorded() -> Iterator[answers.Recorder]:
    """Every REST answer a test receives is kept (tests/answers.py) ..."""
    ANSWERS.install()
    try:
        yield ANSWERS
    finally:
        ANSWERS.uninstall()


@pytest.fixture(autouse=True)
def answers_match_their_models(answers_recorded: answers.Recorder) -> Iterator[None]:
    """... and checked against its model after the test: a mismatch fails the test."""
    answers_recorded.take()
    yield
    found = answers.violations(answers_recorded.take())
    if found:
        pytest.fail(f"{len(found)} answer(s) not as the OpenAPI document says:\n" + "\n".join(found[:20]),
                    pytrace=False)


@pytest.fixture(scope="session")
def stack_handle(stack: dict[str, str]) -> Stack:
    """The session's Stack itself, for scenarios that stop and start its processes."""
    return STACKS[-1]


@pytest.fixture(scope="session")
def stack() -> Iterator[dict[str, str]]:
    """The data services, started for this session; yields the environment that reaches them."""
    # The cache topology the scenarios need: 3 shards x (master + replica), 3 Sentinels.
    with ephemeral_stack(prefix="stockpred-test-", cache_shards=3,
                         log=lambda m: print(m, file=sys.stderr),
                         keep_logs_in=REPO_ROOT / "test-results" / "stack-logs") as (handle, env):
        STACKS.append(handle)
        saved = {k: os.environ.get(k) for k in (*env, *SERVICE_VARS)}
        for k in SERVICE_VARS:
            os.environ.pop(k, None)
        os.environ.update(env)
        forget_process_clients()
        try:
            yield env
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


@pytest.fixture(scope="session")
def fake_alphavantage() -> Iterator[FakeAlphaVantage]:
    with FakeAlphaVantage({"IBM": 123.31, "MSFT": 410.5, "AAPL": 190.25}) as fake:
        yield fake


class SourceAddress(HTTPAdapter):
    """Connects from one loopback address (127.x.y.z), so devstack's sourceIp is that address: a
    test's registrations and failed logins count against its own budget, not 127.0.0.1's."""

    def __init__(self, address: str, pool_maxsize: int = 32) -> None:
        self.address = address
        super().__init__(pool_maxsize=pool_maxsize)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


@dataclass(frozen=True)
class NewUser:
    user_id: str
    token: str
    email: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class Gateway:
    """devstack's gateway (REST API, Invoke API) and its WebSocket API, each a process."""

    def __init__(self, url: str, procs: list[subprocess.Popen], log: Path) -> None:
        self.url = url
        self.procs = procs
        self.log = log

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()

    def get(self, path: str, **kw: object) -> requests.Response:
        return requests.get(self.url + path, timeout=30, **kw)

    def post(self, path: str, **kw: object) -> requests.Response:
        return requests.post(self.url + path, timeout=30, **kw)

    def session_request(self, method: str, path: str, **kw: object) -> requests.Response:
        return requests.request(method, self.url + path, timeout=30, **kw)

    def predict(self, symbol: str, deadline_s: float = 120) -> requests.Response:
        """GET /api/predict/<symbol>, waiting out 202 (its model being trained) as a client would."""
        end = time.monotonic() + deadline_s
        while True:
            r = self.get(f"/api/predict/{symbol}")
            if r.status_code != 202 or time.monotonic() > end:
                return r
            time.sleep(min(float(r.headers.get("Retry-After", "1")), 0.5))

    def new_user(self, name: str = "Test User", password: str = "s3cret-pass-phrase") -> NewUser:
        """A registered, signed-in user with a fresh email."""
        email = f"user-{uuid.uuid4().hex[:12]}@example.com"
        r = self.post("/api/users/register", json={"name": name, "email": email, "password": password})
        assert r.status_code == 201, r.text
        login = self.post("/api/users/login", json={"email": email, "password": password})
        assert login.status_code == 200, login.text
        return NewUser(r.json()["user_id"], login.json()["token"], email)


def start_gateway(env: dict[str, str], extra: dict[str, str], log_dir: Path) -> Gateway:
    """The gateway and the WebSocket API on the ports `env` names (STOCKPRED_API_URL,
    STOCKPRED_WS_URL), with 6 warm workers per pool."""
    url = env["STOCKPRED_API_URL"]
    ANSWERS.bases.add(url.rstrip("/") + "/")
    ws_url = "http" + env["STOCKPRED_WS_URL"].removeprefix("ws").removesuffix("/local")
    procs, logs = [], []
    for module, base, pools in (("devstack.wsapi", ws_url, ["--workers", "6"]),
                                ("devstack.gateway", url,
                                 ["--workers", "6", "--invoke-workers", "6"])):
        port = base.rsplit(":", 1)[1]
        log = log_dir / f"{module.removeprefix('devstack.')}-{port}.log"
        procs.append(subprocess.Popen(
            [sys.executable, "-m", module, "--port", port, "--template", str(served_template()),
             *pools],
            env={**os.environ, **env, **extra}, stdout=open(log, "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
            cwd=REPO_ROOT,
        ))
        logs.append((base, log))
    gateway = Gateway(url, procs, logs[-1][1])
    for proc, (base, log) in zip(procs, logs, strict=True):
        def ready(base: str = base) -> bool:
            return requests.get(base + "/_devstack/health", timeout=1).ok

        if not wait_until(lambda proc=proc, ready=ready: proc.poll() is None and ready(), 60):
            gateway.stop()
            raise RuntimeError(f"{log.name} did not start:\n{log.read_text()[-3000:]}")
    return gateway


@pytest.fixture(scope="session")
def gateway(stack: dict[str, str], fake_alphavantage: FakeAlphaVantage) -> Iterator[Gateway]:
    """devstack serving template.yaml, with Alpha Vantage first in the chain (the local fake)."""
    extra = {"ALPHAVANTAGE_API_KEY": "test-key-not-secret",
             "ALPHAVANTAGE_BASE_URL": fake_alphavantage.url,
             "DEVSTACK_SCHEDULES": "off",
             # Faults fire only at points a test lists in Redis; none are listed by default.
             "FAULT_INJECTION": "on",
             "BREAKER_FAIL_MAX": "3", "BREAKER_RESET_SECONDS": "3",
             # Rooms of 5 or more are split into chunk events, so every e2e broadcast to a few
             # sockets takes the parallel path a room of thousands takes on AWS.
             "WS_PUSH_CHUNK": "4",
             # The dashboard's origin: the only one CORS answers (tests/security/test_rest_surface.py).
             "CORS_ORIGIN": DASHBOARD_ORIGIN,
             # The suite trains SPX, SYNTH, FLIGHT and more on demand from 127.0.0.1: room above
             # the default of 3 an hour per address (stockpred.predictions.training_budget).
             "TRAIN_ON_DEMAND_MAX_PER_CLIENT_PER_HOUR": "20"}
    gw = start_gateway(stack, extra, Path(stack["STOCKPRED_HOME"]) / "log")
    try:
        yield gw
    finally:
        gw.stop()


@pytest.fixture(scope="module")
def db(stack: dict[str, str]) -> Iterator[Any]:
    """The users and accounts database (MongoDB wire protocol: FerretDB)."""
    import pymongo

    client = pymongo.MongoClient(stack["MONGO_URL"], serverSelectionTimeoutMS=5000, tz_aware=True)
    try:
        yield client["stockpred"]
    finally:
        client.close()


@pytest.fixture(scope="module")
def state(stack: dict[str, str]) -> Iterator[Any]:
    """The state Redis (rooms, idempotency keys, throttle counters)."""
    r = redis_client(stack)
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def flush_cache(stack: dict[str, str]) -> None:
    from stockpred.stores import redis_stores

    for shard in redis_stores.cache_ring().shards.values():
        shard.master.flushdb()


@contextlib.contextmanager
def fault_in_this_process(stack: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                          point: str) -> Iterator[None]:
    """`point` fails (stockpred.trading.faults) for code run in the test's own process, then no more."""
    from stockpred import config
    from stockpred.trading import faults

    state = redis_client(stack)
    monkeypatch.setenv("FAULT_INJECTION", "on")
    config.load.cache_clear()
    state.sadd(faults.KEY, point)
    try:
        yield
    finally:
        state.delete(faults.KEY)
        monkeypatch.delenv("FAULT_INJECTION")
        config.load.cache_clear()
