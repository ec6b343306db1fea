# Sourced by 40-nspawn.sh and 45-deb.sh (not a check itself: .ci/test runs .ci/checks/*.sh only).
# Debian 12 (systemd 252) booted in systemd-nspawn, the step counters and the helpers both use.
# The caller sets CHECK (the closing line's name), STEP_TIMEOUT (seconds per step) and W (a
# temporary directory), and calls nspawn_cleanup on exit.
# The root file system is built once by debootstrap (2-4 min) into $TLS_ECHO_NSPAWN_CACHE
# (default /var/cache/tls-echo-nspawn) and booted read-only with a tmpfs overlay, so it stays
# clean and is reused.
CACHE=${TLS_ECHO_NSPAWN_CACHE:-/var/cache/tls-echo-nspawn}
ROOT=$CACHE/rootfs
NSPID=""; LEADER=""
pass=0; fail=0
ok() { echo "PASS  $*"; pass=$((pass + 1)); }
ko() { echo "FAIL  $*"; fail=$((fail + 1)); }
die() { echo "$*"; echo "$CHECK: $pass passed, $((fail + 1)) failed"; exit 2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# nspawn_rootfs TOOLS...: root and the tools present, the cache lock taken (held until exit),
# the root file system built if missing.
nspawn_rootfs() {
  [ "$(id -u)" = 0 ] || die "needs root (systemd-nspawn)"
  local tool t
  for tool in systemd-nspawn debootstrap openssl nsenter python3 flock "$@"; do
    command -v "$tool" >/dev/null || die "$tool missing: bash .ci/setup.sh installs it"
  done
  mkdir -p "$CACHE"
  exec 9>"$CACHE/lock"
  flock -w 600 9 || die "another run holds $CACHE/lock"
  if [ ! -x "$ROOT/lib/systemd/systemd" ] || [ ! -x "$ROOT/usr/bin/kill" ]; then
    echo "building $ROOT with debootstrap (once, 2-4 min) ..."
    t=$(now); rm -rf "$ROOT.tmp"
    timeout 900 debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,procps bookworm \
      "$ROOT.tmp" >"$CACHE/debootstrap.log" 2>&1 || die "debootstrap failed, see $CACHE/debootstrap.log"
    rm -rf "$ROOT"; mv "$ROOT.tmp" "$ROOT"
    echo "rootfs built in $(since "$t")"
  fi
}

# nspawn_boot NSPAWN-OPTIONS...: boots the container (sharing the host network, so units
# listening on 127.0.0.1 inside are reachable from here) and waits for systemd to be up.
nspawn_boot() {
  local t state=""
  t=$(now)
  setsid systemd-nspawn -D "$ROOT" --boot --register=no --keep-unit --console=read-only \
    --volatile=overlay --system-call-filter=bpf "$@" </dev/null >"$W/boot.log" 2>&1 &
  NSPID=$!
  for _ in $(seq 100); do
    LEADER=$(pgrep -P "$NSPID" -x systemd | head -1); [ -n "$LEADER" ] && break; sleep 0.1
  done
  [ -n "$LEADER" ] || { cat "$W/boot.log"; die "the container did not start"; }
  for _ in $(seq 120); do
    state=$(IN systemctl is-system-running 2>/dev/null)
    case "$state" in running|degraded) break;; esac; sleep 0.25
  done
  case "$state" in running|degraded) echo "container booted ($state) in $(since "$t")";;
    *) cat "$W/boot.log"; die "systemd in the container did not come up (state '$state')";; esac
}

# IN COMMAND...: runs a command inside the container, bounded by STEP_TIMEOUT.
IN() { timeout "$STEP_TIMEOUT" nsenter -t "$LEADER" -a "$@"; }

nspawn_cleanup() {
  if [ -n "$LEADER" ]; then timeout 20 nsenter -t "$LEADER" -a systemctl poweroff >/dev/null 2>&1; fi
  if [ -n "$NSPID" ]; then
    timeout 30 tail --pid="$NSPID" -f /dev/null
    kill "$NSPID" 2>/dev/null
  fi
}

# s_client_echo PORT CA LINE: LINE comes back through openssl s_client, verifying against CA
# and 127.0.0.1; the client's stdin stays open until the echo is read, then EOF ends the
# session. The client's stderr is left in $W/s_client.err.
s_client_echo() {
  local reply=""
  coproc SC { timeout "$STEP_TIMEOUT" openssl s_client -connect "127.0.0.1:$1" -CAfile "$2" \
                -verify_return_error -verify_ip 127.0.0.1 -brief 2>"$W/s_client.err"; }
  printf '%s\n' "$3" >&"${SC[1]}"
  local out=${SC[0]} in=${SC[1]} pid=$SC_PID
  IFS= read -r -t "$STEP_TIMEOUT" reply <&"$out"
  exec {in}>&-
  wait "$pid" 2>/dev/null
  [ "$reply" = "$3" ]
}
