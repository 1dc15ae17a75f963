//! Answers too large for UDP: TC set within the client's payload size (512 bytes without EDNS,
//! at most 1232 with it), and the full answer over TCP, which `dig` falls back to by itself.

use crate::support::{Dig, Server};

const ENDPOINTS: usize = 100;

/// A zone whose `big.internal` has 100 endpoints: one subnet host each, in 10.200.0.0/16. The
/// addresses are only data; nothing is sent to them.
fn zone() -> (String, Vec<String>) {
    let addresses: Vec<String> = (1..=ENDPOINTS).map(|i| format!("10.200.1.{i}")).collect();
    let hosts: Vec<String> = addresses
        .iter()
        .map(|a| format!("  {{ name = \"big.internal\", address = \"{a}\" }},"))
        .collect();
    let text = format!(
        r#"
[[zone]]
origin = "internal"
ttl = 30

[[asset]]
id = "gw"
kind = "gateway"
addresses = ["100.64.0.2"]

[[subnet]]
id = "big-lan"
gateway = "gw"
cidr = "10.200.0.0/16"
hosts = [
{}
]

[[policy]]
id = "big"
sources = ["*"]
destinations = ["big-lan"]
"#,
        hosts.join("\n")
    );
    (text, addresses)
}

/// Checks a truncated UDP reply: TC, at most `limit` bytes, and the answers it kept are a prefix
/// of the full answer (truncation drops from the end, it does not reorder).
fn assert_truncated(reply: &Dig, limit: usize, all: &[String]) {
    assert_eq!(reply.transport, "UDP", "{reply}");
    assert!(reply.has_flag("tc"), "TC must be set:\n{reply}");
    assert!(
        reply.size <= limit,
        "{} bytes > {limit}:\n{reply}",
        reply.size
    );
    let kept = reply.answer_data();
    assert!(
        !kept.is_empty() && kept.len() < ENDPOINTS,
        "a truncated reply keeps some answers but not all, kept {}:\n{reply}",
        kept.len()
    );
    assert_eq!(kept, all[..kept.len()], "{reply}");
}

fn assert_complete(reply: &Dig, all: &[String]) {
    assert_eq!(reply.status, "NOERROR", "{reply}");
    assert_eq!(reply.transport, "TCP", "{reply}");
    assert!(!reply.has_flag("tc"), "{reply}");
    assert_eq!(reply.answer_data(), all, "{reply}");
}

#[test]
fn udp_without_edns_is_truncated_within_512_bytes() {
    let (text, all) = zone();
    let server = Server::start(&[("zone.toml", &text)], &[]);
    let reply = server.dig(&["big.internal", "A", "+noedns", "+ignore"]);
    assert_truncated(&reply, 512, &all);
    assert_eq!(
        reply.edns_udp, None,
        "no OPT in reply to a query without OPT:\n{reply}"
    );
    // It does fill the space: one more A record (16 bytes compressed) would not have fit.
    assert!(reply.size + 16 > 512, "{reply}");
}

#[test]
fn udp_with_edns_is_truncated_within_the_advertised_size() {
    let (text, all) = zone();
    let server = Server::start(&[("zone.toml", &text)], &[]);
    let reply = server.dig(&["big.internal", "A", "+bufsize=1232", "+ignore"]);
    assert_truncated(&reply, 1232, &all);
    assert!(
        reply.edns_udp.is_some(),
        "OPT is kept when truncating:\n{reply}"
    );
    assert!(reply.size + 16 > 1232, "{reply}");
    // A client advertising more than 1232 bytes still gets at most 1232 over UDP.
    let reply = server.dig(&["big.internal", "A", "+bufsize=4096", "+ignore"]);
    assert_truncated(&reply, 1232, &all);
}

#[test]
fn tcp_carries_the_whole_answer() {
    let (text, all) = zone();
    let server = Server::start(&[("zone.toml", &text)], &[]);
    let reply = server.dig(&["big.internal", "A", "+tcp"]);
    assert_complete(&reply, &all);
    assert!(reply.size > 1232, "{reply}");
}

#[test]
fn dig_retries_a_truncated_answer_over_tcp_and_gets_everything() {
    let (text, all) = zone();
    let server = Server::start(&[("zone.toml", &text)], &[]);
    for extra in ["+edns=0", "+noedns"] {
        let reply = server.dig(&["big.internal", "A", extra]);
        assert!(
            reply.retried_over_tcp,
            "dig {extra} saw TC over UDP:\n{reply}"
        );
        assert_complete(&reply, &all);
    }
}
