//! The zone data as one immutable snapshot: zones with their SOA, destinations, shared names with
//! their endpoints in configuration order, and policies; plus the indexes that make a query a
//! hash lookup. Pure lookups, no I/O.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{Name, RData, Record};
use ipnet::IpNet;

use crate::location::Location;
use crate::policy::Policy;

/// Dense index of a destination in [`ZoneData::destinations`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DestinationId(u32);

impl DestinationId {
    /// The id of the destination at `index`.
    pub fn new(index: usize) -> Self {
        DestinationId(u32::try_from(index).unwrap_or(u32::MAX))
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
        gateway: DestinationId,
    },
    /// A CIDR exposed through a gateway, with names mapped to addresses inside it.
    Subnet {
        /// The gateway asset it is exposed through.
        gateway: DestinationId,
        /// The exposed range.
        cidr: IpNet,
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

/// A destination: an asset, a virtual asset or a subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// Its id in the zone data (unique across kinds).
    pub id: String,
    /// What it is.
    pub kind: DestinationKind,
    /// Where it was declared.
    pub location: Location,
    /// The active probe that feeds its endpoints' health, if configured.
    pub probe: Option<ProbeSpec>,
}

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
    pub destination: DestinationId,
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
    /// Every endpoint, in configuration order (primary asset first).
    pub endpoints: Vec<Endpoint>,
}

impl SharedName {
    /// The distinct destinations that carry this name, in configuration order.
    pub fn destinations(&self) -> Vec<DestinationId> {
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
    /// Every destination; [`DestinationId`] indexes this.
    pub destinations: Vec<Destination>,
    /// Every shared name, each once.
    pub names: Vec<SharedName>,
    /// Every policy, in declaration order.
    pub policies: Vec<Policy>,
}

/// What the zone data says about a query name.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Lookup<'a> {
    /// The name is outside every owned zone.
    NotOwned,
    /// The name is in an owned zone.
    Owned(OwnedName<'a>),
}

/// A name inside an owned zone: possibly a shared name, possibly the apex, possibly above other
/// shared names. Whether it exists for a client depends on which of those the client may see.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OwnedName<'a> {
    /// The zone (for a shared name: the zone it was declared in).
    pub zone: &'a Zone,
    /// The shared name, when the query name is one: its index and data.
    pub shared: Option<(NameIndex, &'a SharedName)>,
    /// Whether the name is the zone apex (which always exists and has an SOA).
    pub is_apex: bool,
    /// Shared names strictly below this name: when one of them is visible, this name exists
    /// even without data of its own (an empty non-terminal, RFC 8020).
    pub below: &'a [NameIndex],
}

/// Zone data with the indexes the query path needs.
#[derive(Debug, Clone, Default)]
pub struct Zones {
    data: ZoneData,
    by_name: HashMap<Name, NameIndex>,
    below: HashMap<Name, Vec<NameIndex>>,
    by_address: HashMap<IpAddr, Vec<NameIndex>>,
    by_reverse_name: HashMap<Name, IpAddr>,
}

impl Zones {
    /// Indexes validated zone data. Names are compared case-insensitively (hickory's `Name`
    /// hashes and compares that way).
    pub fn new(data: ZoneData) -> Self {
        let mut by_name = HashMap::new();
        let mut below: HashMap<Name, Vec<NameIndex>> = HashMap::new();
        let mut by_address: HashMap<IpAddr, Vec<NameIndex>> = HashMap::new();
        let mut by_reverse_name = HashMap::new();
        for (index, shared) in data.names.iter().enumerate() {
            by_name.insert(shared.name.clone(), index);
            if let Some(zone) = data.zones.get(shared.zone) {
                let mut ancestor = shared.name.base_name();
                while ancestor.num_labels() > zone.origin.num_labels() {
                    below.entry(ancestor.clone()).or_default().push(index);
                    ancestor = ancestor.base_name();
                }
            }
            for endpoint in &shared.endpoints {
                let names = by_address.entry(endpoint.address).or_default();
                if !names.contains(&index) {
                    names.push(index);
                }
                by_reverse_name.insert(Name::from(endpoint.address), endpoint.address);
            }
        }
        Zones {
            data,
            by_name,
            below,
            by_address,
            by_reverse_name,
        }
    }

    /// The underlying data.
    pub fn data(&self) -> &ZoneData {
        &self.data
    }

    /// The zone that owns `name`: the one with the longest matching origin.
    pub fn zone_of(&self, name: &Name) -> Option<(ZoneIndex, &Zone)> {
        self.data
            .zones
            .iter()
            .enumerate()
            .filter(|(_, zone)| zone.origin.zone_of(name))
            .max_by_key(|(_, zone)| zone.origin.num_labels())
    }

    /// Classifies a query name.
    pub fn lookup(&self, name: &Name) -> Lookup<'_> {
        let Some((_, zone)) = self.zone_of(name) else {
            return Lookup::NotOwned;
        };
        let shared = self
            .by_name
            .get(name)
            .and_then(|&index| Some((index, self.data.names.get(index)?)));
        // A shared name is answered with its own zone's TTL and SOA.
        let zone = shared
            .and_then(|(_, s)| self.data.zones.get(s.zone))
            .unwrap_or(zone);
        Lookup::Owned(OwnedName {
            zone,
            shared,
            is_apex: name.num_labels() == zone.origin.num_labels(),
            below: self.below.get(name).map_or(&[][..], Vec::as_slice),
        })
    }

    /// For a reverse-lookup name (`d.c.b.a.in-addr.arpa.` or the `ip6.arpa.` form) of an
    /// endpoint address: the address and the shared names that carry it.
    pub fn reverse(&self, name: &Name) -> Option<(IpAddr, &[NameIndex])> {
        let address = *self.by_reverse_name.get(name)?;
        let names = self.by_address.get(&address)?;
        Some((address, names.as_slice()))
    }

    /// Indexes of the shared names that carry `address` (empty when it is no endpoint's).
    pub fn name_indexes_with_address(&self, address: IpAddr) -> &[NameIndex] {
        self.by_address.get(&address).map_or(&[], Vec::as_slice)
    }

    /// The index of the shared name `name` (case-insensitive).
    pub fn name_index(&self, name: &Name) -> Option<NameIndex> {
        self.by_name.get(name).copied()
    }

    /// The destination with id `id`.
    pub fn destination_id(&self, id: &str) -> Option<DestinationId> {
        self.data
            .destinations
            .iter()
            .position(|d| d.id == id)
            .map(DestinationId::new)
    }

    /// Every endpoint address of `destination`, in configuration order, each once.
    pub fn addresses_of(&self, destination: DestinationId) -> Vec<IpAddr> {
        let mut addresses = Vec::new();
        for shared in &self.data.names {
            for endpoint in &shared.endpoints {
                if endpoint.destination == destination && !addresses.contains(&endpoint.address) {
                    addresses.push(endpoint.address);
                }
            }
        }
        addresses
    }

    /// Whether `address` is some endpoint's address (the addresses the health table keeps).
    pub fn is_endpoint_address(&self, address: IpAddr) -> bool {
        self.by_address.contains_key(&address)
    }

    /// The shared names that carry `address`, or `None` when it is no endpoint's address.
    pub fn names_with_address(&self, address: IpAddr) -> Option<Vec<String>> {
        let indexes = self.by_address.get(&address)?;
        Some(
            indexes
                .iter()
                .filter_map(|&index| self.data.names.get(index))
                .map(|shared| shared.name.to_string())
                .collect(),
        )
    }

    /// The shared name at `index`.
    pub fn name(&self, index: NameIndex) -> Option<&SharedName> {
        self.data.names.get(index)
    }

    /// The destination `id` names.
    pub fn destination(&self, id: DestinationId) -> Option<&Destination> {
        self.data.destinations.get(id.index())
    }
}
