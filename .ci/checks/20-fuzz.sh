#!/usr/bin/env bash
# Fuzzing: builds every cargo-fuzz target in fuzz/ on stable Rust without a sanitizer
# (`-s none`; the crate forbids unsafe code, so ASan would add little; 16 codegen units halve
# the wall time of a fresh build on 2 cores, at no measurable cost in execs), then runs each for
# FUZZ_SECONDS (default 30), FUZZ_JOBS (default 2) at a time, over the committed seeds plus
# whatever corpus earlier runs left in fuzz/corpus/<target>/ (git keeps only seed-*).
# A crash, a failed property, a timeout or an out-of-memory fails the check; the reproducing
# input is copied to .ci/out/fuzz/ and printed as a hex dump with the command that replays it.
set -uo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PWD/.venv/bin:$PATH"
SECONDS_EACH=${FUZZ_SECONDS:-30}
JOBS=${FUZZ_JOBS:-2}
OUT=.ci/out/fuzz
rm -rf "$OUT" && mkdir -p "$OUT"
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz missing (bash .ci/setup.sh)"; echo "fuzz: 0 passed, 1 failed"; exit 2; }

start=$(date +%s)
if ! cargo fuzz build -s none --codegen-units 16 >"$OUT/build.log" 2>&1; then
  tail -40 "$OUT/build.log"
  echo "fuzz build failed; log: $OUT/build.log"
  echo "fuzz: 0 passed, 1 failed"
  exit 1
fi
echo "fuzz build (-s none, release + debug assertions): $(( $(date +%s) - start ))s"

bin_dir=fuzz/target/x86_64-unknown-linux-gnu/release
targets=$(cargo fuzz list)

run_target() {
  local t=$1 log="$OUT/$1.log"
  mkdir -p "fuzz/corpus/$t" "$OUT/artifacts/$t"
  "$bin_dir/$t" "fuzz/corpus/$t" -max_total_time="$SECONDS_EACH" -timeout=10 -max_len=4096 \
    -print_final_stats=1 -artifact_prefix="$OUT/artifacts/$t/" >"$log" 2>&1
  echo $? >"$OUT/$t.rc"
}

running=0
for t in $targets; do
  run_target "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$JOBS" ]; then wait -n; running=$((running - 1)); fi
done
wait

passed=0 failed=0
for t in $targets; do
  log="$OUT/$t.log" rc=$(cat "$OUT/$t.rc")
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$')
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
  corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
  artifact=$(find "$OUT/artifacts/$t" -type f | head -1)
  if [ "$rc" = 0 ] && [ -z "$artifact" ]; then
    passed=$((passed + 1))
    echo "PASS  $t: ${execs:-?} execs in ${SECONDS_EACH}s (${rate:-?}/s), coverage ${cov:-?}, corpus $corpus"
  else
    failed=$((failed + 1))
    echo "FAIL  $t (exit $rc): $(grep -m1 -E 'panicked at|ERROR: libFuzzer' "$log")"
    grep -m1 -A4 'panicked at' "$log" | tail -n +2 | sed 's/^/      /'
    if [ -n "$artifact" ]; then
      echo "      reproducing input ($(wc -c <"$artifact") bytes) saved as $artifact:"
      od -A x -t x1z -v "$artifact" | head -32 | sed 's/^/      /'
      echo "      replay: cargo fuzz run -s none $t $artifact"
    else
      tail -20 "$log" | sed 's/^/      /'
    fi
  fi
done
echo "fuzz total: $(( $(date +%s) - start ))s"
echo "fuzz: $passed passed, $failed failed"
[ "$failed" = 0 ]
