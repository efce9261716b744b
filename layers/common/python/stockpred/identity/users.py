"""Users: registration, login, profiles, passwords, and each user's paper portfolio.

Passwords are hashed with argon2id and never stored, logged or returned in clear. Every input
is checked to be a plain string of sane length before it goes near a query, so a value such as
`{"$ne": null}` is refused (contracts.Invalid), never read as an operator; names and emails with
control or invisible characters are refused too. New passwords follow OWASP ASVS 2.1: 12 to 128
characters of any kind, refused when common (zxcvbn). Failed logins and wrong current passwords
are throttled per (account, address), per address and, as a growing delay, per account; a
login that presents a device token from an earlier sign-in to that account is counted per token
instead (stockpred.identity.devices), so no one sharing the user's address can lock the user's own devices
out; see "throttling" below. Registrations are limited per address.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pymongo.errors
import zxcvbn
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from stockpred import config, contracts
from stockpred.identity import auth, devices
from stockpred.stores import mongo, redis_stores
from stockpred.trading.accounts import Accounts

_hasher = PasswordHasher()  # argon2id, 64 MiB, 3 passes
# Verifying against this keeps an unknown email as slow as a wrong password.
_DUMMY_HASH = _hasher.hash("not-a-real-password-0")


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
class SignedIn:
    """A successful login: the bearer token, and the device token for this device."""

    token: str
    device: devices.Issued


@dataclass(frozen=True)
class Profile:
    user_id: str
    name: str
    email: str
    roles: tuple[str, ...] = ()


# Roles a user can hold, granted only from the command line (`stockpred users grant`): `admin`
# reads every service's logs (GET /api/logs).
ROLES = ("admin",)


# ---- validation ------------------------------------------------------------------------------
# Each body's shape is its model's (stockpred.contracts); a new password's strength is judged here.
_MIN_SCORE = 3  # zxcvbn: 3 is "safely unguessable", about 10^8 guesses or more
# zxcvbn's cost grows quickly with length (0.05 s at 72 random characters, 0.7 s at 128): a strong
# first 72 characters is enough; only a weak one makes the whole password be scored.
_ZXCVBN_PREFIX = 72


def _personal(email: str, user_name: str) -> list[str]:
    """The email, its local part and the name, as a password must not contain them."""
    parts = (email.casefold(), email.partition("@")[0].casefold(), user_name.casefold().strip())
    return [p for p in parts if len(p) >= 4 and contracts.encodable(p)]


def _contains_personal(password: str, personal: list[str]) -> bool:
    folded = password.casefold()
    return any(p in folded for p in personal)


def _weakness(password: str, email: str = "", user_name: str = "") -> str | None:
    """Why a new password (OWASP ASVS 2.1: any characters, no composition rules) is refused: it
    contains the account's email or name, or zxcvbn finds it easy to guess (score < 3, or the
    whole of it one word of its dictionaries); None when it is strong enough."""
    personal = _personal(email, user_name)
    if _contains_personal(password, personal):
        return "must not contain your email or name"
    if _guessable(password[:_ZXCVBN_PREFIX], personal) and (
            len(password) <= _ZXCVBN_PREFIX or _guessable(password, personal)):
        return "is too common or too easy to guess: try a longer phrase of unrelated words"
    return None


def _guessable(value: str, personal: list[str]) -> bool:
    result = zxcvbn.zxcvbn(value, user_inputs=personal, max_length=contracts.PASSWORD_MAX)
    sequence = result.get("sequence") or []
    one_word = len(sequence) == 1 and sequence[0].get("pattern") == "dictionary"
    return result["score"] < _MIN_SCORE or one_word


def normalise_email(email: str) -> str:
    return email.strip().lower()


# ---- throttling --------------------------------------------------------------------------------
# Every counter is incremented before the decision, atomically in one Lua script on the state
# Redis, and the decision is taken on the values it returns: concurrent attempts cannot all read
# "under the limit" (check-then-increment let 8-9 of 24 concurrent guesses through a limit of 5).
#
# Login and the password change (its current password) share three limits:
#   pair    (account, client address): LOGIN_MAX_FAILURES_PER_EMAIL (5) per
#           LOGIN_FAILURE_WINDOW_SECONDS (15 min): the fast limit; it only holds back that
#           address for that account, so no one can lock a user out from elsewhere.
#   client  (address): LOGIN_MAX_FAILURES_PER_CLIENT (50) per 15 min, against one address
#           spraying many accounts; an address that signed in to an account before (for
#           LOGIN_KNOWN_CLIENT_SECONDS, 30 days) is exempt for that account.
#   account (whatever the address): LOGIN_ACCOUNT_FREE_FAILURES (10) within
#           LOGIN_ACCOUNT_WINDOW_SECONDS (1 h, extended by each failure); after that, each
#           evaluated attempt waits 1 s, 2 s, 4 s ... up to LOGIN_ACCOUNT_MAX_DELAY_SECONDS (120 s)
#           before the next one: a delay, never a lock, and known addresses are exempt.
#           Distributed guessing gets at most ~45 guesses in the first hour per account (10 free,
#           7 while the delay doubles, then one per 120 s) and 30 an hour after that.
# An attempt that succeeds is refunded (it was no failure) and marks its address known.
#
# A login that presents a valid device token for its account (stockpred.identity.devices: signed, not
# expired, issued to that account) skips all three and is counted in that token's own bucket
# instead (OWASP device cookies): LOGIN_MAX_FAILURES_PER_DEVICE (5) failures in a row lock that
# token for LOGIN_FAILURE_WINDOW_SECONDS (429), and a success clears its count. The address's and
# the account's counters are not touched: an attacker at the same address (one NAT, or 127.0.0.1)
# who has filled the (account, address) pair cannot keep the owner's devices out, and a token
# only comes from a sign-in with the right password. Anything else presented as a token counts as
# no token.
_ATTEMPT = """
local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local window = tonumber(ARGV[2])
local known = redis.call('EXISTS', KEYS[4]) == 1
local pair = redis.call('INCR', KEYS[1])
if pair == 1 then redis.call('EXPIRE', KEYS[1], window) end
if pair > tonumber(ARGV[1]) then
  return {0, redis.call('TTL', KEYS[1]), 'pair'}
end
if not known then
  local client = redis.call('INCR', KEYS[2])
  if client == 1 then redis.call('EXPIRE', KEYS[2], window) end
  if client > tonumber(ARGV[3]) then
    redis.call('DECR', KEYS[1])
    return {0, redis.call('TTL', KEYS[2]), 'client'}
  end
  local next_ms = tonumber(redis.call('HGET', KEYS[3], 'next') or '0')
  if now_ms < next_ms then
    redis.call('DECR', KEYS[1])
    redis.call('DECR', KEYS[2])
    return {0, math.ceil((next_ms - now_ms) / 1000), 'account'}
  end
end
local n = redis.call('HINCRBY', KEYS[3], 'n', 1)
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[5]))
local free = tonumber(ARGV[4])
if n > free and not known then
  local delay = math.min(1000 * 2 ^ math.min(n - free - 1, 30), tonumber(ARGV[6]) * 1000)
  redis.call('HSET', KEYS[3], 'next', now_ms + delay)
end
return {1, 0, known and 'known' or 'new'}
"""
_SUCCEEDED = """
if tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then redis.call('DECR', KEYS[1]) end
if redis.call('EXISTS', KEYS[4]) == 0 and tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then
  redis.call('DECR', KEYS[2])
end
if tonumber(redis.call('HGET', KEYS[3], 'n') or '0') > 0 then
  redis.call('HINCRBY', KEYS[3], 'n', -1)
end
if tonumber(ARGV[1]) > 0 then redis.call('SET', KEYS[4], '1', 'EX', ARGV[1]) end
return 1
"""
_DEVICE_ATTEMPT = """
local failures = redis.call('INCR', KEYS[1])
if failures == 1 then redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2])) end
if failures > tonumber(ARGV[1]) then
  return {0, redis.call('TTL', KEYS[1]), 'device'}
end
return {1, 0, 'device'}
"""
_DEVICE_SUCCEEDED = """
redis.call('DEL', KEYS[1])
if tonumber(ARGV[1]) > 0 then redis.call('SET', KEYS[2], '1', 'EX', ARGV[1]) end
return 1
"""


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class _Attempt:
    """The keys of one login (or password change) attempt: `account` is `u:<user id>` for an
    existing user, else `e:<hash of the email>`, so unknown emails are throttled alike. `device`
    is the nonce of a valid device token for that account, if the attempt presented one."""

    account: str
    client: str
    device: str | None = None

    @property
    def keys(self) -> list[str]:
        return [f"stockpred:login-failures:pair:{self.account}:{_digest(self.client)}",
                f"stockpred:login-failures:client:{self.client}",
                f"stockpred:login-failures:account:{self.account}",
                f"stockpred:login-known:{self.account}:{_digest(self.client)}"]

    @property
    def device_key(self) -> str:
        return f"stockpred:login-failures:device:{self.account}:{_digest(self.device or '')}"

    def begin(self) -> None:
        """Counts this attempt; TooManyAttempts if it must not be evaluated."""
        s = config.load()
        state = redis_stores.state()
        if self.device is not None:
            allowed, retry_after, _why = state.register_script(_DEVICE_ATTEMPT)(
                keys=[self.device_key],
                args=[s.login_max_failures_per_device, s.login_failure_window_s])
        else:
            allowed, retry_after, _why = state.register_script(_ATTEMPT)(
                keys=self.keys,
                args=[s.login_max_failures_per_email, s.login_failure_window_s,
                      s.login_max_failures_per_client, s.login_account_free_failures,
                      s.login_account_window_s, s.login_account_max_delay_s])
        if not int(allowed):
            retry_after = int(retry_after)
            raise TooManyAttempts(retry_after if retry_after > 0 else s.login_failure_window_s)

    def succeeded(self) -> None:
        """Refunds the attempt (it was no failure) and remembers the address for the account; a
        device token's failures in a row start again from zero."""
        known = config.load().login_known_client_s
        if self.device is not None:
            redis_stores.state().register_script(_DEVICE_SUCCEEDED)(
                keys=[self.device_key, self.keys[3]], args=[known])
        else:
            redis_stores.state().register_script(_SUCCEEDED)(keys=self.keys, args=[known])


def _account(user: dict[str, Any] | None, email: str) -> str:
    return f"u:{user['_id']}" if user else f"e:{_digest(normalise_email(email))}"


def _count_registration(client: str) -> None:
    """REGISTER_MAX_PER_CLIENT registrations (each an argon2 hash: 64 MiB, ~0.1 s) per address
    per REGISTER_WINDOW_SECONDS; counted before the decision, in one transaction."""
    s = config.load()
    key = f"stockpred:register:client:{client}"
    pipe = redis_stores.state().pipeline()
    pipe.incr(key)
    pipe.expire(key, s.register_window_s, nx=True)
    pipe.ttl(key)
    count, _, ttl = pipe.execute()
    if count > s.register_max_per_client:
        raise TooManyAttempts(ttl if ttl > 0 else s.register_window_s)


# ---- the service -----------------------------------------------------------------------------
class Users:
    def __init__(self) -> None:
        self.db = mongo.db()
        self.accounts = Accounts(self.db)

    def register(self, body: Any, client: str = "unknown") -> str:
        given = contracts.parse(contracts.Registration, body)
        name, email, password = given.name, given.email, given.password
        if weakness := _weakness(password, email, name):
            raise contracts.Invalid({"password": weakness})
        _count_registration(client)
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

    def login(self, body: Any, client: str, device_tokens: Sequence[str] = ()) -> SignedIn:
        """The tokens for a right email and password; `device_tokens` are the device tokens the
        request presents (stockpred.identity.devices.candidates): a valid one for this account moves the
        attempt to its own throttle bucket (see "throttling")."""
        given = contracts.parse(contracts.Credentials, body)
        email, password = given.email, given.password
        # Existing passwords are not re-validated: one set under an older rule keeps working.
        user = self.db.users.find_one({"email_normalised": normalise_email(email)})
        device = None
        if user is not None:
            device = next((n for t in device_tokens[:devices.MAX_CANDIDATES]
                           if (n := devices.verify(t, user["_id"])) is not None), None)
        attempt = _Attempt(_account(user, email), client, device)
        attempt.begin()
        try:
            _hasher.verify(user["password_hash"] if user else _DUMMY_HASH, password)
            if user is None:
                raise VerificationError("unknown email")
        except (VerificationError, InvalidHashError):
            raise InvalidCredentials() from None
        attempt.succeeded()
        return SignedIn(auth.issue(user["_id"], int(user.get("token_version") or 0)),
                        devices.issue(user["_id"]))

    def profile(self, user_id: str) -> Profile:
        user = self.db.users.find_one({"_id": user_id})
        if user is None:
            raise UserNotFound(user_id)
        return Profile(user["_id"], user["name"], user["email"], tuple(user.get("roles") or ()))

    def has_role(self, user_id: str, role: str) -> bool:
        return self.db.users.count_documents({"_id": user_id, "roles": role}, limit=1) == 1

    def set_role(self, email: str, role: str, granted: bool = True) -> str:
        """Grants (or revokes) a role to the user with this email; returns the user's id."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
        change = {"$addToSet": {"roles": role}} if granted else {"$pull": {"roles": role}}
        user = self.db.users.find_one_and_update(
            {"email_normalised": normalise_email(email)},
            {**change, "$set": {"updated_at": dt.datetime.now(dt.UTC)}})
        if user is None:
            raise UserNotFound(email)
        return user["_id"]

    def update_profile(self, user_id: str, body: Any) -> None:
        given = contracts.parse(contracts.ProfileChange, body)
        changes: dict[str, Any] = given.model_dump(include=given.model_fields_set)
        if "email" in changes:
            changes["email_normalised"] = normalise_email(changes["email"])
        changes["updated_at"] = dt.datetime.now(dt.UTC)
        try:
            result = self.db.users.update_one({"_id": user_id}, {"$set": changes})
        except pymongo.errors.OperationFailure as exc:
            if mongo.is_duplicate_key(exc):
                raise UserExists() from None
            raise
        if result.matched_count == 0:
            raise UserNotFound(user_id)

    def change_password(self, user_id: str, body: Any, client: str = "unknown") -> None:
        """Wrong current passwords count against the same limits as failed logins
        (TooManyAttempts), so a stolen token is no unthrottled password oracle."""
        given = contracts.parse(contracts.PasswordChange, body)
        current, new = given.current_password, given.new_password
        if weakness := _weakness(new):
            raise contracts.Invalid({"new_password": weakness})
        user = self.db.users.find_one({"_id": user_id})
        if user is None:
            raise UserNotFound(user_id)
        if _contains_personal(new, _personal(user["email"], user["name"])):
            raise contracts.Invalid({"new_password": "must not contain your email or name"})
        attempt = _Attempt(_account(user, user["email"]), client)
        attempt.begin()
        try:
            _hasher.verify(user["password_hash"], current)
        except (VerificationError, InvalidHashError):
            raise InvalidCredentials() from None
        attempt.succeeded()
        # One update: the new hash never lands without the token version that ends every older
        # token (stockpred.identity.auth), both in the durable store.
        result = self.db.users.update_one({"_id": user_id}, {
            "$set": {"password_hash": _hasher.hash(new), "updated_at": dt.datetime.now(dt.UTC)},
            "$inc": {"token_version": 1}})
        if result.matched_count == 0:
            raise UserNotFound(user_id)


@functools.cache
def default() -> Users:
    """This process's user store (the functions' one, made on first use)."""
    return Users()
