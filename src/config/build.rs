//! The cross-file half of loading zone data: prepared files (`file.rs`) → validated
//! [`ZoneData`]. Runs on one thread, in passes over every file (zones; assets; virtual assets
//! and subnets; policies), so a gateway, a zone or a destination may be declared in any file.
//! Problems are collected in that order, every one located.

use std::collections::HashSet;
use std::hash::BuildHasher;
use std::net::IpAddr;

use hashbrown::HashTable;
use hickory_proto::rr::Name;

use super::file::{
    At, NameRef, Pos, PreparedAddress, PreparedFile, PreparedProbe, PreparedZone, Text,
};
use super::raw::{
    DEFAULT_ANSWER_TTL, DEFAULT_NEGATIVE_TTL, MAX_ANSWER_TTL, RawAssetKind, parse_name,
};
use crate::location::{Diagnostic, Location};
use crate::model::Policy;
use crate::model::{
    Destination, DestinationIndex, DestinationKind, Endpoint, IdText, SharedName, SoaValues, Zone,
    ZoneData, name_hash,
};

/// Validates prepared files (in configuration order) into zone data, or every problem found.
/// Also returns the builder's lookup tables, for the caller to free after the prepared files
/// (see `build_prepared`).
pub(super) fn build(files: &[PreparedFile]) -> (Result<ZoneData, Vec<Diagnostic>>, BuildTables) {
    // Sized up front (an upper bound for names: every distinct spelling of every file), so no
    // table is grown and freed on the way.
    let destinations = files.iter().map(PreparedFile::destination_count).sum();
    let names = files.iter().map(|file| file.names.len()).sum();
    let policies = files.iter().map(|file| file.policies.len()).sum();
    let mut builder = Builder {
        files,
        data: ZoneData::default(),
        diagnostics: Vec::new(),
        destination_ids: DestinationIds::with_capacity(destinations),
        declared: Vec::with_capacity(destinations),
        policy_ids: HashSet::with_capacity(policies),
        names: Vec::with_capacity(names),
        name_index: HashTable::with_capacity(names),
        name_hasher: foldhash::fast::RandomState::default(),
        slots: files.iter().map(|_| Vec::new()).collect(),
    };
    builder.build(files);
    let tables = BuildTables {
        _destination_ids: builder.destination_ids,
        _declared: builder.declared,
        _names: builder.names,
        _name_index: builder.name_index,
        _slots: builder.slots,
    };
    let built = if builder.diagnostics.is_empty() {
        Ok(builder.data)
    } else {
        Err(builder.diagnostics)
    };
    (built, tables)
}

/// The builder's large lookup tables, kept only to be freed later: by the caller, after the
/// prepared files. They are large enough for the allocator to map each on its own, and the
/// first such block freed raises glibc's dynamic mmap and trim thresholds for good (it then
/// keeps up to twice the block's size of freed memory at the top of a heap). Freed before the
/// prepared files, one start in ten kept a parsing thread's whole arena (35 MB at 100k names);
/// none did in 60 starts since.
pub(super) struct BuildTables {
    _destination_ids: DestinationIds,
    _declared: Vec<(u32, Pos)>,
    _names: Vec<NameEntry>,
    _name_index: HashTable<u32>,
    _slots: Vec<Vec<usize>>,
}

/// Destination id → its index. Holds only the index (the id is compared against the
/// destination's own), so it borrows nothing from the prepared files and can outlive them.
struct DestinationIds {
    indexes: HashTable<u32>,
    /// Seeded per process, like the standard library's maps.
    hasher: foldhash::fast::RandomState,
}

impl DestinationIds {
    fn with_capacity(capacity: usize) -> Self {
        DestinationIds {
            indexes: HashTable::with_capacity(capacity),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    /// The destination with id `id`.
    fn get(&self, destinations: &[Destination], id: &str) -> Option<DestinationIndex> {
        self.indexes
            .find(self.hasher.hash_one(id), |&index| {
                destinations
                    .get(index as usize)
                    .is_some_and(|destination| destination.id == id)
            })
            .map(|&index| DestinationIndex::new(index as usize))
    }

    /// Adds the destination at `id` (already in `destinations`; its id is not there yet).
    fn insert(&mut self, destinations: &[Destination], id: DestinationIndex) {
        let (Some(destination), Ok(index)) =
            (destinations.get(id.index()), u32::try_from(id.index()))
        else {
            return;
        };
        let hasher = &self.hasher;
        self.indexes
            .insert_unique(hasher.hash_one(destination.id.as_str()), index, |&other| {
                destinations
                    .get(other as usize)
                    .map_or(0, |d| hasher.hash_one(d.id.as_str()))
            });
    }
}

/// A shared name while its endpoints are collected.
struct NameEntry {
    name: Name,
    /// The zone it lies in, if any (zones are all known before the first name).
    zone: Option<usize>,
    /// In declaration order; sorted into configuration order at the end.
    endpoints: Vec<Endpoint>,
}

struct Builder<'f> {
    /// The prepared files, in configuration order.
    files: &'f [PreparedFile],
    data: ZoneData,
    diagnostics: Vec<Diagnostic>,
    /// Destination id (trimmed) → its index.
    destination_ids: DestinationIds,
    /// Where each destination was declared (file number and position), for the message about a
    /// duplicate id; the loaded data does not keep it (24 bytes a destination).
    declared: Vec<(u32, Pos)>,
    policy_ids: HashSet<&'f str>,
    /// Shared names by index, in the order first given.
    names: Vec<NameEntry>,
    /// Name → index in `names`, holding only the index (compared against `names`, without
    /// case, like hickory's `Name`).
    name_index: HashTable<u32>,
    name_hasher: foldhash::fast::RandomState,
    /// Per file: name slot → index in `names` (`usize::MAX` while not looked up yet), so each
    /// spelling is hashed once per file rather than once per reference.
    slots: Vec<Vec<usize>>,
}

impl<'f> Builder<'f> {
    fn error(&mut self, location: Location, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic {
            location,
            message: message.into(),
        });
    }

    fn build(&mut self, files: &'f [PreparedFile]) {
        for file in files {
            for zone in &file.zones {
                self.add_zone(file, zone);
            }
        }
        let destinations = files.iter().map(PreparedFile::destination_count).sum();
        self.data.destinations.reserve_exact(destinations);
        // Assets first so that virtual assets and subnets can name a gateway declared in any
        // file.
        for (number, file) in files.iter().enumerate() {
            for asset in &file.assets {
                self.add_asset(number, file, asset);
            }
        }
        for (number, file) in files.iter().enumerate() {
            for virtual_asset in &file.virtual_assets {
                self.add_virtual_asset(number, file, virtual_asset);
            }
            for subnet in &file.subnets {
                self.add_subnet(number, file, subnet);
            }
        }
        let policies = files.iter().map(|file| file.policies.len()).sum();
        self.data.policies.reserve_exact(policies);
        for file in files {
            for policy in &file.policies {
                self.add_policy(file, policy);
            }
        }
        self.finish_names();
    }

    fn add_zone(&mut self, file: &PreparedFile, raw: &PreparedZone) {
        let location = file.location(raw.origin.1);
        let origin = match parse_name(&raw.origin.0) {
            Ok(origin) => origin,
            Err(message) => return self.error(location, format!("zone origin: {message}")),
        };
        if let Some(existing) = self.data.zones.iter().find(|z| z.origin == origin) {
            let first = existing.location.clone();
            return self.error(
                location,
                format!("zone {origin} is declared twice (first at {first})"),
            );
        }
        let answer_ttl = match raw.ttl {
            Some((ttl, pos)) if ttl > MAX_ANSWER_TTL => {
                let message = format!(
                    "ttl {ttl} is above the maximum of {MAX_ANSWER_TTL} s: answers for shared names must stay fresh",
                );
                return self.error(file.location(pos), message);
            }
            Some((ttl, _)) => ttl,
            None => DEFAULT_ANSWER_TTL,
        };
        let mname = self.soa_name(file, raw.mname.as_ref(), &origin, "failover-dns");
        let rname = self.soa_name(file, raw.rname.as_ref(), &origin, "hostmaster");
        let minimum = match raw.minimum {
            Some((minimum, pos)) if minimum > 86_400 => {
                let message = format!(
                    "soa.minimum {minimum} is above one day; it is the negative-answer TTL",
                );
                return self.error(file.location(pos), message);
            }
            Some((minimum, _)) => minimum,
            None => DEFAULT_NEGATIVE_TTL,
        };
        let (Some(mname), Some(rname)) = (mname, rname) else {
            return;
        };
        let soa = SoaValues {
            mname,
            rname,
            serial: raw.serial.unwrap_or(1),
            refresh: raw.refresh.unwrap_or(3600),
            retry: raw.retry.unwrap_or(600),
            expire: raw.expire.unwrap_or(86_400),
            minimum,
        };
        let mut zone = Zone::new(origin, answer_ttl, soa, location);
        zone.failback = raw.failback;
        self.data.zones.push(zone);
    }

    fn soa_name(
        &mut self,
        file: &PreparedFile,
        raw: Option<&At<String>>,
        origin: &Name,
        default_label: &str,
    ) -> Option<Name> {
        match raw {
            Some((text, pos)) => match parse_name(text) {
                Ok(name) => Some(name),
                Err(message) => {
                    self.error(file.location(*pos), message);
                    None
                }
            },
            None => match Name::from_ascii(default_label).and_then(|n| n.append_domain(origin)) {
                Ok(name) => Some(name),
                Err(error) => {
                    self.error(
                        Location::file(&file.path),
                        format!("cannot build default SOA name under {origin}: {error}"),
                    );
                    None
                }
            },
        }
    }

    fn add_destination(
        &mut self,
        number: usize,
        file: &'f PreparedFile,
        id: &At<Text>,
        kind: DestinationKind,
        probe: &PreparedProbe,
    ) -> Option<DestinationIndex> {
        let probe = match probe.as_deref() {
            None => None,
            Some((Ok(spec), _)) => Some(Box::new(*spec)),
            // The destination is still declared (without its probe), so that policies naming
            // it do not add "unknown destination" errors to the one that matters.
            Some((Err(message), pos)) => {
                self.error(file.location(*pos), message.clone());
                None
            }
        };
        let location = file.location(id.1);
        let text = file.text(id.0).trim();
        if text.is_empty() {
            self.error(location, "id must not be empty");
            return None;
        }
        if let Some(first) = self.destination_ids.get(&self.data.destinations, text) {
            let first = self
                .declared
                .get(first.index())
                .and_then(|&(number, pos)| Some(self.files.get(number as usize)?.location(pos)))
                .unwrap_or_else(|| Location::file(&file.path));
            let message = format!("duplicate destination id {text:?} (first declared at {first})");
            self.error(location, message);
            return None;
        }
        let destination = DestinationIndex::new(self.data.destinations.len());
        self.data.destinations.push(Destination {
            id: IdText::new(text),
            kind,
            probe,
        });
        self.declared
            .push((u32::try_from(number).unwrap_or(u32::MAX), id.1));
        self.destination_ids
            .insert(&self.data.destinations, destination);
        Some(destination)
    }

    fn gateway(&mut self, file: &PreparedFile, reference: &At<Text>) -> Option<DestinationIndex> {
        let location = file.location(reference.1);
        let text = file.text(reference.0);
        let Some(id) = self.destination_ids.get(&self.data.destinations, text) else {
            self.error(location, format!("unknown gateway asset {text:?}"));
            return None;
        };
        let is_gateway = self
            .data
            .destinations
            .get(id.index())
            .is_some_and(|d| d.kind == DestinationKind::GatewayAsset);
        if !is_gateway {
            self.error(
                location,
                format!("{text:?} is not a gateway asset (kind = \"gateway\")"),
            );
            return None;
        }
        Some(id)
    }

    fn address(&mut self, file: &PreparedFile, raw: &PreparedAddress) -> Option<IpAddr> {
        match &raw.0 {
            Ok(address) => Some(*address),
            Err(message) => {
                self.error(file.location(raw.1), message.clone());
                None
            }
        }
    }

    fn addresses(&mut self, file: &PreparedFile, raw: &[PreparedAddress]) -> Vec<IpAddr> {
        raw.iter().filter_map(|a| self.address(file, a)).collect()
    }

    fn add_asset(
        &mut self,
        number: usize,
        file: &'f PreparedFile,
        raw: &super::file::PreparedAsset,
    ) {
        let kind = match raw.kind {
            RawAssetKind::Primary => DestinationKind::PrimaryAsset,
            RawAssetKind::Gateway => DestinationKind::GatewayAsset,
        };
        let raw_addresses = file.addresses(&raw.addresses);
        let addresses = self.addresses(file, raw_addresses);
        let Some(id) = self.add_destination(number, file, &raw.id, kind, &raw.probe) else {
            return;
        };
        let names = file.name_refs(&raw.names);
        if !names.is_empty() && raw_addresses.is_empty() {
            let message = "an asset that carries names needs at least one address";
            return self.error(file.location(raw.id.1), message);
        }
        for name in names {
            for &address in &addresses {
                self.add_endpoint(number, file, name, id, address);
            }
        }
    }

    fn add_virtual_asset(
        &mut self,
        number: usize,
        file: &'f PreparedFile,
        raw: &super::file::PreparedVirtualAsset,
    ) {
        let gateway = self.gateway(file, &raw.gateway);
        let raw_addresses = file.addresses(&raw.addresses);
        let addresses = self.addresses(file, raw_addresses);
        if raw_addresses.is_empty() {
            self.error(file.location(raw.id.1), "a virtual asset needs an address");
        }
        let Some(gateway) = gateway else { return };
        let kind = DestinationKind::VirtualAsset { gateway };
        let Some(id) = self.add_destination(number, file, &raw.id, kind, &raw.probe) else {
            return;
        };
        for name in file.name_refs(&raw.names) {
            for &address in &addresses {
                self.add_endpoint(number, file, name, id, address);
            }
        }
    }

    fn add_subnet(
        &mut self,
        number: usize,
        file: &'f PreparedFile,
        raw: &super::file::PreparedSubnet,
    ) {
        let gateway = self.gateway(file, &raw.gateway);
        let cidr = match &raw.cidr.0 {
            Ok(cidr) => Some(*cidr),
            Err(message) => {
                self.error(file.location(raw.cidr.1), message.clone());
                None
            }
        };
        let (Some(gateway), Some(cidr)) = (gateway, cidr) else {
            return;
        };
        let kind = DestinationKind::Subnet {
            gateway,
            cidr: Box::new(cidr),
        };
        let Some(id) = self.add_destination(number, file, &raw.id, kind, &raw.probe) else {
            return;
        };
        for (name, address) in file.hosts(&raw.hosts) {
            let Some(parsed) = self.address(file, address) else {
                continue;
            };
            if !cidr.contains(&parsed) {
                let message = format!("address {parsed} is outside the subnet's CIDR {cidr}");
                self.error(file.location(address.1), message);
                continue;
            }
            self.add_endpoint(number, file, name, id, parsed);
        }
    }

    fn add_endpoint(
        &mut self,
        number: usize,
        file: &PreparedFile,
        reference: &NameRef,
        destination: DestinationIndex,
        address: IpAddr,
    ) {
        let location = file.location(reference.pos);
        let slot = reference.slot as usize;
        let name = match file.names.get(slot) {
            Some(Ok(name)) => name,
            Some(Err(message)) => return self.error(location, message.clone()),
            None => return,
        };
        let index = self.name_entry(number, slot, name);
        let Some(entry) = self.names.get_mut(index) else {
            return;
        };
        let endpoint = Endpoint {
            destination,
            address,
        };
        if entry.endpoints.contains(&endpoint) {
            let message =
                format!("{name} is given address {address} twice by the same destination");
            return self.error(location, message);
        }
        entry.endpoints.push(endpoint);
        if entry.zone.is_none() {
            self.error(
                location,
                format!("name {name} is not inside any declared zone ([[zone]] origin)"),
            );
        }
    }

    /// The index of the shared name spelled as `slot` of file `number` (`name`), added when new.
    fn name_entry(&mut self, number: usize, slot: usize, name: &Name) -> usize {
        if let Some(&index) = self.slots.get(number).and_then(|slots| slots.get(slot))
            && index != usize::MAX
        {
            return index;
        }
        let hash = name_hash(&self.name_hasher, name);
        let names = &self.names;
        let found = self.name_index.find(hash, |&index| {
            names
                .get(index as usize)
                .is_some_and(|entry| entry.name == *name)
        });
        let index = match found {
            Some(&index) => index as usize,
            None => {
                let index = self.names.len();
                let Ok(slot) = u32::try_from(index) else {
                    return usize::MAX;
                };
                let hasher = &self.name_hasher;
                self.name_index.insert_unique(hash, slot, |&other| {
                    names
                        .get(other as usize)
                        .map_or(0, |entry| name_hash(hasher, &entry.name))
                });
                self.names.push(NameEntry {
                    name: name.clone(),
                    zone: self.zone_index(name),
                    endpoints: Vec::new(),
                });
                index
            }
        };
        if let Some(slots) = self.slots.get_mut(number) {
            if slots.len() <= slot {
                slots.resize(slot + 1, usize::MAX);
            }
            if let Some(cached) = slots.get_mut(slot) {
                *cached = index;
            }
        }
        index
    }

    fn zone_index(&self, name: &Name) -> Option<usize> {
        crate::model::owning_zone(&self.data.zones, name).map(|(index, _)| index)
    }

    fn add_policy(&mut self, file: &'f PreparedFile, raw: &super::file::PreparedPolicy) {
        let location = file.location(raw.id.1);
        let id = file.text(raw.id.0).trim();
        if id.is_empty() {
            return self.error(location, "policy id must not be empty");
        }
        if self.policy_ids.contains(id) {
            return self.error(location, format!("duplicate policy id {id:?}"));
        }
        let mut sources = Vec::new();
        for (source, pos) in &raw.sources {
            match source {
                Ok(parsed) => sources.push(parsed.clone()),
                Err(message) => self.error(file.location(*pos), message.clone()),
            }
        }
        let mut destinations = Vec::with_capacity(raw.destinations.len());
        for (reference, pos) in &raw.destinations {
            let reference = file.text(*reference);
            match self.destination_ids.get(&self.data.destinations, reference) {
                Some(destination) => destinations.push(destination),
                None => {
                    let message = format!(
                        "unknown destination {reference:?} (not an asset, virtual asset or subnet id)",
                    );
                    self.error(file.location(*pos), message);
                }
            }
        }
        destinations.shrink_to_fit();
        self.policy_ids.insert(id);
        self.data.policies.push(Policy {
            id: id.to_string(),
            enabled: raw.enabled,
            sources,
            destinations,
        });
    }

    /// Puts every name's endpoints in configuration order: primary asset first, then other
    /// assets, virtual assets and subnets, declaration order within each (they were added in
    /// declaration order, and the sort is stable). Names outside every zone were reported and
    /// are left out.
    fn finish_names(&mut self) {
        // Drained, not freed: the caller frees the table later (see `BuildTables`).
        let mut names = std::mem::take(&mut self.names);
        let destinations = &self.data.destinations;
        let rank = |endpoint: &Endpoint| {
            destinations
                .get(endpoint.destination.index())
                .map_or(u8::MAX, |d| d.kind.order_rank())
        };
        let mut shared = Vec::with_capacity(names.len());
        for entry in names.drain(..) {
            let Some(zone) = entry.zone else {
                continue;
            };
            let mut endpoints = entry.endpoints;
            endpoints.sort_by_key(rank);
            shared.push(SharedName {
                name: entry.name,
                zone,
                endpoints: endpoints.into_boxed_slice(),
            });
        }
        self.data.names = shared;
        self.names = names;
    }
}
