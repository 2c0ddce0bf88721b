#!/bin/sh
# ApplicationStop: stop the service this box runs, if any, and wait until it is gone.
set -eu
pid_file="${GANTRY_BOX_DIR:?the agent sets GANTRY_BOX_DIR}/service.pid"
[ -f "$pid_file" ] || exit 0
pid=$(cat "$pid_file")
if kill -0 "$pid" 2>/dev/null; then
  kill "$pid"
  i=0
  while kill -0 "$pid" 2>/dev/null; do
    i=$((i + 1))
    [ "$i" -le 100 ] || { kill -9 "$pid" 2>/dev/null || true; break; }
    sleep 0.1
  done
fi
rm -f "$pid_file"
echo "stopped service $pid"
