"""What each of the stack's services is. A function per service (PostgreSQL, the Redis servers
and Sentinels, FerretDB, moto server, OpenSearch, devstack's gateway and WebSocket API) reads the
stack's state (ports, folder, passwords, TLS files) and returns the `Service` the supervisor
runs: its command line, its readiness check, and its hooks (initdb before the first start, the
databases after it; moto provisioned by `provision_aws`). `services` lists those a stack runs,
leaving out any that an environment variable points elsewhere, and `served_template` says which
template the gateway and the WebSocket API serve (the sources, or `sam build`'s output).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from devstack import settings as stack_settings
from devstack.binaries import ferretdb_binary, java17_home, opensearch_home, postgres_bindir
from devstack.settings import REPO_ROOT
from devstack.stack_state import SENTINELS, StackState, redis_client
from devstack.supervisor import Service, ServiceError, run_as
from devstack.tls import write_private
from stockpred.config import ConfigError

if TYPE_CHECKING:
    import redis


# OpenSearch's JVM options (each stack writes them into its own config/): the distribution's,
# minus its heap size (OPENSEARCH_JAVA_OPTS gives it), its GC log and heap dumps, which it writes
# relative to its read-only home.
OPENSEARCH_JVM_OPTIONS = """\
-Djava.io.tmpdir=${{OPENSEARCH_TMPDIR}}
-XX:ErrorFile={logs}/hs_err_pid%p.log
18-:-Djava.security.manager=allow
-Djava.util.concurrent.ForkJoinPool.common.threadFactory=\
org.opensearch.secure_sm.SecuredForkJoinWorkerThreadFactory
"""

BUILT_TEMPLATE = REPO_ROOT / ".aws-sam" / "build" / "template.yaml"


def served_template() -> Path:
    """What devstack serves: the sources (default, the fast edit loop) or, with
    STOCKPRED_SERVE=built, `sam build`'s output loaded the way Lambda loads it."""
    try:
        mode = stack_settings.SERVE.read()
    except ConfigError as exc:
        raise ServiceError(str(exc)) from None
    if mode == "built":
        if not BUILT_TEMPLATE.is_file():
            raise ServiceError(f"{BUILT_TEMPLATE} is missing: run `make build` (sam build) first")
        return BUILT_TEMPLATE
    return REPO_ROOT / "template.yaml"


def services(stack: StackState) -> list[Service]:
    """The services `stack` runs, in the order they start: each one no variable points elsewhere."""
    ext = stack.external()
    out: list[Service] = []
    if "DATABASE_URL" not in ext:
        out.append(_postgres(stack))
    if stack.runs_redis():
        out += _redis_topology(stack)
    if "MONGO_URL" not in ext:
        out.append(_ferretdb(stack))
    if "AWS_ENDPOINT_URL" not in ext:
        out.append(_moto(stack))
    if "OPENSEARCH_URL" not in ext:
        out.append(_opensearch(stack))
    if stack.with_gateway:
        out += [_websocket_api(stack), _gateway(stack)]
    return out


def _postgres(stack: StackState) -> Service:
    port = stack.ports["postgres"]
    data = stack.path("data", "postgres")
    sock = stack.path("run", "pg")
    bindir = postgres_bindir()
    as_root = os.geteuid() == 0
    user = "postgres" if as_root else None

    def prepare() -> None:
        sock.mkdir(parents=True, exist_ok=True)
        if as_root:
            shutil.chown(sock, "postgres", "postgres")
        if (data / "PG_VERSION").exists():
            return
        data.mkdir(parents=True, exist_ok=True)
        if as_root:
            shutil.chown(data, "postgres", "postgres")
        stack.log(f"  initdb {data}")
        subprocess.run(
            [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
             "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions"],
            check=True, capture_output=True, cwd="/", **run_as(user),
        )

    def ready() -> bool:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres",
                                connect_timeout=1)
        conn.close()
        return True

    def after_start() -> None:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            for db in ("stockpred", "ferretdb"):
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{db}"')
        conn.close()

    settings = {
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": str(sock),
        "max_connections": "200",
        # Two-phase commit under concurrency: at least one prepared slot per connection.
        "max_prepared_transactions": "200",
        "shared_buffers": "128MB",
        "fsync": "on" if stack.durable else "off",
        # On even when not durable: a commit is in the kernel's page cache before it is
        # acknowledged, so a killed PostgreSQL loses nothing (tests/e2e/test_fault_matrix.py);
        # without fsync only a machine crash could.
        "synchronous_commit": "on",
        "full_page_writes": "on" if stack.durable else "off",
    }
    argv = [str(bindir / "postgres"), "-D", str(data), "-p", str(port)]
    for k, v in settings.items():
        argv += ["-c", f"{k}={v}"]
    return Service("postgres", argv, ready, user=user, prepare=prepare,
                   after_start=after_start, stop_signal=signal.SIGINT)


def _redis_topology(stack: StackState) -> list[Service]:
    """State primary and cache shards; with HA, a replica of each and three Sentinels."""
    out = [_redis(stack, "redis-state", "state", persistent=stack.durable)]
    out += [_redis(stack, f"redis-{m}", "cache", persistent=False) for m in stack.cache_masters()]
    if stack.ha:
        out.append(_redis(stack, "redis-state-replica", "state", persistent=stack.durable,
                               replica_of=stack.ports["redis-state"]))
        out += [_redis(stack, f"redis-{m}-replica", "cache", persistent=False,
                            replica_of=stack.ports[f"redis-{m}"]) for m in stack.cache_masters()]
        out += [_sentinel(stack, j) for j in range(SENTINELS)]
    return out


def _redis(stack: StackState, name: str, which: str, *, persistent: bool,
           replica_of: int | None = None) -> Service:
    """A redis-server that requires the state's or the cache's password (`which`). Masters and
    replicas alike authenticate to their master with it (masterauth): after a failover the old
    master comes back as a replica."""
    port = stack.ports[name]
    data = stack.path("data", name)
    conf = data / "auth.conf"
    password = stack.redis_password(which)
    tls = stack.tls_files()

    def prepare() -> None:
        data.mkdir(parents=True, exist_ok=True)
        # In an included file (0600), not on the command line, where `ps` would show it.
        write_private(conf, f"requirepass {password}\nmasterauth {password}\n")

    def ready() -> bool:

        return bool(_redis_client(stack, port, which).ping())

    # TLS only (no plain port); replicas reach their master over TLS too. Clients need no
    # certificate of their own: they authenticate with the password.
    argv = [shutil.which("redis-server") or "redis-server", str(conf), "--port", "0",
            "--tls-port", str(port), "--tls-cert-file", str(tls["cert"]),
            "--tls-key-file", str(tls["key"]), "--tls-ca-cert-file", str(tls["ca"]),
            "--tls-auth-clients", "no", "--tls-replication", "yes",
            "--bind", "127.0.0.1", "--dir", str(data), "--save", "",
            "--appendonly", "yes" if persistent else "no", "--daemonize", "no"]
    if not persistent:
        argv += ["--maxmemory", "256mb", "--maxmemory-policy", "allkeys-lru"]
    if replica_of:
        argv += ["--replicaof", "127.0.0.1", str(replica_of)]
    return Service(name, argv, ready, prepare=prepare)


def _sentinel(stack: StackState, j: int) -> Service:
    name = f"redis-sentinel-{j}"
    port = stack.ports[name]
    data = stack.path("data", name)
    conf = data / "sentinel.conf"
    monitored = {"state": stack.ports["redis-state"],
                 **{m: stack.ports[f"redis-{m}"] for m in stack.cache_masters()}}
    # Sentinels require the state's password too (clients and each other): an open Sentinel
    # would let anyone reconfigure which master the clients are sent to.
    own = stack.redis_password("state")
    tls = stack.tls_files()

    def prepare() -> None:
        data.mkdir(parents=True, exist_ok=True)
        # TLS only, to clients, servers and the other Sentinels alike (tls-replication).
        lines = ["port 0", f"tls-port {port}", f"tls-cert-file {tls['cert']}",
                 f"tls-key-file {tls['key']}", f"tls-ca-cert-file {tls['ca']}",
                 "tls-auth-clients no", "tls-replication yes",
                 "bind 127.0.0.1", f"dir {data}", f"requirepass {own}",
                 f"sentinel sentinel-pass {own}"]
        for master, master_port in monitored.items():
            lines += [f"sentinel monitor {master} 127.0.0.1 {master_port} 2",
                      f"sentinel auth-pass {master} "
                      + stack.redis_password("state" if master == "state" else "cache"),
                      f"sentinel down-after-milliseconds {master} 1000",
                      f"sentinel failover-timeout {master} 5000",
                      f"sentinel parallel-syncs {master} 1"]
        # 0600: it holds the passwords (Sentinel rewrites it as it learns, keeping its mode).
        write_private(conf, "\n".join(lines) + "\n")

    def ready() -> bool:

        masters = _redis_client(stack, port, "state").sentinel_masters()
        return set(masters) == set(monitored)

    argv = [shutil.which("redis-sentinel") or "redis-sentinel", str(conf)]
    return Service(name, argv, ready, prepare=prepare)


def _redis_client(stack: StackState, port: int, which: str) -> redis.Redis:
    """A client of one of the stack's Redis processes (a Sentinel: `which`="state")."""
    return redis_client({"REDIS_PASSWORD": stack.redis_password("state"),
                         "CACHE_REDIS_PASSWORD": stack.redis_password("cache"),
                         "REDIS_TLS_CA_FILE": str(stack.tls_files()["ca"])},
                        port=port, cache=which == "cache", socket_timeout=1)


def _ferretdb(stack: StackState) -> Service:
    port = stack.ports["ferretdb"]
    state = stack.path("data", "ferretdb")
    pg_url = f"postgres://postgres@127.0.0.1:{stack.ports['postgres']}/ferretdb"

    def prepare() -> None:
        if not ferretdb_binary().exists():
            raise ServiceError(f"FerretDB is not built at {ferretdb_binary()} "
                               "(run devstack/bootstrap.sh)")
        state.mkdir(parents=True, exist_ok=True)

    def ready() -> bool:
        import pymongo

        client = pymongo.MongoClient(port=port, serverSelectionTimeoutMS=500)
        try:
            return client.admin.command("ping").get("ok") == 1.0
        finally:
            client.close()

    argv = [str(ferretdb_binary()), "--handler=postgresql", f"--postgresql-url={pg_url}",
            f"--listen-addr=127.0.0.1:{port}",
            # No debug listener: one port fewer to collide with (it served only metrics).
            "--debug-addr=-",
            "--telemetry=disable", f"--state-dir={state}", "--log-level=warn"]
    return Service("ferretdb", argv, ready, prepare=prepare)


def _moto(stack: StackState) -> Service:
    port = stack.ports["moto"]

    def ready() -> bool:
        import requests

        return requests.get(f"http://127.0.0.1:{port}/moto-api/", timeout=1).ok

    endpoint = f"http://127.0.0.1:{port}"
    snapshots = stack.path("data", "s3") if stack.durable else None

    def after_start() -> None:
        provision_aws(stack, endpoint, snapshots)

    def before_stop() -> None:
        from localstack.provision import snapshot

        if snapshots is not None:
            saved = snapshot(endpoint, snapshots)
            stack.log(f"  s3 saved to {snapshots}: {saved}")

    # moto server, with its Step Functions engine signing its task calls with the stack's
    # credentials (devstack/moto_server.py): it sends Lambda tasks to
    # http://localhost:$MOTO_PORT, devstack's Invoke API, which refuses any other signer.
    argv = [sys.executable, "-m", "devstack.moto_server", "-H", "127.0.0.1", "-p", str(port)]
    env = {"MOTO_PORT": str(stack.ports["gateway"]),
           "AWS_ACCESS_KEY_ID": stack.access_key_id(),
           "AWS_SECRET_ACCESS_KEY": stack.secret("aws-secret-access-key")}
    return Service("moto", argv, ready, env=env, after_start=after_start, before_stop=before_stop)


def provision_aws(stack: StackState, endpoint: str, snapshots: Path | None = None) -> None:
    """Provisions an AWS emulator for this stack: S3 buckets (restored from `snapshots`), the
    template's state machines and queues, and the secrets the functions read. Called when
    the stack starts moto, or at `up` for an external one with STOCKPRED_PROVISION_AWS=on."""
    import requests

    from devstack.template import Template
    from localstack.provision import (
        REDIS_SECRETS,
        SECRETS,
        provision,
        provision_queues,
        provision_secrets,
        provision_state_machines,
    )

    # Step Functions executes definitions (its Lambda tasks reach devstack, see MOTO_PORT).
    requests.post(
        f"{endpoint}/moto-api/config",
        json={"stepfunctions": {"execute_state_machine": True}},
        timeout=5,
    ).raise_for_status()
    restored = provision(endpoint, snapshots)
    template = Template.load(REPO_ROOT / "template.yaml")
    provision_state_machines(endpoint, template)
    provision_queues(endpoint, template)
    if any(restored.values()):
        stack.log(f"  s3 restored from {snapshots}: {restored}")
    # The secrets the functions read (client_env names them), with this stack's values.
    env = stack.client_env()
    values = {
        "JWT_SECRET_ARN": stack.environ.get("JWT_SECRET") or stack.secret("jwt-secret"),
        "SERVICE_TOKEN_SECRET_ARN": stack.environ.get("SERVICE_TOKEN") or stack.secret("service-token"),
        "PSEUDONYM_KEY_SECRET_ARN": stack.environ.get("PSEUDONYM_KEY") or stack.secret("pseudonym-key"),
        "DATABASE_SECRET_ARN": json.dumps({"url": env["DATABASE_URL"]}),
        "MONGO_SECRET_ARN": json.dumps({"url": env["MONGO_URL"]}),
        "ALPHAVANTAGE_SECRET_ARN": json.dumps(
            {"api_key": stack.environ.get("ALPHAVANTAGE_API_KEY", "")}),
    }
    names = dict(SECRETS)
    if stack.runs_redis():
        names.update(REDIS_SECRETS)
        values.update({"REDIS_AUTH_SECRET_ARN": stack.redis_password("state"),
                       "CACHE_AUTH_SECRET_ARN": stack.redis_password("cache")})
    provision_secrets(endpoint, {names[var]: value for var, value in values.items()},
                      region=env["AWS_DEFAULT_REGION"])


def _opensearch(stack: StackState) -> Service:
    """OpenSearch, the log store: one node on loopback (plain HTTP: this distribution has no
    security plugin), run as `opensearch` when we are root (it refuses to run as root)."""
    port = stack.ports["opensearch"]
    url = f"http://127.0.0.1:{port}"
    home = opensearch_home()
    data, logs = stack.path("data", "opensearch"), stack.path("log", "opensearch")
    # Its own config folder: OpenSearch writes its keystore there, and the distribution's
    # jvm.options would write a GC log into its (read-only) home.
    conf, tmp = stack.path("data", "opensearch-config"), stack.path("run", "opensearch-tmp")
    user = "opensearch" if os.geteuid() == 0 else None

    def prepare() -> None:
        if not (home / "bin" / "opensearch").exists():
            raise ServiceError(f"OpenSearch is not installed at {home} (run devstack/bootstrap.sh)")
        for d in (data, logs, conf, tmp):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.copyfile(home / "config" / "log4j2.properties", conf / "log4j2.properties")
        (conf / "opensearch.yml").write_text("# devstack/service_specs.py passes every setting as -E\n")
        (conf / "jvm.options").write_text(OPENSEARCH_JVM_OPTIONS.format(logs=logs))
        if user:
            for path in (data, logs, conf, tmp, *conf.iterdir()):
                shutil.chown(path, user, user)

    def ready() -> bool:
        import requests

        health = requests.get(f"{url}/_cluster/health", timeout=1).json()
        return health.get("status") in ("green", "yellow")

    def after_start() -> None:
        import requests

        # One node holds no replica: without this every index would stay yellow. A cluster
        # setting (kept in data/opensearch) rather than a `*` template, which any other
        # matching template would override.
        requests.put(f"{url}/_cluster/settings", timeout=10,
                     json={"persistent": {"cluster.default_number_of_replicas": 0}},
                     ).raise_for_status()

    settings = {
        "cluster.name": "stockpred",
        "node.name": "stockpred",
        "discovery.type": "single-node",
        "network.host": "127.0.0.1",
        "http.port": port,
        "transport.port": stack.ports["opensearch-transport"],
        "path.data": data,
        "path.logs": logs,
    }
    argv = [str(home / "bin" / "opensearch")]
    for k, v in settings.items():
        argv += ["-E", f"{k}={v}"]
    env = {
        "OPENSEARCH_JAVA_HOME": stack_settings.OPENSEARCH_JAVA_HOME.read(stack.environ)
        or str(java17_home()),
        # A small heap, touched as used rather than all at start (OpenSearch's ergonomics
        # pre-touch it); the serial collector and the client compiler alone (C1: a local log
        # store needs no peak throughput) answer ~0.5 s sooner. Resident at start: ~215 MB,
        # instead of ~420 MB.
        "OPENSEARCH_JAVA_OPTS": ("-Xms256m -Xmx256m -XX:-AlwaysPreTouch -XX:+UseSerialGC"
                                 " -XX:TieredStopAtLevel=1"),
        "OPENSEARCH_PATH_CONF": str(conf),
        "OPENSEARCH_TMPDIR": str(tmp),
    }
    return Service("opensearch", argv, ready, env=env, user=user, prepare=prepare,
                   after_start=after_start, ready_deadline_s=90, slow_start=True,
                   inherit_env=False)


def _bind_host(stack: StackState) -> str:
    """STOCKPRED_BIND_HOST: 0.0.0.0 inside a container (docker-compose.yml publishes the ports
    on the host's 127.0.0.1 only); loopback everywhere else."""
    return stack_settings.BIND_HOST.read(stack.environ)


def _template_server(stack: StackState, name: str, module: str) -> Service:
    """One of devstack's servers of the template (the REST gateway, the WebSocket API), ready
    when its health endpoint answers."""
    port = stack.ports[name]

    def ready() -> bool:
        import requests

        return requests.get(f"http://127.0.0.1:{port}/_devstack/health", timeout=1).ok

    argv = [sys.executable, "-m", module, "--host", _bind_host(stack),
            "--port", str(port), "--template", str(served_template())]
    return Service(name, argv, ready, env=stack.client_env(), ready_deadline_s=60)


def _gateway(stack: StackState) -> Service:
    return _template_server(stack, "gateway", "devstack.gateway")


def _websocket_api(stack: StackState) -> Service:
    return _template_server(stack, "websocket", "devstack.wsapi")
