#!/usr/bin/env bash
# What `make run` runs once the binaries are built: clamd with the test
# signatures (scripts/clamd-test.sh run), the stand-in backend (devsink),
# and the node in the foreground, started only once clamd answers PING and
# devsink listens, so that the node never begins by reporting clamd down.
# Ctrl-C (or SIGTERM) stops all three.
#
# Environment, with make run's defaults (paths relative to the repository):
#   MXGATE_BIN=bin/mxgate  DEVSINK_BIN=bin/devsink  CONFIG=deployments/dev.yaml
#   CLAMD_PORT=3310              the port of the config's clamav.address
#   DEVSINK_ADDR=127.0.0.1:2626  the config's backend
#   DELIVERED=tmp/delivered      where devsink stores what it receives
#   READY_TIMEOUT=30             seconds to wait for clamd and devsink
set -euo pipefail
cd "$(dirname "$0")/.."

mxgate="${MXGATE_BIN:-bin/mxgate}"
devsink="${DEVSINK_BIN:-bin/devsink}"
config="${CONFIG:-deployments/dev.yaml}"
clamd_port="${CLAMD_PORT:-3310}"
sink_addr="${DEVSINK_ADDR:-127.0.0.1:2626}"
delivered="${DELIVERED:-tmp/delivered}"
timeout="${READY_TIMEOUT:-30}"

fail() {
  echo "dev-run: $*" >&2
  exit 1
}

[ -x "$mxgate" ] || fail "$mxgate not built (make build)"
[ -x "$devsink" ] || fail "$devsink not built (go build -o $devsink ./deployments/devsink)"
mkdir -p "$delivered"

pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

scripts/clamd-test.sh run "$clamd_port" &
clamd=$!
pids+=("$clamd")
scripts/clamd-test.sh wait "$clamd_port" "$timeout" "$clamd" || exit 1

"$devsink" -listen "$sink_addr" -dir "$delivered" &
sink=$!
pids+=("$sink")
deadline=$((SECONDS + timeout))
until { exec 3<>"/dev/tcp/${sink_addr%:*}/${sink_addr##*:}"; } 2>/dev/null; do
  kill -0 "$sink" 2>/dev/null || fail "devsink exited before it listened on $sink_addr"
  [ "$SECONDS" -lt "$deadline" ] || fail "devsink did not listen on $sink_addr within ${timeout}s"
  sleep 0.1
done
exec 3<&-

# In the foreground and not exec'd: when the node stops, the EXIT trap stops
# clamd and devsink.
"$mxgate" serve -config "$config"
