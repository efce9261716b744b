#!/usr/bin/env bash
# The container stack, start to finish, with podman-compose on docker-compose.yml:
#   up     bootstrap podman (containers/bootstrap.sh), build what is missing (containers/build.sh,
#          cached), make the secrets (containers/secrets.sh), start, and wait until every
#          container with a health check is healthy (podman 4.3 runs no health checks by itself:
#          this runs them); prints the URLs.
#   down   stop and remove every container, the network and (unless --keep-data) the volumes.
#   ps | logs [SERVICE]   as podman-compose's.
#
# Usage: containers/compose.sh [--help] [-p PROJECT] [--keep-data] up|down|ps|logs [ARGS...]
# Environment: STOCKPRED_API_PORT (3000), STOCKPRED_WS_PORT (3001), STOCKPRED_POSTGRES_PORT, STOCKPRED_REDIS_PORT,
#   STOCKPRED_MONGO_PORT, STOCKPRED_MOTO_PORT, STOCKPRED_OPENSEARCH_PORT (host ports, 127.0.0.1),
#   STOCKPRED_SECRETS_DIR, COMPOSE_HEALTH_TIMEOUT (seconds, 240).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=containers/env.sh
source containers/env.sh
say() { printf '[compose] %s\n' "$*"; }
project="${COMPOSE_PROJECT_NAME:-stockpred}"
keep=0
while (($#)); do
    case "$1" in
        --help|-h) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -p|--project) project="$2"; shift 2 ;;
        --keep-data) keep=1; shift ;;
        *) break ;;
    esac
done
action="${1:-}"
shift || true
export STOCKPRED_SECRETS_DIR="${STOCKPRED_SECRETS_DIR:-$PWD/.local/compose-secrets}"
compose() { "$PODMAN_COMPOSE" -f docker-compose.yml -p "$project" "$@"; }

wait_healthy() {
    local deadline=$(( $(date +%s) + ${COMPOSE_HEALTH_TIMEOUT:-240} )) pending ctr
    while :; do
        pending=()
        for ctr in $(podman ps -a --filter "label=io.podman.compose.project=$project" --format '{{.Names}}'); do
            if [ "$(podman inspect --format '{{.State.Status}}' "$ctr")" != running ]; then
                echo "container $ctr is not running:" >&2
                podman logs --tail 30 "$ctr" >&2 || true
                return 1
            fi
            # Containers with a health check: run it now (no systemd timer runs it here).
            if [ -n "$(podman inspect --format '{{if .Config.Healthcheck}}yes{{end}}' "$ctr")" ]; then
                podman healthcheck run "$ctr" >/dev/null 2>&1 || pending+=("$ctr")
            fi
        done
        ((${#pending[@]})) || return 0
        if (( $(date +%s) > deadline )); then
            echo "not healthy after ${COMPOSE_HEALTH_TIMEOUT:-240}s: ${pending[*]}" >&2
            for ctr in "${pending[@]}"; do podman logs --tail 20 "$ctr" >&2 || true; done
            return 1
        fi
        sleep 1
    done
}

case "$action" in
    up)
        ./containers/bootstrap.sh
        ./containers/build.sh
        ./containers/secrets.sh "$STOCKPRED_SECRETS_DIR"
        start=$(date +%s)
        say "starting project $project"
        compose up -d --no-build "$@" > "$CONTAINERS_HOME/compose-$project.log" 2>&1 \
            || { tail -30 "$CONTAINERS_HOME/compose-$project.log" >&2; exit 1; }
        wait_healthy
        api="http://127.0.0.1:${STOCKPRED_API_PORT:-3000}"
        say "project $project healthy in $(( $(date +%s) - start ))s"
        cat <<MSG
  API          $api/api/stocks      (try: curl $api/api/stocks/SPX/details)
  WebSocket    ws://127.0.0.1:${STOCKPRED_WS_PORT:-3001}/local?token=<a login's token>
  PostgreSQL   postgresql://postgres@127.0.0.1:${STOCKPRED_POSTGRES_PORT:-15432}/stockpred
  Redis state  redis://127.0.0.1:${STOCKPRED_REDIS_PORT:-16379}/0
  MongoDB      mongodb://127.0.0.1:${STOCKPRED_MONGO_PORT:-17017}/ (FerretDB)
  AWS (moto)   http://127.0.0.1:${STOCKPRED_MOTO_PORT:-14566}
  OpenSearch   http://127.0.0.1:${STOCKPRED_OPENSEARCH_PORT:-19200}
  containers   CONTAINERS_CONF=$CONTAINERS_CONF CONTAINERS_STORAGE_CONF=$CONTAINERS_STORAGE_CONF podman ps
Stop with: make compose-down
MSG
        ;;
    down)
        [ -x "$PODMAN_COMPOSE" ] || { say "podman-compose is not installed: nothing to stop"; exit 0; }
        start=$(date +%s)
        # The gateway first, while what it flushes to (OpenSearch, moto) still answers:
        # podman-compose stops every container at once, Docker Compose in dependency order.
        gw=$(podman ps -q --filter "label=io.podman.compose.project=$project" --filter "label=io.podman.compose.service=devstack")
        [ -z "$gw" ] || podman stop -t 10 $gw >/dev/null 2>&1 || true
        args=(down)
        ((keep)) || args+=(-v)
        compose "${args[@]}" "$@" > "$CONTAINERS_HOME/compose-$project-down.log" 2>&1 \
            || { tail -30 "$CONTAINERS_HOME/compose-$project-down.log" >&2; exit 1; }
        # Whatever compose did not remove (a container of a service since renamed, say).
        left=$(podman ps -aq --filter "label=io.podman.compose.project=$project")
        [ -z "$left" ] || podman rm -f $left >/dev/null
        podman network rm -f "${project}_default" >/dev/null 2>&1 || true
        if ! ((keep)); then
            vols=$(podman volume ls -q --filter "label=io.podman.compose.project=$project")
            [ -z "$vols" ] || podman volume rm -f $vols >/dev/null
        fi
        rm -f "$CONTAINERS_HOME/compose-$project.log" "$CONTAINERS_HOME/compose-$project-down.log"
        say "project $project down in $(( $(date +%s) - start ))s$( ((keep)) && echo ' (volumes kept)')"
        ;;
    ps|logs)
        compose "$action" "$@"
        ;;
    *)
        echo "usage: containers/compose.sh [-p PROJECT] [--keep-data] up|down|ps|logs (see --help)" >&2
        exit 2
        ;;
esac
