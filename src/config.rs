//! Zone and policy files (`zones/*.toml`, as the management console pushes them): the serde edge
//! types, and their conversion into validated [`ZoneData`] with every error located by file, line
//! and column. Unknown fields are rejected.
//!
//! The format is plain serde data (arrays of tables), so the same shape can arrive as JSON.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hickory_proto::rr::Name;
use ipnet::IpNet;
use serde::Deserialize;

use crate::location::{ConfigError, Diagnostic, Located, Location, SourceFile};
use crate::policy::{Policy, Source};
use crate::zones::{
    Destination, DestinationId, DestinationKind, Endpoint, ProbeSpec, SharedName, SoaValues, Zone,
    ZoneData,
};

/// Largest answer TTL accepted for shared names: answers must stay fresh (design.md).
pub const MAX_ANSWER_TTL: u32 = 300;
/// Answer TTL when a zone does not set one.
pub const DEFAULT_ANSWER_TTL: u32 = 5;
/// Negative TTL (SOA minimum) when a zone does not set one.
pub const DEFAULT_NEGATIVE_TTL: u32 = 5;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    zone: Vec<RawZone>,
    #[serde(default)]
    asset: Vec<RawAsset>,
    #[serde(default)]
    virtual_asset: Vec<RawVirtualAsset>,
    #[serde(default)]
    subnet: Vec<RawSubnet>,
    #[serde(default)]
    policy: Vec<RawPolicy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawZone {
    origin: Located<String>,
    #[serde(default)]
    ttl: Option<Located<u32>>,
    #[serde(default)]
    soa: RawSoa,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSoa {
    mname: Option<Located<String>>,
    rname: Option<Located<String>>,
    serial: Option<u32>,
    refresh: Option<i32>,
    retry: Option<i32>,
    expire: Option<i32>,
    minimum: Option<Located<u32>>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum RawAssetKind {
    Primary,
    Gateway,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAsset {
    id: Located<String>,
    kind: RawAssetKind,
    #[serde(default)]
    addresses: Vec<Located<String>>,
    #[serde(default)]
    names: Vec<Located<String>>,
    #[serde(default)]
    probe: Option<Located<RawProbe>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVirtualAsset {
    id: Located<String>,
    gateway: Located<String>,
    addresses: Vec<Located<String>>,
    #[serde(default)]
    names: Vec<Located<String>>,
    #[serde(default)]
    probe: Option<Located<RawProbe>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubnet {
    id: Located<String>,
    gateway: Located<String>,
    cidr: Located<String>,
    #[serde(default)]
    hosts: Vec<RawHost>,
    #[serde(default)]
    probe: Option<Located<RawProbe>>,
}

/// An active probe: TCP connect to `port` on every endpoint address of the destination.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    port: u16,
    #[serde(default)]
    interval_ms: Option<u64>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    jitter_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    name: Located<String>,
    address: Located<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    id: Located<String>,
    #[serde(default = "enabled_by_default")]
    enabled: bool,
    sources: Vec<Located<String>>,
    destinations: Vec<Located<String>>,
}

fn enabled_by_default() -> bool {
    true
}

/// The `*.toml` files of a zones directory, sorted by name so that configuration order is
/// stable. Hidden files (editor swap files, `.#name.toml`) are skipped.
pub fn zone_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let entries = std::fs::read_dir(dir).map_err(|error| {
        ConfigError::one(
            Location::file(dir),
            format!("cannot read zones directory: {error}"),
        )
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| {
            ConfigError::one(
                Location::file(dir),
                format!("cannot read zones directory: {error}"),
            )
        })?;
        let path = entry.path();
        if is_zone_file_name(&entry.file_name()) && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Whether a file in the zones directory is read as zone data by its name: `*.toml` or `*.json`
/// (as a console pushes it), not hidden. The reload watcher uses the same rule to tell which
/// changes matter.
pub fn is_zone_file_name(name: &std::ffi::OsStr) -> bool {
    let name = Path::new(name);
    let hidden = name.to_string_lossy().starts_with('.');
    !hidden
        && name
            .extension()
            .is_some_and(|ext| ext == "toml" || ext == "json")
}

/// Loads and validates every zone file in `dir`.
pub fn load_zone_dir(dir: &Path) -> Result<ZoneData, ConfigError> {
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    for path in zone_files(dir)? {
        match SourceFile::read(&path) {
            Ok(source) => sources.push(source),
            Err(error) => errors.extend(error.diagnostics),
        }
    }
    if !errors.is_empty() {
        return Err(ConfigError {
            diagnostics: errors,
        });
    }
    load_zone_sources(&sources)
}

/// Parses and validates zone data an agent received as text (for example JSON from the
/// management console): `name` says what to call it in errors, and its ending (`.json` or
/// `.toml`) which format it is in.
pub fn load_zone_text(name: &str, text: &str) -> Result<ZoneData, ConfigError> {
    load_zone_sources(&[SourceFile::new(Path::new(name), text.to_string())])
}

/// Parses and validates zone data from already-read files (the order given is configuration
/// order). All problems are collected and returned together.
pub fn load_zone_sources(sources: &[SourceFile]) -> Result<ZoneData, ConfigError> {
    let mut parsed = Vec::new();
    let mut diagnostics = Vec::new();
    for source in sources {
        match source.parse::<RawFile>() {
            Ok(raw) => parsed.push((source, raw)),
            Err(error) => diagnostics.extend(error.diagnostics),
        }
    }
    if !diagnostics.is_empty() {
        return Err(ConfigError { diagnostics });
    }
    let mut builder = Builder::default();
    builder.build(&parsed);
    if builder.diagnostics.is_empty() {
        Ok(builder.data)
    } else {
        Err(ConfigError {
            diagnostics: builder.diagnostics,
        })
    }
}

/// Parses a DNS name from configuration, fully qualified.
pub fn parse_name(text: &str) -> Result<Name, String> {
    if text.is_empty() || text == "." {
        return Err("a name must not be empty or the root".to_string());
    }
    let mut name =
        Name::from_ascii(text).map_err(|error| format!("invalid name {text:?}: {error}"))?;
    name.set_fqdn(true);
    Ok(name)
}

/// An endpoint with its configuration-order key: (destination kind rank, declaration order).
type RankedEndpoint = (u8, usize, Endpoint);

/// Validates a probe: a port, an interval of at least 100 ms (default 5 s), a timeout shorter
/// than the interval (default 1 s) and a jitter below the interval (default 0).
fn probe_spec(raw: &RawProbe) -> Result<ProbeSpec, String> {
    if raw.port == 0 {
        return Err("probe port must be 1-65535".to_string());
    }
    let interval = Duration::from_millis(raw.interval_ms.unwrap_or(5_000));
    // The default timeout never exceeds the interval; an explicit one must not.
    let timeout = match raw.timeout_ms {
        Some(ms) => Duration::from_millis(ms),
        None => Duration::from_secs(1).min(interval),
    };
    if timeout > interval {
        return Err(format!(
            "probe timeout_ms {} must not exceed interval_ms {}",
            timeout.as_millis(),
            interval.as_millis()
        ));
    }
    let jitter = Duration::from_millis(raw.jitter_ms.unwrap_or(0));
    if interval < Duration::from_millis(100) {
        return Err(format!(
            "probe interval_ms {} is below 100",
            interval.as_millis()
        ));
    }
    if timeout.is_zero() {
        return Err("probe timeout_ms must be above 0".to_string());
    }
    if jitter >= interval {
        return Err("probe jitter_ms must be below interval_ms".to_string());
    }
    Ok(ProbeSpec {
        port: raw.port,
        interval,
        timeout,
        jitter,
    })
}

#[derive(Default)]
struct Builder {
    data: ZoneData,
    diagnostics: Vec<Diagnostic>,
    destination_ids: HashMap<String, (DestinationId, Location)>,
    /// name index → the name and its endpoints, each with its configuration-order key.
    names: BTreeMap<usize, (Name, Vec<RankedEndpoint>)>,
    name_index: HashMap<Name, usize>,
    declaration: usize,
}

struct FileContext<'a> {
    source: &'a SourceFile,
}

impl FileContext<'_> {
    fn at(&self, span: Option<Range<usize>>) -> Location {
        self.source.locate_optional(span)
    }
}

impl Builder {
    fn error(&mut self, location: Location, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic {
            location,
            message: message.into(),
        });
    }

    fn build(&mut self, files: &[(&SourceFile, RawFile)]) {
        for (source, raw) in files {
            let at = FileContext { source };
            for zone in &raw.zone {
                self.add_zone(&at, zone);
            }
        }
        // Assets first so that virtual assets and subnets can name a gateway declared in any
        // file.
        for (source, raw) in files {
            let at = FileContext { source };
            for asset in &raw.asset {
                self.add_asset(&at, asset);
            }
        }
        for (source, raw) in files {
            let at = FileContext { source };
            for virtual_asset in &raw.virtual_asset {
                self.add_virtual_asset(&at, virtual_asset);
            }
            for subnet in &raw.subnet {
                self.add_subnet(&at, subnet);
            }
        }
        for (source, raw) in files {
            let at = FileContext { source };
            for policy in &raw.policy {
                self.add_policy(&at, policy);
            }
        }
        self.finish_names();
    }

    fn add_zone(&mut self, at: &FileContext<'_>, raw: &RawZone) {
        let location = at.at(raw.origin.span());
        let origin = match parse_name(raw.origin.get_ref()) {
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
        let answer_ttl = match &raw.ttl {
            Some(ttl) if *ttl.get_ref() > MAX_ANSWER_TTL => {
                let message = format!(
                    "ttl {} is above the maximum of {MAX_ANSWER_TTL} s: answers for shared names must stay fresh",
                    ttl.get_ref()
                );
                return self.error(at.at(ttl.span()), message);
            }
            Some(ttl) => *ttl.get_ref(),
            None => DEFAULT_ANSWER_TTL,
        };
        let mname = self.soa_name(at, raw.soa.mname.as_ref(), &origin, "failover-dns");
        let rname = self.soa_name(at, raw.soa.rname.as_ref(), &origin, "hostmaster");
        let minimum = match &raw.soa.minimum {
            Some(minimum) if *minimum.get_ref() > 86_400 => {
                let message = format!(
                    "soa.minimum {} is above one day; it is the negative-answer TTL",
                    minimum.get_ref()
                );
                return self.error(at.at(minimum.span()), message);
            }
            Some(minimum) => *minimum.get_ref(),
            None => DEFAULT_NEGATIVE_TTL,
        };
        let (Some(mname), Some(rname)) = (mname, rname) else {
            return;
        };
        let soa = SoaValues {
            mname,
            rname,
            serial: raw.soa.serial.unwrap_or(1),
            refresh: raw.soa.refresh.unwrap_or(3600),
            retry: raw.soa.retry.unwrap_or(600),
            expire: raw.soa.expire.unwrap_or(86_400),
            minimum,
        };
        self.data
            .zones
            .push(Zone::new(origin, answer_ttl, soa, location));
    }

    fn soa_name(
        &mut self,
        at: &FileContext<'_>,
        raw: Option<&Located<String>>,
        origin: &Name,
        default_label: &str,
    ) -> Option<Name> {
        match raw {
            Some(text) => match parse_name(text.get_ref()) {
                Ok(name) => Some(name),
                Err(message) => {
                    self.error(at.at(text.span()), message);
                    None
                }
            },
            None => match Name::from_ascii(default_label).and_then(|n| n.append_domain(origin)) {
                Ok(name) => Some(name),
                Err(error) => {
                    self.error(
                        Location::file(&at.source.path),
                        format!("cannot build default SOA name under {origin}: {error}"),
                    );
                    None
                }
            },
        }
    }

    fn add_destination(
        &mut self,
        at: &FileContext<'_>,
        id: &Located<String>,
        kind: DestinationKind,
        probe: Option<&Located<RawProbe>>,
    ) -> Option<DestinationId> {
        let probe = match probe.map(|p| (p.span(), probe_spec(p.get_ref()))) {
            None => None,
            Some((_, Ok(spec))) => Some(spec),
            Some((span, Err(message))) => {
                self.error(at.at(span), message);
                return None;
            }
        };
        let location = at.at(id.span());
        let text = id.get_ref().trim();
        if text.is_empty() {
            self.error(location, "id must not be empty");
            return None;
        }
        if let Some((_, first)) = self.destination_ids.get(text) {
            let message = format!("duplicate destination id {text:?} (first declared at {first})");
            self.error(location, message);
            return None;
        }
        let destination = DestinationId::new(self.data.destinations.len());
        self.destination_ids
            .insert(text.to_string(), (destination, location.clone()));
        self.data.destinations.push(Destination {
            id: text.to_string(),
            kind,
            location,
            probe,
        });
        Some(destination)
    }

    fn gateway(
        &mut self,
        at: &FileContext<'_>,
        reference: &Located<String>,
    ) -> Option<DestinationId> {
        let location = at.at(reference.span());
        let text = reference.get_ref();
        let Some((id, _)) = self.destination_ids.get(text.as_str()) else {
            self.error(location, format!("unknown gateway asset {text:?}"));
            return None;
        };
        let id = *id;
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

    fn address(&mut self, at: &FileContext<'_>, raw: &Located<String>) -> Option<IpAddr> {
        match raw.get_ref().parse::<IpAddr>() {
            Ok(address) => Some(address),
            Err(_) => {
                let message = format!("invalid IP address {:?}", raw.get_ref());
                self.error(at.at(raw.span()), message);
                None
            }
        }
    }

    fn addresses(&mut self, at: &FileContext<'_>, raw: &[Located<String>]) -> Vec<IpAddr> {
        raw.iter().filter_map(|a| self.address(at, a)).collect()
    }

    fn add_asset(&mut self, at: &FileContext<'_>, raw: &RawAsset) {
        let kind = match raw.kind {
            RawAssetKind::Primary => DestinationKind::PrimaryAsset,
            RawAssetKind::Gateway => DestinationKind::GatewayAsset,
        };
        let addresses = self.addresses(at, &raw.addresses);
        let Some(id) = self.add_destination(at, &raw.id, kind, raw.probe.as_ref()) else {
            return;
        };
        if !raw.names.is_empty() && raw.addresses.is_empty() {
            let message = "an asset that carries names needs at least one address";
            return self.error(at.at(raw.id.span()), message);
        }
        for name in &raw.names {
            for &address in &addresses {
                self.add_endpoint(at, name, id, address);
            }
        }
    }

    fn add_virtual_asset(&mut self, at: &FileContext<'_>, raw: &RawVirtualAsset) {
        let gateway = self.gateway(at, &raw.gateway);
        let addresses = self.addresses(at, &raw.addresses);
        if raw.addresses.is_empty() {
            self.error(at.at(raw.id.span()), "a virtual asset needs an address");
        }
        let Some(gateway) = gateway else { return };
        let kind = DestinationKind::VirtualAsset { gateway };
        let Some(id) = self.add_destination(at, &raw.id, kind, raw.probe.as_ref()) else {
            return;
        };
        for name in &raw.names {
            for &address in &addresses {
                self.add_endpoint(at, name, id, address);
            }
        }
    }

    fn add_subnet(&mut self, at: &FileContext<'_>, raw: &RawSubnet) {
        let gateway = self.gateway(at, &raw.gateway);
        let cidr = match raw.cidr.get_ref().parse::<IpNet>() {
            Ok(cidr) => Some(cidr),
            Err(_) => {
                let message = format!("invalid CIDR {:?}", raw.cidr.get_ref());
                self.error(at.at(raw.cidr.span()), message);
                None
            }
        };
        let (Some(gateway), Some(cidr)) = (gateway, cidr) else {
            return;
        };
        let kind = DestinationKind::Subnet { gateway, cidr };
        let Some(id) = self.add_destination(at, &raw.id, kind, raw.probe.as_ref()) else {
            return;
        };
        for host in &raw.hosts {
            let Some(address) = self.address(at, &host.address) else {
                continue;
            };
            if !cidr.contains(&address) {
                let message = format!("address {address} is outside the subnet's CIDR {cidr}");
                self.error(at.at(host.address.span()), message);
                continue;
            }
            self.add_endpoint(at, &host.name, id, address);
        }
    }

    fn add_endpoint(
        &mut self,
        at: &FileContext<'_>,
        raw_name: &Located<String>,
        destination: DestinationId,
        address: IpAddr,
    ) {
        let location = at.at(raw_name.span());
        let name = match parse_name(raw_name.get_ref()) {
            Ok(name) => name,
            Err(message) => return self.error(location, message),
        };
        let rank = self
            .data
            .destinations
            .get(destination.index())
            .map_or(u8::MAX, |d| d.kind.order_rank());
        let declaration = self.declaration;
        self.declaration += 1;
        let next_index = self.name_index.len();
        let index = *self.name_index.entry(name.clone()).or_insert(next_index);
        let entry = self
            .names
            .entry(index)
            .or_insert_with(|| (name.clone(), Vec::new()));
        let endpoint = Endpoint {
            destination,
            address,
        };
        if entry.1.iter().any(|(_, _, e)| *e == endpoint) {
            let message =
                format!("{name} is given address {address} twice by the same destination");
            return self.error(location, message);
        }
        entry.1.push((rank, declaration, endpoint));
        if self.zone_index(&name).is_none() {
            self.error(
                location,
                format!("name {name} is not inside any declared zone ([[zone]] origin)"),
            );
        }
    }

    fn zone_index(&self, name: &Name) -> Option<usize> {
        self.data
            .zones
            .iter()
            .enumerate()
            .filter(|(_, zone)| zone.origin.zone_of(name))
            .max_by_key(|(_, zone)| zone.origin.num_labels())
            .map(|(index, _)| index)
    }

    fn add_policy(&mut self, at: &FileContext<'_>, raw: &RawPolicy) {
        let location = at.at(raw.id.span());
        let id = raw.id.get_ref().trim().to_string();
        if id.is_empty() {
            return self.error(location, "policy id must not be empty");
        }
        if self.data.policies.iter().any(|p| p.id == id) {
            return self.error(location, format!("duplicate policy id {id:?}"));
        }
        let mut sources = Vec::new();
        for source in &raw.sources {
            match Source::parse(source.get_ref()) {
                Ok(parsed) => sources.push(parsed),
                Err(message) => self.error(at.at(source.span()), message),
            }
        }
        let mut destinations = Vec::new();
        for reference in &raw.destinations {
            match self.destination_ids.get(reference.get_ref().as_str()) {
                Some((destination, _)) => destinations.push(*destination),
                None => {
                    let message = format!(
                        "unknown destination {:?} (not an asset, virtual asset or subnet id)",
                        reference.get_ref()
                    );
                    self.error(at.at(reference.span()), message);
                }
            }
        }
        self.data.policies.push(Policy {
            id,
            enabled: raw.enabled,
            sources,
            destinations,
        });
    }

    fn finish_names(&mut self) {
        let names = std::mem::take(&mut self.names);
        for (_, (name, mut endpoints)) in names {
            endpoints.sort_by_key(|(rank, declaration, _)| (*rank, *declaration));
            let Some(zone) = self.zone_index(&name) else {
                continue;
            };
            self.data.names.push(SharedName {
                name,
                zone,
                endpoints: endpoints.into_iter().map(|(_, _, e)| e).collect(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(name: &str, text: &str) -> SourceFile {
        SourceFile::new(Path::new(name), text.to_string())
    }

    const ZONE: &str = "[[zone]]\norigin = \"internal\"\n";

    fn load(text: &str) -> Result<ZoneData, ConfigError> {
        load_zone_sources(&[source("zone.toml", ZONE), source("data.toml", text)])
    }

    #[test]
    fn endpoints_follow_configuration_order_primary_first() {
        let data = load(
            r#"
[[virtual_asset]]
id = "va"
gateway = "gw"
addresses = ["192.0.2.2"]
names = ["app.internal"]

[[asset]]
id = "gw"
kind = "gateway"
addresses = ["100.64.0.9"]

[[asset]]
id = "primary"
kind = "primary"
addresses = ["100.64.0.1"]
names = ["APP.internal."]
"#,
        )
        .expect("valid data loads");
        assert_eq!(data.names.len(), 1);
        let addresses: Vec<String> = data.names[0]
            .endpoints
            .iter()
            .map(|e| e.address.to_string())
            .collect();
        assert_eq!(addresses, ["100.64.0.1", "192.0.2.2"]);
        assert_eq!(data.zones[0].answer_ttl, DEFAULT_ANSWER_TTL);
        assert_eq!(data.zones[0].soa.minimum, DEFAULT_NEGATIVE_TTL);
    }

    #[test]
    fn errors_are_located_table() {
        // (file text, expected "line:column" and a word the message must contain)
        let cases: &[(&str, &str, &str)] = &[
            ("[[asset]\n", "1:9", "expected `]`"),
            (
                "[[asset]]\nid = \"a\"\nkind = \"primary\"\ncolour = 1\n",
                "4:1",
                "unknown field",
            ),
            (
                "[[asset]]\nid = \"a\"\nkind = \"primary\"\naddresses = [\"10.0.0.300\"]\n",
                "4:14",
                "invalid IP address",
            ),
            (
                "[[policy]]\nid = \"p\"\nsources = [\"*\"]\ndestinations = [\"nope\"]\n",
                "4:17",
                "unknown destination",
            ),
            (
                "[[policy]]\nid = \"p\"\nsources = [\"role:x\"]\ndestinations = []\n",
                "3:12",
                "unknown kind",
            ),
            (
                "[[asset]]\nid = \"a\"\nkind = \"gateway\"\n[[asset]]\nid = \"a\"\nkind = \"gateway\"\n",
                "5:6",
                "duplicate destination id",
            ),
            (
                "[[asset]]\nid = \"gw\"\nkind = \"gateway\"\n[[subnet]]\nid = \"s\"\ngateway = \"gw\"\ncidr = \"10.1.0.0/24\"\nhosts = [{ name = \"f.internal\", address = \"10.2.0.1\" }]\n",
                "8:43",
                "outside the subnet",
            ),
            (
                "[[virtual_asset]]\nid = \"v\"\ngateway = \"missing\"\naddresses = [\"10.0.0.1\"]\n",
                "3:11",
                "unknown gateway",
            ),
            (
                "[[asset]]\nid = \"a\"\nkind = \"primary\"\naddresses = [\"10.0.0.1\"]\nnames = [\"app.example\"]\n",
                "5:10",
                "not inside any declared zone",
            ),
            (
                "[[zone]]\norigin = \"other\"\nttl = 301\n",
                "3:7",
                "above the maximum",
            ),
        ];
        for (text, position, word) in cases {
            let error = load(text).expect_err("broken data must be rejected");
            let rendered = error.to_string();
            assert!(
                rendered.starts_with(&format!("data.toml:{position}")),
                "expected data.toml:{position} for {text:?}, got {rendered}"
            );
            assert!(rendered.contains(word), "expected {word:?} in {rendered}");
        }
    }

    #[test]
    fn json_pushed_by_a_console_loads_like_toml() {
        let json = r#"{
  "zone": [{"origin": "internal", "ttl": 7}],
  "asset": [
    {"id": "gw", "kind": "gateway", "addresses": ["100.64.0.9"]},
    {"id": "app-host", "kind": "primary", "addresses": ["100.64.0.1"], "names": ["app.internal"]}
  ],
  "virtual_asset": [{"id": "va", "gateway": "gw", "addresses": ["10.1.0.5"], "names": ["app.internal"],
                     "probe": {"port": 443, "interval_ms": 1000}}],
  "policy": [{"id": "p", "sources": ["*"], "destinations": ["app-host", "va"]}]
}"#;
        let data = load_zone_sources(&[source("console.json", json)]).expect("valid JSON loads");
        assert_eq!(data.zones[0].answer_ttl, 7);
        let addresses: Vec<String> = data.names[0]
            .endpoints
            .iter()
            .map(|e| e.address.to_string())
            .collect();
        assert_eq!(addresses, ["100.64.0.1", "10.1.0.5"]);
        assert_eq!(data.destinations[2].probe.map(|p| p.port), Some(443));

        let syntax =
            load_zone_sources(&[source("bad.json", "{\n  \"zone\": [\n    {\"origin\": }\n")])
                .expect_err("syntax error");
        assert!(syntax.to_string().starts_with("bad.json:3:"), "{syntax}");
        let unknown = load_zone_sources(&[source(
            "bad.json",
            "{\"zone\": [{\"origin\": \"x\", \"colour\": 1}]}",
        )])
        .expect_err("unknown field");
        assert!(unknown.to_string().starts_with("bad.json:1:"), "{unknown}");
        assert!(
            unknown.to_string().contains("unknown field `colour`"),
            "{unknown}"
        );
        let semantic = load_zone_sources(&[source(
            "bad.json",
            "{\"policy\": [{\"id\": \"p\", \"sources\": [\"*\"], \"destinations\": [\"nope\"]}]}",
        )])
        .expect_err("unknown destination");
        assert!(
            semantic
                .to_string()
                .starts_with("bad.json: unknown destination"),
            "{semantic}"
        );
    }

    #[test]
    fn probe_settings_are_validated_table() {
        let cases = [
            ("probe = { port = 443 }", None),
            (
                "probe = { port = 443, interval_ms = 50 }",
                Some("below 100"),
            ),
            ("probe = { port = 0 }", Some("1-65535")),
            (
                "probe = { port = 80, interval_ms = 1000, jitter_ms = 1000 }",
                Some("jitter_ms"),
            ),
            ("probe = { port = 80, colour = 1 }", Some("unknown field")),
            (
                "probe = { port = 80, interval_ms = 500, timeout_ms = 600 }",
                Some("must not exceed"),
            ),
        ];
        for (probe, expected) in cases {
            let text = format!(
                "[[asset]]\nid = \"a\"\nkind = \"primary\"\naddresses = [\"10.0.0.1\"]\nnames = [\"a.internal\"]\n{probe}\n"
            );
            match (load(&text), expected) {
                (Ok(data), None) => {
                    let spec = data.destinations[0].probe.expect("probe kept");
                    assert_eq!(spec.interval, Duration::from_secs(5));
                    assert_eq!(spec.timeout, Duration::from_secs(1));
                }
                (Err(error), Some(words)) => {
                    let error = error.to_string();
                    assert!(error.starts_with("data.toml:6:"), "{error}");
                    assert!(error.contains(words), "{error}");
                }
                (result, expected) => panic!("{probe}: {result:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn all_errors_are_reported_together() {
        let error =
            load("[[policy]]\nid = \"p\"\nsources = [\"bad\"]\ndestinations = [\"x\", \"y\"]\n")
                .expect_err("rejected");
        assert_eq!(error.diagnostics.len(), 3, "{error}");
    }
}
