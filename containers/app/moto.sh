#!/usr/bin/env bash
# moto server as devstack runs it (devstack/moto_server.py: its Step Functions engine signs with
# the stack's credentials), on 0.0.0.0:4566. The engine sends Lambda tasks to
# http://localhost:$MOTO_PORT: socat forwards that port to devstack's gateway ($GATEWAY_ADDRESS).
set -euo pipefail
socat "TCP-LISTEN:${MOTO_PORT:-3000},bind=127.0.0.1,fork,reuseaddr" "TCP:${GATEWAY_ADDRESS:-devstack:3000}" &
exec python -m devstack.moto_server -H 0.0.0.0 -p "${PORT:-4566}"
