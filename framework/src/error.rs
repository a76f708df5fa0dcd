//! Typed errors of the framework, one enum per concern folded into [`Error`].

use crate::scope::Scope;

/// Errors about service state values: decoding, upgrading, merging.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// A state of one service was handed to another service's code.
    #[error("state type mismatch: expected {expected} state, got {found}")]
    WrongService {
        /// The service whose state was expected.
        expected: &'static str,
        /// The service whose state was found.
        found: &'static str,
    },
    /// A state object was asked to do something only the current version can do.
    #[error("{service} state version {version} must be upgraded before use")]
    NotCurrent {
        /// Service name.
        service: &'static str,
        /// The old version.
        version: u32,
    },
    /// The upgrade path from an old version failed.
    #[error("cannot upgrade {service} state from version {from}: {reason}")]
    Upgrade {
        /// Service name.
        service: &'static str,
        /// Version being upgraded.
        from: u32,
        /// Why.
        reason: String,
    },
    /// State refers to something that is not there (a blob, a dependent resource).
    #[error("invalid {service} state in scope {scope}: {reason}")]
    Invalid {
        /// Service name.
        service: &'static str,
        /// Scope of the offending resource.
        scope: Scope,
        /// Why.
        reason: String,
    },
}

/// Errors a [`crate::StateProvider`] reports; they abort the surrounding capture or apply.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// The state value itself is unusable.
    #[error(transparent)]
    State(#[from] StateError),
    /// I/O the provider had to do (blob store, files).
    #[error("{service}: I/O error: {source}")]
    Io {
        /// Service name.
        service: &'static str,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Anything else, with a message that names the problem.
    #[error("{service}: {message}")]
    Other {
        /// Service name.
        service: &'static str,
        /// What went wrong.
        message: String,
    },
}

/// The umbrella error of runtime operations (capture, apply, export, import).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bundle file is unreadable or corrupt.
    #[error("bundle: {0}")]
    Bundle(#[from] cryopod_bundle::BundleError),
    /// Encoding a state section failed.
    #[error("cannot encode {service} state: {message}")]
    Encode {
        /// Service name.
        service: String,
        /// Cause.
        message: String,
    },
    /// Decoding a state section failed: the section does not hold a state this build knows.
    #[error("cannot decode the {service} section: {message}")]
    Decode {
        /// Service name.
        service: String,
        /// Cause.
        message: String,
    },
    /// The bundle's state is newer than this build understands.
    #[error(
        "the bundle holds {service} state version {found}, but this build supports up to version {supported}; upgrade cryopod"
    )]
    FutureStateVersion {
        /// Service name.
        service: String,
        /// Version in the bundle.
        found: u32,
        /// Newest version this build reads.
        supported: u32,
    },
    /// A service name that this runtime does not run.
    #[error("unknown service `{name}`; this emulator runs: {available}")]
    UnknownService {
        /// The name asked for.
        name: String,
        /// Comma-separated list of what runs.
        available: String,
    },
    /// Two plugins claim one service name.
    #[error("two plugins register the service `{0}`; each service must be registered once")]
    DuplicateService(&'static str),
    /// A state referred to a blob that is not in the blob store or the bundle.
    #[error(
        "{service} state refers to blob {digest}, which is neither in the bundle nor in the blob store"
    )]
    MissingBlob {
        /// Service name.
        service: String,
        /// Missing digest.
        digest: cryopod_bundle::Digest,
    },
    /// A provider failed.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// A state value failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// Local I/O failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A background task panicked or was cancelled.
    #[error("internal task failed: {0}")]
    Task(String),
}

/// Result alias of the framework.
pub type Result<T, E = Error> = std::result::Result<T, E>;
