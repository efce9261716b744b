#!/usr/bin/env bash
# Installs what the local stack needs, idempotently: Debian packages, the virtualenv, FerretDB.
# Safe to run on every `make run` / `make test`; each step is skipped when already satisfied.
set -euo pipefail
cd "$(dirname "$0")/.."

FERRETDB_VERSION="${FERRETDB_VERSION:-v1.24.2}"
CACHE_DIR="${STOCKPRED_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/stockpred}"
PYTHON="${PYTHON:-python3.11}"
say() { printf '[bootstrap] %s\n' "$*"; }

need_apt=()
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_apt+=(postgresql)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v redis-sentinel >/dev/null 2>&1 || need_apt+=(redis-sentinel)
if ((${#need_apt[@]})); then
    say "installing Debian packages: ${need_apt[*]}"
    sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
    # Debian's packages start their own servers where an init system runs; we use our own.
    for svc in redis-server redis-sentinel postgresql; do
        $sudo_cmd service "$svc" stop >/dev/null 2>&1 || true
    done
fi

stamp=".venv/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    say "creating the virtualenv .venv (dependencies pinned in pyproject.toml)"
    [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
    .venv/bin/pip install -q --upgrade "pip<26.3"  # chalice 1.34 requires pip<26.3
    start=$(date +%s)
    .venv/bin/pip install -q -e ".[dev]"
    say "pip install took $(( $(date +%s) - start ))s"
    rm -f .venv/.installed-*
    touch "$stamp"
fi

ferretdb="$CACHE_DIR/ferretdb-$FERRETDB_VERSION/ferretdb"
if [ ! -x "$ferretdb" ]; then
    export PATH="/usr/local/go/bin:$PATH"
    command -v go >/dev/null || { echo "Go is needed to build FerretDB (expected in /usr/local/go)" >&2; exit 1; }
    say "building FerretDB $FERRETDB_VERSION once into $ferretdb (about a minute on 2 cores)"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    # `go install pkg@version` is refused here (the proxy will not list FerretDB's versions), so
    # download the exact module, write the version file its release build generates, and build.
    src=$(cd "$work" && GOFLAGS=-modcacherw go mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" \
          | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
    cp -r "$src" "$work/src" && chmod -R u+w "$work/src"
    echo "$FERRETDB_VERSION" > "$work/src/build/version/version.txt"
    start=$(date +%s)
    (cd "$work/src" && GOFLAGS=-modcacherw go build -trimpath -o "$work/ferretdb" ./cmd/ferretdb)
    mkdir -p "$(dirname "$ferretdb")" && mv "$work/ferretdb" "$ferretdb"
    say "FerretDB built in $(( $(date +%s) - start ))s"
fi
