#!/usr/bin/env bash
# The whole comparison of BENCHMARKS.md: builds tls-echo and the peers, makes throwaway
# certificates with `tls-echo gen-certs`, and for each server and case starts a fresh server
# pinned to CPU 0, runs `tls-echo bench` pinned to CPU 1 (sampling the server's CPU time and
# RSS from /proc), stops the server. Prints the table and writes it, with the raw JSON lines,
# to $OUT (default benches/results/). Loopback only; every run is bounded by --duration.
#
#   bash benches/compare.sh                        # everything, 10 s windows
#   DURATION=3s SERVERS="tls-echo go" bash benches/compare.sh
#   python3 benches/table.py run1/results.jsonl run2/results.jsonl run3/results.jsonl  # medians
#
# Installs Debian's golang-go and nodejs when missing (not part of CI).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
IDLE_CONNS=${IDLE_CONNS:-10000}
MAX_IDLE_CONNS=${MAX_IDLE_CONNS:-19000}
SERVERS=${SERVERS:-"tls-echo tls-echo-raw tokio-rustls go node python"}
CASES=${CASES:-"handshake pingpong16 pingpong1000 paced1000 bulk idle idle-echoed"}
OUT=${OUT:-benches/results}
SOURCES=127.0.0.1-127.0.0.40
PORT=4490

need=()
command -v go >/dev/null || need+=(golang-go)
command -v node >/dev/null || need+=(nodejs)
command -v taskset >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

cargo build --release --locked --bin tls-echo --example peer-tokio-rustls
BIN=target/release/tls-echo
source benches/lib.bash
GOCACHE=$work/gocache GOPATH=$work/gopath go build -o "$work/go-echo" benches/peers/echo.go
mkdir -p "$OUT"
results=$OUT/results.jsonl
: > "$results"

start() { # NAME: starts it on CPU 0, sets server_pid, waits until the port listens
  local cmd
  case $1 in
    tls-echo) cmd=("$BIN" --cert "$C/server.pem" --key "$C/server.key" --listen "127.0.0.1:$PORT" "${LIMITS[@]}") ;;
    tls-echo-raw) cmd=("$BIN" --mode raw --cert "$C/server.pem" --key "$C/server.key" --listen "127.0.0.1:$PORT" "${LIMITS[@]}") ;;
    tokio-rustls) cmd=(target/release/examples/peer-tokio-rustls "$C/server.pem" "$C/server.key" "127.0.0.1:$PORT") ;;
    go) cmd=("$work/go-echo" "$C/server.pem" "$C/server.key" "127.0.0.1:$PORT") ;;
    node) cmd=(node benches/peers/echo.js "$C/server.pem" "$C/server.key" "$PORT") ;;
    python) cmd=(python3 benches/peers/echo.py "$C/server.pem" "$C/server.key" "$PORT") ;;
    *) echo "unknown server $1" >&2; exit 2 ;;
  esac
  start_server "${cmd[@]}"
}

bench() { # NAME CASE BENCH-ARGS...
  local name=$1 case=$2
  shift 2
  echo "== $name: $case" >&2
  start "$name"
  taskset -c 1 "$BIN" bench "$@" --connect "127.0.0.1:$PORT" --ca "$C/ca.pem" \
    --source-ip "$SOURCES" --server-pid "$server_pid" --label "$name $case" --json \
    >>"$results" || echo "   ($name $case reported errors; see its line)" >&2
  stop_server
}

for name in $SERVERS; do
  for case in $CASES; do
    case $case in
      handshake) bench "$name" "$case" handshake --conns 32 --duration "$DURATION" ;;
      pingpong16) bench "$name" "$case" pingpong --conns 16 --size 64 --duration "$DURATION" ;;
      pingpong1000) bench "$name" "$case" pingpong --conns 1000 --size 64 --duration "$DURATION" ;;
      # The same load for every server (below the slowest one's capacity), so latency compares
      # the servers rather than how far each one saturates the client.
      paced1000) bench "$name" "$case" pingpong --conns 1000 --size 64 --rate 15000 --duration "$DURATION" ;;
      bulk) bench "$name" "$case" bulk --conns 4 --size 16384 --duration "$DURATION" ;;
      idle) bench "$name" "$case" idle --conns "$IDLE_CONNS" --duration 5s ;;
      # Connections that echoed one line each, then went quiet.
      idle-echoed) bench "$name" "$case" idle --echo-first --conns "$IDLE_CONNS" --duration 5s ;;
      idle-max) bench "$name" "$case" idle --conns "$MAX_IDLE_CONNS" --duration 10s ;;
    esac
  done
done
if [[ " $SERVERS " == *" tls-echo "* ]] && [[ " $CASES " != *" idle-max "* ]]; then
  bench tls-echo idle-max idle --conns "$MAX_IDLE_CONNS" --duration 10s
fi

python3 benches/table.py "$results" | tee "$OUT/table.md"
