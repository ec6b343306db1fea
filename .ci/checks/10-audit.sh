#!/usr/bin/env bash
# Dependency audit against the RustSec advisory database, from one of two sources:
#   snapshot  ../shared/advisory-db (ADVISORY_DB=DIR names another), when it exists: CI, offline;
#   fetched   otherwise, what cargo-audit and cargo-deny fetch themselves, as they normally do
#             (~/.cargo/advisory-db and ~/.cargo/advisory-dbs; ADVISORY_DB_URL names another
#             git URL than https://github.com/rustsec/advisory-db). Needs network.
# Neither: fails with a message naming both ways. Then:
#   cargo-audit  Cargo.lock and fuzz/Cargo.lock, --deny warnings (vulnerable, unmaintained,
#                unsound and yanked crates all fail);
#   cargo-deny   deny.toml: advisories (same classes), licences, sources, bans;
#   control      a copy of the database with one planted advisory against a crate we use must
#                make both tools fail, so a database that silently fails to load cannot pass.
# cargo-deny wants <db-path>/advisory-db-3157b0e258782691 as a git work tree; offline it is
# rebuilt from the snapshot under target/advisory-dbs/ on every run (deny.toml points there).
set -uo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PWD/.venv/bin:$PATH"
DB=${ADVISORY_DB:-../shared/advisory-db}
URL=${ADVISORY_DB_URL:-https://github.com/rustsec/advisory-db}
OUT=.ci/out/audit
rm -rf "$OUT" && mkdir -p "$OUT"
passed=0 failed=0
verdict() { # NAME EXIT
  if [ "$2" = 0 ]; then passed=$((passed + 1)); echo "PASS  $1"
  else failed=$((failed + 1)); echo "FAIL  $1 (exit $2)"; fi
}
setup_problem() {
  printf '%s\n' "$@"
  echo "audit: 0 passed, 1 failed"
  exit 2
}
if ! command -v cargo-audit >/dev/null || ! command -v cargo-deny >/dev/null; then
  setup_problem "need cargo-audit and cargo-deny (bash .ci/setup.sh installs them)"
fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
if [ -d "$DB/crates" ]; then
  MODE=snapshot
  echo "advisory-db: snapshot $DB: $(head -1 "$DB/SNAPSHOT" 2>/dev/null || echo "no SNAPSHOT note")"
else
  # No snapshot: let cargo-audit fetch into its default place; that copy then serves the
  # control below.
  MODE=fetched
  echo "advisory-db: no snapshot at $DB; fetching $URL"
  # Its exit status also counts findings: the database loaded when it says so.
  cargo audit --url "$URL" --file Cargo.lock >"$OUT/fetch.txt" 2>&1
  if ! grep -qE 'Loaded [0-9]+ security advisories' "$OUT/fetch.txt"; then
    sed 's/^/      /' "$OUT/fetch.txt" | tail -5
    setup_problem "no advisory data: neither the snapshot nor a fetch worked. Either" \
      "  - put a copy of the RustSec advisory-db at $DB (or point ADVISORY_DB at one), for offline runs, or" \
      "  - let cargo-audit and cargo-deny fetch $URL (network access to it)."
  fi
  DB=${CARGO_HOME:-$HOME/.cargo}/advisory-db
  [ -d "$DB/crates" ] || setup_problem "cargo audit fetched, but $DB has no crates/ folder"
fi

# A copy of $1 as cargo-deny's git work tree under $2.
deny_db() {
  local dest=$2/advisory-db-3157b0e258782691
  rm -rf "$dest" && mkdir -p "$2" && cp -r "$1" "$dest"
  (cd "$dest" && git init -q && git add -A \
    && git -c user.name=snapshot -c user.email=snapshot@localhost commit -qm snapshot) || return 2
}

for lock in Cargo.lock fuzz/Cargo.lock; do
  cargo audit --db "$DB" --no-fetch --deny warnings --file "$lock" >"$OUT/audit-${lock//\//-}.txt" 2>&1
  rc=$?
  sed 's/^/      /' "$OUT/audit-${lock//\//-}.txt" | grep -vE '^\s*$' | tail -20
  verdict "cargo audit $lock" $rc
done

cargo fetch --locked -q
if [ "$MODE" = snapshot ]; then
  deny_db "$DB" target/advisory-dbs || { verdict "prepare cargo-deny database" 2; }
  cargo deny --offline check >"$OUT/deny.txt" 2>&1
else
  # deny.toml's db-path holds the snapshot copy of offline runs: fetch into cargo-deny's
  # default place instead.
  sed -e '/^db-path = /d' -e "s#^db-urls = .*#db-urls = [\"$URL\"]#" deny.toml >"$T/deny-fetch.toml"
  cargo deny --config "$T/deny-fetch.toml" check >"$OUT/deny.txt" 2>&1
fi
rc=$?
grep -E '^\s*(advisories|bans|licenses|sources) ' "$OUT/deny.txt" | sed 's/^ */      /'
[ $rc = 0 ] || grep -E '^(error|warning)\[' -A6 "$OUT/deny.txt" | grep -v duplicate | head -40
verdict "cargo deny check (advisories, bans, licenses, sources)" $rc

# Control: plant an "unmaintained" advisory against memchr, a direct dependency.
cp -r "$DB" "$T/db"
mkdir -p "$T/db/crates/memchr"
cat >"$T/db/crates/memchr/RUSTSEC-2099-0001.md" <<'EOF'
```toml
[advisory]
id = "RUSTSEC-2099-0001"
package = "memchr"
date = "2099-01-01"
url = "https://example.invalid/planted"
informational = "unmaintained"

[versions]
patched = []
```

# Planted advisory

A control for the CI audit: both tools must report it.
EOF
cargo audit --db "$T/db" --no-fetch --deny warnings >"$OUT/control-audit.txt" 2>&1
rc=$?
[ $rc != 0 ] && grep -q RUSTSEC-2099-0001 "$OUT/control-audit.txt"
verdict "control: cargo audit reports a planted advisory" $?
deny_db "$T/db" "$T/dbs" || verdict "prepare control database" 2
sed "s#^db-path = .*#db-path = \"$T/dbs\"#" deny.toml >"$T/deny.toml"
cargo deny --offline --config "$T/deny.toml" check advisories >"$OUT/control-deny.txt" 2>&1
rc=$?
[ $rc != 0 ] && grep -q RUSTSEC-2099-0001 "$OUT/control-deny.txt"
verdict "control: cargo deny reports a planted advisory" $?

echo "audit: $passed passed, $failed failed"
[ "$failed" = 0 ]
