#!/usr/bin/env bash
# A Sentinel monitoring the masters named in SENTINEL_MONITOR ("name=host:port,..."), with the
# stack's Redis password (/run/secrets/redis-password: it asks clients and other Sentinels for it
# and gives it to the servers) and the timings devstack uses (devstack/service_specs.py, _sentinel). Sentinel
# rewrites its configuration as it
# learns, so it is written fresh into /data at each start; the server replaces this shell (exec).
set -euo pipefail
conf=/data/sentinel.conf
password=$(cat /run/secrets/redis-password)
IFS=',' read -ra masters <<< "${SENTINEL_MONITOR:?SENTINEL_MONITOR must name the masters}"
# Each master must answer first: Sentinel refuses a hostname it cannot resolve yet.
deadline=$(( $(date +%s) + 120 ))
for m in "${masters[@]}"; do
    addr=${m#*=}
    until (exec 3<>"/dev/tcp/${addr%:*}/${addr##*:}") 2>/dev/null; do
        (( $(date +%s) < deadline )) || { echo "sentinel: $addr does not answer" >&2; exit 1; }
        sleep 0.5
    done
done
{
    echo "port ${SENTINEL_PORT:-26379}"
    echo "bind 0.0.0.0"
    echo "protected-mode no"
    echo "dir /data"
    echo "sentinel resolve-hostnames yes"
    echo "sentinel announce-hostnames yes"
    # The servers' password, which Sentinels also ask of their clients and of each other.
    echo "requirepass \"$password\""
    echo "sentinel sentinel-pass \"$password\""
    for m in "${masters[@]}"; do
        name=${m%%=*}; addr=${m#*=}
        echo "sentinel monitor $name ${addr%:*} ${addr##*:} ${SENTINEL_QUORUM:-2}"
        echo "sentinel auth-pass $name \"$password\""
        echo "sentinel down-after-milliseconds $name 1000"
        echo "sentinel failover-timeout $name 5000"
        echo "sentinel parallel-syncs $name 1"
    done
} > "$conf"
chmod 0600 "$conf"
exec redis-sentinel "$conf"
