#!/usr/bin/env bash
# No DNS: the allowlist never depends on name resolution. Under strace, tls-echo must refuse a
# host name in --allow and in an allow-file (naming the line) without resolving it, and a
# server with an allowlist and an allow-file must start, admit a client, answer `check --peer`
# and stop without touching the resolver: no open of /etc/resolv.conf, /etc/hosts,
# /etc/nsswitch.conf or an NSS module, and no socket to port 53. A control checks that the
# detector does see a lookup.
set -uo pipefail
cd "$(dirname "$0")/../.."
source .ci/security/server.sh
command -v strace >/dev/null || { echo "strace missing (apt-get install strace)"; echo "no-dns: 0 passed, 1 failed"; exit 2; }
passed=0 failed=0
verdict() { # NAME EXIT
  if [ "$2" = 0 ]; then passed=$((passed + 1)); echo "PASS  $1"
  else failed=$((failed + 1)); echo "FAIL  $1"; fi
}
trace=(strace -f -qq -e trace=open,openat,connect,sendto,sendmsg,sendmmsg)
resolver_use() { # TRACE_FILE: prints any resolver activity
  grep -E 'resolv\.conf|/etc/hosts|nsswitch\.conf|libnss_|libresolv|sin6?_port=htons\(53\)' "$1"
}
tls=(--cert "$CERTS/server.pem" --key "$CERTS/server.key")

"${trace[@]}" -o "$WORK/t1" "$BIN" check "${tls[@]}" --allow example.com >"$WORK/o1" 2>&1
rc=$?
[ $rc != 0 ] && grep -q "is a host name" "$WORK/o1" && ! resolver_use "$WORK/t1"
verdict "--allow example.com refused as a host name, unresolved ($(head -c 120 "$WORK/o1"))" $?

printf '10.0.0.0/8\n# office\nlocalhost\n' >"$WORK/allow.txt"
"${trace[@]}" -o "$WORK/t2" "$BIN" check "${tls[@]}" --allow-file "$WORK/allow.txt" >"$WORK/o2" 2>&1
rc=$?
[ $rc != 0 ] && grep -q "allow.txt:3: 'localhost' is a host name" "$WORK/o2" && ! resolver_use "$WORK/t2"
verdict "allow-file host name refused with its line number, unresolved" $?

printf '127.0.0.0/8 # loopback\n2001:db8::/32\n' >"$WORK/allow.txt"
"${trace[@]}" -o "$WORK/t3" "$BIN" check "${tls[@]}" --allow 192.0.2.0/24 \
  --allow-file "$WORK/allow.txt" --peer ::ffff:127.0.0.1 >"$WORK/o3" 2>&1
rc=$?
[ $rc = 0 ] && ! resolver_use "$WORK/t3"
verdict "check --peer ::ffff:127.0.0.1 admitted without resolving" $?

SERVER_WRAPPER=("${trace[@]}" -o "$WORK/t4")
if start_server traced --allow 192.0.2.0/24 --allow-file "$WORK/allow.txt"; then
  got=$(printf 'no dns\n' | "$BIN" client --connect "$ADDR_traced" --ca "$CERTS/ca.pem" 2>&1)
  [ "$got" = "no dns" ]
  verdict "traced server echoes for an allowed peer" $?
  server=$(pgrep -P "${SERVER_PIDS[-1]}")
  kill -TERM "$server" && wait "${SERVER_PIDS[-1]}" 2>/dev/null
  grep -q 'server\.pem' "$WORK/t4" && ! resolver_use "$WORK/t4"   # traced, and no lookup
  verdict "server start, accept, handshake, echo and stop without resolver use" $?
else
  verdict "traced server starts" 1
fi
# Control: the detector sees a real lookup (the client resolves the name it is given).
"${trace[@]}" -o "$WORK/c1" "$BIN" client --connect localhost:1 --ca "$CERTS/ca.pem" </dev/null >/dev/null 2>&1
resolver_use "$WORK/c1" >/dev/null
verdict "control: a lookup by \`tls-echo client --connect localhost:1\` is detected" $?
for t in "$WORK"/t?; do resolver_use "$t" | head -3 | sed "s#^#      $(basename "$t"): #"; done
echo "no-dns: $passed passed, $failed failed"
[ "$failed" = 0 ]
