#!/bin/bash
# testssl.sh (Debian package testssl.sh, 3.0.x) against HOST:PORT (project copy of the sectools runner), then a pass/fail verdict.
# usage: run-testssl.sh HOST PORT [CAFILE]
# env:   TESTSSL_MODE=quick (default: -p -s -f -S -U, ~45-60 s) | full (all checks, ~3-4 min)
#        OUTDIR (default: .ci/out/)   + the env knobs of testssl-verdict.py
# exit:  0 pass, 1 findings, 2 scan unusable (target down, tool missing)
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
HOST=${1:?HOST}; PORT=${2:?PORT}; CA=${3:?CAFILE}
OUTDIR=${OUTDIR:-$HERE/../out}; mkdir -p "$OUTDIR"
command -v testssl >/dev/null || { echo "testssl not installed (apt-get install testssl.sh)"; exit 2; }
case "${TESTSSL_MODE:-quick}" in
  quick) checks=(-p -s -f -S -U) ;;
  full)  checks=() ;;
  *) echo "TESTSSL_MODE must be quick or full"; exit 2 ;;
esac
json="$OUTDIR/testssl-$HOST-$PORT.json"; log="$OUTDIR/testssl-$HOST-$PORT.txt"; rm -f "$json"
ca_args=(); [ -f "$CA" ] && ca_args=(--add-ca "$CA")
start=$(date +%s)
timeout 900 testssl --quiet --color 0 --warnings batch --nodns none \
  --connect-timeout 5 --openssl-timeout 10 "${ca_args[@]}" \
  --jsonfile "$json" "${checks[@]}" "$HOST:$PORT" >"$log" 2>&1
rc=$?
echo "testssl exit=$rc (not a verdict: it counts scan errors) time=$(( $(date +%s)-start ))s log=$log"
[ -s "$json" ] || { echo "no JSON written; see $log"; tail -5 "$log"; exit 2; }
python3 "$HERE/testssl-verdict.py" "$json"
