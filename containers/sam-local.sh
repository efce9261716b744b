#!/usr/bin/env bash
# `sam local start-api` for developers: the functions `sam build` made (.aws-sam/build), each in a
# warm container of the Lambda image built here (containers/lambda), on the compose stack's
# network and services. Brings up what is missing: podman, the images, the compose stack.
#
# Usage: containers/sam-local.sh [--help] [-p PROJECT] [--port PORT]   (API on 127.0.0.1:PORT, 3005)
#        containers/sam-local.sh [-p PROJECT] invoke FUNCTION --event FILE
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=containers/env.sh
source containers/env.sh
say() { printf '[sam-local] %s\n' "$*"; }
project="${COMPOSE_PROJECT_NAME:-stockpred}"
args=()
while (($#)); do
    case "$1" in
        --help|-h) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -p|--project) project="$2"; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
[ -f .aws-sam/build/template.yaml ] || { echo "run make build (sam build) first" >&2; exit 1; }
./containers/bootstrap.sh >/dev/null
./containers/build.sh lambda
if [ -z "$(podman ps -q --filter "label=io.podman.compose.project=$project" --filter "label=io.podman.compose.service=devstack")" ]; then
    say "compose project $project is not up: starting it"
    ./containers/compose.sh -p "$project" up
fi
if ((${#args[@]})) && [ "${args[0]}" = invoke ]; then
    exec .venv/bin/python -m containers.samlocal "${args[@]}" --project "$project"
fi
say "sam local start-api on http://127.0.0.1:${SAM_LOCAL_PORT:-3005} (Ctrl-C stops it and its containers)"
exec .venv/bin/python -m containers.samlocal start-api --project "$project" ${args[@]+"${args[@]}"}
