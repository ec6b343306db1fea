#!/usr/bin/env bash
# TLS scanners against running tls-echo instances (throwaway CA, ephemeral loopback ports):
#   sslyze: Mozilla "intermediate" must pass; "modern" must pass with --tls13-only, and without it
#           must fail only on TLS 1.2 (its version and its three ECDHE-ECDSA suites);
#   sslscan: only TLS 1.2/1.3, no weak cipher, no insecure renegotiation, no heartbleed;
#   testssl.sh quick: only TLS 1.2/1.3 offered, nothing MEDIUM or worse beyond the ids caused by
#           the throwaway CA (see testssl-verdict.py).
# The scanners open hundreds of connections from one address within seconds, so these instances
# run with the per-IP rate limit raised; the limits themselves are tested in tests/.
set -uo pipefail
cd "$(dirname "$0")/../.."
source .ci/security/server.sh
S=.ci/security
export OUTDIR=$PWD/.ci/out/scanners
rm -rf "$OUTDIR" && mkdir -p "$OUTDIR"
limits=(--rate-per-ip 100000 --rate-burst 100000)
start_server main "${limits[@]}" || { echo "tls-scanners: 0 passed, 1 failed"; exit 2; }
start_server t13 --tls13-only "${limits[@]}" || { echo "tls-scanners: 0 passed, 1 failed"; exit 2; }
CA=$CERTS/ca.pem
passed=0 failed=0
verdict() { # NAME EXIT
  if [ "$2" = 0 ]; then passed=$((passed + 1)); echo "PASS  $1"
  else failed=$((failed + 1)); echo "FAIL  $1 (exit $2)"; fi
}
timed() { # NAME CMD... : runs CMD, prints its output indented and its duration, records a verdict
  local name=$1 t0=$(date +%s) rc; shift
  "$@" 2>&1 | sed 's/^/      /'; rc=${PIPESTATUS[0]}
  echo "      ($(( $(date +%s) - t0 ))s)"
  verdict "$name" "$rc"
}

timed "sslyze intermediate (TLS 1.2 + 1.3)" env SSLYZE_PROFILE=intermediate bash $S/run-sslyze.sh 127.0.0.1 "$PORT_main" "$CA"
timed "sslyze modern (--tls13-only)" env SSLYZE_PROFILE=modern bash $S/run-sslyze.sh 127.0.0.1 "$PORT_t13" "$CA"

# Without --tls13-only, "modern" must fail, and only because TLS 1.2 is offered.
SSLYZE_PROFILE=modern bash $S/run-sslyze.sh 127.0.0.1 "$PORT_main" "$CA" >/dev/null 2>&1
rc=$?
python3 - "$OUTDIR/sslyze-modern-$PORT_main.txt" "$rc" <<'PY'
import re, sys
text, rc = open(sys.argv[1]).read(), int(sys.argv[2])
crit = dict(re.findall(r"^\s+\* (\w+): (.*)$", text.split("COMPLIANCE AGAINST")[-1], re.M))
for k, v in crit.items(): print(f"      modern without --tls13-only: {k}: {v}")
tls12 = {"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
         "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"}
ok = (rc == 1 and set(crit) == {"tls_versions", "ciphers"} and "{'TLSv1.2'}" in crit["tls_versions"]
      and set(re.findall(r"'(\w+)'", crit["ciphers"])) <= tls12)
sys.exit(0 if ok else 1)
PY
verdict "sslyze modern without --tls13-only fails only on TLS 1.2" $?

timed "sslscan" bash $S/run-sslscan.sh 127.0.0.1 "$PORT_main"
timed "testssl.sh quick" bash $S/run-testssl.sh 127.0.0.1 "$PORT_main" "$CA"
echo "tls-scanners: $passed passed, $failed failed"
[ "$failed" = 0 ]
