//! The per-file half of loading zone data: one file's text → its parsed serde types → a compact
//! [`PreparedFile`] with every value converted (names, addresses, CIDRs, probes, sources) and
//! every span already turned into a line and column. What needs no other file happens here, so
//! files are prepared in parallel, and each file's text and parsed document are dropped as soon
//! as it is prepared (at 100k names, keeping them all until the cross-file checks was most of
//! the loader's memory). Conversion errors are kept, not reported: the cross-file pass
//! (`build.rs`) reports them in the same order as every other problem.

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use hickory_proto::rr::Name;
use ipnet::IpNet;

use super::raw::{RawAssetKind, RawFile, RawProbe, parse_name, probe_spec};
use crate::location::{ConfigError, Located, Location, SourceFile};
use crate::model::PolicySource;
use crate::model::ProbeSpec;

/// A line and column in the file being prepared (both 0 when the format records no spans, as
/// for JSON: then a location names the whole file).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Pos {
    line: u32,
    column: u32,
}

impl Pos {
    fn of(source: &SourceFile, span: Option<Range<usize>>) -> Pos {
        let Some(span) = span else {
            return Pos::default();
        };
        let (line, column) = source.line_column(span.start);
        Pos {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            column: u32::try_from(column).unwrap_or(u32::MAX),
        }
    }
}

/// A piece of [`PreparedFile::text`] (ids and references to ids, which the cross-file pass
/// compares and stores).
#[derive(Debug, Clone, Copy)]
pub(super) struct Text {
    start: u32,
    end: u32,
}

/// A value with where it was read from.
pub(super) type At<T> = (T, Pos);

/// A reference to one of [`PreparedFile::names`] where a name is given.
#[derive(Debug, Clone, Copy)]
pub(super) struct NameRef {
    /// Index into [`PreparedFile::names`].
    pub slot: u32,
    pub pos: Pos,
}

/// An address as given: parsed, or the error message for it.
pub(super) type PreparedAddress = At<Result<IpAddr, String>>;

/// A probe as given: validated, or the error message for it (boxed: most items have none).
pub(super) type PreparedProbe = Option<Box<At<Result<ProbeSpec, String>>>>;

pub(super) struct PreparedZone {
    pub origin: At<String>,
    pub ttl: Option<At<u32>>,
    pub failback: bool,
    pub mname: Option<At<String>>,
    pub rname: Option<At<String>>,
    pub serial: Option<u32>,
    pub refresh: Option<i32>,
    pub retry: Option<i32>,
    pub expire: Option<i32>,
    pub minimum: Option<At<u32>>,
}

pub(super) struct PreparedAsset {
    pub id: At<Text>,
    pub kind: RawAssetKind,
    pub probe: PreparedProbe,
    /// Into [`PreparedFile::addresses`].
    pub addresses: Range<u32>,
    /// Into [`PreparedFile::name_refs`].
    pub names: Range<u32>,
}

pub(super) struct PreparedVirtualAsset {
    pub id: At<Text>,
    pub gateway: At<Text>,
    pub probe: PreparedProbe,
    pub addresses: Range<u32>,
    pub names: Range<u32>,
}

pub(super) struct PreparedSubnet {
    pub id: At<Text>,
    pub gateway: At<Text>,
    pub cidr: At<Result<IpNet, String>>,
    pub probe: PreparedProbe,
    /// Into [`PreparedFile::hosts`].
    pub hosts: Range<u32>,
}

pub(super) struct PreparedPolicy {
    pub id: At<Text>,
    pub enabled: bool,
    pub sources: Vec<At<Result<PolicySource, String>>>,
    pub destinations: Vec<At<Text>>,
}

/// One zone file, converted and located, without its text.
pub(super) struct PreparedFile {
    pub path: Arc<Path>,
    /// Ids and references to ids, one after another; [`Text`] points into it.
    text: String,
    /// The distinct name spellings given in this file, each parsed once (or its error message).
    pub names: Vec<Result<Name, String>>,
    pub zones: Vec<PreparedZone>,
    pub assets: Vec<PreparedAsset>,
    pub virtual_assets: Vec<PreparedVirtualAsset>,
    pub subnets: Vec<PreparedSubnet>,
    pub policies: Vec<PreparedPolicy>,
    pub addresses: Vec<PreparedAddress>,
    pub name_refs: Vec<NameRef>,
    /// A subnet's hosts: the name and the address.
    pub hosts: Vec<(NameRef, PreparedAddress)>,
}

impl PreparedFile {
    /// Parses and converts `source`; a syntax or schema error is returned located.
    pub fn prepare(source: &SourceFile) -> Result<PreparedFile, ConfigError> {
        let raw: RawFile = source.parse()?;
        // Sized up front: growing these while the parsed document is alive leaves holes the
        // allocator keeps.
        let addresses = raw.asset.iter().map(|a| a.addresses.len()).sum::<usize>()
            + raw
                .virtual_asset
                .iter()
                .map(|v| v.addresses.len())
                .sum::<usize>();
        let name_refs = raw.asset.iter().map(|a| a.names.len()).sum::<usize>()
            + raw
                .virtual_asset
                .iter()
                .map(|v| v.names.len())
                .sum::<usize>();
        let hosts = raw.subnet.iter().map(|s| s.hosts.len()).sum();
        let mut file = Preparing {
            source,
            file: PreparedFile {
                path: Arc::clone(&source.path),
                text: String::new(),
                names: Vec::new(),
                zones: Vec::with_capacity(raw.zone.len()),
                assets: Vec::with_capacity(raw.asset.len()),
                virtual_assets: Vec::with_capacity(raw.virtual_asset.len()),
                subnets: Vec::with_capacity(raw.subnet.len()),
                policies: Vec::with_capacity(raw.policy.len()),
                addresses: Vec::with_capacity(addresses),
                name_refs: Vec::with_capacity(name_refs),
                hosts: Vec::with_capacity(hosts),
            },
            slots: HashMap::with_capacity(name_refs + hosts),
        };
        file.add(raw);
        let mut file = file.file;
        file.text.shrink_to_fit();
        file.names.shrink_to_fit();
        Ok(file)
    }

    /// The location of `pos` in this file.
    pub fn location(&self, pos: Pos) -> Location {
        Location {
            file: Arc::clone(&self.path),
            line: pos.line,
            column: pos.column,
        }
    }

    /// The text a [`Text`] points at.
    pub fn text(&self, text: Text) -> &str {
        self.text
            .get(text.start as usize..text.end as usize)
            .unwrap_or("")
    }

    /// The addresses in `range` of [`PreparedFile::addresses`].
    pub fn addresses(&self, range: &Range<u32>) -> &[PreparedAddress] {
        self.addresses
            .get(range.start as usize..range.end as usize)
            .unwrap_or(&[])
    }

    /// The name references in `range` of [`PreparedFile::name_refs`].
    pub fn name_refs(&self, range: &Range<u32>) -> &[NameRef] {
        self.name_refs
            .get(range.start as usize..range.end as usize)
            .unwrap_or(&[])
    }

    /// The hosts in `range` of [`PreparedFile::hosts`].
    pub fn hosts(&self, range: &Range<u32>) -> &[(NameRef, PreparedAddress)] {
        self.hosts
            .get(range.start as usize..range.end as usize)
            .unwrap_or(&[])
    }

    /// How many destinations (assets, virtual assets, subnets) the file declares.
    pub fn destination_count(&self) -> usize {
        self.assets.len() + self.virtual_assets.len() + self.subnets.len()
    }
}

/// A file being prepared: the source for locations, and the name spellings seen so far.
struct Preparing<'s> {
    source: &'s SourceFile,
    file: PreparedFile,
    slots: HashMap<String, u32>,
}

fn index_u32(index: usize) -> u32 {
    u32::try_from(index).unwrap_or(u32::MAX)
}

impl Preparing<'_> {
    fn add(&mut self, raw: RawFile) {
        for zone in raw.zone {
            let soa = zone.soa;
            let prepared = PreparedZone {
                origin: self.at(zone.origin),
                ttl: zone.ttl.map(|ttl| self.at(ttl)),
                failback: zone.failback,
                mname: soa.mname.map(|mname| self.at(mname)),
                rname: soa.rname.map(|rname| self.at(rname)),
                serial: soa.serial,
                refresh: soa.refresh,
                retry: soa.retry,
                expire: soa.expire,
                minimum: soa.minimum.map(|minimum| self.at(minimum)),
            };
            self.file.zones.push(prepared);
        }
        for asset in raw.asset {
            let prepared = PreparedAsset {
                id: self.text(asset.id),
                kind: asset.kind,
                probe: self.probe(asset.probe),
                addresses: self.addresses(asset.addresses),
                names: self.names(asset.names),
            };
            self.file.assets.push(prepared);
        }
        for virtual_asset in raw.virtual_asset {
            let prepared = PreparedVirtualAsset {
                id: self.text(virtual_asset.id),
                gateway: self.text(virtual_asset.gateway),
                probe: self.probe(virtual_asset.probe),
                addresses: self.addresses(virtual_asset.addresses),
                names: self.names(virtual_asset.names),
            };
            self.file.virtual_assets.push(prepared);
        }
        for subnet in raw.subnet {
            let (cidr, span) = subnet.cidr.into_parts();
            let cidr = match cidr.parse::<IpNet>() {
                Ok(cidr) => Ok(cidr),
                Err(_) => Err(format!("invalid CIDR {cidr:?}")),
            };
            let start = index_u32(self.file.hosts.len());
            for host in subnet.hosts {
                let name = self.name(host.name);
                let address = self.address(host.address);
                self.file.hosts.push((name, address));
            }
            let prepared = PreparedSubnet {
                id: self.text(subnet.id),
                gateway: self.text(subnet.gateway),
                cidr: (cidr, Pos::of(self.source, span)),
                probe: self.probe(subnet.probe),
                hosts: start..index_u32(self.file.hosts.len()),
            };
            self.file.subnets.push(prepared);
        }
        for policy in raw.policy {
            let sources = policy
                .sources
                .into_iter()
                .map(|source| {
                    let (text, span) = source.into_parts();
                    (PolicySource::parse(&text), Pos::of(self.source, span))
                })
                .collect();
            let destinations = policy
                .destinations
                .into_iter()
                .map(|destination| self.text(destination))
                .collect();
            let prepared = PreparedPolicy {
                id: self.text(policy.id),
                enabled: policy.enabled,
                sources,
                destinations,
            };
            self.file.policies.push(prepared);
        }
    }

    fn at<T>(&self, located: Located<T>) -> At<T> {
        let (value, span) = located.into_parts();
        (value, Pos::of(self.source, span))
    }

    fn text(&mut self, located: Located<String>) -> At<Text> {
        let (value, pos) = self.at(located);
        let start = index_u32(self.file.text.len());
        self.file.text.push_str(&value);
        let end = index_u32(self.file.text.len());
        (Text { start, end }, pos)
    }

    fn probe(&self, probe: Option<Located<RawProbe>>) -> PreparedProbe {
        probe.map(|probe| {
            let (raw, pos) = self.at(probe);
            Box::new((probe_spec(&raw), pos))
        })
    }

    fn address(&self, located: Located<String>) -> PreparedAddress {
        let (text, pos) = self.at(located);
        match text.parse::<IpAddr>() {
            Ok(address) => (Ok(address), pos),
            Err(_) => (Err(format!("invalid IP address {text:?}")), pos),
        }
    }

    fn addresses(&mut self, addresses: Vec<Located<String>>) -> Range<u32> {
        let start = index_u32(self.file.addresses.len());
        for address in addresses {
            let prepared = self.address(address);
            self.file.addresses.push(prepared);
        }
        start..index_u32(self.file.addresses.len())
    }

    fn name(&mut self, located: Located<String>) -> NameRef {
        let (text, pos) = self.at(located);
        let slot = match self.slots.get(&text) {
            Some(&slot) => slot,
            None => {
                let slot = index_u32(self.file.names.len());
                self.file.names.push(parse_name(&text));
                self.slots.insert(text, slot);
                slot
            }
        };
        NameRef { slot, pos }
    }

    fn names(&mut self, names: Vec<Located<String>>) -> Range<u32> {
        let start = index_u32(self.file.name_refs.len());
        for name in names {
            let prepared = self.name(name);
            self.file.name_refs.push(prepared);
        }
        start..index_u32(self.file.name_refs.len())
    }
}
