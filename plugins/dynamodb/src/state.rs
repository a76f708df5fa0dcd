//! The DynamoDB state: tables (schema, indexes, TTL, tags) and their items, per scope.
//!
//! Items of a table live in a [`PMap`] (a persistent B+tree, packed bottom-up on restore) keyed by [`ItemKey`] (partition key, sort key)
//! with DynamoDB's order on key values, so a Query is a range scan and a capture clones the
//! whole state in O(1). Secondary indexes are *derived*: ordered sets of [`IndexKey`]s kept
//! beside the items but never serialized. After a restore they are rebuilt from the items
//! off the request path ([`DerivedIndexes`]): a background pass starts when the state is
//! installed, and a query or write that needs an index before it finishes waits for it.
//! The serialized form of a table stores its items as a plain sequence (each item holds its
//! own key), so a bundle carries every item exactly once.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use std::sync::{Arc, OnceLock};

use cryopod::{ResourceCounts, Resources, Scoped, ScopedState};
use imbl::OrdMap;
use serde::{Deserialize, Serialize, Serializer};

use crate::error::DdbError;
use crate::pmap::PMap;
use crate::value::{AttrValue, IndexKey, Item, ItemKey, KeyVal, MAX_DEPTH, nesting_error};

/// Largest item DynamoDB stores (400 KB).
pub const MAX_ITEM_BYTES: usize = 400 * 1024;

/// A key schema: partition key and optional sort key attribute names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySchema {
    /// Partition (HASH) key attribute.
    pub hash: String,
    /// Sort (RANGE) key attribute.
    pub range: Option<String>,
}

/// Provisioned capacity, echoed back by DescribeTable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Throughput {
    /// Read capacity units.
    pub read: u64,
    /// Write capacity units.
    pub write: u64,
}

/// Which attributes an index holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Projection {
    /// `ALL`, `KEYS_ONLY` or `INCLUDE`.
    pub kind: String,
    /// Extra attributes for `INCLUDE`.
    pub non_key: Vec<String>,
}

/// A local or global secondary index definition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexDef {
    /// Index name.
    pub name: String,
    /// Index key.
    pub key: KeySchema,
    /// Projection.
    pub projection: Projection,
    /// GSI throughput (provisioned tables only).
    pub throughput: Option<Throughput>,
}

/// Time to live settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ttl {
    /// The attribute holding the expiry epoch seconds.
    pub attribute: String,
    /// Whether TTL is enabled.
    pub enabled: bool,
}

/// A table and its items.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(try_from = "TableRepr")]
pub struct Table {
    /// Table name.
    pub name: String,
    /// Stable table id (a UUID), as DescribeTable reports.
    pub table_id: String,
    /// Creation time, epoch seconds.
    pub created: f64,
    /// Primary key.
    pub key: KeySchema,
    /// Attribute definitions in the order given (name → `S`/`N`/`B`).
    pub attribute_definitions: Vec<(String, String)>,
    /// `PROVISIONED` or `PAY_PER_REQUEST`.
    pub billing_mode: String,
    /// Provisioned capacity (provisioned tables).
    pub throughput: Option<Throughput>,
    /// Local secondary indexes.
    pub local_indexes: Vec<IndexDef>,
    /// Global secondary indexes.
    pub global_indexes: Vec<IndexDef>,
    /// TTL settings, once UpdateTimeToLive was called.
    pub ttl: Option<Ttl>,
    /// Tags.
    pub tags: OrdMap<String, String>,
    /// Whether DeleteTable is refused.
    pub deletion_protection: bool,
    /// Items by primary key; serialized as a sequence of items.
    #[serde(serialize_with = "items_as_seq")]
    pub items: PMap<ItemKey, Item>,
    /// Derived: index name → ordered index entries, built from `items` (see
    /// [`DerivedIndexes`]); read through [`Table::index_entries`].
    #[serde(skip)]
    pub indexes: DerivedIndexes,
    /// Derived: sum of item sizes.
    #[serde(skip)]
    pub size_bytes: u64,
}

/// Index name → ordered entries of that index.
pub type IndexMaps = OrdMap<String, PMap<IndexKey, ()>>;

/// The secondary index contents of one table: derived from its items, never serialized.
///
/// Why lazy: building a 1M-entry persistent index one key at a time costs several times
/// what decoding the items does, and a restore should not make every caller wait for
/// indexes that may never be queried. A restored table starts with its indexes *pending*;
/// [`DynamoState::start_index_builds`] builds them on a background thread, and any query or
/// write that needs them first waits for that build (or runs it itself if it got there
/// first: a `OnceLock` guarantees the build happens once). Clones share the cell, so the O(1)
/// clone of a capture stays O(1) and never forces a build.
#[derive(Clone)]
pub struct DerivedIndexes(Arc<OnceLock<IndexMaps>>);

impl DerivedIndexes {
    /// Indexes that are already built.
    pub fn ready(maps: IndexMaps) -> Self {
        Self(Arc::new(OnceLock::from(maps)))
    }

    /// Indexes still to be built from the table's items.
    pub fn pending() -> Self {
        Self(Arc::new(OnceLock::new()))
    }

    /// Whether the contents exist yet.
    pub fn is_ready(&self) -> bool {
        self.0.get().is_some()
    }

    fn get_or_build(&self, build: impl FnOnce() -> IndexMaps) -> &IndexMaps {
        self.0.get_or_init(build)
    }

    /// The built contents for mutation: builds them if pending, then detaches this table's
    /// copy from clones sharing the cell (an O(1) clone of the persistent maps).
    fn make_mut(&mut self, build: impl FnOnce() -> IndexMaps) -> &mut IndexMaps {
        self.0.get_or_init(build);
        // A shared cell is cloned with its (initialized) contents; cells never go back to
        // pending, so the contents are there either way.
        match Arc::make_mut(&mut self.0).get_mut() {
            Some(m) => m,
            None => unreachable!("initialized just above and never reset"),
        }
    }
}

impl Default for DerivedIndexes {
    /// No index entries (a table without items).
    fn default() -> Self {
        Self::ready(OrdMap::new())
    }
}

impl fmt::Debug for DerivedIndexes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.get() {
            Some(m) => f
                .debug_map()
                .entries(m.iter().map(|(k, v)| (k, v.len())))
                .finish(),
            None => f.write_str("<pending>"),
        }
    }
}

/// Builds the entries of every index in `defs` from `items`.
///
/// Each index's entries are collected, sorted once (keys compare as bytes, see
/// [`KeyVal`]) and packed bottom-up into the persistent map: no insert one at a time.
fn build_index_maps<'a>(
    items: &PMap<ItemKey, Item>,
    defs: impl Iterator<Item = &'a IndexDef>,
) -> IndexMaps {
    let mut maps = OrdMap::new();
    for idx in defs {
        maps.insert(idx.name.clone(), build_index(items, idx));
    }
    maps
}

/// The entries of one index, built from the table's items.
fn build_index(items: &PMap<ItemKey, Item>, idx: &IndexDef) -> PMap<IndexKey, ()> {
    PMap::from_vec(sorted_index_entries(items, idx))
}

/// The entries of index `idx` in index order.
///
/// Items are visited in table order, so entries with the same index key come out in
/// table-key order already, and a *stable* sort on the index key alone gives the full
/// order (Rust's stable sort also handles the few distinct values a GSI partition key often
/// has in O(n log distinct)). On two or more cores, the two halves of the table are turned
/// into entries and sorted on two threads, then merged. Why: building and sorting a million
/// 128-byte entries by their whole key was most of an index build.
pub fn sorted_index_entries(items: &PMap<ItemKey, Item>, idx: &IndexDef) -> Vec<(IndexKey, ())> {
    fn by_index_key(a: &(IndexKey, ()), b: &(IndexKey, ())) -> std::cmp::Ordering {
        a.0.hash
            .cmp(&b.0.hash)
            .then_with(|| a.0.range.cmp(&b.0.range))
    }
    fn entries_sorted(part: &[(&ItemKey, &Item)], idx: &IndexDef) -> Vec<(IndexKey, ())> {
        let mut e: Vec<(IndexKey, ())> = part
            .iter()
            .filter_map(|(pk, item)| index_entry(idx, pk, item).map(|e| (e, ())))
            .collect();
        e.sort_by(by_index_key);
        e
    }
    const PARALLEL_FROM: usize = 64 * 1024;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let all: Vec<(&ItemKey, &Item)> = items.iter().collect();
    if all.len() < PARALLEL_FROM || cores < 2 {
        return entries_sorted(&all, idx);
    }
    let (first, second) = all.split_at(all.len() / 2);
    let (left, right) = std::thread::scope(|s| {
        let t = std::thread::Builder::new()
            .name("ddb-index-sort".into())
            .spawn_scoped(s, || entries_sorted(second, idx));
        let left = entries_sorted(first, idx);
        // No thread, or (never expected) a panic in it: that half is done here.
        let right = match t.map(|t| t.join()) {
            Ok(Ok(r)) => r,
            _ => entries_sorted(second, idx),
        };
        (left, right)
    });
    // Merge, the first half first on ties (it holds the lower table keys).
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    while let (Some(l), Some(r)) = (left.peek(), right.peek()) {
        if by_index_key(r, l) == std::cmp::Ordering::Less {
            out.extend(right.next());
        } else {
            out.extend(left.next());
        }
    }
    out.extend(left);
    out.extend(right);
    out
}

/// The entry of `item` in index `idx`, if the item has the index's key attributes
/// (indexes are sparse).
fn index_entry(idx: &IndexDef, pk: &ItemKey, item: &Item) -> Option<IndexKey> {
    let hash = KeyVal::from_attr(item.get(&idx.key.hash)?)?;
    let range = match &idx.key.range {
        Some(r) => Some(KeyVal::from_attr(item.get(r)?)?),
        None => None,
    };
    Some(IndexKey {
        hash,
        range,
        pk: pk.clone(),
    })
}

fn items_as_seq<S: Serializer>(items: &PMap<ItemKey, Item>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(items.values())
}

/// The serialized shape of a [`Table`].
#[derive(Deserialize)]
struct TableRepr {
    name: String,
    table_id: String,
    created: f64,
    key: KeySchema,
    attribute_definitions: Vec<(String, String)>,
    billing_mode: String,
    throughput: Option<Throughput>,
    local_indexes: Vec<IndexDef>,
    global_indexes: Vec<IndexDef>,
    ttl: Option<Ttl>,
    #[serde(default)]
    tags: OrdMap<String, String>,
    #[serde(default)]
    deletion_protection: bool,
    items: Vec<Item>,
}

impl TryFrom<TableRepr> for Table {
    type Error = String;

    fn try_from(r: TableRepr) -> Result<Self, String> {
        let mut t = Table {
            name: r.name,
            table_id: r.table_id,
            created: r.created,
            key: r.key,
            attribute_definitions: r.attribute_definitions,
            billing_mode: r.billing_mode,
            throughput: r.throughput,
            local_indexes: r.local_indexes,
            global_indexes: r.global_indexes,
            ttl: r.ttl,
            tags: r.tags,
            deletion_protection: r.deletion_protection,
            items: PMap::new(),
            indexes: DerivedIndexes::default(),
            size_bytes: 0,
        };
        let mut size = 0u64;
        let mut keyed = Vec::with_capacity(r.items.len());
        for item in r.items {
            let k = t.item_key(item.attrs()).map_err(|e| {
                format!("table {}: item without a valid key: {}", t.name, e.message)
            })?;
            size += item.size() as u64;
            keyed.push((k, item));
        }
        // Items are written in key order, so the map is packed bottom-up; anything else (a
        // bundle from elsewhere) is sorted first, and of two items with one key the later
        // wins, as inserting them in turn would.
        t.items = match PMap::from_sorted_vec(keyed) {
            Ok(m) => m,
            Err(keyed) => {
                let m = PMap::from_vec(keyed);
                size = m.values().map(|i| i.size() as u64).sum();
                m
            }
        };
        t.size_bytes = size;
        if t.all_indexes().next().is_some() && !t.items.is_empty() {
            t.indexes = DerivedIndexes::pending();
        }
        Ok(t)
    }
}

impl Table {
    /// The type (`S`, `N`, `B`) declared for an attribute.
    pub fn attr_type(&self, name: &str) -> Option<&str> {
        self.attribute_definitions
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.as_str())
    }

    /// An index definition by name, and whether it is global.
    pub fn index(&self, name: &str) -> Option<(&IndexDef, bool)> {
        self.global_indexes
            .iter()
            .find(|i| i.name == name)
            .map(|i| (i, true))
            .or_else(|| {
                self.local_indexes
                    .iter()
                    .find(|i| i.name == name)
                    .map(|i| (i, false))
            })
    }

    /// Every index definition.
    pub fn all_indexes(&self) -> impl Iterator<Item = &IndexDef> {
        self.local_indexes.iter().chain(self.global_indexes.iter())
    }

    /// The key of a stored item (no validation messages beyond "missing").
    pub fn item_key(&self, attrs: &BTreeMap<String, AttrValue>) -> Result<ItemKey, DdbError> {
        let kv = |name: &str| -> Result<KeyVal, DdbError> {
            attrs.get(name).and_then(KeyVal::from_attr).ok_or_else(|| {
                DdbError::validation(format!(
                    "One or more parameter values were invalid: Missing the key {name} in the item"
                ))
            })
        };
        Ok(ItemKey {
            hash: kv(&self.key.hash)?,
            range: match &self.key.range {
                Some(r) => Some(kv(r)?),
                None => None,
            },
        })
    }

    fn key_attr_check(
        &self,
        name: &str,
        v: &AttrValue,
        mismatch: impl Fn(&str, &str) -> DdbError,
    ) -> Result<KeyVal, DdbError> {
        let want = self.attr_type(name).unwrap_or("S");
        if v.type_name() != want {
            return Err(mismatch(want, v.type_name()));
        }
        let empty = match v {
            AttrValue::S(s) => s.is_empty(),
            AttrValue::B(b) => b.0.is_empty(),
            _ => false,
        };
        if empty {
            let what = if want == "S" { "string" } else { "binary" };
            return Err(DdbError::validation(format!(
                "One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an empty {what} value. Key: {name}"
            )));
        }
        KeyVal::from_attr(v).ok_or_else(|| mismatch(want, v.type_name()))
    }

    /// Validates a full item for PutItem: key attributes present with the right types and
    /// not empty, index keys well typed, values nested at most 32 levels, size within
    /// 400 KB. Returns its key.
    pub fn validate_item(&self, attrs: &BTreeMap<String, AttrValue>) -> Result<ItemKey, DdbError> {
        let get = |name: &str| -> Result<KeyVal, DdbError> {
            let v = attrs.get(name).ok_or_else(|| {
                DdbError::validation(format!(
                    "One or more parameter values were invalid: Missing the key {name} in the item"
                ))
            })?;
            self.key_attr_check(name, v, |want, got| {
                DdbError::validation(format!(
                    "One or more parameter values were invalid: Type mismatch for key {name} expected: {want} actual: {got}"
                ))
            })
        };
        let key = ItemKey {
            hash: get(&self.key.hash)?,
            range: match &self.key.range {
                Some(r) => Some(get(r)?),
                None => None,
            },
        };
        for idx in self.all_indexes() {
            for name in std::iter::once(&idx.key.hash).chain(idx.key.range.iter()) {
                if let Some(v) = attrs.get(name) {
                    let want = self.attr_type(name).unwrap_or("S");
                    if v.type_name() != want {
                        return Err(DdbError::validation(format!(
                            "One or more parameter values were invalid: Type mismatch for Index Key {name} Expected: {want} Actual: {} IndexName: {}",
                            v.type_name(),
                            idx.name
                        )));
                    }
                    if matches!(v, AttrValue::S(s) if s.is_empty())
                        || matches!(v, AttrValue::B(b) if b.0.is_empty())
                    {
                        return Err(DdbError::validation(format!(
                            "One or more parameter values are not valid. A value specified for a secondary index key is not supported. The AttributeValue for a key attribute cannot contain an empty string value. IndexName: {}, IndexKey: {name}",
                            idx.name
                        )));
                    }
                }
            }
        }
        // An update can nest a value under a path (`SET a.b.c = :deep`) deeper than either
        // was alone; checked before `size`, which recurses.
        if attrs.values().any(|v| v.nesting_levels() > MAX_DEPTH) {
            return Err(nesting_error());
        }
        let size: usize = attrs.iter().map(|(k, v)| k.len() + v.size()).sum();
        if size > MAX_ITEM_BYTES {
            return Err(DdbError::validation(
                "Item size has exceeded the maximum allowed size",
            ));
        }
        Ok(key)
    }

    /// Validates a `Key` parameter: exactly the key attributes, right types, not empty.
    pub fn validate_key(&self, attrs: &BTreeMap<String, AttrValue>) -> Result<ItemKey, DdbError> {
        let schema_err =
            || DdbError::validation("The provided key element does not match the schema");
        let n = 1 + usize::from(self.key.range.is_some());
        if attrs.len() != n {
            return Err(schema_err());
        }
        let get = |name: &str| -> Result<KeyVal, DdbError> {
            let v = attrs.get(name).ok_or_else(schema_err)?;
            self.key_attr_check(name, v, |_, _| schema_err())
        };
        Ok(ItemKey {
            hash: get(&self.key.hash)?,
            range: match &self.key.range {
                Some(r) => Some(get(r)?),
                None => None,
            },
        })
    }

    /// The entry of `item` in index `idx`, if the item has the index's key attributes
    /// (indexes are sparse).
    pub fn index_entry(&self, idx: &IndexDef, pk: &ItemKey, item: &Item) -> Option<IndexKey> {
        index_entry(idx, pk, item)
    }

    /// The entries of index `name` in index order, or `None` for an index without entries
    /// or unknown. Waits for (or runs) the build of a restored table's indexes.
    pub fn index_entries(&self, name: &str) -> Option<&PMap<IndexKey, ()>> {
        self.indexes
            .get_or_build(|| build_index_maps(&self.items, self.all_indexes()))
            .get(name)
    }

    /// Every index's entries, for mutation (builds pending indexes first).
    fn index_maps_mut(&mut self) -> &mut IndexMaps {
        let defs = self.local_indexes.iter().chain(self.global_indexes.iter());
        let items = &self.items;
        self.indexes.make_mut(|| build_index_maps(items, defs))
    }

    /// Removes index `name`'s entries (after its definition was removed).
    pub fn drop_index(&mut self, name: &str) {
        self.index_maps_mut().remove(name);
    }

    /// The entry `item` has in each index that holds it, by index name.
    fn entries_of(&self, pk: &ItemKey, item: &Item) -> Vec<(String, IndexKey)> {
        self.all_indexes()
            .filter_map(|idx| index_entry(idx, pk, item).map(|e| (idx.name.clone(), e)))
            .collect()
    }

    fn unindex(&mut self, pk: &ItemKey, item: &Item) {
        self.size_bytes = self.size_bytes.saturating_sub(item.size() as u64);
        if self.all_indexes().next().is_none() {
            return;
        }
        let entries = self.entries_of(pk, item);
        let maps = self.index_maps_mut();
        for (name, e) in entries {
            if let Some(set) = maps.get_mut(&name) {
                set.remove(&e);
            }
        }
    }

    fn reindex(&mut self, pk: &ItemKey, item: &Item) {
        self.size_bytes += item.size() as u64;
        if self.all_indexes().next().is_none() {
            return;
        }
        let entries = self.entries_of(pk, item);
        let maps = self.index_maps_mut();
        for (name, e) in entries {
            maps.entry(name).or_default().insert(e, ());
        }
    }

    /// Builds pending indexes from the items as they are, before a change to the items.
    fn force_indexes(&mut self) {
        if self.all_indexes().next().is_some() {
            self.index_maps_mut();
        }
    }

    /// Stores an item (already validated), keeping indexes in step; returns the old one.
    pub fn put(&mut self, pk: ItemKey, item: Item) -> Option<Item> {
        self.force_indexes();
        let old = self.items.insert(pk.clone(), item.clone());
        if let Some(o) = &old {
            self.unindex(&pk, o);
        }
        self.reindex(&pk, &item);
        old
    }

    /// Deletes an item, keeping indexes in step; returns it.
    pub fn delete(&mut self, pk: &ItemKey) -> Option<Item> {
        self.force_indexes();
        let old = self.items.remove(pk)?;
        self.unindex(pk, &old);
        Some(old)
    }

    /// Recreates the derived index sets and size from the items, now: what a new table or
    /// a new GSI's backfill needs.
    pub fn rebuild_indexes(&mut self) {
        self.indexes = DerivedIndexes::ready(build_index_maps(&self.items, self.all_indexes()));
        self.size_bytes = self.items.values().map(|i| i.size() as u64).sum();
    }

    /// Builds this table's pending indexes on a background thread, so the first query
    /// after a restore finds them ready (or waits only for the rest of the build).
    /// Nothing happens when they are built already.
    pub fn start_index_build(&self) {
        if self.indexes.is_ready() {
            return;
        }
        let cell = self.indexes.clone();
        let items = self.items.clone();
        let defs: Vec<IndexDef> = self.all_indexes().cloned().collect();
        let table = self.name.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("ddb-index-{table}"))
            .spawn(move || {
                let start = std::time::Instant::now();
                cell.get_or_build(|| build_index_maps(&items, defs.iter()));
                tracing::debug!(table = %table, items = items.len(), elapsed = ?start.elapsed(), "secondary indexes built");
            });
        if let Err(e) = spawned {
            // Still correct: the first query or write builds them instead.
            tracing::warn!(table = %self.name, error = %e, "no thread for the index build; building on first use");
        }
    }

    /// An item's primary key as people read it (`pk=1` or `pk=1,sk=a`), for diffs.
    pub fn key_label(&self, item: &Item) -> String {
        use base64::Engine as _;
        let show = |name: &str| match item.attrs().get(name) {
            Some(AttrValue::S(s) | AttrValue::N(s)) => format!("{name}={s}"),
            Some(AttrValue::B(b)) => format!(
                "{name}={}",
                base64::engine::general_purpose::STANDARD.encode(&b.0)
            ),
            _ => format!("{name}=?"),
        };
        match &self.key.range {
            Some(r) => format!("{},{}", show(&self.key.hash), show(r)),
            None => show(&self.key.hash),
        }
    }

    /// `arn:aws:dynamodb:{region}:{account}:table/{name}`.
    pub fn arn(&self, scope: &cryopod::Scope) -> String {
        format!(
            "arn:aws:dynamodb:{}:{}:table/{}",
            scope.region, scope.account, self.name
        )
    }
}

/// Iterates `map` between two bounds in either direction; empty (rather than a panic) when
/// the bounds cross.
pub fn range_iter<'a, K: Ord, V>(
    map: &'a PMap<K, V>,
    lo: Bound<K>,
    hi: Bound<K>,
    forward: bool,
) -> Box<dyn Iterator<Item = (&'a K, &'a V)> + 'a> {
    let crossed = match (&lo, &hi) {
        (Bound::Included(a), Bound::Included(b)) => a > b,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Excluded(b))
        | (Bound::Excluded(a), Bound::Included(b)) => a >= b,
        _ => false,
    };
    if crossed {
        return Box::new(std::iter::empty());
    }
    let it = map.range(lo.as_ref(), hi.as_ref());
    if forward {
        Box::new(it)
    } else {
        Box::new(it.rev())
    }
}

/// Whether two tables key their items alike (the same attribute names and types).
fn same_primary_key(a: &Table, b: &Table) -> bool {
    let types = |t: &Table| {
        (
            t.attr_type(&t.key.hash).map(str::to_string),
            t.key
                .range
                .as_deref()
                .and_then(|r| t.attr_type(r))
                .map(str::to_string),
        )
    };
    a.key == b.key && types(a) == types(b)
}

/// One scope's tables.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DynamoScope {
    /// Tables by name.
    pub tables: OrdMap<String, Table>,
}

impl Resources for DynamoScope {
    /// `service-merge` works down to items: a table only in the bundle is added; a table on
    /// both sides takes its definition (throughput, indexes, TTL, tags, …) from the bundle and
    /// keeps the union of both sides' items, the bundle's on a primary-key clash. When the two
    /// tables' primary keys differ (other attribute names or types), the running items cannot
    /// be keyed in the bundle's table, and the bundle's table replaces it whole.
    fn merge(&mut self, incoming: Self) {
        for (name, mut t) in incoming.tables {
            if let Some(existing) = self.tables.get(&name)
                && same_primary_key(existing, &t)
            {
                let before = t.items.len();
                for (k, item) in existing.items.iter() {
                    if !t.items.contains_key(k) {
                        t.items.insert(k.clone(), item.clone());
                    }
                }
                if t.items.len() != before {
                    t.size_bytes = t.items.values().map(|i| i.size() as u64).sum();
                    // The bundle's indexes were derived from its items alone.
                    t.indexes = if t.all_indexes().next().is_some() {
                        DerivedIndexes::pending()
                    } else {
                        DerivedIndexes::default()
                    };
                }
            }
            self.tables.insert(name, t);
        }
    }

    /// Tables (their definition) and items (`table/key=value[,sort=value]`). Derived indexes
    /// and sizes are not content: they follow from the items.
    fn units(&self, out: &mut cryopod::units::Units) {
        for (name, t) in &self.tables {
            let mut def = t.clone();
            def.items = PMap::new();
            out.add("table", name.clone(), &def);
            for item in t.items.values() {
                out.add("item", format!("{name}/{}", t.key_label(item)), item);
            }
        }
    }

    fn summary(&self) -> ResourceCounts {
        let mut c = ResourceCounts::new();
        c.insert("table".into(), self.tables.len() as u64);
        c.insert(
            "item".into(),
            self.tables.values().map(|t| t.items.len() as u64).sum(),
        );
        c
    }

    fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }
}

/// The DynamoDB state, version 1.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DynamoState {
    /// Tables by scope.
    pub scopes: Scoped<DynamoScope>,
}

impl ScopedState for DynamoState {
    type Resources = DynamoScope;
    fn scoped(&self) -> &Scoped<DynamoScope> {
        &self.scopes
    }
    fn scoped_mut(&mut self) -> &mut Scoped<DynamoScope> {
        &mut self.scopes
    }
}

cryopod::service_state!(
    DynamoState,
    service = "dynamodb",
    version = 1,
    tag = "dynamodb/1"
);

impl DynamoState {
    /// Starts the background build of every table whose indexes are pending (tables that
    /// came from a bundle; tables taken from the running state have theirs).
    pub fn start_index_builds(&self) {
        for (_, res) in self.scopes.iter() {
            for t in res.tables.values() {
                t.start_index_build();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stable, two-thread index sort gives exactly the order of the full entry key
    /// (index key, then table key), for numbers of mixed signs and precisions too.
    #[test]
    fn index_entries_come_out_in_full_key_order() {
        let n = 70_000usize; // above the parallel threshold
        let items: PMap<ItemKey, Item> = (0..n)
            .map(|i| {
                let sk = format!("{}{}.{}", if i % 3 == 0 { "-" } else { "" }, i % 11, i % 5);
                let sk = crate::number::canonicalize(&sk).expect("number");
                let mut m = BTreeMap::new();
                m.insert("pk".to_string(), AttrValue::S(format!("p{}", i / 4)));
                m.insert("sk".to_string(), AttrValue::N(i.to_string()));
                if i % 10 != 0 {
                    // sparse: every tenth item is not in the index
                    m.insert("g".to_string(), AttrValue::S(format!("g{}", i % 7)));
                }
                m.insert("r".to_string(), AttrValue::N(sk));
                let item = Item::new(m);
                let key = ItemKey {
                    hash: KeyVal::from_attr(&item.attrs()["pk"]).expect("key"),
                    range: KeyVal::from_attr(&item.attrs()["sk"]),
                };
                (key, item)
            })
            .collect();
        let idx = IndexDef {
            name: "i".into(),
            key: KeySchema {
                hash: "g".into(),
                range: Some("r".into()),
            },
            projection: Projection {
                kind: "ALL".into(),
                non_key: vec![],
            },
            throughput: None,
        };
        let got = sorted_index_entries(&items, &idx);
        let mut want: Vec<(IndexKey, ())> = items
            .iter()
            .filter_map(|(pk, it)| index_entry(&idx, pk, it).map(|e| (e, ())))
            .collect();
        want.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(got.len(), n - n / 10);
        assert!(got.iter().map(|e| &e.0).eq(want.iter().map(|e| &e.0)));
    }
}
