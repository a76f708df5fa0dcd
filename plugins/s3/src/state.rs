//! The S3 state, version 1: buckets with their configuration, object versions and
//! multipart uploads in progress.
//!
//! Rules this state follows (the plugin contract):
//! - plain serde data in `imbl` persistent maps, so a capture clones in O(1);
//! - partitioned by [`cryopod::Scope`]: a bucket lives in the scope of the account that
//!   created it and the region it was created in (its `LocationConstraint`);
//! - object bodies and parts are blob digests ([`Chunk`]), never inline bytes. A body is a
//!   list of chunks so that completing a multipart upload costs no copy: the object simply
//!   refers to its parts' blobs.
//!
//! The global bucket-name index is *not* stored: it is derived from this state at run time
//! (see [`S3State::bucket_names`]), so it can never disagree with a restored snapshot.

use std::collections::BTreeSet;
use std::sync::Arc;

use cryopod::{Digest, ResourceCounts, Resources, Scope, Scoped, ScopedState};
use imbl::{OrdMap, Vector};
use serde::{Deserialize, Serialize};

/// Version id AWS reports for objects written while versioning was never enabled or is
/// suspended.
pub const NULL_VERSION: &str = "null";

/// A bucket's versioning state, as `GetBucketVersioning` reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Versioning {
    /// Versioning was never enabled: `GetBucketVersioning` returns no status.
    #[default]
    Unversioned,
    /// Every write creates a new version.
    Enabled,
    /// Writes replace the `null` version; older versions stay.
    Suspended,
}

/// One CORS rule, stored as given and returned by `GetBucketCors`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorsRule {
    /// Optional rule id.
    pub id: Option<String>,
    /// `AllowedHeaders`.
    pub allowed_headers: Vec<String>,
    /// `AllowedMethods`.
    pub allowed_methods: Vec<String>,
    /// `AllowedOrigins`.
    pub allowed_origins: Vec<String>,
    /// `ExposeHeaders`.
    pub expose_headers: Vec<String>,
    /// `MaxAgeSeconds`.
    pub max_age_seconds: Option<i32>,
}

/// Metadata and tags: a few short pairs per object, sorted by name.
///
/// Why not `imbl::OrdMap` like the state's large maps: its smallest node holds 64 entries,
/// so a map of one tag or one metadata entry took 3.2 KB, against 0.65 KB as a `BTreeMap`.
/// These maps sit inside an object version (behind its `Arc`), so a capture never copies
/// them; only an edit of that version does, and AWS caps them at 10 tags and 2 KB of
/// metadata. Same serialized form as the `OrdMap` (a map in key order).
pub type Pairs = std::collections::BTreeMap<String, String>;

/// A contiguous piece of an object body held in the blob store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// Blob digest.
    pub digest: Digest,
    /// Blob size in bytes.
    pub size: u64,
}

/// HTTP and user metadata stored with an object (and with an upload, for its future object).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Content-Encoding`.
    pub content_encoding: Option<String>,
    /// `Content-Disposition`.
    pub content_disposition: Option<String>,
    /// `Content-Language`.
    pub content_language: Option<String>,
    /// `Cache-Control`.
    pub cache_control: Option<String>,
    /// `Expires`, as the HTTP date the client sent.
    pub expires: Option<String>,
    /// `x-amz-website-redirect-location`.
    pub website_redirect_location: Option<String>,
    /// `x-amz-storage-class`; `None` means STANDARD.
    pub storage_class: Option<String>,
    /// `x-amz-meta-*` user metadata (names lower-cased, without the prefix).
    pub user: Pairs,
    /// Object tags.
    pub tags: Pairs,
    /// The object's full-object checksum (`x-amz-checksum-*`), verified when it was
    /// stored. Absent in states written before checksums were kept (and for multipart
    /// objects), so old bundles load unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<crate::checksum::ObjectChecksum>,
}

/// One version of an object: data, or a delete marker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectVersion {
    /// Version id (`"null"` in unversioned and suspended buckets).
    pub version_id: String,
    /// Whether this version is a delete marker (no data).
    pub delete_marker: bool,
    /// Last-Modified, milliseconds since the Unix epoch.
    pub last_modified_ms: i64,
    /// The body, in order. Empty for empty objects and delete markers.
    pub chunks: Vec<Chunk>,
    /// Total size in bytes.
    pub size: u64,
    /// The ETag as AWS computes it, without the quotes the wire adds: hex MD5 of the body,
    /// or for multipart objects hex MD5 of the parts' binary MD5s followed by `-N`.
    pub etag: String,
    /// Number of parts when the object came from a multipart upload.
    pub parts_count: Option<u32>,
    /// Metadata and tags.
    pub meta: ObjectMeta,
}

/// All versions of one key, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectEntry {
    /// Versions, newest first; the first one is the current version.
    pub versions: Versions,
}

/// The versions of one key, newest first: a persistent list that is as small as one
/// shared version when there is one.
///
/// Why not `imbl::Vector` alone: its smallest allocation is a whole chunk, about 4.5 KiB
/// for one ~330-byte [`ObjectVersion`], so every key of an unversioned bucket cost over ten
/// times its size in memory (45 MB per 10,000 objects), and decoding a snapshot spent its
/// time allocating and faulting in those chunks. One version is now one `Arc` (cloned by a
/// reference count, as the state's persistent maps need); a key with more versions keeps
/// a `Vector` (O(log n) edits for long histories). It serializes as a plain sequence,
/// exactly as the `Vector` did, so snapshots are unchanged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Versions(Repr);

#[derive(Clone, Debug, Default, PartialEq, Eq)]
enum Repr {
    #[default]
    Empty,
    One(Arc<ObjectVersion>),
    /// Two versions or more.
    Many(Vector<ObjectVersion>),
}

impl Versions {
    /// How many versions (delete markers included).
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Empty => 0,
            Repr::One(_) => 1,
            Repr::Many(v) => v.len(),
        }
    }

    /// Whether the key has no version left.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The newest version.
    pub fn front(&self) -> Option<&ObjectVersion> {
        match &self.0 {
            Repr::Empty => None,
            Repr::One(v) => Some(v),
            Repr::Many(v) => v.front(),
        }
    }

    /// The newest version, for an update in place (copied first if shared).
    pub fn front_mut(&mut self) -> Option<&mut ObjectVersion> {
        match &mut self.0 {
            Repr::Empty => None,
            Repr::One(v) => Some(Arc::make_mut(v)),
            Repr::Many(v) => v.front_mut(),
        }
    }

    /// Newest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &ObjectVersion> {
        let (one, many) = match &self.0 {
            Repr::Empty => (None, None),
            Repr::One(v) => (Some(&**v), None),
            Repr::Many(v) => (None, Some(v.iter())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }

    /// Newest first, for updates in place (each copied first if shared).
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut ObjectVersion> {
        let (one, many) = match &mut self.0 {
            Repr::Empty => (None, None),
            Repr::One(v) => (Some(Arc::make_mut(v)), None),
            Repr::Many(v) => (None, Some(v.iter_mut())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }

    /// Makes `v` the newest version.
    pub fn push_front(&mut self, v: ObjectVersion) {
        self.0 = match std::mem::take(&mut self.0) {
            Repr::Empty => Repr::One(Arc::new(v)),
            Repr::One(old) => Repr::Many(Vector::from(vec![v, Arc::unwrap_or_clone(old)])),
            Repr::Many(mut all) => {
                all.push_front(v);
                Repr::Many(all)
            }
        };
    }

    /// Removes and returns the version at `index` (0 is the newest).
    ///
    /// # Panics
    /// If `index >= len()`, like `Vec::remove`.
    pub fn remove(&mut self, index: usize) -> ObjectVersion {
        match std::mem::take(&mut self.0) {
            Repr::One(v) if index == 0 => Arc::unwrap_or_clone(v),
            Repr::Many(mut all) if index < all.len() => {
                let v = all.remove(index);
                *self = Versions::from_vector(all);
                v
            }
            other => {
                let len = Versions(other).len();
                panic!("version index {index} out of range for {len} versions")
            }
        }
    }

    /// Keeps the versions `keep` accepts, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(&ObjectVersion) -> bool) {
        match &mut self.0 {
            Repr::Empty => {}
            Repr::One(v) => {
                if !keep(v) {
                    self.0 = Repr::Empty;
                }
            }
            Repr::Many(all) => {
                all.retain(|v| keep(v));
                *self = Versions::from_vector(std::mem::take(all));
            }
        }
    }

    fn from_vector(mut all: Vector<ObjectVersion>) -> Versions {
        Versions(match all.len() {
            0 => Repr::Empty,
            1 => match all.pop_front() {
                Some(v) => Repr::One(Arc::new(v)),
                None => Repr::Empty,
            },
            _ => Repr::Many(all),
        })
    }
}

impl FromIterator<ObjectVersion> for Versions {
    fn from_iter<I: IntoIterator<Item = ObjectVersion>>(iter: I) -> Self {
        Versions::from_vector(iter.into_iter().collect())
    }
}

impl<'a> IntoIterator for &'a Versions {
    type Item = &'a ObjectVersion;
    type IntoIter = Box<dyn DoubleEndedIterator<Item = &'a ObjectVersion> + 'a>;
    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

impl Serialize for Versions {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Versions {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let all = Vec::<ObjectVersion>::deserialize(d)?;
        Ok(if all.len() == 1 {
            Versions(
                all.into_iter()
                    .next()
                    .map_or(Repr::Empty, |v| Repr::One(Arc::new(v))),
            )
        } else {
            all.into_iter().collect()
        })
    }
}

impl ObjectEntry {
    /// The current version, if any.
    pub fn latest(&self) -> Option<&ObjectVersion> {
        self.versions.front()
    }
}

/// An uploaded part of a multipart upload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// The part's bytes.
    pub chunk: Chunk,
    /// Hex MD5 of the part (its ETag without quotes).
    pub md5_hex: String,
    /// Upload time, milliseconds since the Unix epoch.
    pub last_modified_ms: i64,
    /// The part's checksum, when the client sent one (verified on UploadPart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<crate::checksum::ObjectChecksum>,
}

impl Part {
    /// The part's ETag as AWS reports it (quoted hex MD5).
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.md5_hex)
    }
}

/// A multipart upload in progress; it survives snapshots, so an upload started before a
/// snapshot can be completed after a restore.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    /// Upload id.
    pub upload_id: String,
    /// The object key the upload will create.
    pub key: String,
    /// Initiation time, milliseconds since the Unix epoch.
    pub initiated_ms: i64,
    /// Metadata and tags for the object it will create.
    pub meta: ObjectMeta,
    /// Parts by part number.
    pub parts: OrdMap<u32, Part>,
}

/// A bucket with its configuration and contents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// Bucket name (globally unique).
    pub name: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// The `LocationConstraint` it was created with (`None` for us-east-1).
    pub location_constraint: Option<String>,
    /// Versioning state.
    pub versioning: Versioning,
    /// Bucket tags.
    pub tags: Pairs,
    /// Bucket policy document, as given.
    pub policy: Option<String>,
    /// CORS rules, if configured.
    pub cors: Option<Vec<CorsRule>>,
    /// Objects by key.
    pub objects: OrdMap<String, ObjectEntry>,
    /// Multipart uploads in progress by upload id.
    pub uploads: OrdMap<String, Upload>,
}

impl Bucket {
    /// An empty bucket.
    pub fn new(name: String, created_ms: i64, location_constraint: Option<String>) -> Self {
        Self {
            name,
            created_ms,
            location_constraint,
            versioning: Versioning::Unversioned,
            tags: Pairs::new(),
            policy: None,
            cors: None,
            objects: OrdMap::new(),
            uploads: OrdMap::new(),
        }
    }
}

/// One scope's buckets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3Scope {
    /// Buckets by name.
    pub buckets: OrdMap<String, Bucket>,
}

impl Resources for S3Scope {
    /// `service-merge` works down to objects: a bucket only in the bundle is added; a bucket
    /// on both sides takes its configuration (versioning, tags, policy, CORS, …) from the
    /// bundle and keeps the union of both sides' objects and multipart uploads, the bundle's
    /// on a key (or upload id) clash. An object is one unit with all its versions, so a key
    /// never mixes the versions of two histories.
    fn merge(&mut self, incoming: Self) {
        for (name, mut bucket) in incoming.buckets {
            if let Some(existing) = self.buckets.remove(&name) {
                // `union` keeps the receiver's value on a clash: the bundle's.
                bucket.objects = bucket.objects.union(existing.objects);
                bucket.uploads = bucket.uploads.union(existing.uploads);
            }
            self.buckets.insert(name, bucket);
        }
    }

    /// Buckets (their configuration), objects (`bucket/key`, with every version) and
    /// multipart uploads (`bucket/upload-id`).
    fn units(&self, out: &mut cryopod::units::Units) {
        for (name, b) in &self.buckets {
            let mut config = b.clone();
            config.objects = OrdMap::new();
            config.uploads = OrdMap::new();
            out.add("bucket", name.clone(), &config);
            for (key, e) in &b.objects {
                out.add("object", format!("{name}/{key}"), e);
            }
            for (id, u) in &b.uploads {
                out.add("multipart-upload", format!("{name}/{id}"), u);
            }
        }
    }

    fn summary(&self) -> ResourceCounts {
        let mut c = ResourceCounts::new();
        c.insert("bucket".into(), self.buckets.len() as u64);
        let mut objects = 0u64;
        let mut versions = 0u64;
        let mut uploads = 0u64;
        for b in self.buckets.values() {
            objects += b
                .objects
                .values()
                .filter(|e| e.latest().is_some_and(|v| !v.delete_marker))
                .count() as u64;
            versions += b
                .objects
                .values()
                .map(|e| e.versions.len() as u64)
                .sum::<u64>();
            uploads += b.uploads.len() as u64;
        }
        c.insert("object".into(), objects);
        c.insert("object-version".into(), versions);
        c.insert("multipart-upload".into(), uploads);
        c
    }

    fn blobs(&self, out: &mut BTreeSet<Digest>) {
        for b in self.buckets.values() {
            for e in b.objects.values() {
                for v in &e.versions {
                    out.extend(v.chunks.iter().map(|c| c.digest));
                }
            }
            for u in b.uploads.values() {
                out.extend(u.parts.values().map(|p| p.chunk.digest));
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// The S3 state, version 1.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct S3State {
    /// Buckets by scope.
    pub scopes: Scoped<S3Scope>,
}

impl ScopedState for S3State {
    type Resources = S3Scope;
    fn scoped(&self) -> &Scoped<S3Scope> {
        &self.scopes
    }
    fn scoped_mut(&mut self) -> &mut Scoped<S3Scope> {
        &mut self.scopes
    }
}

cryopod::service_state!(S3State, service = "s3", version = 1, tag = "s3/1");

impl S3State {
    /// Every bucket name with the scope that holds it, for the global name index. When two
    /// scopes hold the same name (possible only after merging bundles from different
    /// accounts), the first in scope order wins and the clash is reported.
    pub fn bucket_names(&self) -> std::collections::BTreeMap<String, Scope> {
        let mut out = std::collections::BTreeMap::new();
        for (scope, res) in self.scopes.iter() {
            for name in res.buckets.keys() {
                if let Some(prev) = out.get(name) {
                    tracing::warn!(bucket = %name, kept = %prev, ignored = %scope,
                        "bucket name present in two scopes; requests go to the first");
                    continue;
                }
                out.insert(name.clone(), scope.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(id: &str, digest: &[u8]) -> ObjectVersion {
        ObjectVersion {
            version_id: id.into(),
            delete_marker: false,
            last_modified_ms: 1,
            chunks: vec![Chunk {
                digest: Digest::of(digest),
                size: digest.len() as u64,
            }],
            size: digest.len() as u64,
            etag: "\"x\"".into(),
            parts_count: None,
            meta: ObjectMeta::default(),
        }
    }

    fn ids(v: &Versions) -> Vec<String> {
        v.iter().map(|v| v.version_id.clone()).collect()
    }

    /// Every edit agrees with a `Vec` doing the same, across the one/many boundary, and
    /// a clone taken before an edit does not see it.
    #[test]
    fn versions_behave_like_a_list_newest_first() {
        let mut v = Versions::default();
        let mut model: Vec<String> = Vec::new();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for step in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let before = v.clone();
            let before_ids = ids(&v);
            match x % 5 {
                0 | 1 => {
                    let id = format!("v{step}");
                    v.push_front(version(&id, id.as_bytes()));
                    model.insert(0, id);
                }
                2 if !model.is_empty() => {
                    let i = (x >> 8) as usize % model.len();
                    assert_eq!(v.remove(i).version_id, model.remove(i));
                }
                3 => {
                    let cut = (x >> 8) % 3;
                    v.retain(|o| o.version_id.len() as u64 % 3 != cut);
                    model.retain(|o| o.len() as u64 % 3 != cut);
                }
                _ => {
                    if let Some(f) = v.front_mut() {
                        f.etag = format!("e{step}");
                    }
                    if let Some(f) = v.iter_mut().last() {
                        f.last_modified_ms = step;
                    }
                }
            }
            assert_eq!(ids(&v), model, "step {step}");
            assert_eq!(v.len(), model.len());
            assert_eq!(v.is_empty(), model.is_empty());
            assert_eq!(
                v.front().map(|f| f.version_id.clone()),
                model.first().cloned()
            );
            assert_eq!(
                ids(&before),
                before_ids,
                "a clone saw an edit at step {step}"
            );
        }
    }

    #[test]
    fn versions_serialize_as_the_vector_they_replace() {
        for n in [0, 1, 2, 5] {
            let list: Vec<ObjectVersion> =
                (0..n).map(|i| version(&format!("v{i}"), b"x")).collect();
            let ours: Versions = list.iter().cloned().collect();
            let theirs: Vector<ObjectVersion> = list.iter().cloned().collect();
            let a = rmp_serde::to_vec_named(&ours).unwrap();
            assert_eq!(a, rmp_serde::to_vec_named(&theirs).unwrap(), "{n} versions");
            let back: Versions = rmp_serde::from_slice(&a).unwrap();
            assert_eq!(back, ours);
            assert_eq!(ids(&back), ids(&ours));
        }
    }

    #[test]
    fn pairs_serialize_as_the_ordmap_they_replace() {
        let entries = [("b", "2"), ("a", "1"), ("c", "")];
        let ours: Pairs = entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let theirs: OrdMap<String, String> = entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let a = rmp_serde::to_vec_named(&ours).unwrap();
        assert_eq!(a, rmp_serde::to_vec_named(&theirs).unwrap());
        assert_eq!(rmp_serde::from_slice::<Pairs>(&a).unwrap(), ours);
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn removing_a_missing_version_panics_like_a_vec() {
        let mut v: Versions = std::iter::once(version("a", b"x")).collect();
        v.remove(1);
    }

    fn bucket_with(name: &str, key: &str, body: &[u8]) -> Bucket {
        let mut b = Bucket::new(name.into(), 0, None);
        b.objects.insert(
            key.into(),
            ObjectEntry {
                versions: std::iter::once(version(NULL_VERSION, body)).collect(),
            },
        );
        b
    }

    #[test]
    fn service_merge_keeps_both_sides_objects_in_a_bucket_on_both_sides() {
        let mut running = S3Scope::default();
        running
            .buckets
            .insert("keep".into(), bucket_with("keep", "a", b"1"));
        running
            .buckets
            .insert("clash".into(), bucket_with("clash", "old", b"2"));
        let mut bundle = S3Scope::default();
        bundle
            .buckets
            .insert("clash".into(), bucket_with("clash", "new", b"3"));
        bundle
            .buckets
            .insert("added".into(), bucket_with("added", "z", b"4"));
        running.merge(bundle);
        let names: Vec<_> = running.buckets.keys().cloned().collect();
        assert_eq!(names, ["added", "clash", "keep"]);
        let clash = &running.buckets["clash"];
        assert!(clash.objects.contains_key("new"));
        assert!(
            clash.objects.contains_key("old"),
            "a bucket on both sides keeps the running side's objects"
        );
    }

    #[test]
    fn summary_counts_live_objects_versions_and_uploads() {
        let mut s = S3Scope::default();
        let mut b = bucket_with("b", "k", b"1");
        let mut dm = version("v2", b"");
        dm.delete_marker = true;
        dm.chunks.clear();
        b.objects.insert(
            "gone".into(),
            ObjectEntry {
                versions: vec![dm, version("v1", b"x")].into_iter().collect(),
            },
        );
        b.uploads.insert(
            "u".into(),
            Upload {
                upload_id: "u".into(),
                key: "k".into(),
                initiated_ms: 0,
                meta: ObjectMeta::default(),
                parts: OrdMap::new(),
            },
        );
        s.buckets.insert("b".into(), b);
        let c = s.summary();
        assert_eq!(c["bucket"], 1);
        assert_eq!(c["object"], 1);
        assert_eq!(c["object-version"], 3);
        assert_eq!(c["multipart-upload"], 1);
        let mut blobs = BTreeSet::new();
        s.blobs(&mut blobs);
        assert!(blobs.contains(&Digest::of(b"x")));
        assert!(blobs.contains(&Digest::of(b"1")));
    }

    #[test]
    fn the_name_index_is_derived_from_every_scope() {
        let mut st = S3State::default();
        st.scopes
            .get_mut(&Scope::new("111111111111", "eu-west-1"))
            .buckets
            .insert(
                "a".into(),
                Bucket::new("a".into(), 0, Some("eu-west-1".into())),
            );
        st.scopes
            .get_mut(&Scope::new("222222222222", "us-east-1"))
            .buckets
            .insert("b".into(), Bucket::new("b".into(), 0, None));
        let idx = st.bucket_names();
        assert_eq!(idx["a"], Scope::new("111111111111", "eu-west-1"));
        assert_eq!(idx["b"], Scope::new("222222222222", "us-east-1"));
    }
}
