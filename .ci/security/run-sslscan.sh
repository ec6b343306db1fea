#!/bin/bash
# sslscan (Debian package sslscan 2.0.x) against HOST:PORT (project copy of the sectools runner) with a pass/fail verdict from its XML.
# usage: run-sslscan.sh HOST PORT [CAFILE]   (CAFILE unused: sslscan does not validate chains)
# env:   EXPECT_ENABLED (default "1.2 1.3"), OUTDIR (default .ci/out/)
# exit:  0 pass, 1 findings, 2 target unreachable / no result (sslscan itself always exits 0)
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
HOST=${1:?HOST}; PORT=${2:?PORT}
OUTDIR=${OUTDIR:-$HERE/../out}; mkdir -p "$OUTDIR"
xml="$OUTDIR/sslscan-$HOST-$PORT.xml"; rm -f "$xml"
start=$(date +%s)
timeout 120 sslscan --no-colour --show-sigs --xml="$xml" "$HOST:$PORT" >"$OUTDIR/sslscan-$HOST-$PORT.txt" 2>&1
echo "sslscan time=$(( $(date +%s)-start ))s log=$OUTDIR/sslscan-$HOST-$PORT.txt"
python3 - "$xml" "${EXPECT_ENABLED:-1.2 1.3}" <<'PY'
import sys, xml.etree.ElementTree as ET
try:
    t = ET.parse(sys.argv[1]).find("ssltest")
except Exception as e:
    print(f"no XML result: {e}"); sys.exit(2)
if t is None or t.find("protocol") is None:
    print("no scan result (target unreachable?)"); sys.exit(2)
want = set(sys.argv[2].split()); fails = []; passed = 0
for p in t.findall("protocol"):
    name = ("SSLv" if p.get("type") == "ssl" else "TLSv") + p.get("version")
    on = p.get("enabled") == "1"
    should = p.get("type") == "tls" and p.get("version") in want
    if on == should: passed += 1
    else: fails.append(f"{name} enabled={on}, expected {should}")
for c in t.findall("cipher"):
    if c.get("strength") in ("strong", "acceptable"): passed += 1
    else: fails.append(f"weak cipher {c.get('sslversion')} {c.get('cipher')} strength={c.get('strength')}")
r = t.find("renegotiation")
if r is not None:
    if r.get("supported") == "1" and r.get("secure") != "1": fails.append("insecure renegotiation supported")
    else: passed += 1
for h in t.findall("heartbleed"):
    if h.get("vulnerable") == "1": fails.append(f"heartbleed {h.get('sslversion')}")
    else: passed += 1
for m in fails: print("  FAIL", m)
print(f"sslscan: {passed} passed, {len(fails)} failed")
sys.exit(1 if fails else 0)
PY
