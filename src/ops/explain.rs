//! Why a name resolves the way it does for this client: for each endpoint, whether a policy
//! permits it (and which), or what hides it; its state and since when; and its place in the
//! order. `failover-dns status --name NAME` shows it. Pure: a function of the snapshot and the
//! health table.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::dns::snapshot::Snapshot;
use crate::health::{HealthTable, State};
use crate::model::DestinationIndex;
use crate::time::{elapsed_since, unix_ms};

/// The explanation of one shared name's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// The name, fully qualified.
    pub name: String,
    /// Whether the name exists for this client (some endpoint is permitted).
    pub visible: bool,
    /// The client's identity, as policies see it.
    pub identity: String,
    /// Every endpoint: permitted ones in answer order, then hidden ones.
    pub endpoints: Vec<EndpointExplanation>,
}

/// One endpoint of the name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointExplanation {
    /// The address.
    pub address: IpAddr,
    /// The destination carrying the name there.
    pub destination: String,
    /// What kind of destination.
    pub kind: String,
    /// 1-based place in the answer; `None` when hidden by policy.
    pub position: Option<usize>,
    /// The enabled policies that grant the destination to this identity.
    pub granted_by: Vec<String>,
    /// Why the endpoint is hidden (empty when permitted).
    pub hidden_because: Vec<String>,
    /// Up, unknown or down.
    pub state: State,
    /// When it entered that state, milliseconds since the Unix epoch (`None` for unknown).
    pub since_unix_ms: Option<u64>,
    /// Failures since the last success.
    pub consecutive_failures: u32,
}

/// Explains `name`'s answer, or `None` when it is not a shared name.
pub fn explain(
    snapshot: &Snapshot,
    health: &HealthTable,
    name: &hickory_proto::rr::Name,
) -> Option<Explanation> {
    let index = snapshot.zones.name_index(name)?;
    let shared = snapshot.zones.name(index)?;
    let policies = &snapshot.zones.data().policies;
    let ordered = snapshot.answer_order(shared, health);
    let mut endpoints = Vec::new();
    let describe = |address: IpAddr, destination: DestinationIndex, position: Option<usize>| {
        let health = health.get(address);
        let (id, kind) = snapshot
            .zones
            .destination(destination)
            .map_or(("?".to_string(), "?"), |d| {
                (d.id.to_string(), d.kind.label())
            });
        let granted_by = snapshot
            .grants
            .granting_policies(destination)
            .iter()
            .filter_map(|&p| policies.get(p))
            .map(|p| p.id.clone())
            .collect();
        let hidden_because = if position.is_some() {
            Vec::new()
        } else {
            hiding_reasons(snapshot, destination, &shared.destinations())
        };
        EndpointExplanation {
            address,
            destination: id,
            kind: kind.to_string(),
            position,
            granted_by,
            hidden_because,
            state: health.state(),
            since_unix_ms: health.state_since.map(|s| unix_ms(s.at)),
            consecutive_failures: health.consecutive_failures,
        }
    };
    for (place, ordered) in ordered.iter().enumerate() {
        endpoints.push(describe(
            ordered.endpoint.address,
            ordered.endpoint.destination,
            Some(place + 1),
        ));
    }
    for endpoint in &shared.endpoints {
        if snapshot.grants.permits(endpoint.destination) {
            continue;
        }
        endpoints.push(describe(endpoint.address, endpoint.destination, None));
    }
    let identity = &snapshot.identity;
    Some(Explanation {
        name: shared.name.to_string(),
        visible: !ordered.is_empty(),
        identity: format!(
            "user {}, groups [{}], device {}",
            identity.user.as_deref().unwrap_or("-"),
            identity.groups.join(", "),
            identity.device.as_deref().unwrap_or("-")
        ),
        endpoints,
    })
}

/// Why no policy grants `destination` to this identity, naming the policies involved.
fn hiding_reasons(
    snapshot: &Snapshot,
    destination: DestinationIndex,
    name_destinations: &[DestinationIndex],
) -> Vec<String> {
    let identity = &snapshot.identity;
    let id = snapshot
        .zones
        .destination(destination)
        .map_or("?".to_string(), |d| d.id.to_string());
    let mut reasons = Vec::new();
    for policy in &snapshot.zones.data().policies {
        let lists_it = policy.destinations.contains(&destination);
        if lists_it && !policy.enabled {
            reasons.push(format!(
                "policy {:?} would grant {id} but is disabled",
                policy.id
            ));
        } else if lists_it && !policy.applies_to(identity) {
            let sources: Vec<String> = policy.sources.iter().map(ToString::to_string).collect();
            reasons.push(format!(
                "policy {:?} grants {id} to [{}], which does not include this identity",
                policy.id,
                sources.join(", ")
            ));
        } else if !lists_it
            && policy.applies_to(identity)
            && name_destinations
                .iter()
                .any(|d| policy.destinations.contains(d))
        {
            reasons.push(format!(
                "policy {:?} grants this identity other endpoints of the name but not {id}",
                policy.id
            ));
        }
    }
    if reasons.is_empty() {
        reasons.push(format!("no policy grants {id}"));
    }
    reasons
}

fn since(unix_ms: Option<u64>, now: SystemTime) -> String {
    let Some(ms) = unix_ms else {
        return "no report yet".to_string();
    };
    match elapsed_since(ms, now) {
        Some(elapsed) => format!("for {}s", elapsed.as_secs()),
        None => "just now".to_string(),
    }
}

/// Renders an explanation for people.
impl Explanation {
    /// The explanation as `failover-dns status --name` prints it, with times relative to `now`.
    pub fn render_text(&self, now: SystemTime) -> String {
        render_explanation_text(self, now)
    }
}

fn render_explanation_text(explanation: &Explanation, now: SystemTime) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} for {}", explanation.name, explanation.identity);
    if !explanation.visible {
        let _ = writeln!(
            out,
            "  NXDOMAIN: no endpoint is permitted for this identity"
        );
    }
    for endpoint in &explanation.endpoints {
        let place = endpoint
            .position
            .map_or_else(|| "-".to_string(), |p| p.to_string());
        let _ = writeln!(
            out,
            "  {place:>2}. {} via {} ({})",
            endpoint.address, endpoint.destination, endpoint.kind
        );
        if endpoint.position.is_some() {
            let _ = writeln!(
                out,
                "      permitted by: {}",
                endpoint.granted_by.join(", ")
            );
            let _ = writeln!(
                out,
                "      state: {} {} ({} consecutive failures)",
                endpoint.state,
                since(endpoint.since_unix_ms, now),
                endpoint.consecutive_failures
            );
        } else {
            for reason in &endpoint.hidden_because {
                let _ = writeln!(out, "      hidden: {reason}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_zone_sources;
    use crate::health::{Outcome, Report, ReportSource};
    use crate::location::SourceFile;
    use crate::testing::demo_identity;
    use std::path::Path;

    #[test]
    fn explains_the_sample_pitfall_and_the_order() {
        let text = std::fs::read_to_string("zones/50-policy-pitfall.toml").expect("sample");
        let zone = std::fs::read_to_string("zones/00-zone.toml").expect("sample");
        let sources = [
            SourceFile::new(Path::new("00-zone.toml"), zone),
            SourceFile::new(Path::new("50.toml"), text),
        ];
        let data = load_zone_sources(&sources).expect("sample zones load");
        let snapshot = Snapshot::new(data, demo_identity());
        let health = HealthTable::new();
        health.report(Report {
            address: "100.64.4.10".parse().expect("literal"),
            outcome: Outcome::Failure,
            rtt: None,
            source: ReportSource::Agent,
        });
        let name = hickory_proto::rr::Name::from_ascii("WIKI.internal.").expect("literal");
        let explanation = explain(&snapshot, &health, &name).expect("a shared name");
        assert!(explanation.visible);
        let [primary, virtual_asset] = explanation.endpoints.as_slice() else {
            panic!("two endpoints: {explanation:?}");
        };
        assert_eq!(primary.position, Some(1));
        assert_eq!(primary.granted_by, ["engineering-wiki-primary-only"]);
        assert_eq!(primary.state, State::Down);
        assert!(primary.since_unix_ms.is_some());
        assert_eq!(virtual_asset.position, None);
        assert_eq!(
            virtual_asset.hidden_because,
            [
                "policy \"engineering-wiki-primary-only\" grants this identity other endpoints of the name but not wiki-via-berlin",
                "policy \"engineering-wiki-failover-draft\" would grant wiki-via-berlin but is disabled",
            ]
        );
        let text = render_explanation_text(&explanation, SystemTime::now());
        assert!(
            text.contains("hidden: policy \"engineering-wiki-failover-draft\""),
            "{text}"
        );
        let unknown = hickory_proto::rr::Name::from_ascii("nope.internal.").expect("literal");
        assert!(explain(&snapshot, &health, &unknown).is_none());
    }
}
