# Sourced by the TLS checks: throwaway certificates and real tls-echo processes on ephemeral
# loopback ports. The bound address is parsed from the server's "listening addr=" log line.
# Provides: WORK (temp dir, removed on exit), CERTS, BIN, start_server NAME [ARGS...] which sets
# ADDR_<NAME> / PORT_<NAME> and logs to $WORK/NAME.log; every started server is stopped on exit.
# SERVER_WRAPPER (an array, e.g. strace and its options) runs the server under another program.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${TLS_ECHO_BIN:-$ROOT/target/debug/tls-echo}
WORK=$(mktemp -d)
CERTS=$WORK/certs
SERVER_PIDS=()
SERVER_WRAPPER=()

cleanup_servers() {
  local pid
  for pid in "${SERVER_PIDS[@]}"; do
    # a wrapper's child first: a killed strace would only detach from it
    for child in $(pgrep -P "$pid" 2>/dev/null); do kill "$child" 2>/dev/null; done
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  done
  rm -rf "$WORK"
}
trap cleanup_servers EXIT

if [ -z "${TLS_ECHO_BIN:-}" ]; then
  (cd "$ROOT" && cargo build --locked --quiet --bin tls-echo) || exit 2
fi
"$BIN" gen-certs --out "$CERTS" >/dev/null || exit 2

start_server() {
  local name=$1 fd line addr=""; shift
  exec {fd}< <(RUST_LOG=info exec "${SERVER_WRAPPER[@]}" "$BIN" --cert "$CERTS/server.pem" --key "$CERTS/server.key" \
                 --listen 127.0.0.1:0 "$@" 2>&1)
  SERVER_PIDS+=($!)
  while IFS= read -r -t 20 -u "$fd" line; do
    printf '%s\n' "$line" >>"$WORK/$name.log"
    case $line in *" listening "*addr=*) addr=${line#*addr=}; addr=${addr%% *}; break ;; esac
  done
  [ -n "$addr" ] || { echo "server $name did not start:"; cat "$WORK/$name.log"; return 2; }
  # Keep draining the log so that the server never blocks on a full pipe.
  cat <&"$fd" >>"$WORK/$name.log" &
  exec {fd}<&-
  printf -v "ADDR_$name" '%s' "$addr"
  printf -v "PORT_$name" '%s' "${addr##*:}"
}
