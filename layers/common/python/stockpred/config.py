"""Settings: every environment variable the functions read, typed, checked once per process.

Local mode (STOCKPRED_ENV=local, the default) points at the services `stockpred services up`
starts; any other mode refuses to run on a default where an address is needed.

Secrets are not settings: a function gets only the name (ARN) of each secret, `*_SECRET_ARN`,
and reads its value through `stockpred.secrets` (Secrets Manager, cached with a TTL). Only in
local mode, when no ARN is given, the old plain variables (JWT_SECRET, SERVICE_TOKEN,
PSEUDONYM_KEY, DATABASE_URL, MONGO_URL, ALPHAVANTAGE_API_KEY, ORIGIN_VERIFY_SECRET) stand in
for them; they are read here and are never part of a Settings' repr.

`load()` reads and checks the environment once per process; tests that change the environment
call `load.cache_clear()`.
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOCAL = "local"
DEFAULT_TRADE_STATE_MACHINE_ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:TradeStateMachine"
RDS_CA_BUNDLE_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"
# AWS_ENDPOINT_URL_<SERVICE> overrides aws.client honours (boto3 reads its own spelling too).
AWS_SERVICES = ("s3", "lambda", "stepfunctions", "secretsmanager", "apigatewaymanagementapi", "sts",
                "cloudwatch")
CACHE_MODES = ("shards", "cluster")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(RuntimeError):
    """A required setting is missing outside local mode, or a setting is malformed."""


@dataclass(frozen=True, kw_only=True)
class Settings:
    env: str = LOCAL
    home: Path = Path(".local")
    log_level: str = "INFO"

    # ---- Redis: state and cache -----------------------------------------------------------
    redis_url: str = "redis://127.0.0.1:56379/0"
    cache_redis_urls: tuple[str, ...] = ("redis://127.0.0.1:56380/0",)
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    state_service: str = "state"
    cache_shards: tuple[str, ...] = ()
    cache_mode: str = "shards"
    cache_cluster_url: str | None = None
    # Their AUTH tokens are secrets (stockpred.secrets.redis_auth_token / cache_auth_token): the
    # URLs carry none. No ARN: no password, except in local mode, where REDIS_PASSWORD and
    # CACHE_REDIS_PASSWORD may give one (a developer's own Redis may need none).
    redis_auth_secret_arn: str | None = None
    cache_auth_secret_arn: str | None = None
    redis_password: str | None = field(default=None, repr=False)
    cache_redis_password: str | None = field(default=None, repr=False)
    # The CA that signs the Redis servers' certificates, for rediss:// (and Sentinels when
    # REDIS_URL is rediss://): devstack's own CA locally. Unset (AWS): the system's trust store,
    # which verifies ElastiCache's certificates.
    redis_tls_ca_file: str | None = None

    # ---- MongoDB, AWS ----------------------------------------------------------------------
    mongo_db: str = "stockpred"
    aws_region: str = "us-east-1"
    aws_endpoint_url: str | None = None
    aws_service_endpoints: tuple[tuple[str, str], ...] = ()
    aws_access_key_id: str = field(default="test", repr=False)
    aws_secret_access_key: str = field(default="test", repr=False)
    model_bucket: str = "stockpred-models"
    warehouse_bucket: str = "stockpred-warehouse"
    price_data_bucket: str = "stockpred-market-data"
    trade_state_machine_arn: str = DEFAULT_TRADE_STATE_MACHINE_ARN

    # ---- market data -----------------------------------------------------------------------
    market_providers: tuple[str, ...] = ("alphavantage", "csv", "s3", "sample")
    alphavantage_base_url: str = "https://www.alphavantage.co"
    quote_ttl_s: int = 60
    breaker_fail_max: int = 5
    breaker_reset_s: float = 60.0

    # ---- users, accounts, trades -----------------------------------------------------------
    jwt_ttl_s: int = 900
    starting_cash_cents: int = 10_000_000
    login_max_failures_per_email: int = 5
    login_max_failures_per_client: int = 50
    login_failure_window_s: int = 900
    # Slower, per account whatever the address: after this many failures within the window (which
    # each failure extends), each attempt waits 1 s, 2 s, 4 s ... up to the max delay; addresses
    # that signed in to the account before are exempt (see stockpred.users).
    login_account_free_failures: int = 10
    login_account_window_s: int = 3600
    login_account_max_delay_s: int = 120
    login_known_client_s: int = 30 * 86400
    # Device tokens (OWASP device cookies): a successful login gives the device a signed token;
    # attempts that present it are counted per token (this many failures, then that token is
    # locked for the failure window), not per address (see stockpred.devices).
    login_device_token_s: int = 30 * 86400
    login_max_failures_per_device: int = 5
    # Registrations (an argon2 hash each) per client address per window: sized so that the test
    # suite, which registers ~100 users from 127.0.0.1, fits with room to spare.
    register_max_per_client: int = 300
    register_window_s: int = 3600
    recovery_after_s: float = 30.0
    fault_injection: bool = False
    # An Idempotency-Key's claim lasts this long until its trade's execution has started (then a
    # day): a request that dies in between blocks retries with that key for seconds only.
    idempotency_claim_s: float = 10.0
    # IAM roles (ARNs) whose API Gateway-verified identity may write the ledger (/store) without
    # the service token; ignored in local mode, where nothing verifies an identity.
    service_role_arns: tuple[str, ...] = ()

    # ---- predictions and training ----------------------------------------------------------
    model_kind: str = "logreg"
    min_train_days: int = 504
    record_refit_every: int = 21
    train_on_demand: bool = True
    # Trainings that requests for symbols without a model may start (stockpred.training_budget),
    # per fixed hour: all of them together, and from one client address. A symbol that has a
    # model, or whose training already runs, costs nothing.
    train_on_demand_max_per_hour: int = 20
    train_on_demand_max_per_client_per_hour: int = 3
    # The lease a training holds on its symbol (stockml.signals): the retrain function renews it
    # every third of TRAINING_LEASE_SECONDS while it trains, so a training that was killed (timeout,
    # out of memory, `make stop`) frees its symbol within that. The first lease, taken by the
    # request that starts the training, lasts TRAINING_FIRST_LEASE_SECONDS: long enough for the
    # asynchronous invoke to be queued and the retrain function (2 GB, scikit-learn) to start cold.
    training_lease_s: float = 30.0
    training_first_lease_s: float = 90.0
    # Largest exposure a model's sizing may recommend: 1.0 holds at most all of one's capital;
    # above 1 is leverage, up to MAX_LEVERAGE.
    max_exposure: float = 1.0
    train_function_name: str = "RetrainFunction"
    retrain_symbols: tuple[str, ...] = ()

    # ---- WebSocket API ---------------------------------------------------------------------
    ws_management_url: str | None = None
    ws_max_rooms_per_connection: int = 50
    ws_max_messages_per_second: int = 20
    # Pushes leave the request path: publishers put an event on this SQS queue and the fan-out
    # function delivers it (None: nothing is pushed). A room larger than ws_push_chunk is split
    # into chunks the fan-out function's parallel invocations deliver, ws_push_threads at a time.
    push_queue_url: str | None = None
    ws_push_chunk: int = 250
    ws_push_threads: int = 16

    # ---- HTTP API: the dashboard's origin, the only one CORS answers for (None: CORS off) -----
    cors_origin: str | None = None

    # ---- centralised logs: the OpenSearch store, the shipper's dead letters, retention ---------
    # None: no log store (lines stay in CloudWatch Logs / local files). An https URL on AWS is
    # signed with the function's role (SigV4, service `es`); locally it is plain http.
    opensearch_url: str | None = None
    log_index_prefix: str = "stockpred-logs"
    metric_index_prefix: str = "stockpred-metrics"  # metric lines' daily indices (stockpred.metrics)
    # The stack's CloudWatch alarms are those whose names start so (stockpred.alarms); CloudFormation
    # names an alarm `<stack>-<logical id>-<suffix>`, devstack `local-<logical id>`.
    alarm_name_prefix: str = "local-"
    log_dead_letter_bucket: str = "stockpred-log-dead-letters"
    log_retention_days: int = 14
    log_search_max: int = 1000

    # ---- secrets: where they are (Secrets Manager), and how long a value is reused ------------
    jwt_secret_arn: str | None = None
    service_token_secret_arn: str | None = None
    pseudonym_key_secret_arn: str | None = None
    alphavantage_secret_arn: str | None = None
    database_secret_arn: str | None = None
    mongo_secret_arn: str | None = None
    # CloudFront's secret origin header (X-Origin-Verify): when set, the REST API answers only
    # requests that carry it (stockpred.handlers); None: every request, as before.
    origin_verify_secret_arn: str | None = None
    secrets_ttl_s: float = 300.0
    documentdb_ca_bundle_url: str = RDS_CA_BUNDLE_URL

    # ---- local mode only: the plain values that stand in for secrets without an ARN -----------
    database_url: str | None = field(default=None, repr=False)
    mongo_url: str | None = field(default=None, repr=False)
    jwt_secret: str | None = field(default=None, repr=False)
    service_token: str | None = field(default=None, repr=False)
    pseudonym_key: str | None = field(default=None, repr=False)
    alphavantage_api_key: str | None = field(default=None, repr=False)
    origin_verify_secret: str | None = field(default=None, repr=False)

    @property
    def local(self) -> bool:
        return self.env == LOCAL

    def aws_endpoint_for(self, service: str) -> str | None:
        """AWS_ENDPOINT_URL_<SERVICE> if given, else AWS_ENDPOINT_URL in local mode."""
        specific = dict(self.aws_service_endpoints).get(service)
        if specific:
            return specific
        return self.aws_endpoint_url if self.local else None


def _split(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


class _Reader:
    """Reads variables from one environment; every failure is a ConfigError naming the variable."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.env = environ.get("STOCKPRED_ENV") or LOCAL
        self.local = self.env == LOCAL

    def text(self, name: str, default: str | None = None) -> str | None:
        value = self.environ.get(name, "").strip()
        return value or default

    def required(self, name: str, local_default: str) -> str:
        """An address: the local default in local mode, else it must be given."""
        value = self.text(name)
        if value:
            return value
        if self.local:
            return local_default
        raise ConfigError(f"{name} must be set outside local mode")

    def local_only(self, name: str, local_default: str | None = None) -> str | None:
        """A plain stand-in for a secret: read in local mode only, never elsewhere."""
        return self.text(name, local_default) if self.local else None

    def integer(self, name: str, default: int, minimum: int | None = None,
                maximum: int | None = None) -> int:
        return self._parsed(name, default, int, "an integer", minimum, maximum)

    def number(self, name: str, default: float, minimum: float | None = None,
               maximum: float | None = None) -> float:
        return self._parsed(name, default, float, "a finite number", minimum, maximum)

    def _parsed(self, name: str, default: Any, kind: type, what: str, minimum: Any,
                maximum: Any) -> Any:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = kind(raw)
        except ValueError:
            raise ConfigError(f"{name} must be {what}, not {raw!r}") from None
        if not math.isfinite(value):  # "nan" and "inf" parse as floats
            raise ConfigError(f"{name} must be {what}, not {raw!r}")
        if minimum is not None and value < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, not {value}")
        if maximum is not None and value > maximum:
            raise ConfigError(f"{name} must be at most {maximum}, not {value}")
        return value

    def items(self, name: str, default: str = "") -> tuple[str, ...]:
        """A comma-separated list."""
        return _split(self.text(name, default) or "")

    def choice(self, name: str, default: str, choices: tuple[str, ...],
               normalise: Callable[[str], str] = lambda v: v) -> str:
        value = normalise(self.text(name, default) or default)
        if value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
        return value

    def addresses(self, name: str) -> tuple[tuple[str, int], ...]:
        out = []
        for address in self.items(name):
            host, _, port = address.rpartition(":")
            try:
                out.append((host, int(port)))
            except ValueError:
                raise ConfigError(f"{name} must list host:port addresses, not {address!r}") from None
            if not host:
                raise ConfigError(f"{name} must list host:port addresses, not {address!r}")
        return tuple(out)


ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?")


def _origin(value: str | None) -> str | None:
    """CORS_ORIGIN: one exact origin (scheme://host[:port]), never `*`, a list or a path."""
    if value is None:
        return None
    value = value.rstrip("/")
    if not ORIGIN.fullmatch(value):
        raise ConfigError(f"CORS_ORIGIN must be one origin like https://dashboard.example.com, not {value!r}")
    return value


# The range of MAX_EXPOSURE (and of `stockpred train|evaluate --max-exposure`): above 1 is leverage.
MIN_EXPOSURE = 0.01
MAX_LEVERAGE = 4.0
# The largest TRAIN_ON_DEMAND_MAX_*_PER_HOUR (0 lets requests start no training at all).
MAX_TRAININGS_PER_HOUR = 100_000
# The longest training lease: the retrain function's Timeout (900 s), which no training outlives.
MAX_TRAINING_LEASE_S = 900.0


def log_level(environ: Mapping[str, str] | None = None) -> str:
    """LOG_LEVEL alone: loggers are made at import time, before the rest may be read."""
    return _Reader(os.environ if environ is None else environ).choice(
        "LOG_LEVEL", "INFO", LOG_LEVELS, normalise=str.upper)


def from_environ(environ: Mapping[str, str]) -> Settings:
    """The settings an environment gives, checked; ConfigError names the first bad variable."""
    r = _Reader(environ)
    cache_mode = r.choice("CACHE_MODE", "shards", CACHE_MODES)
    cache_cluster_url = r.text("CACHE_CLUSTER_URL")
    if cache_mode == "cluster" and not cache_cluster_url:
        raise ConfigError("CACHE_CLUSTER_URL must be set when CACHE_MODE is cluster")
    return Settings(
        env=r.env,
        home=Path(r.text("STOCKPRED_HOME", ".local") or ".local"),
        log_level=log_level(environ),
        redis_url=r.required("REDIS_URL", "redis://127.0.0.1:56379/0"),
        cache_redis_urls=_split(r.required("CACHE_REDIS_URLS", "redis://127.0.0.1:56380/0")),
        redis_sentinels=r.addresses("REDIS_SENTINELS"),
        state_service=r.text("REDIS_STATE_SERVICE", "state") or "state",
        cache_shards=r.items("CACHE_SHARDS"),
        cache_mode=cache_mode,
        cache_cluster_url=cache_cluster_url,
        redis_auth_secret_arn=r.text("REDIS_AUTH_SECRET_ARN"),
        cache_auth_secret_arn=r.text("CACHE_AUTH_SECRET_ARN"),
        redis_password=r.local_only("REDIS_PASSWORD"),
        cache_redis_password=r.local_only("CACHE_REDIS_PASSWORD"),
        redis_tls_ca_file=r.text("REDIS_TLS_CA_FILE"),
        mongo_db=r.text("MONGO_DB", "stockpred") or "stockpred",
        aws_region=r.text("AWS_DEFAULT_REGION", "us-east-1") or "us-east-1",
        aws_endpoint_url=r.text("AWS_ENDPOINT_URL", "http://127.0.0.1:4566" if r.local else None),
        aws_service_endpoints=tuple(
            (service, url) for service in AWS_SERVICES
            if (url := r.text(f"AWS_ENDPOINT_URL_{service.upper()}"))),
        aws_access_key_id=r.text("AWS_ACCESS_KEY_ID", "test") or "test",
        aws_secret_access_key=r.text("AWS_SECRET_ACCESS_KEY", "test") or "test",
        model_bucket=r.text("MODEL_BUCKET", "stockpred-models") or "stockpred-models",
        warehouse_bucket=r.text("WAREHOUSE_BUCKET", "stockpred-warehouse") or "stockpred-warehouse",
        price_data_bucket=r.text("PRICE_DATA_BUCKET", "stockpred-market-data") or "",
        trade_state_machine_arn=r.text("TRADE_STATE_MACHINE_ARN", DEFAULT_TRADE_STATE_MACHINE_ARN)
        or DEFAULT_TRADE_STATE_MACHINE_ARN,
        market_providers=r.items("MARKET_PROVIDERS", "alphavantage,csv,s3,sample"),
        alphavantage_base_url=(r.text("ALPHAVANTAGE_BASE_URL") or "https://www.alphavantage.co").rstrip("/"),
        quote_ttl_s=r.integer("QUOTE_TTL_SECONDS", 60, minimum=1),
        breaker_fail_max=r.integer("BREAKER_FAIL_MAX", 5, minimum=1),
        breaker_reset_s=r.number("BREAKER_RESET_SECONDS", 60.0, minimum=0),
        jwt_ttl_s=r.integer("JWT_TTL_SECONDS", 900, minimum=1),
        starting_cash_cents=r.integer("STARTING_CASH_CENTS", 10_000_000, minimum=0),
        login_max_failures_per_email=r.integer("LOGIN_MAX_FAILURES_PER_EMAIL", 5, minimum=1),
        login_max_failures_per_client=r.integer("LOGIN_MAX_FAILURES_PER_CLIENT", 50, minimum=1),
        login_failure_window_s=r.integer("LOGIN_FAILURE_WINDOW_SECONDS", 900, minimum=1),
        login_account_free_failures=r.integer("LOGIN_ACCOUNT_FREE_FAILURES", 10, minimum=1),
        login_account_window_s=r.integer("LOGIN_ACCOUNT_WINDOW_SECONDS", 3600, minimum=1),
        login_account_max_delay_s=r.integer("LOGIN_ACCOUNT_MAX_DELAY_SECONDS", 120, minimum=1),
        login_known_client_s=r.integer("LOGIN_KNOWN_CLIENT_SECONDS", 30 * 86400, minimum=0),
        # Browsers cap a cookie's Max-Age at 400 days.
        login_device_token_s=r.integer("LOGIN_DEVICE_TOKEN_SECONDS", 30 * 86400, minimum=60,
                                       maximum=400 * 86400),
        login_max_failures_per_device=r.integer("LOGIN_MAX_FAILURES_PER_DEVICE", 5, minimum=1,
                                                maximum=100),
        register_max_per_client=r.integer("REGISTER_MAX_PER_CLIENT", 300, minimum=1),
        register_window_s=r.integer("REGISTER_WINDOW_SECONDS", 3600, minimum=1),
        recovery_after_s=r.number("RECOVERY_AFTER_SECONDS", 30.0, minimum=0),
        fault_injection=r.text("FAULT_INJECTION", "off") == "on",
        idempotency_claim_s=r.number("IDEMPOTENCY_CLAIM_SECONDS", 10.0, minimum=1),
        service_role_arns=r.items("SERVICE_ROLE_ARNS"),
        model_kind=r.choice("MODEL_KIND", "logreg", ("logreg", "hgb")),
        min_train_days=r.integer("MIN_TRAIN_DAYS", 504, minimum=50),
        record_refit_every=r.integer("RECORD_REFIT_EVERY", 21, minimum=1),
        train_on_demand=r.choice("TRAIN_ON_DEMAND", "on", ("on", "off")) == "on",
        train_on_demand_max_per_hour=r.integer("TRAIN_ON_DEMAND_MAX_PER_HOUR", 20, minimum=0,
                                               maximum=MAX_TRAININGS_PER_HOUR),
        train_on_demand_max_per_client_per_hour=r.integer(
            "TRAIN_ON_DEMAND_MAX_PER_CLIENT_PER_HOUR", 3, minimum=0, maximum=MAX_TRAININGS_PER_HOUR),
        training_lease_s=r.number("TRAINING_LEASE_SECONDS", 30.0, minimum=1,
                                  maximum=MAX_TRAINING_LEASE_S),
        training_first_lease_s=r.number("TRAINING_FIRST_LEASE_SECONDS", 90.0, minimum=1,
                                        maximum=MAX_TRAINING_LEASE_S),
        max_exposure=r.number("MAX_EXPOSURE", 1.0, minimum=MIN_EXPOSURE, maximum=MAX_LEVERAGE),
        train_function_name=r.text("TRAIN_FUNCTION_NAME", "RetrainFunction") or "RetrainFunction",
        retrain_symbols=tuple(s.upper() for s in r.items("RETRAIN_SYMBOLS")),
        ws_management_url=r.text("WS_MANAGEMENT_URL"),
        ws_max_rooms_per_connection=r.integer("WS_MAX_ROOMS_PER_CONNECTION", 50, minimum=1),
        ws_max_messages_per_second=r.integer("WS_MAX_MESSAGES_PER_SECOND", 20, minimum=1),
        push_queue_url=r.text("PUSH_QUEUE_URL"),
        ws_push_chunk=r.integer("WS_PUSH_CHUNK", 250, minimum=1),
        ws_push_threads=r.integer("WS_PUSH_THREADS", 16, minimum=1),
        cors_origin=_origin(r.text("CORS_ORIGIN")),
        opensearch_url=(r.text("OPENSEARCH_URL") or "").rstrip("/") or None,
        log_index_prefix=r.text("LOG_INDEX_PREFIX", "stockpred-logs") or "stockpred-logs",
        metric_index_prefix=r.text("METRIC_INDEX_PREFIX", "stockpred-metrics") or "stockpred-metrics",
        alarm_name_prefix=r.text("ALARM_NAME_PREFIX", "local-") or "local-",
        log_dead_letter_bucket=r.text("LOG_DEAD_LETTER_BUCKET", "stockpred-log-dead-letters")
        or "stockpred-log-dead-letters",
        log_retention_days=r.integer("LOG_RETENTION_DAYS", 14, minimum=1),
        log_search_max=r.integer("LOG_SEARCH_MAX", 1000, minimum=1),
        jwt_secret_arn=r.text("JWT_SECRET_ARN"),
        service_token_secret_arn=r.text("SERVICE_TOKEN_SECRET_ARN"),
        pseudonym_key_secret_arn=r.text("PSEUDONYM_KEY_SECRET_ARN"),
        alphavantage_secret_arn=r.text("ALPHAVANTAGE_SECRET_ARN"),
        database_secret_arn=r.text("DATABASE_SECRET_ARN"),
        mongo_secret_arn=r.text("MONGO_SECRET_ARN"),
        origin_verify_secret_arn=r.text("ORIGIN_VERIFY_SECRET_ARN"),
        secrets_ttl_s=r.number("SECRETS_TTL_SECONDS", 300.0, minimum=0),
        documentdb_ca_bundle_url=r.text("DOCUMENTDB_CA_BUNDLE_URL", RDS_CA_BUNDLE_URL) or RDS_CA_BUNDLE_URL,
        database_url=r.local_only("DATABASE_URL", "postgresql://postgres@127.0.0.1:55432/stockpred"),
        mongo_url=r.local_only("MONGO_URL", "mongodb://127.0.0.1:57017/"),
        jwt_secret=r.local_only("JWT_SECRET"),
        service_token=r.local_only("SERVICE_TOKEN"),
        pseudonym_key=r.local_only("PSEUDONYM_KEY"),
        alphavantage_api_key=r.local_only("ALPHAVANTAGE_API_KEY"),
        origin_verify_secret=r.local_only("ORIGIN_VERIFY_SECRET"),
    )


@functools.cache
def load() -> Settings:
    """This process's settings, read and checked on first use and kept (a warm function reuses
    them). Tests that change the environment call `load.cache_clear()`."""
    return from_environ(os.environ)
