#!/usr/bin/env bash
# Memory across a reload storm: serves NAMES generated names (default 10000, the zone of
# scripts/bench-peers.sh) from the release build on a free loopback port, prints the RSS after
# start, sends SIGHUP RATE times a second (default 100) for SECONDS (default 10), waits for the
# last reload to finish, and prints the RSS after the storm with its ratio to the RSS after start.
# With CHANGE=1 a zone file is touched before every signal, so that every reload rebuilds the
# configuration (unchanged files are not rebuilt).
# Usage: [CHANGE=1] scripts/reload-storm.sh [NAMES] [RATE] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
names=${1:-10000}
rate=${2:-100}
seconds=${3:-10}

cargo build --release --locked --quiet
work=$(mktemp -d)
server_pid=""
cleanup() {
  [ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

python3 scripts/bench/peers.py generate "$work" "$names" >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
: >"$work/resolv.conf"
target/release/failover-dns serve --zones "$work/failover-dns/zones" \
  --listen "127.0.0.1:$port" --control "$work/control.sock" --resolv-conf "$work/resolv.conf" \
  >"$work/stdout" 2>"$work/stderr" &
server_pid=$!
for _ in $(seq 200); do
  grep -q '^ready:' "$work/stdout" 2>/dev/null && break
  sleep 0.1
done
grep -q '^ready:' "$work/stdout" || { echo "the server did not start:" >&2; cat "$work/stderr" >&2; exit 1; }

rss_mb() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$server_pid/status"; }
reloads() { grep -c 'configuration reloaded' "$work/stderr" || true; }

# Allocators may return memory some seconds after a burst (the first load is one): the
# baseline is taken once the server has been idle for a while.
sleep 15
start=$(rss_mb)
echo "names: $names; RSS after start (15 s idle): $start MB"
interval=$(awk -v r="$rate" 'BEGIN { printf "%.4f", 1 / r }')
end=$(($(date +%s) + seconds))
signals=0
touched=$(find "$work/failover-dns/zones" -name '*.toml' | head -n 1)
while [ "$(date +%s)" -lt "$end" ]; do
  [ -z "${CHANGE:-}" ] || touch "$touched"
  kill -HUP "$server_pid"
  signals=$((signals + 1))
  sleep "$interval"
done
# Signals that arrive while a reload runs are merged into one; wait until no reload is running
# (the count stops moving), then for the reply to a control request (the server is idle).
last=-1
while [ "$(reloads)" != "$last" ]; do
  last=$(reloads)
  sleep 1
done
target/release/failover-dns status --control "$work/control.sock" >/dev/null
ratio() { awk -v a="$1" -v s="$start" 'BEGIN { printf "%.2f", a / s }'; }
after=$(rss_mb)
echo "SIGHUPs sent: $signals; reloads done: $(reloads)"
echo "RSS right after the storm: $after MB ($(ratio "$after")x the RSS after start)"
sleep 15
settled=$(rss_mb)
echo "RSS 15 s later: $settled MB ($(ratio "$settled")x)"
