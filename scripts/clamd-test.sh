#!/usr/bin/env bash
# clamd with the project's test signatures, for tests, `make run`, `make
# bench` and trying mxgate by hand. The Go tests start their own clamd
# through filter/clamav/clamdtest; this script is for everything else.
#
#   scripts/clamd-test.sh install      install clamav-daemon and clamav-testfiles
#                                      if missing (Debian, as root); idempotent
#   scripts/clamd-test.sh run [PORT]   run clamd in the foreground on
#                                      127.0.0.1:PORT (default 3310) and a unix
#                                      socket in a temp dir, until Ctrl-C
#   scripts/clamd-test.sh wait PORT [SECONDS] [PID]
#                                      wait until the clamd on 127.0.0.1:PORT
#                                      answers PING (default 30 s); with PID,
#                                      give up as soon as that process is gone
#   scripts/clamd-test.sh check        start a clamd with the test signatures
#                                      on a free port, check that it answers
#                                      PING and finds EICAR, stop it; on
#                                      failure one line on stderr says why
#
# The signatures are testdata/clamav in the repository (EICAR and clam.exe):
# no freshclam, no network, ready in well under a second. Environment:
# STREAM_MAX_LENGTH (default 36700160, mxgate's default max_message_bytes).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
sigs="$root/testdata/clamav"

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
  # dir is global: the EXIT trap that removes it runs outside this function.
  local port="${1:-3310}" bin
  bin="$(clamd_bin)"
  if [ -z "$bin" ]; then
    echo "clamd-test: clamd not found: run \`make deps\` or \`$0 install\`" >&2
    exit 1
  fi
  if ! ls "$sigs"/*.hdb "$sigs"/*.ndb >/dev/null 2>&1; then
    echo "clamd-test: no test signatures in $sigs" >&2
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

# ping PORT: one zPING to 127.0.0.1:PORT over bash's /dev/tcp; succeeds on
# PONG within 2 s.
ping_clamd() {
  local port="$1" reply=""
  { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null || return 1
  printf 'zPING\0' >&3 || { exec 3<&-; return 1; }
  IFS= read -r -d '' -t 2 reply <&3 || true
  exec 3<&-
  [ "$reply" = PONG ]
}

# wait PORT [SECONDS] [PID]: poll PING until it answers, the deadline
# passes, or PID (when given) has exited.
wait_clamd() {
  local port="${1:?usage: $0 wait PORT [SECONDS] [PID]}" secs="${2:-30}" pid="${3:-}"
  local deadline=$((SECONDS + secs))
  until ping_clamd "$port"; do
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      echo "clamd-test: clamd on 127.0.0.1:$port exited before it answered PING" >&2
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "clamd-test: clamd on 127.0.0.1:$port did not answer PING within ${secs}s" >&2
      return 1
    fi
    sleep 0.1
  done
}

# scan_eicar PORT: zINSTREAM of the EICAR test string (assembled here so that
# this file is not itself flagged) must come back FOUND.
scan_eicar() {
  local port="$1" reply=""
  local eicar='X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-'
  eicar+='TEST-FILE!$H+H*'
  { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null || { echo "cannot connect to 127.0.0.1:$port"; return 1; }
  # zINSTREAM, one chunk: 4-byte big-endian length (68 = 0x44), the bytes,
  # then a zero length.
  printf 'zINSTREAM\0\0\0\0\x44%s\0\0\0\0' "$eicar" >&3
  IFS= read -r -d '' -t 10 reply <&3 || true
  exec 3<&-
  case "$reply" in
    *Eicar*FOUND) return 0 ;;
    "") echo "no reply to an EICAR scan" ;;
    *) echo "EICAR not detected (reply: $reply)" ;;
  esac
  return 1
}

# check: start clamd with the test signatures on a free loopback port, see
# that it answers PING and detects EICAR, stop it. Prints nothing on
# success, one line on stderr on failure.
check() {
  local bin port try pid log why=""
  bin="$(clamd_bin)"
  if [ -z "$bin" ]; then
    echo "clamd-test: clamd: not installed (Debian package clamav-daemon)" >&2
    return 1
  fi
  log="$(mktemp /tmp/clamd-check.XXXXXX)"
  why="found no free loopback port"
  for try in 1 2 3; do
    # A port below the kernel's ephemeral range that nothing listens on;
    # if another process takes it first, clamd exits and the next try
    # picks another.
    port=$((20000 + RANDOM % 12000))
    { exec 4<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null && { exec 4<&-; continue; }
    "$0" run "$port" >"$log" 2>&1 &
    pid=$!
    if why="$(wait_clamd "$port" 30 "$pid" 2>&1)"; then
      why="$(scan_eicar "$port")" && why=""
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      break
    fi
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    why="${why#clamd-test: }"
    why="$why ($(grep -v '^clamd-test:' "$log" | tail -n 1))"
  done
  rm -f "$log"
  if [ -n "$why" ]; then
    echo "clamd-test: clamd: $why" >&2
    return 1
  fi
}

case "${1:-}" in
  install) install ;;
  run) shift; run "$@" ;;
  ping) shift; ping_clamd "${1:?usage: $0 ping PORT}" ;;
  wait) shift; wait_clamd "$@" ;;
  check) check ;;
  *) echo "usage: $0 install | run [PORT] | wait PORT [SECONDS] [PID] | check" >&2; exit 2 ;;
esac
