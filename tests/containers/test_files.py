"""Fast checks of the container files: the compose file parses and publishes on loopback only,
every Dockerfile takes its base image as a build argument and holds no secret, every script says
how to use it. No container runs here."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from devstack.services import REPO_ROOT

COMPOSE = REPO_ROOT / "docker-compose.yml"
DOCKERFILES = sorted((REPO_ROOT / "containers").glob("*/Dockerfile"))
SCRIPTS = sorted((REPO_ROOT / "containers").glob("*.sh"))


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_file_parses_with_the_stack_s_services() -> None:
    services = compose()["services"]
    assert {"postgres", "redis-state", "redis-state-replica", "redis-cache-0", "redis-cache-0-replica",
            "redis-sentinel-0", "redis-sentinel-1", "redis-sentinel-2", "ferretdb", "moto",
            "opensearch", "devstack"} <= set(services)


def test_every_published_port_binds_loopback_only() -> None:
    published = [(name, port) for name, svc in compose()["services"].items() for port in svc.get("ports", [])]
    assert published
    for name, port in published:
        assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_every_service_has_a_health_check_and_every_volume_is_named() -> None:
    doc = compose()
    for name, svc in doc["services"].items():
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no health check"
        for volume in svc.get("volumes", []):
            assert volume.split(":")[0] in doc["volumes"], f"{name}: {volume} is not a named volume"


def test_postgres_allows_two_phase_commit() -> None:
    entrypoint = (REPO_ROOT / "containers" / "postgres" / "entrypoint.sh").read_text()
    match = re.search(r"max_prepared_transactions=(\d+)", entrypoint)
    assert match and int(match.group(1)) > 0


def test_secrets_are_files_given_at_run_time_not_environment_values() -> None:
    doc = compose()
    assert all("file" in spec for spec in doc["secrets"].values())
    for name, svc in doc["services"].items():
        for var, value in (svc.get("environment") or {}).items():
            secret_like = re.search(r"SECRET|TOKEN|PASSWORD|KEY$", var)
            assert not secret_like or value in ("", "${ALPHAVANTAGE_API_KEY:-}"), f"{name} sets {var}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_takes_its_base_image_as_a_build_argument(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    assert re.search(r"^ARG BASE_IMAGE=debian:trixie$", text, re.MULTILINE)
    froms = re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE)
    assert froms and all(f == "${BASE_IMAGE}" for f in froms), froms


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_holds_no_secret_and_uses_exec_form(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    assert not re.search(r"BEGIN [A-Z ]*(CERTIFICATE|PRIVATE KEY)|AKIA[0-9A-Z]{16}", text)
    assert not re.search(r"^(ENV|ARG)\s+\S*(SECRET|PASSWORD|TOKEN)\S*", text, re.MULTILINE | re.IGNORECASE)
    assert not re.search(r"\.crt|ca-certificates/", text), "certificates are added by containers/build.sh"
    for line in re.findall(r"^(?:CMD|ENTRYPOINT)\s+(.*)$", text, re.MULTILINE):
        assert line.startswith("["), f"shell form: {line}"


def test_no_certificate_or_image_is_tracked_by_git() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    assert not [f for f in tracked if re.search(r"\.(crt|pem|key|tar)$|^containers/ferretdb/ferretdb$", f)]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_are_strict_and_answer_help(script: Path) -> None:
    text = script.read_text()
    if script.name == "env.sh":  # sourced, not run
        return
    assert "set -euo pipefail" in text
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "Usage" in out.stdout, out.stderr


def test_scripts_copied_into_images_are_executable() -> None:
    """COPY keeps the file's mode (no --chmod, which only BuildKit knows)."""
    scripts = [*(REPO_ROOT / "containers").glob("*/*.sh"), REPO_ROOT / "containers" / "lambda" / "bootstrap"]
    assert scripts
    for script in scripts:
        assert script.stat().st_mode & 0o111, f"{script} is not executable"


def test_bootstrap_installs_what_podman_only_suggests_but_netavark_needs() -> None:
    """A fresh machine's `apt-get install --no-install-recommends podman netavark` brings no
    iptables (podman only Suggests it), and netavark cannot create a network without it: the
    compose tests failed on a fresh machine with `netavark: No such file or directory`."""
    text = (REPO_ROOT / "containers" / "bootstrap.sh").read_text()
    for package in ("podman", "netavark", "aardvark-dns", "iptables", "catatonit", "runc"):
        assert re.search(rf"need_apt\+=\({re.escape(package)}\)", text), package
