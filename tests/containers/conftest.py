"""The container stack for the slow tests: built (cached) and started once per session under a
project name of its own, on free host ports, with secrets in a temporary folder, so it never
meets a user's `make compose-up` or the session's other services; always taken down."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from containers.samlocal import podman_env
from devstack.services import REPO_ROOT
from devstack.stack_state import free_port

PORT_VARS = ("STOCKPRED_API_PORT", "STOCKPRED_WS_PORT", "STOCKPRED_POSTGRES_PORT", "STOCKPRED_REDIS_PORT",
             "STOCKPRED_MONGO_PORT", "STOCKPRED_MOTO_PORT", "STOCKPRED_OPENSEARCH_PORT")


@dataclass
class ComposeStack:
    project: str
    env: dict[str, str]
    secrets_dir: Path

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.env['STOCKPRED_API_PORT']}"

    def run(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        return subprocess.run([str(REPO_ROOT / "containers" / "compose.sh"), "-p", self.project, *args],
                              env=self.env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)

    def podman(self, *args: str) -> str:
        return subprocess.run(["podman", *args], env=self.env, capture_output=True, text=True,
                              check=True).stdout

    def leftovers(self) -> dict[str, list[str]]:
        label = f"label=io.podman.compose.project={self.project}"
        return {
            "containers": self.podman("ps", "-aq", "--filter", label).split(),
            "volumes": self.podman("volume", "ls", "-q", "--filter", label).split(),
            "networks": [n for n in self.podman("network", "ls", "--format", "{{.Name}}").split()
                         if n.startswith(f"{self.project}_")],
        }


def report(line: str) -> None:
    print(f"[containers] {line}", file=sys.stderr)


@pytest.fixture(scope="session")
def compose_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeStack]:
    if os.geteuid() != 0 and not shutil.which("sudo"):
        pytest.skip("podman is installed and run as root here (containers/bootstrap.sh)")
    project = f"stockpred-test-{uuid.uuid4().hex[:8]}"
    secrets_dir = tmp_path_factory.mktemp("compose-secrets")
    env = {**podman_env(), **{var: str(free_port()) for var in PORT_VARS},
           "STOCKPRED_SECRETS_DIR": str(secrets_dir)}
    stack = ComposeStack(project, env, secrets_dir)
    try:
        # `up` bootstraps podman, builds the images (cached) and waits until all are healthy.
        started = time.monotonic()
        up = stack.run("up")
        if up.returncode != 0 and "address already in use" in up.stderr + up.stdout:
            report("a published port was taken between choosing and binding it; once more on others")
            stack.run("down", timeout=300)
            stack.env.update({var: str(free_port()) for var in PORT_VARS})
            up = stack.run("up")
        report(f"images built and compose up to healthy in {time.monotonic() - started:.0f}s:\n"
               + up.stdout + up.stderr[-3000:])
        assert up.returncode == 0, up.stdout + up.stderr
        yield stack
    finally:
        started = time.monotonic()
        down = stack.run("down", timeout=300)
        report(f"compose down in {time.monotonic() - started:.0f}s: {down.stdout.strip()} "
               f"{down.stderr[-2000:]}")
