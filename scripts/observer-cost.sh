#!/usr/bin/env bash
# What the connection observer costs: the server's CPU time while idle, with and without the
# observer, on a machine holding many unrelated TCP connections (the observer asks the kernel
# for the sockets to endpoint addresses every poll; the kernel filters, so unrelated sockets
# should cost next to nothing). Everything stays on loopback.
#
# Six runs: the observer off; on, with no connection to any endpoint address; on, with a healthy
# connection to an endpoint open (both: it looks once a second); on, with a connect to an
# endpoint that never answers always outstanding (it then looks every 250 ms); and off and on
# while an application resolves an endpoint name ten times a second (each answer asks for a
# look, at most one per 150 ms).
#
# Usage: scripts/observer-cost.sh [SOCKETS] [SECONDS] [path/to/failover-dns]
# (defaults: 10000 sockets, i.e. 5000 loopback connections; 30 s per run;
# target/release/failover-dns, built when missing). Prints the CPU share of one core for each
# run and what the observer adds.
set -euo pipefail
cd "$(dirname "$0")/.."

sockets=${1:-10000}
seconds=${2:-30}
binary=${3:-target/release/failover-dns}
if [ ! -x "$binary" ]; then
  cargo build --release --locked >&2
fi
binary=$(realpath "$binary")
work=$(mktemp -d)
holder_pid=""
server_pid=""
cleanup() {
  [ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true
  [ -z "$holder_pid" ] || kill "$holder_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Endpoint addresses on loopback that nothing connects to, as on a machine where the shared
# names' paths are idle.
mkdir -p "$work/zones"
cat >"$work/zones/app.toml" <<'EOF'
[[zone]]
origin = "internal"

[[asset]]
id = "gw"
kind = "gateway"
addresses = ["127.0.0.99"]

[[asset]]
id = "app-host"
kind = "primary"
addresses = ["127.0.0.42", "::1"]
names = ["app.internal"]

[[virtual_asset]]
id = "app-via-gw"
gateway = "gw"
addresses = ["127.0.0.43"]
names = ["app.internal"]

[[policy]]
id = "app"
sources = ["*"]
destinations = ["app-host", "app-via-gw"]
EOF

# Hold SOCKETS/2 established loopback connections (both ends are sockets of this namespace).
ulimit -n $((sockets + 1024)) 2>/dev/null || {
  echo "cannot raise the descriptor limit to $((sockets + 1024)); run as root or lower SOCKETS" >&2
  exit 1
}
python3 - "$((sockets / 2))" >"$work/holder.out" <<'EOF' &
import socket, sys, time
pairs = int(sys.argv[1])
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(4096)
held = []
for _ in range(pairs):
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    held += [client, server]
print(len(held), flush=True)
time.sleep(3600)
EOF
holder_pid=$!
for _ in $(seq 600); do
  [ -s "$work/holder.out" ] && break
  sleep 0.1
done
echo "holding $(cat "$work/holder.out") unrelated TCP sockets" >&2

# CPU time in nanoseconds over every thread of the process, from the scheduler's own account
# (schedstat). The tick-sampled utime/stime of /proc/PID/stat over-count a thread that wakes on
# timers aligned with the tick, as a poll loop does.
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{ total += $1 } END { printf "%d", total }'; }

run() { # label, serve arguments...
  local label=$1
  shift
  "$binary" serve --zones "$work/zones" --listen 127.0.0.1:0 --control "$work/control.sock" \
    --resolv-conf /dev/null "$@" >"$work/server.out" 2>"$work/server.log" &
  server_pid=$!
  for _ in $(seq 200); do
    grep -q '^ready:' "$work/server.out" 2>/dev/null && break
    sleep 0.05
  done
  sleep 1 # past startup
  local querier_pid=""
  if [ -n "${lookups_per_second:-}" ]; then
    # An application resolving an endpoint name again and again (its own UDP queries).
    local port
    port=$(sed -n 's/^listening on udp+tcp 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/server.out" | head -1)
    python3 - "$port" "$lookups_per_second" <<'EOF' &
import socket, struct, sys, time
port, rate = int(sys.argv[1]), float(sys.argv[2])
query = struct.pack(">HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\x03app\x08internal\x00" + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
while True:
    s.sendto(query, ("127.0.0.1", port))
    try:
        s.recv(4096)
    except OSError:
        pass
    time.sleep(1 / rate)
EOF
    querier_pid=$!
  fi
  local before after
  before=$(cpu_ns "$server_pid")
  sleep "$seconds"
  after=$(cpu_ns "$server_pid")
  [ -z "$querier_pid" ] || { kill "$querier_pid"; wait "$querier_pid" 2>/dev/null || true; }
  kill "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
  percent=$(awk -v t=$((after - before)) -v s="$seconds" 'BEGIN { printf "%.3f", 100 * t / 1e9 / s }')
  printf '%-30s %7s %% of one core (%d ms of CPU in %d s)\n' "$label" "$percent" \
    $(((after - before) / 1000000)) "$seconds"
}

echo "server CPU while idle, $seconds s each:"
run "observer off (--no-observe)" --no-observe
off=$percent
run "observer on, no endpoint traffic"
on=$percent
awk -v a="$on" -v b="$off" 'BEGIN { printf "the observer adds %.3f %% of one core\n", a - b }'

# One open, healthy connection to an endpoint address: nothing outstanding, a look a second.
python3 - >"$work/busy.out" <<'EOF' &
import socket, time
listener = socket.socket()
listener.bind(("127.0.0.42", 0))
listener.listen(1)
client = socket.create_connection(listener.getsockname())
server, _ = listener.accept()
print("connected", flush=True)
time.sleep(3600)
EOF
busy_pid=$!
for _ in $(seq 100); do
  [ -s "$work/busy.out" ] && break
  sleep 0.1
done
run "observer on, a healthy connection to an endpoint"
kill "$busy_pid"

# A connect to an endpoint that never answers, always outstanding: a listener whose accept queue
# is full drops every further SYN, as a dead path does (no root needed for a firewall rule).
python3 - >"$work/dead.out" <<'EOF' &
import socket, time
listener = socket.socket()
listener.bind(("127.0.0.43", 0))
listener.listen(0)
filler = socket.create_connection(listener.getsockname())
print("waiting", flush=True)
while True:
    try:
        socket.create_connection(listener.getsockname(), timeout=5)
    except OSError:
        pass
EOF
dead_pid=$!
for _ in $(seq 100); do
  [ -s "$work/dead.out" ] && break
  sleep 0.1
done
run "observer on, a connect to a dead endpoint outstanding"
kill "$dead_pid"

# An endpoint name answered ten times a second: each answer asks for a look (a connect is
# likely to follow), at most one per 150 ms. What the observer adds is the difference.
lookups_per_second=10
run "observer off, 10 lookups a second" --no-observe
lookups_off=$percent
run "observer on, 10 lookups a second"
awk -v a="$percent" -v b="$lookups_off" 'BEGIN { printf "the observer adds %.3f %% of one core while an endpoint name is resolved 10 times a second\n", a - b }'
lookups_per_second=""
