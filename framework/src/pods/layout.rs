//! The OCI data model of a pod: image manifests, descriptors and the image-layout index.
//!
//! A pod version is an OCI image manifest (`application/vnd.oci.image.manifest.v1+json`)
//! with `artifactType` [`ARTIFACT_TYPE`]; its config is the pod's metadata
//! ([`PodMetadata`], JSON) and its layers are one state section per service followed by the
//! blobs. Each layer's descriptor digest is the sha256 of the stored bytes (compressed and
//! maybe encrypted), as OCI requires; annotations carry the service, state version and the
//! digest of the plain content, which is what lets a new version reuse unchanged layers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::bundle::{BlobSummary, ScopeEntry};
use crate::state::Digest;

/// OCI image manifest media type.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type (`index.json` of an image layout).
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// The `artifactType` of every pod manifest.
pub const ARTIFACT_TYPE: &str = "application/vnd.cryopod.pod.v1";
/// Media type of the config blob: [`PodMetadata`] as JSON.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.cryopod.pod.config.v1+json";
/// A state section: zstd-compressed MessagePack of one service's state.
pub const SECTION_MEDIA_TYPE: &str = "application/vnd.cryopod.section.v1+zstd";
/// A blob stored as is (incompressible content).
pub const BLOB_MEDIA_TYPE: &str = "application/vnd.cryopod.blob.v1";
/// A zstd-compressed blob.
pub const BLOB_ZSTD_MEDIA_TYPE: &str = "application/vnd.cryopod.blob.v1+zstd";
/// Suffix of an age-encrypted layer's media type (as ocicrypt appends `+encrypted`).
pub const AGE_SUFFIX: &str = "+age";

/// Annotation: `section` or `blob`.
pub const ANN_LAYER: &str = "io.cryopod.layer";
/// Annotation: the service a section belongs to.
pub const ANN_SERVICE: &str = "io.cryopod.service";
/// Annotation: the state version of a section.
pub const ANN_STATE_VERSION: &str = "io.cryopod.state-version";
/// Annotation: sha256 of the layer's plain content (MessagePack section or blob bytes).
pub const ANN_CONTENT_DIGEST: &str = "io.cryopod.content-digest";
/// Annotation: size of the plain content.
pub const ANN_CONTENT_SIZE: &str = "io.cryopod.content-size";
/// Annotation: pod name (manifests and index entries).
pub const ANN_POD_NAME: &str = "io.cryopod.pod.name";
/// Annotation: pod version.
pub const ANN_POD_VERSION: &str = "io.cryopod.pod.version";
/// Annotation: the save message.
pub const ANN_POD_MESSAGE: &str = "io.cryopod.pod.message";
/// Standard annotation: creation time.
pub const ANN_CREATED: &str = "org.opencontainers.image.created";
/// Standard annotation: the reference name of an image-layout index entry (`NAME:VERSION`).
pub const ANN_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An OCI content descriptor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: String,
    /// sha256 of the stored bytes.
    pub digest: Digest,
    /// Size of the stored bytes.
    pub size: u64,
    /// Artifact type, on index entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    /// An annotation's value.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.get(key).map(String::as_str)
    }

    /// Whether the layer is age-encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.media_type.ends_with(AGE_SUFFIX)
    }

    /// Whether the (decrypted) layer is zstd-compressed.
    pub fn is_zstd(&self) -> bool {
        self.media_type
            .trim_end_matches(AGE_SUFFIX)
            .ends_with("+zstd")
    }

    /// The digest of the plain content, from the annotation (the stored digest for old or
    /// foreign layers without it).
    pub fn content_digest(&self) -> Option<Digest> {
        self.annotation(ANN_CONTENT_DIGEST)
            .and_then(|d| d.parse().ok())
    }
}

/// An OCI image manifest: one pod version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// Always 2.
    pub schema_version: u32,
    /// [`MANIFEST_MEDIA_TYPE`].
    pub media_type: String,
    /// [`ARTIFACT_TYPE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The pod metadata blob.
    pub config: Descriptor,
    /// Sections, then blobs.
    pub layers: Vec<Descriptor>,
    /// Pod name, version, message, creation time.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The `index.json` of an OCI image layout.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    /// Always 2.
    pub schema_version: u32,
    /// [`INDEX_MEDIA_TYPE`].
    #[serde(default)]
    pub media_type: String,
    /// One entry per pod version.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// The pod's metadata, stored as the manifest's config: readable without any secret, so
/// `list`, `versions` and `inspect` work on encrypted pods.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodMetadata {
    /// Pod name.
    pub name: String,
    /// Version number, 1, 2, 3, …
    pub version: u32,
    /// The save message.
    #[serde(default)]
    pub message: String,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// `cryopod <version>`.
    pub producer: String,
    /// Services with their state versions and resource counts per scope.
    pub services: Vec<PodService>,
    /// Blob count and plain bytes.
    #[serde(default)]
    pub blobs: BlobSummary,
    /// Present when the layers are encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
}

/// One service in a pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodService {
    /// Service name.
    pub name: String,
    /// State version of its section.
    pub state_version: u32,
    /// Resource counts per scope.
    #[serde(default)]
    pub scopes: Vec<ScopeEntry>,
}

/// How a pod's layers are encrypted.
///
/// Layers are encrypted with `age` to a pod key (an age X25519 identity); the pod key is
/// itself encrypted with the passphrase (age scrypt) and stored here. One scrypt per save or
/// load instead of one per layer, and a new version that knows the passphrase reuses the
/// key, and with it every unchanged encrypted layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encryption {
    /// `age`.
    pub scheme: String,
    /// The pod key's public recipient (`age1…`).
    pub recipient: String,
    /// The pod key, age-encrypted with the passphrase (scrypt), base64.
    pub wrapped_key: String,
}
