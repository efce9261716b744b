"""Starts, watches and stops the local data services: PostgreSQL, Redis, FerretDB, moto server,
OpenSearch.

Every service is a child process the stack owns: a pid file and a log file under the stack's
root (`.local/` for `make run`, a temporary folder for tests), a readiness check with a
deadline, and a stop by PID. Where an environment variable already points at a running service
(DATABASE_URL, REDIS_URL, MONGO_URL, OPENSEARCH_URL, AWS_ENDPOINT_URL / LOCALSTACK_HOST), that
service is used and nothing is started for it.

The stack's own Redis processes (servers and Sentinels) speak TLS only, as ElastiCache does with
in-transit encryption: a CA and a server certificate for 127.0.0.1/localhost are made at the
stack's first start (`tls/` in its folder, keys 0600) and reused after; clients get rediss://
URLs and the CA's file (REDIS_TLS_CA_FILE). `redis_client` makes a client of them from the
stack's environment, for devstack's own checks, the tools, benchmarks and tests.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from devstack import settings as stack_settings
from stockpred.config import ConfigError

if TYPE_CHECKING:
    import redis

REPO_ROOT = Path(__file__).resolve().parent.parent
FERRETDB_VERSION = stack_settings.FERRETDB_VERSION.read()
OPENSEARCH_VERSION = "2.19.6"  # as devstack/bootstrap.sh installs it; 3.x would need Java 21

DEFAULT_PORTS = {
    "postgres": 55432,
    "redis-state": 56379,
    "ferretdb": 57017,
    "moto": 4566,
    "opensearch": 59200,
    "opensearch-transport": 59300,
    "gateway": 3000,
    "websocket": 3001,
}
CACHE_PORT_BASE = 56380
REPLICA_PORT_BASE = 56400
SENTINEL_PORT_BASE = 56420
SENTINELS = 3
# The stack's certificates: made once, reused while they have this long left.
TLS_CA_DAYS = 3650
TLS_SERVER_DAYS = 825
TLS_RENEW_BEFORE_DAYS = 7


class ServiceError(RuntimeError):
    """A service could not be started or stopped; the message says which and why."""


_PORTS_GIVEN: set[int] = set()


def _ephemeral_start() -> int:
    """The first port the kernel gives outgoing connections."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A loopback port nothing listens on, taken from below the kernel's ephemeral range.

    A port the kernel handed out with bind(0) lies in the range it also gives to outgoing
    connections, so between this call and the server's bind any client on the machine could take
    it ("address already in use" from a container published seconds later). Ports below the range
    are only ever taken by a listener; each is given once per process.
    """
    low = _ephemeral_start()
    first = 20000 if low > 25000 else 1024
    for _ in range(200):
        port = random.randrange(first, low)
        if port in _PORTS_GIVEN:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _PORTS_GIVEN.add(port)
        return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _never_raising(log: Callable[[str], None]) -> Callable[[str], None]:
    """`log`, except that a closed output (a bench piped into `head`) cannot stop the stack
    half way and leave its services running."""
    def write(line: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            log(line)
    return write


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return True


def wait_until(check: Callable[[], bool], deadline_s: float, interval: float = 0.1) -> bool:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            if check():
                return True
        except Exception:
            pass
        time.sleep(interval)
    return False


def postgres_bindir() -> Path:
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/postgres"),
        key=lambda p: int(Path(p).parent.parent.name),
    )
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("postgres")
    if found:
        return Path(found).resolve().parent
    raise ServiceError("PostgreSQL is not installed (run devstack/bootstrap.sh)")


def cache_dir() -> Path:
    return (
        stack_settings.CACHE_DIR.read()
        or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "stockpred"
    )


def ferretdb_binary() -> Path:
    return cache_dir() / f"ferretdb-{FERRETDB_VERSION}" / "ferretdb"


def opensearch_home() -> Path:
    """Where devstack/bootstrap.sh unpacked OpenSearch: /opt/stockpred as root (root's home is
    closed to the `opensearch` user that runs it), else the cache."""
    if home := stack_settings.OPENSEARCH_HOME.read():
        return home
    if os.geteuid() == 0:
        return Path("/opt/stockpred") / f"opensearch-{OPENSEARCH_VERSION}"
    return cache_dir() / f"opensearch-{OPENSEARCH_VERSION}"


def java17_home() -> Path:
    """A Java 17 runtime's home (OpenSearch 2.x bundles none), found by its release file."""
    for release in sorted(glob.glob("/usr/lib/jvm/*/release")):
        with contextlib.suppress(OSError):
            if re.search(r'^JAVA_VERSION="17[."]', Path(release).read_text(), re.MULTILINE):
                return Path(release).parent.resolve()
    raise ServiceError("Java 17 is not installed (run devstack/bootstrap.sh)")


def run_as(user: str | None) -> dict[str, object]:
    """Popen's arguments that run a child as `user` (None: as ourselves), with the user's own
    supplementary groups: `stockpred-services` lets it reach its folder in the stack's."""
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid,
            "extra_groups": os.getgrouplist(user, entry.pw_gid)}


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


@dataclass
class Service:
    """One process of the stack: how to start it, when it is ready, how to stop it."""

    name: str
    argv: list[str]
    ready: Callable[[], bool]
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    prepare: Callable[[], None] | None = None
    after_start: Callable[[], None] | None = None
    before_stop: Callable[[], None] | None = None
    stop_signal: int = signal.SIGTERM
    ready_deadline_s: float = 60.0
    # Launched before the other services and waited for after them, so that a long boot
    # (OpenSearch's JVM) overlaps theirs instead of adding to it.
    slow_start: bool = False
    # False: the child gets PATH, the locale and `env` only, not the caller's environment (which may
    # hold secrets) - for services that run as another user.
    inherit_env: bool = True


class Stack:
    """The local stack rooted at one folder: ports, services, and the environment they give."""

    def __init__(
        self,
        root: Path,
        *,
        ports: dict[str, int] | None = None,
        cache_shards: int | None = None,
        high_availability: bool | None = None,
        free_ports: bool = False,
        durable: bool = True,
        with_gateway: bool = True,
        environ: dict[str, str] | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        self.root = Path(root).resolve()
        self.durable = durable
        self.environ = dict(os.environ if environ is None else environ)
        self.log = _never_raising(log)
        self.cache_shards = cache_shards or stack_settings.CACHE_SHARDS.read(self.environ)
        self.ha = (stack_settings.REDIS_HA.read(self.environ)
                   if high_availability is None else high_availability)
        self.with_gateway = with_gateway
        if free_ports:
            ports = {name: free_port() for name in self.port_names()}
        self.ports = self._load_ports(ports)

    # ---- layout -------------------------------------------------------------------------
    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    def pidfile(self, name: str) -> Path:
        return self.path("run", f"{name}.pid")

    def logfile(self, name: str) -> Path:
        return self.path("log", f"{name}.log")

    # ---- Redis topology ------------------------------------------------------------------
    def cache_masters(self) -> list[str]:
        """Sentinel service names of the cache shards, which are also their ring node names."""
        return [f"cache-{i}" for i in range(self.cache_shards)]

    def redis_names(self) -> list[str]:
        names = ["redis-state", *(f"redis-{m}" for m in self.cache_masters())]
        if self.ha:
            names += [f"{n}-replica" for n in names]
            names += [f"redis-sentinel-{j}" for j in range(SENTINELS)]
        return names

    def port_names(self) -> list[str]:
        return [*DEFAULT_PORTS, *(n for n in self.redis_names() if n != "redis-state")]

    def _load_ports(self, given: dict[str, int] | None) -> dict[str, int]:
        saved = self.path("ports.json")
        if given is None and saved.exists():
            ports = json.loads(saved.read_text())
            if set(self.port_names()) <= set(ports):
                return ports
        ports = dict(DEFAULT_PORTS)
        ports.update({f"redis-cache-{i}": CACHE_PORT_BASE + i for i in range(self.cache_shards)})
        if self.ha:
            ports["redis-state-replica"] = REPLICA_PORT_BASE
            ports.update({f"redis-cache-{i}-replica": REPLICA_PORT_BASE + 1 + i
                          for i in range(self.cache_shards)})
            ports.update({f"redis-sentinel-{j}": SENTINEL_PORT_BASE + j for j in range(SENTINELS)})
        for name in list(ports):
            override = stack_settings.PORT.named(name.upper().replace("-", "_")).read(self.environ)
            if override is not None:
                ports[name] = override
        if given:
            ports.update(given)
        return ports

    # ---- what runs outside the stack ----------------------------------------------------
    def external(self) -> dict[str, str]:
        """Services an environment variable already points at: these are used, not started."""
        env = self.environ
        found = {}
        for var in ("DATABASE_URL", "REDIS_URL", "MONGO_URL", "OPENSEARCH_URL"):
            if env.get(var):
                found[var] = env[var]
        if env.get("AWS_ENDPOINT_URL"):
            found["AWS_ENDPOINT_URL"] = env["AWS_ENDPOINT_URL"]
        elif host := stack_settings.LOCALSTACK_HOST.read(env):
            found["AWS_ENDPOINT_URL"] = host if "://" in host else f"http://{host}"
            if ":" not in host.split("//")[-1]:
                found["AWS_ENDPOINT_URL"] += ":4566"
        return found

    # ---- the environment the functions see ----------------------------------------------
    def client_env(self) -> dict[str, str]:
        from localstack.provision import queue_url

        p = self.ports
        ext = self.external()
        gateway = f"http://127.0.0.1:{p['gateway']}"
        cache_urls = ",".join(
            f"rediss://127.0.0.1:{p[f'redis-{m}']}/0" for m in self.cache_masters()
        )
        env = {
            "STOCKPRED_ENV": "local",
            "STOCKPRED_HOME": str(self.root),
            "DATABASE_URL": ext.get(
                "DATABASE_URL", f"postgresql://postgres@127.0.0.1:{p['postgres']}/stockpred"
            ),
            "REDIS_URL": ext.get("REDIS_URL", f"rediss://127.0.0.1:{p['redis-state']}/0"),
            "CACHE_REDIS_URLS": self.environ.get("CACHE_REDIS_URLS")
            or (ext.get("REDIS_URL", cache_urls)),
            "MONGO_URL": ext.get("MONGO_URL", f"mongodb://127.0.0.1:{p['ferretdb']}/"),
            "OPENSEARCH_URL": ext.get("OPENSEARCH_URL", f"http://127.0.0.1:{p['opensearch']}"),
            "AWS_ENDPOINT_URL": ext.get("AWS_ENDPOINT_URL", f"http://127.0.0.1:{p['moto']}"),
            "AWS_ENDPOINT_URL_LAMBDA": gateway,
            "AWS_DEFAULT_REGION": self.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            # The stack's own credentials: devstack's Invoke and @connections APIs accept only
            # requests signed with them, as IAM would (moto accepts any).
            "AWS_ACCESS_KEY_ID": self.access_key_id(),
            "AWS_SECRET_ACCESS_KEY": self.secret("aws-secret-access-key"),
            "STOCKPRED_API_URL": gateway,
            "CACHE_MODE": "shards",
            **self._sentinel_env(ext),
            **self._redis_passwords(),
            # The WebSocket API is an endpoint of its own (devstack/wsapi.py), as on AWS.
            "STOCKPRED_WS_URL": f"ws://127.0.0.1:{p['websocket']}/local",
            "WS_MANAGEMENT_URL": f"http://127.0.0.1:{p['websocket']}/local",
        }
        env["PUSH_QUEUE_URL"] = queue_url(env["AWS_ENDPOINT_URL"], "PushQueue")
        if "AWS_ENDPOINT_URL" in ext:
            # An emulator the stack did not start holds none of its secrets: the plain values,
            # which only local mode reads.
            env.update({
                "JWT_SECRET": self.environ.get("JWT_SECRET") or self.secret("jwt-secret"),
                "SERVICE_TOKEN": self.environ.get("SERVICE_TOKEN") or self.secret("service-token"),
                "PSEUDONYM_KEY": self.environ.get("PSEUDONYM_KEY") or self.secret("pseudonym-key"),
            })
        else:
            from localstack.provision import REDIS_SECRETS, SECRETS

            # As on AWS, the functions get the secrets' names and read them from Secrets Manager
            # (moto's, provisioned when it starts). DATABASE_URL and the like above stay for the
            # local tools and tests that connect directly.
            env.update(SECRETS)
            if self.runs_redis():
                env.update(REDIS_SECRETS)
        return env

    def runs_redis(self) -> bool:
        """Whether the stack starts its own Redis processes (else REDIS_URL / CACHE_REDIS_URLS
        point at others)."""
        return "REDIS_URL" not in self.external() and not self.environ.get("CACHE_REDIS_URLS")

    def redis_password(self, which: str) -> str:
        """The AUTH password of the stack's own state (`which`="state") or cache Redis processes:
        made at first start, kept in the stack's folder like its other secrets. 64 hex digits,
        alphanumeric as ElastiCache's AUTH tokens."""
        return self.secret("redis-password" if which == "state" else "cache-redis-password")

    def _redis_passwords(self) -> dict[str, str]:
        """REDIS_PASSWORD / CACHE_REDIS_PASSWORD: for the local tools and tests that connect
        directly (the functions read the secrets REDIS_SECRETS names when moto holds them), and
        REDIS_TLS_CA_FILE, the stack's CA, for every client (functions included).
        Redis the stack did not start: whatever the environment gives, if anything."""
        if self.runs_redis():
            return {"REDIS_PASSWORD": self.redis_password("state"),
                    "CACHE_REDIS_PASSWORD": self.redis_password("cache"),
                    "REDIS_TLS_CA_FILE": str(self.tls_files()["ca"])}
        return {var: self.environ[var]
                for var in ("REDIS_PASSWORD", "CACHE_REDIS_PASSWORD", "REDIS_TLS_CA_FILE")
                if self.environ.get(var)}

    def tls_files(self) -> dict[str, Path]:
        """The stack's CA ("ca"), and the certificate ("cert") and key ("key") every one of its
        Redis processes serves: made at first use in `tls/`, reused after (renewed when the
        certificate nears its end). Keys 0600."""
        folder = self.path("tls")
        files = {"ca": folder / "ca.pem", "ca_key": folder / "ca-key.pem",
                 "cert": folder / "server.pem", "key": folder / "server-key.pem"}
        if not all(f.exists() for f in files.values()) or _expires_soon(files["cert"]):
            self.ensure_root()
            folder.mkdir(mode=0o700, exist_ok=True)
            _make_tls_files(files)
        return files

    def _sentinel_env(self, ext: dict[str, str]) -> dict[str, str]:
        if not self.ha or "REDIS_URL" in ext:
            return {}
        return {
            "REDIS_SENTINELS": ",".join(f"127.0.0.1:{self.ports[f'redis-sentinel-{j}']}"
                                        for j in range(SENTINELS)),
            "REDIS_STATE_SERVICE": "state",
            "CACHE_SHARDS": ",".join(self.cache_masters()),
        }

    def secret(self, name: str, make: Callable[[], str] | None = None) -> str:
        """A local secret (token signing, service token, the stack's AWS secret key): made once,
        kept in the stack's folder, created 0600 (never readable by others, not even briefly)."""
        path = self.path(name)
        if not path.exists():
            import secrets

            self.ensure_root()
            value = make() if make else secrets.token_hex(32)
            write_private(path, value)
        elif path.stat().st_mode & 0o077:
            path.chmod(0o600)  # made by an older version, world-readable: fix it
        return path.read_text().strip()

    def access_key_id(self) -> str:
        """The stack's AWS access key id (not secret, as on AWS; its secret key is)."""
        import secrets

        return self.secret("aws-access-key-id",
                           lambda: "AKIA" + secrets.token_hex(8).upper())

    def ensure_root(self) -> None:
        """The stack's folder, 0700: secrets, env.json, data and logs are the owner's alone.

        Running as root, PostgreSQL runs as `postgres` and OpenSearch as `opensearch`, and each
        must reach its own folders below it (data/postgres; data/opensearch, log/opensearch...):
        the folder's group is then `stockpred-services` (both are members, see bootstrap.sh;
        postgres on a machine bootstrapped before it) with search only (0710), which lists and
        reads nothing, and every secret file stays 0600.
        """
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        mode = 0o700
        if os.geteuid() == 0 and {"DATABASE_URL", "OPENSEARCH_URL"} - set(self.external()):
            import grp

            for group in ("stockpred-services", "postgres"):
                with contextlib.suppress(KeyError):
                    os.chown(self.root, 0, grp.getgrnam(group).gr_gid)
                    mode = 0o710
                    break
        if self.root.stat().st_mode & 0o777 != mode:
            self.root.chmod(mode)

    # ---- the services -------------------------------------------------------------------
    def services(self) -> list[Service]:
        ext = self.external()
        out: list[Service] = []
        if "DATABASE_URL" not in ext:
            out.append(self._postgres())
        if self.runs_redis():
            out += self._redis_topology()
        if "MONGO_URL" not in ext:
            out.append(self._ferretdb())
        if "AWS_ENDPOINT_URL" not in ext:
            out.append(self._moto())
        if "OPENSEARCH_URL" not in ext:
            out.append(self._opensearch())
        if self.with_gateway:
            out += [self._websocket_api(), self._gateway()]
        return out

    def _postgres(self) -> Service:
        port = self.ports["postgres"]
        data = self.path("data", "postgres")
        sock = self.path("run", "pg")
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
            self.log(f"  initdb {data}")
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
            "fsync": "on" if self.durable else "off",
            # On even when not durable: a commit is in the kernel's page cache before it is
            # acknowledged, so a killed PostgreSQL loses nothing (tests/e2e/test_fault_matrix.py);
            # without fsync only a machine crash could.
            "synchronous_commit": "on",
            "full_page_writes": "on" if self.durable else "off",
        }
        argv = [str(bindir / "postgres"), "-D", str(data), "-p", str(port)]
        for k, v in settings.items():
            argv += ["-c", f"{k}={v}"]
        return Service("postgres", argv, ready, user=user, prepare=prepare,
                       after_start=after_start, stop_signal=signal.SIGINT)

    def _redis_topology(self) -> list[Service]:
        """State primary and cache shards; with HA, a replica of each and three Sentinels."""
        out = [self._redis("redis-state", "state", persistent=self.durable)]
        out += [self._redis(f"redis-{m}", "cache", persistent=False) for m in self.cache_masters()]
        if self.ha:
            out.append(self._redis("redis-state-replica", "state", persistent=self.durable,
                                   replica_of=self.ports["redis-state"]))
            out += [self._redis(f"redis-{m}-replica", "cache", persistent=False,
                                replica_of=self.ports[f"redis-{m}"]) for m in self.cache_masters()]
            out += [self._sentinel(j) for j in range(SENTINELS)]
        return out

    def _redis(self, name: str, which: str, *, persistent: bool,
               replica_of: int | None = None) -> Service:
        """A redis-server that requires the state's or the cache's password (`which`). Masters and
        replicas alike authenticate to their master with it (masterauth): after a failover the old
        master comes back as a replica."""
        port = self.ports[name]
        data = self.path("data", name)
        conf = data / "auth.conf"
        password = self.redis_password(which)
        tls = self.tls_files()

        def prepare() -> None:
            data.mkdir(parents=True, exist_ok=True)
            # In an included file (0600), not on the command line, where `ps` would show it.
            write_private(conf, f"requirepass {password}\nmasterauth {password}\n")

        def ready() -> bool:

            return bool(self._redis_client(port, which).ping())

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

    def _sentinel(self, j: int) -> Service:
        name = f"redis-sentinel-{j}"
        port = self.ports[name]
        data = self.path("data", name)
        conf = data / "sentinel.conf"
        monitored = {"state": self.ports["redis-state"],
                     **{m: self.ports[f"redis-{m}"] for m in self.cache_masters()}}
        # Sentinels require the state's password too (clients and each other): an open Sentinel
        # would let anyone reconfigure which master the clients are sent to.
        own = self.redis_password("state")
        tls = self.tls_files()

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
                          + self.redis_password("state" if master == "state" else "cache"),
                          f"sentinel down-after-milliseconds {master} 1000",
                          f"sentinel failover-timeout {master} 5000",
                          f"sentinel parallel-syncs {master} 1"]
            # 0600: it holds the passwords (Sentinel rewrites it as it learns, keeping its mode).
            write_private(conf, "\n".join(lines) + "\n")

        def ready() -> bool:

            masters = self._redis_client(port, "state").sentinel_masters()
            return set(masters) == set(monitored)

        argv = [shutil.which("redis-sentinel") or "redis-sentinel", str(conf)]
        return Service(name, argv, ready, prepare=prepare)

    def _redis_client(self, port: int, which: str) -> redis.Redis:
        """A client of one of the stack's Redis processes (a Sentinel: `which`="state")."""
        return redis_client({"REDIS_PASSWORD": self.redis_password("state"),
                             "CACHE_REDIS_PASSWORD": self.redis_password("cache"),
                             "REDIS_TLS_CA_FILE": str(self.tls_files()["ca"])},
                            port=port, cache=which == "cache", socket_timeout=1)

    def _ferretdb(self) -> Service:
        port = self.ports["ferretdb"]
        state = self.path("data", "ferretdb")
        pg_url = f"postgres://postgres@127.0.0.1:{self.ports['postgres']}/ferretdb"

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

    def _moto(self) -> Service:
        port = self.ports["moto"]

        def ready() -> bool:
            import requests

            return requests.get(f"http://127.0.0.1:{port}/moto-api/", timeout=1).ok

        endpoint = f"http://127.0.0.1:{port}"
        snapshots = self.path("data", "s3") if self.durable else None

        def after_start() -> None:
            self.provision_aws(endpoint, snapshots)

        def before_stop() -> None:
            from localstack.provision import snapshot

            if snapshots is not None:
                saved = snapshot(endpoint, snapshots)
                self.log(f"  s3 saved to {snapshots}: {saved}")

        # moto server, with its Step Functions engine signing its task calls with the stack's
        # credentials (devstack/moto_server.py): it sends Lambda tasks to
        # http://localhost:$MOTO_PORT, devstack's Invoke API, which refuses any other signer.
        argv = [sys.executable, "-m", "devstack.moto_server", "-H", "127.0.0.1", "-p", str(port)]
        env = {"MOTO_PORT": str(self.ports["gateway"]),
               "AWS_ACCESS_KEY_ID": self.access_key_id(),
               "AWS_SECRET_ACCESS_KEY": self.secret("aws-secret-access-key")}
        return Service("moto", argv, ready, env=env, after_start=after_start, before_stop=before_stop)

    def provision_aws(self, endpoint: str, snapshots: Path | None = None) -> None:
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
            self.log(f"  s3 restored from {snapshots}: {restored}")
        # The secrets the functions read (client_env names them), with this stack's values.
        env = self.client_env()
        values = {
            "JWT_SECRET_ARN": self.environ.get("JWT_SECRET") or self.secret("jwt-secret"),
            "SERVICE_TOKEN_SECRET_ARN": self.environ.get("SERVICE_TOKEN") or self.secret("service-token"),
            "PSEUDONYM_KEY_SECRET_ARN": self.environ.get("PSEUDONYM_KEY") or self.secret("pseudonym-key"),
            "DATABASE_SECRET_ARN": json.dumps({"url": env["DATABASE_URL"]}),
            "MONGO_SECRET_ARN": json.dumps({"url": env["MONGO_URL"]}),
            "ALPHAVANTAGE_SECRET_ARN": json.dumps(
                {"api_key": self.environ.get("ALPHAVANTAGE_API_KEY", "")}),
        }
        names = dict(SECRETS)
        if self.runs_redis():
            names.update(REDIS_SECRETS)
            values.update({"REDIS_AUTH_SECRET_ARN": self.redis_password("state"),
                           "CACHE_AUTH_SECRET_ARN": self.redis_password("cache")})
        provision_secrets(endpoint, {names[var]: value for var, value in values.items()},
                          region=env["AWS_DEFAULT_REGION"])

    def _opensearch(self) -> Service:
        """OpenSearch, the log store: one node on loopback (plain HTTP: this distribution has no
        security plugin), run as `opensearch` when we are root (it refuses to run as root)."""
        port = self.ports["opensearch"]
        url = f"http://127.0.0.1:{port}"
        home = opensearch_home()
        data, logs = self.path("data", "opensearch"), self.path("log", "opensearch")
        # Its own config folder: OpenSearch writes its keystore there, and the distribution's
        # jvm.options would write a GC log into its (read-only) home.
        conf, tmp = self.path("data", "opensearch-config"), self.path("run", "opensearch-tmp")
        user = "opensearch" if os.geteuid() == 0 else None

        def prepare() -> None:
            if not (home / "bin" / "opensearch").exists():
                raise ServiceError(f"OpenSearch is not installed at {home} (run devstack/bootstrap.sh)")
            for d in (data, logs, conf, tmp):
                d.mkdir(mode=0o700, parents=True, exist_ok=True)
            shutil.copyfile(home / "config" / "log4j2.properties", conf / "log4j2.properties")
            (conf / "opensearch.yml").write_text("# devstack/services.py passes every setting as -E\n")
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
            "transport.port": self.ports["opensearch-transport"],
            "path.data": data,
            "path.logs": logs,
        }
        argv = [str(home / "bin" / "opensearch")]
        for k, v in settings.items():
            argv += ["-E", f"{k}={v}"]
        env = {
            "OPENSEARCH_JAVA_HOME": stack_settings.OPENSEARCH_JAVA_HOME.read(self.environ)
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

    def _bind_host(self) -> str:
        """STOCKPRED_BIND_HOST: 0.0.0.0 inside a container (docker-compose.yml publishes the ports
        on the host's 127.0.0.1 only); loopback everywhere else."""
        return stack_settings.BIND_HOST.read(self.environ)

    def _template_server(self, name: str, module: str) -> Service:
        """One of devstack's servers of the template (the REST gateway, the WebSocket API), ready
        when its health endpoint answers."""
        port = self.ports[name]

        def ready() -> bool:
            import requests

            return requests.get(f"http://127.0.0.1:{port}/_devstack/health", timeout=1).ok

        argv = [sys.executable, "-m", module, "--host", self._bind_host(),
                "--port", str(port), "--template", str(served_template())]
        return Service(name, argv, ready, env=self.client_env(), ready_deadline_s=60)

    def _gateway(self) -> Service:
        return self._template_server("gateway", "devstack.gateway")

    def _websocket_api(self) -> Service:
        return self._template_server("websocket", "devstack.wsapi")

    # ---- lifecycle ----------------------------------------------------------------------
    def pid(self, name: str) -> int | None:
        """The PID of the stack's service `name` while it runs (from its pid file), else None."""
        try:
            pid = int(self.pidfile(name).read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def start(self, svc: Service) -> None:
        launched = self.launch(svc)
        if launched:
            self.await_ready(svc, *launched)

    def launch(self, svc: Service) -> tuple[subprocess.Popen, float] | None:
        """Starts the service's process (None if it runs already); `await_ready` waits for it."""
        if self.pid(svc.name):
            return None
        for d in ("run", "log", "data"):
            self.path(d).mkdir(parents=True, exist_ok=True)
        if svc.prepare:
            svc.prepare()
        logf = open(self.logfile(svc.name), "ab")  # noqa: SIM115 - handed to the child
        base = (self.environ if svc.inherit_env else
                {k: v for k, v in self.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ")})
        started = time.monotonic()
        proc = subprocess.Popen(
            svc.argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**base, **svc.env}, start_new_session=True,
            cwd=str(self.root), **run_as(svc.user),
        )
        logf.close()
        self.pidfile(svc.name).write_text(f"{proc.pid}\n")
        return proc, started

    def await_ready(self, svc: Service, proc: subprocess.Popen, started: float) -> None:
        if not wait_until(lambda: proc.poll() is None and svc.ready(), svc.ready_deadline_s):
            tail = self.logfile(svc.name).read_text(errors="replace")[-2000:]
            self.stop_pid(svc.name, proc.pid, svc.stop_signal)
            raise ServiceError(f"{svc.name} did not become ready in {svc.ready_deadline_s:.0f}s; "
                               f"log {self.logfile(svc.name)}:\n{tail}")
        if svc.after_start:
            svc.after_start()
        self.log(f"  {svc.name:<14} ready in {time.monotonic() - started:4.1f}s (pid {proc.pid})")

    def stop_pid(self, name: str, pid: int, sig: int, deadline_s: float = 20.0) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        if not wait_until(lambda: not pid_alive(pid), deadline_s):
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not pid_alive(pid), 5)
        # Reap it if it is our own child (tests start the stack in-process).
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        self.pidfile(name).unlink(missing_ok=True)

    def up(self) -> dict[str, str]:
        self.ensure_root()
        self.path("ports.json").write_text(json.dumps(self.ports, indent=2))
        env = self.client_env()
        write_private(self.path("env.json"), json.dumps(env, indent=2))  # holds secrets: 0600
        services = self.services()
        ext_aws = self.external().get("AWS_ENDPOINT_URL")
        if ext_aws and stack_settings.PROVISION_AWS.read(self.environ):
            # An emulator started for this stack elsewhere (docker-compose.yml's moto).
            self.provision_aws(ext_aws)
        # Slow starters boot while the others start; they are waited for last.
        launched = [(svc, self.launch(svc)) for svc in services if svc.slow_start]
        for svc in services:
            if not svc.slow_start:
                self.start(svc)
        for svc, started in launched:
            if started:
                self.await_ready(svc, *started)
        return env

    def down(self) -> None:
        for svc in reversed(self.services()):
            pid = self.pid(svc.name)
            if pid:
                if svc.before_stop:
                    try:
                        svc.before_stop()
                    except Exception as exc:
                        self.log(f"  {svc.name}: could not save state before stopping: {exc}")
                self.stop_pid(svc.name, pid, svc.stop_signal)
                self.log(f"  {svc.name:<14} stopped (pid {pid})")
            else:
                self.pidfile(svc.name).unlink(missing_ok=True)

    def status(self) -> list[tuple[str, str, int | None]]:
        rows: list[tuple[str, str, int | None]] = []
        for svc in self.services():
            pid = self.pid(svc.name)
            if pid is None:
                rows.append((svc.name, "stopped", None))
                continue
            try:
                ok = svc.ready()
            except Exception:
                ok = False
            rows.append((svc.name, "ready" if ok else "running, not answering", pid))
        for var, url in self.external().items():
            rows.append((f"{var} (external)", url, None))
        return rows


# What client_env holds that is a secret (the rest are addresses and the secrets' names).
SECRET_VARS = ("AWS_SECRET_ACCESS_KEY", "JWT_SECRET", "SERVICE_TOKEN", "PSEUDONYM_KEY",
               "ALPHAVANTAGE_API_KEY", "REDIS_PASSWORD", "CACHE_REDIS_PASSWORD")


def write_private(path: Path, text: str) -> None:
    """Writes `path` as a file only its owner can read: a new file created 0600 then renamed over
    the old one, so it is never readable by others, even for a moment or if it was before."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def redis_client(env: Mapping[str, str], url: str | None = None, *, port: int | None = None,
                 cache: bool = False, **kwargs: object) -> redis.Redis:
    """A client of the local stack's Redis from its environment (client_env, env.json): `url`
    (default REDIS_URL), or the process on 127.0.0.1:`port` (a replica, a Sentinel), with the
    state's password (REDIS_PASSWORD) or, `cache`, the cache's (CACHE_REDIS_PASSWORD), and TLS
    verified against REDIS_TLS_CA_FILE when there is one (the stack's own Redis speaks nothing
    else). `kwargs` go to redis.Redis (socket_timeout=...; password=None for none)."""
    import redis

    ca_file = env.get("REDIS_TLS_CA_FILE")
    options: dict[str, object] = {
        "password": env.get("CACHE_REDIS_PASSWORD" if cache else "REDIS_PASSWORD") or None}
    if port is not None:
        url = f"{'rediss' if ca_file else 'redis'}://127.0.0.1:{port}/0"
    url = url or env["REDIS_URL"]
    if ca_file and url.startswith("rediss://"):
        options["ssl_ca_certs"] = ca_file
    return redis.Redis.from_url(url, **{**options, **kwargs})


def _expires_soon(cert_file: Path) -> bool:
    import datetime as dt

    from cryptography import x509

    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    left = cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
    return left < dt.timedelta(days=TLS_RENEW_BEFORE_DAYS)


def _make_tls_files(files: dict[str, Path]) -> None:
    """A CA (kept, with its key, if there is one) and a server certificate it signs for
    127.0.0.1 and localhost: P-256 keys, written 0600."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def pem_key(key: ec.EllipticCurvePrivateKey) -> str:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()).decode()

    def pem(cert: x509.Certificate) -> str:
        return cert.public_bytes(serialization.Encoding.PEM).decode()

    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    if files["ca"].exists() and files["ca_key"].exists() and not _expires_soon(files["ca"]):
        ca_key = serialization.load_pem_private_key(files["ca_key"].read_bytes(), None)
        ca = x509.load_pem_x509_certificate(files["ca"].read_bytes())
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stockpred devstack CA")])
        ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
              .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now).not_valid_after(now + dt.timedelta(days=TLS_CA_DAYS))
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                           key_encipherment=False, data_encipherment=False,
                                           key_agreement=False, key_cert_sign=True, crl_sign=True,
                                           encipher_only=False, decipher_only=False), critical=True)
              .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                             critical=False)
              .sign(ca_key, hashes.SHA256()))
        write_private(files["ca_key"], pem_key(ca_key))
        files["ca"].write_text(pem(ca))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=TLS_SERVER_DAYS))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            # Replicas and Sentinels present it as clients too (tls-replication).
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    write_private(files["key"], pem_key(key))
    files["cert"].write_text(pem(cert))


def redacted(env: dict[str, str]) -> dict[str, str]:
    """client_env fit to print: every secret value replaced."""
    return {k: ("<secret: see env.json>" if k in SECRET_VARS else v) for k, v in env.items()}


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
