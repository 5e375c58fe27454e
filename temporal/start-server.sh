#!/usr/bin/env bash
# Starts the Temporal server with temporal/config/mxfailover.yaml: the one command line for `npm run cluster`
# (src/stack/temporal-server.ts, with TEMPORAL_SERVER pointing at .tools/bin) and for docker-compose.yml.
#
# No authorizer is configured (--allow-no-auth): the frontend must be reachable only by our own services, on
# 127.0.0.1 here and inside compose's network there. Listening on every interface (BIND_ON_IP=0.0.0.0, compose),
# the server needs an address the other members reach it at: the container's own, unless given.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [[ "${BIND_ON_IP:-127.0.0.1}" == 0.0.0.0 && -z "${TEMPORAL_BROADCAST_ADDRESS:-}" ]]; then
  TEMPORAL_BROADCAST_ADDRESS=$(hostname -i | awk '{ print $1 }')
  export TEMPORAL_BROADCAST_ADDRESS
fi
exec "${TEMPORAL_SERVER:-temporal-server}" --root "$here" --config config --env mxfailover --allow-no-auth start
