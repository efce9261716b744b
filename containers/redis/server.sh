#!/usr/bin/env bash
# A redis-server that requires the stack's password (/run/secrets/redis-password, compose's
# run-time secret) from every client and gives it to its master (a replica, or a demoted master
# that syncs again): written into a 0600 file under /data, never on the command line where `ps`
# would show it. The arguments are redis-server's own; the server replaces this shell (exec).
#
# Usage: redis-entrypoint [--help] [redis-server options...]
set -euo pipefail
if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then
    sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
fi
secret=/run/secrets/redis-password
[ -s "$secret" ] || { echo "redis: $secret is missing (containers/secrets.sh makes it)" >&2; exit 1; }
conf=/data/auth.conf
(umask 077 && { printf 'requirepass "%s"\n' "$(cat "$secret")"; printf 'masterauth "%s"\n' "$(cat "$secret")"; } > "$conf")
exec redis-server "$conf" "$@"
