#!/bin/sh
# ApplicationStart: start the service in the background on the box's port.
set -eu
dir="${GANTRY_BOX_DIR:?the agent sets GANTRY_BOX_DIR}"
port="${GANTRY_BOX_PORT:?the agent sets GANTRY_BOX_PORT}"
bin="${GANTRY_BIN:-gantry}"
# Its output goes to a file, so the hook's log closes when the hook ends.
nohup "$bin" sample-service --config "$PWD/config/service.yml" --port "$port" \
  >"$dir/service.log" 2>&1 </dev/null &
echo $! >"$dir/service.pid"
echo "started $(sed -n 's/^version: *//p' config/service.yml) on port $port (deployment $DEPLOYMENT_ID)"
