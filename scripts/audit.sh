#!/usr/bin/env bash
# Supply chain: `cargo audit` of both lockfiles against the RustSec advisory database, failing on
# an advisory, wherever a copy of that database is on the machine. The database is fetched from
# GitHub, which this project's machines and CI cannot reach (only the package registries), and no
# registry carries it, so this never fetches: without a local copy it says so and skips. The
# lockfiles are still checked on every run by tests/it/supply_chain.rs (known advisories of our
# dependency tree, hickory's among them, with their first fixed versions).
set -euo pipefail
cd "$(dirname "$0")/.."
db="${RUSTSEC_DB:-${CARGO_HOME:-$HOME/.cargo}/advisory-db}"
if command -v cargo-audit >/dev/null && [ -d "$db/crates" ]; then
  for lock in Cargo.lock fuzz/Cargo.lock; do
    cargo audit --no-fetch --stale --db "$db" --file "$lock"
  done
else
  echo "audit: cargo audit skipped: no RustSec advisory database at $db (it comes from GitHub," \
    "unreachable here); Cargo.lock and fuzz/Cargo.lock are checked by tests/it/supply_chain.rs"
fi
