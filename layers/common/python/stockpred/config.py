"""Settings, each from an environment variable with a working local default.

Local mode (STOCKPRED_ENV=local, the default) points at the services `stockpred services up`
starts; any other mode refuses to run on a default where a secret or an address is needed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


class ConfigError(RuntimeError):
    """A required setting is missing outside local mode."""


def _env(name: str, local_default: str | None = None) -> str:
    value = os.environ.get(name)
    if value:
        return value
    if os.environ.get("STOCKPRED_ENV", "local") == "local" and local_default is not None:
        return local_default
    raise ConfigError(f"{name} must be set outside local mode")


@dataclass(frozen=True)
class Settings:
    env: str
    database_url: str
    redis_url: str
    cache_redis_urls: tuple[str, ...]
    mongo_url: str
    aws_endpoint_url: str | None
    market_providers: tuple[str, ...]
    alphavantage_api_key: str | None
    alphavantage_base_url: str
    quote_ttl_s: int
    home: Path
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    state_service: str = "state"
    cache_shards: tuple[str, ...] = ()

    @property
    def local(self) -> bool:
        return self.env == "local"


def load() -> Settings:
    env = os.environ.get("STOCKPRED_ENV", "local")
    redis_url = _env("REDIS_URL", "redis://127.0.0.1:56379/0")
    return Settings(
        env=env,
        database_url=_env("DATABASE_URL", "postgresql://postgres@127.0.0.1:55432/stockpred"),
        redis_url=redis_url,
        cache_redis_urls=tuple(
            u.strip()
            for u in _env("CACHE_REDIS_URLS", "redis://127.0.0.1:56380/0").split(",")
            if u.strip()
        ),
        mongo_url=_env("MONGO_URL", "mongodb://127.0.0.1:57017/"),
        aws_endpoint_url=os.environ.get("AWS_ENDPOINT_URL")
        or ("http://127.0.0.1:4566" if env == "local" else None),
        market_providers=tuple(
            p.strip()
            for p in os.environ.get("MARKET_PROVIDERS", "alphavantage,csv,sample").split(",")
            if p.strip()
        ),
        alphavantage_api_key=os.environ.get("ALPHAVANTAGE_API_KEY") or None,
        alphavantage_base_url=os.environ.get(
            "ALPHAVANTAGE_BASE_URL", "https://www.alphavantage.co"
        ).rstrip("/"),
        quote_ttl_s=int(os.environ.get("QUOTE_TTL_SECONDS", "60")),
        home=Path(os.environ.get("STOCKPRED_HOME", ".local")),
        redis_sentinels=tuple(
            (host, int(port))
            for host, _, port in (a.strip().rpartition(":")
                                  for a in os.environ.get("REDIS_SENTINELS", "").split(",") if a.strip())
        ),
        state_service=os.environ.get("REDIS_STATE_SERVICE", "state"),
        cache_shards=tuple(s.strip() for s in os.environ.get("CACHE_SHARDS", "").split(",") if s.strip()),
    )
