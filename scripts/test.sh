#!/usr/bin/env bash
# The whole test suite: installs what the tests need (dig, unbound, …), builds the Debian package,
# then runs every unit, integration and documentation test against the real binary, and closes
# with one line that totals every test binary's counts. README's second command; .ci/run calls it
# too.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
# The Debian package tests/it/packaging.rs unpacks and installs (a release build).
bash scripts/package.sh
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --locked --all-targets "$@" 2>&1 | tee "$log"
cargo test --locked --doc "$@" 2>&1 | tee -a "$log"
# Each test binary prints "test result: ok. N passed; M failed; ..."; add them up.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f; if (p == 0) exit 1 }' "$log"
