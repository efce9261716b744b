#!/usr/bin/env bash
# Installs what runs the containers, idempotently: Debian's podman, runc, debootstrap, netavark
# with aardvark-dns and iptables, catatonit, podman-compose from PyPI in its own
# virtualenv, and podman's configuration for this machine kind (runc, explicit ulimits, cgroupfs
# for cgroup v1), kept under the user's cache folder (CONTAINERS_CONF, CONTAINERS_STORAGE_CONF).
#
# Usage: containers/bootstrap.sh [--help]
# Prints `export CONTAINERS_CONF=... CONTAINERS_STORAGE_CONF=...` hints at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
fi
# shellcheck source=containers/env.sh
source containers/env.sh
PODMAN_COMPOSE_VERSION="1.6.0"
PYTHON="${PYTHON:-python3.11}"
say() { printf '[containers] %s\n' "$*"; }

need_apt=()
command -v podman >/dev/null 2>&1 || need_apt+=(podman)
command -v runc >/dev/null 2>&1 || need_apt+=(runc)
command -v debootstrap >/dev/null 2>&1 || need_apt+=(debootstrap)
# Compose's service names resolve through aardvark-dns on a netavark network (Debian's podman
# defaults to CNI, without DNS); catatonit is the `init: true` PID 1 that forwards signals.
[ -x /usr/lib/podman/netavark ] || command -v netavark >/dev/null 2>&1 || need_apt+=(netavark)
[ -x /usr/lib/podman/aardvark-dns ] || command -v aardvark-dns >/dev/null 2>&1 || need_apt+=(aardvark-dns)
[ -x /usr/libexec/podman/catatonit ] || command -v catatonit >/dev/null 2>&1 || need_apt+=(catatonit)
# netavark sets up each network's NAT and port forwarding with iptables (netavark 1.4: "No such
# file or directory" without it). Debian's podman only Suggests it, so --no-install-recommends
# never brings it: `apt-cache depends podman netavark` is the list to check, not this machine.
command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || need_apt+=(iptables)
if ((${#need_apt[@]})); then
    say "installing Debian packages: ${need_apt[*]}"
    start=$(date +%s)
    sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends \
        "${need_apt[@]}" >/dev/null
    say "Debian packages installed in $(( $(date +%s) - start ))s"
fi

if [ "$("$PODMAN_COMPOSE" --version 2>/dev/null | grep -o 'podman-compose version [0-9.]*' | head -1)" \
        != "podman-compose version $PODMAN_COMPOSE_VERSION" ]; then
    say "installing podman-compose $PODMAN_COMPOSE_VERSION into $(dirname "$(dirname "$PODMAN_COMPOSE")")"
    venv=$(dirname "$(dirname "$PODMAN_COMPOSE")")
    [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "podman-compose==$PODMAN_COMPOSE_VERSION"
fi

mkdir -p "$CONTAINERS_HOME"
# This VM: the default crun and its rlimits fail (setrlimit), and cgroup v1 in hybrid mode needs
# runc with cgroupfs. Storage: overlay where the kernel allows it as root, else vfs.
driver="overlay"
[ "$(id -u)" -eq 0 ] || driver="vfs"
[ -n "${STOCKPRED_STORAGE_DRIVER:-}" ] && driver="$STOCKPRED_STORAGE_DRIVER"
conf_text="[containers]
default_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]
log_driver = \"k8s-file\"
init_path = \"$(command -v catatonit || echo /usr/libexec/podman/catatonit)\"

[network]
network_backend = \"netavark\"
network_config_dir = \"$CONTAINERS_HOME/networks\"

[engine]
runtime = \"runc\"
cgroup_manager = \"cgroupfs\"
events_logger = \"file\"
"
storage_text="[storage]
driver = \"$driver\"
graphroot = \"$CONTAINERS_HOME/storage\"
runroot = \"$CONTAINERS_HOME/run\"
"
[ "$(cat "$CONTAINERS_CONF" 2>/dev/null)" == "$(printf '%s' "$conf_text")" ] || { printf '%s' "$conf_text" > "$CONTAINERS_CONF"; say "wrote $CONTAINERS_CONF"; }
if [ ! -f "$CONTAINERS_STORAGE_CONF" ]; then
    printf '%s' "$storage_text" > "$CONTAINERS_STORAGE_CONF"
    say "wrote $CONTAINERS_STORAGE_CONF (driver $driver)"
fi
podman info --format '{{.Host.OCIRuntime.Name}} {{.Store.GraphDriverName}} {{.Store.GraphRoot}}' >/dev/null \
    || { echo "podman does not run with $CONTAINERS_CONF; see its output above" >&2; exit 1; }
say "podman $(podman version --format '{{.Client.Version}}') ready (storage $(podman info --format '{{.Store.GraphDriverName}}') in $CONTAINERS_HOME)"
