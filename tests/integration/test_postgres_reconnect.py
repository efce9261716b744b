"""The warm PostgreSQL connection outlives a server that hung up on it (a restart, a failover, a
terminated session): the next transaction is served on a new connection, not failed."""

import select

import psycopg2
import pytest

from stockpred.stores import postgres


@pytest.fixture
def warm(fresh):
    postgres.reset()
    yield postgres.connection()
    postgres.reset()


def _terminate(stack, backend_pid: int) -> None:
    admin = psycopg2.connect(stack["DATABASE_URL"])
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(%s)", (backend_pid,))
        assert cur.fetchone()[0]
    admin.close()


def test_a_transaction_after_the_server_ended_the_session_is_served(stack, warm):
    ended = warm.get_backend_pid()
    _terminate(stack, ended)
    # pg_terminate_backend only signals the backend: its goodbye reaches the socket soon after.
    assert select.select([warm], [], [], 5)[0], "the server did not hang up"
    with postgres.transaction() as cur:
        cur.execute("SELECT pg_backend_pid()")
        served_by = cur.fetchone()[0]
    assert served_by != ended
    assert warm.closed


def test_a_live_warm_connection_is_kept(stack, warm):
    with postgres.transaction() as cur:
        cur.execute("LISTEN stockpred_probe; NOTIFY stockpred_probe, 'hello'")
    # A notification waiting on the socket makes it readable: not a hang-up.
    assert postgres.connection() is warm
    with postgres.transaction() as cur:
        cur.execute("SELECT 1")
    assert postgres.connection() is warm
