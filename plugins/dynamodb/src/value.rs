//! Attribute values, items and keys, with their JSON wire form and their total order.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::error::DdbError;
use crate::number;

/// Byte strings (`B`, `BS`): serialized as MessagePack binary rather than an array of
/// integers, which would triple their size in a bundle.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Bin(pub Vec<u8>);

impl Serialize for Bin {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bin {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Bin;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Bin, E> {
                Ok(Bin(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Bin, E> {
                Ok(Bin(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Bin, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = a.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(Bin(out))
            }
        }
        d.deserialize_bytes(V)
    }
}

/// One DynamoDB attribute value. Numbers hold their canonical decimal string
/// ([`number::canonicalize`]); sets keep the order the client sent (DynamoDB sets are
/// unordered, so any order is correct, and keeping it makes round trips byte-exact).
#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttrValue {
    /// String.
    S(String),
    /// Number, canonical decimal string.
    N(String),
    /// Binary.
    B(Bin),
    /// Boolean.
    BOOL(bool),
    /// Null (always `true` on the wire).
    NULL(bool),
    /// List.
    L(Vec<AttrValue>),
    /// Map.
    M(BTreeMap<String, AttrValue>),
    /// String set.
    SS(Vec<String>),
    /// Number set.
    NS(Vec<String>),
    /// Binary set.
    BS(Vec<Bin>),
}

/// Deepest nesting of an attribute value DynamoDB accepts ("up to 32 levels"), counting a
/// top-level attribute's value as level 1: 31 maps or lists wrapped around a scalar is the
/// most. Besides matching AWS, it bounds every recursion over a stored value (size, JSON,
/// comparison, drop).
pub const MAX_DEPTH: usize = 32;

/// AWS's message for a value nested deeper than [`MAX_DEPTH`].
pub const NESTING_MESSAGE: &str = "Nesting Levels have exceeded supported limits: Attributes in the item have nested levels beyond supported limit";

/// The error for a value nested deeper than [`MAX_DEPTH`].
pub fn nesting_error() -> DdbError {
    DdbError::validation(NESTING_MESSAGE)
}

impl AttrValue {
    /// The type descriptor (`"S"`, `"N"`, …), used in messages and `attribute_type`.
    pub fn type_name(&self) -> &'static str {
        match self {
            AttrValue::S(_) => "S",
            AttrValue::N(_) => "N",
            AttrValue::B(_) => "B",
            AttrValue::BOOL(_) => "BOOL",
            AttrValue::NULL(_) => "NULL",
            AttrValue::L(_) => "L",
            AttrValue::M(_) => "M",
            AttrValue::SS(_) => "SS",
            AttrValue::NS(_) => "NS",
            AttrValue::BS(_) => "BS",
        }
    }

    /// How many levels deep the value reaches (a scalar is 1, a list of scalars 2). Walks
    /// with an explicit stack, not recursion, so that it is safe on any value, however it
    /// was built: it is what checks values before the recursive code sees them.
    pub fn nesting_levels(&self) -> usize {
        let mut deepest = 0;
        let mut todo = vec![(self, 1usize)];
        while let Some((v, level)) = todo.pop() {
            deepest = deepest.max(level);
            match v {
                AttrValue::L(l) => todo.extend(l.iter().map(|e| (e, level + 1))),
                AttrValue::M(m) => todo.extend(m.values().map(|e| (e, level + 1))),
                _ => {}
            }
        }
        deepest
    }

    /// Size as DynamoDB counts it toward the 400 KB item limit.
    pub fn size(&self) -> usize {
        match self {
            AttrValue::S(s) => s.len(),
            AttrValue::N(n) => number::stored_size(n),
            AttrValue::B(b) => b.0.len(),
            AttrValue::BOOL(_) | AttrValue::NULL(_) => 1,
            AttrValue::L(l) => 3 + l.iter().map(|v| 1 + v.size()).sum::<usize>(),
            AttrValue::M(m) => 3 + m.iter().map(|(k, v)| 1 + k.len() + v.size()).sum::<usize>(),
            AttrValue::SS(s) => s.iter().map(String::len).sum(),
            AttrValue::NS(s) => s.iter().map(|n| number::stored_size(n)).sum(),
            AttrValue::BS(s) => s.iter().map(|b| b.0.len()).sum(),
        }
    }

    /// Parses the wire form `{"S": "x"}` with DynamoDB's validation.
    pub fn from_json(v: &Value) -> Result<AttrValue, DdbError> {
        Self::from_json_depth(v, 0)
    }

    /// `depth` is the number of lists and maps around `v` (0 for a top-level value).
    fn from_json_depth(v: &Value, depth: usize) -> Result<AttrValue, DdbError> {
        if depth >= MAX_DEPTH {
            return Err(nesting_error());
        }
        let obj = v.as_object().ok_or_else(|| {
            DdbError::serialization("Start of structure or map found where not expected")
        })?;
        let mut set = obj.iter().filter(|(_, v)| !v.is_null());
        let (Some((ty, inner)), None) = (set.next(), set.next()) else {
            return Err(DdbError::validation(
                "Supplied AttributeValue has more than one datatypes set, must contain exactly one of the supported datatypes",
            ));
        };
        let bad = || DdbError::serialization(format!("Unexpected value type in payload for {ty}"));
        let b64 = |s: &Value| -> Result<Bin, DdbError> {
            let s = s.as_str().ok_or_else(bad)?;
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map(Bin)
                .map_err(|_| DdbError::serialization("Base64 encoded length is invalid"))
        };
        let num = |s: &Value| -> Result<String, DdbError> {
            let s = s.as_str().ok_or_else(bad)?;
            number::canonicalize(s).map_err(|e| DdbError::validation(e.to_string()))
        };
        Ok(match ty.as_str() {
            "S" => AttrValue::S(inner.as_str().ok_or_else(bad)?.to_string()),
            "N" => AttrValue::N(num(inner)?),
            "B" => AttrValue::B(b64(inner)?),
            "BOOL" => AttrValue::BOOL(inner.as_bool().ok_or_else(bad)?),
            "NULL" => {
                if inner.as_bool() != Some(true) {
                    return Err(DdbError::validation(
                        "One or more parameter values were invalid: Null attribute value types must have the value of true",
                    ));
                }
                AttrValue::NULL(true)
            }
            "L" => AttrValue::L(
                inner
                    .as_array()
                    .ok_or_else(bad)?
                    .iter()
                    .map(|e| Self::from_json_depth(e, depth + 1))
                    .collect::<Result<_, _>>()?,
            ),
            "M" => AttrValue::M(
                inner
                    .as_object()
                    .ok_or_else(bad)?
                    .iter()
                    .map(|(k, e)| Ok((k.clone(), Self::from_json_depth(e, depth + 1)?)))
                    .collect::<Result<_, DdbError>>()?,
            ),
            "SS" | "NS" | "BS" => {
                let arr = inner.as_array().ok_or_else(bad)?;
                if arr.is_empty() {
                    let kind = match ty.as_str() {
                        "SS" => "string",
                        "NS" => "number",
                        _ => "binary",
                    };
                    return Err(DdbError::validation(format!(
                        "One or more parameter values were invalid: An {kind} set  may not be empty"
                    )));
                }
                let dup = |shown: Vec<String>| {
                    DdbError::validation(format!(
                        "One or more parameter values were invalid: Input collection [{}] contains duplicates.",
                        shown.join(", ")
                    ))
                };
                match ty.as_str() {
                    "SS" => {
                        let v: Vec<String> = arr
                            .iter()
                            .map(|e| e.as_str().map(str::to_string).ok_or_else(bad))
                            .collect::<Result<_, _>>()?;
                        if has_dup(&v) {
                            return Err(dup(v));
                        }
                        AttrValue::SS(v)
                    }
                    "NS" => {
                        let v: Vec<String> = arr.iter().map(num).collect::<Result<_, _>>()?;
                        if has_dup(&v) {
                            return Err(dup(v));
                        }
                        AttrValue::NS(v)
                    }
                    _ => {
                        let v: Vec<Bin> = arr.iter().map(b64).collect::<Result<_, _>>()?;
                        if has_dup(&v) {
                            return Err(dup(v.iter().map(|b| format!("{:?}", b.0)).collect()));
                        }
                        AttrValue::BS(v)
                    }
                }
            }
            other => {
                return Err(DdbError::serialization(format!(
                    "Unknown AttributeValue type {other}"
                )));
            }
        })
    }

    /// The wire form.
    pub fn to_json(&self) -> Value {
        let b64 = |b: &Bin| Value::String(base64::engine::general_purpose::STANDARD.encode(&b.0));
        let mut m = Map::with_capacity(1);
        let (k, v) = match self {
            AttrValue::S(s) => ("S", Value::String(s.clone())),
            AttrValue::N(n) => ("N", Value::String(n.clone())),
            AttrValue::B(b) => ("B", b64(b)),
            AttrValue::BOOL(b) => ("BOOL", Value::Bool(*b)),
            AttrValue::NULL(b) => ("NULL", Value::Bool(*b)),
            AttrValue::L(l) => (
                "L",
                Value::Array(l.iter().map(AttrValue::to_json).collect()),
            ),
            AttrValue::M(mm) => (
                "M",
                Value::Object(mm.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
            ),
            AttrValue::SS(s) => (
                "SS",
                Value::Array(s.iter().cloned().map(Value::String).collect()),
            ),
            AttrValue::NS(s) => (
                "NS",
                Value::Array(s.iter().cloned().map(Value::String).collect()),
            ),
            AttrValue::BS(s) => ("BS", Value::Array(s.iter().map(b64).collect())),
        };
        m.insert(k.to_string(), v);
        Value::Object(m)
    }

    /// DynamoDB's equality: numbers compare numerically, sets ignore order.
    pub fn dyn_eq(&self, other: &AttrValue) -> bool {
        match (self, other) {
            (AttrValue::N(a), AttrValue::N(b)) => number::cmp_canonical(a, b) == Ordering::Equal,
            (AttrValue::SS(a), AttrValue::SS(b)) => same_set(a, b),
            (AttrValue::NS(a), AttrValue::NS(b)) => same_set(a, b),
            (AttrValue::BS(a), AttrValue::BS(b)) => same_set(a, b),
            (AttrValue::L(a), AttrValue::L(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.dyn_eq(y))
            }
            (AttrValue::M(a), AttrValue::M(b)) => {
                a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| v.dyn_eq(w)))
            }
            _ => self == other,
        }
    }

    /// Ordering for `<`, `<=`, `>`, `>=`, `BETWEEN`: defined only between two S, two N or
    /// two B values.
    pub fn dyn_cmp(&self, other: &AttrValue) -> Option<Ordering> {
        match (self, other) {
            (AttrValue::S(a), AttrValue::S(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
            (AttrValue::N(a), AttrValue::N(b)) => Some(number::cmp_canonical(a, b)),
            (AttrValue::B(a), AttrValue::B(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }
}

fn has_dup<T: Ord + Clone>(v: &[T]) -> bool {
    let mut s = v.to_vec();
    s.sort();
    s.windows(2).any(|w| w[0] == w[1])
}

fn same_set<T: Ord + Clone>(a: &[T], b: &[T]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort();
    b.sort();
    a == b
}

/// An item: attribute name → value. Shared behind an `Arc` so that the path copying of the
/// persistent item map clones pointers, not attribute trees.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Item(pub Arc<BTreeMap<String, AttrValue>>);

impl Item {
    /// Wraps attributes.
    pub fn new(attrs: BTreeMap<String, AttrValue>) -> Self {
        Item(Arc::new(attrs))
    }

    /// One attribute.
    pub fn get(&self, name: &str) -> Option<&AttrValue> {
        self.0.get(name)
    }

    /// The attributes.
    pub fn attrs(&self) -> &BTreeMap<String, AttrValue> {
        &self.0
    }

    /// Mutable attributes (copy on write).
    pub fn attrs_mut(&mut self) -> &mut BTreeMap<String, AttrValue> {
        Arc::make_mut(&mut self.0)
    }

    /// Size toward the 400 KB limit: names plus values.
    pub fn size(&self) -> usize {
        self.0.iter().map(|(k, v)| k.len() + v.size()).sum()
    }

    /// The wire form.
    pub fn to_json(&self) -> Value {
        attrs_to_json(&self.0)
    }

    /// Parses an `AttributeMap`.
    pub fn from_json(v: &Value) -> Result<Item, DdbError> {
        Ok(Item::new(attrs_from_json(v)?))
    }
}

/// `AttributeMap` wire form of a map of attributes.
pub fn attrs_to_json(m: &BTreeMap<String, AttrValue>) -> Value {
    Value::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
}

/// Parses an `AttributeMap`.
pub fn attrs_from_json(v: &Value) -> Result<BTreeMap<String, AttrValue>, DdbError> {
    let obj = v
        .as_object()
        .ok_or_else(|| DdbError::serialization("Expected an AttributeMap object"))?;
    obj.iter()
        .map(|(k, v)| Ok((k.clone(), AttrValue::from_json(v)?)))
        .collect()
}

impl Serialize for Item {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Item::new(BTreeMap::deserialize(d)?))
    }
}

/// A key attribute value, totally ordered as DynamoDB orders sort keys: strings and
/// binaries bytewise, numbers numerically. [`KeyVal::MIN`]/[`KeyVal::MAX`] are bounds for
/// range scans and never stored.
///
/// Held as one order-preserving byte string (a type byte, then the string or binary bytes,
/// or [`number::sort_key_into`]'s encoding of a number), so that comparing two keys is one
/// `memcmp`, and inline up to 30 bytes, so that keying a million restored items or index
/// entries allocates nothing for typical keys. Why: building a table's item map and its
/// indexes after a restore compares and copies keys millions of times; owned `String`s
/// compared as decimals made that several times the cost of decoding the items.
#[derive(Clone)]
pub struct KeyVal(KeyBuf);

/// Bytes of at most [`INLINE`] stored in place, longer ones shared.
#[derive(Clone)]
enum KeyBuf {
    Inline { len: u8, buf: [u8; INLINE] },
    Heap(Arc<[u8]>),
}

const INLINE: usize = 30;
const TAG_MIN: u8 = 0;
const TAG_S: u8 = 1;
const TAG_N: u8 = 2;
const TAG_B: u8 = 3;
const TAG_MAX: u8 = 4;

/// Fills a key buffer in place, spilling to the heap past [`INLINE`] bytes.
struct KeyBuilder {
    len: usize,
    buf: [u8; INLINE],
    heap: Vec<u8>,
}

impl KeyBuilder {
    fn new(tag: u8) -> Self {
        let mut buf = [0; INLINE];
        buf[0] = tag;
        KeyBuilder {
            len: 1,
            buf,
            heap: Vec::new(),
        }
    }

    fn finish(self) -> KeyVal {
        if self.heap.is_empty() {
            KeyVal(KeyBuf::Inline {
                len: self.len as u8,
                buf: self.buf,
            })
        } else {
            KeyVal(KeyBuf::Heap(self.heap.into()))
        }
    }
}

impl Extend<u8> for KeyBuilder {
    fn extend<T: IntoIterator<Item = u8>>(&mut self, iter: T) {
        for b in iter {
            if !self.heap.is_empty() {
                self.heap.push(b);
            } else if self.len < INLINE {
                self.buf[self.len] = b;
                self.len += 1;
            } else {
                self.heap.reserve(INLINE * 2);
                self.heap.extend_from_slice(&self.buf[..self.len]);
                self.heap.push(b);
            }
        }
    }
}

impl KeyVal {
    /// Below every value.
    pub const MIN: KeyVal = KeyVal(KeyBuf::Inline {
        len: 1,
        buf: [TAG_MIN; INLINE],
    });
    /// Above every value.
    pub const MAX: KeyVal = KeyVal(KeyBuf::Inline {
        len: 1,
        buf: [TAG_MAX; INLINE],
    });

    fn tagged(tag: u8, bytes: &[u8]) -> KeyVal {
        if bytes.len() < INLINE {
            let mut buf = [0; INLINE];
            buf[0] = tag;
            buf[1..=bytes.len()].copy_from_slice(bytes);
            KeyVal(KeyBuf::Inline {
                len: (bytes.len() + 1) as u8,
                buf,
            })
        } else {
            let mut v = Vec::with_capacity(bytes.len() + 1);
            v.push(tag);
            v.extend_from_slice(bytes);
            KeyVal(KeyBuf::Heap(v.into()))
        }
    }

    /// The order-preserving bytes (type byte first).
    fn bytes(&self) -> &[u8] {
        match &self.0 {
            KeyBuf::Inline { len, buf } => &buf[..usize::from(*len)],
            KeyBuf::Heap(b) => b,
        }
    }

    /// A string key.
    pub fn string(s: &str) -> KeyVal {
        Self::tagged(TAG_S, s.as_bytes())
    }

    /// A binary key.
    pub fn binary(b: &[u8]) -> KeyVal {
        Self::tagged(TAG_B, b)
    }

    /// A number key from a number string (canonical ideally; any DynamoDB number syntax is
    /// accepted); `None` if it is not a number.
    pub fn number(n: &str) -> Option<KeyVal> {
        let mut k = KeyBuilder::new(TAG_N);
        number::sort_key_into(n, &mut k).then(|| k.finish())
    }

    /// The key value of an attribute, if its type can be a key.
    pub fn from_attr(v: &AttrValue) -> Option<KeyVal> {
        match v {
            AttrValue::S(s) => Some(Self::string(s)),
            AttrValue::N(n) => Self::number(n),
            AttrValue::B(b) => Some(Self::binary(&b.0)),
            _ => None,
        }
    }

    /// Back to an attribute value (for `LastEvaluatedKey`); `None` for the bounds.
    pub fn to_attr(&self) -> Option<AttrValue> {
        let (tag, rest) = self.bytes().split_first()?;
        match *tag {
            TAG_S => Some(AttrValue::S(String::from_utf8_lossy(rest).into_owned())),
            TAG_N => number::from_sort_key(rest).map(AttrValue::N),
            TAG_B => Some(AttrValue::B(Bin(rest.to_vec()))),
            _ => None,
        }
    }

    /// Bytes for segment hashing: a string's or binary's bytes, a number's canonical string.
    pub fn hash_bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        let Some((tag, rest)) = self.bytes().split_first() else {
            return std::borrow::Cow::Borrowed(&[]);
        };
        match *tag {
            TAG_S | TAG_B => std::borrow::Cow::Borrowed(rest),
            TAG_N => std::borrow::Cow::Owned(
                number::from_sort_key(rest)
                    .map(String::into_bytes)
                    .unwrap_or_default(),
            ),
            _ => std::borrow::Cow::Borrowed(&[]),
        }
    }
}

impl PartialEq for KeyVal {
    fn eq(&self, other: &Self) -> bool {
        self.bytes() == other.bytes()
    }
}

impl Eq for KeyVal {}

impl std::hash::Hash for KeyVal {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.bytes().hash(state);
    }
}

impl Ord for KeyVal {
    fn cmp(&self, other: &Self) -> Ordering {
        self.bytes().cmp(other.bytes())
    }
}

impl PartialOrd for KeyVal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for KeyVal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.bytes().first() {
            Some(&TAG_MIN) => f.write_str("Min"),
            Some(&TAG_MAX) => f.write_str("Max"),
            _ => match self.to_attr() {
                Some(AttrValue::S(s)) => f.debug_tuple("S").field(&s).finish(),
                Some(AttrValue::N(n)) => f.debug_tuple("N").field(&n).finish(),
                Some(AttrValue::B(b)) => f.debug_tuple("B").field(&b.0).finish(),
                _ => f.debug_tuple("Invalid").field(&self.bytes()).finish(),
            },
        }
    }
}

/// A table's primary key: the map key of its items, ordered by partition key then sort key,
/// so a Query is a range scan.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ItemKey {
    /// Partition key value.
    pub hash: KeyVal,
    /// Sort key value, `None` for tables without one.
    pub range: Option<KeyVal>,
}

impl ItemKey {
    /// Below every key.
    pub const MIN: ItemKey = ItemKey {
        hash: KeyVal::MIN,
        range: None,
    };
    /// Above every key.
    pub const MAX: ItemKey = ItemKey {
        hash: KeyVal::MAX,
        range: None,
    };
}

/// An index entry: the index's key, then the table key that makes it unique.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IndexKey {
    /// Index partition key value.
    pub hash: KeyVal,
    /// Index sort key value.
    pub range: Option<KeyVal>,
    /// The item's table key.
    pub pk: ItemKey,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_type_round_trips_through_json() {
        let v = json!({
            "s": {"S": "x"}, "n": {"N": "1E+38"}, "b": {"B": "AAEC"}, "t": {"BOOL": true},
            "z": {"NULL": true}, "l": {"L": [{"S": "a"}, {"N": "0.10"}]},
            "m": {"M": {"k": {"SS": ["a", "b"]}}}, "ns": {"NS": ["1", "2.50"]}, "bs": {"BS": ["AA=="]}
        });
        let item = Item::from_json(&v).unwrap();
        let back = item.to_json();
        assert_eq!(back["n"]["N"], "100000000000000000000000000000000000000");
        assert_eq!(back["l"]["L"][1]["N"], "0.1");
        assert_eq!(back["ns"]["NS"][1], "2.5");
        assert_eq!(back["b"]["B"], "AAEC");
        assert_eq!(Item::from_json(&back).unwrap(), item);
    }

    #[test]
    fn invalid_values_are_refused() {
        assert!(AttrValue::from_json(&json!({"SS": []})).is_err());
        assert!(AttrValue::from_json(&json!({"SS": ["a", "a"]})).is_err());
        assert!(AttrValue::from_json(&json!({"NS": ["1", "1.0"]})).is_err());
        assert!(AttrValue::from_json(&json!({"S": "a", "N": "1"})).is_err());
        assert!(AttrValue::from_json(&json!({"N": "x"})).is_err());
        assert!(AttrValue::from_json(&json!({"NULL": false})).is_err());
    }

    #[test]
    fn key_order_is_numeric_for_numbers_and_bytewise_for_strings() {
        let n = |s: &str| KeyVal::number(&number::canonicalize(s).unwrap()).unwrap();
        assert!(n("9") < n("10"));
        assert!(n("-10") < n("-9"));
        assert!(KeyVal::string("B") < KeyVal::string("a"));
        assert!(KeyVal::MIN < n("-1E+125") && n("1E+125") < KeyVal::MAX);
        assert!(KeyVal::MIN < KeyVal::string("") && KeyVal::binary(&[0xff; 40]) < KeyVal::MAX);
        // Types order S < N < B, as before (only one type per key attribute is stored).
        assert!(KeyVal::string("zzz") < n("-1E+125") && n("1E+125") < KeyVal::binary(&[]));
    }

    /// The sortable number keys order exactly as the decimal comparison does, round-trip
    /// to the canonical string, and give equal bytes for equal numbers.
    #[test]
    fn number_keys_order_numerically_at_the_edges() {
        let raw = [
            "-9.9999999999999999999999999999999999999E+125",
            "-1E+38",
            "-99999999999999999999999999999999999999",
            "-12345678901234567890123456789012345678",
            "-1000",
            "-999.9",
            "-100.25",
            "-100.2",
            "-10",
            "-1.5",
            "-1",
            "-0.15",
            "-0.1",
            "-0.0015",
            "-1E-129",
            "-1E-130",
            "0",
            "1E-130",
            "1.5E-130",
            "1E-129",
            "0.0015",
            "0.01",
            "0.1",
            "0.105",
            "0.15",
            "1",
            "1.000000000000000000000000000000000001",
            "1.5",
            "9",
            "10",
            "10.5",
            "100.2",
            "100.25",
            "1200",
            "12345678901234567890123456789012345678",
            "99999999999999999999999999999999999999",
            "1E+38",
            "1.0000000000000000000000000000000000001E+38",
            "9.9999999999999999999999999999999999999E+125",
        ];
        let canon: Vec<String> = raw
            .iter()
            .map(|s| number::canonicalize(s).unwrap())
            .collect();
        for w in canon.windows(2) {
            assert_eq!(
                number::cmp_canonical(&w[0], &w[1]),
                Ordering::Less,
                "{} < {}",
                w[0],
                w[1]
            );
        }
        let keys: Vec<KeyVal> = canon.iter().map(|c| KeyVal::number(c).unwrap()).collect();
        for (i, a) in keys.iter().enumerate() {
            assert_eq!(a.to_attr(), Some(AttrValue::N(canon[i].clone())));
            assert_eq!(&*a.hash_bytes(), canon[i].as_bytes());
            for (j, b) in keys.iter().enumerate() {
                assert_eq!(a.cmp(b), i.cmp(&j), "{} vs {}", canon[i], canon[j]);
                assert_eq!(
                    a.cmp(b),
                    number::cmp_canonical(&canon[i], &canon[j]),
                    "{} vs {}",
                    canon[i],
                    canon[j]
                );
            }
        }
        // Every syntax of one number gives one key.
        for same in [
            ["1E+38", "100000000000000000000000000000000000000", "1.0e38"],
            ["-0.10", "-.1", "-1e-1"],
        ] {
            let k: Vec<KeyVal> = same.iter().map(|s| KeyVal::number(s).unwrap()).collect();
            assert!(k.iter().all(|x| *x == k[0]), "{same:?}");
        }
        assert_eq!(KeyVal::number("-0"), KeyVal::number("0"));
        assert!(KeyVal::number("x").is_none());
        // Every valid number is stored inline (38 digits pack into 19 bytes).
        assert!(keys.iter().all(|k| matches!(k.0, KeyBuf::Inline { .. })));
    }

    #[test]
    fn long_string_keys_spill_and_still_order() {
        let long_a = "a".repeat(100);
        let long_b = format!("{}b", "a".repeat(99));
        let (a, b) = (KeyVal::string(&long_a), KeyVal::string(&long_b));
        assert!(a < b && KeyVal::string("a") < a);
        assert_eq!(a.to_attr(), Some(AttrValue::S(long_a.clone())));
        assert_eq!(a.clone(), a);
        let exact = "x".repeat(INLINE - 1);
        assert!(matches!(KeyVal::string(&exact).0, KeyBuf::Inline { .. }));
        assert!(matches!(
            KeyVal::string(&format!("{exact}x")).0,
            KeyBuf::Heap(_)
        ));
        assert_eq!(
            KeyVal::binary(&[1, 2, 3]).to_attr(),
            Some(AttrValue::B(Bin(vec![1, 2, 3])))
        );
    }

    #[test]
    fn binary_is_encoded_as_msgpack_bin() {
        let item = Item::new([("b".to_string(), AttrValue::B(Bin(vec![1, 2, 3])))].into());
        let bytes = rmp_serde::to_vec_named(&item).unwrap();
        assert!(bytes.windows(2).any(|w| w == [0xc4, 3]));
        let back: Item = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, item);
    }
}
