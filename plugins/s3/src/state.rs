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
    pub user: OrdMap<String, String>,
    /// Object tags.
    pub tags: OrdMap<String, String>,
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
    pub versions: Vector<ObjectVersion>,
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
    pub tags: OrdMap<String, String>,
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
            tags: OrdMap::new(),
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
    /// `service-merge` works bucket by bucket: the bundle's bucket replaces a running bucket
    /// of the same name whole (configuration, objects and uploads together, so a bucket never
    /// mixes objects of two histories), and running buckets the bundle lacks stay.
    fn merge(&mut self, incoming: Self) {
        for (name, bucket) in incoming.buckets {
            self.buckets.insert(name, bucket);
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

    fn bucket_with(name: &str, key: &str, body: &[u8]) -> Bucket {
        let mut b = Bucket::new(name.into(), 0, None);
        b.objects.insert(
            key.into(),
            ObjectEntry {
                versions: Vector::unit(version(NULL_VERSION, body)),
            },
        );
        b
    }

    #[test]
    fn service_merge_keeps_running_buckets_and_bundle_wins_on_a_name_clash() {
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
            !clash.objects.contains_key("old"),
            "a clashing bucket is replaced whole"
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
