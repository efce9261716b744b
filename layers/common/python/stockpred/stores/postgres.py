"""PostgreSQL adapter: one warm connection per process and versioned schema migrations.

Migrations are the numbered files in `migrations/`, applied in order at first connection under
an advisory lock, each recorded in `schema_migrations`, so every function instance may start
them and only one applies them.
"""

from __future__ import annotations

import contextlib
import select
import threading
from collections.abc import Iterator
from importlib import resources

import psycopg2
import psycopg2.extensions

from stockpred.cloud import secrets

_MIGRATION_LOCK = 7_316_001
_local = threading.local()


def migrations() -> list[tuple[int, str, str]]:
    out = []
    for entry in resources.files("stockpred.stores.migrations").iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            out.append((version, entry.name, entry.read_text()))
    return sorted(out)


def migrate(conn: psycopg2.extensions.connection) -> list[str]:
    """Applies the migrations this database lacks; returns their names."""
    applied = []
    with conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        cur.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
                           version integer PRIMARY KEY, name text NOT NULL,
                           applied_at timestamptz NOT NULL DEFAULT now())""")
        cur.execute("SELECT version FROM schema_migrations")
        done = {r[0] for r in cur.fetchall()}
        for version, name, sql in migrations():
            if version in done:
                continue
            cur.execute(sql)
            cur.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (version, name))
            applied.append(name)
    return applied


_migrated: set[str] = set()


def connect(dsn: str | None = None) -> psycopg2.extensions.connection:
    """A new connection to a database whose migrations have run (checked once per process).
    The URL comes from the database secret each time, so a rotated password is used once read."""
    dsn = dsn or secrets.database_url()
    conn = psycopg2.connect(dsn, connect_timeout=5, application_name="stockpred")
    if dsn not in _migrated:
        migrate(conn)
        _migrated.add(dsn)
    return conn


def _hung_up(conn: psycopg2.extensions.connection) -> bool:
    """Whether the server has closed this idle connection (it restarted, failed over, or an
    administrator ended the session), seen without a round trip: an idle connection's socket
    becomes readable only when the server speaks. A notification is consumed and the connection
    kept; a FATAL goodbye, or an end of stream still waiting after it, means it is gone."""
    try:
        if not select.select([conn], [], [], 0)[0]:
            return bool(conn.closed)
        seen = len(conn.notices)
        conn.poll()
        goodbye = any(n.startswith("FATAL") for n in conn.notices[seen:])
        return goodbye or bool(select.select([conn], [], [], 0)[0]) or bool(conn.closed)
    except (psycopg2.Error, OSError, ValueError):
        return True


def connection() -> psycopg2.extensions.connection:
    """This thread's warm connection, replaced when it has broken or the server has hung up, so
    the first request after a database restart is served, not answered 500 by a dead socket."""
    conn = getattr(_local, "conn", None)
    if conn is not None and not conn.closed and _hung_up(conn):
        conn.close()
    if conn is None or conn.closed:
        conn = connect()
        _local.conn = conn
    return conn


def reset() -> None:
    """Forgets this thread's warm connection (the next use connects afresh)."""
    conn = getattr(_local, "conn", None)
    if conn is not None and not conn.closed:
        conn.close()
    _local.conn = None


@contextlib.contextmanager
def transaction() -> Iterator[psycopg2.extensions.cursor]:
    """A cursor in a transaction on the warm connection: committed on success, else rolled back."""
    conn = connection()
    try:
        with conn, conn.cursor() as cur:
            yield cur
    except (psycopg2.OperationalError, psycopg2.InterfaceError):
        conn.close()
        raise
