//! The immutable state one query is answered from: the zone data, this client's identity, and
//! the grants its policies give that identity. Built whole, then swapped in; a query holds one
//! snapshot from start to finish, so it never sees half of a change.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;

use crate::dns::answer::{OrderedEndpoint, Placement, order_endpoints};
use crate::dns::policy::{DestinationPolicies, Grants, partial_grants_indexed};
use crate::dns::zones::Zones;
use crate::health::HealthTable;
use crate::model::{DestinationKind, Identity};
use crate::model::{Endpoint, NameIndex, SharedName, ZoneData};

/// Zone data evaluated for one identity.
#[derive(Debug)]
pub struct Snapshot {
    /// The zone data and its indexes.
    pub zones: Zones,
    /// Who this client is.
    pub identity: Identity,
    /// What the identity's policies grant.
    pub grants: Grants,
}

impl Snapshot {
    /// Evaluates `data`'s policies for `identity`.
    pub fn new(data: ZoneData, identity: Identity) -> Self {
        let grants = Grants::evaluate(&data.policies, &identity, data.destinations.len());
        Snapshot {
            zones: Zones::new(data),
            identity,
            grants,
        }
    }

    /// The warnings `check` prints: zone files without zones, and every policy that grants some but
    /// not all destinations of a shared name (failover cannot work for its clients).
    pub fn warnings(&self) -> Vec<String> {
        let data = self.zones.data();
        let mut warnings = data.skipped_files.clone();
        if data.zones.is_empty() {
            warnings
                .push("no [[zone]] is declared: nothing is answered from zone data".to_string());
        }
        let describe = |ids: &[crate::model::DestinationIndex]| -> String {
            ids.iter()
                .filter_map(|&id| self.zones.destination(id))
                .map(|d| format!("{} ({})", d.id, d.kind.label()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let listing = DestinationPolicies::new(&data.policies, data.destinations.len());
        for shared in &data.names {
            let destinations = shared.destinations();
            for partial in partial_grants_indexed(
                &data.policies,
                &listing,
                &self.grants,
                &self.identity,
                &destinations,
            ) {
                let Some(policy) = data.policies.get(partial.policy) else {
                    continue;
                };
                let effect = if !partial.applies_to_identity {
                    "it does not apply to this identity, but its clients get nothing to fail over to"
                        .to_string()
                } else if partial.missing_for_identity.is_empty() {
                    "another policy grants this identity the rest, but clients of this policy alone cannot fail over".to_string()
                } else {
                    format!(
                        "this identity gets no endpoint of {}: failover cannot work",
                        describe(&partial.missing_for_identity)
                    )
                };
                warnings.push(format!(
                    "shared name {}: policy {:?} grants {} but not {}; {effect}",
                    shared.name,
                    policy.id,
                    describe(&partial.granted),
                    describe(&partial.missing),
                ));
            }
        }
        warnings
    }

    /// The policy stage: the endpoints of `name` this identity may see, in configuration order.
    pub fn permitted_endpoints<'a>(
        &'a self,
        name: &'a SharedName,
    ) -> impl Iterator<Item = Endpoint> + 'a {
        name.endpoints
            .iter()
            .copied()
            .filter(|endpoint| self.grants.permits(endpoint.destination))
    }

    /// Whether the shared name at `index` exists for this identity (has a permitted endpoint).
    pub fn is_visible(&self, index: NameIndex) -> bool {
        self.zones
            .name(index)
            .is_some_and(|name| self.permitted_endpoints(name).next().is_some())
    }

    /// The health stage: the permitted endpoints of `name` in answer order.
    pub fn answer_order(&self, name: &SharedName, health: &HealthTable) -> Vec<OrderedEndpoint> {
        let failback = self
            .zones
            .data()
            .zones
            .get(name.zone)
            .is_some_and(|zone| zone.failback);
        let any_draining = health.any_draining();
        let destinations = &self.zones.data().destinations;
        order_endpoints(
            self.permitted_endpoints(name),
            |address| health.get(address),
            |endpoint| {
                if !failback && !any_draining {
                    return Placement::ByHealth;
                }
                let Some(destination) = destinations.get(endpoint.destination.index()) else {
                    return Placement::ByHealth;
                };
                if any_draining && health.is_draining(&destination.id) {
                    Placement::Draining
                } else if failback && destination.kind == DestinationKind::PrimaryAsset {
                    Placement::FailbackPrimary
                } else {
                    Placement::ByHealth
                }
            },
        )
    }
}

/// The current snapshot, replaceable atomically while queries run. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SharedSnapshot {
    current: Arc<ArcSwap<Snapshot>>,
    /// Counts replacements, bumped after each store: an answer computed after reading
    /// change count `g` is from snapshot `g` or a newer one (see [`crate::dns::fastpath`]).
    changes: Arc<AtomicU64>,
}

impl SharedSnapshot {
    /// Starts with `snapshot`.
    pub fn new(snapshot: Snapshot) -> Self {
        SharedSnapshot {
            current: Arc::new(ArcSwap::from_pointee(snapshot)),
            changes: Arc::new(AtomicU64::new(0)),
        }
    }

    /// How many times the snapshot was replaced. Read it before answering from [`load`]:
    /// when it is unchanged afterwards, the answer is still the current one.
    ///
    /// [`load`]: SharedSnapshot::load
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    /// The snapshot to answer one query from.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Replaces the snapshot; queries already running finish on the old one.
    pub fn store(&self, snapshot: Snapshot) {
        self.current.store(Arc::new(snapshot));
        self.changes.fetch_add(1, Ordering::Release);
    }
}
