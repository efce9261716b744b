"""One stack's on-disk state and configuration (it starts nothing). A `StackState` is rooted
at a folder (`.local/` for `make run`, a temporary one for tests) that holds the services' pid
files, logs and data, ports.json (the ports it chose) and its secrets, each made at first use
and kept 0600: the AWS keys, the token secrets, the Redis passwords and the TLS files its Redis
processes serve. It knows the Redis topology (cache shards, replicas, Sentinels), which services
an environment variable points elsewhere (`external`), and the environment it gives clients
(`client_env`; `redacted` to print it, `redis_client` to connect with it).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from devstack import settings as stack_settings
from devstack.tls import expires_soon, make_tls_files, write_private

if TYPE_CHECKING:
    import redis


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


class StackState:
    """The local stack rooted at one folder: its layout, ports, secrets, and the environment its
    services give."""

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
        if not all(f.exists() for f in files.values()) or expires_soon(files["cert"]):
            self.ensure_root()
            folder.mkdir(mode=0o700, exist_ok=True)
            make_tls_files(files)
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


# What client_env holds that is a secret (the rest are addresses and the secrets' names).
SECRET_VARS = ("AWS_SECRET_ACCESS_KEY", "JWT_SECRET", "SERVICE_TOKEN", "PSEUDONYM_KEY",
               "ALPHAVANTAGE_API_KEY", "REDIS_PASSWORD", "CACHE_REDIS_PASSWORD")


def redacted(env: dict[str, str]) -> dict[str, str]:
    """client_env fit to print: every secret value replaced."""
    return {k: ("<secret: see env.json>" if k in SECRET_VARS else v) for k, v in env.items()}


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
