"""Users: registration, login, profiles, passwords, and each user's paper portfolio.

Passwords are hashed with argon2id and never stored, logged or returned in clear. Every input
is checked to be a plain string of sane length before it goes near a query, so a value such as
`{"$ne": null}` is refused (ValidationError), never read as an operator. Repeated failed logins
for one email or from one client address are throttled with counters on the state Redis.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import uuid
from dataclasses import dataclass
from typing import Any

import pymongo.errors
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from stockpred import auth, config, mongo, redis_stores
from stockpred.accounts import Accounts

_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")
_hasher = PasswordHasher()  # argon2id, 64 MiB, 3 passes
# Verifying against this keeps an unknown email as slow as a wrong password.
_DUMMY_HASH = _hasher.hash("not-a-real-password-0")


class ValidationError(ValueError):
    """Bad input: `fields` maps each bad field to what is wrong with it."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("Invalid input data")
        self.fields = fields


class UserExists(Exception):
    pass


class InvalidCredentials(Exception):
    pass


class TooManyAttempts(Exception):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__("too many failed logins")
        self.retry_after_s = retry_after_s


class UserNotFound(LookupError):
    pass


@dataclass(frozen=True)
class Profile:
    user_id: str
    name: str
    email: str


# ---- validation ------------------------------------------------------------------------------
def _string(body: dict[str, Any], name: str, errors: dict[str, str], *, low: int, high: int) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        errors[name] = "required, as a string"
        return ""
    value = value.strip()
    if not low <= len(value) <= high:
        errors[name] = f"must be {low} to {high} characters"
    elif any(ord(c) < 32 for c in value):
        errors[name] = "must not contain control characters"
    return value


def _email(body: dict[str, Any], errors: dict[str, str], name: str = "email") -> str:
    value = _string(body, name, errors, low=3, high=254)
    if name not in errors and not _EMAIL.match(value):
        errors[name] = "is not an email address"
    return value


def _password(body: dict[str, Any], errors: dict[str, str], name: str = "password") -> str:
    value = body.get(name)
    if not isinstance(value, str):
        errors[name] = "required, as a string"
        return ""
    if not 10 <= len(value) <= 128:
        errors[name] = "must be 10 to 128 characters"
    elif not (re.search(r"[A-Za-z]", value) and re.search(r"\d", value)):
        errors[name] = "must contain a letter and a digit"
    return value


def _check(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValidationError({"body": "must be a JSON object"})
    return body


def normalise_email(email: str) -> str:
    return email.strip().lower()


# ---- login throttling ------------------------------------------------------------------------
def _limits() -> tuple[int, int, int]:
    s = config.load()
    return s.login_max_failures_per_email, s.login_max_failures_per_client, s.login_failure_window_s


def _failure_keys(email: str, client: str) -> tuple[str, str]:
    digest = hashlib.sha256(normalise_email(email).encode()).hexdigest()[:32]
    return f"stockpred:login-failures:email:{digest}", f"stockpred:login-failures:client:{client}"


def _throttled(email: str, client: str) -> None:
    per_email, per_client, window = _limits()
    by_email, by_client = _failure_keys(email, client)
    state = redis_stores.state()
    counts = state.mget(by_email, by_client)
    if int(counts[0] or 0) >= per_email or int(counts[1] or 0) >= per_client:
        ttl = max(state.ttl(by_email), state.ttl(by_client), 1)
        raise TooManyAttempts(ttl if ttl > 0 else window)


def _count_failure(email: str, client: str) -> None:
    _, _, window = _limits()
    pipe = redis_stores.state().pipeline()
    for key in _failure_keys(email, client):
        pipe.incr(key)
        pipe.expire(key, window, nx=True)
    pipe.execute()


# ---- the service -----------------------------------------------------------------------------
class Users:
    def __init__(self) -> None:
        self.db = mongo.db()
        self.accounts = Accounts(self.db)

    def register(self, body: Any) -> str:
        body = _check(body)
        errors: dict[str, str] = {}
        name = _string(body, "name", errors, low=1, high=100)
        email = _email(body, errors)
        password = _password(body, errors)
        if errors:
            raise ValidationError(errors)
        user_id = uuid.uuid4().hex
        now = dt.datetime.now(dt.UTC)
        try:
            self.db.users.insert_one({
                "_id": user_id, "name": name, "email": email,
                "email_normalised": normalise_email(email),
                "password_hash": _hasher.hash(password), "created_at": now, "updated_at": now,
            })
        except pymongo.errors.DuplicateKeyError:
            raise UserExists() from None
        self.accounts.open(user_id)
        return user_id

    def login(self, body: Any, client: str) -> str:
        body = _check(body)
        errors: dict[str, str] = {}
        email = _email(body, errors)
        password = body.get("password")
        if not isinstance(password, str) or not 1 <= len(password) <= 128:
            errors["password"] = "required, as a string of at most 128 characters"
        if errors:
            raise ValidationError(errors)
        _throttled(email, client)
        user = self.db.users.find_one({"email_normalised": normalise_email(email)})
        try:
            _hasher.verify(user["password_hash"] if user else _DUMMY_HASH, password)
            if user is None:
                raise VerificationError("unknown email")
        except (VerificationError, InvalidHashError):
            _count_failure(email, client)
            raise InvalidCredentials() from None
        return auth.issue(user["_id"])

    def profile(self, user_id: str) -> Profile:
        user = self.db.users.find_one({"_id": user_id})
        if user is None:
            raise UserNotFound(user_id)
        return Profile(user["_id"], user["name"], user["email"])

    def update_profile(self, user_id: str, body: Any) -> None:
        body = _check(body)
        errors: dict[str, str] = {}
        changes: dict[str, Any] = {}
        if "name" in body:
            changes["name"] = _string(body, "name", errors, low=1, high=100)
        if "email" in body:
            changes["email"] = _email(body, errors)
            changes["email_normalised"] = normalise_email(changes["email"])
        if not changes and not errors:
            errors["body"] = "give name and/or email"
        unknown = set(body) - {"name", "email"}
        if unknown:
            errors["body"] = f"unknown field(s): {', '.join(sorted(map(str, unknown)))[:200]}"
        if errors:
            raise ValidationError(errors)
        changes["updated_at"] = dt.datetime.now(dt.UTC)
        try:
            result = self.db.users.update_one({"_id": user_id}, {"$set": changes})
        except pymongo.errors.OperationFailure as exc:
            if mongo.is_duplicate_key(exc):
                raise UserExists() from None
            raise
        if result.matched_count == 0:
            raise UserNotFound(user_id)

    def change_password(self, user_id: str, body: Any) -> None:
        body = _check(body)
        errors: dict[str, str] = {}
        current = body.get("current_password")
        if not isinstance(current, str) or not 1 <= len(current) <= 128:
            errors["current_password"] = "required, as a string of at most 128 characters"
        new = _password(body, errors, "new_password")
        if errors:
            raise ValidationError(errors)
        user = self.db.users.find_one({"_id": user_id})
        if user is None:
            raise UserNotFound(user_id)
        try:
            _hasher.verify(user["password_hash"], current)
        except (VerificationError, InvalidHashError):
            raise InvalidCredentials() from None
        self.db.users.update_one({"_id": user_id}, {"$set": {
            "password_hash": _hasher.hash(new), "updated_at": dt.datetime.now(dt.UTC)}})
        auth.revoke_all(user_id)
