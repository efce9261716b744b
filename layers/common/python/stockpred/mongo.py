"""MongoDB adapter (pymongo only): FerretDB locally, MongoDB Atlas or DocumentDB on AWS.

One client per process, and the indexes the domain relies on: the unique normalised email of
`users`, and the account entries' order.
"""

from __future__ import annotations

import functools
import os

import pymongo
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


def ensure_indexes(database: Database) -> None:
    database.users.create_index("email_normalised", unique=True, name="users_email_unique")
    database.account_entries.create_index([("account", 1), ("seq", 1)], name="entries_by_account")
