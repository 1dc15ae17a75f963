//! The index over the zone data (`model::ZoneData`): what a query name is (a shared name, an
//! empty non-terminal, the apex, outside every zone), which names carry an endpoint address, and
//! which destination an id names, each a hash look-up. Immutable once built; no I/O.

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use hashbrown::HashTable;
use hickory_proto::rr::Name;

use crate::model::{
    Destination, DestinationIndex, NameIndex, SharedName, Zone, ZoneData, ZoneIndex, name_hash,
    owning_zone,
};

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
    by_name: NameTable,
    below: HashMap<Name, Vec<NameIndex>>,
    by_address: AddressIndex,
    /// Built on first use (reports by destination, probes): a configuration that uses neither
    /// pays no memory for it.
    by_destination: OnceLock<DestinationLookup>,
}

impl Zones {
    /// Indexes validated zone data. Names are compared case-insensitively (hickory's `Name`
    /// hashes and compares that way).
    pub fn new(data: ZoneData) -> Self {
        let mut by_name = NameTable::with_capacity(data.names.len());
        let mut below: HashMap<Name, Vec<NameIndex>> = HashMap::new();
        let mut by_address = AddressIndex::with_capacity(&data.names);
        for (index, shared) in data.names.iter().enumerate() {
            by_name.insert(&data.names, index);
            if let Some(zone) = data.zones.get(shared.zone) {
                let mut ancestor = shared.name.base_name();
                while ancestor.num_labels() > zone.origin.num_labels() {
                    below.entry(ancestor.clone()).or_default().push(index);
                    ancestor = ancestor.base_name();
                }
            }
            for endpoint in &shared.endpoints {
                by_address.insert(endpoint.address, index);
            }
        }
        for names in below.values_mut() {
            names.shrink_to_fit();
        }
        by_address.shrink_to_fit();
        Zones {
            data,
            by_name,
            below,
            by_address,
            by_destination: OnceLock::new(),
        }
    }

    fn destination_lookup(&self) -> &DestinationLookup {
        self.by_destination
            .get_or_init(|| DestinationLookup::new(&self.data))
    }

    /// The underlying data.
    pub fn data(&self) -> &ZoneData {
        &self.data
    }

    /// The zone that owns `name`: the one with the longest matching origin.
    pub fn zone_of(&self, name: &Name) -> Option<(ZoneIndex, &Zone)> {
        owning_zone(&self.data.zones, name)
    }

    /// Classifies a query name.
    pub fn lookup(&self, name: &Name) -> Lookup<'_> {
        let Some((_, zone)) = self.zone_of(name) else {
            return Lookup::NotOwned;
        };
        let shared = self
            .by_name
            .get(&self.data.names, name)
            .and_then(|index| Some((index, self.data.names.get(index)?)));
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
        let address = reverse_name_address(name)?;
        let names = self.by_address.get(address)?;
        Some((address, names))
    }

    /// Indexes of the shared names that carry `address` (empty when it is no endpoint's).
    pub fn name_indexes_with_address(&self, address: IpAddr) -> &[NameIndex] {
        self.by_address.get(address).unwrap_or(&[])
    }

    /// The index of the shared name `name` (case-insensitive).
    pub fn name_index(&self, name: &Name) -> Option<NameIndex> {
        self.by_name.get(&self.data.names, name)
    }

    /// The destination with id `id`.
    pub fn destination_index(&self, id: &str) -> Option<DestinationIndex> {
        self.destination_lookup()
            .find(&self.data.destinations, id)
            .map(DestinationIndex::new)
    }

    /// Every endpoint address of `destination`, in configuration order, each once.
    pub fn addresses_of(&self, destination: DestinationIndex) -> Vec<IpAddr> {
        let mut addresses = Vec::new();
        for &name in self.destination_lookup().names_of(destination) {
            let Some(shared) = self.data.names.get(name as usize) else {
                continue;
            };
            for endpoint in shared.endpoints.iter() {
                if endpoint.destination == destination && !addresses.contains(&endpoint.address) {
                    addresses.push(endpoint.address);
                }
            }
        }
        addresses
    }

    /// Whether `address` is some endpoint's address (the addresses the health table keeps).
    pub fn is_endpoint_address(&self, address: IpAddr) -> bool {
        self.by_address.get(address).is_some()
    }

    /// The shared names that carry `address`, or `None` when it is no endpoint's address.
    pub fn names_with_address(&self, address: IpAddr) -> Option<Vec<String>> {
        let indexes = self.by_address.get(address)?;
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
    pub fn destination(&self, id: DestinationIndex) -> Option<&Destination> {
        self.data.destinations.get(id.index())
    }
}

/// Destination id → index, and destination → the shared names that carry it (so a report by
/// destination costs a hash look-up and the destination's own names, not a scan of every
/// destination and every name: at 100k names the scans took milliseconds a report).
#[derive(Clone, Default)]
struct DestinationLookup {
    /// Indexes into [`ZoneData::destinations`], hashed by id.
    by_id: HashTable<u32>,
    hasher: foldhash::fast::RandomState,
    /// `names[offsets[d]..offsets[d + 1]]` are the indexes of the names destination `d`
    /// carries, in configuration order.
    offsets: Vec<u32>,
    names: Vec<u32>,
}

impl fmt::Debug for DestinationLookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DestinationLookup")
            .field("destinations", &self.by_id.len())
            .field("names", &self.names.len())
            .finish_non_exhaustive()
    }
}

impl DestinationLookup {
    fn new(data: &ZoneData) -> Self {
        let hasher = foldhash::fast::RandomState::default();
        let mut by_id = HashTable::with_capacity(data.destinations.len());
        for (index, destination) in data.destinations.iter().enumerate() {
            let Ok(slot) = u32::try_from(index) else {
                break;
            };
            let same = |&other: &u32| {
                data.destinations
                    .get(other as usize)
                    .is_some_and(|d| d.id == destination.id)
            };
            let rehash = |&other: &u32| {
                data.destinations
                    .get(other as usize)
                    .map_or(0, |d| hasher.hash_one(d.id.as_str()))
            };
            let hash = hasher.hash_one(destination.id.as_str());
            if let hashbrown::hash_table::Entry::Vacant(vacant) = by_id.entry(hash, same, rehash) {
                vacant.insert(slot);
            }
        }
        // Counting sort of (destination, name) pairs: counts, prefix sums, then fill.
        let mut offsets = vec![0u32; data.destinations.len() + 1];
        let carried: Vec<Vec<DestinationIndex>> =
            data.names.iter().map(SharedName::destinations).collect();
        for destination in carried.iter().flatten() {
            if let Some(count) = offsets.get_mut(destination.index() + 1) {
                *count += 1;
            }
        }
        for index in 1..offsets.len() {
            let before = offsets.get(index - 1).copied().unwrap_or(0);
            if let Some(offset) = offsets.get_mut(index) {
                *offset += before;
            }
        }
        let mut next = offsets.clone();
        let mut names = vec![0u32; offsets.last().map_or(0, |&total| total as usize)];
        for (name, destinations) in carried.iter().enumerate() {
            let Ok(name) = u32::try_from(name) else {
                break;
            };
            for destination in destinations {
                let Some(cursor) = next.get_mut(destination.index()) else {
                    continue;
                };
                if let Some(slot) = names.get_mut(*cursor as usize) {
                    *slot = name;
                }
                *cursor += 1;
            }
        }
        DestinationLookup {
            by_id,
            hasher,
            offsets,
            names,
        }
    }

    /// The index of the destination named `id`.
    fn find(&self, destinations: &[Destination], id: &str) -> Option<usize> {
        let hash = self.hasher.hash_one(id);
        find_index(&self.by_id, hash, destinations, |d| d.id == *id)
    }

    /// The indexes of the names `destination` carries, in configuration order.
    fn names_of(&self, destination: DestinationIndex) -> &[u32] {
        let start = self.offsets.get(destination.index()).copied();
        let end = self.offsets.get(destination.index() + 1).copied();
        match (start, end) {
            (Some(start), Some(end)) => self
                .names
                .get(start as usize..end as usize)
                .unwrap_or_default(),
            _ => &[],
        }
    }
}

/// Shared name → its index in [`ZoneData::names`], case-insensitively (like hickory's `Name`).
/// The table holds only the index (4 bytes an entry); the name is compared against the shared
/// name it points at. A map keyed by `Name` held a second copy of every name (88 bytes an entry,
/// 13 MB at 100k names).
#[derive(Clone, Default)]
struct NameTable {
    indexes: HashTable<u32>,
    /// Seeded per process, like the standard library's maps: query names come from clients.
    hasher: foldhash::fast::RandomState,
}

impl fmt::Debug for NameTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NameTable")
            .field("len", &self.indexes.len())
            .finish_non_exhaustive()
    }
}

impl NameTable {
    fn with_capacity(capacity: usize) -> Self {
        NameTable {
            indexes: HashTable::with_capacity(capacity),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    /// Adds the name at `index` of `names` (a name already present keeps its first index; the
    /// loader gives every name once).
    fn insert(&mut self, names: &[SharedName], index: NameIndex) {
        let (Some(shared), Ok(slot)) = (names.get(index), u32::try_from(index)) else {
            return;
        };
        let hash = name_hash(&self.hasher, &shared.name);
        let hasher = &self.hasher;
        let rehash = |&slot: &u32| {
            names
                .get(slot as usize)
                .map_or(0, |other| name_hash(hasher, &other.name))
        };
        let same = |&slot: &u32| {
            names
                .get(slot as usize)
                .is_some_and(|other| other.name == shared.name)
        };
        if let hashbrown::hash_table::Entry::Vacant(vacant) = self.indexes.entry(hash, same, rehash)
        {
            vacant.insert(slot);
        }
    }

    /// The index of `name` in `names`, the slice the table was built over.
    fn get(&self, names: &[SharedName], name: &Name) -> Option<NameIndex> {
        let hash = name_hash(&self.hasher, name);
        find_index(&self.indexes, hash, names, |shared| shared.name == *name)
    }
}

/// The index, in `items`, of the item with hash `hash` that `is` accepts, looked up in `table`
/// (indexes into `items`, hashed by the same hasher as `hash`).
fn find_index<T>(
    table: &HashTable<u32>,
    hash: u64,
    items: &[T],
    is: impl Fn(&T) -> bool,
) -> Option<usize> {
    table
        .find(hash, |&index| items.get(index as usize).is_some_and(&is))
        .map(|&index| index as usize)
}

/// Endpoint address → the shared names that carry it. Nearly every address belongs to one name,
/// so the maps hold that name's index directly (no `Vec` per address); an address shared by
/// several names holds [`AddressIndex::SHARED`] plus its position in `shared`. IPv4 and IPv6 are
/// kept apart so an IPv4 entry is 16 bytes, not the 32 of an `IpAddr` key.
#[derive(Debug, Clone, Default)]
struct AddressIndex {
    v4: HashMap<Ipv4Addr, usize>,
    v6: HashMap<Ipv6Addr, usize>,
    shared: Vec<Vec<NameIndex>>,
}

impl AddressIndex {
    /// Set in a map value that is a position in `shared` rather than a name index.
    const SHARED: usize = 1 << (usize::BITS - 1);

    /// An empty index with room for every endpoint address of `names` (an upper bound: nearly
    /// every address is one name's). Sized once: grown by doubling, the freed smaller tables
    /// stayed in the process as megabytes of holes.
    fn with_capacity(names: &[SharedName]) -> Self {
        let (mut v4, mut v6) = (0, 0);
        for endpoint in names.iter().flat_map(|shared| shared.endpoints.iter()) {
            match endpoint.address {
                IpAddr::V4(_) => v4 += 1,
                IpAddr::V6(_) => v6 += 1,
            }
        }
        AddressIndex {
            v4: HashMap::with_capacity(v4),
            v6: HashMap::with_capacity(v6),
            shared: Vec::new(),
        }
    }

    /// Records that the name at `index` carries `address` (once per name; names are added in
    /// index order).
    fn insert(&mut self, address: IpAddr, index: NameIndex) {
        let slot = match address {
            IpAddr::V4(v4) => self.v4.entry(v4).or_insert(index),
            IpAddr::V6(v6) => self.v6.entry(v6).or_insert(index),
        };
        if *slot == index {
            return;
        }
        if *slot & Self::SHARED == 0 {
            let first = *slot;
            *slot = Self::SHARED | self.shared.len();
            self.shared.push(vec![first]);
        }
        if let Some(names) = self.shared.get_mut(*slot & !Self::SHARED)
            && !names.contains(&index)
        {
            names.push(index);
        }
    }

    /// The names that carry `address`, in name order, or `None` when it is no endpoint's.
    fn get(&self, address: IpAddr) -> Option<&[NameIndex]> {
        let slot = match address {
            IpAddr::V4(v4) => self.v4.get(&v4)?,
            IpAddr::V6(v6) => self.v6.get(&v6)?,
        };
        if *slot & Self::SHARED == 0 {
            Some(std::slice::from_ref(slot))
        } else {
            self.shared.get(*slot & !Self::SHARED).map(Vec::as_slice)
        }
    }

    fn shrink_to_fit(&mut self) {
        self.v4.shrink_to_fit();
        self.v6.shrink_to_fit();
        for names in &mut self.shared {
            names.shrink_to_fit();
        }
        self.shared.shrink_to_fit();
    }
}

/// The address a reverse-lookup name stands for, when it is the exact name
/// `Name::from(address)` gives (`d.c.b.a.in-addr.arpa.` with octets in decimal without leading
/// zeros, or 32 single hex digits and `ip6.arpa.`), compared case-insensitively. Parsed rather
/// than looked up, so no `Name` is kept per endpoint address.
fn reverse_name_address(name: &Name) -> Option<IpAddr> {
    if !name.is_fqdn() {
        return None;
    }
    // At most 34 labels (the IPv6 form); no allocation, this runs for every name not owned.
    let mut labels: [&[u8]; 34] = [&[]; 34];
    let mut count = 0;
    for label in name.iter() {
        *labels.get_mut(count)? = label;
        count += 1;
    }
    match labels.get(..count)? {
        [d, c, b, a, in_addr, arpa]
            if in_addr.eq_ignore_ascii_case(b"in-addr") && arpa.eq_ignore_ascii_case(b"arpa") =>
        {
            let octet = |label: &[u8]| -> Option<u8> {
                let canonical = !label.is_empty()
                    && label.len() <= 3
                    && label.iter().all(u8::is_ascii_digit)
                    && (label.len() == 1 || label.first() != Some(&b'0'));
                if !canonical {
                    return None;
                }
                std::str::from_utf8(label).ok()?.parse().ok()
            };
            Some(IpAddr::V4(Ipv4Addr::new(
                octet(a)?,
                octet(b)?,
                octet(c)?,
                octet(d)?,
            )))
        }
        [nibbles @ .., ip6, arpa]
            if nibbles.len() == 32
                && ip6.eq_ignore_ascii_case(b"ip6")
                && arpa.eq_ignore_ascii_case(b"arpa") =>
        {
            let mut bits: u128 = 0;
            // The least significant nibble comes first.
            for label in nibbles.iter().rev() {
                let [digit] = label else { return None };
                let value = char::from(*digit).to_digit(16)?;
                bits = (bits << 4) | u128::from(value);
            }
            Some(IpAddr::V6(Ipv6Addr::from(bits)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Endpoint;

    #[test]
    fn destination_look_ups_match_a_scan_of_every_destination_and_name() {
        // Assets with several names and addresses, a virtual asset on a gateway, a subnet, a
        // destination that carries no name.
        let data = crate::testing::test_zone_data();
        let zones = Zones::new(data.clone());
        for (index, destination) in data.destinations.iter().enumerate() {
            let id = DestinationIndex::new(index);
            assert_eq!(zones.destination_index(&destination.id), Some(id));
            let mut scanned: Vec<IpAddr> = Vec::new();
            for endpoint in data.names.iter().flat_map(|n| n.endpoints.iter()) {
                if endpoint.destination == id && !scanned.contains(&endpoint.address) {
                    scanned.push(endpoint.address);
                }
            }
            assert_eq!(zones.addresses_of(id), scanned, "{}", destination.id);
        }
        assert_eq!(zones.destination_index("no-such-destination"), None);
        assert!(
            data.names.iter().any(|n| n.destinations().len() > 1),
            "some name is carried by several destinations"
        );
    }

    #[test]
    fn reverse_names_parse_exactly_like_the_names_they_were_built_from() {
        let addresses: Vec<IpAddr> = [
            "10.1.64.100",
            "0.0.0.0",
            "255.255.255.255",
            "100.64.0.9",
            "fd00::1",
            "2001:db8:abcd::ff:1",
            "::",
        ]
        .iter()
        .map(|a| a.parse().expect("test address"))
        .collect();
        for &address in &addresses {
            let name = Name::from(address);
            assert_eq!(reverse_name_address(&name), Some(address), "{name}");
            let upper = Name::from_ascii(name.to_string().to_uppercase()).expect("upper case");
            assert_eq!(reverse_name_address(&upper), Some(address), "{upper}");
        }
        for text in [
            "100.64.1.10.in-addr.arpa",
            "010.1.64.100.in-addr.arpa.",
            "256.1.64.100.in-addr.arpa.",
            "1.64.100.in-addr.arpa.",
            "x.1.64.100.in-addr.arpa.",
            "0.1.64.100.10.in-addr.arpa.",
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.",
            "10.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.",
            "g.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.",
            "in-addr.arpa.",
            "app.internal.",
        ] {
            let name = Name::from_ascii(text).expect("test name");
            assert_eq!(reverse_name_address(&name), None, "{text}");
        }
    }

    #[test]
    fn shared_names_are_found_without_case_and_only_with_their_own_fqdn_flag() {
        let name = |text: &str| Name::from_ascii(text).expect("test name");
        let names: Vec<SharedName> = ["app.internal.", "db.internal.", "App2.Internal."]
            .iter()
            .enumerate()
            .map(|(i, text)| SharedName {
                name: name(text),
                zone: 0,
                endpoints: Box::new([Endpoint {
                    destination: DestinationIndex::new(i),
                    address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                }]),
            })
            .collect();
        let mut table = NameTable::with_capacity(names.len());
        for index in 0..names.len() {
            table.insert(&names, index);
        }
        let cases = [
            ("app.internal.", Some(0)),
            ("APP.internal.", Some(0)),
            ("db.INTERNAL.", Some(1)),
            ("app2.internal.", Some(2)),
            ("app.internal", None),
            ("internal.", None),
            ("app.internal.x.", None),
        ];
        for (text, expected) in cases {
            assert_eq!(table.get(&names, &name(text)), expected, "{text}");
        }
    }

    #[test]
    fn addresses_shared_by_names_list_every_name_once() {
        let mut index = AddressIndex::default();
        let a: IpAddr = "10.0.0.1".parse().expect("test address");
        let b: IpAddr = "fd00::1".parse().expect("test address");
        index.insert(a, 0);
        index.insert(a, 0);
        index.insert(b, 1);
        index.insert(a, 2);
        index.insert(a, 3);
        index.insert(a, 3);
        assert_eq!(index.get(a), Some(&[0, 2, 3][..]));
        assert_eq!(index.get(b), Some(&[1][..]));
        assert_eq!(index.get("10.0.0.2".parse().expect("test address")), None);
    }
}
