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
# The root file system is built once by debootstrap (~4 min) into $TLS_ECHO_NSPAWN_CACHE
# (default /var/cache/tls-echo-nspawn) and booted read-only with a tmpfs overlay, so it stays
# clean and is reused. Needs root, systemd-container, debootstrap, openssl (.ci/setup.sh).
# Closing line: "nspawn: N passed, N failed"; exit 1 on a failed step, 2 on a setup problem.
set -uo pipefail
cd "$(dirname "$0")/../.."
TOP=$PWD
CACHE=${TLS_ECHO_NSPAWN_CACHE:-/var/cache/tls-echo-nspawn}
ROOT=$CACHE/rootfs
STEP_TIMEOUT=30          # seconds any one systemctl/openssl step may take
pass=0; fail=0
ok() { echo "PASS  $*"; pass=$((pass + 1)); }
ko() { echo "FAIL  $*"; fail=$((fail + 1)); }
die() { echo "$*"; echo "nspawn: $pass passed, $((fail + 1)) failed"; exit 2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

[ "$(id -u)" = 0 ] || die "needs root (systemd-nspawn)"
for tool in systemd-nspawn debootstrap openssl nsenter python3 flock; do
  command -v "$tool" >/dev/null || die "$tool missing: bash .ci/setup.sh installs it"
done

mkdir -p "$CACHE"
exec 9>"$CACHE/lock"
flock -w 600 9 || die "another run holds $CACHE/lock"
if [ ! -x "$ROOT/lib/systemd/systemd" ] || [ ! -x "$ROOT/usr/bin/kill" ]; then
  echo "building $ROOT with debootstrap (once, ~4 min) ..."
  t=$(now); rm -rf "$ROOT.tmp"
  timeout 900 debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,procps bookworm \
    "$ROOT.tmp" >"$CACHE/debootstrap.log" 2>&1 || die "debootstrap failed, see $CACHE/debootstrap.log"
  rm -rf "$ROOT"; mv "$ROOT.tmp" "$ROOT"
  echo "rootfs built in $(since "$t")"
fi

t=$(now)
timeout 1200 cargo build --locked -q || die "cargo build failed"
echo "build: $(since "$t")"
BIN=${CARGO_TARGET_DIR:-$TOP/target}/debug/tls-echo

W=$(mktemp -d); NSPID=""; LEADER=""
cleanup() {
  if [ -n "$LEADER" ]; then timeout 20 nsenter -t "$LEADER" -a systemctl poweroff >/dev/null 2>&1; fi
  if [ -n "$NSPID" ]; then
    timeout 30 tail --pid="$NSPID" -f /dev/null
    kill "$NSPID" 2>/dev/null
  fi
  rm -rf "$W"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
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

t=$(now)
setsid systemd-nspawn -D "$ROOT" --boot --register=no --keep-unit --console=read-only \
  --volatile=overlay --system-call-filter=bpf \
  --bind-ro="$BIN:/usr/bin/tls-echo" --bind-ro="$W/etc:/etc/tls-echo" \
  --bind-ro="$W/units:/opt/units" </dev/null >"$W/boot.log" 2>&1 &
NSPID=$!
for _ in $(seq 100); do
  LEADER=$(pgrep -P "$NSPID" -x systemd | head -1); [ -n "$LEADER" ] && break; sleep 0.1
done
[ -n "$LEADER" ] || { cat "$W/boot.log"; die "the container did not start"; }
IN() { timeout "$STEP_TIMEOUT" nsenter -t "$LEADER" -a "$@"; }
state=""
for _ in $(seq 120); do
  state=$(IN systemctl is-system-running 2>/dev/null)
  case "$state" in running|degraded) break;; esac; sleep 0.25
done
case "$state" in running|degraded) echo "container booted ($state) in $(since "$t")";;
  *) cat "$W/boot.log"; die "systemd in the container did not come up (state '$state')";; esac

# echo_with CA: one line through openssl s_client, verifying against CA and 127.0.0.1; the
# client's stdin stays open until the echo is read, then EOF ends the session.
echo_with() {
  local reply=""
  coproc SC { timeout "$STEP_TIMEOUT" openssl s_client -connect "127.0.0.1:$PORT" -CAfile "$1" \
                -verify_return_error -verify_ip 127.0.0.1 -brief 2>"$W/s_client.err"; }
  printf 'hello from the host\n' >&"${SC[1]}"
  local out=${SC[0]} in=${SC[1]} pid=$SC_PID
  IFS= read -r -t "$STEP_TIMEOUT" reply <&"$out"
  exec {in}>&-
  wait "$pid" 2>/dev/null
  [ "$reply" = "hello from the host" ]
}
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
