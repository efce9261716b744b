"""Device tokens: a device that signed in to an account before still gets in (OWASP device cookies).

OWASP "Slow Down Online Guessing Attacks with Device Cookies": every successful login gives the
device a token, `d1.<nonce>.<expiry>.<mac>`, where the MAC is HMAC-SHA256 over the account's user
id, a random 128-bit nonce and the expiry (Unix seconds), keyed by a key derived from the JWT
secret (secrets.jwt_secret) for this use alone. The user id is in the MAC, not in the token: a
token is valid only for the account it was issued to, and says nothing about whose it is.

A login that presents a valid token for the account it names is counted per token (see
stockpred.identity.users, "throttling"), never against the address it comes from, so an attacker sharing
the victim's address (one NAT, or 127.0.0.1 locally) cannot lock the victim's own devices out.
Anything else presented as a token (forged, tampered, expired, another account's, over
MAX_LENGTH, not a string) is no token at all: `verify` answers None and the attempt is
throttled as one without a token; the MAC is compared in constant time.

The token travels as the cookie `stockpred_device` (HttpOnly, Secure, SameSite=Strict, only on
/api/users) and, for API clients, as the login answer's `device_token`, sent back in the
`X-Device-Token` header. Lifetime: LOGIN_DEVICE_TOKEN_SECONDS (30 days).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass

from stockpred import config
from stockpred.cloud import secrets

COOKIE = "stockpred_device"
COOKIE_PATH = "/api/users"
HEADER = "X-Device-Token"
VERSION = "d1"
MAX_LENGTH = 128  # a real token is about 80 characters; anything far longer is not read at all
MAX_CANDIDATES = 4  # tokens looked at per login (the header, then each cookie of that name)
_TOKEN = re.compile(r"d1\.([A-Za-z0-9_-]{22})\.([0-9]{1,12})\.([A-Za-z0-9_-]{43})")
_KEY_LABEL = b"stockpred device tokens v1"


@dataclass(frozen=True)
class Issued:
    value: str
    max_age_s: int

    @property
    def cookie(self) -> str:
        """The Set-Cookie header value that gives the token to a browser."""
        return (f"{COOKIE}={self.value}; HttpOnly; Secure; SameSite=Strict; Path={COOKIE_PATH}; "
                f"Max-Age={self.max_age_s}")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _mac(user_id: str, nonce: str, expires: int) -> bytes:
    key = hmac.new(secrets.jwt_secret().encode(), _KEY_LABEL, hashlib.sha256).digest()
    message = "\x00".join((VERSION, user_id, nonce, str(expires))).encode("utf-8", "surrogatepass")
    return hmac.new(key, message, hashlib.sha256).digest()


def issue(user_id: str, now: float | None = None) -> Issued:
    """A new token for this device and this account."""
    lifetime = config.load().login_device_token_s
    expires = int(now if now is not None else time.time()) + lifetime
    nonce = _b64(os.urandom(16))
    return Issued(f"{VERSION}.{nonce}.{expires}.{_b64(_mac(user_id, nonce, expires))}", lifetime)


def verify(value: object, user_id: str, now: float | None = None) -> str | None:
    """The token's nonce if `value` is a token issued to `user_id` that has not expired; else
    None (never an exception, whatever `value` is)."""
    if not isinstance(value, str) or len(value) > MAX_LENGTH:
        return None
    match = _TOKEN.fullmatch(value)
    if match is None:
        return None
    nonce, expires, mac = match.group(1), int(match.group(2)), match.group(3)
    if not hmac.compare_digest(mac.encode(), _b64(_mac(user_id, nonce, expires)).encode()):
        return None
    if expires <= (now if now is not None else time.time()):
        return None
    return nonce


def from_cookie_header(header: str | None) -> list[str]:
    """The values of every `stockpred_device` cookie in a Cookie header, in order."""
    out = []
    for part in (header or "").split(";"):
        name, eq, value = part.partition("=")
        if eq and name.strip() == COOKIE:
            out.append(value.strip().strip('"'))
    return out


def candidates(header_value: str | None, cookie_header: str | None) -> list[str]:
    """The tokens a login request presents: the X-Device-Token header first, then the cookies;
    at most MAX_CANDIDATES, so a request cannot make a login verify hundreds."""
    found: Iterable[str] = [*([header_value.strip()] if header_value else []),
                            *from_cookie_header(cookie_header)]
    return [t for t in found if t][:MAX_CANDIDATES]
