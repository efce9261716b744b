"""`sam local` on podman, against the compose stack (or any stack): what it takes and how to run it.

`sam local invoke` / `start-api` run each function of `sam build`'s output in a container of the
Lambda image built here (containers/lambda, used through --invoke-image with --skip-pull-image:
nothing is pulled), through podman's Docker-compatible API service (DOCKER_HOST), which this
module starts for the command's duration and stops by PID afterwards.

sam local passes a function only the environment variables its template declares, and the
template declares the AWS ones (STOCKPRED_ENV=aws, secret ARNs...). A copy of the built template
therefore declares the local addresses too (DATABASE_URL, AWS_ENDPOINT_URL, ...), with code and
layer paths made absolute so it can live outside .aws-sam/build; their values go in the
--env-vars file (0600: it holds the stack's secrets).

    python -m containers.samlocal start-api [--project stockpred] [--port 3005]
    python -m containers.samlocal invoke FUNCTION --event FILE [--project stockpred]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from devstack.binaries import cache_dir
from devstack.services import REPO_ROOT

SAM = REPO_ROOT / ".tools" / "sam" / "bin" / "sam"
SAM_PYTHON = REPO_ROOT / ".tools" / "sam" / "bin" / "python"
BUILT_TEMPLATE = REPO_ROOT / ".aws-sam" / "build" / "template.yaml"
LAMBDA_IMAGE = "localhost/stockpred-lambda:latest"
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
# What docker-compose.yml tells devstack itself (what to serve, to provision moto, the provider's
# key), not its functions.
DEVSTACK_ONLY = ("STOCKPRED_SERVE", "STOCKPRED_PROVISION_AWS", "ALPHAVANTAGE_API_KEY")
SECRET_FILES = {"JWT_SECRET": "jwt-secret", "SERVICE_TOKEN": "service-token",
                "PSEUDONYM_KEY": "pseudonym-key", "REDIS_PASSWORD": "redis-password",
                "CACHE_REDIS_PASSWORD": "redis-password"}


def containers_home() -> Path:
    return Path(os.environ.get("STOCKPRED_CONTAINERS_HOME") or cache_dir() / "containers")


def podman_env() -> dict[str, str]:
    """This process's environment with podman pointed at the project's configuration and storage
    (as containers/env.sh does)."""
    home = containers_home()
    return {**os.environ, "CONTAINERS_CONF": str(home / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(home / "storage.conf")}


def compose_env(secrets_dir: Path, compose_file: Path = COMPOSE_FILE) -> dict[str, str]:
    """The functions' environment on the compose stack's network: the service addresses
    docker-compose.yml gives devstack (its own switches left out), devstack's Invoke and
    `@connections` APIs, the push queue, and the secrets containers/secrets.sh made."""
    import yaml

    from localstack.provision import queue_url

    devstack_env = yaml.safe_load(compose_file.read_text())["services"]["devstack"]["environment"]
    env = {name: str(value) for name, value in devstack_env.items() if name not in DEVSTACK_ONLY}
    env.update({
        "CACHE_MODE": "shards",
        # Lambda's Invoke API (on-demand training) and the WebSocket management API: devstack's.
        "AWS_ENDPOINT_URL_LAMBDA": "http://devstack:3000",
        "WS_MANAGEMENT_URL": "http://devstack:3001/local",
        "PUSH_QUEUE_URL": queue_url(env["AWS_ENDPOINT_URL"], "PushQueue"),
    })
    for var, name in SECRET_FILES.items():
        env[var] = (secrets_dir / name).read_text().strip()
    return env


def write_template(out: Path, names: list[str], built: Path = BUILT_TEMPLATE) -> list[str]:
    """Writes a copy of the built template whose functions also declare `names` (Globals), with
    every code and layer path absolute. Uses sam's own YAML reader (CloudFormation's tags).
    Returns the variables whose template value is an intrinsic (a resource's name or attribute on
    AWS, which sam local would turn into a logical id): the caller blanks them, as devstack
    does, so the local default applies."""
    if not built.is_file():
        raise SystemExit(f"{built} is missing: run `make build` (sam build) first")
    script = """
import json, os, sys
from samcli.yamlhelper import yaml_parse, yaml_dump
built, out, names = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
base = os.path.dirname(os.path.abspath(built))
t = yaml_parse(open(built).read())
env = t.setdefault("Globals", {}).setdefault("Function", {}).setdefault("Environment", {})
variables = env.setdefault("Variables", {})
for name in names:
    variables.setdefault(name, "")
intrinsic = {k for k, v in variables.items() if not isinstance(v, (str, int, float, bool))}
for resource in t.get("Resources", {}).values():
    props = resource.get("Properties") or {}
    for key in ("CodeUri", "ContentUri"):
        if isinstance(props.get(key), str) and not os.path.isabs(props[key]):
            props[key] = os.path.join(base, props[key])
    own = (props.get("Environment") or {}).get("Variables") or {}
    intrinsic |= {k for k, v in own.items() if not isinstance(v, (str, int, float, bool))}
open(out, "w").write(yaml_dump(t))
print(json.dumps(sorted(intrinsic)))
"""
    out.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([str(SAM_PYTHON), "-c", script, str(built), str(out), json.dumps(sorted(names))],
                          check=True, capture_output=True, text=True)
    return json.loads(done.stdout)


def write_env_vars(out: Path, env: dict[str, str]) -> Path:
    """sam's --env-vars file (the same values for every function), 0600."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"Parameters": env}, f, indent=2)
    return out


@contextlib.contextmanager
def podman_service(sock: Path) -> Iterator[str]:
    """podman's Docker-compatible API on a unix socket for the duration; yields DOCKER_HOST."""
    sock.parent.mkdir(parents=True, exist_ok=True)
    sock.unlink(missing_ok=True)
    proc = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{sock}"],
                            env=podman_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("podman system service did not start")
            time.sleep(0.1)
        yield f"unix://{sock}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        sock.unlink(missing_ok=True)


def sam_env(docker_host: str, aws_key: str | None = None, aws_secret: str | None = None) -> dict[str, str]:
    """sam's own environment: podman's API as Docker, no telemetry, the credentials the
    functions get (devstack's Invoke API checks the stack's signature)."""
    env = {**podman_env(), "DOCKER_HOST": docker_host, "SAM_CLI_TELEMETRY": "0",
           "SAM_SKIP_PULL_IMAGE": "1", "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
           "AWS_ACCESS_KEY_ID": aws_key or "test", "AWS_SECRET_ACCESS_KEY": aws_secret or "test"}
    env.pop("AWS_PROFILE", None)
    return env


def sam_args(template: Path, env_file: Path, network: str) -> list[str]:
    return ["--template", str(template), "--env-vars", str(env_file), "--invoke-image", LAMBDA_IMAGE,
            "--skip-pull-image", "--docker-network", network]


def remove_sam_containers() -> None:
    """Lambda containers sam left (a killed start-api), found by the label sam gives them."""
    ids = subprocess.run(["podman", "ps", "-aq", "--filter", "label=sam.cli.container.type=lambda"],
                         env=podman_env(), capture_output=True, text=True).stdout.split()
    if ids:
        subprocess.run(["podman", "rm", "-f", "-t", "2", *ids], env=podman_env(),
                       capture_output=True)


def stop(proc: subprocess.Popen) -> int:
    """Stops sam: SIGINT as Ctrl-C would, then SIGTERM (start-api can hang on SIGINT while a
    request waits for its container), then SIGKILL; its containers are removed afterwards."""
    for sig, wait_s in ((signal.SIGINT, 5), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        if proc.poll() is not None:
            break
        proc.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(wait_s)
    return proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m containers.samlocal", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["start-api", "invoke"])
    parser.add_argument("function", nargs="?", help="invoke: the function's logical id")
    parser.add_argument("--event", help="invoke: the event file (tests/events/...)")
    parser.add_argument("--project", default=os.environ.get("COMPOSE_PROJECT_NAME", "stockpred"),
                        help="the compose project whose network and services the functions use")
    parser.add_argument("--port", type=int, default=int(os.environ.get("SAM_LOCAL_PORT", "3005")),
                        help="start-api: port on 127.0.0.1 (default 3005)")
    parser.add_argument("--warm", choices=["EAGER", "LAZY"], default="EAGER",
                        help="start-api: warm containers made at start (EAGER) or on first call")
    parser.add_argument("--secrets-dir", type=Path,
                        default=Path(os.environ.get("STOCKPRED_SECRETS_DIR")
                                     or REPO_ROOT / ".local" / "compose-secrets"))
    args = parser.parse_args(argv)
    if args.command == "invoke" and not (args.function and args.event):
        parser.error("invoke needs FUNCTION and --event FILE")
    work = Path(tempfile.mkdtemp(prefix="sam-local-", dir=containers_home()))
    env = compose_env(args.secrets_dir)
    template = work / "template.yaml"
    blank = write_template(template, list(env))
    env_file = write_env_vars(work / "env.json", {**dict.fromkeys(blank, ""), **env})
    key = (args.secrets_dir / "aws-access-key-id").read_text().strip()
    secret = (args.secrets_dir / "aws-secret-access-key").read_text().strip()
    common = sam_args(template, env_file, f"{args.project}_default")
    try:
        with podman_service(work / "podman.sock") as docker_host:
            if args.command == "invoke":
                cmd = [str(SAM), "local", "invoke", args.function, "--event", args.event, *common]
            else:
                cmd = [str(SAM), "local", "start-api", "--host", "127.0.0.1", "--port", str(args.port),
                       "--warm-containers", args.warm, *common]
            # TMPDIR: sam's build lock files go to the work folder, removed below.
            proc = subprocess.Popen(cmd, env={**sam_env(docker_host, key, secret), "TMPDIR": str(work)},
                                    cwd=REPO_ROOT)
            # SIGTERM as Ctrl-C, and Ctrl-C even where it was inherited ignored (a background job):
            # handled below, outside the signal handler (Popen.wait is not reentrant).
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            try:
                return proc.wait()
            except KeyboardInterrupt:
                return stop(proc)
    finally:
        remove_sam_containers()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
