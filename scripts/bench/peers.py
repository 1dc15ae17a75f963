#!/usr/bin/env python3
"""Helpers for scripts/bench-peers.sh (the peer comparison); measures nothing itself.

Subcommands:
  generate DIR NAMES   write the same zone in every server's format, and the dnsperf query file
  reports SOCKET NAMES feed health reports to a running failover-dns over its control socket
  latency FILE         p50/p99 latency (µs) from `dnsperf -v` output
  table RESULTS        print the comparison table from the results file the script wrote

Zone shape (the same as benches/common/mod.rs): zone bench.internal, names h<i>.bench.internal,
each carried by 4 destinations: a primary asset (IPv4 + IPv6), a virtual asset on gateway 1
(IPv4 + IPv6), virtual assets on gateways 2 and 3 (IPv4 each): 4 A + 2 AAAA per name.
Queries: 80% A and 10% AAAA for existing names, 10% A for names that do not exist (NXDOMAIN).
"""

import json
import os
import random
import socket
import sys

ORIGIN = "bench.internal"
TTL = 5
PER_FILE = 100  # failover-dns names per zone file (see README: its loader is quadratic per file)
QUERIES = 100_000


def addresses(i):
    """[primary v4, primary v6, va v4, va v6, vb v4, vc v4] of name i (as benches/common)."""
    hi, mid, low = i >> 16, (i >> 8) & 0xFF, i & 0xFF
    v4 = lambda first, second: f"{first}.{second}.{mid}.{low}"
    v6 = lambda net: f"fd00:{net:x}::{hi:x}:{i & 0xFFFF:x}"
    return [v4(100, 64 + hi), v6(1), v4(10, 4 + hi), v6(2), v4(10, 8 + hi), v4(10, 12 + hi)]


def name(i):
    return f"h{i}.{ORIGIN}"


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def generate(out, names):
    # failover-dns: zone and policy files, PER_FILE names each; one policy per file grants all.
    zone = [
        f'[[zone]]\norigin = "{ORIGIN}"\nttl = {TTL}\n[zone.soa]\nserial = 1\nminimum = {TTL}\n'
    ]
    for g in (1, 2, 3):
        zone.append(f'[[asset]]\nid = "gw-{g}"\nkind = "gateway"\naddresses = ["100.127.0.{g}"]\n')
    write(f"{out}/failover-dns/zones/00-zone.toml", "\n".join(zone))
    for start in range(0, names, PER_FILE):
        parts, granted = [], []
        for i in range(start, min(start + PER_FILE, names)):
            p4, p6, a4, a6, b4, c4 = addresses(i)
            n = name(i)
            parts.append(
                f'[[asset]]\nid = "p{i}"\nkind = "primary"\naddresses = ["{p4}", "{p6}"]\nnames = ["{n}"]\n\n'
                f'[[virtual_asset]]\nid = "a{i}"\ngateway = "gw-1"\naddresses = ["{a4}", "{a6}"]\nnames = ["{n}"]\n\n'
                f'[[virtual_asset]]\nid = "b{i}"\ngateway = "gw-2"\naddresses = ["{b4}"]\nnames = ["{n}"]\n\n'
                f'[[virtual_asset]]\nid = "c{i}"\ngateway = "gw-3"\naddresses = ["{c4}"]\nnames = ["{n}"]\n'
            )
            granted += [f'"{k}{i}"' for k in "pabc"]
        parts.append(
            f'[[policy]]\nid = "all-{start}"\nsources = ["*"]\ndestinations = [{", ".join(granted)}]\n'
        )
        write(f"{out}/failover-dns/zones/10-names-{start:06d}.toml", "\n".join(parts))

    # A hosts file (dnsmasq addn-hosts, knot-resolver hints): one line per address, the same
    # order as failover-dns's configuration order.
    hosts = []
    for i in range(names):
        for address in addresses(i):
            hosts.append(f"{address} {name(i)}")
    write(f"{out}/hosts", "\n".join(hosts) + "\n")

    # An RFC 1035 zone file (unbound auth-zone).
    lines = [
        f"$ORIGIN {ORIGIN}.",
        f"$TTL {TTL}",
        f"@ SOA failover-dns.{ORIGIN}. hostmaster.{ORIGIN}. 1 3600 600 86400 {TTL}",
        f"@ NS failover-dns.{ORIGIN}.",
        "failover-dns A 127.0.0.1",
    ]
    for i in range(names):
        for address in addresses(i):
            rtype = "AAAA" if ":" in address else "A"
            lines.append(f"h{i} {rtype} {address}")
    write(f"{out}/bench.internal.zone", "\n".join(lines) + "\n")

    # Names for knot-resolver's policy filter (the names that exist; all others are NXDOMAIN).
    write(f"{out}/names", "\n".join(name(i) for i in range(names)) + "\n")

    # dnsperf queries: 80% A, 10% AAAA, 10% NXDOMAIN, shuffled, reproducible.
    rng = random.Random(5)
    queries = []
    for k in range(QUERIES):
        bucket = k % 10
        i = rng.randrange(names)
        if bucket < 8:
            queries.append(f"{name(i)} A")
        elif bucket == 8:
            queries.append(f"{name(i)} AAAA")
        else:
            queries.append(f"nx{i}.{ORIGIN} A")
    rng.shuffle(queries)
    write(f"{out}/queries", "\n".join(queries) + "\n")


def reports(path, names):
    """Every second name: primary IPv4 down; every third: gateway-1 virtual asset up (as the
    criterion benches). One connection, one NDJSON request per line."""
    requests = []
    for i in range(names):
        p4, _, a4, *_ = addresses(i)
        if i % 2 == 0:
            requests.append({"op": "report", "address": p4, "outcome": "failure"})
        if i % 3 == 0:
            requests.append({"op": "report", "address": a4, "outcome": "success", "rtt_ms": 1.5})
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(path)
        f = s.makefile("rwb")
        for start in range(0, len(requests), 100):  # batches, so neither side's buffer fills
            batch = requests[start:start + 100]
            for request in batch:
                f.write((json.dumps(request) + "\n").encode())
            f.flush()
            for _ in batch:
                reply = json.loads(f.readline())
                if reply.get("reply") != "reported":
                    sys.exit(f"report failed: {reply}")
    print(f"{len(requests)} reports accepted")


def latency(path):
    """dnsperf 2.10 -v prints one line per response: '> RCODE NAME TYPE SECONDS'."""
    samples = []
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("> "):
                try:
                    samples.append(float(line.split()[-1]))
                except ValueError:
                    pass
    samples.sort()
    if not samples:
        print("nan nan 0")
        return
    q = lambda p: samples[min(len(samples) - 1, round((len(samples) - 1) * p))] * 1e6
    print(f"{q(0.50):.0f} {q(0.99):.0f} {len(samples)}")


def table(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    ok = [r for r in rows if not r.get("skipped")]
    peers = [r for r in ok if r["server"] != "failover-dns" and not r.get("floor")
             and not r.get("ours")]
    best = min(peers, key=lambda r: r["cpu_us"], default=None)
    unbound = next((r for r in peers if r["server"].startswith("unbound")), None)
    head = ["server", "qps", "CPU µs/q", "CPU/q vs best peer", "CPU/q vs unbound",
            "qps vs best peer", "server CPU %", "dnsperf CPU %", "p50 µs @10k", "p99 µs @10k", "busy p50 µs", "busy p99 µs", "RSS MB", "TCP qps",
            "threads", "ready s"]
    out = []
    for r in ok:
        ratio = lambda ref, key: f"{r[key] / ref[key]:.2f}×" if ref and ref[key] else "-"
        if r.get("floor"):
            out.append([r["server"], *["-"] * 7, f"{r['p50_us']:.0f}", f"{r['p99_us']:.0f}",
                        f"{r['busy_p50_us']:.0f}", f"{r['busy_p99_us']:.0f}", *["-"] * 4])
            continue
        num = lambda key: f"{r[key]:.0f}" if key in r else "-"
        out.append([
            r["server"], f"{r['qps']:,.0f}", f"{r['cpu_us']:.2f}",
            ratio(best, "cpu_us"), ratio(unbound, "cpu_us"), ratio(best, "qps"),
            f"{r.get('server_cpu_pct', 0):.0f}", f"{r.get('client_cpu_pct', 0):.0f}",
            num("p50_us"), num("p99_us"), num("busy_p50_us"), num("busy_p99_us"),
            f"{r['rss_kb'] / 1024:.1f}",
            f"{r['tcp_qps']:,.0f}" if r.get("tcp_qps") else "-", str(r.get("threads", "?")),
            f"{r['ready_s']:.1f}" if "ready_s" in r else "-",
        ])
    widths = [max(len(h), *(len(row[k]) for row in out)) if out else len(h) for k, h in enumerate(head)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
    print(line(head))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in out:
        print(line(row))
    if best:
        print(f"\nbest peer (lowest server CPU per query): {best['server']}")
    for r in rows:
        if r.get("skipped"):
            print(f"left out: {r['server']}: {r['skipped']}")
    for r in ok:
        if r.get("note"):
            print(f"note: {r['server']}: {r['note']}")


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "generate":
        generate(args[0], int(args[1]))
    elif command == "reports":
        reports(args[0], int(args[1]))
    elif command == "latency":
        latency(args[0])
    elif command == "table":
        table(args[0])
    else:
        sys.exit(f"unknown command {command}")
