//! What the observer remembers of each endpoint address and port it saw applications use: the
//! last success and failure per port, and the RTTs of recent successes per address. A failure
//! on a port nobody has used successfully, while another port of the same address carries
//! traffic, is that port's problem (a firewalled side port, a local process probing), not the
//! endpoint's. The RTTs set how long a connect to the address may wait (`rules`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// How long a success or an RTT is remembered: a port with a success this recent is one
/// applications use, and its failures count.
const MEMORY: Duration = Duration::from_secs(600);
/// How recent another port's success must be, and newer than its last failure, for that port
/// to carry traffic now.
const WORKS_NOW: Duration = Duration::from_secs(60);
/// The most (address, port) pairs remembered; the oldest go first beyond it.
const MAX_PORTS: usize = 4096;
/// The RTT samples kept per address, newest first.
const RTT_SAMPLES: usize = 8;

#[derive(Debug, Clone, Copy, Default)]
struct PortRecord {
    last_success: Option<Instant>,
    last_failure: Option<Instant>,
    last_change: Option<Instant>,
}

/// Per address and port evidence. Pure data: every method takes `now`.
#[derive(Debug, Default)]
pub struct Evidence {
    ports: HashMap<SocketAddr, PortRecord>,
    rtts: HashMap<IpAddr, Vec<(Instant, Duration)>>,
}

impl Evidence {
    /// Remembers a success on `target` at `now`, with its RTT.
    pub fn success(&mut self, target: SocketAddr, rtt: Option<Duration>, now: Instant) {
        self.make_room(now);
        let record = self.ports.entry(target).or_default();
        record.last_success = Some(now);
        record.last_change = Some(now);
        if let Some(rtt) = rtt {
            let samples = self.rtts.entry(target.ip()).or_default();
            samples.insert(0, (now, rtt));
            samples.truncate(RTT_SAMPLES);
        }
    }

    /// Remembers a failure on `target` at `now` and says whether it counts against the
    /// endpoint: it does when this port carried traffic in the last ten minutes, or when no
    /// other port of the address carries traffic now (a success in the last minute, after its
    /// last failure).
    pub fn failure(&mut self, target: SocketAddr, now: Instant) -> bool {
        self.make_room(now);
        let within = |at: Option<Instant>, span: Duration| {
            at.is_some_and(|at| now.saturating_duration_since(at) < span)
        };
        let port_used = self
            .ports
            .get(&target)
            .is_some_and(|record| within(record.last_success, MEMORY));
        let works_now = |record: &PortRecord| {
            within(record.last_success, WORKS_NOW) && record.last_success > record.last_failure
        };
        let other_port_works = self.ports.iter().any(|(other, record)| {
            other.ip() == target.ip() && *other != target && works_now(record)
        });
        let record = self.ports.entry(target).or_default();
        record.last_failure = Some(now);
        record.last_change = Some(now);
        port_used || !other_port_works
    }

    /// The largest RTT of the address's recent successes, if it has any.
    pub fn max_rtt(&self, address: IpAddr, now: Instant) -> Option<Duration> {
        self.rtts
            .get(&address)?
            .iter()
            .filter(|(at, _)| now.saturating_duration_since(*at) < MEMORY)
            .map(|(_, rtt)| *rtt)
            .max()
    }

    /// Forgets what is too old, and the oldest pairs beyond [`MAX_PORTS`].
    fn make_room(&mut self, now: Instant) {
        if self.ports.len() < MAX_PORTS {
            return;
        }
        let fresh =
            |at: Option<Instant>| at.is_some_and(|at| now.saturating_duration_since(at) < MEMORY);
        self.ports.retain(|_, record| fresh(record.last_change));
        self.rtts
            .retain(|_, samples| samples.first().is_some_and(|(at, _)| fresh(Some(*at))));
        while self.ports.len() >= MAX_PORTS {
            let oldest = self
                .ports
                .iter()
                .min_by_key(|(_, record)| record.last_change)
                .map(|(target, _)| *target);
            match oldest {
                Some(target) => self.ports.remove(&target),
                None => break,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(address: &str, port: u16) -> SocketAddr {
        SocketAddr::new(address.parse().expect("literal"), port)
    }

    #[test]
    fn a_failing_side_port_does_not_outweigh_the_port_in_use_table() {
        let now = Instant::now();
        let later = |s: u64| now + Duration::from_secs(s);
        let mut evidence = Evidence::default();
        let (side, service, other_side) = (
            at("192.0.2.1", 22),
            at("192.0.2.1", 443),
            at("192.0.2.1", 8443),
        );
        assert!(
            evidence.failure(side, now),
            "nothing known: a failure counts"
        );
        evidence.success(service, None, later(1));
        for (target, when, counts, why) in [
            (side, 2, false, "a port never used while 443 works"),
            (other_side, 3, false, "another unused port"),
            (
                at("192.0.2.2", 22),
                4,
                true,
                "another address has no working port",
            ),
            (side, 62, true, "443 carried nothing for a minute"),
        ] {
            assert_eq!(evidence.failure(target, later(when)), counts, "{why}");
        }
        evidence.success(service, None, later(63));
        assert!(!evidence.failure(side, later(64)), "443 works again");
        assert!(
            evidence.failure(service, later(65)),
            "the port in use fails"
        );
        assert!(
            evidence.failure(side, later(66)),
            "443 failed after its last success: it does not carry traffic now"
        );
        evidence.success(side, None, later(67));
        evidence.success(service, None, later(68));
        assert!(
            evidence.failure(side, later(69)),
            "22 carried traffic: its failure counts"
        );
    }

    #[test]
    fn the_largest_recent_rtt_is_the_history() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        let mut evidence = Evidence::default();
        let address: IpAddr = "192.0.2.1".parse().expect("literal");
        assert_eq!(evidence.max_rtt(address, now), None);
        evidence.success(at("192.0.2.1", 443), Some(ms(30)), now);
        evidence.success(at("192.0.2.1", 443), Some(ms(10)), now + ms(1));
        evidence.success(at("192.0.2.1", 443), None, now + ms(2));
        assert_eq!(evidence.max_rtt(address, now + ms(3)), Some(ms(30)));
        for i in 0..RTT_SAMPLES {
            evidence.success(at("192.0.2.1", 443), Some(ms(5)), now + ms(10 + i as u64));
        }
        assert_eq!(
            evidence.max_rtt(address, now + ms(100)),
            Some(ms(5)),
            "only the newest samples count"
        );
        assert_eq!(
            evidence.max_rtt(address, now + MEMORY + ms(100)),
            None,
            "forgotten"
        );
    }

    #[test]
    fn memory_stays_bounded() {
        let now = Instant::now();
        let mut evidence = Evidence::default();
        for port in 0..(MAX_PORTS as u16 + 100) {
            evidence.failure(
                at("192.0.2.1", port),
                now + Duration::from_millis(u64::from(port)),
            );
        }
        assert!(evidence.ports.len() <= MAX_PORTS);
    }
}
