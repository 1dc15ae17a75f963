#!/usr/bin/env bash
# The whole test suite: installs what the tests need (dig, …), then runs every unit and
# integration test against the real binary. README's second command; .ci/run calls it too.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
cargo test --locked --all-targets "$@"
