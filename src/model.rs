//! The data model every layer shares: zones, assets and virtual assets and subnets (as
//! destinations), shared names with their endpoints, policies and the identity they are
//! evaluated against. Plain validated data, built by the configuration loader and read by the
//! query path, the feed and the operator views; nothing here does I/O.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::time::Duration;

use hickory_proto::rr::Name;
use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{RData, Record};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::location::Location;

/// Dense index of a destination in [`ZoneData::destinations`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DestinationIndex(u32);

impl DestinationIndex {
    /// The id of the destination at `index`.
    pub fn new(index: usize) -> Self {
        DestinationIndex(u32::try_from(index).unwrap_or(u32::MAX))
    }

    /// The index into [`ZoneData::destinations`].
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// What kind of destination a policy can grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestinationKind {
    /// An asset running the agent on the service host itself.
    PrimaryAsset,
    /// An asset that gives access to other hosts (virtual assets, subnets).
    GatewayAsset,
    /// A destination configured on a gateway asset; its address is the service's LAN IP or a
    /// standby host.
    VirtualAsset {
        /// The gateway asset it is configured on.
        gateway: DestinationIndex,
    },
    /// A CIDR exposed through a gateway, with names mapped to addresses inside it.
    Subnet {
        /// The gateway asset it is exposed through.
        gateway: DestinationIndex,
        /// The exposed range (boxed: subnets are rare, and inline it would make every
        /// destination larger).
        cidr: Box<IpNet>,
    },
}

impl DestinationKind {
    /// Configuration order puts the primary asset first, then other assets, virtual assets and
    /// subnets; declaration order breaks ties.
    pub fn order_rank(&self) -> u8 {
        match self {
            DestinationKind::PrimaryAsset => 0,
            DestinationKind::GatewayAsset => 1,
            DestinationKind::VirtualAsset { .. } => 2,
            DestinationKind::Subnet { .. } => 3,
        }
    }

    /// A short word for logs and `status`.
    pub fn label(&self) -> &'static str {
        match self {
            DestinationKind::PrimaryAsset => "primary asset",
            DestinationKind::GatewayAsset => "gateway asset",
            DestinationKind::VirtualAsset { .. } => "virtual asset",
            DestinationKind::Subnet { .. } => "subnet",
        }
    }
}

/// A destination: an asset, a virtual asset or a subnet. Kept small (48 bytes and, for ids up
/// to 24 bytes, no other allocation): there are several per shared name. Where
/// it was declared is not kept: only the loader's messages use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// Its id in the zone data (unique across kinds).
    pub id: IdText,
    /// What it is.
    pub kind: DestinationKind,
    /// The active probe that feeds its endpoints' health, if configured. Boxed: few
    /// destinations have one, and inline it would be most of every destination's size.
    pub probe: Option<Box<ProbeSpec>>,
}

/// A destination's id as written in configuration: `compact_str`'s string, which keeps up to
/// 24 bytes in place (in the 24 bytes of the value itself) and only longer ids in a block of
/// their own. A heap block per id was an eighth of the loaded data at 100k names; this type
/// replaced a hand-written one of the same layout (22 bytes in place), measuring the same in
/// `benches/load.rs` at 100k names (best load 1.26-1.37 s and 72.7-88.8 MB kept with it,
/// 1.27-1.36 s and 70.1-88.3 MB with the hand-written one).
pub type IdText = compact_str::CompactString;

/// An active health probe: a TCP connect to `port` on each endpoint address of a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeSpec {
    /// The TCP port to connect to.
    pub port: u16,
    /// Time between probes of one address.
    pub interval: Duration,
    /// How long a connect may take before it counts as a failure.
    pub timeout: Duration,
    /// Up to this much is added to or taken from each interval, so probes spread out.
    pub jitter: Duration,
}

/// One (destination, address) pair that a shared name can resolve to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// The destination that carries the name.
    pub destination: DestinationIndex,
    /// The address the name resolves to through it.
    pub address: IpAddr,
}

/// SOA values of a zone (RFC 1035 §3.3.13).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoaValues {
    /// Primary name server.
    pub mname: Name,
    /// Responsible mailbox, as a name.
    pub rname: Name,
    /// Zone serial.
    pub serial: u32,
    /// Refresh interval, seconds.
    pub refresh: i32,
    /// Retry interval, seconds.
    pub retry: i32,
    /// Expiry, seconds.
    pub expire: i32,
    /// Negative-caching TTL (RFC 2308), seconds.
    pub minimum: u32,
}

/// An owned zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    /// The zone's origin (fully qualified).
    pub origin: Name,
    /// TTL of answers for shared names in this zone, seconds.
    pub answer_ttl: u32,
    /// The SOA values.
    pub soa: SoaValues,
    /// The SOA record served in the authority section of negative answers. Its TTL is the SOA
    /// minimum, so negative answers are cached only that long (RFC 2308 §5).
    pub soa_record: Record,
    /// Where it was declared.
    pub location: Location,
    /// Whether a recovered primary asset goes first again as soon as it is up (otherwise the
    /// path that most recently carried traffic stays first).
    pub failback: bool,
}

impl Zone {
    /// Builds a zone and its SOA record.
    pub fn new(origin: Name, answer_ttl: u32, soa: SoaValues, location: Location) -> Self {
        let soa_record = Record::from_rdata(
            origin.clone(),
            soa.minimum,
            RData::SOA(SOA::new(
                soa.mname.clone(),
                soa.rname.clone(),
                soa.serial,
                soa.refresh,
                soa.retry,
                soa.expire,
                soa.minimum,
            )),
        );
        Zone {
            origin,
            answer_ttl,
            soa,
            soa_record,
            location,
            failback: false,
        }
    }
}

/// Index of a zone in [`ZoneData::zones`].
pub type ZoneIndex = usize;
/// Index of a shared name in [`ZoneData::names`].
pub type NameIndex = usize;

/// A DNS name that one or more destinations carry, with its endpoints in configuration order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedName {
    /// The name (fully qualified, as first configured).
    pub name: Name,
    /// The zone it lies in.
    pub zone: ZoneIndex,
    /// Every endpoint, in configuration order (primary asset first). Exactly sized.
    pub endpoints: Box<[Endpoint]>,
}

impl SharedName {
    /// The distinct destinations that carry this name, in configuration order.
    pub fn destinations(&self) -> Vec<DestinationIndex> {
        let mut seen = Vec::new();
        for endpoint in &self.endpoints {
            if !seen.contains(&endpoint.destination) {
                seen.push(endpoint.destination);
            }
        }
        seen
    }
}

/// Validated zone and policy data, as loaded from `zones/`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ZoneData {
    /// Owned zones.
    pub zones: Vec<Zone>,
    /// Every destination; [`DestinationIndex`] indexes this.
    pub destinations: Vec<Destination>,
    /// Every shared name, each once.
    pub names: Vec<SharedName>,
    /// Every policy, in declaration order.
    pub policies: Vec<Policy>,
    /// Entries of the zones directory named like zone files that were not read (a FIFO, a
    /// device, a directory, a symbolic link that leads nowhere), each with why: warnings for
    /// `check` and every reload, never silence.
    pub skipped_files: Vec<String>,
}

/// The zone of `zones` that owns `name`: the one with the longest matching origin.
pub(crate) fn owning_zone<'a>(zones: &'a [Zone], name: &Name) -> Option<(ZoneIndex, &'a Zone)> {
    zones
        .iter()
        .enumerate()
        .filter(|(_, zone)| zone.origin.zone_of(name))
        .max_by_key(|(_, zone)| zone.origin.num_labels())
}

/// The hash of `name` as hickory compares names: labels without case, and whether it is fully
/// qualified.
pub(crate) fn name_hash(hasher: &foldhash::fast::RandomState, name: &Name) -> u64 {
    let mut state = hasher.build_hasher();
    state.write_u8(u8::from(name.is_fqdn()));
    let mut lowered = [0u8; 64];
    for label in name.iter() {
        state.write_u8(0);
        let Some(lowered) = lowered.get_mut(..label.len()) else {
            // Longer than a DNS label can be: hashed as given.
            state.write(label);
            continue;
        };
        for (lower, byte) in lowered.iter_mut().zip(label) {
            *lower = byte.to_ascii_lowercase();
        }
        state.write(lowered);
    }
    state.finish()
}

/// Who this client is. Policies are evaluated against it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// The signed-in user, if any.
    #[serde(default)]
    pub user: Option<String>,
    /// The groups the user belongs to.
    #[serde(default)]
    pub groups: Vec<String>,
    /// This device's name, if any.
    #[serde(default)]
    pub device: Option<String>,
}

/// One entry of a policy's `sources`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// `*`: every identity.
    Anyone,
    /// `user:NAME`.
    User(String),
    /// `group:NAME`.
    Group(String),
    /// `device:NAME`.
    Device(String),
}

impl PolicySource {
    /// Parses `*`, `user:NAME`, `group:NAME` or `device:NAME`.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text == "*" {
            return Ok(PolicySource::Anyone);
        }
        let Some((kind, name)) = text.split_once(':') else {
            return Err(format!(
                "source {text:?} is not \"*\", \"user:NAME\", \"group:NAME\" or \"device:NAME\""
            ));
        };
        if name.is_empty() {
            return Err(format!("source {text:?} has an empty name"));
        }
        let name = name.to_string();
        match kind {
            "user" => Ok(PolicySource::User(name)),
            "group" => Ok(PolicySource::Group(name)),
            "device" => Ok(PolicySource::Device(name)),
            _ => Err(format!(
                "source {text:?}: unknown kind {kind:?} (expected user, group or device)"
            )),
        }
    }

    /// Whether this source names `identity`.
    pub fn matches(&self, identity: &Identity) -> bool {
        match self {
            PolicySource::Anyone => true,
            PolicySource::User(user) => identity.user.as_deref() == Some(user.as_str()),
            PolicySource::Group(group) => identity.groups.iter().any(|g| g == group),
            PolicySource::Device(device) => identity.device.as_deref() == Some(device.as_str()),
        }
    }
}

impl fmt::Display for PolicySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicySource::Anyone => write!(f, "*"),
            PolicySource::User(name) => write!(f, "user:{name}"),
            PolicySource::Group(name) => write!(f, "group:{name}"),
            PolicySource::Device(name) => write!(f, "device:{name}"),
        }
    }
}

/// A validated policy: sources → destinations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The policy's id, unique in the zone data.
    pub id: String,
    /// A disabled policy grants nothing.
    pub enabled: bool,
    /// Who the policy applies to.
    pub sources: Vec<PolicySource>,
    /// What it grants.
    pub destinations: Vec<DestinationIndex>,
}

impl Policy {
    /// Whether this policy grants anything to `identity`.
    pub fn applies_to(&self, identity: &Identity) -> bool {
        self.enabled && self.sources.iter().any(|source| source.matches(identity))
    }
}

/// Index of a policy in the zone data's policy list.
pub type PolicyIndex = usize;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_back_as_given_inline_or_boxed() {
        for text in [
            "",
            "a",
            "p12345",
            "exactly-22-bytes-long!",
            "twenty-three bytes long",
            "exactly-24-bytes-long!!!",
            "twenty-five bytes long!!!",
            "é",
        ] {
            let id = IdText::new(text);
            assert_eq!(id.as_str(), text);
            assert_eq!(id, *text);
            assert_eq!(id, IdText::new(text));
            assert_eq!(format!("{id} {id:?}"), format!("{text} {text:?}"));
        }
        assert_ne!(IdText::new("a"), IdText::new("b"));
        assert_eq!(std::mem::size_of::<IdText>(), 24);
        assert_eq!(std::mem::size_of::<Destination>(), 48);
    }
}
