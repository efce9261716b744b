"""The users API end to end: a real HTTP client against devstack serving template.yaml.

Covers registration, login (with its per-account and per-client throttling, and the device
token that lets a device that signed in before past them), profile read and update, password
change, logout and the paper portfolio: every status code each endpoint
answers, bodies of the wrong type, forged and malformed tokens, injection attempts, 20
concurrent registrations of one email, how passwords are stored, and that logout and a password
change refuse the old tokens. Effects are checked where a user would see them: status codes,
JSON bodies, and the documents in MongoDB (`users`, `account_entries`).

Every failed login counts against 127.0.0.1, which all local tests share (template.yaml allows
50 per window), so each test uses fresh emails, the file makes only a handful of failed logins,
and the client's counter is put back as it was when the module ends.
"""

import base64
import concurrent.futures as cf
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
import pytest

from stockpred.cloud import secrets

PASSWORD = "correct-horse-42"
NEW_PASSWORD = "battery-staple-77"
INVALID_TOKEN = {"error": "Invalid or missing token"}
INVALID_INPUT = "Invalid input data"
MAX_BODY = 64 * 1024
# template.yaml: LOGIN_MAX_FAILURES_PER_EMAIL / _PER_CLIENT for UsersFunction.
MAX_FAILURES_PER_EMAIL = 5
MAX_FAILURES_PER_CLIENT = 50
CLIENT_FAILURES_KEY = "stockpred:login-failures:client:127.0.0.1"
# Values of every JSON type but string.
NOT_STRINGS = [0, 12345, 1.5, True, False, None, [], ["a@example.com"], {}, {"a": 1}]
OPERATORS = [{"$ne": None}, {"$gt": ""}, {"$where": "sleep(1000)"}, {"$regex": ".*"},
             [{"$ne": None}]]


# ---- helpers ---------------------------------------------------------------------------------
@dataclass
class User:
    user_id: str
    name: str
    email: str
    password: str
    token: str


def fresh_email(tag: str = "user") -> str:
    return f"{tag}-{uuid.uuid4().hex[:16]}@example.com"


def register(gateway, name: str = "Ada Lovelace", email: str | None = None,
             password: str = PASSWORD, **extra: Any):
    body = {"name": name, "email": email or fresh_email(), "password": password, **extra}
    return gateway.post("/api/users/register", json=body)


def login(gateway, email: str, password: str = PASSWORD):
    return gateway.post("/api/users/login", json={"email": email, "password": password})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def new_user(gateway, name: str = "Ada Lovelace", password: str = PASSWORD) -> User:
    email = fresh_email()
    r = register(gateway, name=name, email=email, password=password)
    assert r.status_code == 201, r.text
    user_id = r.json()["user_id"]
    r = login(gateway, email, password)
    assert r.status_code == 200, r.text
    return User(user_id, name, email, password, r.json()["token"])


def token_for(gateway, user: User, password: str | None = None) -> str:
    r = login(gateway, user.email, password or user.password)
    assert r.status_code == 200, r.text
    return r.json()["token"]


def profile(gateway, token: str):
    return gateway.get("/api/users/profile", headers=bearer(token))


def post_raw(gateway, path: str, data: bytes | str, token: str | None = None,
             content_type: str = "application/json"):
    headers = {"Content-Type": content_type, **(bearer(token) if token else {})}
    return gateway.post(path, data=data, headers=headers)


def assert_invalid(r, *fields: str) -> None:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error"] == INVALID_INPUT
    assert set(fields) <= set(body["fields"]), body


def assert_401(r, challenge: bool = True) -> None:
    assert r.status_code == 401, r.text
    assert r.json() == INVALID_TOKEN
    if challenge:
        assert r.headers.get("WWW-Authenticate") == "Bearer"


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def b64url_json(obj: dict[str, Any]) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


def unb64url_json(segment: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


DROP = object()  # a claim that claims_for leaves out


def claims_for(user_id: str, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"sub": user_id, "iat": now, "exp": now + 300, "iss": "stockpred",
              "aud": "stockpred-api", "jti": uuid.uuid4().hex, "tv": 0, **changes}
    return {k: v for k, v in claims.items() if v is not DROP}


def strings_in(value: Any) -> list[str]:
    """Every string in a document, keys included, however deeply nested."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*strings_in(k), *strings_in(v))]
    if isinstance(value, list | tuple):
        return [s for v in value for s in strings_in(v)]
    return []


# ---- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def leave_client_failures_as_found(gateway, state):
    """This module's failed logins must not eat into the budget of the tests that follow."""
    before, ttl = state.get(CLIENT_FAILURES_KEY), state.ttl(CLIENT_FAILURES_KEY)
    yield
    if before is None:
        state.delete(CLIENT_FAILURES_KEY)
    else:
        state.set(CLIENT_FAILURES_KEY, before, ex=ttl if ttl > 0 else 900)


@pytest.fixture
def user(gateway) -> User:
    return new_user(gateway)


@pytest.fixture(scope="module")
def victim(gateway) -> User:
    """One user shared by the tests that must change nothing (each checks it did not)."""
    return new_user(gateway, name="Token Victim")


def users_snapshot(db) -> list[dict[str, Any]]:
    return list(db.users.find().sort("_id", 1))


def counts(db) -> tuple[int, int]:
    return db.users.count_documents({}), db.account_entries.count_documents({})


# ---- register --------------------------------------------------------------------------------
def test_register_201_stores_the_user_and_opens_the_account(gateway, db):
    email = fresh_email("Reg").replace("Reg", "ReG")
    r = register(gateway, name="  Grace Hopper  ", email=email)
    assert r.status_code == 201
    body = r.json()
    assert body == {"message": "User registered successfully", "user_id": body["user_id"]}
    doc = db.users.find_one({"_id": body["user_id"]})
    assert doc["name"] == "Grace Hopper"
    assert doc["email"] == email and doc["email_normalised"] == email.lower()
    entries = list(db.account_entries.find({"account": body["user_id"]}))
    assert [(e["kind"], e["cash_cents"]) for e in entries] == [("open", 10_000_000)]


def test_register_409_for_an_existing_email_in_any_letter_case(gateway, db):
    email = fresh_email("dup")
    assert register(gateway, email=email).status_code == 201
    before = counts(db)
    for again in (email, email.upper(), f"  {email.capitalize()}  "):
        r = register(gateway, name="Someone Else", email=again, password="another-pass-9")
        assert r.status_code == 409
        assert r.json() == {"error": "User already exists"}
    assert counts(db) == before
    assert db.users.count_documents({"email_normalised": email}) == 1


@pytest.mark.parametrize("changes,field", [
    ({"name": ""}, "name"),
    ({"name": "   "}, "name"),
    ({"name": "n" * 101}, "name"),
    ({"email": "not-an-email"}, "email"),
    ({"email": "a@b"}, "email"),
    ({"email": "two@@example.com"}, "email"),
    ({"email": "x" * 243 + "@example.com"}, "email"),  # 255 characters
    ({"password": "short-1"}, "password"),
    ({"password": "zq8-Tx!m2Lw"}, "password"),  # 11 characters, otherwise strong
    ({"password": "x1" * 64 + "y"}, "password"),  # 129 characters
    ({"password": "password1234"}, "password"),  # common
    ({"password": "1234567890123"}, "password"),
])
def test_register_400_for_values_outside_the_rules(gateway, db, changes, field):
    before = counts(db)
    body = {"name": "Valid Name", "email": fresh_email(), "password": PASSWORD, **changes}
    r = gateway.post("/api/users/register", json=body)
    assert_invalid(r, field)
    assert counts(db) == before


@pytest.mark.parametrize("missing", ["name", "email", "password"])
def test_register_400_when_a_field_is_missing(gateway, db, missing):
    before = counts(db)
    body = {"name": "Valid Name", "email": fresh_email(), "password": PASSWORD}
    del body[missing]
    assert_invalid(gateway.post("/api/users/register", json=body), missing)
    assert counts(db) == before


def test_register_accepts_the_boundaries_of_the_rules(gateway, db):
    email = f"{'b' * 64}@{'d' * 63}.{'e' * 63}.{'f' * 57}.com"  # 254 characters
    assert len(email) == 254
    r = register(gateway, name="n" * 100, email=email, password="tq7-Rv2!mZ9x")  # 12 characters
    assert r.status_code == 201, r.text
    assert db.users.find_one({"_id": r.json()["user_id"]})["name"] == "n" * 100
    long_password = "".join(uuid.uuid4().hex for _ in range(4))
    assert len(long_password) == 128
    r = register(gateway, name="x", password=long_password)  # 1-char name, 128-char password
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("body", [[], "a string", 42, None, True])
def test_register_400_when_the_body_is_not_an_object(gateway, db, body):
    before = counts(db)
    r = gateway.post("/api/users/register", json=body)
    assert_invalid(r, "body")
    assert counts(db) == before


def test_register_reads_json_whatever_the_content_type(gateway):
    body = json.dumps({"name": "Form Poster", "email": fresh_email(), "password": PASSWORD})
    r = post_raw(gateway, "/api/users/register", body, content_type="application/x-www-form-urlencoded")
    assert r.status_code == 201, r.text


# ---- login -----------------------------------------------------------------------------------
def test_login_200_gives_a_working_token(gateway, stack):
    email = fresh_email()
    user_id = register(gateway, email=email).json()["user_id"]
    r = login(gateway, email.upper())  # emails match in any case
    assert r.status_code == 200
    body = r.json()
    assert body["message"] == "Login successful" and body["expires_in"] == 900
    claims = jwt.decode(body["token"], secrets.jwt_secret(), algorithms=["HS256"],
                        audience="stockpred-api", issuer="stockpred")
    assert claims["sub"] == user_id and claims["exp"] - claims["iat"] == 900
    assert {"jti", "tv"} <= set(claims)
    assert profile(gateway, body["token"]).json()["user_id"] == user_id


def test_login_401_is_the_same_for_a_wrong_password_and_an_unknown_email(gateway, user):
    wrong = login(gateway, user.email, "wrong-password-1")
    unknown = login(gateway, fresh_email("nobody"), PASSWORD)
    for r in (wrong, unknown):
        assert r.status_code == 401
        assert r.json() == {"error": "Invalid credentials"}
        assert "token" not in r.text


@pytest.mark.parametrize("body,fields", [
    ({"password": PASSWORD}, ["email"]),
    ({"email": "someone@example.com"}, ["password"]),
    ({"email": "not an email", "password": PASSWORD}, ["email"]),
    ({"email": "someone@example.com", "password": ""}, ["password"]),
    ({"email": "someone@example.com", "password": "p1" * 64 + "x"}, ["password"]),
    ({}, ["email", "password"]),
])
def test_login_400_for_missing_or_invalid_fields(gateway, body, fields):
    assert_invalid(gateway.post("/api/users/login", json=body), *fields)


def test_login_429_after_too_many_failures_for_one_email(gateway):
    victim_user, other = new_user(gateway), new_user(gateway)
    for _ in range(MAX_FAILURES_PER_EMAIL):
        assert login(gateway, victim_user.email, "wrong-password-1").status_code == 401
    for attempt in (victim_user.email, victim_user.email.upper()):
        r = login(gateway, attempt, PASSWORD)  # even the right password is refused now
        assert r.status_code == 429
        assert "token" not in r.json() and r.json()["error"]
        assert 0 < int(r.headers["Retry-After"]) <= 900
    assert login(gateway, other.email).status_code == 200  # only that email is held back


def test_a_device_that_signed_in_before_still_signs_in_once_its_address_is_held_back(gateway):
    """Everyone here is 127.0.0.1, as everyone behind one NAT: five wrong passwords from anyone
    hold the email back at that address (429), but the owner's device token from an earlier
    sign-in (its cookie, or X-Device-Token for API clients) still gets in."""
    owner = new_user(gateway)
    first = login(gateway, owner.email)
    assert first.status_code == 200, first.text
    device_token = first.json()["device_token"]
    cookie = first.headers["Set-Cookie"]
    assert cookie.startswith(f"stockpred_device={device_token};")
    assert {"HttpOnly", "Secure", "SameSite=Strict", "Path=/api/users", "Max-Age=2592000"} == \
        {part.strip() for part in cookie.split(";")[1:]}
    for _ in range(MAX_FAILURES_PER_EMAIL):
        assert login(gateway, owner.email, "wrong-password-1").status_code == 401
    assert login(gateway, owner.email).status_code == 429  # no device token: held back as before
    body = {"email": owner.email, "password": PASSWORD}
    for headers in ({"X-Device-Token": device_token}, {"Cookie": f"stockpred_device={device_token}"}):
        r = gateway.post("/api/users/login", json=body, headers=headers)
        assert r.status_code == 200, r.text
        assert profile(gateway, r.json()["token"]).json()["user_id"] == owner.user_id
    r = gateway.post("/api/users/login", json=body, headers={"X-Device-Token": device_token[:-2] + "xx"})
    assert r.status_code == 429  # a tampered token is no token


def test_login_429_after_too_many_failures_from_one_client(gateway, state):
    """Fills the client's counter directly: 50 real failures would hold back every later test.
    An account this address has signed in to before is not held back by its neighbours."""
    email = fresh_email()
    assert register(gateway, email=email).status_code == 201  # never signed in from here
    regular = new_user(gateway)  # signed in from here once
    state.set(CLIENT_FAILURES_KEY, MAX_FAILURES_PER_CLIENT, ex=60)
    try:
        r = login(gateway, email)
        assert r.status_code == 429
        assert "error" in r.json() and "token" not in r.json()
        assert 0 < int(r.headers["Retry-After"]) <= 900
        assert login(gateway, regular.email).status_code == 200
    finally:
        state.delete(CLIENT_FAILURES_KEY)
    assert login(gateway, email).status_code == 200


# ---- profile ---------------------------------------------------------------------------------
def test_profile_200_shows_the_user(gateway, user):
    r = profile(gateway, user.token)
    assert r.status_code == 200
    assert r.json() == {"user_id": user.user_id, "name": user.name, "email": user.email, "roles": []}
    lower = gateway.get("/api/users/profile", headers={"Authorization": f"bearer {user.token}"})
    assert lower.status_code == 200  # the scheme is case-insensitive


def test_profile_401_without_a_token(gateway):
    assert_401(gateway.get("/api/users/profile"))


# ---- profile update --------------------------------------------------------------------------
def test_profile_update_200_changes_name_and_email(gateway, db, user):
    email = fresh_email("moved")
    r = gateway.post("/api/users/profile/update", headers=bearer(user.token),
                     json={"name": "Ada King", "email": email.upper()})
    assert r.status_code == 200
    assert r.json() == {"message": "Profile updated successfully"}
    assert profile(gateway, user.token).json() == {"user_id": user.user_id, "name": "Ada King",
                                                   "email": email.upper(), "roles": []}
    assert db.users.find_one({"_id": user.user_id})["email_normalised"] == email
    assert login(gateway, email).status_code == 200
    assert login(gateway, user.email).status_code == 401  # the old email is free, not an alias
    r = gateway.post("/api/users/profile/update", headers=bearer(user.token), json={"name": "Ada"})
    assert r.status_code == 200
    assert profile(gateway, user.token).json()["email"] == email.upper()


def test_profile_update_to_its_own_email_in_another_case_is_200(gateway, user):
    r = gateway.post("/api/users/profile/update", headers=bearer(user.token),
                     json={"email": user.email.upper()})
    assert r.status_code == 200, r.text
    assert profile(gateway, user.token).json()["email"] == user.email.upper()


def test_profile_update_409_when_the_email_belongs_to_someone_else(gateway, db, user):
    other = fresh_email("taken")
    assert register(gateway, email=other).status_code == 201
    before = db.users.find_one({"_id": user.user_id})
    r = gateway.post("/api/users/profile/update", headers=bearer(user.token),
                     json={"name": "Changed", "email": other.title()})
    assert r.status_code == 409
    assert r.json() == {"error": "Email already in use"}
    assert db.users.find_one({"_id": user.user_id}) == before


@pytest.mark.parametrize("body,field", [
    ({}, "body"),
    ({"name": ""}, "name"),
    ({"name": "n" * 101}, "name"),
    ({"email": "nope"}, "email"),
    ({"name": "Fine", "role": "admin"}, "body"),
    ({"name": "Fine", "password_hash": "$argon2id$forged"}, "body"),
    ({"name": "Fine", "$set": {"email_normalised": "x@example.com"}}, "body"),
])
def test_profile_update_400_changes_nothing(gateway, db, victim, body, field):
    before = db.users.find_one({"_id": victim.user_id})
    r = gateway.post("/api/users/profile/update", headers=bearer(victim.token), json=body)
    assert_invalid(r, field)
    assert db.users.find_one({"_id": victim.user_id}) == before


def test_profile_update_401_without_a_token(gateway):
    assert_401(gateway.post("/api/users/profile/update", json={"name": "Nobody"}))


# ---- password --------------------------------------------------------------------------------
def test_password_change_200_refuses_every_older_token(gateway, db, user):
    other_token = token_for(gateway, user)
    r = gateway.post("/api/users/password", headers=bearer(user.token),
                     json={"current_password": PASSWORD, "new_password": NEW_PASSWORD})
    assert r.status_code == 200
    assert "message" in r.json()
    for old in (user.token, other_token):
        assert_401(profile(gateway, old))
        assert_401(gateway.get("/api/users/portfolio", headers=bearer(old)))
    assert login(gateway, user.email, PASSWORD).status_code == 401
    fresh = token_for(gateway, user, NEW_PASSWORD)
    assert profile(gateway, fresh).json()["user_id"] == user.user_id
    assert db.users.find_one({"_id": user.user_id})["password_hash"].startswith("$argon2id$")


def test_password_change_403_with_a_wrong_current_password(gateway, db, user):
    before = db.users.find_one({"_id": user.user_id})["password_hash"]
    r = gateway.post("/api/users/password", headers=bearer(user.token),
                     json={"current_password": "not-my-password-1", "new_password": NEW_PASSWORD})
    assert r.status_code == 403
    assert r.json() == {"error": "Current password is incorrect"}
    assert db.users.find_one({"_id": user.user_id})["password_hash"] == before
    assert profile(gateway, user.token).status_code == 200  # the token still works


@pytest.mark.parametrize("body,field", [
    ({"new_password": NEW_PASSWORD}, "current_password"),
    ({"current_password": PASSWORD}, "new_password"),
    ({"current_password": PASSWORD, "new_password": "short-1"}, "new_password"),
    ({"current_password": PASSWORD, "new_password": "password1234"}, "new_password"),
    ({"current_password": PASSWORD, "new_password": "x1" * 64 + "y"}, "new_password"),
    ({"current_password": "", "new_password": NEW_PASSWORD}, "current_password"),
])
def test_password_change_400_changes_nothing(gateway, db, victim, body, field):
    before = db.users.find_one({"_id": victim.user_id})
    r = gateway.post("/api/users/password", headers=bearer(victim.token), json=body)
    assert_invalid(r, field)
    assert db.users.find_one({"_id": victim.user_id}) == before
    assert profile(gateway, victim.token).status_code == 200


def test_password_change_401_without_a_token(gateway):
    r = gateway.post("/api/users/password",
                     json={"current_password": PASSWORD, "new_password": NEW_PASSWORD})
    assert_401(r)


# ---- logout ----------------------------------------------------------------------------------
def test_logout_200_refuses_that_token_only(gateway, user):
    other_token = token_for(gateway, user)
    r = gateway.post("/api/users/logout", headers=bearer(user.token))
    assert r.status_code == 200
    assert r.json() == {"message": "Logged out"}
    assert_401(profile(gateway, user.token))
    assert_401(gateway.get("/api/users/portfolio", headers=bearer(user.token)))
    assert_401(gateway.post("/api/users/logout", headers=bearer(user.token)))
    assert profile(gateway, other_token).status_code == 200


def test_logout_401_without_a_token(gateway):
    assert_401(gateway.post("/api/users/logout"))


# ---- portfolio -------------------------------------------------------------------------------
def test_a_new_users_portfolio_has_the_starting_cash_and_no_holdings(gateway, user):
    r = gateway.get("/api/users/portfolio", headers=bearer(user.token))
    assert r.status_code == 200
    body = r.json()
    assert body["user_id"] == user.user_id
    assert (body["currency"], body["cash"], body["cash_cents"]) == ("USD", "100000.00", 10_000_000)
    assert body["holdings"] == []
    assert body["total_value"] == body["available_cash"] == "100000.00"
    assert body["market_value"] == body["realised_pnl"] == body["unrealised_pnl"] == "0.00"


def test_portfolio_401_without_a_token(gateway):
    assert_401(gateway.get("/api/users/portfolio"))


# ---- body size and malformed JSON ------------------------------------------------------------
BODY_ROUTES = ["/api/users/register", "/api/users/login", "/api/users/profile/update",
               "/api/users/password"]


@pytest.mark.parametrize("path", [*BODY_ROUTES, "/api/users/logout"])
def test_a_body_over_64_kib_is_413_json(gateway, db, victim, path):
    before = users_snapshot(db)
    body = json.dumps({"name": "n" * MAX_BODY, "email": fresh_email(), "password": PASSWORD})
    token = token_for(gateway, victim) if path.endswith("/logout") else victim.token  # may revoke it
    r = post_raw(gateway, path, body, token=token)
    assert r.status_code == 413, r.text
    assert r.headers["Content-Type"].startswith("application/json") and r.json()["error"]
    assert users_snapshot(db) == before
    assert profile(gateway, victim.token).status_code == 200


def test_a_body_of_exactly_64_kib_is_read(gateway):
    prefix = '{"name": "'
    suffix = '", "email": "x@example.com", "password": "correct-horse-42"}'
    body = prefix + "n" * (MAX_BODY - len(prefix) - len(suffix)) + suffix
    assert len(body.encode()) == MAX_BODY
    assert_invalid(post_raw(gateway, "/api/users/register", body), "name")  # 400, not 413


@pytest.mark.parametrize("path", BODY_ROUTES)
@pytest.mark.parametrize("raw", ['{"name": ', "{'name': 'single quotes'}", "not json", b"\xff\xfe\x00"])
def test_malformed_json_is_400(gateway, db, victim, path, raw):
    before = users_snapshot(db)
    r = post_raw(gateway, path, raw, token=victim.token)
    assert r.status_code == 400
    assert r.json() == {"error": INVALID_INPUT}
    assert users_snapshot(db) == before


# ---- values that are not plain strings: wrong types and query operators ---------------------
NON_STRINGS = NOT_STRINGS + OPERATORS


@pytest.mark.parametrize("value", NON_STRINGS, ids=repr)
@pytest.mark.parametrize("field", ["name", "email", "password"])
def test_register_400_for_a_field_that_is_not_a_string(gateway, db, field, value):
    before, before_counts = users_snapshot(db), counts(db)
    body = {"name": "Valid Name", "email": fresh_email(), "password": PASSWORD, field: value}
    assert_invalid(gateway.post("/api/users/register", json=body), field)
    assert users_snapshot(db) == before and counts(db) == before_counts


@pytest.mark.parametrize("value", NON_STRINGS, ids=repr)
@pytest.mark.parametrize("field", ["email", "password"])
def test_login_400_for_a_field_that_is_not_a_string(gateway, victim, field, value):
    body = {"email": victim.email, "password": PASSWORD, field: value}
    r = gateway.post("/api/users/login", json=body)
    assert_invalid(r, field)
    assert "token" not in r.json()


@pytest.mark.parametrize("value", NON_STRINGS, ids=repr)
@pytest.mark.parametrize("field", ["name", "email"])
def test_profile_update_400_for_a_field_that_is_not_a_string(gateway, db, victim, field, value):
    before = users_snapshot(db)
    r = gateway.post("/api/users/profile/update", headers=bearer(victim.token), json={field: value})
    assert_invalid(r, field)
    assert users_snapshot(db) == before


@pytest.mark.parametrize("value", NON_STRINGS, ids=repr)
@pytest.mark.parametrize("field", ["current_password", "new_password"])
def test_password_change_400_for_a_field_that_is_not_a_string(gateway, db, victim, field, value):
    before = users_snapshot(db)
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD, field: value}
    r = gateway.post("/api/users/password", headers=bearer(victim.token), json=body)
    assert_invalid(r, field)
    assert users_snapshot(db) == before
    assert profile(gateway, victim.token).status_code == 200


def test_wrong_types_left_the_victim_able_to_log_in(gateway, victim):
    """None of the 400s above counted as a failed login."""
    assert login(gateway, victim.email).status_code == 200


# ---- tokens ----------------------------------------------------------------------------------
PROTECTED = [("GET", "/api/users/profile", None),
             ("POST", "/api/users/profile/update", {"name": "Hijacked"}),
             ("POST", "/api/users/password", {"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
             ("POST", "/api/users/logout", None),
             ("GET", "/api/users/portfolio", None)]


def call(gateway, method: str, path: str, body: Any, authorization: str | None):
    headers = {"Authorization": authorization} if authorization is not None else {}
    if method == "GET":
        return gateway.get(path, headers=headers)
    return gateway.post(path, headers=headers, json=body)


def forged(secret: str, claims: dict[str, Any], algorithm: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=algorithm)


def unsigned(claims: dict[str, Any]) -> str:
    return f"{b64url_json({'alg': 'none', 'typ': 'JWT'})}.{b64url_json(claims)}."


def tampered(token: str, **changes: Any) -> str:
    header, payload, signature = token.split(".")
    return f"{header}.{b64url_json({**unb64url_json(payload), **changes})}.{signature}"


def signature(token: str) -> str:
    return token.rsplit(".", 1)[1]


def now_s() -> int:
    return int(time.time())


OTHER_SECRET = "another-secret-of-at-least-32-chars!!"
# Each case: (the victim, the real secret) -> the Authorization header to send.
BAD_AUTHORIZATIONS: dict[str, Callable[[User, str], str]] = {
    "expired": lambda v, s: "Bearer " + forged(s, claims_for(v.user_id, iat=now_s() - 1000,
                                                               exp=now_s() - 60)),
    "other secret": lambda v, s: "Bearer " + forged(OTHER_SECRET, claims_for(v.user_id)),
    "alg none": lambda v, s: "Bearer " + unsigned(claims_for(v.user_id)),
    "alg none, real signature kept": lambda v, s: "Bearer " + unsigned(claims_for(v.user_id))
    + signature(v.token),
    "HS512 with the right secret": lambda v, s: "Bearer " + forged(s, claims_for(v.user_id), "HS512"),
    "wrong issuer": lambda v, s: "Bearer " + forged(s, claims_for(v.user_id, iss="someone-else")),
    "wrong audience": lambda v, s: "Bearer " + forged(s, claims_for(v.user_id, aud="other-api")),
    "no jti": lambda v, s: "Bearer " + forged(s, claims_for(v.user_id, jti=DROP)),
    "no tv": lambda v, s: "Bearer " + forged(s, claims_for(v.user_id, tv=DROP)),
    "no exp": lambda v, s: "Bearer " + forged(s, claims_for(v.user_id, exp=DROP)),
    "no iat": lambda v, s: "Bearer " + forged(s, claims_for(v.user_id, iat=DROP)),
    "no sub": lambda v, s: "Bearer " + forged(s, claims_for(v.user_id, sub=DROP)),
    "tv not an int": lambda v, s: "Bearer " + forged(s, claims_for(v.user_id, tv="0")),
    "sub not a string": lambda v, s: "Bearer " + forged(s, claims_for(v.user_id, sub=["x"])),
    "tampered sub": lambda v, s: "Bearer " + tampered(v.token, sub=uuid.uuid4().hex),
    "tampered exp": lambda v, s: "Bearer " + tampered(v.token, exp=now_s() + 10**6),
    "signature dropped": lambda v, s: "Bearer " + v.token.rsplit(".", 1)[0] + ".",
    "garbage": lambda v, s: "Bearer this-is-not-a-token",
    "three garbage segments": lambda v, s: "Bearer a.b.c",
    "Bearer and nothing": lambda v, s: "Bearer",
    "empty header": lambda v, s: "",
    "Basic scheme": lambda v, s: f"Basic {v.token}",
    "token without a scheme": lambda v, s: v.token,
    "Bearer twice": lambda v, s: f"Bearer Bearer {v.token}",
}


def test_a_token_forged_with_the_right_secret_is_accepted(gateway, stack, victim):
    """The control for the cases below: they fail for the reason they name, not another."""
    token = forged(secrets.jwt_secret(), claims_for(victim.user_id))
    assert profile(gateway, token).json()["user_id"] == victim.user_id


@pytest.mark.parametrize("case", list(BAD_AUTHORIZATIONS))
def test_bad_tokens_are_401_on_every_endpoint(gateway, db, stack, victim, case):
    authorization = BAD_AUTHORIZATIONS[case](victim, secrets.jwt_secret())
    before = db.users.find_one({"_id": victim.user_id})
    for method, path, body in PROTECTED:
        assert_401(call(gateway, method, path, body, authorization))
    assert db.users.find_one({"_id": victim.user_id}) == before
    assert profile(gateway, victim.token).status_code == 200  # nothing revoked the real token


@pytest.mark.parametrize("method,path,body", [p for p in PROTECTED if not p[1].endswith("/logout")],
                         ids=[p for _, p, _ in PROTECTED if not p.endswith("/logout")])
def test_a_valid_token_for_a_user_that_does_not_exist_is_401(gateway, db, stack, method, path, body):
    before = counts(db)
    token = forged(secrets.jwt_secret(), claims_for(uuid.uuid4().hex))
    assert_401(call(gateway, method, path, body, f"Bearer {token}"), challenge=False)
    assert counts(db) == before


# ---- injection attempts ----------------------------------------------------------------------
def test_login_with_operators_in_both_fields_gives_no_token(gateway, db):
    before = users_snapshot(db)
    r = gateway.post("/api/users/login", json={"email": {"$ne": None}, "password": {"$ne": None}})
    assert_invalid(r, "email", "password")
    r = gateway.post("/api/users/login", json={"email": {"$gt": ""}, "password": {"$gt": ""}})
    assert_invalid(r, "email", "password")
    assert users_snapshot(db) == before


def test_sql_and_operator_looking_text_is_stored_verbatim_and_harmless(gateway, db):
    before = db.users.count_documents({})
    name = "'; DROP TABLE users;--"
    email = f"o'brien+$where-{uuid.uuid4().hex[:8]}@example.com"
    r = register(gateway, name=name, email=email, **{"$where": "sleep(1000)", "role": "admin"})
    assert r.status_code == 201, r.text
    doc = db.users.find_one({"_id": r.json()["user_id"]})
    assert (doc["name"], doc["email"]) == (name, email)
    assert set(doc) == {"_id", "name", "email", "email_normalised", "password_hash",
                        "created_at", "updated_at"}  # unknown fields are not stored
    assert db.users.count_documents({}) == before + 1
    token = login(gateway, email).json()["token"]
    assert profile(gateway, token).json()["name"] == name
    r = gateway.post("/api/users/profile/update", headers=bearer(token), json={"name": "{\"$ne\": null}"})
    assert r.status_code == 200
    assert profile(gateway, token).json()["name"] == "{\"$ne\": null}"
    assert db.users.count_documents({}) == before + 1


def test_a_password_that_looks_like_sql_is_just_a_wrong_password(gateway, user):
    r = login(gateway, user.email, "' OR '1'='1' --")
    assert r.status_code == 401
    assert r.json() == {"error": "Invalid credentials"}


@pytest.mark.parametrize("changes,field", [
    ({"name": "abc\x00def"}, "name"),
    ({"name": "line\nbreak"}, "name"),
    ({"name": "tab\there"}, "name"),
    ({"name": "bell\x07"}, "name"),
    ({"name": "esc\x1b[31mred"}, "name"),
    ({"email": "nul\x00@example.com"}, "email"),
    ({"email": "a@example.com\r\nBcc: b@example.com"}, "email"),
    ({"email": "zoë@example.com"}, "email"),
    ({"name": "n" * 60_000}, "name"),
    ({"email": "e" * 60_000 + "@example.com"}, "email"),
    ({"password": "p1" * 30_000}, "password"),
])
def test_register_refuses_control_characters_and_very_long_strings(gateway, db, changes, field):
    before = users_snapshot(db)
    body = {"name": "Valid Name", "email": fresh_email(), "password": PASSWORD, **changes}
    assert_invalid(gateway.post("/api/users/register", json=body), field)
    assert users_snapshot(db) == before


@pytest.mark.parametrize("body,field", [
    ({"name": "abc\x00def"}, "name"),
    ({"name": "n" * 60_000}, "name"),
    ({"email": "e" * 60_000 + "@example.com"}, "email"),
    ({"email": "a@example.com\x00"}, "email"),
])
def test_profile_update_refuses_control_characters_and_very_long_strings(gateway, db, victim, body, field):
    before = users_snapshot(db)
    r = gateway.post("/api/users/profile/update", headers=bearer(victim.token), json=body)
    assert_invalid(r, field)
    assert users_snapshot(db) == before


def test_login_refuses_very_long_values(gateway, victim):
    for body, field in (({"email": "e" * 60_000 + "@example.com", "password": PASSWORD}, "email"),
                        ({"email": victim.email, "password": "p1" * 30_000}, "password")):
        assert_invalid(gateway.post("/api/users/login", json=body), field)


def test_unicode_names_and_passwords_round_trip(gateway, db):
    name, password, email = "Zoë 李雷 🚀 Ωμέγα", "pässwörd-密码-123", fresh_email()
    r = register(gateway, name=name, email=email, password=password)
    assert r.status_code == 201, r.text
    assert db.users.find_one({"_id": r.json()["user_id"]})["name"] == name
    token = login(gateway, email, password).json()["token"]
    assert profile(gateway, token).json()["name"] == name


# ---- concurrency -----------------------------------------------------------------------------
def test_20_concurrent_registrations_of_one_email_make_one_user(gateway, db):
    base = f"racer-{uuid.uuid4().hex[:12]}@example.com"
    # 20 spellings of one address: the case of the first five letters follows the bits of i.
    emails = ["".join(c.upper() if k < 5 and (i >> k) & 1 else c for k, c in enumerate(base))
              for i in range(20)]
    emails = [e.replace("example.com", "Example.COM") if i % 2 else e for i, e in enumerate(emails)]
    barrier = threading.Barrier(len(emails))

    def attempt(email: str):
        barrier.wait(10)
        return register(gateway, name="Racer", email=email)

    with cf.ThreadPoolExecutor(len(emails)) as pool:
        responses = list(pool.map(attempt, emails))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 19, [r.text for r in responses]
    assert all(r.json() == {"error": "User already exists"} for r in responses if r.status_code == 409)
    user_id = next(r.json()["user_id"] for r in responses if r.status_code == 201)
    docs = list(db.users.find({"email_normalised": base}))
    assert [d["_id"] for d in docs] == [user_id]
    opens = list(db.account_entries.find({"account": user_id, "kind": "open"}))
    assert len(opens) == 1
    assert db.account_entries.count_documents({"account": user_id}) == 1


# ---- password storage ------------------------------------------------------------------------
def test_passwords_are_stored_only_as_argon2id_hashes(gateway, db):
    password = f"Unique-{uuid.uuid4().hex[:12]}-9"
    email = fresh_email()
    registered = register(gateway, email=email, password=password)
    logged_in = login(gateway, email, password)
    assert (registered.status_code, logged_in.status_code) == (201, 200)
    for r in (registered, logged_in):
        assert password not in r.text
        assert "password" not in r.json()
    doc = db.users.find_one({"_id": registered.json()["user_id"]})
    assert doc["password_hash"].startswith("$argon2id$")
    assert not any(password in s for s in strings_in(doc))
    assert not [k for k in doc if "password" in k and k != "password_hash"]
    token = logged_in.json()["token"]
    r = gateway.post("/api/users/password", headers=bearer(token),
                     json={"current_password": password, "new_password": password + "x"})
    assert r.status_code == 200 and password not in r.text
    doc = db.users.find_one({"_id": doc["_id"]})
    assert doc["password_hash"].startswith("$argon2id$")
    assert not any(password in s for s in strings_in(doc))
    assert password not in gateway.log.read_text(errors="replace")


def test_the_same_password_hashes_differently_for_two_users(gateway, db):
    ids = [register(gateway, password=PASSWORD).json()["user_id"] for _ in range(2)]
    hashes = {db.users.find_one({"_id": i})["password_hash"] for i in ids}
    assert len(hashes) == 2


def test_nothing_in_the_users_collection_holds_a_clear_password(db):
    """Runs last, over every user this module made (all with one of these passwords or none)."""
    clear = (PASSWORD, NEW_PASSWORD, "pässwörd-密码-123")
    for doc in db.users.find():
        assert not [s for s in strings_in(doc) if any(p in s for p in clear)], doc["_id"]

