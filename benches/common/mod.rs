//! Shared set-up for the benchmarks (not a benchmark itself): generated zone data of the peer
//! comparison's shape, a handler built the way `failover-dns serve` builds one, query packets,
//! the one call into the request path, and small measurement helpers (RSS, percentiles, whether
//! criterion runs in benchmark or test mode).
//!
//! Zone shape, the same as `scripts/bench-peers.sh` serves: zone `bench.internal`, shared names
//! `h<i>.bench.internal`, each carried by four destinations: a primary asset (one IPv4, one IPv6
//! address), a virtual asset on gateway 1 (IPv4 + IPv6), and virtual assets on gateways 2 and 3
//! (IPv4 each): 4 A + 2 AAAA endpoints per name. One policy per file grants every destination
//! to everyone (`sources = ["*"]`).

#![allow(
    dead_code,
    reason = "each bench binary uses a different part of this module"
)]

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use failover_dns::SourceFile;
use failover_dns::ZoneData;
use failover_dns::internals::AnswerMemo;
use failover_dns::internals::ForwardSettings;
use failover_dns::internals::Transport;
use failover_dns::internals::{Client, Handler, Step};
use failover_dns::internals::{HealthTable, Report};
use failover_dns::internals::{SharedSnapshot, Snapshot};
use failover_dns::load_zone_sources;
use failover_dns::{Outcome, ReportSource};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};

/// The client every benchmark query comes from: a loopback address over UDP.
const CLIENT: Client = Client {
    address: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40_000),
    transport: Transport::Udp,
};

/// The zone every generated name lies in.
pub const ORIGIN: &str = "bench.internal";
/// Names per generated file unless a caller asks otherwise (the size a console pushes);
/// `benches/load.rs` measures smaller and larger files too.
pub const NAMES_PER_FILE: usize = 100;

/// The one call into the request path, bytes in → bytes out, kept in one place so a change of
/// `Handler::handle`'s signature (for example a client address) is a one-line fix here.
pub fn answer(handler: &Handler, packet: &[u8]) -> Vec<u8> {
    match handler.handle(packet, CLIENT) {
        Step::Reply(bytes) => bytes,
        Step::Forward(_) => panic!("benchmark query was sent to the forwarder"),
        Step::Drop => panic!("benchmark query was dropped"),
    }
}

/// [`answer`] through the fast path: `memo`, with `recycled` as the reply's buffer (as the UDP
/// loop hands back the buffers of sent replies).
pub fn answer_memoised_into(
    handler: &Handler,
    memo: &mut AnswerMemo,
    packet: &[u8],
    recycled: Vec<u8>,
) -> Vec<u8> {
    match handler.handle_memoised(memo, packet, CLIENT, recycled) {
        Step::Reply(bytes) => bytes,
        Step::Forward(_) => panic!("benchmark query was sent to the forwarder"),
        Step::Drop => panic!("benchmark query was dropped"),
    }
}

/// [`answer_memoised_into`] with a fresh buffer.
pub fn answer_memoised(handler: &Handler, memo: &mut AnswerMemo, packet: &[u8]) -> Vec<u8> {
    answer_memoised_into(handler, memo, packet, Vec::new())
}

/// The whole request path including forwarding (used once, to fill the forwarder's cache);
/// next to [`answer`] for the same reason.
pub async fn respond(handler: &Handler, packet: &[u8]) -> Option<Vec<u8>> {
    handler.respond(packet, CLIENT).await
}

/// Whether criterion measures (`cargo bench`) rather than running each benchmark once as a test
/// (`cargo test --all-targets` runs bench targets without `--bench`). Expensive set-ups (100k
/// names) only happen when measuring; `FAILOVER_BENCH_NAMES` overrides the large size.
pub fn measuring() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test")
}

/// The large zone size: 100k names when measuring, 2k in test mode (so `cargo test` stays fast).
pub fn large_size() -> usize {
    if let Some(n) = std::env::var("FAILOVER_BENCH_NAMES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return n;
    }
    if measuring() { 100_000 } else { 2_000 }
}

/// The name of shared name `i`.
pub fn shared_name(i: usize) -> String {
    format!("h{i}.{ORIGIN}")
}

/// The addresses of name `i`: `[primary v4, primary v6, va v4, va v6, vb v4, vc v4]`.
/// Valid for `i < 262_144`.
pub fn addresses(i: usize) -> [IpAddr; 6] {
    let hi = u8::try_from(i >> 16).expect("fewer than 262144 names");
    let [_, _, mid, low] = u32::try_from(i)
        .expect("fewer than 262144 names")
        .to_be_bytes();
    let v4 = |first: u8, second: u8| IpAddr::V4(Ipv4Addr::new(first, second, mid, low));
    let v6 = |net: u16| {
        let i = u16::try_from(i & 0xffff).expect("masked to 16 bits");
        let hi = u16::from(hi);
        IpAddr::V6(Ipv6Addr::new(0xfd00, net, 0, 0, 0, 0, hi, i))
    };
    [
        v4(100, 64 + hi),
        v6(1),
        v4(10, 4 + hi),
        v6(2),
        v4(10, 8 + hi),
        v4(10, 12 + hi),
    ]
}

/// The IPv4 address of the primary asset of name `i` (first in configuration order).
pub fn primary_v4(i: usize) -> IpAddr {
    addresses(i)[0]
}

/// The IPv4 address of the virtual asset on gateway 1 of name `i` (second in configuration order).
pub fn second_v4(i: usize) -> IpAddr {
    addresses(i)[2]
}

/// The one IPv4-only name (its AAAA query is NODATA), besides the generated names.
pub const V4_ONLY: &str = "v4only.bench.internal";

/// Zone and policy files for `names` shared names of the 4 A + 2 AAAA shape, as the loader reads
/// them from a directory.
pub fn zone_files(names: usize) -> Vec<(String, String)> {
    zone_files_shaped(names, true, NAMES_PER_FILE)
}

/// Zone and policy files for `names` shared names, `per_file` names to a file; with `v6` false
/// each destination has only its IPv4 address (4 endpoints per name).
pub fn zone_files_shaped(names: usize, v6: bool, per_file: usize) -> Vec<(String, String)> {
    let per_file = per_file.max(1);
    let mut files = vec![(
        "00-zone.toml".to_string(),
        format!(
            "[[zone]]\norigin = \"{ORIGIN}\"\nttl = 5\n[zone.soa]\nserial = 1\nminimum = 5\n\n\
             [[asset]]\nid = \"gw-1\"\nkind = \"gateway\"\naddresses = [\"100.127.0.1\"]\n\n\
             [[asset]]\nid = \"gw-2\"\nkind = \"gateway\"\naddresses = [\"100.127.0.2\"]\n\n\
             [[asset]]\nid = \"gw-3\"\nkind = \"gateway\"\naddresses = [\"100.127.0.3\"]\n\n\
             [[asset]]\nid = \"v4only\"\nkind = \"primary\"\naddresses = [\"100.126.0.1\"]\nnames = [\"{V4_ONLY}\"]\n\n\
             [[policy]]\nid = \"v4only\"\nsources = [\"*\"]\ndestinations = [\"v4only\"]\n"
        ),
    )];
    let mut start = 0;
    while start < names {
        let end = (start + per_file).min(names);
        let mut text = String::with_capacity((end - start) * 420);
        let mut granted = Vec::with_capacity((end - start) * 4);
        for i in start..end {
            let name = shared_name(i);
            let [p4, p6, a4, a6, b4, c4] = addresses(i);
            let (p, a) = if v6 {
                (format!("\"{p4}\", \"{p6}\""), format!("\"{a4}\", \"{a6}\""))
            } else {
                (format!("\"{p4}\""), format!("\"{a4}\""))
            };
            let _ = write!(
                text,
                "[[asset]]\nid = \"p{i}\"\nkind = \"primary\"\naddresses = [{p}]\nnames = [\"{name}\"]\n\n\
                 [[virtual_asset]]\nid = \"a{i}\"\ngateway = \"gw-1\"\naddresses = [{a}]\nnames = [\"{name}\"]\n\n\
                 [[virtual_asset]]\nid = \"b{i}\"\ngateway = \"gw-2\"\naddresses = [\"{b4}\"]\nnames = [\"{name}\"]\n\n\
                 [[virtual_asset]]\nid = \"c{i}\"\ngateway = \"gw-3\"\naddresses = [\"{c4}\"]\nnames = [\"{name}\"]\n\n"
            );
            for kind in ["p", "a", "b", "c"] {
                granted.push(format!("\"{kind}{i}\""));
            }
        }
        let _ = write!(
            text,
            "[[policy]]\nid = \"all-{start}\"\nsources = [\"*\"]\ndestinations = [{}]\n",
            granted.join(", ")
        );
        files.push((format!("10-names-{start:06}.toml"), text));
        start = end;
    }
    files
}

/// Parses and validates generated zone data, in memory.
pub fn zone_data(names: usize) -> ZoneData {
    let sources: Vec<SourceFile> = zone_files(names)
        .into_iter()
        .map(|(file, text)| SourceFile::new(Path::new(&file), text))
        .collect();
    load_zone_sources(&sources).expect("generated zone data is valid")
}

/// A handler with no upstreams (names outside the zone are refused, as `serve` does when it has
/// none), over `names` generated names, with health ordering active: for every second name the primary's
/// IPv4 address is reported down, for every third the gateway-1 virtual asset is reported up.
pub fn handler(names: usize) -> Handler {
    let snapshot = Snapshot::new(zone_data(names), failover_dns::Identity::default());
    let health = HealthTable::new();
    for i in 0..names {
        if i % 2 == 0 {
            report(&health, primary_v4(i), Outcome::Failure);
        }
        if i % 3 == 0 {
            report(&health, second_v4(i), Outcome::Success);
        }
    }
    Handler::standalone(
        SharedSnapshot::new(snapshot),
        health,
        ForwardSettings::default(),
    )
}

/// Feeds one outcome into the table.
pub fn report(health: &HealthTable, address: IpAddr, outcome: Outcome) {
    health.report(Report {
        address,
        outcome,
        rtt: None,
        source: ReportSource::Agent,
    });
}

/// A query packet as a stub resolver sends it: RD set, optionally with an EDNS OPT record
/// (payload 1232, as dig sends).
pub fn query(id: u16, name: &str, qtype: RecordType, edns: bool) -> Vec<u8> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.queries.push(Query::query(
        Name::from_ascii(name).expect("generated name"),
        qtype,
    ));
    if edns {
        let mut opt = Edns::new();
        opt.set_max_payload(1232);
        message.edns = Some(opt);
    }
    message.to_vec().expect("query encodes")
}

/// The addresses of a response's answer section, in order.
pub fn answer_addresses(response: &[u8]) -> Vec<IpAddr> {
    let message = Message::from_vec(response).expect("our response parses");
    message
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            hickory_proto::rr::RData::A(a) => Some(IpAddr::V4(a.0)),
            hickory_proto::rr::RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

/// The response code and answer count of a response.
pub fn summary(response: &[u8]) -> (hickory_proto::op::ResponseCode, usize) {
    let message = Message::from_vec(response).expect("our response parses");
    (message.metadata.response_code, message.answers.len())
}

/// This process's resident set size in kB (`VmRSS`), or 0 when /proc is unavailable.
pub fn rss_kb() -> u64 {
    proc_status_kb("VmRSS:")
}

/// This process's peak resident set size in kB (`VmHWM`), or 0 when /proc is unavailable.
pub fn peak_rss_kb() -> u64 {
    proc_status_kb("VmHWM:")
}

/// Resets `VmHWM` to the current RSS (Linux `clear_refs` 5); false when not possible.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn proc_status_kb(field: &str) -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
        .unwrap_or(0)
}

/// The `q`-quantile (0..=1) of sorted samples.
pub fn quantile<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let last = sorted.len() - 1;
    // An index into the slice, clamped below.
    let index = ((last as f64) * q).round() as usize;
    sorted.get(index.min(last)).copied()
}
