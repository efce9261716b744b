"""MongoDB adapter (pymongo only): FerretDB locally, MongoDB Atlas or DocumentDB on AWS.

One client per process, and the indexes the domain relies on: the unique normalised email of
`users`, and the account entries' order.
"""

from __future__ import annotations

import functools
import os

import pymongo
import pymongo.errors
from pymongo.database import Database

from stockpred import config


@functools.cache
def client(url: str | None = None) -> pymongo.MongoClient:
    return pymongo.MongoClient(url or config.load().mongo_url, serverSelectionTimeoutMS=5000,
                               connectTimeoutMS=5000, uuidRepresentation="standard", tz_aware=True)


@functools.cache
def db() -> Database:
    database = client()[os.environ.get("MONGO_DB", "stockpred")]
    ensure_indexes(database)
    return database


def is_duplicate_key(exc: pymongo.errors.PyMongoError) -> bool:
    """A unique index refused the write. MongoDB says so with code 11000 (DuplicateKeyError);
    FerretDB v1 does for inserts, but answers an update with code 1 carrying PostgreSQL's
    unique-violation text, so both shapes count."""
    if isinstance(exc, pymongo.errors.DuplicateKeyError):
        return True
    return isinstance(exc, pymongo.errors.OperationFailure) and (
        exc.code == 11000 or "duplicate key value violates unique constraint" in str(exc))


def ensure_indexes(database: Database) -> None:
    database.users.create_index("email_normalised", unique=True, name="users_email_unique")
    database.account_entries.create_index([("account", 1), ("seq", 1)], name="entries_by_account")
