//! cryopod: state that survives for local AWS emulators.
//!
//! Every emulated service captures a point-in-time snapshot of its own state and applies one
//! back ([`StateProvider`]); the [`Runtime`] composes the per-service snapshots into one
//! [`Snapshot`]. Persistence, export/import and pods only move that snapshot around, as
//! bundles of per-service sections and content-addressed blobs (see `cryopod-bundle`).
//!
//! Start with `examples/custom-plugin` to add snapshot support for a new service.
#![warn(missing_docs)]

pub mod aws;
pub mod background;
pub mod blob;
pub mod checkpoint;
#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "cli")]
mod cli_out;
#[cfg(feature = "cli")]
mod cli_pod;
pub mod diff;
pub mod error;
#[cfg(feature = "server")]
pub mod persistence;
pub mod plugin;
#[cfg(feature = "server")]
pub mod pods;
pub mod protocol;
pub mod runtime;
pub mod scope;
#[cfg(feature = "server")]
pub mod server;
pub mod service;
pub mod snapshot;
pub mod state;
pub mod testing;
pub mod units;

pub use aws::{AwsError, AwsRequest, Body};
pub use blob::{BlobImport, BlobStore, PresenceHint};
pub use cryopod_bundle as bundle;
pub use error::{Error, ProviderError, Result, StateError};
pub use runtime::{ApplyReport, Runtime, RuntimeBuilder, ScopeCounts};
pub use scope::{DEFAULT_ACCOUNT, DEFAULT_REGION, Scope, ScopeFilter};
pub use service::{
    ObjectSource, Registration, Route, Service, ServiceContext, StateCell, StateProvider,
    registrations,
};
pub use snapshot::{DecodedBundle, SkipReason, SkippedService, Snapshot};
pub use state::{
    Digest, MergeStrategy, ResourceCounts, Resources, Scoped, ScopedState, ServiceState,
};

/// Re-exports used by this crate's macros; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use inventory;
    pub use rmp_serde;
    pub use typetag;
}
