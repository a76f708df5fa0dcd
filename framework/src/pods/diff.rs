//! What a load would change (`cryopod pod load --dry-run`), per service, scope and
//! collection.
//!
//! Generic over services: the running state and the state the load would install (computed
//! with the same merge as a real load) are serialized to JSON; a [`crate::Scoped`] state
//! serializes as a list of `{scope, resources}` entries. In each scope, every field of the
//! resources that is a JSON object is a collection keyed by resource id, and is compared one
//! level down: ids added, modified (any difference inside) and deleted. A field that is not
//! an object is reported as `replaced` when it differs.
//!
//! Limitation: a plugin whose state holds maps with non-string keys (struct keys) cannot be
//! serialized to JSON; its diff falls back to a whole-service comparison (`note` says so).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use crate::error::Result;
use crate::runtime::Runtime;
use crate::scope::{Scope, ScopeFilter};
use crate::snapshot::Snapshot;
use crate::state::{MergeStrategy, ServiceState};

/// Changes a load would make.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Diff {
    /// The merge strategy the diff was computed for.
    pub merge: MergeStrategy,
    /// Services that would change.
    pub services: BTreeMap<String, ServiceDiff>,
    /// Totals over every collection.
    pub totals: Counts,
}

/// Added, modified and deleted resource counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Resources the load adds.
    pub added: u64,
    /// Resources the load changes.
    pub modified: u64,
    /// Resources the load removes.
    pub deleted: u64,
}

/// Changes in one service.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ServiceDiff {
    /// Scopes that would change.
    pub scopes: Vec<ScopeDiff>,
    /// Set when the state could not be compared resource by resource.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Changes in one scope.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ScopeDiff {
    /// Account id.
    pub account: String,
    /// Region.
    pub region: String,
    /// Collection (a field of the scope's resources) → changes.
    pub collections: BTreeMap<String, CollectionDiff>,
}

/// Changes in one collection.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CollectionDiff {
    /// Ids added.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub added: Vec<String>,
    /// Ids whose resource changes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub modified: Vec<String>,
    /// Ids removed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deleted: Vec<String>,
    /// The field is not a collection and its value changes.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub replaced: bool,
}

impl CollectionDiff {
    fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.modified.is_empty()
            && self.deleted.is_empty()
            && !self.replaced
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
        if !sd.scopes.is_empty() || sd.note.is_some() {
            for s in &sd.scopes {
                for c in s.collections.values() {
                    diff.totals.added += c.added.len() as u64;
                    diff.totals.modified += c.modified.len() as u64 + u64::from(c.replaced);
                    diff.totals.deleted += c.deleted.len() as u64;
                }
            }
            diff.services.insert(name.clone(), sd);
        }
    }
    Ok(diff)
}

/// The resource-level difference between two states of one service.
pub fn diff_states(before: &dyn ServiceState, after: &dyn ServiceState) -> ServiceDiff {
    match (scopes_json(before), scopes_json(after)) {
        (Ok(b), Ok(a)) => {
            let mut out = ServiceDiff::default();
            let keys: BTreeSet<&Scope> = b.keys().chain(a.keys()).collect();
            for scope in keys {
                let collections = diff_resources(b.get(scope), a.get(scope));
                if !collections.is_empty() {
                    out.scopes.push(ScopeDiff {
                        account: scope.account.clone(),
                        region: scope.region.clone(),
                        collections,
                    });
                }
            }
            out
        }
        (Err(e), _) | (_, Err(e)) => {
            let same = crate::testing::encoded(before) == crate::testing::encoded(after);
            ServiceDiff {
                scopes: Vec::new(),
                note: (!same).then(|| {
                    format!("the state changes; it cannot be compared resource by resource ({e})")
                }),
            }
        }
    }
}

/// A state's resources by scope, as JSON.
fn scopes_json(state: &dyn ServiceState) -> std::result::Result<BTreeMap<Scope, Value>, String> {
    let v = serde_json::to_value(state).map_err(|e| e.to_string())?;
    let mut found = None;
    find_scoped(&v, &mut found);
    let entries = found.ok_or_else(|| "no scoped resources found in the state".to_string())?;
    let mut out = BTreeMap::new();
    for e in entries {
        let scope: Scope = serde_json::from_value(e["scope"].clone()).map_err(|e| e.to_string())?;
        out.insert(scope, e["resources"].clone());
    }
    Ok(out)
}

fn is_scoped_list(a: &[Value]) -> bool {
    a.iter().all(|e| {
        e.as_object().is_some_and(|o| {
            o.len() == 2
                && o.contains_key("resources")
                && o.get("scope")
                    .is_some_and(|s| s.get("account").is_some() && s.get("region").is_some())
        })
    })
}

/// The first non-empty `[{scope, resources}]` list in `v` (an empty one if that is all).
fn find_scoped<'a>(v: &'a Value, found: &mut Option<&'a Vec<Value>>) -> bool {
    match v {
        Value::Array(a) if is_scoped_list(a) => {
            if !a.is_empty() {
                *found = Some(a);
                return true;
            }
            if found.is_none() {
                *found = Some(a);
            }
            false
        }
        Value::Array(a) => a.iter().any(|x| find_scoped(x, found)),
        Value::Object(o) => o.values().any(|x| find_scoped(x, found)),
        _ => false,
    }
}

fn diff_resources(
    before: Option<&Value>,
    after: Option<&Value>,
) -> BTreeMap<String, CollectionDiff> {
    let empty = Value::Object(Default::default());
    let b = before.unwrap_or(&empty);
    let a = after.unwrap_or(&empty);
    let mut out = BTreeMap::new();
    match (b.as_object(), a.as_object()) {
        (Some(bo), Some(ao)) => {
            let fields: BTreeSet<&String> = bo.keys().chain(ao.keys()).collect();
            for f in fields {
                let d = diff_collection(bo.get(f), ao.get(f));
                if !d.is_empty() {
                    out.insert(f.clone(), d);
                }
            }
        }
        _ => {
            let d = diff_collection(Some(b), Some(a));
            if !d.is_empty() {
                out.insert("resources".to_string(), d);
            }
        }
    }
    out
}

/// `Some(None)` for an absent collection, `Some(Some(map))` for one, `None` for a value
/// that is not a collection.
fn as_map(v: Option<&Value>) -> Option<Option<&serde_json::Map<String, Value>>> {
    match v {
        None | Some(Value::Null) => Some(None),
        Some(Value::Object(m)) => Some(Some(m)),
        Some(_) => None,
    }
}

fn diff_collection(before: Option<&Value>, after: Option<&Value>) -> CollectionDiff {
    let empty = serde_json::Map::new();
    match (as_map(before), as_map(after)) {
        (Some(b), Some(a)) => {
            let b = b.unwrap_or(&empty);
            let a = a.unwrap_or(&empty);
            let mut d = CollectionDiff::default();
            for (id, v) in a {
                match b.get(id) {
                    None => d.added.push(id.clone()),
                    Some(old) if old != v => d.modified.push(id.clone()),
                    Some(_) => {}
                }
            }
            d.deleted = b
                .keys()
                .filter(|id| !a.contains_key(*id))
                .cloned()
                .collect();
            d
        }
        _ => CollectionDiff {
            replaced: before != after,
            ..Default::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn collections_are_compared_one_level_down() {
        let b = json!({"queues": {"a": 1, "b": {"x": 1}, "c": 3}, "counter": 1});
        let a = json!({"queues": {"a": 1, "b": {"x": 2}, "d": 4}, "counter": 2});
        let d = diff_resources(Some(&b), Some(&a));
        assert_eq!(d["queues"].added, vec!["d"]);
        assert_eq!(d["queues"].modified, vec!["b"]);
        assert_eq!(d["queues"].deleted, vec!["c"]);
        assert!(d["counter"].replaced);
        let gone = diff_resources(Some(&b), None);
        assert_eq!(gone["queues"].deleted, vec!["a", "b", "c"]);
    }
}
