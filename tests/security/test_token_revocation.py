"""Ended tokens stay ended when the state Redis loses its data (issue 24).

Token versions and revoked token ids used to live on the state Redis alone, which replicates
asynchronously: a failover that lost a password change's increment brought the old token back
(401, then 200 again). They live in MongoDB now (stockpred.identity.auth); each test deletes whatever the
state Redis may hold of them, as a failover or a flush would, and the ended token stays 401.
Behaviour through HTTP against devstack; the expiry of a revocation record in-process.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

PASSWORD = "Quiet-harbour-lantern-71"
NEW_PASSWORD = "Amber-meadow-compass-58"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def profile(gateway, token: str):
    return gateway.get("/api/users/profile", headers=bearer(token))


def login(gateway, email: str, password: str) -> str:
    r = gateway.post("/api/users/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    return r.json()["token"]


def assert_401(r) -> None:
    assert r.status_code == 401, r.text
    assert r.json() == {"error": "Invalid or missing token"}


def lose_redis_token_state(state, user_id: str, jti: str | None = None) -> None:
    """What a failover that lost the latest writes would leave: no token version, no revoked jti
    (the keys the old code kept; whatever else there is of them)."""
    keys = [f"stockpred:token-version:{user_id}", *state.scan_iter("stockpred:revoked-jti:*")]
    if jti is not None:
        keys.append(f"stockpred:revoked-jti:{jti}")
    state.delete(*keys)
    assert not any(state.exists(k) for k in keys)


def test_a_password_change_ends_older_tokens_even_when_redis_loses_everything(gateway, db, state):
    from stockpred.identity import auth

    user = gateway.new_user(password=PASSWORD)
    other = login(gateway, user.email, PASSWORD)
    r = gateway.post("/api/users/password", headers=bearer(user.token),
                     json={"current_password": PASSWORD, "new_password": NEW_PASSWORD})
    assert r.status_code == 200, r.text
    assert db.users.find_one({"_id": user.user_id})["token_version"] == 1
    lose_redis_token_state(state, user.user_id)
    for old in (user.token, other):
        assert_401(profile(gateway, old))
        assert_401(gateway.get("/api/users/portfolio", headers=bearer(old)))
        assert_401(gateway.post("/api/users/logout", headers=bearer(old)))
    # A token issued after the change carries the new version and works, before and after a loss.
    fresh = login(gateway, user.email, NEW_PASSWORD)
    assert auth.verify(fresh)["tv"] == 1
    assert profile(gateway, fresh).json()["user_id"] == user.user_id
    lose_redis_token_state(state, user.user_id)
    assert profile(gateway, fresh).status_code == 200
    assert_401(profile(gateway, user.token))


def test_a_logged_out_token_stays_401_when_redis_loses_its_revocation(gateway, db, state):
    from stockpred.identity import auth

    user = gateway.new_user(password=PASSWORD)
    other = login(gateway, user.email, PASSWORD)
    claims = auth.verify(user.token)
    r = gateway.post("/api/users/logout", headers=bearer(user.token))
    assert r.status_code == 200, r.text
    record = db.revocations.find_one({"_id": claims["jti"]})
    assert record["user"] == user.user_id
    assert int(record["expireAt"].timestamp()) == claims["exp"]
    lose_redis_token_state(state, user.user_id, claims["jti"])
    assert_401(profile(gateway, user.token))
    assert_401(gateway.post("/api/users/logout", headers=bearer(user.token)))
    assert profile(gateway, other).status_code == 200  # only that token ended


def test_a_socket_of_a_revoked_token_is_refused_after_redis_lost_the_revocation(gateway, state):
    """The WebSocket routes check the same store (rooms.authorised, after $connect)."""
    from stockpred.identity import auth
    from stockpred.realtime import rooms

    user = gateway.new_user(password=PASSWORD)
    claims = auth.verify(user.token)
    conn, second = f"test-{uuid.uuid4().hex}", f"test-{uuid.uuid4().hex}"
    rooms.connected(conn, user.user_id, claims=claims)
    try:
        assert rooms.authorised(conn)
        auth.revoke(claims)
        lose_redis_token_state(state, user.user_id, claims["jti"])
        assert not rooms.authorised(conn)
        fresh = auth.verify(login(gateway, user.email, PASSWORD))
        rooms.connected(second, user.user_id, claims=fresh)
        assert rooms.authorised(second)
        auth.revoke_all(user.user_id)
        lose_redis_token_state(state, user.user_id)
        assert not rooms.authorised(second)
    finally:
        rooms.forget(conn)
        rooms.forget(second)


@pytest.fixture
def short_tokens(stack, monkeypatch) -> Iterator[None]:
    from stockpred import config

    monkeypatch.setenv("JWT_TTL_SECONDS", "2")
    config.load.cache_clear()
    yield
    monkeypatch.delenv("JWT_TTL_SECONDS")
    config.load.cache_clear()


def test_a_revocation_record_goes_after_its_token_expired_and_revives_nothing(
        gateway, db, state, short_tokens):
    """FerretDB 1.24 has no TTL indexes: the record stops counting at its expiry and the next
    logout deletes it (MongoDB and DocumentDB's TTL monitor deletes it too)."""
    from stockpred.identity import auth

    user = gateway.new_user(password=PASSWORD)
    token = auth.issue(user.user_id)
    claims: dict[str, Any] = auth.verify(token)
    auth.revoke(claims)
    assert db.revocations.count_documents({"_id": claims["jti"]}) == 1
    assert auth.is_revoked(claims["jti"])
    with pytest.raises(auth.InvalidToken, match="revoked"):
        auth.verify(token)
    time.sleep(max(0.0, claims["exp"] - time.time()) + 1.1)
    with pytest.raises(auth.InvalidToken, match="expired"):
        auth.verify(token)
    assert not auth.is_revoked(claims["jti"])  # past expireAt: no longer counted ...
    auth.revoke(auth.verify(auth.issue(user.user_id)))  # ... and the next logout deletes it
    assert db.revocations.count_documents({"_id": claims["jti"]}) == 0
    lose_redis_token_state(state, user.user_id, claims["jti"])
    with pytest.raises(auth.InvalidToken):
        auth.verify(token)
    names = {ix["name"] for ix in db.revocations.list_indexes()}
    assert names & {"revocations_ttl", "revocations_expiry"}
