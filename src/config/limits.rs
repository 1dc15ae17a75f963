//! Bounds on what clients can make the server do: how many TCP and control connections it
//! serves at once, how long they may stay idle or trickle a message, how many queries one TCP
//! connection may have in flight, how many forwarded queries wait at once, and which
//! clients may use forwarding at all (so a server reachable off loopback is never an open
//! resolver).
//!
//! The values come from the embedded defaults, the `[limits]` table and `forward_allow` of the
//! settings file, and the flags in [`LimitArgs`], in that order. `server` and `control` enforce
//! them; `handler` asks [`ForwardAllow`] before it forwards.

use std::net::IpAddr;
use std::time::Duration;

use clap::Args;
use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use crate::location::{ConfigError, SourceFile};

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

/// One setting's accepted range, for messages and checks (the limits here, and the other
/// numeric settings that are a plain range).
pub(crate) struct Bound {
    pub(crate) name: &'static str,
    pub(crate) min: u64,
    pub(crate) max: u64,
}

const MAX_TCP_CONNECTIONS: Bound = Bound {
    name: "max_tcp_connections",
    min: 1,
    max: 65_535,
};
const TCP_IDLE_TIMEOUT_MS: Bound = Bound {
    name: "tcp_idle_timeout_ms",
    min: 10,
    max: 300_000,
};
const TCP_QUERIES_IN_FLIGHT: Bound = Bound {
    name: "tcp_queries_in_flight",
    min: 1,
    max: 1024,
};
const FORWARDS_IN_FLIGHT: Bound = Bound {
    name: "forwards_in_flight",
    min: 1,
    max: 65_535,
};
const MAX_CONTROL_CONNECTIONS: Bound = Bound {
    name: "max_control_connections",
    min: 1,
    max: 1024,
};
const CONTROL_IDLE_TIMEOUT_MS: Bound = Bound {
    name: "control_idle_timeout_ms",
    min: 10,
    max: 3_600_000,
};

impl Bound {
    /// `value`, or why it is outside the bound.
    pub(crate) fn check(&self, value: u64) -> Result<u64, String> {
        if (self.min..=self.max).contains(&value) {
            Ok(value)
        } else {
            Err(format!(
                "{} {value} is outside {}..={}",
                self.name, self.min, self.max
            ))
        }
    }

    /// A clap value parser: a whole number within the bound.
    pub(crate) fn parse(&self, text: &str) -> Result<u64, String> {
        let value: u64 = text
            .parse()
            .map_err(|_| format!("{text:?} is not a whole number"))?;
        self.check(value)
    }
}

/// The `[limits]` table of the settings file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    max_tcp_connections: Option<Spanned<u64>>,
    tcp_idle_timeout_ms: Option<Spanned<u64>>,
    tcp_queries_in_flight: Option<Spanned<u64>>,
    forwards_in_flight: Option<Spanned<u64>>,
    max_control_connections: Option<Spanned<u64>>,
    control_idle_timeout_ms: Option<Spanned<u64>>,
}

impl RawLimits {
    /// Overlays the values present in the table on `limits`; an out-of-range value is an
    /// error located in `source`.
    pub fn apply(&self, source: &SourceFile, limits: &mut Limits) -> Result<(), ConfigError> {
        let located = |value: &Spanned<u64>, bound: &Bound| {
            bound
                .check(*value.get_ref())
                .map_err(|message| ConfigError::one(source.locate(value.span()), message))
        };
        if let Some(value) = &self.max_tcp_connections {
            limits.max_tcp_connections = to_usize(located(value, &MAX_TCP_CONNECTIONS)?);
        }
        if let Some(value) = &self.tcp_idle_timeout_ms {
            limits.tcp_idle_timeout = Duration::from_millis(located(value, &TCP_IDLE_TIMEOUT_MS)?);
        }
        if let Some(value) = &self.tcp_queries_in_flight {
            limits.tcp_queries_in_flight = to_usize(located(value, &TCP_QUERIES_IN_FLIGHT)?);
        }
        if let Some(value) = &self.forwards_in_flight {
            limits.forwards_in_flight = to_usize(located(value, &FORWARDS_IN_FLIGHT)?);
        }
        if let Some(value) = &self.max_control_connections {
            limits.max_control_connections = to_usize(located(value, &MAX_CONTROL_CONNECTIONS)?);
        }
        if let Some(value) = &self.control_idle_timeout_ms {
            limits.control_idle_timeout =
                Duration::from_millis(located(value, &CONTROL_IDLE_TIMEOUT_MS)?);
        }
        Ok(())
    }
}

/// Every bound fits in `usize` on the 32- and 64-bit targets we build for.
fn to_usize(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

/// The limit flags of `serve`; each overrides the settings file.
#[derive(Debug, Clone, Default, Args)]
pub struct LimitArgs {
    /// TCP connections served at once; at the limit a new one closes the connection idle the
    /// longest [default: 128]
    #[arg(long, value_name = "N", value_parser = |t: &str| MAX_TCP_CONNECTIONS.parse(t))]
    pub max_tcp_connections: Option<u64>,
    /// How long an idle TCP connection is kept, and how long a started message or a reply
    /// write may take, in milliseconds [default: 10000]
    #[arg(long, value_name = "MS", value_parser = |t: &str| TCP_IDLE_TIMEOUT_MS.parse(t))]
    pub tcp_idle_timeout_ms: Option<u64>,
    /// Queries one TCP connection may have in flight (pipelined, answered as they finish)
    /// [default: 16]
    #[arg(long, value_name = "N", value_parser = |t: &str| TCP_QUERIES_IN_FLIGHT.parse(t))]
    pub tcp_queries_in_flight: Option<u64>,
    /// Forwarded queries waiting for upstreams at once, all listen addresses and transports
    /// together [default: 512]
    #[arg(long, value_name = "N", value_parser = |t: &str| FORWARDS_IN_FLIGHT.parse(t))]
    pub forwards_in_flight: Option<u64>,
    /// Control socket connections served at once [default: 16]
    #[arg(long, value_name = "N", value_parser = |t: &str| MAX_CONTROL_CONNECTIONS.parse(t))]
    pub max_control_connections: Option<u64>,
    /// How long a control connection may stay silent, in milliseconds [default: 60000]
    #[arg(long, value_name = "MS", value_parser = |t: &str| CONTROL_IDLE_TIMEOUT_MS.parse(t))]
    pub control_idle_timeout_ms: Option<u64>,
    /// Clients (CIDR) for which names outside the zones are forwarded; others get REFUSED for
    /// them (repeatable; replaces the default) [default: 127.0.0.0/8 and ::1/128]
    #[arg(long = "forward-allow", value_name = "CIDR", value_parser = parse_cidr)]
    pub forward_allow: Vec<IpNet>,
}

impl LimitArgs {
    /// Overlays the flags given on `limits` and `forward_allow`.
    pub fn apply(&self, limits: &mut Limits, forward_allow: &mut ForwardAllow) {
        if let Some(n) = self.max_tcp_connections {
            limits.max_tcp_connections = to_usize(n);
        }
        if let Some(ms) = self.tcp_idle_timeout_ms {
            limits.tcp_idle_timeout = Duration::from_millis(ms);
        }
        if let Some(n) = self.tcp_queries_in_flight {
            limits.tcp_queries_in_flight = to_usize(n);
        }
        if let Some(n) = self.forwards_in_flight {
            limits.forwards_in_flight = to_usize(n);
        }
        if let Some(n) = self.max_control_connections {
            limits.max_control_connections = to_usize(n);
        }
        if let Some(ms) = self.control_idle_timeout_ms {
            limits.control_idle_timeout = Duration::from_millis(ms);
        }
        if !self.forward_allow.is_empty() {
            *forward_allow = ForwardAllow::new(self.forward_allow.clone());
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

/// Parses the settings file's `forward_allow` list, locating a bad entry.
pub fn parse_forward_allow(
    source: &SourceFile,
    entries: &[Spanned<String>],
) -> Result<ForwardAllow, ConfigError> {
    let mut networks = Vec::new();
    for entry in entries {
        networks.push(
            parse_cidr(entry.get_ref())
                .map_err(|message| ConfigError::one(source.locate(entry.span()), message))?,
        );
    }
    Ok(ForwardAllow::new(networks))
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

    #[test]
    fn bounds_table() {
        let cases = [
            (&MAX_TCP_CONNECTIONS, "0", false),
            (&MAX_TCP_CONNECTIONS, "1", true),
            (&MAX_TCP_CONNECTIONS, "65535", true),
            (&MAX_TCP_CONNECTIONS, "65536", false),
            (&TCP_IDLE_TIMEOUT_MS, "9", false),
            (&TCP_IDLE_TIMEOUT_MS, "10", true),
            (&TCP_QUERIES_IN_FLIGHT, "0", false),
            (&CONTROL_IDLE_TIMEOUT_MS, "3600000", true),
            (&MAX_CONTROL_CONNECTIONS, "-1", false),
            (&FORWARDS_IN_FLIGHT, "x", false),
        ];
        for (bound, text, ok) in cases {
            assert_eq!(bound.parse(text).is_ok(), ok, "{} {text}", bound.name);
        }
    }
}
