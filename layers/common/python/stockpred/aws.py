"""AWS clients (boto3), pointed at the emulator in local mode.

Locally every client goes to AWS_ENDPOINT_URL (moto server, or LocalStack where one answers);
boto3 also honours service-specific overrides such as AWS_ENDPOINT_URL_LAMBDA (devstack).
On AWS nothing is overridden and the function's role supplies credentials.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import boto3
from botocore.config import Config

from stockpred import config

_RETRIES = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=3, read_timeout=30)


@functools.cache
def client(service: str) -> Any:
    settings = config.load()
    kwargs: dict[str, Any] = {"config": _RETRIES,
                              "region_name": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")}
    specific = os.environ.get(f"AWS_ENDPOINT_URL_{service.upper()}")
    if specific:
        kwargs["endpoint_url"] = specific
    elif settings.local and settings.aws_endpoint_url:
        kwargs["endpoint_url"] = settings.aws_endpoint_url
    if settings.local:
        kwargs.setdefault("aws_access_key_id", os.environ.get("AWS_ACCESS_KEY_ID", "test"))
        kwargs.setdefault("aws_secret_access_key", os.environ.get("AWS_SECRET_ACCESS_KEY", "test"))
    return boto3.client(service, **kwargs)


def model_bucket() -> str:
    return os.environ.get("MODEL_BUCKET", "stockpred-models")
