"""Settings declared once, read from the environment, checked once, documented from their
declarations; the secrets' JSON shapes turned into URLs."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from devstack import settings as stack_settings
from stockpred import config
from stockpred.cloud import secrets
from stockpred.config import ConfigError, from_environ
from stockpred.observability import metrics

AWS_ADDRESSES = {"STOCKPRED_ENV": "aws", "REDIS_URL": "rediss://state:6379/0",
                 "CACHE_REDIS_URLS": "rediss://cache:6379/0"}


@pytest.fixture(autouse=True)
def _fresh_settings():
    config.load.cache_clear()
    yield
    config.load.cache_clear()


def test_local_defaults_are_the_documented_ones():
    s = from_environ({})
    assert s.local and s.redis_url == "redis://127.0.0.1:56379/0"
    assert s.database_url == "postgresql://postgres@127.0.0.1:55432/stockpred"
    assert s.mongo_url == "mongodb://127.0.0.1:57017/"
    assert s.aws_endpoint_url == "http://127.0.0.1:4566"
    assert (s.quote_ttl_s, s.jwt_ttl_s, s.starting_cash_cents) == (60, 900, 10_000_000)
    assert (s.login_max_failures_per_email, s.login_max_failures_per_client,
            s.login_failure_window_s) == (5, 50, 900)
    assert (s.breaker_fail_max, s.breaker_reset_s, s.recovery_after_s) == (5, 60.0, 30.0)
    assert (s.ws_max_rooms_per_connection, s.ws_max_messages_per_second) == (50, 20)
    assert s.market_providers == ("alphavantage", "csv", "s3", "sample")
    assert not s.fault_injection and s.secrets_ttl_s == 300.0
    assert s.documentdb_ca_bundle_url == config.RDS_CA_BUNDLE_URL


@pytest.mark.parametrize("name", ["QUOTE_TTL_SECONDS", "JWT_TTL_SECONDS", "STARTING_CASH_CENTS",
                                  "LOGIN_MAX_FAILURES_PER_EMAIL", "LOGIN_FAILURE_WINDOW_SECONDS",
                                  "BREAKER_FAIL_MAX", "WS_MAX_ROOMS_PER_CONNECTION",
                                  "WS_MAX_MESSAGES_PER_SECOND"])
def test_a_non_integer_is_a_config_error_naming_the_variable(name):
    with pytest.raises(ConfigError, match=name):
        from_environ({name: "ten"})


@pytest.mark.parametrize("name, value", [("BREAKER_RESET_SECONDS", "soon"),
                                         ("RECOVERY_AFTER_SECONDS", "30s"),
                                         ("SECRETS_TTL_SECONDS", "-1"),
                                         ("REDIS_SENTINELS", "127.0.0.1:x"),
                                         ("CACHE_MODE", "ring"), ("LOG_LEVEL", "chatty")])
def test_other_malformed_values_name_their_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        from_environ({name: value})


@pytest.mark.parametrize("name", ["BREAKER_RESET_SECONDS", "RECOVERY_AFTER_SECONDS",
                                  "IDEMPOTENCY_CLAIM_SECONDS", "SECRETS_TTL_SECONDS"])
@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "1e999"])
def test_a_number_that_is_not_finite_is_a_config_error(name, value):
    """NaN compares false with any minimum, so it once passed every "at least" check."""
    with pytest.raises(ConfigError, match=name):
        from_environ({name: value})


def test_outside_local_mode_addresses_are_required_and_plain_secrets_are_not_read():
    with pytest.raises(ConfigError, match="REDIS_URL"):
        from_environ({"STOCKPRED_ENV": "aws"})
    s = from_environ({**AWS_ADDRESSES, "JWT_SECRET": "x" * 40, "DATABASE_URL": "postgresql://h/db",
                      "ALPHAVANTAGE_API_KEY": "k"})
    assert (s.jwt_secret, s.database_url, s.alphavantage_api_key, s.aws_endpoint_url) == (None,) * 4
    with pytest.raises(ConfigError, match="CACHE_CLUSTER_URL"):
        from_environ({**AWS_ADDRESSES, "CACHE_MODE": "cluster"})


def test_secret_values_stay_out_of_the_repr():
    s = from_environ({"JWT_SECRET": "jwt-value-" * 4, "SERVICE_TOKEN": "token-value",
                      "DATABASE_URL": "postgresql://u:db-password@h/db", "JWT_SECRET_ARN": "stockpred/jwt"})
    text = repr(s)
    assert "jwt-value" not in text and "token-value" not in text and "db-password" not in text
    assert "stockpred/jwt" in text


def test_load_is_read_once_until_cleared(monkeypatch):
    monkeypatch.setenv("QUOTE_TTL_SECONDS", "61")
    first = config.load()
    monkeypatch.setenv("QUOTE_TTL_SECONDS", "62")
    assert config.load() is first and first.quote_ttl_s == 61
    config.load.cache_clear()
    assert config.load().quote_ttl_s == 62


def test_service_endpoint_overrides():
    s = from_environ({"AWS_ENDPOINT_URL_LAMBDA": "http://127.0.0.1:3000"})
    assert s.aws_endpoint_for("lambda") == "http://127.0.0.1:3000"
    assert s.aws_endpoint_for("s3") == "http://127.0.0.1:4566"
    assert from_environ(AWS_ADDRESSES).aws_endpoint_for("s3") is None


# ---- secret shapes -------------------------------------------------------------------------------
def test_rds_secret_becomes_a_postgresql_url_with_quoted_credentials():
    url = secrets.database_url_from({"engine": "postgres", "username": "app", "password": "p@ss:w/rd?#%",
                                     "host": "db.cluster.rds.amazonaws.com", "port": 5432,
                                     "dbname": "stockpred"}, ca_file="/opt/rds ca.pem")
    parts = urlsplit(url)
    assert parts.scheme == "postgresql" and parts.hostname == "db.cluster.rds.amazonaws.com"
    assert parts.port == 5432 and parts.path == "/stockpred"
    # The stack's RDS has rds.force_ssl: verified TLS, against Amazon's RDS CA bundle.
    assert parse_qs(parts.query) == {"sslmode": ["verify-full"], "sslrootcert": ["/opt/rds ca.pem"]}
    assert unquote(parts.username) == "app" and unquote(parts.password) == "p@ss:w/rd?#%"
    assert secrets.database_url_from({"url": "postgresql://a:b@h:1/x"}) == "postgresql://a:b@h:1/x"


def test_documentdb_secret_becomes_a_tls_url_trusting_the_rds_bundle():
    password = "p@ss:w/rd?&=+ %"
    url = secrets.mongo_url_from({"username": "admin", "password": password,
                                  "host": "docdb.cluster.docdb.amazonaws.com", "port": 27017},
                                 ca_file="/tmp/rds-global-bundle.pem")
    parts = urlsplit(url)
    assert parts.scheme == "mongodb" and parts.hostname == "docdb.cluster.docdb.amazonaws.com"
    assert parts.port == 27017 and unquote(parts.password) == password
    assert url.count("@") == 1 and " " not in url  # quoted: the userinfo ends at the only '@'
    query = parse_qs(parts.query)
    assert query == {"tls": ["true"], "tlsCAFile": ["/tmp/rds-global-bundle.pem"], "replicaSet": ["rs0"],
                     "readPreference": ["primary"], "retryWrites": ["false"]}
    atlas = "mongodb+srv://u:p@cluster0.example.mongodb.net/?retryWrites=true"
    assert secrets.mongo_url_from({"url": atlas}) == atlas


def test_a_secret_missing_fields_is_a_config_error_without_its_values():
    with pytest.raises(ConfigError, match="host") as err:
        secrets.database_url_from({"username": "app", "password": "hunter2-secret"}, "stockpred/database")
    assert "hunter2" not in str(err.value)


@pytest.mark.parametrize("raw, expected", [(None, 1.0), ("0.5", 0.5), ("2", 2.0), ("4", 4.0)])
def test_max_exposure_defaults_to_no_leverage_and_allows_up_to_4x(raw, expected):
    assert from_environ({} if raw is None else {"MAX_EXPOSURE": raw}).max_exposure == expected


@pytest.mark.parametrize("raw", ["0", "-1", "4.5", "1e9", "inf", "nan", "one", ""])
def test_a_bad_max_exposure_is_named(raw):
    if raw == "":
        assert from_environ({"MAX_EXPOSURE": raw}).max_exposure == 1.0  # unset, as everywhere
        return
    with pytest.raises(ConfigError, match="MAX_EXPOSURE"):
        from_environ({"MAX_EXPOSURE": raw})


def test_the_on_demand_training_caps_default_to_20_an_hour_and_3_per_address():
    s = from_environ({})
    assert (s.train_on_demand_max_per_hour, s.train_on_demand_max_per_client_per_hour) == (20, 3)
    s = from_environ({"TRAIN_ON_DEMAND_MAX_PER_HOUR": "0", "TRAIN_ON_DEMAND_MAX_PER_CLIENT_PER_HOUR": "50"})
    assert (s.train_on_demand_max_per_hour, s.train_on_demand_max_per_client_per_hour) == (0, 50)


@pytest.mark.parametrize("name", ["TRAIN_ON_DEMAND_MAX_PER_HOUR", "TRAIN_ON_DEMAND_MAX_PER_CLIENT_PER_HOUR"])
@pytest.mark.parametrize("raw", ["-1", "nan", "NaN", "inf", "2.5", "ten", "100001"])
def test_a_bad_on_demand_training_cap_is_named(name, raw):
    with pytest.raises(ConfigError, match=name):
        from_environ({name: raw})


def test_a_training_lease_lasts_30_s_renewed_and_90_s_before_the_training_starts():
    s = from_environ({})
    assert (s.training_lease_s, s.training_first_lease_s) == (30.0, 90.0)
    s = from_environ({"TRAINING_LEASE_SECONDS": "1.5", "TRAINING_FIRST_LEASE_SECONDS": "900"})
    assert (s.training_lease_s, s.training_first_lease_s) == (1.5, 900.0)


@pytest.mark.parametrize("name", ["TRAINING_LEASE_SECONDS", "TRAINING_FIRST_LEASE_SECONDS"])
@pytest.mark.parametrize("raw", ["0", "0.5", "-1", "nan", "inf", "soon", "901"])
def test_a_bad_training_lease_is_named(name, raw):
    with pytest.raises(ConfigError, match=name):
        from_environ({name: raw})


# ---- settings declared once: the reference, the reads, the ranges --------------------------------
REPO = Path(__file__).resolve().parents[2]
READ_DIRS = ("layers", "functions", "devstack")
# A string literal read as an environment variable: os.environ.get("X"), os.environ["X"],
# getenv("X"), self.environ.get("X"), env.get("X") (an environment as a dict); f"X_{...}" reads a
# family (STOCKPRED_PORT_<NAME>).
LITERAL_READ = re.compile(r"""\b(?:environ|env|getenv)(?:\.get|\.setdefault|\.pop)?\s*[\[(]\s*"""
                          r"""(f?)["']([A-Za-z_][A-Za-z0-9_]*)(\{?)""")
# Variables read but not declared, each for a reason: none is a setting of this project.
NOT_SETTINGS = {
    "AWS_LAMBDA_FUNCTION_NAME": "set by Lambda (and devstack's runtime) in every function instance",
    "PYENV_ROOT": "pyenv's own variable: where devstack looks for pyenv's Python 3.13",
    "XDG_CACHE_HOME": "the XDG base directories' own: the default parent of STOCKPRED_CACHE_DIR",
    "STOCKPRED_API_URL": "written by the local stack into the environment it gives tools and tests "
                         "(the gateway's URL), read back from that dict: never a user's input",
}
DECLARATIONS = [*config.DECLARED.values(), *stack_settings.DECLARED]


def _declared(name: str) -> bool:
    return any(re.fullmatch(config.PLACEHOLDER.sub("[A-Z0-9_]+", s.env), name)
               for s in DECLARATIONS) or any(name in s.names() for s in DECLARATIONS)


def _literal_reads() -> dict[str, list[str]]:
    """Every variable name read as a string literal in the functions, the layers and devstack."""
    found: dict[str, list[str]] = {}
    for folder in READ_DIRS:
        for path in sorted((REPO / folder).rglob("*.py")):
            for lineno, line in enumerate(path.read_text().splitlines(), 1):
                for f_prefix, name, brace in LITERAL_READ.findall(line):
                    name = f"{name}<NAME>" if f_prefix and brace else name
                    found.setdefault(name, []).append(f"{path.relative_to(REPO)}:{lineno}")
    return found


def test_the_generated_reference_in_the_docs_is_the_declarations():
    page = stack_settings.REFERENCE.read_text()
    assert stack_settings.generated(page) == stack_settings.reference_markdown(), (
        "docs/configuration.md's tables differ from the settings' declarations "
        "(stockpred/config.py, devstack/settings.py): run `python -m devstack.settings --write`")
    for s in DECLARATIONS:
        assert f"| `{s.env}` |" in page and s.doc


def test_every_variable_read_is_declared_once():
    reads = _literal_reads()
    assert {"AWS_LAMBDA_FUNCTION_NAME", "STOCKPRED_HOME", "CORS_ORIGIN"} <= set(reads)  # the scan works
    undeclared = {name: where for name, where in reads.items()
                  if not _declared(name.replace("<NAME>", "X")) and name not in NOT_SETTINGS}
    assert not undeclared, (f"read but not declared: {undeclared}; declare each with setting(...) in "
                            "stockpred/config.py or in devstack/settings.py, or list it in NOT_SETTINGS")
    assert set(NOT_SETTINGS) <= set(reads), "NOT_SETTINGS lists a variable nothing reads any more"
    declared_twice = [e for e in {s.env for s in DECLARATIONS}
                      if sum(s.env == e for s in DECLARATIONS) > 1]
    assert not declared_twice
    for name in NOT_SETTINGS:
        assert not _declared(name), f"{name} is declared: drop it from NOT_SETTINGS"


class RecordingEnviron(dict):
    """An environment that notes every variable asked for."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self.asked.add(key)
        return super().__getitem__(key)


def test_the_reader_reads_every_declared_variable_and_nothing_else():
    environ = RecordingEnviron()
    from_environ(environ)
    declared = {name for s in config.DECLARED.values() for name in s.names()}
    assert environ.asked == declared
    environ = RecordingEnviron()
    for s in stack_settings.DECLARED:
        s.named("MOTO").read(environ)
    assert environ.asked - {"STOCKPRED_ENV"} == {s.named("MOTO").env for s in stack_settings.DECLARED}


def _as_text(value: Any) -> str | None:
    """A value as its variable would spell it; None where that spelling is not one string."""
    if value is None or (isinstance(value, tuple) and value and not isinstance(value[0], str)):
        return None
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


FIELD_OF = {s.env: name for name, s in config.DECLARED.items()}


def _read(s: config.Setting, environ: dict[str, str]) -> Any:
    """The value of one declaration in `environ`: through from_environ for the functions' settings."""
    if s.env in FIELD_OF:
        return getattr(from_environ(environ), FIELD_OF[s.env])
    return s.read(environ)


@pytest.mark.parametrize("s", DECLARATIONS, ids=[s.env for s in DECLARATIONS])
def test_every_declared_setting_round_trips(s):
    if s.kind != "endpoints" and config.PLACEHOLDER.search(s.env):
        s = s.named("MOTO")  # one of a family: STOCKPRED_PORT_MOTO
    expected = s.default if s.local_default is None else s.local_default
    assert _read(s, {}) == expected  # the declared default is what an empty environment gives
    if (text := _as_text(expected)) is not None:
        assert _read(s, {s.env: text}) == expected  # and spelt out, it reads back the same
    if s.kind in ("integer", "number"):
        if s.minimum is not None:
            assert _read(s, {s.env: str(s.minimum)}) == s.minimum
            with pytest.raises(ConfigError, match=s.env):
                _read(s, {s.env: str(s.minimum - 1)})
        if s.maximum is not None:
            assert _read(s, {s.env: str(s.maximum)}) == s.maximum
            with pytest.raises(ConfigError, match=s.env):
                _read(s, {s.env: str(s.maximum + 1)})
        with pytest.raises(ConfigError, match=s.env):
            _read(s, {s.env: "ten"})
    if s.kind == "choice":
        with pytest.raises(ConfigError, match=s.env):
            _read(s, {s.env: "no-such-choice"})


def test_the_plain_stand_ins_for_secrets_are_local_only_and_out_of_the_repr():
    for f in dataclasses.fields(config.Settings):
        s = f.metadata["setting"]
        if s.local_only:
            assert not f.repr and f.default is None, s.env
    aws = from_environ({**AWS_ADDRESSES, **{s.env: "x" for s in config.DECLARED.values() if s.local_only}})
    assert all(getattr(aws, name) is None for name, s in config.DECLARED.items() if s.local_only)


def test_the_metric_namespace_is_read_at_each_line(monkeypatch):
    monkeypatch.setenv("METRICS_NAMESPACE", "stockpred/one")
    assert metrics.namespace() == "stockpred/one"
    monkeypatch.setenv("METRICS_NAMESPACE", "")
    assert metrics.namespace() == "stockpred"
