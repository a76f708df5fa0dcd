//! Units: the resources a user creates and names (a bucket, an object, a table, an item, a
//! queue, a message, a function version), each with a stable id and a fingerprint of what
//! the user can see of it.
//!
//! Why a unit list beside the state: a `service-merge` must merge down to these units, and a
//! dry run must report them, for every plugin alike. The state types say what their units
//! are once ([`crate::Resources::units`]); the framework then diffs two states
//! ([`crate::diff`]) and checks a plugin's merge ([`crate::testing::check_merges`]) without
//! knowing any service.
//!
//! A unit's *content* is what the user set or can observe, never what changes on its own:
//! capture times, clock offsets, derived indexes, and a container's children (a bucket's
//! content is its configuration; each object is a unit of its own) stay out, so loading a
//! state and dry-running the same state again reports nothing. The content is hashed through
//! `erased-serde`, so a plugin hands over any serde value (a borrowed view of the fields that
//! count) without the framework naming its type.

use serde::Serialize;
use std::collections::BTreeMap;

/// A unit's identity inside one scope: its type (`"object"`) and id (`"bucket/key"`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct UnitKey {
    /// The unit type, singular (`"bucket"`, `"object"`, `"item"`).
    pub kind: &'static str,
    /// The id, unique among units of its type in one scope; containers' names lead, so
    /// ids of one container sort together (`"bucket/key"`, `"table/pk=1"`).
    pub id: String,
}

/// The units of one scope of one service, with the sha256 of each one's content.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Units {
    units: BTreeMap<UnitKey, [u8; 32]>,
}

/// The fingerprint of a unit's content: sha256 of its MessagePack encoding with field names.
pub fn fingerprint(content: &dyn erased_serde::Serialize) -> [u8; 32] {
    let mut w = cryopod_bundle::Hasher::new();
    let mut ser = rmp_serde::Serializer::new(&mut w).with_struct_map();
    let mut erased = <dyn erased_serde::Serializer>::erase(&mut ser);
    if let Err(e) = content.erased_serialize(&mut erased) {
        // Serde-derived values encode into a hash without failing; should one not, the unit
        // still gets a stable fingerprint (of the error), and the log says why.
        tracing::warn!(error = %e, "a unit's content does not serialize; fingerprinting the error");
        return cryopod_bundle::Digest::of(e.to_string().as_bytes()).0;
    }
    w.finish().0
}

impl Units {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one unit. `content` is what the user set or can observe of it (see the
    /// module docs for what to leave out). A second unit with the same kind and id
    /// replaces the first.
    pub fn add(
        &mut self,
        kind: &'static str,
        id: impl Into<String>,
        content: &dyn erased_serde::Serialize,
    ) {
        self.units.insert(
            UnitKey {
                kind,
                id: id.into(),
            },
            fingerprint(content),
        );
    }

    /// Records one unit with a precomputed fingerprint.
    pub fn add_fingerprint(&mut self, kind: &'static str, id: impl Into<String>, fp: [u8; 32]) {
        self.units.insert(
            UnitKey {
                kind,
                id: id.into(),
            },
            fp,
        );
    }

    /// The units with their fingerprints, in (kind, id) order.
    pub fn iter(&self) -> impl Iterator<Item = (&UnitKey, &[u8; 32])> {
        self.units.iter()
    }

    /// The fingerprint of one unit.
    pub fn get(&self, kind: &'static str, id: &str) -> Option<&[u8; 32]> {
        self.units.get(&UnitKey {
            kind,
            id: id.to_string(),
        })
    }

    /// How many units there are.
    pub fn len(&self) -> usize {
        self.units.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }

    /// The map itself, for comparisons.
    pub fn as_map(&self) -> &BTreeMap<UnitKey, [u8; 32]> {
        &self.units
    }

    /// `self` overlaid with `top`: every unit of `top`, and the units of `self` that `top`
    /// lacks. What a `service-merge` of `top` into `self` must produce.
    pub fn overlaid(&self, top: &Units) -> Units {
        let mut out = self.clone();
        for (k, v) in &top.units {
            out.units.insert(k.clone(), *v);
        }
        out
    }
}

/// The default units of a scope's resources: every top-level field that serializes as a map
/// is a collection whose entries are units of that kind (`queues → queue a, b`); every
/// other field is one `setting` unit named after the field. Right for a flat service (one
/// level of named resources); services whose resources hold resources of their own (objects
/// in buckets, items in tables) list their units themselves.
pub fn default_units<R: Serialize>(resources: &R, out: &mut Units) {
    let value = match serde_json::to_value(resources) {
        Ok(v) => v,
        Err(e) => {
            // Maps with non-string keys have no JSON form: the scope is one unit.
            tracing::debug!(error = %e, "resources have no JSON form; one unit for the scope");
            out.add("scope", "", &ErasedJson(resources));
            return;
        }
    };
    match value {
        serde_json::Value::Object(fields) => {
            for (field, v) in fields {
                let kind = kind_name(&field);
                match v {
                    serde_json::Value::Object(entries) => {
                        for (id, entry) in entries {
                            out.add(kind, id, &entry);
                        }
                    }
                    serde_json::Value::Null => {}
                    other => out.add("setting", field, &other),
                }
            }
        }
        other => out.add("scope", "", &other),
    }
}

/// Serializes any `Serialize` through erased-serde's blanket impl.
struct ErasedJson<'a, R>(&'a R);

impl<R: Serialize> Serialize for ErasedJson<'_, R> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// A field name as a unit kind: `notebooks` → `notebook`. Kinds are `'static`; the set of
/// field names is small and fixed per type, so each distinct name is leaked once.
fn kind_name(field: &str) -> &'static str {
    static KINDS: parking_lot::Mutex<BTreeMap<String, &'static str>> =
        parking_lot::Mutex::new(BTreeMap::new());
    let singular = field
        .strip_suffix("ies")
        .map(|s| format!("{s}y"))
        .or_else(|| field.strip_suffix('s').map(str::to_string))
        .unwrap_or_else(|| field.to_string());
    let mut kinds = KINDS.lock();
    if let Some(k) = kinds.get(&singular) {
        return k;
    }
    let leaked: &'static str = Box::leak(singular.clone().into_boxed_str());
    kinds.insert(singular, leaked);
    leaked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Flat {
        notebooks: BTreeMap<String, u32>,
        counter: u32,
        nothing: Option<u32>,
    }

    #[test]
    fn flat_resources_list_map_entries_as_units_and_other_fields_as_settings() {
        let r = Flat {
            notebooks: [("a".to_string(), 1), ("b".to_string(), 2)].into(),
            counter: 7,
            nothing: None,
        };
        let mut u = Units::new();
        default_units(&r, &mut u);
        let keys: Vec<(&str, &str)> = u.iter().map(|(k, _)| (k.kind, k.id.as_str())).collect();
        assert_eq!(
            keys,
            vec![("notebook", "a"), ("notebook", "b"), ("setting", "counter")]
        );
    }

    #[test]
    fn fingerprints_follow_content() {
        assert_eq!(fingerprint(&(1u32, "x")), fingerprint(&(1u32, "x")));
        assert_ne!(fingerprint(&(1u32, "x")), fingerprint(&(2u32, "x")));
    }

    #[test]
    fn overlay_takes_the_top_units_and_keeps_the_rest() {
        let mut a = Units::new();
        a.add("item", "1", &"A");
        a.add("item", "a-only", &"A");
        let mut b = Units::new();
        b.add("item", "1", &"B");
        b.add("item", "b-only", &"B");
        let o = a.overlaid(&b);
        assert_eq!(o.len(), 3);
        assert_eq!(o.get("item", "1"), Some(&fingerprint(&"B")));
        assert_eq!(o.get("item", "a-only"), Some(&fingerprint(&"A")));
    }
}
