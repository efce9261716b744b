#!/usr/bin/env bash
# Makes the compose stack's run-time secrets once, as files in a folder only you can enter (0700;
# the files are 0444 so the containers' own users can read their bind mounts): the stack's AWS
# key pair (devstack's Invoke API and moto's Step Functions engine), the token signing secret,
# the service token, the pseudonym key and the Redis servers' password. Random, never in git,
# never in an image.
#
# Usage: containers/secrets.sh [--help] [DIR]   (default: $STOCKPRED_SECRETS_DIR or .local/compose-secrets)
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
fi
dir="${1:-${STOCKPRED_SECRETS_DIR:-.local/compose-secrets}}"
mkdir -p "$dir"
chmod 0700 "$dir"
made=()
make_secret() {
    local name="$1" value="$2"
    [ -s "$dir/$name" ] && return 0
    (umask 0277 && printf '%s' "$value" > "$dir/$name.tmp")
    chmod 0444 "$dir/$name.tmp"
    mv "$dir/$name.tmp" "$dir/$name"
    made+=("$name")
}
hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }
make_secret aws-access-key-id "AKIA$(hex 8 | tr 'a-f' 'A-F')"
make_secret aws-secret-access-key "$(hex 32)"
make_secret jwt-secret "$(hex 32)"
make_secret service-token "$(hex 32)"
make_secret pseudonym-key "$(hex 32)"
make_secret redis-password "$(hex 32)"
((${#made[@]})) && echo "[secrets] made ${made[*]} in $dir" || true
