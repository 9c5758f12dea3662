#!/usr/bin/env bash
# Installs what the test suite and benchmark need on a fresh Debian machine,
# then checks that each peer can do what the tests ask of it:
#
#   swaks                     a real SMTP client; must support TLS (the
#                             Perl modules Net::SSLeay and IO::Socket::SSL)
#   smtp-source, smtp-sink    Postfix's load tools; one message must go
#                             from one to the other over loopback
#   promtool, prometheus      check the shipped alert rules, scrape a node
#   clamd                     starts with testdata/clamav, answers PING,
#                             finds EICAR (scripts/clamd-test.sh check)
#   staticcheck               the linter of `make lint`
#   redis-server              the Bayes store's tests; starts on a loopback
#                             port and answers PING
#   rspamd                    the rspamd check's e2e test runs a private
#                             instance of Debian's rspamd with its stock
#                             configuration
#   chromium                  the quarantine page's browser test: headless
#                             Chromium renders a local file (--dump-dom)
#   postgrey                  with --bench only: the greylisting peer of
#                             `make bench`
#   _rspamd user              with --bench only: `make bench` runs its
#                             private rspamd's workers as the user the
#                             Debian package creates
#
#   scripts/install-deps.sh [--bench]          install what is missing, then check
#   scripts/install-deps.sh --check [--bench]  only check
#
# A failed check stops the script with one line on stderr naming the tool
# and what it lacks, e.g. "install-deps: swaks: no TLS support (Net::SSLeay
# missing)", and exit status 1. Idempotent; needs root only when a Debian
# package is missing.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
check_only=0
bench=0
for arg in "$@"; do
  case "$arg" in
    --check) check_only=1 ;;
    --bench) bench=1 ;;
    *) echo "usage: $0 [--check] [--bench]" >&2; exit 2 ;;
  esac
done

fail() {
  echo "install-deps: $*" >&2
  exit 1
}

# sbin finds a tool in PATH or in /usr/sbin, which is not in every user's
# PATH (Postfix's tools, clamd).
sbin() {
  command -v "$1" 2>/dev/null || { [ -x "/usr/sbin/$1" ] && echo "/usr/sbin/$1"; } || true
}

# firstline runs a command and prints the first line of its output.
firstline() {
  "$@" 2>&1 | head -n 1 || true
}

install_packages() {
  local need=()
  command -v swaks >/dev/null 2>&1 || need+=(swaks)
  # swaks --tls needs these; swaks only recommends them, and
  # --no-install-recommends leaves them out.
  perl -MNet::SSLeay -e1 >/dev/null 2>&1 || need+=(libnet-ssleay-perl)
  perl -MIO::Socket::SSL -e1 >/dev/null 2>&1 || need+=(libio-socket-ssl-perl)
  { [ -n "$(sbin smtp-sink)" ] && [ -n "$(sbin smtp-source)" ]; } || need+=(postfix)
  { command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; } || need+=(prometheus)
  [ -n "$(sbin redis-server)" ] || need+=(redis-server)
  { [ -n "$(sbin rspamd)" ] && [ -f /etc/rspamd/rspamd.conf ]; } || need+=(rspamd)
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  if [ "$bench" = 1 ] && [ -z "$(sbin postgrey)" ]; then
    need+=(postgrey)
  fi
  if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
      fail "missing ${need[*]}; run as root (apt-get install ${need[*]})"
    fi
    export DEBIAN_FRONTEND=noninteractive
    # Postfix asks how to configure itself; a gateway test machine needs no
    # local mail system, only its tools.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi

  # clamd and Debian's ClamAV test files: the tests run a real clamd.
  "$here/clamd-test.sh" install

  local gobin
  gobin="$(go env GOPATH)/bin"
  if [ ! -x "$gobin/staticcheck" ]; then
    go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
  fi
}

check_swaks() {
  command -v swaks >/dev/null 2>&1 || fail "swaks: not installed (Debian package swaks)"
  local support tls
  support="$(swaks --support 2>&1 || true)"
  tls="$(grep -E '^(===|\*\*\*) TLS ' <<<"$support" || true)"
  case "$tls" in
    "=== TLS supported"*) return 0 ;;
    *requires*) fail "swaks: no TLS support (${tls##*requires } missing)" ;;
    "") fail "swaks: no TLS support (swaks --support does not list TLS)" ;;
    *) fail "swaks: no TLS support (${tls#\*\*\* })" ;;
  esac
}

# check_postfix_tools: smtp-sink on a loopback port receives one message
# from smtp-source and dumps it to a file.
check_postfix_tools() {
  local sink source dir port pid user=() try why
  sink="$(sbin smtp-sink)"
  source="$(sbin smtp-source)"
  [ -n "$sink" ] || fail "smtp-sink: not installed (Debian package postfix)"
  [ -n "$source" ] || fail "smtp-source: not installed (Debian package postfix)"
  dir="$(mktemp -d /tmp/install-deps.XXXXXX)"
  # As root smtp-sink must be told whom to run as; that user writes the dump.
  if [ "$(id -u)" = 0 ]; then
    user=(-u nobody)
    chmod 777 "$dir"
  fi
  why="found no free loopback port"
  for try in 1 2 3; do
    port=$((20000 + RANDOM % 12000))
    { exec 4<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null && { exec 4<&-; continue; }
    "$sink" "${user[@]}" -D "$dir/dump" "127.0.0.1:$port" 10 >"$dir/sink.log" 2>&1 &
    pid=$!
    why=""
    local deadline=$((SECONDS + 10))
    until { exec 4<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null; do
      if ! kill -0 "$pid" 2>/dev/null; then
        why="smtp-sink: does not run ($(head -n 1 "$dir/sink.log"))"
        break
      fi
      if [ "$SECONDS" -ge "$deadline" ]; then
        why="smtp-sink: did not listen on 127.0.0.1:$port within 10s"
        break
      fi
      sleep 0.1
    done
    if [ -n "$why" ]; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      continue
    fi
    exec 4<&-
    if ! timeout 10 "$source" -m 1 -f check@example.org -t sink@example.test -S install-deps "127.0.0.1:$port" >"$dir/source.log" 2>&1; then
      why="smtp-source: cannot send a message to smtp-sink ($(head -n 1 "$dir/source.log"))"
    else
      deadline=$((SECONDS + 5))
      until grep -q '^X-Mail-Args: <check@example.org>' "$dir/dump" 2>/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then
          why="smtp-sink: did not store the message smtp-source sent"
          break
        fi
        sleep 0.1
      done
    fi
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    break
  done
  rm -rf "$dir"
  [ -z "$why" ] || fail "$why"
}

check_prometheus() {
  local tool out
  for tool in promtool prometheus; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool: not installed (Debian package prometheus)"
    out="$(firstline "$tool" --version)"
    "$tool" --version >/dev/null 2>&1 || fail "$tool: does not run ($out)"
  done
}

check_staticcheck() {
  local bin out
  bin="$(go env GOPATH)/bin/staticcheck"
  [ -x "$bin" ] || fail "staticcheck: not installed (go install honnef.co/go/tools/cmd/staticcheck@v0.8.2)"
  out="$(firstline "$bin" -version)"
  "$bin" -version >/dev/null 2>&1 || fail "staticcheck: does not run ($out)"
}

check_clamd() {
  local out
  out="$("$here/clamd-test.sh" check 2>&1)" || fail "${out#clamd-test: }"
}

# check_redis: redis-server starts on a free loopback port with its data in
# a temporary directory and answers PING.
check_redis() {
  local bin dir port pid try why reply
  bin="$(sbin redis-server)"
  [ -n "$bin" ] || fail "redis-server: not installed (Debian package redis-server)"
  dir="$(mktemp -d /tmp/install-deps.XXXXXX)"
  why="found no free loopback port"
  for try in 1 2 3; do
    port=$((20000 + RANDOM % 12000))
    { exec 4<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null && { exec 4<&-; continue; }
    "$bin" --port "$port" --bind 127.0.0.1 --dir "$dir" --save "" --appendonly no \
      --daemonize no --logfile "$dir/redis.log" >"$dir/redis.out" 2>&1 &
    pid=$!
    why=""
    local deadline=$((SECONDS + 10))
    until { exec 4<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null; do
      if ! kill -0 "$pid" 2>/dev/null; then
        why="redis-server: does not run ($(head -n 1 "$dir/redis.out" "$dir/redis.log" 2>/dev/null | grep -v '^==>' | head -n 1))"
        break
      fi
      if [ "$SECONDS" -ge "$deadline" ]; then
        why="redis-server: did not listen on 127.0.0.1:$port within 10s"
        break
      fi
      sleep 0.1
    done
    if [ -z "$why" ]; then
      printf 'PING\r\n' >&4
      reply=""
      IFS= read -r -t 5 reply <&4 || true
      exec 4<&-
      [ "${reply%$'\r'}" = "+PONG" ] || why="redis-server: did not answer PING on 127.0.0.1:$port (got '${reply%$'\r'}')"
    fi
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    [ "$why" = "" ] && break
    case "$why" in *"does not run"*) break ;; esac
  done
  rm -rf "$dir"
  [ -z "$why" ] || fail "$why"
}

check_rspamd() {
  local bin out
  bin="$(sbin rspamd)"
  [ -n "$bin" ] || fail "rspamd: not installed (Debian package rspamd)"
  [ -f /etc/rspamd/rspamd.conf ] || fail "rspamd: no stock configuration (/etc/rspamd/rspamd.conf missing)"
  out="$(firstline "$bin" --version)"
  "$bin" --version >/dev/null 2>&1 || fail "rspamd: does not run ($out)"
}

# check_rspamd_user: the bench's rspamd drops privileges to _rspamd.
check_rspamd_user() {
  getent passwd _rspamd >/dev/null 2>&1 || fail "rspamd: no _rspamd user (reinstall the Debian package rspamd)"
}

# check_chromium: headless Chromium, as the e2e test runs it, renders a
# file and runs its script.
check_chromium() {
  local dir out
  command -v chromium >/dev/null 2>&1 || fail "chromium: not installed (Debian package chromium)"
  dir="$(mktemp -d /tmp/install-deps.XXXXXX)"
  printf '<html><body><p id="x">static</p><script>document.getElementById("x").textContent="rendered"</script></body></html>' >"$dir/t.html"
  out="$(timeout 60 chromium --headless --no-sandbox --disable-gpu --disable-background-networking --no-first-run \
    --user-data-dir="$dir/profile" --dump-dom "file://$dir/t.html" 2>/dev/null || true)"
  rm -rf "$dir"
  case "$out" in
    *'<p id="x">rendered</p>'*) ;;
    *) fail "chromium: headless --dump-dom did not render a test page" ;;
  esac
}

check_postgrey() {
  local bin out
  bin="$(sbin postgrey)"
  [ -n "$bin" ] || fail "postgrey: not installed (Debian package postgrey)"
  out="$(firstline "$bin" --version)"
  "$bin" --version >/dev/null 2>&1 || fail "postgrey: does not run ($out)"
}

[ "$check_only" = 1 ] || install_packages

check_swaks
check_postfix_tools
check_prometheus
check_staticcheck
check_clamd
check_redis
check_rspamd
check_chromium
[ "$bench" = 0 ] || check_postgrey
[ "$bench" = 0 ] || check_rspamd_user
echo "install-deps: ok: swaks with TLS, smtp-source -> smtp-sink, promtool, prometheus, staticcheck, clamd (PING, EICAR), redis-server (PING), rspamd, chromium (headless)$([ "$bench" = 0 ] || echo ', postgrey, _rspamd user')"
