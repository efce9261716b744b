"""AWS clients (boto3), every one built here, pointed at the emulator in local mode.

Locally every client goes to AWS_ENDPOINT_URL (moto server, or LocalStack where one answers),
or to a service-specific override such as AWS_ENDPOINT_URL_LAMBDA (devstack).
On AWS nothing is overridden and the function's role supplies credentials.
"""

from __future__ import annotations

import functools
from typing import Any

import boto3
from botocore.config import Config

from stockpred import config

_RETRIES = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=3, read_timeout=30)


def _build(service: str, endpoint_url: str | None, client_config: Config) -> Any:
    settings = config.load()
    kwargs: dict[str, Any] = {"config": client_config, "region_name": settings.aws_region}
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
    if settings.local:
        kwargs["aws_access_key_id"] = settings.aws_access_key_id
        kwargs["aws_secret_access_key"] = settings.aws_secret_access_key
    return boto3.client(service, **kwargs)


@functools.cache
def client(service: str) -> Any:
    """This process's client of one AWS service (boto3 clients are thread-safe)."""
    return _build(service, config.load().aws_endpoint_for(service), _RETRIES)


def model_bucket() -> str:
    return config.load().model_bucket
