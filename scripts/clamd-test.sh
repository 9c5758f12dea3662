#!/usr/bin/env bash
# clamd with the project's test signatures, for tests, `make bench` and
# trying mxgate by hand. The Go tests start their own clamd through
# filter/clamav/clamdtest; this script is for everything else.
#
#   scripts/clamd-test.sh install      install clamav-daemon and clamav-testfiles
#                                      if missing (Debian, as root); idempotent
#   scripts/clamd-test.sh run [PORT]   run clamd in the foreground on
#                                      127.0.0.1:PORT (default 3310) and a unix
#                                      socket in a temp dir, until Ctrl-C
#
# The signatures are ../shared/testdata/clamav (EICAR and clam.exe): no
# freshclam, no network, ready in well under a second. Environment:
# STREAM_MAX_LENGTH (default 36700160, mxgate's default max_message_bytes).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
sigs="$root/../shared/testdata/clamav"

clamd_bin() {
  command -v clamd 2>/dev/null || { [ -x /usr/sbin/clamd ] && echo /usr/sbin/clamd; } || true
}

install() {
  local need=()
  [ -n "$(clamd_bin)" ] || need+=(clamav-daemon)
  [ -d /usr/share/clamav-testfiles ] || need+=(clamav-testfiles)
  [ ${#need[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "clamd-test: missing ${need[*]}; run as root (apt-get install ${need[*]})" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # The package's own clamd and freshclam services are not used by the
  # tests; where systemd runs they start and fail for lack of a database,
  # which is harmless.
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}

run() {
  local port="${1:-3310}" bin dir
  bin="$(clamd_bin)"
  if [ -z "$bin" ]; then
    echo "clamd-test: clamd not found: run \`make deps\` or \`$0 install\`" >&2
    exit 1
  fi
  dir="$(mktemp -d /tmp/clamd.XXXXXX)"
  trap 'rm -rf "$dir"' EXIT
  mkdir "$dir/db"
  cp "$sigs"/*.hdb "$sigs"/*.ndb "$dir/db/"
  # No User line: clamd keeps the identity that started it (root in CI),
  # which owns everything in $dir.
  cat >"$dir/clamd.conf" <<CONF
Foreground yes
LocalSocket $dir/clamd.sock
TCPSocket $port
TCPAddr 127.0.0.1
DatabaseDirectory $dir/db
TemporaryDirectory $dir
LogFile $dir/clamd.log
LogTime yes
PidFile $dir/clamd.pid
StreamMaxLength ${STREAM_MAX_LENGTH:-36700160}
CONF
  echo "clamd-test: clamav.address tcp:127.0.0.1:$port or unix:$dir/clamd.sock (log $dir/clamd.log)"
  # In the background and waited for, so that a TERM or INT sent to this
  # script reaches clamd and $dir is removed afterwards.
  "$bin" --foreground --config-file="$dir/clamd.conf" &
  local pid=$!
  trap 'kill "$pid" 2>/dev/null; wait "$pid"; rm -rf "$dir"; exit 0' INT TERM
  wait "$pid"
}

case "${1:-}" in
  install) install ;;
  run) shift; run "$@" ;;
  *) echo "usage: $0 install | run [PORT]" >&2; exit 2 ;;
esac
