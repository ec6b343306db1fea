#!/usr/bin/env bash
# Interop against a running tls-echo (throwaway CA from `tls-echo gen-certs`, ephemeral loopback
# port): OpenSSL s_client (TLS 1.3 and 1.2), gnutls-cli, Python ssl and `tls-echo client` must
# verify the server and get their echo; TLS 1.0/1.1 clients must be refused.
set -uo pipefail
cd "$(dirname "$0")/../.."
source .ci/security/server.sh
start_server main || { echo "interop: 0 passed, 1 failed"; exit 2; }
TLS_ECHO_BIN=$BIN bash .ci/security/run-interop.sh 127.0.0.1 "$PORT_main" "$CERTS/ca.pem"
