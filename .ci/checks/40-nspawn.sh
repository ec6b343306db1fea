#!/usr/bin/env bash
# The shipped units under a real systemd: boots Debian 12 (systemd 252) in systemd-nspawn,
# installs the binary (the debug build the tests already made: a release build would add
# minutes to CI and test nothing more here), deploy/tls-echo.toml, credentials and the units, then from the
# host over loopback (the container shares the host network):
#   listening unit:        start (Type=notify: returns once READY=1), watchdog pings seen,
#                          echo with `openssl s_client -verify_return_error`, IPAddressAllow=
#                          fence (a client from 127.0.0.2 is dropped), reload (RELOADING/READY,
#                          status text), echo again, certificate rotation, stop.
#   socket-activated pair: the same for tls-echo-activated.service through
#                          tls-echo-activated.socket (activated by the first connection) and
#                          /metrics through tls-echo-activated-metrics.socket.
# The container and the step helpers: lib/nspawn.bash (rootfs cached in
# /var/cache/tls-echo-nspawn). Needs root, systemd-container, debootstrap, openssl (.ci/setup.sh).
# Closing line: "nspawn: N passed, N failed"; exit 1 on a failed step, 2 on a setup problem.
set -uo pipefail
cd "$(dirname "$0")/../.."
TOP=$PWD
CHECK=nspawn
STEP_TIMEOUT=30          # seconds any one systemctl/openssl step may take
W=$(mktemp -d)
source .ci/checks/lib/nspawn.bash
trap 'nspawn_cleanup; rm -rf "$W"' EXIT
nspawn_rootfs

t=$(now)
timeout 1200 cargo build --locked -q || die "cargo build failed"
echo "build: $(since "$t")"
BIN=${CARGO_TARGET_DIR:-$TOP/target}/debug/tls-echo


PORT=$(free_port); MPORT=$(free_port)
[ "$PORT" != "$MPORT" ] || MPORT=$(free_port)

# Two PKIs: the second is what a certificate rotation installs.
"$BIN" gen-certs --out "$W/pki1" >/dev/null && "$BIN" gen-certs --out "$W/pki2" >/dev/null \
  || die "gen-certs failed"
mkdir -p "$W/etc" "$W/units/listening" "$W/units/activated"
install -m 600 "$W/pki1/server.pem" "$W/etc/cert.pem"
install -m 600 "$W/pki1/server.key" "$W/etc/key.pem"
sed -e "s#^listen = .*#listen = [\"127.0.0.1:$PORT\"]#" deploy/tls-echo.toml >"$W/etc/tls-echo.toml"
# The shipped units, with the test's ports and a fence that leaves out 127.0.0.2.
fence() {
  sed -e "s#^IPAddressAllow=localhost#IPAddressAllow=127.0.0.1/32#" \
      -e "s#^SocketBindAllow=tcp:4433#SocketBindAllow=tcp:$PORT#" \
      -e "s#^ListenStream=4433#ListenStream=127.0.0.1:$PORT#" -e "/^BindIPv6Only=/d" \
      -e "s#^ListenStream=127.0.0.1:9464#ListenStream=127.0.0.1:$MPORT#" "$1" >"$2"
}
fence deploy/tls-echo.service "$W/units/listening/tls-echo.service"
for u in deploy/socket-activated/*; do fence "$u" "$W/units/activated/${u##*/}"; done

nspawn_boot --bind-ro="$BIN:/usr/bin/tls-echo" --bind-ro="$W/etc:/etc/tls-echo" \
  --bind-ro="$W/units:/opt/units"

# echo_with CA: one line through openssl s_client, verified against CA.
echo_with() { s_client_echo "$PORT" "$1" "hello from the host"; }
# blocked_from SRC: no TLS byte reaches a client bound to SRC (the unit's IP fence drops it).
blocked_from() {
  python3 - "$1" "$PORT" <<'PY'
import socket, sys
try:
    s = socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=3, source_address=(sys.argv[1], 0))
    s.sendall(b"\x16\x03\x01\x00\x00"); s.settimeout(3)
    sys.exit(1 if s.recv(10) else 0)
except OSError:
    sys.exit(0)
PY
}
show() { IN systemctl show -p "$2" --value "$1"; }
# The unit's journal since the current phase began.
JOURNAL_BASE=0
journal() { IN journalctl -b -u "$SVC" --no-pager -o cat | tail -n +$((JOURNAL_BASE + 1)); }
# journal_has PATTERN: journald stores the service's stderr asynchronously; wait up to 10 s.
journal_has() {
  # Capture first: with pipefail, `journal | grep -q` fails when grep exits before journalctl
  # has written everything (SIGPIPE), even on a match.
  for _ in $(seq 40); do grep -q -- "$1" <<<"$(journal)" && return 0; sleep 0.25; done
  return 1
}

# phase NAME SERVICE START_UNITS...: runs every step against the units installed for NAME.
SVC=tls-echo.service
phase() {
  local name=$1; SVC=$2; shift 2
  echo "--- $name"
  JOURNAL_BASE=0; JOURNAL_BASE=$(journal | wc -l)
  IN sh -c "cp /opt/units/$name/* /etc/systemd/system/ && systemctl daemon-reload" || { ko "$name: install units"; return; }
  install -m 600 "$W/pki1/server.pem" "$W/etc/cert.pem"; install -m 600 "$W/pki1/server.key" "$W/etc/key.pem"
  local t; t=$(now)
  if IN systemctl start "$@"; then ok "$name: systemctl start $* ($(since "$t"))"
  else ko "$name: systemctl start $*"; IN systemctl --no-pager status "$SVC" | tail -5; journal | tail -20; return; fi

  t=$(now)
  if echo_with "$W/pki1/ca.pem"; then ok "$name: echo via openssl s_client -verify_return_error ($(since "$t"))"
  else ko "$name: echo ($(tr '\n' ' ' <"$W/s_client.err"))"; fi
  local active; active=$(show "$SVC" ActiveState)
  [ "$active" = active ] && ok "$name: $SVC active (Type=notify, READY=1 sent)" \
    || ko "$name: $SVC is '$active'"
  journal_has "self-test passed" && ok "$name: self-test passed before READY=1" || ko "$name: no self-test line"
  [ "$(show "$SVC" WatchdogTimestampMonotonic)" != 0 ] && ok "$name: watchdog pings received" \
    || ko "$name: no WATCHDOG=1 received"
  local pid; pid=$(show "$SVC" MainPID)
  echo "      sandbox of MainPID $pid: $(IN grep -E '^(Uid|NoNewPrivs|Seccomp|CapEff):' "/proc/$pid/status" | tr -s '\t\n' '  ')"
  blocked_from 127.0.0.2 && ok "$name: IPAddressAllow=127.0.0.1/32 drops a client from 127.0.0.2" \
    || ko "$name: a client from 127.0.0.2 got through the IP fence"
  if [ "$name" = activated ]; then
    local m; m=$(python3 -c "import urllib.request as u; print(u.urlopen('http://127.0.0.1:$MPORT/metrics', timeout=5).read().decode())" 2>&1)
    grep -q '^tls_echo_connections_accepted_total [1-9]' <<<"$m" \
      && ok "$name: /metrics through tls-echo-activated-metrics.socket" || ko "$name: /metrics: $(echo "$m" | tail -2)"
  fi

  t=$(now)
  install -m 600 "$W/pki2/server.pem" "$W/etc/cert.pem"; install -m 600 "$W/pki2/server.key" "$W/etc/key.pem"
  if IN systemctl reload "$SVC"; then ok "$name: systemctl reload ($(since "$t"))"; else ko "$name: systemctl reload"; fi
  local status=""
  for _ in $(seq 40); do
    status=$(show "$SVC" StatusText); case "$status" in *reload*) break;; esac; sleep 0.25
  done
  case "$status" in *"reload applied"*) ok "$name: RELOADING=1 then READY=1, status '$status'";;
    *) ko "$name: status after reload: '$status'";; esac
  if echo_with "$W/pki1/ca.pem" || echo_with "$W/pki2/ca.pem"; then ok "$name: echo after reload"; else ko "$name: echo after reload"; fi
  if echo_with "$W/pki2/ca.pem"; then
    echo "INFO  $name: replace + reload served the new certificate (credentials refreshed on reload)"
  else
    echo "INFO  $name: replace + reload kept the old certificate: this systemd does not refresh LoadCredential= on reload"
  fi
  t=$(now)
  if IN systemctl restart "$SVC" && echo_with "$W/pki2/ca.pem"; then
    ok "$name: replace + restart serves the new certificate ($(since "$t"))"
  else ko "$name: restart with the new certificate"; fi

  t=$(now)
  IN systemctl stop "$SVC" "$@"
  local result; result=$(show "$SVC" Result); active=$(show "$SVC" ActiveState)
  if [ "$active" = inactive ] && [ "$result" = success ] && journal_has "drained=true"; then
    ok "$name: systemctl stop: STOPPING=1, drained, exit success ($(since "$t"))"
  else ko "$name: stop: state '$active', result '$result'"; journal | tail -10; fi
  IN sh -c "rm -f /etc/systemd/system/tls-echo* && systemctl daemon-reload && systemctl reset-failed" >/dev/null 2>&1
}

phase listening tls-echo.service tls-echo.service
phase activated tls-echo-activated.service tls-echo-activated.socket tls-echo-activated-metrics.socket
echo "--- journal of the last run (tail):"
journal | tail -8 | sed 's/^/      /'
echo "nspawn: $pass passed, $fail failed"
[ $fail = 0 ]
