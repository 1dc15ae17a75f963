#!/usr/bin/env bash
# Runs every fuzz target for a fixed budget (seconds, default 60 each) and fails on a crash, a
# panic or an input that runs over 10 s. Installs cargo-fuzz from crates.io if missing.
#
# `--sanitizer none` is what makes this work on stable Rust, without nightly or RUSTC_BOOTSTRAP:
# the coverage instrumentation libFuzzer needs is made of stable codegen options; only the
# sanitizers (`-Zsanitizer=address`, cargo-fuzz's default) are nightly-only flags. The crate
# forbids `unsafe`, so AddressSanitizer has little to find here; docs/development.md says how to run it.
set -euo pipefail
cd "$(dirname "$0")/.."
budget="${1:-60}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cargo fuzz build --sanitizer none
mkdir -p fuzz/artifacts
for target in $(cargo fuzz list); do
  echo "fuzz: $target for ${budget}s"
  log="fuzz/artifacts/$target.log"
  if ! cargo fuzz run --sanitizer none "$target" -- \
    -max_total_time="$budget" -max_len=1500 -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 80 "$log"
    echo "fuzz: $target FAILED; the input is in fuzz/artifacts/$target/ (full log: $log)"
    exit 1
  fi
  grep -E '^Done|^stat::number_of_executed_units' "$log" || true
done
