#!/usr/bin/env bash
# Usage: wait-for.sh HOST:PORT... -- COMMAND...
# Waits (up to WAIT_FOR_SECONDS, default 180) until every HOST:PORT accepts a TCP connection,
# then replaces itself with COMMAND (exec: COMMAND gets the signals). For runtimes that do not
# wait for `depends_on: condition: service_healthy` (podman-compose before podman 4.6).
set -euo pipefail
targets=()
while (($#)) && [ "$1" != "--" ]; do targets+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
deadline=$(( $(date +%s) + ${WAIT_FOR_SECONDS:-180} ))
for target in "${targets[@]}"; do
    until (exec 3<>"/dev/tcp/${target%:*}/${target##*:}") 2>/dev/null; do
        if (( $(date +%s) > deadline )); then
            echo "wait-for: $target did not answer in ${WAIT_FOR_SECONDS:-180}s" >&2
            exit 1
        fi
        sleep 0.5
    done
done
exec "$@"
