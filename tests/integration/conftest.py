"""Fixtures the integration tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stockpred import config
from stockpred.cloud import secrets
from stockpred.stores import redis_stores


@pytest.fixture
def fresh(stack, monkeypatch) -> Iterator[pytest.MonkeyPatch]:
    """Settings, kept secrets and clients forgotten before and after the test."""
    def forget() -> None:
        config.load.cache_clear()
        secrets.cache_clear()
        redis_stores.state.cache_clear()
        redis_stores.cache_ring.cache_clear()
        redis_stores.sentinel.cache_clear()

    forget()
    yield monkeypatch
    monkeypatch.undo()
    forget()
