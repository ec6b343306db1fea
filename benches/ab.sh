#!/usr/bin/env bash
# A/B: two or more server builds measured side by side, alternating, REPEATS times, short
# windows; prints the median per server and figure (per server CPU-second, KiB per idle
# connection). Server on CPU 0, client (this build's `tls-echo bench`) on CPU 1; loopback only.
#
#   SERVERS="base=/path/to/old/tls-echo engine=target/release/tls-echo \
#            tokio-rustls=target/release/examples/peer-tokio-rustls" bash benches/ab.sh
#
# A name containing "tokio-rustls" is started as the peer example (raw echo); others as
# tls-echo (line mode; the bulk-raw case adds --mode raw, and skips the peer). The paced1000
# case offers every server the same 15,000 msgs/s and compares p99 latency.
#
# PROFILE=1 also records CPU 0 with `perf record -g` for PROFILE_SECONDS (default 2) of each
# window and prints where the server's time went (kernel, crypto, allocator, rustls, tokio,
# the rest) with benches/profile_split.py; the data files stay in $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-3s}
REPEATS=${REPEATS:-3}
IDLE_CONNS=${IDLE_CONNS:-10000}
CASES=${CASES:-"handshake pingpong16 pingpong1000 bulk bulk-raw idle idle-echoed"}
SERVERS=${SERVERS:?"SERVERS=\"name=binary ...\""}
BIN=${CLIENT:-target/release/tls-echo}
PORT=${PORT:-47391}
SOURCES=127.0.0.1-127.0.0.40
source benches/lib.bash
mkdir -p "${OUT:-$work}"
results=${OUT:-$work}/ab.jsonl
: >"$results"

start() { # NAME BINARY [EXTRA...]
  local name=$1 bin=$2
  shift 2
  if [[ $name == *tokio-rustls* ]]; then
    start_server "$bin" "$C/server.pem" "$C/server.key" "127.0.0.1:$PORT"
  else
    start_server "$bin" --cert "$C/server.pem" --key "$C/server.key" \
      --listen "127.0.0.1:$PORT" "${LIMITS[@]}" "$@"
  fi
}

run() { # NAME BINARY CASE
  local name=$1 bin=$2 case=$3 extra=() args=()
  case $case in
    handshake) args=(handshake --conns 32) ;;
    pingpong16) args=(pingpong --conns 16 --size 64) ;;
    pingpong1000) args=(pingpong --conns 1000 --size 64) ;;
    paced1000) args=(pingpong --conns 1000 --size 64 --rate 15000) ;;
    bulk) args=(bulk --conns 4 --size 16384) ;;
    bulk-raw) args=(bulk --conns 4 --size 16384); extra=(--mode raw) ;;
    idle) args=(idle --conns "$IDLE_CONNS") ;;
    idle-echoed) args=(idle --conns "$IDLE_CONNS" --echo-first) ;;
  esac
  if [[ $name == *tokio-rustls* && $case == bulk-raw ]]; then return 0; fi
  start "$name" "$bin" "${extra[@]}"
  local perf_pid= data="${OUT:-$work}/$name-$case.perf"
  if [ -n "${PROFILE:-}" ]; then
    # After the client's one-second warm-up, so connection set-up stays out of the profile.
    (sleep 1.2 && exec perf record -q -g -C 0 -o "$data" -- sleep "${PROFILE_SECONDS:-2}") \
      >/dev/null 2>&1 &
    perf_pid=$!
  fi
  taskset -c 1 "$BIN" bench "${args[@]}" --duration "$DURATION" --connect "127.0.0.1:$PORT" \
    --ca "$C/ca.pem" --source-ip "$SOURCES" --server-pid "$server_pid" \
    --label "$name $case" --json 2>/dev/null >>"$results" || echo "  ($name $case: errors)" >&2
  if [ -n "$perf_pid" ]; then
    wait "$perf_pid" || true
    python3 benches/profile_split.py "$data" >&2
  fi
  stop_server
}

for r in $(seq "$REPEATS"); do
  for case in $CASES; do
    for s in $SERVERS; do
      echo "== repeat $r: ${s%%=*} $case" >&2
      run "${s%%=*}" "${s#*=}" "$case"
    done
  done
done

python3 - "$results" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def figure(r):
    if r["label"].endswith("paced1000"):
        return r.get("p99_us"), "p99 us at 15,000 msgs/s"
    if r["mode"] == "idle":
        return r.get("kib_per_conn"), "KiB/conn"
    if r["mode"] == "bulk":
        return r.get("mb_per_cpu_s"), "MB per CPU-s"
    return r.get("rate_per_cpu_s"), "per CPU-s"
cells = {}
for r in rows:
    name, case = r["label"].split(" ", 1)
    v, unit = figure(r)
    cells.setdefault((case, unit), {}).setdefault(name, []).append(r | {"figure": v})
for (case, unit), by in cells.items():
    parts = []
    for name, rs in by.items():
        vals = [r["figure"] for r in rs if r["figure"] is not None]
        errs = sum(sum(r.get("errors", {}).values()) for r in rs)
        steal = max((r.get("steal_pct") or 0.0 for r in rs), default=0.0)
        med = statistics.median(vals) if vals else float("nan")
        parts.append(f"{name} {med:,.1f} ({' / '.join(f'{v:,.1f}' for v in vals)}; "
                     f"errors {errs}; steal up to {steal:.1f}%)")
    print(f"{case} [{unit}]: " + " | ".join(parts))
EOF
echo "raw JSON lines: $results" >&2
