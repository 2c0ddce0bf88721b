#!/bin/sh
# ValidateService: the service answers its health check (waiting out a slow start).
set -eu
"${GANTRY_BIN:-gantry}" sample-service --probe --port "${GANTRY_BOX_PORT:?}" --timeout 50
