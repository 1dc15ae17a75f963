#!/usr/bin/env python3
"""Writes the checked-in seed corpora of the fuzz targets (fuzz/corpus/<target>/).

The bytes are checked in; run this again only to change the seeds:

    python3 fuzz/make_seeds.py

Names are descriptive (never 40 hex characters: those are the fuzzer's own finds, ignored by
git). Besides seeding libFuzzer, the request seeds are the hostile shapes the integration tests
send over UDP and TCP (tests/it/hostile.rs), and tests/it/fuzz_corpus.rs replays every file
through the same harness functions as the targets.
"""

import ipaddress
import pathlib
import struct

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent

TYPES = {"A": 1, "NS": 2, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28, "OPT": 41,
         "HTTPS": 65, "SVCB": 64, "ANY": 255}


def name(text):
    out = b""
    for label in text.strip(".").split("."):
        if label:
            raw = label.encode()
            out += bytes([len(raw)]) + raw
    return out + b"\0"


def header(ident=0x1234, flags=0x0100, qd=1, an=0, ns=0, ar=0):
    return struct.pack(">HHHHHH", ident, flags, qd, an, ns, ar)


def question(qname, qtype="A", qclass=1):
    raw = name(qname) if isinstance(qname, str) else qname
    t = TYPES[qtype] if isinstance(qtype, str) else qtype
    return raw + struct.pack(">HH", t, qclass)


def opt(payload=1232, version=0, do=False, rname=b"\0", rdata=b""):
    flags = 0x8000 if do else 0
    ttl = (0 << 24) | (version << 16) | flags
    return rname + struct.pack(">HHIH", 41, payload, ttl, len(rdata)) + rdata


def query(qname, qtype="A", edns=None, ident=0x1234, flags=0x0100, qclass=1):
    if edns is None:
        return header(ident, flags) + question(qname, qtype, qclass)
    return header(ident, flags, ar=1) + question(qname, qtype, qclass) + edns


REQUEST = {}

# Valid queries of every type we answer, with and without EDNS.
for qtype in ["A", "AAAA", "ANY", "SOA", "HTTPS", "MX", "TXT", "SVCB", "NS"]:
    owner = "internal" if qtype in ("SOA", "NS") else "app.internal"
    REQUEST[f"valid-{qtype.lower()}"] = query(owner, qtype, ident=0x1000 + TYPES[qtype])
    REQUEST[f"valid-{qtype.lower()}-edns"] = query(
        owner, qtype, edns=opt(), ident=0x2000 + TYPES[qtype])
REQUEST["valid-ptr"] = query("10.1.64.100.in-addr.arpa", "PTR", ident=0x3001)
REQUEST["valid-ptr-edns"] = query("10.1.64.100.in-addr.arpa", "PTR", edns=opt(), ident=0x3002)
REQUEST["valid-ptr-v6"] = query(
    ipaddress.ip_address("fd7a:115c:a1e0::1:10").reverse_pointer, "PTR", ident=0x3003)
REQUEST["valid-a-edns-do-4096"] = query("app.internal", "A", edns=opt(4096, do=True), ident=0x3004)
REQUEST["valid-a-edns-512"] = query("app.internal", "A", edns=opt(512), ident=0x3005)
REQUEST["valid-a-mixed-case"] = query("ApP.InTeRnAl", "A", ident=0x3006)
REQUEST["valid-a-subnet-host"] = query("files.internal", "A", ident=0x3007)
REQUEST["valid-a-empty-non-terminal"] = query("deep.internal", "A", ident=0x3008)
REQUEST["valid-a-hidden-by-policy"] = query("hidden.internal", "A", ident=0x3009)
REQUEST["valid-a-nxdomain"] = query("nothing.internal", "A", ident=0x300A)
REQUEST["valid-a-not-owned"] = query("example.com", "A", ident=0x300B)
REQUEST["valid-root-ns"] = query(".", "NS", ident=0x300C)
REQUEST["valid-a-no-rd"] = query("app.internal", "A", flags=0x0000, ident=0x300D)
REQUEST["valid-a-class-any"] = query("app.internal", "A", qclass=255, ident=0x300E)
REQUEST["valid-a-edns-cookie"] = query(
    "app.internal", "A", edns=opt(rdata=struct.pack(">HH", 10, 8) + b"\x01" * 8), ident=0x300F)

# Hostile shapes.
Q = question("app.internal")
REQUEST["hostile-empty"] = b""
REQUEST["hostile-one-byte"] = b"\x12"
for n in (2, 3, 11):
    REQUEST[f"hostile-truncated-header-{n}"] = header()[:n]
REQUEST["hostile-header-only-qdcount-1"] = header(0x4001)
REQUEST["hostile-question-cut-short"] = header(0x4002) + Q[:-3]
REQUEST["hostile-qdcount-0-with-question"] = header(0x4003, qd=0) + Q
REQUEST["hostile-qdcount-2-one-question"] = header(0x4004, qd=2) + Q
REQUEST["hostile-two-questions"] = header(0x4005, qd=2) + Q + question("db.internal")
REQUEST["hostile-ancount-65535"] = header(0x4006, an=0xFFFF) + Q
REQUEST["hostile-arcount-3-nothing-there"] = header(0x4007, ar=3) + Q
REQUEST["hostile-trailing-garbage"] = query("app.internal", ident=0x4008) + b"\xde\xad\xbe\xef"
# Compression: a pointer to itself, a two-pointer loop, a pointer into the header (the 0.26
# decoder accepts it as "prior"; echoing the raw question would make the reply unparsable), a
# pointer past the end, and the 18-byte reproducer from the hickory notes.
REQUEST["hostile-pointer-to-itself"] = header(0x4101) + b"\xc0\x0c" + b"\x00\x01\x00\x01"
REQUEST["hostile-pointer-loop-two"] = (
    header(0x4102) + b"\x01a\xc0\x0e" + b"\x00\x01\x00\x01")  # 0x0e points at the next pointer
REQUEST["hostile-pointer-loop-mutual"] = (
    header(0x4103, qd=2) + b"\xc0\x12\x00\x01\x00\x01" + b"\xc0\x0c\x00\x01\x00\x01")
REQUEST["hostile-pointer-into-header"] = header(0x4104) + b"\xc0\x02" + b"\x00\x01\x00\x01"
REQUEST["hostile-pointer-into-header-notes"] = bytes.fromhex(
    "080001000001000000000000c00200010001")
REQUEST["hostile-pointer-past-end"] = header(0x4105) + b"\xc0\xff" + b"\x00\x01\x00\x01"
REQUEST["hostile-pointer-chain-in-answer"] = (
    header(0x4106, an=1) + Q + b"\xc0\x1e" + struct.pack(">HHIH", 1, 1, 5, 4) + b"\x0a\x00\x00\x01")
# Labels and names over the limits.
REQUEST["hostile-label-64-octets"] = header(0x4201) + b"\x40" + b"a" * 64 + b"\0\x00\x01\x00\x01"
REQUEST["hostile-label-type-0x80"] = header(0x4202) + b"\x80abc\0\x00\x01\x00\x01"
REQUEST["hostile-label-length-past-end"] = header(0x4203) + b"\x3fabc"
REQUEST["hostile-name-256-octets"] = header(0x4204) + (b"\x3f" + b"a" * 63) * 4 + b"\0\x00\x01\x00\x01"
REQUEST["hostile-name-255-via-pointers"] = (
    header(0x4205, qd=2) + (b"\x3f" + b"b" * 63) * 3 + b"\0\x00\x01\x00\x01"
    + b"\x3f" + b"c" * 63 + b"\xc0\x0c\x00\x01\x00\x01")
REQUEST["hostile-name-no-terminator"] = header(0x4206) + b"\x03app\x08internal"
# EDNS: several OPT records, OPT in the wrong section, OPT with an owner name, version 1,
# payload 0 and 65535, an option whose length runs past the record.
REQUEST["hostile-two-opt"] = header(0x4301, ar=2) + Q + opt() + opt(4096)
REQUEST["hostile-opt-in-answer"] = header(0x4302, an=1) + Q + opt()
REQUEST["hostile-opt-in-authority"] = header(0x4303, ns=1) + Q + opt()
REQUEST["hostile-opt-with-owner-name"] = header(0x4304, ar=1) + Q + opt(rname=name("x.internal"))
REQUEST["hostile-edns-version-1"] = header(0x4305, ar=1) + Q + opt(version=1)
REQUEST["hostile-edns-payload-0"] = header(0x4306, ar=1) + Q + opt(0)
REQUEST["hostile-edns-payload-65535"] = header(0x4307, ar=1) + Q + opt(65535)
REQUEST["hostile-edns-option-overruns"] = (
    header(0x4308, ar=1) + Q + opt(rdata=struct.pack(">HH", 10, 200) + b"\x01\x02"))
# Classes, opcodes, flags.
REQUEST["hostile-class-chaos"] = query("app.internal", qclass=3, ident=0x4401)
REQUEST["hostile-class-unknown-1234"] = query("app.internal", qclass=1234, ident=0x4402)
REQUEST["hostile-class-none"] = query("app.internal", qclass=254, ident=0x4403)
REQUEST["hostile-type-0"] = query("app.internal", 0, ident=0x4404)
REQUEST["hostile-type-axfr"] = query("internal", 252, ident=0x4405)
REQUEST["hostile-opcode-status"] = query("app.internal", flags=0x1100, ident=0x4406)
REQUEST["hostile-opcode-notify"] = query("internal", "SOA", flags=0x2000, ident=0x4407)
REQUEST["hostile-opcode-update"] = query("internal", "SOA", flags=0x2800, ident=0x4408)
REQUEST["hostile-opcode-15"] = query("app.internal", flags=0x7900, ident=0x4409)
REQUEST["hostile-tc-and-z-bits"] = query("app.internal", flags=0x0370, ident=0x440A)
REQUEST["hostile-rcode-in-query"] = query("app.internal", flags=0x010F, ident=0x440B)
# Responses must never be answered (packet loops, RUSTSEC-2023-0041).
REQUEST["hostile-qr1-response"] = query("app.internal", flags=0x8180, ident=0x4501)
REQUEST["hostile-qr1-formerr"] = header(0x4502, flags=0x8001, qd=0)
REQUEST["hostile-qr1-unparsable"] = header(0x4503, flags=0x8100) + b"\xc0"
REQUEST["hostile-qr1-header-only"] = header(0x4504, flags=0x8000, qd=0)
# An MX/SRV-like record with a null target in the additional section (RUSTSEC-2020-0001 shape).
REQUEST["hostile-mx-null-target-additional"] = (
    header(0x4601, ar=1) + Q + b"\0" + struct.pack(">HHIH", 15, 1, 5, 3) + b"\x00\x0a\x00")
REQUEST["hostile-many-questions"] = header(0x4602, qd=40) + Q * 40

CONTROL = {
    "status": b'{"op":"status"}\n',
    "report-failure": b'{"op":"report","address":"100.64.1.10","outcome":"failure","rtt_ms":12.5}\n',
    "report-success-v6": b'{"op":"report","address":"fd7a:115c:a1e0::1:10","outcome":"success"}',
    "report-not-an-endpoint": b'{"op":"report","address":"192.0.2.1","outcome":"success"}',
    "report-rtt-negative": b'{"op":"report","address":"100.64.1.10","outcome":"failure","rtt_ms":-1}',
    "report-rtt-huge": b'{"op":"report","address":"100.64.1.10","outcome":"failure","rtt_ms":1e308}',
    "report-unknown-field": b'{"op":"report","address":"100.64.1.10","outcome":"success","x":1}',
    "unknown-op": b'{"op":"reboot"}',
    "garbage": b"garbage\n",
    "empty": b"",
    "blank": b"   \n",
    "not-utf8": b"\xff\xfe\n",
    "half-line": b'{"op":',
    "deep-nesting": b"[" * 200 + b"]" * 200,
    "wrong-types": b'{"op":"report","address":1,"outcome":true}',
}

ZONE_CONFIG = {
    "minimal": b'[[zone]]\norigin = "internal"\n',
    "bad-cidr": (b'[[zone]]\norigin = "internal"\n[[asset]]\nid = "g"\nkind = "gateway"\n'
                 b'addresses = ["1.2.3.4"]\n[[subnet]]\nid = "s"\ngateway = "g"\ncidr = "10.0.0.0/33"\n'),
    "unknown-field": b'[[zone]]\norigin = "internal"\ncolour = 1\n',
    "syntax-error": b'[[zone]\norigin = \n',
    "name-outside-zone": (b'[[zone]]\norigin = "internal"\n[[asset]]\nid = "a"\nkind = "primary"\n'
                          b'addresses = ["100.64.1.1"]\nnames = ["app.example"]\n'),
    "duplicate-ids": (b'[[zone]]\norigin = "internal"\n[[asset]]\nid = "a"\nkind = "primary"\n'
                      b'addresses = ["100.64.1.1"]\n[[asset]]\nid = "a"\nkind = "gateway"\naddresses = []\n'),
}


def write(target, seeds):
    directory = HERE / "corpus" / target
    directory.mkdir(parents=True, exist_ok=True)
    for label, data in seeds.items():
        file = directory / f"seed-{label}"
        assert len(file.name) != 40, file.name
        file.write_bytes(data)


def main():
    write("request", REQUEST)
    write("control_line", CONTROL)
    zones = dict(ZONE_CONFIG)
    for path in sorted((ROOT / "zones").glob("*.toml")):
        zones[f"sample-{path.stem}"] = path.read_bytes()
    zones["fuzz-zone"] = (ROOT / "fuzz" / "zone.toml").read_bytes()
    write("zone_config", zones)


if __name__ == "__main__":
    main()
