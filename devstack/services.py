"""The local stack: `Stack` starts, watches and stops the local data services (PostgreSQL,
Redis, FerretDB, moto server, OpenSearch) and devstack's gateway and WebSocket API, and gives the
environment that reaches them; `ephemeral_stack` is a throw-away one for tests and benchmarks.

Every service is a child process the stack owns: a pid file and a log file under the stack's
root (`.local/` for `make run`, a temporary folder for tests), a readiness check with a
deadline, and a stop by PID. Where an environment variable already points at a running service
(DATABASE_URL, REDIS_URL, MONGO_URL, OPENSEARCH_URL, AWS_ENDPOINT_URL / LOCALSTACK_HOST), that
service is used and nothing is started for it.

The stack's own Redis processes (servers and Sentinels) speak TLS only, as ElastiCache does with
in-transit encryption: a CA and a server certificate for 127.0.0.1/localhost are made at the
stack's first start (`tls/` in its folder, keys 0600) and reused after; clients get rediss://
URLs and the CA's file (REDIS_TLS_CA_FILE). `stack_state.redis_client` makes a client of them
from the stack's environment, for devstack's own checks, the tools, benchmarks and tests.

`Stack` puts together the modules that each do one job:

- stack_state: the stack's folder, ports, secrets, TLS files and the environment it gives
  (`StackState`, which `Stack` extends);
- service_specs: what each service is (command line, readiness check, hooks), and which run;
- supervisor: their processes (launch, wait until ready, stop by PID, status);
- binaries: where the programs are installed; tls: the certificates and the 0600 files.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from devstack import service_specs
from devstack import settings as stack_settings
from devstack.stack_state import StackState
from devstack.supervisor import Service, Supervisor
from devstack.tls import write_private

REPO_ROOT = stack_settings.REPO_ROOT


class Stack(StackState):
    """The local stack rooted at one folder: its state (StackState: ports, secrets, the
    environment it gives), the services it runs (service_specs) and their processes (Supervisor)."""

    @functools.cached_property
    def supervisor(self) -> Supervisor:
        return Supervisor(self)

    def services(self) -> list[Service]:
        return service_specs.services(self)

    def pid(self, name: str) -> int | None:
        """The PID of the stack's service `name` while it runs (from its pid file), else None."""
        return self.supervisor.pid(name)

    def start(self, svc: Service) -> None:
        """Starts one of the stack's services (a restart after a fault) and waits until it is ready."""
        self.supervisor.start(svc)

    def up(self) -> dict[str, str]:
        self.ensure_root()
        self.path("ports.json").write_text(json.dumps(self.ports, indent=2))
        env = self.client_env()
        write_private(self.path("env.json"), json.dumps(env, indent=2))  # holds secrets: 0600
        services = self.services()
        ext_aws = self.external().get("AWS_ENDPOINT_URL")
        if ext_aws and stack_settings.PROVISION_AWS.read(self.environ):
            # An emulator started for this stack elsewhere (docker-compose.yml's moto).
            service_specs.provision_aws(self, ext_aws)
        self.supervisor.start_all(services)
        return env

    def down(self) -> None:
        self.supervisor.stop_all(self.services())

    def status(self) -> list[tuple[str, str, int | None]]:
        rows = self.supervisor.status(self.services())
        for var, url in self.external().items():
            rows.append((f"{var} (external)", url, None))
        return rows


def default_root() -> Path:
    return Path(os.environ.get("STOCKPRED_HOME", REPO_ROOT / ".local"))


# Variables that would point a stack at services other than its own.
SERVICE_VARS = ("DATABASE_URL", "REDIS_URL", "CACHE_REDIS_URLS", "MONGO_URL", "OPENSEARCH_URL",
                "AWS_ENDPOINT_URL",
                "REDIS_SENTINELS", "REDIS_STATE_SERVICE", "CACHE_SHARDS",
                "LOCALSTACK_HOST", "ALPHAVANTAGE_API_KEY", "ALPHAVANTAGE_BASE_URL",
                "MARKET_PROVIDERS", "STOCKPRED_HOME",
                "JWT_SECRET_ARN", "SERVICE_TOKEN_SECRET_ARN", "PSEUDONYM_KEY_SECRET_ARN",
                "ALPHAVANTAGE_SECRET_ARN", "DATABASE_SECRET_ARN", "MONGO_SECRET_ARN",
                "REDIS_AUTH_SECRET_ARN", "CACHE_AUTH_SECRET_ARN", "REDIS_PASSWORD",
                "CACHE_REDIS_PASSWORD", "REDIS_TLS_CA_FILE")


def forget_process_clients() -> None:
    """Drops this process's cached settings, secrets and clients (stockpred's), so the next use
    reads the environment again: for a process (tests, benchmarks) that moves to another stack."""
    from stockpred import config
    from stockpred.cloud import aws, secrets
    from stockpred.market import market_data
    from stockpred.observability import opensearch
    from stockpred.stores import mongo, postgres, redis_stores

    config.load.cache_clear()
    market_data.default.cache_clear()
    secrets.cache_clear()
    mongo.cache_clear()
    aws.client.cache_clear()
    opensearch.client.cache_clear()
    redis_stores.cache_ring.cache_clear()
    redis_stores.state.cache_clear()
    redis_stores.sentinel.cache_clear()
    postgres.reset()


@contextlib.contextmanager
def ephemeral_stack(*, prefix: str = "stockpred-", with_gateway: bool = False,
                    extra_env: dict[str, str] | None = None, cache_shards: int | None = None,
                    log: Callable[[str], None] = print,
                    keep_logs_in: Path | None = None) -> Iterator[tuple[Stack, dict[str, str]]]:
    """A throw-away stack on free ports in a temporary folder (tests, benchmarks); removed after,
    its services' logs first copied to `keep_logs_in` when given (what a failed run leaves to read)."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    environ = {k: v for k, v in os.environ.items() if k not in SERVICE_VARS}
    environ.update(extra_env or {})
    stack = Stack(root, free_ports=True, cache_shards=cache_shards, durable=False,
                  with_gateway=with_gateway, environ=environ, log=log)
    try:
        yield stack, stack.up()
    finally:
        stack.down()
        if keep_logs_in is not None and stack.path("log").is_dir():
            shutil.rmtree(keep_logs_in, ignore_errors=True)
            shutil.copytree(stack.path("log"), keep_logs_in)
        shutil.rmtree(root, ignore_errors=True)
