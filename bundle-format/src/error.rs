//! The one error type of the crate.

use std::io;

use crate::Digest;

/// Everything that can go wrong while writing, reading or verifying a bundle.
///
/// Variants carry the byte offset where the problem was found so an operator
/// holding a damaged file can tell *where* it is damaged, not just *that* it is.
/// The enum is `#[non_exhaustive]` so new checks can be added without a major
/// version bump.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The underlying reader or writer failed (not a format problem).
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The first bytes are not the bundle magic: this is not a cryopod bundle.
    #[error("bad magic at offset 0: not a cryopod bundle")]
    BadMagic,
    /// The end-of-file magic in the footer is wrong: the file was cut or has trailing garbage.
    #[error("bad footer magic at offset {offset}: the bundle is truncated or has trailing data")]
    BadFooterMagic {
        /// Offset of the footer that was expected.
        offset: u64,
    },
    /// The file was written by a newer (or unknown) format version.
    #[error("unsupported bundle format version {found} (this build reads version {supported})")]
    UnsupportedVersion {
        /// Version found in the file.
        found: u16,
        /// Highest version this build understands.
        supported: u16,
    },
    /// The input ended before a complete structure could be read.
    #[error("bundle truncated at offset {offset} while reading {what}")]
    Truncated {
        /// Offset at which more bytes were expected.
        offset: u64,
        /// Which structure was being read.
        what: &'static str,
    },
    /// A CRC32 did not match: the bytes were damaged.
    #[error("checksum mismatch in {what} at offset {offset}: the bundle is corrupt")]
    Checksum {
        /// Offset of the damaged structure.
        offset: u64,
        /// Which structure.
        what: &'static str,
    },
    /// A sha256 did not match the declared one.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was hashed (for example `blob sha256:…` or `section "s3"`).
        what: String,
        /// Declared digest.
        expected: Digest,
        /// Digest of the bytes actually seen.
        actual: Digest,
    },
    /// A declared size did not match the number of bytes actually seen.
    #[error("size mismatch for {what}: declared {expected} bytes, got {actual}")]
    SizeMismatch {
        /// What was measured.
        what: String,
        /// Declared size.
        expected: u64,
        /// Observed size.
        actual: u64,
    },
    /// A length or count exceeds the configured [`crate::Limits`]; refused before allocating.
    #[error("{what} is {value}, over the limit of {limit}")]
    LimitExceeded {
        /// Which quantity.
        what: &'static str,
        /// Its value in the input.
        value: u64,
        /// The limit in force.
        limit: u64,
    },
    /// Structurally invalid content (wrong record where another was required, bad UTF-8, …).
    #[error("malformed bundle at offset {offset}: {reason}")]
    Malformed {
        /// Offset of the offending structure.
        offset: u64,
        /// Human-readable reason.
        reason: String,
    },
    /// A zstd frame could not be decoded.
    #[error("cannot decompress chunk at offset {offset}: {source}")]
    Decompress {
        /// Offset of the chunk record.
        offset: u64,
        /// Error from zstd.
        source: io::Error,
    },
    /// Compression failed (writer side; practically only on allocation failure).
    #[error("cannot compress: {0}")]
    Compress(io::Error),
    /// The manifest JSON could not be encoded or decoded.
    #[error("invalid manifest JSON: {0}")]
    Manifest(#[source] serde_json::Error),
    /// A digest string did not parse.
    #[error(transparent)]
    ParseDigest(#[from] crate::ParseDigestError),
    /// A piped stream's sink (see [`crate::StreamReader::pipe_to`]) could not take or
    /// commit its bytes: a problem of the destination (disk full, permissions), not of
    /// the bundle.
    #[error("cannot store {what}: {source}")]
    Sink {
        /// The stream that was being stored.
        what: String,
        /// What the sink reported.
        source: io::Error,
    },
    /// The caller misused the writer (duplicate section, stream left open, writer poisoned).
    #[error("invalid use of the bundle writer: {0}")]
    Usage(String),
}

impl BundleError {
    pub(crate) fn malformed(offset: u64, reason: impl Into<String>) -> Self {
        BundleError::Malformed {
            offset,
            reason: reason.into(),
        }
    }

    /// Wraps this error in an `io::Error` so it can travel through `Read`;
    /// recover it with [`BundleError::from_io`].
    pub(crate) fn into_io(self) -> io::Error {
        match self {
            BundleError::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }

    /// Recovers a [`BundleError`] that a [`crate::StreamReader`] returned through
    /// `io::Read`, so callers that used `io::copy` still get the typed error.
    pub fn from_io(e: io::Error) -> BundleError {
        if e.get_ref().is_some_and(|inner| inner.is::<BundleError>()) {
            match e.into_inner().map(|b| b.downcast::<BundleError>()) {
                Some(Ok(b)) => *b,
                Some(Err(other)) => {
                    BundleError::Io(io::Error::new(io::ErrorKind::InvalidData, other))
                }
                None => BundleError::Io(io::Error::other("unreachable")),
            }
        } else {
            BundleError::Io(e)
        }
    }
}
