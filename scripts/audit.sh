#!/usr/bin/env bash
# Supply chain: `cargo audit` of both lockfiles (Cargo.lock and fuzz/Cargo.lock) against a local
# copy of the RustSec advisory database. It never fetches anything from the database's upstream.
#
# The database is the first of these that exists (a folder with crates/ in it):
#   1. $RUSTSEC_DB (a snapshot of the database's git repository, as CI keeps one);
#   2. ${CARGO_HOME:-~/.cargo}/advisory-db, where cargo-audit keeps its own copy.
# Without one it says so and exits 0: tests/it/supply_chain.rs still checks both lockfiles on every
# test run against the advisories it lists, including those newer than a database copy.
#
# With a database, cargo-audit is installed when missing (0.22.x: the release line that reads the
# database's current plain-folder format; older ones are replaced). The audit fails (non-zero exit)
# on any vulnerability advisory against either lockfile, and on any error reading the database or
# a lockfile. Warnings (unmaintained, unsound, yanked) are printed and do not fail the run: the
# project's rule for those is the banned-crate list of tests/it/supply_chain.rs (trust-dns-*,
# hickory-recursor), which the test suite enforces.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

audit_version=0.22.2

db=""
for candidate in \
  "${RUSTSEC_DB:-}" \
  "${CARGO_HOME:-$HOME/.cargo}/advisory-db"; do
  if [ -n "$candidate" ] && [ -d "$candidate/crates" ]; then
    db="$(cd "$candidate" && pwd)"
    break
  fi
done

if [ -n "${RUSTSEC_DB:-}" ] && [ ! -d "$RUSTSEC_DB/crates" ]; then
  echo "audit: RUSTSEC_DB=$RUSTSEC_DB is not a RustSec advisory database (no crates/ folder)" >&2
fi
if [ -z "$db" ]; then
  echo "audit: cargo audit skipped: no local RustSec advisory database (set RUSTSEC_DB, or put" \
    "one at ${CARGO_HOME:-$HOME/.cargo}/advisory-db); Cargo.lock and fuzz/Cargo.lock are still" \
    "checked by tests/it/supply_chain.rs"
  exit 0
fi
echo "audit: advisory database $db"
if [ -f "$db/SNAPSHOT" ]; then
  sed -n 1p "$db/SNAPSHOT" | sed 's/^/audit:   /'
fi

# `cargo audit --version` prints "cargo-audit-audit 0.22.2" or "cargo-audit 0.22.2" by release.
installed="$(cargo audit --version 2>/dev/null | awk '{print $NF}' || true)"
case "$installed" in
  0.22.*) ;;
  *)
    echo "audit: installing cargo-audit $audit_version (found: ${installed:-none})"
    start=$SECONDS
    nice -n 15 cargo install --locked --version "$audit_version" cargo-audit
    echo "audit: cargo-audit installed in $((SECONDS - start)) s"
    ;;
esac

status=0
for lock in Cargo.lock fuzz/Cargo.lock; do
  echo "audit: $lock"
  cargo audit --no-fetch --stale --db "$db" --file "$lock" || status=$?
done
if [ "$status" -ne 0 ]; then
  echo "audit: FAILED: a vulnerability advisory or an error above (exit $status)" >&2
fi
exit "$status"
