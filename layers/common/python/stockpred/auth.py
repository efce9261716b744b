"""User tokens: HS256 JWTs through pyjwt, and their revocation on the state Redis.

Claims: sub, iat, exp (short), iss, aud, jti, and `tv` (the user's token version). Verification
pins the algorithm and requires every claim. Logout revokes one token (its jti, until it would
have expired); a password change bumps the user's token version, which refuses every token
issued before it.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any

import jwt

from stockpred import config, redis_stores, secrets
from stockpred.config import ConfigError

ISSUER = "stockpred"
AUDIENCE = "stockpred-api"
ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["sub", "iat", "exp", "iss", "aud", "jti", "tv"]


class InvalidToken(Exception):
    """Missing, malformed, forged, expired or revoked."""


def _secret() -> str:
    secret = secrets.jwt_secret()
    if len(secret) < 32:
        raise ConfigError("the JWT signing secret must be 32+ characters (JWT_SECRET_ARN's secret)")
    return secret


def ttl_seconds() -> int:
    return config.load().jwt_ttl_s


def _token_version(user_id: str) -> int:
    raw = redis_stores.state().get(f"stockpred:token-version:{user_id}")
    return int(raw) if raw else 0


def issue(user_id: str) -> str:
    now = int(time.time())
    claims = {"sub": user_id, "iat": now, "exp": now + ttl_seconds(), "iss": ISSUER,
              "aud": AUDIENCE, "jti": uuid.uuid4().hex, "tv": _token_version(user_id)}
    return jwt.encode(claims, _secret(), algorithm=ALGORITHM)


def verify(token: str | None) -> dict[str, Any]:
    """The token's claims if it is valid now; InvalidToken otherwise."""
    if not token:
        raise InvalidToken("missing token")
    try:
        claims = jwt.decode(token, _secret(), algorithms=[ALGORITHM], audience=AUDIENCE,
                            issuer=ISSUER, options={"require": REQUIRED_CLAIMS})
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from None
    if not isinstance(claims["sub"], str) or not isinstance(claims["tv"], int):
        raise InvalidToken("malformed claims")
    state = redis_stores.state()
    if state.exists(f"stockpred:revoked-jti:{claims['jti']}"):
        raise InvalidToken("token revoked")
    if claims["tv"] < _token_version(claims["sub"]):
        raise InvalidToken("token issued before a password change")
    return claims


def bearer(headers: Any) -> str | None:
    value = headers.get("authorization") or ""
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def revoke(claims: dict[str, Any]) -> None:
    remaining = int(claims["exp"] - time.time())
    if remaining > 0:
        redis_stores.state().set(f"stockpred:revoked-jti:{claims['jti']}", "1", ex=remaining)


def revoke_all(user_id: str) -> None:
    redis_stores.state().incr(f"stockpred:token-version:{user_id}")


def expires_at(claims: dict[str, Any]) -> str:
    return dt.datetime.fromtimestamp(claims["exp"], dt.UTC).isoformat().replace("+00:00", "Z")
