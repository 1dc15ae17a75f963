//! The values settings are written as, parsed: upstreams (plain DNS and DNS over TLS), listen
//! and metrics addresses, the serve-stale age, a CA file, and the nameservers of a resolv.conf.
//! Each parser returns a message a user can act on; the settings layer (`config::layer`) says where.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

/// The port of a DNS-over-TLS upstream when none is given (RFC 7858).
pub const DOT_PORT: u16 = 853;

/// One upstream resolver: an address, and for DNS over TLS the name its certificate must carry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpstreamSpec {
    /// Where it listens.
    pub address: SocketAddr,
    /// `None`: plain DNS (UDP, TCP for truncated answers and TCP clients). `Some`: DNS over TLS
    /// (RFC 7858) only, authenticated as this name.
    pub tls: Option<TlsName>,
}

/// Whom a DNS-over-TLS upstream's certificate must name: a DNS name (also sent as SNI), or,
/// when the upstream was given without `#NAME`, its IP address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TlsName {
    /// A DNS name (SNI and certificate check).
    Dns(String),
    /// The upstream's own address (certificate check only; no SNI for addresses).
    Address,
}

impl UpstreamSpec {
    /// A plain-DNS upstream.
    pub fn plain(address: SocketAddr) -> Self {
        UpstreamSpec { address, tls: None }
    }
}

impl fmt::Display for UpstreamSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.tls {
            None => write!(f, "{}", self.address),
            Some(TlsName::Address) => write!(f, "tls://{}", self.address),
            Some(TlsName::Dns(name)) => write!(f, "tls://{}#{name}", self.address),
        }
    }
}

/// Parses an upstream: `ADDR`, `ADDR:PORT` or `[V6]:PORT` for plain DNS (port 53 when none is
/// given), or `tls://ADDR[:PORT][#SERVER-NAME]` for DNS over TLS (port 853 when none is given;
/// without a name the certificate must carry the address).
pub fn parse_upstream(text: &str) -> Result<UpstreamSpec, String> {
    if let Some(rest) = text.strip_prefix("tls://") {
        let (address, name) = match rest.split_once('#') {
            Some((address, name)) => (address, Some(name)),
            None => (rest, None),
        };
        let address = parse_address(address, DOT_PORT).ok_or_else(|| {
            format!(
                "invalid upstream {text:?}: expected tls://ADDR[:PORT]#SERVER-NAME, e.g. tls://192.0.2.53#dns.example.net or tls://[2001:db8::53]:853#dns.example.net"
            )
        })?;
        let tls = match name {
            None => TlsName::Address,
            Some(name) => {
                let valid = !name.is_empty()
                    && name.parse::<IpAddr>().is_err()
                    && rustls_pki_types::ServerName::try_from(name).is_ok();
                if !valid {
                    return Err(format!(
                        "invalid upstream {text:?}: {name:?} is not a DNS name to check the upstream's certificate against"
                    ));
                }
                TlsName::Dns(name.trim_end_matches('.').to_ascii_lowercase())
            }
        };
        return Ok(UpstreamSpec {
            address,
            tls: Some(tls),
        });
    }
    if let Some((scheme, _)) = text.split_once("://") {
        return Err(format!(
            "invalid upstream {text:?}: unknown scheme {scheme:?} (plain ADDR[:PORT], or tls://ADDR[:PORT]#SERVER-NAME)"
        ));
    }
    parse_address(text, 53).map(UpstreamSpec::plain).ok_or_else(|| {
        format!(
            "invalid upstream {text:?}: expected ADDR, ADDR:PORT or tls://ADDR[:PORT]#SERVER-NAME, e.g. 192.0.2.53, 127.0.0.1:5353, [2001:db8::53]:53 or tls://192.0.2.53#dns.example.net"
        )
    })
}

/// `ADDR`, `ADDR:PORT`, `[V6]` or `[V6]:PORT`, with `default_port` when none is given.
fn parse_address(text: &str, default_port: u16) -> Option<SocketAddr> {
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Some(address);
    }
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    bare.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, default_port))
}

/// Parses how long past expiry an answer may be served stale: seconds (`86400`) or a number
/// with a unit (`90s`, `30m`, `12h`, `1d`); `0` turns serving stale answers off. At most 7 days.
pub fn parse_stale_max_age(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let scale = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => 0,
    };
    let seconds = number
        .parse::<u64>()
        .ok()
        .filter(|_| scale > 0)
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| {
            format!(
                "invalid stale_max_age {text:?}: expected seconds or a number with s, m, h or d, e.g. 86400 or \"1d\""
            )
        })?;
    if seconds > 7 * 86_400 {
        return Err(format!(
            "stale_max_age {text:?} is longer than 7 days (RFC 8767 suggests 1 to 3 days)"
        ));
    }
    Ok(Duration::from_secs(seconds))
}

/// Checks that `path` holds at least one PEM certificate (a CA for DNS-over-TLS upstreams).
pub fn check_ca_file(path: &Path) -> Result<(), String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|error| format!("cannot read upstream CA file {}: {error}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("upstream CA file {}: {error}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!(
            "upstream CA file {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(())
}

/// The `nameserver` addresses of a resolv.conf text (port 53). Scoped IPv6 link-local entries
/// (`fe80::1%eth0`) are skipped: they need an interface we cannot name portably.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let line = line.split(['#', ';']).next()?.trim();
            let mut words = line.split_whitespace();
            if words.next()? != "nameserver" {
                return None;
            }
            let ip: IpAddr = words.next()?.parse().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .collect()
}

/// Whether sending to `upstream` would reach this server itself on one of `listen`.
pub fn is_own_address(upstream: SocketAddr, listen: &[SocketAddr]) -> bool {
    listen.iter().any(|own| {
        own.port() == upstream.port()
            && (own.ip() == upstream.ip()
                || (own.ip().is_unspecified()
                    && (upstream.ip().is_loopback() || upstream.ip().is_unspecified())))
    })
}

/// Parses the metrics listener's `ADDR:PORT`, which must be a loopback address: the metrics
/// are for the machine's own monitoring, not the network.
pub fn parse_metrics_listen(text: &str) -> Result<SocketAddr, String> {
    let address = parse_listen(text)?;
    if address.ip().is_loopback() {
        Ok(address)
    } else {
        Err(format!(
            "metrics address {address} is not a loopback address (127.0.0.0/8 or ::1)"
        ))
    }
}

/// Parses `ADDR:PORT` (`[v6]:PORT` for IPv6).
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    text.parse::<SocketAddr>().map_err(|_| {
        format!(
            "invalid listen address {text:?}: expected ADDR:PORT, e.g. 127.0.0.1:5300 or [::1]:5300"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_syntax_table() {
        let cases = [
            ("192.0.2.53", Some("192.0.2.53:53")),
            ("127.0.0.1:5353", Some("127.0.0.1:5353")),
            ("::1", Some("[::1]:53")),
            ("[::1]:5353", Some("[::1]:5353")),
            ("dns.example", None),
            ("127.0.0.1:", None),
        ];
        for (text, expected) in cases {
            let parsed = parse_upstream(text).ok().map(|a| a.to_string());
            assert_eq!(parsed.as_deref(), expected, "{text}");
        }
    }

    #[test]
    fn tls_upstream_syntax_table() {
        let cases = [
            (
                "tls://192.0.2.53#dns.example.net",
                Some("tls://192.0.2.53:853#dns.example.net"),
            ),
            (
                "tls://127.0.0.1:8853#DoT.Example.",
                Some("tls://127.0.0.1:8853#dot.example"),
            ),
            (
                "tls://[2001:db8::53]#dns.example",
                Some("tls://[2001:db8::53]:853#dns.example"),
            ),
            (
                "tls://[2001:db8::53]:8853#dns.example",
                Some("tls://[2001:db8::53]:8853#dns.example"),
            ),
            ("tls://192.0.2.53", Some("tls://192.0.2.53:853")),
            ("tls://192.0.2.53#", None),
            ("tls://192.0.2.53#not a name", None),
            ("tls://192.0.2.53#192.0.2.1", None),
            ("tls://dns.example#dns.example", None),
            ("https://192.0.2.53", None),
            ("udp://192.0.2.53", None),
        ];
        for (text, expected) in cases {
            let parsed = parse_upstream(text).map(|a| a.to_string());
            assert_eq!(
                parsed.as_ref().ok().map(String::as_str),
                expected,
                "{text}: {parsed:?}"
            );
        }
    }

    #[test]
    fn stale_max_age_table() {
        let cases = [
            ("86400", Some(86_400)),
            ("0", Some(0)),
            ("90s", Some(90)),
            ("30m", Some(1_800)),
            ("12h", Some(43_200)),
            ("1d", Some(86_400)),
            ("7d", Some(604_800)),
            ("8d", None),
            ("1w", None),
            ("d", None),
            ("-1", None),
            ("", None),
        ];
        for (text, expected) in cases {
            let parsed = parse_stale_max_age(text).ok().map(|d| d.as_secs());
            assert_eq!(parsed, expected, "{text}");
        }
    }

    #[test]
    fn resolv_conf_nameservers() {
        let text = "# generated\nsearch example\nnameserver 10.255.255.53\nnameserver ::1 # v6\n;nameserver 9.9.9.9\nnameserver fe80::1%eth0\noptions edns0\n";
        let parsed: Vec<String> = parse_resolv_conf(text)
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(parsed, ["10.255.255.53:53", "[::1]:53"]);
    }
    #[test]
    fn own_address_table() {
        let listen: Vec<SocketAddr> = vec![
            "127.0.0.53:53".parse().expect("literal"),
            "0.0.0.0:5300".parse().expect("literal"),
        ];
        let cases = [
            ("127.0.0.53:53", true),
            ("127.0.0.1:53", false),
            ("127.0.0.1:5300", true),
            ("10.255.255.53:5300", false),
            ("127.0.0.53:5353", false),
        ];
        for (upstream, expected) in cases {
            let upstream: SocketAddr = upstream.parse().expect("literal");
            assert_eq!(is_own_address(upstream, &listen), expected, "{upstream}");
        }
    }
}
