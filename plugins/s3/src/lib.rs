//! `s3`: the S3 plugin of cryopod.
//!
//! S3 is where people keep the most data, so this plugin keeps object bytes out of its state:
//! bodies and parts live in the framework's content-addressed blob store (identical bodies
//! are stored once) and the state holds their digests, so a snapshot of gigabytes is a small
//! state section plus blobs that export, persistence and pods move without re-encoding.
//!
//! Modules:
//! - [`state`]: the serde state (buckets, configuration, object versions, multipart uploads
//!   in progress), scoped by the owning account and the bucket's region;
//! - [`api`]: the S3 semantics, as an [`s3s::S3`] implementation (s3s speaks the protocol);
//! - [`body`]: streaming bodies into and out of the blob store, and `aws-chunked` decoding;
//! - [`checksum`]: the integrity checks (`Content-MD5`, `x-amz-content-sha256`, the
//!   `x-amz-checksum-*` checksums) bodies are verified against as they stream in;
//! - [`provider`]: the [`cryopod::Service`], [`cryopod::StateProvider`] and
//!   [`cryopod::ObjectSource`] implementation;
//! - the registration, below.
//!
//! Bucket names are global, as in AWS: a derived name index (rebuilt on restore, never
//! stored) finds a bucket's scope whatever region or account a request is signed for, and
//! `CreateBucket` of a taken name answers `BucketAlreadyExists` (another account) or
//! `BucketAlreadyOwnedByYou`.

pub mod api;
pub mod body;
pub mod checksum;
pub mod cors;
pub mod provider;
pub mod state;

pub use provider::S3Plugin;

// The registration: `SERVICE`, `STATE_VERSION` (from the state's `service_state!`) and
// the registry entry, stated once.
cryopod::plugin! {
    service: "s3",
    state: state::S3State,
    routes: &[
        cryopod::Route::SigningName("s3"),
        cryopod::Route::Fallback,
    ],
    operations: provider::OPERATIONS,
    build: |ctx| std::sync::Arc::new(S3Plugin::new(ctx)),
}
