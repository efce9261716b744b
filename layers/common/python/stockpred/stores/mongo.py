"""MongoDB adapter (pymongo only): FerretDB locally, MongoDB Atlas or DocumentDB on AWS.

One client per process (per URL: it comes from the mongo secret), and the indexes the domain
relies on: the unique normalised email of `users`, the account entries' order, and the expiry of
`revocations` (logged-out tokens, stockpred.identity.auth): a TTL index where the server has them.
"""

from __future__ import annotations

import functools

import pymongo
import pymongo.errors
from pymongo.database import Database

from stockpred import config
from stockpred.cloud import secrets


@functools.cache
def _connect(url: str) -> pymongo.MongoClient:
    return pymongo.MongoClient(url, serverSelectionTimeoutMS=5000, connectTimeoutMS=5000,
                               uuidRepresentation="standard", tz_aware=True)


def client(url: str | None = None) -> pymongo.MongoClient:
    """This process's client of `url` (default: the mongo secret's). After a rotation the secret's
    new URL gets its own client once the secret is read again (the old one, unused, stays until
    the instance is recycled: rotations are rare)."""
    return _connect(url or secrets.mongo_url())


@functools.cache
def _database(url: str, name: str) -> Database:
    database = _connect(url)[name]
    ensure_indexes(database)
    return database


def db() -> Database:
    """The application's database (MONGO_DB), its indexes ensured once per process and URL."""
    return _database(secrets.mongo_url(), config.load().mongo_db)


def cache_clear() -> None:
    """Forgets the clients and databases (tests that point the process at another server)."""
    _connect.cache_clear()
    _database.cache_clear()


def is_duplicate_key(exc: pymongo.errors.PyMongoError) -> bool:
    """A unique index refused the write. MongoDB says so with code 11000 (DuplicateKeyError);
    FerretDB v1 does for inserts, but answers an update with code 1 carrying PostgreSQL's
    unique-violation text, so both shapes count."""
    if isinstance(exc, pymongo.errors.DuplicateKeyError):
        return True
    return isinstance(exc, pymongo.errors.OperationFailure) and (
        exc.code == 11000 or "duplicate key value violates unique constraint" in str(exc))


NOT_IMPLEMENTED = 238


def ensure_indexes(database: Database) -> None:
    database.users.create_index("email_normalised", unique=True, name="users_email_unique")
    database.account_entries.create_index([("account", 1), ("seq", 1)], name="entries_by_account")
    try:
        database.revocations.create_index("expireAt", expireAfterSeconds=0, name="revocations_ttl")
    except pymongo.errors.OperationFailure as exc:
        # FerretDB 1.x: 'Index option "expireAfterSeconds" is not implemented yet'. auth then
        # filters on expireAt and deletes the expired records itself, by this index.
        if exc.code != NOT_IMPLEMENTED:
            raise
        database.revocations.create_index("expireAt", name="revocations_expiry")
