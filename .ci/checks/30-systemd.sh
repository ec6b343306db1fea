#!/usr/bin/env bash
# Static checks of the shipped systemd units, no running systemd needed:
#   systemd-analyze verify   in a throwaway --root (the host's unit library, our units, dummy
#                            executables for Exec*= paths); ANY stderr line fails, because
#                            verify exits 0 on unknown keys and unparsable values.
#   systemd-analyze security --offline=yes, exposure at most MAX_EXPOSURE (default 1.5);
#                            the figures are printed.
#   tls-echo check           the example config with throwaway certificates, as ExecStartPre.
# Closing line: "systemd: N passed, N failed"; exit 1 on any failure, 2 on a missing tool.
set -uo pipefail
cd "$(dirname "$0")/../.."
MAX=${MAX_EXPOSURE:-1.5}
command -v systemd-analyze >/dev/null || { echo "systemd-analyze missing: bash .ci/setup.sh installs it"; exit 2; }
pass=0; fail=0
ok() { echo "PASS  $*"; pass=$((pass + 1)); }
ko() { echo "FAIL  $*"; fail=$((fail + 1)); }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT

# verify UNIT... : all units of one set-up verified together in their own root.
verify() {
  local R="$T/root-$1"; shift
  mkdir -p "$R/etc/systemd/system" "$R/usr/lib/systemd"
  cp -r /usr/lib/systemd/system "$R/usr/lib/systemd/"
  cp "$@" "$R/etc/systemd/system/"
  grep -hE '^Exec[A-Za-z]*=' "$@" | sed -E 's/^[^=]+=[-@:+!]*//' | awk '{print $1}' | sort -u |
    while read -r exe; do
      case "$exe" in /*) mkdir -p "$R$(dirname "$exe")"; printf '#!/bin/sh\n' >"$R$exe"; chmod +x "$R$exe";; esac
    done
  local names; names=$(for u in "$@"; do basename "$u"; done)
  local err rc
  err=$(systemd-analyze verify --man=no --generators=no --root="$R" $names 2>&1 >/dev/null); rc=$?
  if [ $rc = 0 ] && [ -z "$err" ]; then ok "verify $*"
  else ko "verify $* (rc=$rc):"; echo "$err" | sed "s#$R##g; s/^/      /"; fi
}

# exposure UNIT: prints the figure, fails above MAX.
exposure() {
  local thr out rc score
  thr=$(awk -v m="$MAX" 'BEGIN { printf "%d", m * 10 + 0.5 }')
  out=$(systemd-analyze security --offline=yes --threshold="$thr" --no-pager "$1" 2>&1); rc=$?
  score=$(echo "$out" | sed -n 's/.*Overall exposure level for [^:]*: //p')
  if [ $rc = 0 ] && [ -n "$score" ]; then ok "exposure $1: $score (max $MAX)"
  else ko "exposure $1: ${score:-unknown} (max $MAX); remaining items:"; echo "$out" | grep '✗' | sed 's/^/      /'; fi
}

verify listening deploy/tls-echo.service
verify activated deploy/socket-activated/tls-echo-activated.service \
  deploy/socket-activated/tls-echo-activated.socket deploy/socket-activated/tls-echo-activated-metrics.socket
exposure deploy/tls-echo.service
exposure deploy/socket-activated/tls-echo-activated.service

BIN=${CARGO_TARGET_DIR:-target}/debug/tls-echo
if [ -x "$BIN" ]; then
  "$BIN" gen-certs --out "$T/pki" >/dev/null
  if out=$("$BIN" check --config deploy/tls-echo.toml --cert "$T/pki/server.pem" --key "$T/pki/server.key" 2>&1); then
    ok "tls-echo check --config deploy/tls-echo.toml"
  else ko "tls-echo check --config deploy/tls-echo.toml:"; echo "$out" | sed 's/^/      /'; fi
else
  ko "tls-echo check: $BIN missing (cargo build first)"
fi

echo "systemd: $pass passed, $fail failed"
[ $fail = 0 ]
