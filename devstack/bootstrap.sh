#!/usr/bin/env bash
# Installs what the local stack needs, idempotently: Debian packages (chromium for the browser
# tests among them), the virtualenv, FerretDB, OpenSearch (the log store: Java 17, its system user),
# what builds and runs the functions as Lambda does: Python 3.13, the runtime's boto3, aws-sam-cli
# (in .tools/sam), checkov (in .tools/checkov) and asl-validator (in .tools/node_modules), and the dashboard's npm packages
# (web/node_modules, exactly as web/package-lock.json pins them).
# Safe to run on every `make run` / `make test`; each step is skipped when already satisfied.
set -euo pipefail
cd "$(dirname "$0")/.."

FERRETDB_VERSION="${FERRETDB_VERSION:-v1.24.2}"
OPENSEARCH_VERSION="2.19.6"  # 3.x needs Java 21; keep in step with devstack/binaries.py
CACHE_DIR="${STOCKPRED_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/stockpred}"
PYTHON="${PYTHON:-python3.11}"
SAM_CLI_VERSION="1.170.0"
ASL_VALIDATOR_VERSION="4.0.0"
BOTO3_VERSION="1.44.5"      # what Lambda's runtime provides to the built functions (not shipped)
BOTOCORE_VERSION="1.44.8"
say() { printf '[bootstrap] %s\n' "$*"; }
cleanup=()
trap 'rm -rf "${cleanup[@]}"' EXIT

need_apt=()
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_apt+=(postgresql)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v redis-sentinel >/dev/null 2>&1 || need_apt+=(redis-sentinel)
# OpenSearch runs on Java 17 (found by its release file, as devstack/binaries.py finds it).
grep -qs '^JAVA_VERSION="17[."]' /usr/lib/jvm/*/release || need_apt+=(openjdk-17-jre-headless)
command -v unzip >/dev/null 2>&1 || need_apt+=(unzip)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# The fault matrix (tests/e2e/test_fault_matrix.py) cuts one loopback replication link with it.
command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || need_apt+=(iptables)
# The browser tests (tests/browser) drive Debian's chromium with Playwright, which downloads no
# browser of its own here (never `playwright install`); DejaVu gives the pages a font.
[ -x /usr/bin/chromium ] || need_apt+=(chromium fonts-dejavu-core)
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
    cleanup+=("$work")
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

# OpenSearch, the log store: Maven Central's integ-test-zip distribution (no bundled JDK, no
# plugins), verified against the SHA-512 published beside it and unpacked atomically. Running as
# root it goes to /opt/stockpred (root's home is closed to the `opensearch` user that runs it), else
# into the cache. Read-only for everyone but root: each stack gets its own copy of config/.
opensearch_url="https://repo1.maven.org/maven2/org/opensearch/distribution/integ-test-zip/opensearch/$OPENSEARCH_VERSION/opensearch-$OPENSEARCH_VERSION.zip"
if [ -n "${STOCKPRED_OPENSEARCH_HOME:-}" ]; then
    opensearch_home="$STOCKPRED_OPENSEARCH_HOME"
elif [ "$(id -u)" -eq 0 ]; then
    opensearch_home="/opt/stockpred/opensearch-$OPENSEARCH_VERSION"
else
    opensearch_home="$CACHE_DIR/opensearch-$OPENSEARCH_VERSION"
fi
if [ ! -x "$opensearch_home/bin/opensearch" ]; then
    if [ -e "$opensearch_home" ]; then
        echo "$opensearch_home exists but holds no OpenSearch: remove it and run this again" >&2
        exit 1
    fi
    say "downloading OpenSearch $OPENSEARCH_VERSION (about 54 MB) into $opensearch_home"
    start=$(date +%s)
    mkdir -p "$(dirname "$opensearch_home")"
    os_tmp=$(mktemp -d "$(dirname "$opensearch_home")/.opensearch-$OPENSEARCH_VERSION.XXXXXX")
    cleanup+=("$os_tmp")
    curl -fsSL --retry 3 -o "$os_tmp/opensearch.zip" "$opensearch_url"
    sha512=$(curl -fsSL --retry 3 "$opensearch_url.sha512" | cut -d' ' -f1)
    if ! echo "$sha512  $os_tmp/opensearch.zip" | sha512sum --check --quiet --status; then
        echo "OpenSearch $OPENSEARCH_VERSION: the download does not match $opensearch_url.sha512" >&2
        exit 1
    fi
    unzip -q "$os_tmp/opensearch.zip" -d "$os_tmp/unpacked"
    chmod -R u+rwX,go+rX,go-w "$os_tmp/unpacked/opensearch-$OPENSEARCH_VERSION"
    mv -T "$os_tmp/unpacked/opensearch-$OPENSEARCH_VERSION" "$opensearch_home"
    say "OpenSearch unpacked in $(( $(date +%s) - start ))s ($(du -sh "$opensearch_home" | cut -f1))"
fi
if [ "$(id -u)" -eq 0 ]; then
    # OpenSearch refuses to run as root: the stack runs it as this system user. The stack's folder
    # (0710) lets its group `stockpred-services` (postgres, opensearch) reach their own folders
    # below it, and nothing else (see Stack.ensure_root).
    if ! getent passwd opensearch >/dev/null; then
        say "creating the system user opensearch"
        useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin opensearch
    fi
    getent group stockpred-services >/dev/null || { say "creating the group stockpred-services"; groupadd --system stockpred-services; }
    for member in postgres opensearch; do
        getent passwd "$member" >/dev/null || continue
        if ! id -nG "$member" | tr ' ' '\n' | grep -qx stockpred-services; then
            usermod -a -G stockpred-services "$member"
        fi
    done
fi

# Python 3.13, Lambda's runtime: `sam build` needs it on PATH and devstack runs the built
# functions on it. pyenv has it on these machines; .tools/bin/python3.13 points at the one found.
lambda_python="${LAMBDA_PYTHON:-}"
if [ -z "$lambda_python" ]; then
    lambda_python=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.13.*/bin/python3.13 2>/dev/null | sort -V | tail -1 || true)
    [ -n "$lambda_python" ] || lambda_python=$(command -v python3.13 || true)
fi
if [ -z "$lambda_python" ] || ! "$lambda_python" -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null; then
    echo "Python 3.13 (Lambda's python3.13 runtime) was not found. Install it with" >&2
    echo "  pyenv install 3.13     (or: apt-get install python3.13 on Debian trixie)" >&2
    echo "or point LAMBDA_PYTHON at a python3.13 executable, then run make again." >&2
    exit 1
fi
mkdir -p .tools/bin
ln -sfn "$lambda_python" .tools/bin/python3.13

runtime_dir="$CACHE_DIR/lambda-runtime-py3.13-boto3-$BOTO3_VERSION"
if [ ! -d "$runtime_dir" ]; then
    say "installing boto3 $BOTO3_VERSION for Python 3.13 into $runtime_dir (Lambda's runtime provides it)"
    rm -rf "$runtime_dir.tmp"
    "$lambda_python" -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-compile --target "$runtime_dir.tmp" \
        "boto3==$BOTO3_VERSION" "botocore==$BOTOCORE_VERSION"
    # Lambda's runtime ships its boto3 byte-compiled; the workers run with -B and never write .pyc.
    "$lambda_python" -m compileall -q -j 0 "$runtime_dir.tmp" >/dev/null
    mv "$runtime_dir.tmp" "$runtime_dir"
fi

# Tools with pins of their own, each in its own virtualenv under .tools/<name>:
# aws-sam-cli, and checkov, the outside judge of template.yaml (tests/unit/test_template_safety.py).
CHECKOV_VERSION="3.3.30"
tool_venv() {  # tool_venv NAME PACKAGE==VERSION: (re)installs it unless `--version` already says VERSION
    local name=$1 spec=$2 start
    start=$(date +%s)
    say "installing $spec into .tools/$name (its own virtualenv: its pins differ from ours)"
    [ -x ".tools/$name/bin/python" ] || "$PYTHON" -m venv ".tools/$name"
    ".tools/$name/bin/pip" install -q --disable-pip-version-check "$spec"
    say "$spec installed in $(( $(date +%s) - start ))s"
}
[ "$(.tools/sam/bin/sam --version 2>/dev/null)" == "SAM CLI, version $SAM_CLI_VERSION" ] \
    || tool_venv sam "aws-sam-cli==$SAM_CLI_VERSION"
[ "$(.tools/checkov/bin/checkov --version 2>/dev/null)" == "$CHECKOV_VERSION" ] \
    || tool_venv checkov "checkov==$CHECKOV_VERSION"

# The dashboard's browser libraries (lightweight-charts, axe-core): `npm ci` installs exactly the
# lock file, again whenever the lock changes (the stamp holds the lock's hash).
web_stamp="web/node_modules/.installed-$(sha256sum web/package-lock.json | cut -c1-16)"
if [ ! -f "$web_stamp" ]; then
    command -v npm >/dev/null || { echo "npm is needed for the dashboard's packages (apt-get install npm)" >&2; exit 1; }
    say "installing the dashboard's npm packages into web/node_modules (npm ci, web/package-lock.json)"
    (cd web && npm ci --silent --no-audit --no-fund >/dev/null)
    touch "$web_stamp"
fi

if [ ! -x .tools/node_modules/.bin/asl-validator ] \
        || ! grep -q "\"version\": \"$ASL_VALIDATOR_VERSION\"" .tools/node_modules/asl-validator/package.json; then
    command -v npm >/dev/null || { echo "npm is needed for asl-validator (apt-get install npm)" >&2; exit 1; }
    say "installing asl-validator $ASL_VALIDATOR_VERSION into .tools/node_modules"
    npm install --silent --no-audit --no-fund --prefix .tools "asl-validator@$ASL_VALIDATOR_VERSION" >/dev/null
fi
