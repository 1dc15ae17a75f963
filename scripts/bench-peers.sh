#!/usr/bin/env bash
# Measures failover-dns against peer DNS servers on this machine and prints one table: saturated
# UDP throughput (qps), server CPU time per answered query, p50/p99 latency at a steady
# 10,000 qps, RSS, ratios to the best peer and to unbound, and pipelined TCP throughput.
#
# Every server serves the same zone (10,000 names × 4 A + 2 AAAA under bench.internal) on a free
# high port of 127.0.0.1, pinned to CPU 0 (taskset -c 0); dnsperf runs pinned to CPU 1 with the
# same query file (80% A, 10% AAAA, 10% NXDOMAIN) and the same options for all. One after
# another, in one invocation; all traffic stays on 127.0.0.1, and no server may query anywhere.
#
#   bash scripts/bench-peers.sh             # full run: 10 s per measurement (~3 minutes)
#   bash scripts/bench-peers.sh --quick     # 3 s per measurement, for trying it out
#   bash scripts/bench-peers.sh --only failover-dns --only unbound --only floor --only forwarding
#
# Latency is measured twice at the steady rate: by dnsperf, and by a busy-polling client
# (examples/steady_latency.rs) whose own wake-ups add nothing; a UDP echo that does no DNS work
# ("floor") is measured the same way, as the least any server can do on this machine.
#
# Installs dnsperf, unbound, dnsmasq (dnsmasq-base: the program without its system service),
# knot-resolver, dig and python3 from Debian when missing, without starting any system service.
# Not part of CI: it takes minutes and its numbers depend on the machine and its load.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

duration=10       # seconds of each saturation run (UDP and TCP)
steady=10         # seconds of the steady-rate latency run
rate=10000        # queries per second of the steady-rate run
names=10000
only=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) duration=3; steady=3 ;;
    --duration) duration="$2"; steady="$2"; shift ;;
    --only) only+=("$2"); shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

# --- tools -------------------------------------------------------------------------------------
declare -A packages=(
  [dnsperf]=dnsperf
  [unbound]=unbound
  [dnsmasq]=dnsmasq-base
  [kresd]=knot-resolver
  [dig]=bind9-dnsutils
  [taskset]=util-linux
  [python3]=python3
)
missing=()
for tool in "${!packages[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null 2>&1 \
    || missing+=("${packages[$tool]}")
done
export PATH="$PATH:/usr/sbin:/sbin"
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  # Installing a server package must not start its system service (port 53, root trust
  # anchors from the internet): deny service starts for the install unless a policy exists.
  policy=/usr/sbin/policy-rc.d
  added_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod +x "$policy"
    added_policy=yes
  fi
  install_status=0
  DEBIAN_FRONTEND=noninteractive $sudo apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null || install_status=$?
  [ -z "$added_policy" ] || $sudo rm -f "$policy"
  [ "$install_status" -eq 0 ] || { echo "apt-get failed ($install_status)" >&2; exit 1; }
fi

if [ "$(nproc)" -lt 2 ]; then
  echo "needs 2 CPUs (server on CPU 0, load generator on CPU 1); this machine has $(nproc)" >&2
  exit 1
fi

echo "building failover-dns (release)…" >&2
cargo build --release --locked --quiet --bin failover-dns --example steady_latency
binary="$root/target/release/failover-dns"
probe="$root/target/release/examples/steady_latency"

# --- scratch space and cleanup ------------------------------------------------------------------
work=$(mktemp -d /tmp/bench-peers.XXXXXX)
server_pid=""
upstream_pid=""   # the upstream of the cached-forwarding run
log=/dev/null     # the current server's log
cleanup() {
  local pid
  for pid in "$server_pid" "$upstream_pid"; do
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

python3 scripts/bench/peers.py generate "$work" "$names"
results="$work/results.jsonl"
: >"$results"
clk_tck=$(getconf CLK_TCK)

# A free port on 127.0.0.1 for both UDP and TCP.
free_port() {
  python3 - <<'EOF'
import socket
for _ in range(100):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0))
    port = u.getsockname()[1]
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        t.bind(("127.0.0.1", port)); print(port); break
    except OSError:
        pass
    finally:
        t.close(); u.close()
EOF
}

# CPU time (user + system, including reaped children) of a process, in clock ticks.
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13 + $14 + $15}'; }
status_field() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"; }

# Waits until the server on $1 answers (bounded: 60 s), failing early if it exits.
wait_ready() {
  local port=$1 deadline=$((SECONDS + 60))
  while [ $SECONDS -lt $deadline ]; do
    kill -0 "$server_pid" 2>/dev/null || return 1
    # dig prints errors (connection refused, timeout) on stdout too: look for an address.
    if dig +time=1 +tries=1 +short @127.0.0.1 -p "$port" h0.bench.internal A 2>/dev/null \
      | grep -qE '^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$'; then
      return 0
    fi
    sleep 0.05
  done
  return 1
}

# Checks that the server gives the zone's answers; prints a reason when not.
check_answers() {
  local port=$1 a aaaa nx
  a=$(dig +time=2 +tries=1 +short @127.0.0.1 -p "$port" h7.bench.internal A | grep -cE '^[0-9.]+$' || true)
  aaaa=$(dig +time=2 +tries=1 +short @127.0.0.1 -p "$port" h7.bench.internal AAAA | grep -cE '^[0-9a-f:]+:[0-9a-f:]*$' || true)
  nx=$(dig +time=2 +tries=1 @127.0.0.1 -p "$port" nx7.bench.internal A | grep -c 'status: NXDOMAIN' || true)
  if [ "$a" != 4 ] || [ "$aaaa" != 2 ] || [ "$nx" != 1 ]; then
    echo "wrong answers: $a A (want 4), $aaaa AAAA (want 2), NXDOMAIN $nx (want 1)"
  fi
}

# dnsperf pinned to CPU 1, the same options for every server.
perf_run() { taskset -c 1 dnsperf -s 127.0.0.1 -p "$1" -d "$work/queries" -T 1 -c 16 -q 256 "${@:2}"; }
field() { awk -F: -v f="$1" '$1 ~ "^ *"f"$" {sub(/^ */, "", $2); split($2, v, " "); print v[1]; exit}' "$2"; }

# unbound serving a zone file: start_unbound PORT [DIR ZONE_FILE CPU] (the peer: $work/unbound,
# the generated zone, CPU 0). Sets server_pid.
start_unbound() {
  local dir=${2:-$work/unbound} zone=${3:-$work/bench.internal.zone} cpu=${4:-0}
  mkdir -p "$dir"
  # auth-zone for downstream: unbound answers the zone authoritatively (AA, NXDOMAIN + SOA).
  # do-not-query-address for every address: it cannot send a query anywhere.
  cat >"$dir/unbound.conf" <<EOF
server:
  num-threads: 1
  interface: 127.0.0.1
  port: $1
  do-ip6: no
  do-daemonize: no
  chroot: ""
  username: ""
  directory: "$dir"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 0
  access-control: 127.0.0.0/8 allow
  module-config: "iterator"
  rrset-roundrobin: no
  minimal-responses: yes
  incoming-num-tcp: 100
  do-not-query-localhost: yes
  do-not-query-address: 0.0.0.0/0
  do-not-query-address: ::/0
remote-control:
  control-enable: no
auth-zone:
  name: "bench.internal."
  zonefile: "$zone"
  for-downstream: yes
  for-upstream: no
  fallback-enabled: no
EOF
  taskset -c "$cpu" unbound -d -c "$dir/unbound.conf" >"$log" 2>&1 &
  server_pid=$!
}

start_dnsmasq() {
  # The hosts file through --addn-hosts, --local makes every other bench.internal name NXDOMAIN
  # (dnsmasq has no SOA for it); no upstreams. The dnsmasq a LAN or a laptop runs.
  taskset -c 0 dnsmasq --keep-in-foreground --conf-file=/dev/null --no-hosts --no-resolv \
    --addn-hosts="$work/hosts" --local=/bench.internal/ --local-ttl=5 \
    --listen-address=127.0.0.1 --bind-interfaces --port="$1" --user=root --pid-file= \
    --log-facility="$log" >>"$log" 2>&1 &
  server_pid=$!
}

start_knot_resolver() {
  mkdir -p "$work/kresd"
  # knot-resolver 5 serves no zones: the hints module answers the names of the hosts file, and a
  # Lua policy rule answers NXDOMAIN for every name it does not have (one table look-up per
  # query). Every module that would query the internet is unloaded and outgoing queries are
  # bound to loopback, so it cannot send a query anywhere.
  cat >"$work/kresd/config.lua" <<EOF
net.listen('127.0.0.1', $1, { kind = 'dns' })
net.outgoing_v4('127.0.0.1')
net.outgoing_v6('::1')
for _, m in ipairs({'priming', 'detect_time_skew', 'detect_time_jump', 'ta_update',
                    'ta_signal_query', 'ta_sentinel', 'watchdog'}) do
  pcall(modules.unload, m)
end
trust_anchors.remove('.')
cache.open(64 * MB, 'lmdb://$work/kresd/cache')
modules.load('hints > iterate')
hints.use_nodata(true)
hints.ttl(5)
hints.add_hosts('$work/hosts')
local known = {}
for line in io.lines('$work/names') do known[todname(line)] = true end
policy.add(function(_, query)
  if known[query:name()] then return nil end
  return policy.DENY
end)
EOF
  (cd "$work/kresd" && exec taskset -c 0 kresd -n -q -c "$work/kresd/config.lua" "$work/kresd") \
    >"$log" 2>&1 &
  server_pid=$!
}

start_failover_dns() {
  # One tokio worker thread (TOKIO_WORKER_THREADS=1); no upstreams (an empty resolv.conf), so
  # nothing is forwarded anywhere; log level warn (no per-query logs either way).
  : >"$work/empty-resolv.conf"
  TOKIO_WORKER_THREADS=1 RUST_LOG=warn taskset -c 0 "$binary" serve \
    --zones "$work/failover-dns/zones" --listen "127.0.0.1:$1" \
    --control "$work/failover-dns.sock" --resolv-conf "$work/empty-resolv.conf" \
    >"$log" 2>&1 &
  server_pid=$!
}

# Health ordering active: 100 endpoints reported through the CLI, then (over the control socket,
# one connection) every second name's primary down and every third name's gateway-1 path up.
failover_dns_reports() {
  local i
  for i in $(seq 1 2 199); do
    "$binary" report --fail "100.64.0.$i" --control "$work/failover-dns.sock" >/dev/null
  done
  python3 scripts/bench/peers.py reports "$work/failover-dns.sock" "$names" >&2
}

skip() {
  echo "  left out: $2" >&2
  printf '{"server": "%s", "skipped": "%s"}\n' "$1" "$2" >>"$results"
}

measure() {
  local server=$1 start_fn=$2 note=$3 port started ready_s problem
  log="$work/$server.log"
  port=$(free_port)
  echo "== $server on 127.0.0.1:$port" >&2
  started=$(date +%s.%N)
  "$start_fn" "$port"
  if ! wait_ready "$port"; then
    skip "$server" "did not answer within 60 s (log: $(tail -c 300 "$log" 2>/dev/null | tr '\n"\\' '   '))"
    kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; server_pid=""
    return
  fi
  ready_s=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}')
  problem=$(check_answers "$port")
  if [ -n "$problem" ]; then
    skip "$server" "$problem"
    kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
    return
  fi
  [ "$server" != failover-dns ] || failover_dns_reports

  local cpu0 cpu1 qps completed rss threads client tcp_qps p50 p99 busy_p50 busy_p99
  saturate "$server" "$port"

  steady_latency "$server" "$port"

  perf_run "$port" -l "$duration" -m tcp >"$work/$server.tcp" 2>&1
  tcp_qps=$(field "Queries per second" "$work/$server.tcp")
  echo "  TCP saturated: $tcp_qps qps" >&2

  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
  python3 - "$server" "$qps" "$completed" "$((cpu1 - cpu0))" "$clk_tck" "$rss" "$threads" \
    "$p50" "$p99" "$busy_p50" "$busy_p99" "$tcp_qps" "$note" "$ready_s" "$duration" "$client" \
    >>"$results" <<'EOF'
import json, sys
(server, qps, completed, ticks, tck, rss, threads, p50, p99, busy_p50, busy_p99, tcp, note, ready,
 duration, client) = sys.argv[1:]
cpu_s = int(ticks) / int(tck)
print(json.dumps({
    "server": server, "qps": float(qps or 0), "cpu_us": cpu_s / max(int(completed or 0), 1) * 1e6,
    "cpu_s": cpu_s, "rss_kb": int(rss or 0), "threads": int(threads or 0),
    "p50_us": float(p50), "p99_us": float(p99), "busy_p50_us": float(busy_p50),
    "busy_p99_us": float(busy_p99), "tcp_qps": float(tcp or 0), "note": note,
    "ready_s": float(ready or 0), "server_cpu_pct": cpu_s / float(duration) * 100,
    "client_cpu_pct": float(client or 0),
}))
EOF
}

# The saturation run of the server on port $2 (files named after $1). Sets cpu0 and cpu1 (the
# server's CPU ticks before and after), client (dnsperf's CPU %), rss, threads, qps, completed.
saturate() {
  local name=$1 port=$2 TIMEFORMAT='%U %S %R'
  cpu0=$(cpu_ticks "$server_pid")
  # bash's time: dnsperf's own CPU use, to show which side was the limit.
  { time perf_run "$port" -l "$duration" >"$work/$name.udp" 2>&1; } 2>"$work/$name.time"
  cpu1=$(cpu_ticks "$server_pid")
  client=$(awk '{printf "%.0f", ($1 + $2) / $3 * 100}' "$work/$name.time")
  rss=$(status_field "$server_pid" VmRSS)
  threads=$(status_field "$server_pid" Threads)
  qps=$(field "Queries per second" "$work/$name.udp")
  completed=$(field "Queries completed" "$work/$name.udp")
  echo "  UDP saturated: $qps qps, $completed answered, server CPU $((cpu1 - cpu0)) ticks, dnsperf CPU ${client}%" >&2
}

# Latency at a steady $rate qps, twice: dnsperf's per-query latencies (its receive thread
# sleeps between replies), then the busy-polling probe (examples/steady_latency.rs), whose own
# wake-ups add nothing. Sets p50, p99, busy_p50 and busy_p99 (µs; nan when a run failed).
steady_latency() {
  local server=$1 port=$2 busy
  perf_run "$port" -l "$steady" -Q "$rate" -v >"$work/$server.steady" 2>&1
  read -r p50 p99 _ < <(python3 scripts/bench/peers.py latency "$work/$server.steady")
  busy=$(taskset -c 1 "$probe" probe "127.0.0.1:$port" "$work/queries" "$rate" "$steady" \
    2>"$work/$server.probe.err" || echo "nan nan nan nan 0 0")
  read -r busy_p50 _ busy_p99 _ <<<"$busy"
  echo "  steady $rate qps: dnsperf p50 ${p50} µs, p99 ${p99} µs; busy client p50 ${busy_p50} µs, p99 ${busy_p99} µs" >&2
}

# The machine's floor: a UDP echo (examples/steady_latency.rs echo) that does no DNS work at
# all, pinned like the servers and measured with the same two steady-rate runs. No server can
# answer faster than this on this machine.
measure_floor() {
  local port p50 p99 busy_p50 busy_p99 deadline
  port=$(free_port)
  echo "== UDP echo (the floor) on 127.0.0.1:$port" >&2
  taskset -c 0 "$probe" echo "127.0.0.1:$port" >"$work/echo.log" 2>&1 &
  server_pid=$!
  deadline=$((SECONDS + 10))
  # The echo answers a query with the query itself: dig sees a NOERROR reply once it is up.
  until dig +time=1 +tries=1 @127.0.0.1 -p "$port" h0.bench.internal A 2>/dev/null \
      | grep -q 'status: NOERROR'; do
    if [ $SECONDS -ge $deadline ]; then
      skip "UDP echo (floor)" "did not answer within 10 s"
      kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; server_pid=""
      return
    fi
    sleep 0.05
  done
  steady_latency echo "$port"
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
  printf '{"server": "UDP echo (floor)", "floor": true, "p50_us": %s, "p99_us": %s, "busy_p50_us": %s, "busy_p99_us": %s, "note": "no DNS work: every datagram back with QR set (examples/steady_latency.rs), the least any server can do here"}\n' \
    "$p50" "$p99" "$busy_p50" "$busy_p99" >>"$results"
}

# failover-dns forwarding the zone's names (it owns none) to unbound, answering from its cache:
# forwarded answers served from the cache. The upstream serves the same zone with
# a TTL of an hour (negative answers too), so that no cached answer expires during the run; it
# runs on CPU 1 beside dnsperf and is asked only while one pass over the query file fills the
# cache. Then a saturation run as for the servers above (no steady-rate or TCP runs).
measure_cached_forwarding() {
  local server="failover-dns, forwarded from its cache" port upstream cpu0 cpu1 qps completed
  local rss threads client
  log="$work/upstream.log"
  upstream=$(free_port)
  echo "== unbound as the upstream on 127.0.0.1:$upstream (CPU 1)" >&2
  sed -e 's/^\$TTL 5$/$TTL 3600/' -e 's/ 86400 5$/ 86400 3600/' "$work/bench.internal.zone" \
    >"$work/bench.internal.hour.zone"
  start_unbound "$upstream" "$work/upstream" "$work/bench.internal.hour.zone" 1
  upstream_pid=$server_pid
  server_pid=$upstream_pid
  if ! wait_ready "$upstream"; then
    skip "$server" "the upstream did not answer within 60 s"
    kill "$upstream_pid" 2>/dev/null || true; wait "$upstream_pid" 2>/dev/null || true
    upstream_pid=""; server_pid=""
    return
  fi
  log="$work/forwarding.log"
  port=$(free_port)
  echo "== $server on 127.0.0.1:$port" >&2
  mkdir -p "$work/no-zones"
  TOKIO_WORKER_THREADS=1 RUST_LOG=warn taskset -c 0 "$binary" serve \
    --zones "$work/no-zones" --listen "127.0.0.1:$port" --control "$work/forwarding.sock" \
    --resolv-conf "$work/empty-resolv.conf" --upstream "127.0.0.1:$upstream" \
    --cache-size 100000 >"$log" 2>&1 &
  server_pid=$!
  if ! wait_ready "$port" || [ -n "$(check_answers "$port")" ]; then
    skip "$server" "did not forward the zone's answers (log: $(tail -c 300 "$log" | tr '\n"\\' '   '))"
  else
    perf_run "$port" -n 1 >"$work/forwarding.fill" 2>&1
    saturate forwarding "$port"
    python3 - "$server" "$qps" "$completed" "$((cpu1 - cpu0))" "$clk_tck" "$rss" "$threads" \
      "$duration" "$client" >>"$results" <<'EOF'
import json, sys
server, qps, completed, ticks, tck, rss, threads, duration, client = sys.argv[1:]
cpu_s = int(ticks) / int(tck)
print(json.dumps({
    "server": server, "ours": True, "qps": float(qps or 0),
    "cpu_us": cpu_s / max(int(completed or 0), 1) * 1e6, "cpu_s": cpu_s,
    "rss_kb": int(rss or 0), "threads": int(threads or 0), "server_cpu_pct": cpu_s / float(duration) * 100,
    "client_cpu_pct": float(client or 0),
    "note": "no zones; --upstream unbound (TTL 1 h) on CPU 1, --cache-size 100000; cache filled by one pass over the query file first",
}))
EOF
  fi
  kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; server_pid=""
  kill "$upstream_pid" 2>/dev/null || true; wait "$upstream_pid" 2>/dev/null || true; upstream_pid=""
}

wanted() {
  [ ${#only[@]} -eq 0 ] && return 0
  local o
  for o in "${only[@]}"; do [ "$o" = "$1" ] && return 0; done
  return 1
}

loadavg_before=$(cut -d' ' -f1-3 /proc/loadavg)
wanted unbound && measure unbound start_unbound \
  "auth-zone (for-downstream), 1 thread, rrset-roundrobin off"
wanted knot-resolver && measure knot-resolver start_knot_resolver \
  "hints module (hosts file) + a Lua policy rule for NXDOMAIN, 1 process"
wanted dnsmasq && measure dnsmasq start_dnsmasq \
  "addn-hosts + --local=/bench.internal/ (NXDOMAIN without SOA), 1 process; TCP forks per connection"
wanted floor && measure_floor
wanted forwarding && measure_cached_forwarding
wanted failover-dns && measure failover-dns start_failover_dns \
  "TOKIO_WORKER_THREADS=1 (the threads column counts the main thread too), health ordering on: $(( names / 2 + names / 3 + 100 )) reports"

echo
echo "load average before: $loadavg_before; after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) CPUs ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)); Linux $(uname -r)"
echo "unbound $(unbound -V 2>/dev/null | awk 'NR==1 {print $2}'), $(dnsmasq --version | awk 'NR==1 {print $2, $3}'), $(kresd --version | sed 's/.*version /knot-resolver /'), dnsperf $(dnsperf -h 2>&1 | awk '/^Version/ {print $2}'), failover-dns $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo '+changes')"
echo "$names names × 4 A + 2 AAAA; queries 80% A / 10% AAAA / 10% NXDOMAIN; server on CPU 0, dnsperf -T 1 -c 16 -q 256 on CPU 1; saturation ${duration} s, steady ${rate} qps ${steady} s"
echo
python3 scripts/bench/peers.py table "$results"
