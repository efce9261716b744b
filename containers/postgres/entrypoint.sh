#!/usr/bin/env bash
# First start: initdb and the two databases (single-user mode, no server listening yet). Every
# start: the server replaces this shell (exec), listening on the container's network.
# Authentication is `trust` as in devstack: the port is published on 127.0.0.1 only.
set -euo pipefail
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    echo "postgres-entrypoint: initdb $PGDATA"
    initdb -D "$PGDATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 --no-instructions >/dev/null
    echo "host all all 0.0.0.0/0 trust" >> "$PGDATA/pg_hba.conf"
    echo "host all all ::/0 trust" >> "$PGDATA/pg_hba.conf"
    for db in stockpred ferretdb; do
        echo "CREATE DATABASE \"$db\";" | postgres --single -D "$PGDATA" postgres >/dev/null
    done
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' -c max_connections=200 \
    -c max_prepared_transactions=200 -c shared_buffers=128MB "$@"
