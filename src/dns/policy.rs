//! Which destinations this client's identity may see: policies (sources → destinations) evaluated
//! against the identity. Pure functions of plain data; no I/O.
//!
//! Primary asset and virtual asset are separate destinations (as the vendor's policy model has it): a
//! policy that grants only one of them gives this client only that one's addresses.

use crate::model::{DestinationIndex, Identity, Policy, PolicyIndex};

/// The destinations granted to one identity, with the policies that grant each. Stored flat
/// (one offset per destination into one list of policy indexes): most destinations are granted
/// by one policy, and a `Vec` per destination cost more than the list itself at 100k names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// `granted_by[starts[d]..starts[d + 1]]` are the policies granting destination `d`.
    starts: Vec<u32>,
    granted_by: Vec<PolicyIndex>,
}

impl Grants {
    /// Evaluates every enabled policy against `identity`. `destination_count` is the number of
    /// destinations in the zone data (ids are dense indices below it).
    pub fn evaluate(policies: &[Policy], identity: &Identity, destination_count: usize) -> Self {
        let applying = policies
            .iter()
            .enumerate()
            .filter(|(_, policy)| policy.applies_to(identity));
        let (starts, granted_by) = group_by_destination(applying, destination_count);
        Grants { starts, granted_by }
    }

    /// Whether any enabled policy grants `destination` to this identity.
    pub fn permits(&self, destination: DestinationIndex) -> bool {
        !self.granting_policies(destination).is_empty()
    }

    /// The policies that grant `destination` to this identity.
    pub fn granting_policies(&self, destination: DestinationIndex) -> &[PolicyIndex] {
        slice_of(&self.starts, &self.granted_by, destination)
    }
}

/// For every destination, the enabled policies that list it (whoever they apply to), so that
/// looking for partial grants visits only the policies that mention a name's destinations
/// instead of every policy for every name (quadratic at 100k names and 1,000 policies).
#[derive(Debug, Clone, Default)]
pub struct DestinationPolicies {
    starts: Vec<u32>,
    listed_by: Vec<PolicyIndex>,
}

impl DestinationPolicies {
    /// Indexes the enabled `policies`. `destination_count` as for [`Grants::evaluate`].
    pub fn new(policies: &[Policy], destination_count: usize) -> Self {
        let enabled = policies
            .iter()
            .enumerate()
            .filter(|(_, policy)| policy.enabled);
        let (starts, listed_by) = group_by_destination(enabled, destination_count);
        DestinationPolicies { starts, listed_by }
    }

    /// The enabled policies that list `destination`, in policy order, each once.
    pub fn listing(&self, destination: DestinationIndex) -> &[PolicyIndex] {
        slice_of(&self.starts, &self.listed_by, destination)
    }
}

/// Groups (policy, destination) pairs by destination: offsets into one list of policy
/// indexes, each destination's policies in policy order and each once. Destinations at or
/// above `destination_count` are ignored.
///
/// A counting sort: one pass counts each destination's policies, one places them, and the list
/// is allocated once at its final size. (A sorted list of pairs was 16 bytes a grant, grown by
/// doubling, and its freed blocks stayed in the process: megabytes at 100k names.)
fn group_by_destination<'a>(
    policies: impl Iterator<Item = (PolicyIndex, &'a Policy)> + Clone,
    destination_count: usize,
) -> (Vec<u32>, Vec<PolicyIndex>) {
    let listed = |policy: &'a Policy| {
        policy
            .destinations
            .iter()
            .map(|destination| destination.index())
            .filter(move |&destination| destination < destination_count)
    };
    // counts[d + 1] is how many times destination d is listed; summed, counts[d] is where d's
    // policies start.
    let mut counts = vec![0u32; destination_count + 1];
    for (_, policy) in policies.clone() {
        for destination in listed(policy) {
            if let Some(count) = counts.get_mut(destination + 1) {
                *count = count.saturating_add(1);
            }
        }
    }
    let mut total = 0u32;
    for count in &mut counts {
        total = total.saturating_add(*count);
        *count = total;
    }
    let mut grouped = vec![PolicyIndex::MAX; total as usize];
    // Where the next policy of each destination goes.
    let mut next = counts.clone();
    for (index, policy) in policies {
        for destination in listed(policy) {
            let Some(slot) = next.get_mut(destination) else {
                continue;
            };
            if let Some(place) = grouped.get_mut(*slot as usize) {
                *place = index;
                *slot += 1;
            }
        }
    }
    drop(next);
    // Policies come in order, so a policy listing a destination twice is placed twice in a
    // row: keep the first (the list shrinks in place; `counts` become the final starts).
    let mut kept = 0usize;
    let mut start = 0usize;
    for destination in 0..destination_count {
        let end = counts
            .get(destination + 1)
            .map_or(start, |&end| end as usize);
        if let Some(start_slot) = counts.get_mut(destination) {
            *start_slot = u32::try_from(kept).unwrap_or(u32::MAX);
        }
        let mut previous = None;
        for position in start..end {
            let Some(&policy) = grouped.get(position) else {
                break;
            };
            if previous != Some(policy) {
                if let Some(place) = grouped.get_mut(kept) {
                    *place = policy;
                }
                kept += 1;
                previous = Some(policy);
            }
        }
        start = end;
    }
    if let Some(last) = counts.get_mut(destination_count) {
        *last = u32::try_from(kept).unwrap_or(u32::MAX);
    }
    grouped.truncate(kept);
    grouped.shrink_to_fit();
    (counts, grouped)
}

/// The part of `list` that `starts` assigns to `destination` (empty when out of range).
fn slice_of<'a>(
    starts: &[u32],
    list: &'a [PolicyIndex],
    destination: DestinationIndex,
) -> &'a [PolicyIndex] {
    let index = destination.index();
    let (Some(&start), Some(&end)) = (starts.get(index), starts.get(index.wrapping_add(1))) else {
        return &[];
    };
    list.get(start as usize..end as usize).unwrap_or(&[])
}

/// A policy that grants some but not all destinations of a shared name: failover cannot work for
/// the clients it applies to, unless another policy grants them the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialGrant {
    /// Index of the policy in the zone data.
    pub policy: PolicyIndex,
    /// Destinations of the name the policy grants.
    pub granted: Vec<DestinationIndex>,
    /// Destinations of the name the policy does not grant.
    pub missing: Vec<DestinationIndex>,
    /// Whether the policy applies to this identity.
    pub applies_to_identity: bool,
    /// The missing destinations that this identity still does not get from any policy.
    pub missing_for_identity: Vec<DestinationIndex>,
}

/// Finds every enabled policy that grants some but not all of `name_destinations` (the distinct
/// destinations carrying one shared name). The vendor's rule: "every policy that grants access to the
/// primary Asset must also grant access to the Virtual Asset (and vice versa)".
///
/// For one name (the tests' view); [`partial_grants_indexed`] does the same for many names
/// without visiting every policy for each.
#[cfg(test)]
pub fn partial_grants(
    policies: &[Policy],
    grants: &Grants,
    identity: &Identity,
    name_destinations: &[DestinationIndex],
) -> Vec<PartialGrant> {
    let count = name_destinations
        .iter()
        .map(|d| d.index() + 1)
        .max()
        .unwrap_or(0);
    let listing = DestinationPolicies::new(policies, count);
    partial_grants_indexed(policies, &listing, grants, identity, name_destinations)
}

/// [`partial_grants`] with the policies already indexed by destination (built once for all
/// names): only the policies that list one of the name's destinations are looked at.
pub fn partial_grants_indexed(
    policies: &[Policy],
    listing: &DestinationPolicies,
    grants: &Grants,
    identity: &Identity,
    name_destinations: &[DestinationIndex],
) -> Vec<PartialGrant> {
    let mut found = Vec::new();
    if name_destinations.len() < 2 {
        return found;
    }
    let mut candidates: Vec<PolicyIndex> = name_destinations
        .iter()
        .flat_map(|&d| listing.listing(d).iter().copied())
        .collect();
    candidates.sort_unstable();
    candidates.dedup();
    for index in candidates {
        let Some(policy) = policies.get(index) else {
            continue;
        };
        let (granted, missing): (Vec<DestinationIndex>, Vec<DestinationIndex>) = name_destinations
            .iter()
            .copied()
            .partition(|&d| listing.listing(d).binary_search(&index).is_ok());
        if granted.is_empty() || missing.is_empty() {
            continue;
        }
        let applies_to_identity = policy.applies_to(identity);
        let missing_for_identity = if applies_to_identity {
            missing
                .iter()
                .copied()
                .filter(|d| !grants.permits(*d))
                .collect()
        } else {
            Vec::new()
        };
        found.push(PartialGrant {
            policy: index,
            granted,
            missing,
            applies_to_identity,
            missing_for_identity,
        });
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PolicySource;

    fn id(i: usize) -> DestinationIndex {
        DestinationIndex::new(i)
    }

    fn policy(name: &str, enabled: bool, sources: &[&str], destinations: &[usize]) -> Policy {
        Policy {
            id: name.to_string(),
            enabled,
            sources: sources
                .iter()
                .map(|s| PolicySource::parse(s).expect("test source parses"))
                .collect(),
            destinations: destinations.iter().map(|&d| id(d)).collect(),
        }
    }

    fn alice() -> Identity {
        Identity {
            user: Some("alice".into()),
            groups: vec!["engineering".into(), "oncall".into()],
            device: Some("alice-laptop".into()),
        }
    }

    #[test]
    fn source_parsing_table() {
        let cases: &[(&str, Result<PolicySource, ()>)] = &[
            ("*", Ok(PolicySource::Anyone)),
            ("user:alice", Ok(PolicySource::User("alice".into()))),
            ("group:eng", Ok(PolicySource::Group("eng".into()))),
            ("device:pc-1", Ok(PolicySource::Device("pc-1".into()))),
            ("user:", Err(())),
            ("alice", Err(())),
            ("role:admin", Err(())),
            ("", Err(())),
        ];
        for (text, expected) in cases {
            let parsed = PolicySource::parse(text).map_err(|_| ());
            assert_eq!(&parsed, expected, "source {text:?}");
        }
    }

    #[test]
    fn which_destinations_are_permitted_table() {
        // (policies, destination → expected permitted)
        let cases: Vec<(&str, Vec<Policy>, Vec<bool>)> = vec![
            (
                "one policy grants both",
                vec![policy("p", true, &["group:engineering"], &[0, 1])],
                vec![true, true, false],
            ),
            (
                "policy grants only the primary",
                vec![policy("p", true, &["user:alice"], &[0])],
                vec![true, false, false],
            ),
            (
                "disabled policy grants nothing",
                vec![policy("p", false, &["*"], &[0, 1, 2])],
                vec![false, false, false],
            ),
            (
                "policy for another user grants nothing",
                vec![policy("p", true, &["user:bob", "group:sales"], &[0, 1])],
                vec![false, false, false],
            ),
            (
                "union of two policies",
                vec![
                    policy("a", true, &["device:alice-laptop"], &[0]),
                    policy("b", true, &["group:oncall"], &[2]),
                ],
                vec![true, false, true],
            ),
            (
                "wildcard source",
                vec![policy("p", true, &["*"], &[1])],
                vec![false, true, false],
            ),
            ("no policies", vec![], vec![false, false, false]),
        ];
        for (what, policies, expected) in cases {
            let grants = Grants::evaluate(&policies, &alice(), 3);
            let permitted: Vec<bool> = (0..3).map(|d| grants.permits(id(d))).collect();
            assert_eq!(permitted, expected, "{what}");
        }
    }

    #[test]
    fn granting_policies_lists_every_grant_once() {
        let policies = vec![
            policy("a", true, &["*"], &[0, 0]),
            policy("b", true, &["user:alice"], &[0]),
            policy("c", false, &["*"], &[0]),
        ];
        let grants = Grants::evaluate(&policies, &alice(), 1);
        assert_eq!(grants.granting_policies(id(0)), &[0, 1]);
        assert!(grants.granting_policies(id(5)).is_empty());
        assert!(!grants.permits(id(5)));
    }

    #[test]
    fn grouping_by_destination_matches_a_sorted_set_of_pairs() {
        // Deterministic pseudo-random policies, duplicates and out-of-range destinations included.
        let mut seed = 7u64;
        let mut next = |below: usize| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 33) as usize % below
        };
        for round in 0..50 {
            let destination_count = 1 + round % 9;
            let policies: Vec<Policy> = (0..next(6))
                .map(|p| {
                    let listed: Vec<usize> =
                        (0..next(8)).map(|_| next(destination_count + 2)).collect();
                    policy(&format!("p{p}"), true, &["*"], &listed)
                })
                .collect();
            let (starts, grouped) =
                group_by_destination(policies.iter().enumerate(), destination_count);
            let pairs: std::collections::BTreeSet<(usize, usize)> = policies
                .iter()
                .enumerate()
                .flat_map(|(p, policy)| policy.destinations.iter().map(move |d| (d.index(), p)))
                .filter(|&(d, _)| d < destination_count)
                .collect();
            assert_eq!(starts.len(), destination_count + 1);
            for d in 0..destination_count {
                let expected: Vec<usize> = pairs
                    .iter()
                    .filter(|(pd, _)| *pd == d)
                    .map(|&(_, p)| p)
                    .collect();
                assert_eq!(
                    slice_of(&starts, &grouped, id(d)),
                    expected.as_slice(),
                    "round {round}, destination {d}"
                );
            }
            assert_eq!(grouped.len(), pairs.len());
        }
    }

    #[test]
    fn partial_grants_table() {
        let name = [id(0), id(1)];
        // (what, policies, expected (policy index, applies to identity, missing for identity))
        type Expected = Vec<(usize, bool, Vec<usize>)>;
        let cases: Vec<(&str, Vec<Policy>, Expected)> = vec![
            (
                "complete policy: no warning",
                vec![policy("p", true, &["*"], &[0, 1])],
                vec![],
            ),
            (
                "primary only, applies to identity, nothing else grants the rest",
                vec![policy("p", true, &["user:alice"], &[0])],
                vec![(0, true, vec![1])],
            ),
            (
                "primary only, but another policy covers the virtual asset",
                vec![
                    policy("p", true, &["user:alice"], &[0]),
                    policy("q", true, &["*"], &[1]),
                ],
                vec![(0, true, vec![]), (1, true, vec![])],
            ),
            (
                "partial policy for someone else still warns",
                vec![policy("p", true, &["user:bob"], &[1])],
                vec![(0, false, vec![])],
            ),
            (
                "disabled partial policy: no warning",
                vec![policy("p", false, &["*"], &[0])],
                vec![],
            ),
        ];
        for (what, policies, expected) in cases {
            let grants = Grants::evaluate(&policies, &alice(), 2);
            let found: Vec<(usize, bool, Vec<usize>)> =
                partial_grants(&policies, &grants, &alice(), &name)
                    .into_iter()
                    .map(|p| {
                        (
                            p.policy,
                            p.applies_to_identity,
                            p.missing_for_identity.iter().map(|d| d.index()).collect(),
                        )
                    })
                    .collect();
            assert_eq!(found, expected, "{what}");
        }
    }
}
