# Sourced by the scripts in containers/: where podman keeps its configuration and storage for this
# project (under the user's cache folder, never /etc/containers or /var/lib/containers), and the
# names everything is built and run under.
# shellcheck shell=bash
STOCKPRED_CACHE_DIR="${STOCKPRED_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/stockpred}"
CONTAINERS_HOME="${STOCKPRED_CONTAINERS_HOME:-$STOCKPRED_CACHE_DIR/containers}"
export CONTAINERS_CONF="$CONTAINERS_HOME/containers.conf"
export CONTAINERS_STORAGE_CONF="$CONTAINERS_HOME/storage.conf"
# podman-compose (PyPI) lives in its own virtualenv: its pins are not the app's.
PODMAN_COMPOSE="$CONTAINERS_HOME/podman-compose/bin/podman-compose"
BASE_IMAGE="${STOCKPRED_BASE_IMAGE:-local/debian:trixie}"
DEBIAN_SUITE="${STOCKPRED_DEBIAN_SUITE:-trixie}"
