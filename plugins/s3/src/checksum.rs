//! The integrity checks S3 clients rely on: `Content-MD5`, a hex `x-amz-content-sha256`,
//! and the additional checksums (`x-amz-checksum-{crc32,crc32c,crc64nvme,sha1,sha256}`), as
//! headers or as the trailing headers of an `aws-chunked` body.
//!
//! Why here and not in s3s: the gateway accepts any credentials, so s3s never verifies a
//! signature and never wraps the body in its own checking streams; and the plugin decodes
//! `aws-chunked` itself. So this module says what a request declares ([`Expected`]), the
//! body writer hashes while it streams into the blob store (one pass, see
//! [`crate::body::store_stream`]), and a mismatch is answered with AWS's error before the
//! body is named in the store, so a refused request leaves nothing behind.
//!
//! The hashes are s3s's own ([`s3s::crypto`]): CRC32, CRC32C and CRC64/NVME through the
//! SIMD `crc-fast`, SHA-1 through `sha1`; SHA-256 is the blob store's content digest, so
//! it costs nothing extra.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use cryopod::Digest;
use s3s::crypto::Checksum as _;
use serde::{Deserialize, Serialize};

/// An additional checksum algorithm S3 supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Algorithm {
    /// CRC-32 (ISO-HDLC), the current SDKs' default.
    Crc32,
    /// CRC-32C (Castagnoli).
    Crc32c,
    /// CRC-64/NVME, what S3 computes when the client sends no checksum.
    Crc64Nvme,
    /// SHA-1.
    Sha1,
    /// SHA-256.
    Sha256,
}

impl Algorithm {
    /// Every algorithm, in the order AWS lists them.
    pub const ALL: [Algorithm; 5] = [
        Algorithm::Crc32,
        Algorithm::Crc32c,
        Algorithm::Crc64Nvme,
        Algorithm::Sha1,
        Algorithm::Sha256,
    ];

    /// The name AWS uses on the wire (`CRC32`) and in its error messages.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Crc32 => "CRC32",
            Algorithm::Crc32c => "CRC32C",
            Algorithm::Crc64Nvme => "CRC64NVME",
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
        }
    }

    /// The header (or trailing header) carrying this checksum.
    pub fn header(self) -> &'static str {
        match self {
            Algorithm::Crc32 => "x-amz-checksum-crc32",
            Algorithm::Crc32c => "x-amz-checksum-crc32c",
            Algorithm::Crc64Nvme => "x-amz-checksum-crc64nvme",
            Algorithm::Sha1 => "x-amz-checksum-sha1",
            Algorithm::Sha256 => "x-amz-checksum-sha256",
        }
    }

    /// Parses an algorithm name as `x-amz-sdk-checksum-algorithm` carries it (any case).
    pub fn from_name(s: &str) -> Option<Algorithm> {
        Self::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(s.trim()))
    }

    /// The algorithm whose header is `name` (lower case).
    pub fn from_header(name: &str) -> Option<Algorithm> {
        Self::ALL
            .into_iter()
            .find(|a| a.header().eq_ignore_ascii_case(name.trim()))
    }

    /// Bytes of a digest.
    pub fn digest_len(self) -> usize {
        match self {
            Algorithm::Crc32 | Algorithm::Crc32c => 4,
            Algorithm::Crc64Nvme => 8,
            Algorithm::Sha1 => 20,
            Algorithm::Sha256 => 32,
        }
    }

    /// Decodes a checksum value (base64 of the big-endian digest). `None` when it is not
    /// canonical base64 of a digest of the right length, which AWS refuses as invalid
    /// rather than as a mismatch.
    pub fn decode(self, value: &str) -> Option<Vec<u8>> {
        let raw = B64.decode(value.trim()).ok()?;
        (raw.len() == self.digest_len()).then_some(raw)
    }
}

/// The full-object checksum stored with an object (or a part) and returned by
/// `GetObject`/`HeadObject` with `x-amz-checksum-mode: ENABLED` and `GetObjectAttributes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectChecksum {
    /// The algorithm.
    pub algorithm: Algorithm,
    /// The value as AWS prints it: base64 of the big-endian digest.
    pub value: String,
}

impl ObjectChecksum {
    /// The checksum of `raw` digest bytes.
    pub fn new(algorithm: Algorithm, raw: &[u8]) -> Self {
        Self {
            algorithm,
            value: B64.encode(raw),
        }
    }

    /// The s3s form (one field set, `FULL_OBJECT`), which the output types of PutObject,
    /// GetObject, HeadObject and GetObjectAttributes share.
    pub fn to_dto(&self) -> s3s::dto::Checksum {
        let v = Some(self.value.clone());
        let mut c = s3s::dto::Checksum {
            checksum_type: Some(s3s::dto::ChecksumType::from_static(
                s3s::dto::ChecksumType::FULL_OBJECT,
            )),
            ..Default::default()
        };
        match self.algorithm {
            Algorithm::Crc32 => c.checksum_crc32 = v,
            Algorithm::Crc32c => c.checksum_crc32c = v,
            Algorithm::Crc64Nvme => c.checksum_crc64nvme = v,
            Algorithm::Sha1 => c.checksum_sha1 = v,
            Algorithm::Sha256 => c.checksum_sha256 = v,
        }
        c
    }
}

/// Base64 of a binary digest, as `Content-MD5` and the checksum headers carry it.
pub fn base64(raw: &[u8]) -> String {
    B64.encode(raw)
}

/// Where the client's value of the additional checksum comes from.
#[derive(Clone, Debug)]
pub enum Declared {
    /// An `x-amz-checksum-*` header, decoded.
    Header(Vec<u8>),
    /// A trailing header of the `aws-chunked` body (`x-amz-trailer`), read at its end.
    Trailer(Trailers),
    /// No value: the checksum is only computed and stored (`x-amz-sdk-checksum-algorithm`
    /// alone, or S3's default CRC64/NVME).
    Compute,
}

/// What a request declares about its body, checked as it streams into the blob store.
#[derive(Clone, Debug, Default)]
pub struct Expected {
    /// `Content-MD5`, decoded.
    pub content_md5: Option<[u8; 16]>,
    /// `x-amz-content-sha256` when it is a digest (not `UNSIGNED-PAYLOAD`/`STREAMING-…`).
    pub content_sha256: Option<Digest>,
    /// The additional checksum to compute, and the client's value if any.
    pub checksum: Option<(Algorithm, Declared)>,
    /// The decoded length (`Content-Length`, or `x-amz-decoded-content-length` of an
    /// `aws-chunked` body).
    pub length: Option<u64>,
}

/// Why a body was refused after (or while) it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// `Content-MD5` differs from the body's MD5.
    ContentMd5,
    /// `x-amz-content-sha256` differs from the body's SHA-256.
    ContentSha256 {
        /// What the client sent (hex).
        client: String,
        /// What was computed (hex).
        computed: String,
    },
    /// The additional checksum differs.
    Checksum(Algorithm),
    /// The body is not as long as declared.
    Length {
        /// Declared bytes.
        declared: u64,
        /// Bytes received (so far, when too many).
        got: u64,
    },
    /// The trailing checksum named by `x-amz-trailer` is missing or malformed.
    Trailer(String),
}

/// The trailing headers of an `aws-chunked` body, filled by
/// [`crate::body::AwsChunkedDecoder`] when it reaches them and read by the body writer once
/// the body has ended (the only time they can be known).
#[derive(Clone, Debug, Default)]
pub struct Trailers(Arc<parking_lot::Mutex<Option<Received>>>);

/// Trailing headers as received: lower-cased names and their values.
type Received = Vec<(String, String)>;

impl Trailers {
    /// Records the trailing headers (names lower-cased).
    pub fn set(&self, headers: Vec<(String, String)>) {
        *self.0.lock() = Some(headers);
    }

    /// The value of trailing header `name`, once the body has ended.
    pub fn get(&self, name: &str) -> Option<String> {
        self.0
            .lock()
            .as_ref()?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }
}

/// The `x-amz-trailer` an `aws-chunked` request declared, handed from the gateway adapter to
/// the handlers in the request extensions, with the handle its trailing headers arrive in.
#[derive(Clone, Debug)]
pub struct ChunkedTrailer {
    /// The declared trailing header (`x-amz-checksum-crc32`), if any.
    pub declared: Option<String>,
    /// Filled by the decoder.
    pub trailers: Trailers,
}

/// One additional checksum being computed over a body (SHA-256 is not computed here: it is
/// the blob store's digest).
pub enum Hasher {
    /// CRC-32.
    Crc32(s3s::crypto::Crc32),
    /// CRC-32C.
    Crc32c(s3s::crypto::Crc32c),
    /// CRC-64/NVME.
    Crc64Nvme(s3s::crypto::Crc64Nvme),
    /// SHA-1.
    Sha1(s3s::crypto::Sha1),
    /// SHA-256, taken from the blob digest at the end.
    Sha256,
}

impl Hasher {
    /// A hasher for `algorithm`.
    pub fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Crc32 => Hasher::Crc32(s3s::crypto::Crc32::new()),
            Algorithm::Crc32c => Hasher::Crc32c(s3s::crypto::Crc32c::new()),
            Algorithm::Crc64Nvme => Hasher::Crc64Nvme(s3s::crypto::Crc64Nvme::new()),
            Algorithm::Sha1 => Hasher::Sha1(s3s::crypto::Sha1::new()),
            Algorithm::Sha256 => Hasher::Sha256,
        }
    }

    /// Feeds bytes.
    pub fn update(&mut self, b: &[u8]) {
        match self {
            Hasher::Crc32(h) => h.update(b),
            Hasher::Crc32c(h) => h.update(b),
            Hasher::Crc64Nvme(h) => h.update(b),
            Hasher::Sha1(h) => h.update(b),
            Hasher::Sha256 => {}
        }
    }

    /// The digest; `None` for SHA-256, which is the body's blob digest.
    pub fn finish(self) -> Option<Vec<u8>> {
        match self {
            Hasher::Crc32(h) => Some(h.finalize().to_vec()),
            Hasher::Crc32c(h) => Some(h.finalize().to_vec()),
            Hasher::Crc64Nvme(h) => Some(h.finalize().to_vec()),
            Hasher::Sha1(h) => Some(h.finalize().to_vec()),
            Hasher::Sha256 => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(a: Algorithm, data: &[u8]) -> String {
        let mut h = Hasher::new(a);
        h.update(&data[..3]);
        h.update(&data[3..]);
        base64(&h.finish().unwrap_or_else(|| Digest::of(data).0.to_vec()))
    }

    #[test]
    fn digests_match_the_values_aws_documents() {
        // Values the AWS SDKs compute for "hello world".
        let d = b"hello world";
        assert_eq!(of(Algorithm::Crc32, d), "DUoRhQ==");
        assert_eq!(of(Algorithm::Crc32c, d), "yZRlqg==");
        assert_eq!(of(Algorithm::Crc64Nvme, d), "jSnVw/bqjr4=");
        assert_eq!(of(Algorithm::Sha1, d), "Kq5sNclPz7QV2+lfQIuc6R7oRu0=");
        assert_eq!(
            of(Algorithm::Sha256, d),
            "uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek="
        );
    }

    #[test]
    fn values_of_the_wrong_length_or_not_base64_are_invalid() {
        assert!(Algorithm::Crc32.decode("DUoRhQ==").is_some());
        assert!(Algorithm::Crc32.decode("DUoRhQAA").is_none());
        assert!(Algorithm::Crc32.decode("not base64!").is_none());
        assert!(Algorithm::Sha1.decode("DUoRhQ==").is_none());
        assert_eq!(
            Algorithm::from_name("crc64nvme"),
            Some(Algorithm::Crc64Nvme)
        );
        assert_eq!(
            Algorithm::from_header("X-Amz-Checksum-Crc32c"),
            Some(Algorithm::Crc32c)
        );
        assert_eq!(Algorithm::from_name("md5"), None);
    }
}
