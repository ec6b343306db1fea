#!/usr/bin/env bash
# Echo latency while the server reloads (issue 11): the server pinned to CPU 0 (one runtime
# worker, as in a one-core container), `tls-echo bench pingpong` pinned to CPU 1, and SIGHUP
# every INTERVAL during the measured window; the same run without reloads as the baseline. The
# allow-file has ALLOW_ENTRIES lines (default 100,000), so that a reload has real work to do.
# Each binary and case is run ROUNDS times, alternating binaries, so drift hits all alike.
#
#   bash benches/reload.sh OLD_BIN NEW_BIN      # e.g. a build of an older commit vs this one
#   ROUNDS=5 INTERVAL=0.02 bash benches/reload.sh target/release/tls-echo
#
# Prints one line per run: binary, case, round, msgs/s, p50/p99/p99.9 in microseconds.
# Loopback only; each run is bounded by DURATION.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || set -- target/release/tls-echo
ROUNDS=${ROUNDS:-3}
INTERVAL=${INTERVAL:-0.05}
DURATION=${DURATION:-6s}
PORT=${PORT:-4491}
BIN=${BENCH:-${!#}}
source benches/lib.bash
# A large allow-file makes each reload cost what a big deployment's does (parsing 10^5 lines):
# a reload that blocks the only worker then shows in the echo latency.
ALLOW_ENTRIES=${ALLOW_ENTRIES:-100000}
python3 - "$ALLOW_ENTRIES" >"$work/allow.txt" <<'PY'
import sys
n = int(sys.argv[1])
print("127.0.0.0/8")
for i in range(n):
    print(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}/32")
PY

run() { # BIN CASE ROUND
  local bin=$1 case=$2 round=$3 hup=
  # Signal handlers are installed before the listener is bound: a SIGHUP from here on reloads.
  start_server "$bin" --cert "$C/server.pem" --key "$C/server.key" \
    --listen "127.0.0.1:$PORT" "${LIMITS[@]}" --allow-file "$work/allow.txt"
  if [ "$case" = reloading ]; then
    (while kill -HUP "$server_pid" 2>/dev/null; do sleep "$INTERVAL"; done) &
    hup=$!
  fi
  taskset -c 1 "$BIN" bench pingpong --conns 16 --size 64 --duration "$DURATION" \
    --connect "127.0.0.1:$PORT" --ca "$C/ca.pem" --json >"$work/out.json" 2>/dev/null || true
  if [ -n "$hup" ]; then kill "$hup" 2>/dev/null || true; fi
  stop_server
  python3 - "$bin" "$case" "$round" "$work/out.json" <<'PY'
import json, sys
bin_, case, rnd, path = sys.argv[1:]
o = json.loads(open(path).read().splitlines()[-1])
print(f"{bin_}\t{case}\tround {rnd}\t{o.get('rate', o.get('msgs_per_s', 0)):.0f}/s\t"
      f"p50 {o['p50_us']}\tp99 {o['p99_us']}\tp99.9 {o['p999_us']}\terrors {o.get('errors', '?')}")
PY
}

for round in $(seq "$ROUNDS"); do
  for case in quiet reloading; do
    for bin in "$@"; do
      run "$bin" "$case" "$round"
    done
  done
done
