//! Bounds on what clients can make the server do: how many TCP and control connections it
//! serves at once, how long they may stay idle or trickle a message, how many queries one TCP
//! connection may have in flight, how many forwarded queries wait at once, and which
//! clients may use forwarding at all (so a server reachable off loopback is never an open
//! resolver).
//!
//! The values come from the embedded defaults, the `[limits]` table and `forward_allow` of the
//! settings file, and the flags (declared in [`crate::config::keys`]), in that order. `server`
//! and `control` enforce them; `handler` asks [`ForwardAllow`] before it forwards.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

/// Resource bounds of the DNS and control listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// TCP connections served at once, over all listen addresses. A connection takes a slot
    /// once its first bytes arrive (up to 4 times as many wait for that without one); at the
    /// limit it takes the slot of the connection idle the longest, which is closed (see
    /// `net::tcp_slots`).
    pub max_tcp_connections: usize,
    /// How long a TCP connection may wait for its next query, and how long a started message
    /// (length prefix and body) or a reply write may take, before the connection is closed.
    pub tcp_idle_timeout: Duration,
    /// Queries one TCP connection may have waiting for upstreams at once (RFC 7766 pipelining);
    /// a further one gets SERVFAIL at once, and the connection is read on.
    pub tcp_queries_in_flight: usize,
    /// Forwarded queries waiting for upstreams at once, over every listen address and both
    /// transports, and (separately) upstream queries outstanding, racing or in the background.
    /// Each upstream query holds one socket, so this also bounds the file descriptors
    /// forwarding can take. Past it a UDP query is dropped (the client retries), a TCP query
    /// gets SERVFAIL at once, and an upstream query is not sent.
    pub forwards_in_flight: usize,
    /// Control connections served at once; another one gets an error line and is closed.
    pub max_control_connections: usize,
    /// How long a control connection may take to send its next request line.
    pub control_idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_tcp_connections: 128,
            tcp_idle_timeout: Duration::from_secs(10),
            tcp_queries_in_flight: 16,
            // With 128 TCP connections, this stays well inside the usual 1024 descriptors.
            forwards_in_flight: 512,
            max_control_connections: 16,
            control_idle_timeout: Duration::from_secs(60),
        }
    }
}

/// The clients for which names outside the zones are forwarded. Everyone else gets REFUSED
/// for such names (owned names are answered for everyone), so a server that listens on a
/// non-loopback address is not an open resolver. The default allows loopback only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardAllow {
    networks: Vec<IpNet>,
}

impl Default for ForwardAllow {
    fn default() -> Self {
        ForwardAllow::loopback()
    }
}

impl ForwardAllow {
    /// Allows clients in `networks` (an empty list allows nobody).
    pub fn new(networks: Vec<IpNet>) -> Self {
        ForwardAllow {
            networks: networks.into_iter().map(|n| n.trunc()).collect(),
        }
    }

    /// 127.0.0.0/8 and ::1/128: the machine itself.
    pub fn loopback() -> Self {
        let v4: IpNet = IpNet::V4(ipnet::Ipv4Net::new_assert([127, 0, 0, 0].into(), 8));
        let v6: IpNet = IpNet::V6(ipnet::Ipv6Net::new_assert(
            std::net::Ipv6Addr::LOCALHOST,
            128,
        ));
        ForwardAllow::new(vec![v4, v6])
    }

    /// The allowed networks.
    pub fn networks(&self) -> &[IpNet] {
        &self.networks
    }

    /// Whether `client` may have names outside the zones forwarded. An IPv4 client seen on
    /// an IPv6 socket (`::ffff:a.b.c.d`) is judged by its IPv4 address.
    pub fn permits(&self, client: IpAddr) -> bool {
        let client = client.to_canonical();
        self.networks
            .iter()
            .any(|network| network.contains(&client))
    }

    /// Whether the list admits every address of a family (a `/0`): an open resolver when the
    /// server listens off loopback.
    pub fn allows_everyone(&self) -> bool {
        self.networks
            .iter()
            .any(|network| network.prefix_len() == 0)
    }
}

/// Parses a CIDR (`10.0.0.0/8`, `2001:db8::/32`) or a single address (a host route).
pub fn parse_cidr(text: &str) -> Result<IpNet, String> {
    if let Ok(network) = text.parse::<IpNet>() {
        return Ok(network);
    }
    if let Ok(address) = text.parse::<IpAddr>() {
        return Ok(IpNet::from(address));
    }
    Err(format!(
        "invalid network {text:?}: expected CIDR or address, e.g. 10.0.0.0/8, 192.0.2.7 or ::1/128"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(cidrs: &[&str]) -> ForwardAllow {
        ForwardAllow::new(
            cidrs
                .iter()
                .map(|c| parse_cidr(c).expect("literal"))
                .collect(),
        )
    }

    #[test]
    fn forward_allow_table() {
        let default = ForwardAllow::default();
        let lan = allow(&["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"]);
        let nobody = allow(&[]);
        let cases: &[(&ForwardAllow, &str, bool)] = &[
            (&default, "127.0.0.1", true),
            (&default, "127.255.0.9", true),
            (&default, "::1", true),
            (&default, "::ffff:127.0.0.1", true),
            (&default, "10.1.2.3", false),
            (&default, "::2", false),
            (&default, "0.0.0.0", false),
            (&lan, "10.200.0.1", true),
            (&lan, "::ffff:10.0.0.1", true),
            (&lan, "11.0.0.1", false),
            (&lan, "127.0.0.1", false),
            (&lan, "2001:db8:ffff::1", true),
            (&lan, "2001:db9::1", false),
            (&lan, "192.0.2.7", true),
            (&lan, "192.0.2.8", false),
            (&nobody, "127.0.0.1", false),
        ];
        for (list, client, expected) in cases {
            let address: IpAddr = client.parse().expect("literal");
            assert_eq!(list.permits(address), *expected, "{client} in {list:?}");
        }
        assert!(!default.allows_everyone());
        assert!(allow(&["0.0.0.0/0"]).allows_everyone());
    }

    #[test]
    fn cidr_syntax_table() {
        let cases = [
            ("10.0.0.0/8", Some("10.0.0.0/8")),
            ("10.1.2.3/8", Some("10.1.2.3/8")),
            ("192.0.2.7", Some("192.0.2.7/32")),
            ("::1", Some("::1/128")),
            ("2001:db8::/32", Some("2001:db8::/32")),
            ("10.0.0.0/33", None),
            ("lan", None),
            ("", None),
        ];
        for (text, expected) in cases {
            let parsed = parse_cidr(text).ok().map(|n| n.to_string());
            assert_eq!(parsed.as_deref(), expected, "{text}");
        }
        // Host bits are ignored when matching.
        assert!(allow(&["10.1.2.3/8"]).permits("10.9.9.9".parse().expect("literal")));
    }
}
