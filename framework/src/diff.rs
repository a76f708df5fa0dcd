//! What a load would change (`cryopod pod load --dry-run`, `GET …/diff`), down to the units
//! a user creates: objects inside buckets, items inside tables, messages inside queues,
//! function versions and aliases inside functions.
//!
//! Generic over services: the running state and the state the load would install (computed
//! with the same merge as a real load) each list their units ([`crate::units`]), and the
//! diff compares the two lists by (type, id) and content fingerprint. Fields that change
//! without the user (capture times, clocks, derived indexes) are not part of any unit's
//! content, so loading a state and dry-running the same state again reports nothing.
//!
//! The diff holds every changed id; renderers cap what they print (`… and N more`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::Result;
use crate::runtime::Runtime;
use crate::scope::{Scope, ScopeFilter};
use crate::snapshot::Snapshot;
use crate::state::{MergeStrategy, ServiceState};
use crate::units::Units;

/// Changes a load would make.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Diff {
    /// The merge strategy the diff was computed for.
    pub merge: MergeStrategy,
    /// Services that would change.
    pub services: BTreeMap<String, ServiceDiff>,
    /// Totals over every service.
    pub totals: Counts,
    /// Totals by unit type (`"object"`, `"item"`) over every service.
    pub by_kind: BTreeMap<String, Counts>,
}

impl Diff {
    /// Whether the load would change nothing.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }
}

/// Added, modified and deleted unit counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Units the load adds.
    pub added: u64,
    /// Units the load changes.
    pub modified: u64,
    /// Units the load removes.
    pub deleted: u64,
}

impl Counts {
    fn add(&mut self, c: &CollectionDiff) {
        self.added += c.added.len() as u64;
        self.modified += c.modified.len() as u64;
        self.deleted += c.deleted.len() as u64;
    }

    fn sum(&mut self, c: &Counts) {
        self.added += c.added;
        self.modified += c.modified;
        self.deleted += c.deleted;
    }
}

/// Changes in one service.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ServiceDiff {
    /// Scopes that would change.
    pub scopes: Vec<ScopeDiff>,
    /// Totals by unit type in this service.
    pub by_kind: BTreeMap<String, Counts>,
}

/// Changes in one scope.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ScopeDiff {
    /// Account id.
    pub account: String,
    /// Region.
    pub region: String,
    /// Unit type (`"bucket"`, `"object"`) → changes.
    pub collections: BTreeMap<String, CollectionDiff>,
}

/// Changes among the units of one type in one scope.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CollectionDiff {
    /// Ids added.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub added: Vec<String>,
    /// Ids whose content changes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub modified: Vec<String>,
    /// Ids removed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deleted: Vec<String>,
}

impl CollectionDiff {
    fn is_empty(&self) -> bool {
        self.added.is_empty() && self.modified.is_empty() && self.deleted.is_empty()
    }
}

/// The diff of applying `incoming` to `runtime` with `merge`, without applying it.
pub async fn plan(runtime: &Runtime, incoming: &Snapshot, merge: MergeStrategy) -> Result<Diff> {
    let current = runtime.capture(None, &ScopeFilter::all()).await?;
    let mut diff = Diff {
        merge,
        ..Default::default()
    };
    for (name, before) in &current.services {
        let Some(provider) = runtime.service(name) else {
            continue;
        };
        let target: Box<dyn ServiceState> = match (merge, incoming.services.get(name)) {
            (MergeStrategy::Overwrite, Some(s)) => s.clone(),
            (MergeStrategy::Overwrite, None) => provider.empty_state(),
            (m, Some(s)) => before.merged(s.clone(), m)?,
            (_, None) => continue,
        };
        let sd = diff_states(before.as_ref(), target.as_ref());
        if !sd.scopes.is_empty() {
            for (kind, c) in &sd.by_kind {
                diff.by_kind.entry(kind.clone()).or_default().sum(c);
                diff.totals.sum(c);
            }
            diff.services.insert(name.clone(), sd);
        }
    }
    Ok(diff)
}

/// The unit-level difference between two states of one service.
pub fn diff_states(before: &dyn ServiceState, after: &dyn ServiceState) -> ServiceDiff {
    let b: BTreeMap<Scope, Units> = before.units().into_iter().collect();
    let a: BTreeMap<Scope, Units> = after.units().into_iter().collect();
    let empty = Units::new();
    let mut out = ServiceDiff::default();
    let scopes: std::collections::BTreeSet<&Scope> = b.keys().chain(a.keys()).collect();
    for scope in scopes {
        let collections = diff_units(
            b.get(scope).unwrap_or(&empty),
            a.get(scope).unwrap_or(&empty),
        );
        if collections.is_empty() {
            continue;
        }
        for (kind, c) in &collections {
            out.by_kind.entry(kind.clone()).or_default().add(c);
        }
        out.scopes.push(ScopeDiff {
            account: scope.account.clone(),
            region: scope.region.clone(),
            collections,
        });
    }
    out
}

/// Two unit lists compared by (type, id) and fingerprint. Both are in (type, id) order, so
/// one merge-join pass finds every change.
fn diff_units(before: &Units, after: &Units) -> BTreeMap<String, CollectionDiff> {
    let mut out: BTreeMap<String, CollectionDiff> = BTreeMap::new();
    let mut b = before.iter().peekable();
    let mut a = after.iter().peekable();
    loop {
        let order = match (b.peek(), a.peek()) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some((kb, _)), Some((ka, _))) => kb.cmp(ka),
        };
        match order {
            std::cmp::Ordering::Less => {
                if let Some((k, _)) = b.next() {
                    out.entry(k.kind.to_string())
                        .or_default()
                        .deleted
                        .push(k.id.clone());
                }
            }
            std::cmp::Ordering::Greater => {
                if let Some((k, _)) = a.next() {
                    out.entry(k.kind.to_string())
                        .or_default()
                        .added
                        .push(k.id.clone());
                }
            }
            std::cmp::Ordering::Equal => {
                if let (Some((k, fb)), Some((_, fa))) = (b.next(), a.next())
                    && fb != fa
                {
                    out.entry(k.kind.to_string())
                        .or_default()
                        .modified
                        .push(k.id.clone());
                }
            }
        }
    }
    out.retain(|_, c| !c.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_compared_by_id_and_content() {
        let mut b = Units::new();
        b.add("bucket", "bkt", &"config");
        b.add("object", "bkt/a", &1);
        b.add("object", "bkt/b", &1);
        b.add("object", "bkt/c", &1);
        let mut a = Units::new();
        a.add("bucket", "bkt", &"config");
        a.add("object", "bkt/a", &1);
        a.add("object", "bkt/b", &2);
        a.add("object", "bkt/d", &1);
        let d = diff_units(&b, &a);
        assert!(
            !d.contains_key("bucket"),
            "an unchanged container is not reported"
        );
        assert_eq!(d["object"].added, vec!["bkt/d"]);
        assert_eq!(d["object"].modified, vec!["bkt/b"]);
        assert_eq!(d["object"].deleted, vec!["bkt/c"]);
        let gone = diff_units(&b, &Units::new());
        assert_eq!(gone["object"].deleted, vec!["bkt/a", "bkt/b", "bkt/c"]);
        assert_eq!(gone["bucket"].deleted, vec!["bkt"]);
    }
}
