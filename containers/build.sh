#!/usr/bin/env bash
# Builds every image the container stack and `sam local` use, from package registries only:
#   1. local/debian:trixie: debootstrap (minbase) from the Debian mirror apt already uses, with the
#      host's locally added CA certificates trusted (for pip behind a TLS-inspecting proxy), then
#      `podman import`. Nothing is pulled from an image registry.
#   2. the images in containers/*/Dockerfile, FROM it (ARG BASE_IMAGE): each tagged
#      localhost/stockpred-<name>:latest. Podman's layer cache makes a second run take seconds.
#
# Usage: containers/build.sh [--help] [--base-only] [IMAGE...]
#   IMAGE: any of the folders under containers/ that hold a Dockerfile (default: all of them).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=containers/env.sh
source containers/env.sh
say() { printf '[build] %s\n' "$*"; }
base_only=0
images=()
for arg in "$@"; do
    case "$arg" in
        --help|-h) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --base-only) base_only=1 ;;
        -*) echo "unknown option $arg (see --help)" >&2; exit 2 ;;
        *) images+=("$arg") ;;
    esac
done
./containers/bootstrap.sh >/dev/null

debian_mirror() {
    # The first non-security archive in apt's sources (deb822 .sources or one-line .list).
    local uri
    uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ {print $2}' | grep -v security | head -1 || true)
    [ -n "$uri" ] || uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
        | awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; break}}' \
        | grep -v security | head -1 || true)
    echo "${uri:-http://deb.debian.org/debian}"
}

if ! podman image exists "$BASE_IMAGE"; then
    mirror=$(debian_mirror)
    say "building $BASE_IMAGE with debootstrap ($DEBIAN_SUITE, minbase) from $mirror"
    start=$(date +%s)
    rootfs=$(mktemp -d "$CONTAINERS_HOME/rootfs.XXXXXX")
    trap 'rm -rf "$rootfs"' EXIT
    debootstrap --variant=minbase --include=ca-certificates "$DEBIAN_SUITE" "$rootfs" "$mirror" \
        > "$CONTAINERS_HOME/debootstrap.log" 2>&1 \
        || { tail -20 "$CONTAINERS_HOME/debootstrap.log" >&2; exit 1; }
    # The same mirror inside the image, as apt's sources there.
    printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$mirror" "$DEBIAN_SUITE" "$DEBIAN_SUITE" > "$rootfs/etc/apt/sources.list.d/debian.sources"
    rm -f "$rootfs/etc/apt/sources.list"
    # Trust what the host trusts beyond Debian's bundle (never committed: read at build time).
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
        chroot "$rootfs" update-ca-certificates >/dev/null
    fi
    # Smaller: no apt lists, caches, docs or man pages, now or from packages installed later
    # (as Debian's own slim images; man1 stays, update-alternatives links into it).
    printf '%s\n' 'path-exclude=/usr/share/doc/*' 'path-include=/usr/share/doc/*/copyright' \
        'path-exclude=/usr/share/man/*' 'path-exclude=/usr/share/info/*' \
        'path-exclude=/usr/share/locale/*' 'path-include=/usr/share/locale/locale.alias' \
        > "$rootfs/etc/dpkg/dpkg.cfg.d/stockpred-slim"
    find "$rootfs/usr/share/doc" -type f ! -name copyright -delete
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
        "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
    mkdir -p "$rootfs/usr/share/man/man1"
    tar --numeric-owner -C "$rootfs" -c . | podman import --quiet \
        --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
    trap - EXIT
    say "$BASE_IMAGE built in $(( $(date +%s) - start ))s ($(podman image inspect --format '{{.Size}}' "$BASE_IMAGE" | awk '{printf "%d MB", $1/1e6}'))"
else
    say "$BASE_IMAGE exists"
fi
((base_only)) && exit 0

# FerretDB's binary: the one devstack/bootstrap.sh built from the Go module proxy.
stage_ferretdb() {
    local binary
    binary="$STOCKPRED_CACHE_DIR/ferretdb-${FERRETDB_VERSION:-v1.24.2}/ferretdb"
    [ -x "$binary" ] || ./devstack/bootstrap.sh
    cmp -s "$binary" containers/ferretdb/ferretdb || cp "$binary" containers/ferretdb/ferretdb
}

all=(app postgres redis ferretdb opensearch lambda)
((${#images[@]})) || images=("${all[@]}")
for name in "${images[@]}"; do
    case "$name" in
        app) context=. ;;
        postgres|redis|ferretdb|opensearch|lambda) context="containers/$name" ;;
        *) echo "no image named $name (one of: ${all[*]})" >&2; exit 2 ;;
    esac
    [ "$name" = ferretdb ] && stage_ferretdb
    tag="localhost/stockpred-$name:latest"
    start=$(date +%s)
    say "building $tag"
    log="$CONTAINERS_HOME/build-$name.log"
    # --network host: a build only fetches packages (Debian, PyPI, Maven Central) and needs no
    # network of its own (nor the NAT a bridge needs for it).
    if ! podman build --layers --network host --build-arg "BASE_IMAGE=$BASE_IMAGE" -f "containers/$name/Dockerfile" \
            -t "$tag" "$context" > "$log" 2>&1; then
        tail -30 "$log" >&2
        echo "building $tag failed: $log" >&2
        exit 1
    fi
    say "$tag built in $(( $(date +%s) - start ))s ($(podman image inspect --format '{{.Size}}' "$tag" | awk '{printf "%d MB", $1/1e6}'))"
done
# Layers no tag uses any more (an older build's): dropped, so the cache does not grow.
podman image prune -f >/dev/null 2>&1 || true
