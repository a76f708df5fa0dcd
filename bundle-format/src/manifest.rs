//! The manifest: what a bundle holds, readable without decompressing anything.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The bundle's table of contents for humans and for `bundle inspect`.
///
/// Stored as JSON right after the header so a reader learns which services a
/// bundle holds before streaming any section. Unknown fields are ignored on read
/// so newer producers can add fields without breaking older readers.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Manifest {
    /// Who wrote the bundle, e.g. `"cryopod 0.1.0"`, for diagnosing old files.
    pub producer: String,
    /// RFC 3339 creation time; the only field that makes two bundles of the same state differ.
    pub created_at: String,
    /// One entry per state section, so unknown services can be reported up front.
    #[serde(default)]
    pub services: Vec<ServiceEntry>,
    /// Totals over the blob streams, so a reader can show progress and check space.
    #[serde(default)]
    pub blobs: BlobSummary,
}

/// A service whose state is in the bundle.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ServiceEntry {
    /// AWS signing name of the service, e.g. `"s3"`; also the section name.
    pub name: String,
    /// Schema version of the section payload, so a build can refuse or upgrade it.
    pub state_version: u32,
    /// Which account/region partitions the section covers, for merge previews.
    #[serde(default)]
    pub scopes: Vec<ScopeEntry>,
}

/// One `(account, region)` partition of a service's state.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ScopeEntry {
    /// AWS account id, e.g. `"000000000000"`.
    pub account: String,
    /// AWS region, e.g. `"us-east-1"`.
    pub region: String,
    /// Resource type → count, for `inspect` output (a `BTreeMap` so JSON is deterministic).
    #[serde(default)]
    pub resources: BTreeMap<String, u64>,
}

/// Totals over the blob streams.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BlobSummary {
    /// Number of distinct blobs.
    pub count: u64,
    /// Sum of their uncompressed sizes.
    pub bytes: u64,
}
