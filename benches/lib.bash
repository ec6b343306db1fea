# Sourced by the benchmark scripts. Needs BIN (a tls-echo, to make certificates with) and PORT.
# Gives a work directory with throwaway certificates in $C (removed on exit, with any server
# still running), and start_server / stop_server for one server at a time pinned to CPU 0.

work=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
"$BIN" gen-certs --out "$work/certs" >/dev/null
C=$work/certs

# Limits lifted for load from one host: the defaults allow 256 connections and 100 new/s per
# peer address.
LIMITS=(--max-conns 19500 --max-conns-per-ip 100000 --rate-per-ip 1000000 --rate-burst 1000000)

start_server() { # COMMAND...: runs it on CPU 0 (log: $work/server.log), waits until PORT listens
  RUST_LOG=${SERVER_LOG:-warn} taskset -c 0 "$@" >"$work/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 100); do
    if ss -Hltn "sport = :$PORT" | grep -q .; then return 0; fi
    sleep 0.1
  done
  echo "$1 did not start listening:" >&2
  cat "$work/server.log" >&2
  exit 1
}

stop_server() {
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=
}
