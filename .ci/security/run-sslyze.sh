#!/bin/bash
# sslyze (PyPI) Mozilla-profile compliance check against HOST:PORT (project copy of the sectools runner).
# usage: run-sslyze.sh HOST PORT CAFILE
# env:   SSLYZE_PROFILE = intermediate (default) | modern | old | path/to/custom-profile.json
#        PYTHON (default .venv/bin/python of the project), OUTDIR (default .ci/out/)
# sslyze's own exit code is 1 for "not compliant" but ALSO 0 when the server was unreachable,
# so this wrapper checks connectivity in the JSON first.
# exit: 0 compliant, 1 not compliant / scan error, 2 unreachable or sslyze missing
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
HOST=${1:?HOST}; PORT=${2:?PORT}; CA=${3:?CAFILE}
PY=${PYTHON:-$HERE/../../.venv/bin/python}; [ -x "$PY" ] || PY=python3
"$PY" -c 'import sslyze' 2>/dev/null || { echo "sslyze missing: $PY -m pip install sslyze"; exit 2; }
OUTDIR=${OUTDIR:-$HERE/../out}; mkdir -p "$OUTDIR"
prof=${SSLYZE_PROFILE:-intermediate}
case "$prof" in modern|intermediate|old) popt=(--mozilla_config="$prof");; *) popt=(--custom_tls_config="$prof");; esac
json="$OUTDIR/sslyze-$prof-$PORT.json"; txt="$OUTDIR/sslyze-$prof-$PORT.txt"; rm -f "$json"
ca=(); [ -f "$CA" ] && ca=(--certinfo_ca_file "$CA")
start=$(date +%s)
PYTHONWARNINGS=ignore timeout 300 "$PY" -m sslyze "${popt[@]}" "${ca[@]}" --json_out "$json" "$HOST:$PORT" >"$txt" 2>&1
rc=$?
echo "sslyze profile=$prof exit=$rc time=$(( $(date +%s)-start ))s log=$txt"
"$PY" - "$json" <<'PY' || exit $?
import json, sys
try: d = json.load(open(sys.argv[1]))
except Exception as e: print(f"no JSON: {e}"); sys.exit(2)
r = d.get("server_scan_results") or []
if not r or r[0]["connectivity_status"] != "COMPLETED":
    print("target unreachable:", (r[0].get("connectivity_error_trace") or "")[-200:] if r else "no result"); sys.exit(2)
bad = [k for k, v in (r[0].get("scan_result") or {}).items() if v and v.get("status") not in ("COMPLETED", "NOT_SCHEDULED")]
if bad: print("scan commands that errored:", bad)
PY
sed -n '/COMPLIANCE AGAINST/,$p' "$txt" | sed '/^ *$/d' | tail -n +3
if [ $rc = 0 ]; then echo "sslyze: 1 passed, 0 failed"; else echo "sslyze: 0 passed, 1 failed"; fi
exit $rc
