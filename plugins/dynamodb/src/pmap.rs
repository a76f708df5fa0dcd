//! A persistent (copy-on-write) B+tree map that can be built bottom-up from sorted input.
//!
//! Why not `imbl::OrdMap`: `imbl` 6 builds a map one insert at a time (each a descent from
//! the root, comparisons and node splits), and a restore inserts a million items and a
//! million entries per secondary index. Restored items arrive in key order, and index
//! entries can be sorted once, so this map packs sorted input into full leaves and builds
//! the levels above them in one pass. It keeps what the state needs from `imbl`: an O(1)
//! `clone` (the root is an `Arc`; nodes are shared until written, then copied along the
//! path), so a capture under the barrier stays O(1), plus ordered iteration and ranges in
//! both directions.
//!
//! Removal drops empty nodes but does not merge under-full ones: the height never grows
//! from removals, so lookups stay logarithmic in the largest size the map had.

use std::cmp::Ordering;
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

/// Entries per leaf and children per branch at most.
const CAP: usize = 64;

#[derive(Clone)]
enum Node<K, V> {
    Leaf(Vec<(K, V)>),
    /// `keys[i]` separates `children[i]` and `children[i + 1]`: every key in `children[i]`
    /// is below it, every key in `children[i + 1]` at or above it.
    Branch {
        keys: Vec<K>,
        children: Vec<Arc<Node<K, V>>>,
    },
}

impl<K, V> Node<K, V> {
    fn is_empty(&self) -> bool {
        match self {
            Node::Leaf(e) => e.is_empty(),
            Node::Branch { children, .. } => children.is_empty(),
        }
    }
}

/// A persistent ordered map (see the module docs).
pub struct PMap<K, V> {
    root: Option<Arc<Node<K, V>>>,
    len: usize,
}

impl<K, V> Clone for PMap<K, V> {
    /// O(1): shares every node.
    fn clone(&self) -> Self {
        PMap {
            root: self.root.clone(),
            len: self.len,
        }
    }
}

impl<K, V> Default for PMap<K, V> {
    fn default() -> Self {
        PMap { root: None, len: 0 }
    }
}

impl<K: fmt::Debug + Ord, V: fmt::Debug> fmt::Debug for PMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Splits `n` entries into chunks of at most [`CAP`], as even as possible.
fn chunk_sizes(n: usize) -> impl Iterator<Item = usize> {
    let chunks = n.div_ceil(CAP).max(1);
    let (base, extra) = (n / chunks, n % chunks);
    (0..chunks).map(move |i| base + usize::from(i < extra))
}

impl<K: Ord, V> PMap<K, V> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Builds the map from entries in strictly increasing key order, bottom-up: O(n), no
    /// comparisons. Returns the entries back if they are not strictly increasing.
    pub fn from_sorted_vec(entries: Vec<(K, V)>) -> Result<Self, Vec<(K, V)>>
    where
        K: Clone,
    {
        if entries.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(entries);
        }
        Ok(Self::build_sorted(entries))
    }

    /// Builds the map from entries in any order; for equal keys the last one wins.
    pub fn from_vec(mut entries: Vec<(K, V)>) -> Self
    where
        K: Clone,
    {
        if entries.windows(2).any(|w| w[0].0 >= w[1].0) {
            // Stable, so the last of equal keys stays last; keep that one.
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            let mut out: Vec<(K, V)> = Vec::with_capacity(entries.len());
            for e in entries {
                match out.last_mut() {
                    Some(last) if last.0 == e.0 => *last = e,
                    _ => out.push(e),
                }
            }
            entries = out;
        }
        Self::build_sorted(entries)
    }

    fn build_sorted(entries: Vec<(K, V)>) -> Self
    where
        K: Clone,
    {
        let len = entries.len();
        if len == 0 {
            return Self::default();
        }
        let mut level: Vec<(K, Arc<Node<K, V>>)> = Vec::with_capacity(len.div_ceil(CAP));
        let mut it = entries.into_iter();
        for size in chunk_sizes(len) {
            let leaf: Vec<(K, V)> = it.by_ref().take(size).collect();
            let first = leaf[0].0.clone();
            level.push((first, Arc::new(Node::Leaf(leaf))));
        }
        while level.len() > 1 {
            let n = level.len();
            let mut up = Vec::with_capacity(n.div_ceil(CAP));
            let mut it = level.into_iter();
            for size in chunk_sizes(n) {
                let mut keys = Vec::with_capacity(size.saturating_sub(1));
                let mut children = Vec::with_capacity(size);
                let mut first = None;
                for (k, child) in it.by_ref().take(size) {
                    if first.is_none() {
                        first = Some(k);
                    } else {
                        keys.push(k);
                    }
                    children.push(child);
                }
                if let Some(first) = first {
                    up.push((first, Arc::new(Node::Branch { keys, children })));
                }
            }
            level = up;
        }
        PMap {
            root: level.pop().map(|(_, n)| n),
            len,
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &K) -> Option<&V> {
        let mut node = self.root.as_deref()?;
        loop {
            match node {
                Node::Branch { keys, children } => {
                    node = &children[keys.partition_point(|s| s <= key)];
                }
                Node::Leaf(e) => {
                    return e
                        .binary_search_by(|(k, _)| k.cmp(key))
                        .ok()
                        .map(|i| &e[i].1);
                }
            }
        }
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    /// Entries in key order.
    pub fn iter(&self) -> Range<'_, K, V> {
        self.range(Bound::Unbounded, Bound::Unbounded)
    }

    /// Keys in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &K> {
        self.iter().map(|(k, _)| k)
    }

    /// Values in key order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }

    /// Entries between two bounds, in either direction (`.rev()`); empty when the bounds
    /// cross.
    pub fn range(&self, lo: Bound<&K>, hi: Bound<&K>) -> Range<'_, K, V> {
        let empty = Range {
            front: None,
            back: None,
        };
        let Some(root) = self.root.as_deref() else {
            return empty;
        };
        let front = Cursor::seek_lo(root, lo);
        let back = Cursor::seek_hi(root, hi);
        match (front, back) {
            (Some(f), Some(b)) if f.key() <= b.key() => Range {
                front: Some(f),
                back: Some(b),
            },
            _ => empty,
        }
    }
}

impl<K: Ord + Clone, V: Clone> PMap<K, V> {
    /// Inserts or replaces; returns the previous value.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let Some(root) = self.root.as_mut() else {
            self.root = Some(Arc::new(Node::Leaf(vec![(key, value)])));
            self.len = 1;
            return None;
        };
        let (old, split) = insert_rec(root, key, value);
        if let Some((sep, right)) = split {
            let left = root.clone();
            *root = Arc::new(Node::Branch {
                keys: vec![sep],
                children: vec![left, right],
            });
        }
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes `key`; returns its value.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        // Look first, so that removing an absent key copies no shared node.
        if !self.contains_key(key) {
            return None;
        }
        let root = self.root.as_mut()?;
        let old = remove_rec(root, key);
        if old.is_some() {
            self.len -= 1;
        }
        // Collapse an empty root or a root branch left with one child.
        loop {
            let next = match self.root.as_deref() {
                Some(n) if n.is_empty() => None,
                Some(Node::Branch { children, .. }) if children.len() == 1 => {
                    Some(children[0].clone())
                }
                _ => break,
            };
            self.root = next;
        }
        old
    }
}

type Split<K, V> = Option<(K, Arc<Node<K, V>>)>;

fn insert_rec<K: Ord + Clone, V: Clone>(
    node: &mut Arc<Node<K, V>>,
    key: K,
    value: V,
) -> (Option<V>, Split<K, V>) {
    match Arc::make_mut(node) {
        Node::Leaf(e) => match e.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(i) => (Some(std::mem::replace(&mut e[i].1, value)), None),
            Err(i) => {
                e.insert(i, (key, value));
                if e.len() <= CAP {
                    return (None, None);
                }
                let right = e.split_off(e.len() / 2);
                let sep = right[0].0.clone();
                (None, Some((sep, Arc::new(Node::Leaf(right)))))
            }
        },
        Node::Branch { keys, children } => {
            let i = keys.partition_point(|s| *s <= key);
            let (old, split) = insert_rec(&mut children[i], key, value);
            let Some((sep, right)) = split else {
                return (old, None);
            };
            keys.insert(i, sep);
            children.insert(i + 1, right);
            if children.len() <= CAP {
                return (old, None);
            }
            let mid = children.len() / 2;
            let right_children = children.split_off(mid);
            let mut right_keys = keys.split_off(mid - 1);
            // The first of the right half's separators moves up.
            let up = right_keys.remove(0);
            (
                old,
                Some((
                    up,
                    Arc::new(Node::Branch {
                        keys: right_keys,
                        children: right_children,
                    }),
                )),
            )
        }
    }
}

fn remove_rec<K: Ord + Clone, V: Clone>(node: &mut Arc<Node<K, V>>, key: &K) -> Option<V> {
    match Arc::make_mut(node) {
        Node::Leaf(e) => {
            let i = e.binary_search_by(|(k, _)| k.cmp(key)).ok()?;
            Some(e.remove(i).1)
        }
        Node::Branch { keys, children } => {
            let i = keys.partition_point(|s| s <= key);
            let old = remove_rec(&mut children[i], key);
            if children[i].is_empty() {
                children.remove(i);
                // Child i's lower separator goes (child i-1 now reaches up to the next one);
                // for the first child, the separator above it.
                if !keys.is_empty() {
                    keys.remove(i.saturating_sub(1));
                }
            }
            old
        }
    }
}

/// One branch on a cursor's way down: its children and the one taken.
type Step<'a, K, V> = (&'a [Arc<Node<K, V>>], usize);

/// A position in the tree: the branches on the way down (with the child taken) and an
/// entry of a leaf.
struct Cursor<'a, K, V> {
    stack: Vec<Step<'a, K, V>>,
    leaf: &'a [(K, V)],
    idx: usize,
}

impl<'a, K: Ord, V> Cursor<'a, K, V> {
    /// Descends towards `key` (or the edge for `None`), stopping at a leaf.
    fn descend(root: &'a Node<K, V>, key: Option<&K>, leftmost: bool) -> Self {
        let mut stack = Vec::new();
        let mut node = root;
        loop {
            match node {
                Node::Branch { keys, children } => {
                    let i = match key {
                        Some(k) => keys.partition_point(|s| s <= k),
                        None if leftmost => 0,
                        None => children.len() - 1,
                    };
                    stack.push((children.as_slice(), i));
                    node = &children[i];
                }
                Node::Leaf(e) => {
                    return Cursor {
                        stack,
                        leaf: e,
                        idx: 0,
                    };
                }
            }
        }
    }

    /// The first entry inside the lower bound.
    fn seek_lo(root: &'a Node<K, V>, lo: Bound<&K>) -> Option<Self> {
        let (key, strict) = match lo {
            Bound::Included(k) => (Some(k), false),
            Bound::Excluded(k) => (Some(k), true),
            Bound::Unbounded => (None, false),
        };
        let mut c = Self::descend(root, key, true);
        c.idx = match key {
            Some(k) => c.leaf.partition_point(|(x, _)| x < k || (strict && x == k)),
            None => 0,
        };
        if c.idx < c.leaf.len() || c.next_leaf() {
            Some(c)
        } else {
            None
        }
    }

    /// The last entry inside the upper bound.
    fn seek_hi(root: &'a Node<K, V>, hi: Bound<&K>) -> Option<Self> {
        let (key, strict) = match hi {
            Bound::Included(k) => (Some(k), false),
            Bound::Excluded(k) => (Some(k), true),
            Bound::Unbounded => (None, false),
        };
        let mut c = Self::descend(root, key, false);
        let after = match key {
            Some(k) => c
                .leaf
                .partition_point(|(x, _)| x < k || (!strict && x == k)),
            None => c.leaf.len(),
        };
        if after > 0 {
            c.idx = after - 1;
            Some(c)
        } else if c.prev_leaf() {
            Some(c)
        } else {
            None
        }
    }

    fn key(&self) -> &'a K {
        &self.leaf[self.idx].0
    }

    fn entry(&self) -> (&'a K, &'a V) {
        let (k, v) = &self.leaf[self.idx];
        (k, v)
    }

    fn same_position(&self, other: &Self) -> bool {
        std::ptr::eq(self.leaf.as_ptr(), other.leaf.as_ptr()) && self.idx == other.idx
    }

    /// Moves to the first entry of the next leaf; `false` at the end.
    fn next_leaf(&mut self) -> bool {
        while let Some((children, i)) = self.stack.pop() {
            if i + 1 < children.len() {
                self.stack.push((children, i + 1));
                let mut node: &'a Node<K, V> = &children[i + 1];
                loop {
                    match node {
                        Node::Branch { children, .. } => {
                            self.stack.push((children.as_slice(), 0));
                            node = &children[0];
                        }
                        Node::Leaf(e) => {
                            self.leaf = e;
                            self.idx = 0;
                            return !e.is_empty();
                        }
                    }
                }
            }
        }
        false
    }

    /// Moves to the last entry of the previous leaf; `false` at the start.
    fn prev_leaf(&mut self) -> bool {
        while let Some((children, i)) = self.stack.pop() {
            if i > 0 {
                self.stack.push((children, i - 1));
                let mut node: &'a Node<K, V> = &children[i - 1];
                loop {
                    match node {
                        Node::Branch { children, .. } => {
                            let last = children.len() - 1;
                            self.stack.push((children.as_slice(), last));
                            node = &children[last];
                        }
                        Node::Leaf(e) => {
                            self.leaf = e;
                            self.idx = e.len().saturating_sub(1);
                            return !e.is_empty();
                        }
                    }
                }
            }
        }
        false
    }

    fn advance(&mut self) -> bool {
        self.idx += 1;
        self.idx < self.leaf.len() || self.next_leaf()
    }

    fn retreat(&mut self) -> bool {
        if self.idx > 0 {
            self.idx -= 1;
            true
        } else {
            self.prev_leaf()
        }
    }
}

/// Entries of a [`PMap`] between two bounds; iterates from either end.
pub struct Range<'a, K, V> {
    /// The next entry from the front, and from the back; both `None` once exhausted.
    front: Option<Cursor<'a, K, V>>,
    back: Option<Cursor<'a, K, V>>,
}

impl<'a, K: Ord, V> Iterator for Range<'a, K, V> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        let (f, b) = (self.front.as_mut()?, self.back.as_ref()?);
        let out = f.entry();
        if f.same_position(b) || !f.advance() {
            self.front = None;
            self.back = None;
        }
        Some(out)
    }
}

impl<K: Ord, V> DoubleEndedIterator for Range<'_, K, V> {
    fn next_back(&mut self) -> Option<Self::Item> {
        let (f, b) = (self.front.as_ref()?, self.back.as_mut()?);
        let out = b.entry();
        if b.same_position(f) || !b.retreat() {
            self.front = None;
            self.back = None;
        }
        Some(out)
    }
}

impl<K: Ord + Clone, V> FromIterator<(K, V)> for PMap<K, V> {
    /// Sorts (stable; the last of equal keys wins) and builds bottom-up.
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Self {
        Self::from_vec(iter.into_iter().collect())
    }
}

impl<K: Ord + Clone, V: Clone> Extend<(K, V)> for PMap<K, V> {
    fn extend<T: IntoIterator<Item = (K, V)>>(&mut self, iter: T) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl<K: Ord, V: PartialEq> PartialEq for PMap<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len
            && self
                .iter()
                .zip(other.iter())
                .all(|(a, b)| a.0.cmp(b.0) == Ordering::Equal && a.1 == b.1)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// A small deterministic generator (no dev-dependency needed).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    fn check_ranges(m: &PMap<u64, u64>, r: &BTreeMap<u64, u64>, rng: &mut Lcg, span: u64) {
        assert_eq!(m.len(), r.len());
        assert!(m.iter().eq(r.iter()));
        assert!(m.iter().rev().eq(r.iter().rev()));
        for _ in 0..50 {
            let (a, b) = (rng.next(span + 2), rng.next(span + 2));
            let bound = |x: u64, kind: u64| match kind {
                0 => Bound::Included(x),
                1 => Bound::Excluded(x),
                _ => Bound::Unbounded,
            };
            let (ka, kb) = (rng.next(3), rng.next(3));
            let (lo, hi) = (bound(a, ka), bound(b, kb));
            let expect: Vec<_> = match (lo, hi) {
                // BTreeMap panics on crossed or equal-excluded bounds; PMap yields nothing.
                (
                    Bound::Included(x) | Bound::Excluded(x),
                    Bound::Included(y) | Bound::Excluded(y),
                ) if x > y
                    || (x == y
                        && (matches!(lo, Bound::Excluded(_))
                            || matches!(hi, Bound::Excluded(_)))) =>
                {
                    Vec::new()
                }
                _ => r.range((lo, hi)).collect(),
            };
            let got: Vec<_> = m.range(lo.as_ref(), hi.as_ref()).collect();
            assert_eq!(got, expect, "{lo:?}..{hi:?}");
            let mut back: Vec<_> = m.range(lo.as_ref(), hi.as_ref()).rev().collect();
            back.reverse();
            assert_eq!(back, expect, "rev {lo:?}..{hi:?}");
            // Both ends at once meet in the middle without repeating an entry.
            let mut it = m.range(lo.as_ref(), hi.as_ref());
            let mut both = Vec::new();
            let mut tail = Vec::new();
            while let Some(x) = it.next() {
                both.push(x);
                match it.next_back() {
                    Some(x) => tail.push(x),
                    None => break,
                }
            }
            tail.reverse();
            both.extend(tail);
            assert_eq!(both, expect);
        }
        for _ in 0..50 {
            let k = rng.next(span + 2);
            assert_eq!(m.get(&k), r.get(&k));
        }
    }

    #[test]
    fn matches_btreemap_under_random_edits_and_shared_clones() {
        for (n, span) in [
            (0u64, 10u64),
            (1, 10),
            (63, 100),
            (64, 100),
            (65, 200),
            (5000, 20000),
        ] {
            let mut rng = Lcg(n + 7);
            let mut r = BTreeMap::new();
            let sorted: Vec<(u64, u64)> = (0..n).map(|i| (i * 3, i)).collect();
            r.extend(sorted.iter().copied());
            let mut m = PMap::from_sorted_vec(sorted).expect("sorted");
            check_ranges(&m, &r, &mut rng, n * 3);
            let mut snapshots = Vec::new();
            for step in 0..(n as usize * 2 + 200) {
                let k = rng.next(span.max(n * 3) + 1);
                if rng.next(3) == 0 {
                    assert_eq!(m.remove(&k), r.remove(&k), "remove {k}");
                } else {
                    assert_eq!(
                        m.insert(k, step as u64),
                        r.insert(k, step as u64),
                        "insert {k}"
                    );
                }
                if step % 500 == 0 {
                    snapshots.push((m.clone(), r.clone()));
                }
            }
            check_ranges(&m, &r, &mut rng, span.max(n * 3));
            // Earlier clones are untouched by later writes.
            for (sm, sr) in &snapshots {
                assert!(sm.iter().eq(sr.iter()));
            }
            // Remove everything.
            let keys: Vec<u64> = r.keys().copied().collect();
            for k in keys {
                assert_eq!(m.remove(&k), r.remove(&k));
            }
            assert!(m.is_empty() && m.iter().next().is_none());
        }
    }

    #[test]
    fn unsorted_input_is_sorted_and_the_last_duplicate_wins() {
        assert!(PMap::from_sorted_vec(vec![(2, 'a'), (1, 'b')]).is_err());
        assert!(PMap::from_sorted_vec(vec![(1, 'a'), (1, 'b')]).is_err());
        let m: PMap<i32, char> = vec![(3, 'a'), (1, 'b'), (3, 'c'), (2, 'd')]
            .into_iter()
            .collect();
        assert_eq!(
            m.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>(),
            [(1, 'b'), (2, 'd'), (3, 'c')]
        );
        assert_eq!(m.len(), 3);
    }
}
