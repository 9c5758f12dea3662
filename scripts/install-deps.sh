#!/usr/bin/env bash
# Installs what the test suite and benchmark need on a fresh Debian machine:
# the real peers (Postfix's smtp-source/smtp-sink, swaks, Prometheus and
# promtool for the shipped alert rules) and staticcheck;
# with --bench also postgrey, the greylisting peer of `make bench`.
# Idempotent; needs root only when a Debian package is missing.
set -euo pipefail

need=()
command -v smtp-sink >/dev/null 2>&1 || need+=(postfix)
command -v swaks >/dev/null 2>&1 || need+=(swaks)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
if [ "${1:-}" = --bench ]; then
  command -v postgrey >/dev/null 2>&1 || [ -x /usr/sbin/postgrey ] || need+=(postgrey)
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: missing ${need[*]}; run as root (apt-get install ${need[*]})" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  # Postfix asks how to configure itself; a gateway test machine needs no
  # local mail system, only its tools.
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# clamd and Debian's ClamAV test files: the tests run a real clamd.
"$(dirname "$0")/clamd-test.sh" install

gobin="$(go env GOPATH)/bin"
if [ ! -x "$gobin/staticcheck" ]; then
  go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
fi
