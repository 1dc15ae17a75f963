#!/usr/bin/env bash
# Measures failover with no agent, as a new user would meet it, and prints the tables docs/observer.md
# shows. Needs root: it builds a private network namespace (nothing leaves it), with
#   - app.internal on a primary asset (127.0.0.2) and a virtual asset (127.0.0.3), an HTTP
#     server on port 8080 of each;
#   - failover-dns on 127.0.0.1:53, the namespace's only resolver (what the C library uses);
#   - the primary's port made a dead path by an nftables drop rule (SYNs go unanswered, as when
#     the agent's tunnel dies);
# and times curl and Python's urllib, both resolving through the C library, for:
#   - nothing reporting (the observer off, no probes): what pointing the OS at a DNS server
#     that only knows static data gives;
#   - the connection observer (the default);
#   - the observer with --fail-fast;
# each for the first request after the path died and the next one; then existing sessions: a
# keep-alive client (Python's http.client, one HTTP/1.1 connection, a request every 0.2 s,
# reconnecting after any error) on the primary when its path dies, with no socket timeout and
# with a 5 s one; a first request after earlier ones gave the primary an RTT history; and a
# client that gives up a connect after 250 ms and tries the next address, as Happy Eyeballs
# does; and, with probes on both endpoints every 500 ms and no traffic, whether the first
# address of the answer stays put.
#
# Usage: sudo scripts/failover-without-agent.sh [path/to/failover-dns]
# (default: target/release/failover-dns, built when missing). Takes about five minutes, most of
# it waiting out the dead path where nothing reports.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "needs root: it creates a network namespace and nftables rules" >&2
  exit 1
fi
for tool in ip nft curl python3 dig; do
  command -v "$tool" >/dev/null || { echo "missing: $tool (bash scripts/install-test-deps.sh)" >&2; exit 1; }
done
binary=${1:-target/release/failover-dns}
if [ ! -x "$binary" ]; then
  cargo build --release --locked >&2
fi
binary=$(realpath "$binary")

ns=fdns-measure-$$
work=$(mktemp -d)
server_pid=""
http_pids=()
cleanup() {
  [ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true
  for pid in "${http_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns delete "$ns" 2>/dev/null || true
  rm -rf "/etc/netns/$ns" "$work"
}
trap cleanup EXIT

mkdir -p "/etc/netns/$ns" "$work/zones"
printf 'nameserver 127.0.0.1\noptions timeout:2 attempts:1\n' >"/etc/netns/$ns/resolv.conf"
ip netns add "$ns"
in_ns() { ip netns exec "$ns" "$@"; }
in_ns ip link set lo up

zone() { # $1: extra line for each destination (a probe), or nothing
  cat <<EOF
[[zone]]
origin = "internal"

[[asset]]
id = "gw"
kind = "gateway"
addresses = ["127.0.0.9"]

[[asset]]
id = "app-host"
kind = "primary"
addresses = ["127.0.0.2"]
names = ["app.internal"]
$1

[[virtual_asset]]
id = "app-via-gw"
gateway = "gw"
addresses = ["127.0.0.3"]
names = ["app.internal"]
$1

[[policy]]
id = "app"
sources = ["*"]
destinations = ["app-host", "app-via-gw"]
EOF
}

for address in 127.0.0.2 127.0.0.3; do
  # Not through in_ns: `ip netns exec` execs the command, so $! is its pid, not a subshell's.
  ip netns exec "$ns" python3 -m http.server --protocol HTTP/1.1 --bind "$address" 8080 --directory "$work" >/dev/null 2>&1 &
  http_pids+=($!)
done
for address in 127.0.0.2 127.0.0.3; do
  for _ in $(seq 200); do
    in_ns curl -s -o /dev/null --max-time 1 "http://$address:8080/" && break
    sleep 0.05
  done
done

start_server() { # arguments for serve
  ip netns exec "$ns" "$binary" serve --zones "$work/zones" --listen 127.0.0.1:53 \
    --control "$work/control.sock" --resolv-conf /dev/null "$@" \
    >"$work/server.out" 2>"$work/server.log" &
  server_pid=$!
  for _ in $(seq 200); do
    in_ns dig +short +time=1 +tries=1 @127.0.0.1 internal SOA >/dev/null 2>&1 && return
    sleep 0.05
  done
  echo "failover-dns did not start:" >&2
  cat "$work/server.log" >&2
  exit 1
}
stop_server() {
  kill "$server_pid" || { echo "failover-dns had stopped:" >&2; cat "$work/server.log" >&2; exit 1; }
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}
blackhole() {
  in_ns nft -f - <<'EOF'
table inet measure {
  chain input {
    type filter hook input priority 0;
    ip daddr 127.0.0.2 tcp dport 8080 drop
  }
}
EOF
}
heal() { in_ns nft delete table inet measure 2>/dev/null || true; }

curl_time() {
  in_ns curl -s -o /dev/null --max-time 60 -w '%{time_total} s (%{remote_ip})' http://app.internal:8080/ ||
    echo "failed"
}
python_time() {
  in_ns python3 - <<'EOF' || echo "failed"
import http.client, time
start = time.monotonic()
connection = http.client.HTTPConnection("app.internal", 8080, timeout=10)
connection.request("GET", "/")
peer = connection.sock.getpeername()[0]
connection.getresponse().read()
print(f"{time.monotonic() - start:.3f} s ({peer})")
EOF
}

# A keep-alive session on the primary when its path dies: seconds from the blackhole to the
# next answer (from the virtual asset), or how long it waited in vain. $1: socket timeout in
# seconds, or none.
session_time() {
  in_ns python3 - "$1" <<'EOF'
import http.client, subprocess, sys, threading, time
timeout = None if sys.argv[1] == "none" else float(sys.argv[1])
answers = []
def client():
    connection = None
    while True:
        try:
            if connection is None:
                connection = http.client.HTTPConnection("app.internal", 8080, timeout=timeout)
                connection.connect()
            peer = connection.sock.getpeername()[0]
            connection.request("GET", "/")
            connection.getresponse().read()
            answers.append((time.monotonic(), peer))
        except Exception:
            if connection is not None:
                connection.close()
            connection = None
        time.sleep(0.2)
threading.Thread(target=client, daemon=True).start()
time.sleep(1)
rules = "table inet measure {\n chain input {\n  type filter hook input priority 0;\n  ip daddr 127.0.0.2 tcp dport 8080 drop\n }\n}\n"
subprocess.run(["nft", "-f", "-"], input=rules.encode(), check=True)
dead = time.monotonic()
while time.monotonic() - dead < 30:
    moved = [at for at, peer in answers if at > dead and peer == "127.0.0.3"]
    if moved:
        print(f"{moved[0] - dead:.2f} s (127.0.0.3)")
        break
    time.sleep(0.05)
else:
    print("no answer within 30 s")
EOF
}

# A client that gives up a connect after 250 ms and tries the next address: seconds for one
# request and the address it reached.
staggered_time() {
  in_ns python3 - <<'EOF' || echo "failed"
import select, socket, time
start = time.monotonic()
addresses = [a[4] for a in socket.getaddrinfo("app.internal", 8080, socket.AF_INET, socket.SOCK_STREAM)]
for attempt, address in enumerate(addresses, 1):
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex(address)
    _, writable, _ = select.select([], [s], [], 0.25 if attempt < len(addresses) else 5)
    if writable and s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
        s.setblocking(True)
        s.sendall(b"GET / HTTP/1.0\r\nHost: app.internal\r\n\r\n")
        while s.recv(65536):
            pass
        print(f"{time.monotonic() - start:.3f} s ({address[0]})")
        break
    s.close()
EOF
}

rows=()
session_rows=()
measure() { # label, serve arguments...
  local label=$1
  shift
  zone "" >"$work/zones/app.toml"
  for client in curl python; do
    heal
    start_server "$@"
    blackhole
    local first next
    first=$(${client}_time)
    next=$(${client}_time)
    stop_server
    rows+=("| $label | $client | $first | $next |")
  done
}

measure_sessions() { # label, serve arguments...
  local label=$1
  shift
  zone "" >"$work/zones/app.toml"
  local timeout
  for timeout in none 5; do
    heal
    start_server "$@"
    session_rows+=("| $label | keep-alive session, socket timeout $timeout | $(session_time "$timeout") |")
    stop_server
  done
  # The primary answered three requests before its path died: it has an RTT history.
  heal
  start_server "$@"
  for _ in 1 2 3; do python_time >/dev/null; done
  blackhole
  session_rows+=("| $label | first request with RTT history (Python) | $(python_time) |")
  stop_server
  heal
  start_server "$@"
  for _ in 1 2 3; do python_time >/dev/null; done
  blackhole
  local first next
  first=$(staggered_time)
  sleep 0.5
  next=$(staggered_time)
  session_rows+=("| $label | client giving up a connect after 250 ms: first, next | $first, $next |")
  stop_server
}

echo "measuring (about five minutes)..." >&2
measure "nothing reports (--no-observe, no probes)" --no-observe
measure "connection observer (default)"
measure "observer with --fail-fast" --fail-fast
measure_sessions "connection observer (default)"
measure_sessions "observer with --fail-fast" --fail-fast

# Probes on both endpoints, no traffic: the first address of 20 answers, 250 ms apart.
heal
zone 'probe = { port = 8080, interval_ms = 500, timeout_ms = 500, jitter_ms = 100 }' >"$work/zones/app.toml"
start_server --no-observe
sleep 2 # two probe rounds: both endpoints up
firsts=()
for _ in $(seq 20); do
  firsts+=("$(in_ns dig +short +time=1 +tries=1 @127.0.0.1 app.internal A | head -1)")
  sleep 0.25
done
stop_server
distinct=$(printf '%s\n' "${firsts[@]}" | sort -u | tr '\n' ' ')

echo
echo "| situation | client | first request after the path died | next request |"
echo "|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "| situation | client | time to an answer after the path died |"
echo "|---|---|---|"
printf '%s\n' "${session_rows[@]}"
echo
echo "probes on both endpoints, no traffic, 20 answers: first address was ${distinct% }"
