#!/usr/bin/env bash
# Entry point of the stockpred image: the run-time secrets (compose `secrets:`, mounted under
# /run/secrets) become the stack's secret files in $STOCKPRED_HOME (0600, as devstack keeps them)
# and, for moto, the engine's credentials; then the command replaces this shell (exec), so it
# receives SIGTERM itself.
set -euo pipefail
umask 077
mkdir -p "$STOCKPRED_HOME"
if [ -d /run/secrets ]; then
    for f in /run/secrets/*; do
        [ -f "$f" ] || continue
        install -m 0600 "$f" "$STOCKPRED_HOME/$(basename "$f")"
    done
fi
# The compose stack's Redis servers and Sentinels share one password: the state's and the cache's.
if [ -f "$STOCKPRED_HOME/redis-password" ]; then
    REDIS_PASSWORD=$(cat "$STOCKPRED_HOME/redis-password")
    CACHE_REDIS_PASSWORD=$REDIS_PASSWORD
    export REDIS_PASSWORD CACHE_REDIS_PASSWORD
fi
if [ -f "$STOCKPRED_HOME/aws-access-key-id" ]; then
    AWS_ACCESS_KEY_ID=$(cat "$STOCKPRED_HOME/aws-access-key-id")
    AWS_SECRET_ACCESS_KEY=$(cat "$STOCKPRED_HOME/aws-secret-access-key")
    export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
fi
exec "$@"
