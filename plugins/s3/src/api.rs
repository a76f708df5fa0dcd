//! The S3 API: an [`s3s::S3`] implementation over the plugin state.
//!
//! s3s parses requests and writes responses (XML, headers, error shapes); this module holds
//! the semantics: validation as AWS does it, versioning, multipart rules, conditional
//! requests, and the global bucket-name index. Every change goes through
//! [`cryopod::StateCell::write`], so a failing request changes nothing and every change is
//! tracked for persistence. Bodies are stored in the blob store before the state write, so
//! no blob I/O happens under the state lock.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use cryopod::{Scope, StateCell};
use imbl::{OrdMap, Vector};
use md5::{Digest as _, Md5};
use parking_lot::RwLock;
use s3s::dto::*;
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};
use time::OffsetDateTime;

use crate::body::{self, StoreError, Stored};
use crate::checksum::{Algorithm, ChunkedTrailer, Declared, Expected, Mismatch};
use crate::state::{
    Bucket, Chunk, CorsRule, NULL_VERSION, ObjectMeta, ObjectVersion, Pairs, S3State, Upload,
    Versioning,
};

/// Largest single PUT AWS accepts (5 GiB).
pub const MAX_PUT_BYTES: u64 = 5 * 1024 * 1024 * 1024;
/// Smallest part AWS accepts for every part but the last.
pub const MIN_PART_BYTES: u64 = 5 * 1024 * 1024;
/// Longest object key AWS accepts, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Most bytes of user-defined metadata (`x-amz-meta-*` names, without the prefix, and
/// values, in UTF-8) AWS accepts on an object.
pub const MAX_USER_METADATA_BYTES: usize = 2 * 1024;
/// Default and largest page size of listings.
const MAX_KEYS: i32 = 1000;

/// What the gateway derived from a request, handed to the backend in request extensions.
#[derive(Clone, Debug)]
pub struct RequestCtx {
    /// Account and region of the caller.
    pub scope: Scope,
}

/// State shared by the request handlers and the provider.
pub struct Inner {
    /// The live state.
    pub cell: StateCell<S3State>,
    /// Bucket name → scope holding it. Derived from the state (bucket names are global in
    /// AWS); rebuilt on restore, kept in step by create and delete inside their writes.
    pub index: RwLock<BTreeMap<String, Scope>>,
}

impl Inner {
    /// Rebuilds the name index from the live state (after a restore).
    pub fn rebuild_index(&self) {
        let idx = self.cell.read(|s| s.bucket_names());
        *self.index.write() = idx;
    }

    fn bucket_scope(&self, name: &str) -> S3Result<Scope> {
        self.index
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| no_such_bucket(name))
    }

    /// A copy of a bucket (O(1): its maps are persistent) and its scope.
    pub fn bucket(&self, name: &str) -> S3Result<(Scope, Bucket)> {
        let scope = self.bucket_scope(name)?;
        let b = self
            .cell
            .read(|s| {
                s.scopes
                    .get(&scope)
                    .and_then(|r| r.buckets.get(name))
                    .cloned()
            })
            .ok_or_else(|| no_such_bucket(name))?;
        Ok((scope, b))
    }

    /// Runs `f` on a bucket inside a transactional write of its scope.
    async fn write_bucket<T>(
        &self,
        name: &str,
        f: impl FnOnce(&mut Bucket) -> S3Result<T>,
    ) -> S3Result<T> {
        let scope = self.bucket_scope(name)?;
        self.cell
            .write(&scope, |s| {
                let b = s
                    .scopes
                    .get_mut(&scope)
                    .buckets
                    .get_mut(name)
                    .ok_or_else(|| no_such_bucket(name))?;
                f(b)
            })
            .await
    }
}

/// The s3s backend.
#[derive(Clone)]
pub struct Backend {
    /// Shared state.
    pub inner: Arc<Inner>,
}

// ---------------------------------------------------------------- helpers

/// Copies a [`s3s::dto::Checksum`] into an s3s output type: PutObject, GetObject, HeadObject,
/// UploadPart and ListParts' parts all carry the same `checksum_*` fields (and most a
/// `checksum_type`), but share no type.
macro_rules! set_checksum {
    ($out:expr, $c:expr $(, $typ:ident)?) => {{
        let c: s3s::dto::Checksum = $c;
        $out.checksum_crc32 = c.checksum_crc32;
        $out.checksum_crc32c = c.checksum_crc32c;
        $out.checksum_crc64nvme = c.checksum_crc64nvme;
        $out.checksum_sha1 = c.checksum_sha1;
        $out.checksum_sha256 = c.checksum_sha256;
        $($out.$typ = c.checksum_type;)?
    }};
}

fn no_such_bucket(name: &str) -> S3Error {
    s3_error!(NoSuchBucket, "The specified bucket does not exist: {name}")
}

fn no_such_key(key: &str) -> S3Error {
    s3_error!(NoSuchKey, "The specified key does not exist: {key}")
}

fn no_such_upload(id: &str) -> S3Error {
    s3_error!(
        NoSuchUpload,
        "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed: {id}"
    )
}

fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn odt(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn ts(ms: i64) -> Timestamp {
    Timestamp::from(odt(ms))
}

fn new_version_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn scope_of<T>(req: &S3Request<T>) -> Scope {
    req.extensions
        .get::<RequestCtx>()
        .map(|c| c.scope.clone())
        .unwrap_or_default()
}

/// A failed body write as AWS answers it: the integrity codes for bodies that are not what
/// the request declared, and [`io_error`] for the store.
fn store_error(e: StoreError) -> S3Error {
    match e {
        StoreError::Body(m) => s3_error!(IncompleteBody, "could not read the request body: {m}"),
        StoreError::TooLarge => s3_error!(
            EntityTooLarge,
            "Your proposed upload exceeds the maximum allowed object size."
        ),
        StoreError::Io(e) => io_error("storing the request body", &e),
        StoreError::Mismatch(m) => mismatch_error(m),
    }
}

/// AWS's answer to a body that does not match what its request declared.
fn mismatch_error(m: Mismatch) -> S3Error {
    match m {
        Mismatch::ContentMd5 => s3_error!(
            BadDigest,
            "The Content-MD5 you specified did not match what we received."
        ),
        Mismatch::ContentSha256 { client, computed } => {
            tracing::debug!(%client, %computed, "x-amz-content-sha256 mismatch");
            let mut e = S3Error::with_message(
                S3ErrorCode::Custom("XAmzContentSHA256Mismatch".into()),
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
            );
            e.set_status_code(http::StatusCode::BAD_REQUEST);
            e
        }
        Mismatch::Checksum(a) => S3Error::with_message(
            S3ErrorCode::BadDigest,
            format!(
                "The {} you specified did not match the calculated checksum.",
                a.name()
            ),
        ),
        Mismatch::Length { declared, got } => {
            tracing::debug!(declared, got, "decoded length mismatch");
            s3_error!(
                IncompleteBody,
                "You did not provide the number of bytes specified by the Content-Length HTTP header"
            )
        }
        Mismatch::Trailer(msg) => S3Error::with_message(S3ErrorCode::InvalidRequest, msg),
    }
}

/// An I/O failure of the blob store, as S3 answers it and logged: a full disk (or quota) is
/// 503 `ServiceUnavailable`, which SDKs retry and which says the condition is the service's,
/// not the request's; anything else is 500 `InternalError`. Both name the cause ("No space
/// left on device (os error 28)"), which s3s's bare internal error would not.
pub fn io_error(what: &str, e: &std::io::Error) -> S3Error {
    tracing::error!(error = %e, "{what} failed");
    let full = matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    );
    if full {
        S3Error::with_message(
            S3ErrorCode::ServiceUnavailable,
            format!("The emulator's storage is full: {what} failed: {e}"),
        )
    } else {
        S3Error::with_message(
            S3ErrorCode::InternalError,
            format!("We encountered an internal error: {what} failed: {e}"),
        )
    }
}

/// Streams a request body into the blob store, checked against `expected`.
async fn store_body(
    inner: &Inner,
    body: Option<StreamingBlob>,
    limit: u64,
    expected: &Expected,
) -> S3Result<Stored> {
    let blobs = &inner.cell.context().blobs;
    let empty = futures::stream::empty::<Result<bytes::Bytes, std::io::Error>>();
    match body {
        Some(b) => body::store_stream(blobs, b, limit, expected).await,
        None => body::store_stream(blobs, empty, limit, expected).await,
    }
    .map_err(store_error)
}

/// What a PutObject or UploadPart request declares about its body: `Content-MD5`, a hex
/// `x-amz-content-sha256`, one `x-amz-checksum-*` (header or declared trailer), the
/// decoded length. Malformed values are refused here, before the body is read, with the
/// codes AWS uses (`InvalidDigest`, `InvalidArgument`, `InvalidRequest`). `default` is the
/// checksum computed when the client names none (S3 stores CRC64/NVME for new objects).
fn expected_body<T>(req: &S3Request<T>, default: Option<Algorithm>) -> S3Result<Expected> {
    let headers = &req.headers;
    let text = |name: &str| -> S3Result<Option<&str>> {
        headers
            .get(name)
            .map(|v| {
                v.to_str().map_err(|_| {
                    S3Error::with_message(
                        S3ErrorCode::InvalidArgument,
                        format!("invalid header: {name}"),
                    )
                })
            })
            .transpose()
    };
    let content_md5 = match text("content-md5")? {
        None => None,
        Some(v) => Some(
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, v.trim())
                .ok()
                .and_then(|raw| <[u8; 16]>::try_from(raw).ok())
                .ok_or_else(|| {
                    s3_error!(InvalidDigest, "The Content-MD5 you specified was invalid.")
                })?,
        ),
    };
    let content_sha256 = match text("x-amz-content-sha256")? {
        Some(v) if v != "UNSIGNED-PAYLOAD" && !v.starts_with("STREAMING-") => Some(
            hex::decode(v)
                .ok()
                .and_then(|raw| <[u8; 32]>::try_from(raw).ok())
                .map(cryopod::Digest)
                .ok_or_else(|| {
                    s3_error!(
                        InvalidArgument,
                        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER or a valid sha256 value."
                    )
                })?,
        ),
        _ => None,
    };
    let multiple = || {
        s3_error!(
            InvalidRequest,
            "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
        )
    };
    let mut found: Option<(Algorithm, Declared)> = None;
    for a in Algorithm::ALL {
        if let Some(v) = text(a.header())? {
            if found.is_some() {
                return Err(multiple());
            }
            let raw = a.decode(v).ok_or_else(|| {
                S3Error::with_message(
                    S3ErrorCode::InvalidRequest,
                    format!("Value for {} header is invalid.", a.header()),
                )
            })?;
            found = Some((a, Declared::Header(raw)));
        }
    }
    if let Some(ct) = req.extensions.get::<ChunkedTrailer>()
        && let Some(name) = &ct.declared
    {
        let a = Algorithm::from_header(name).ok_or_else(|| {
            s3_error!(
                InvalidRequest,
                "The value specified in the x-amz-trailer header is not supported"
            )
        })?;
        if found.is_some() {
            return Err(multiple());
        }
        found = Some((a, Declared::Trailer(ct.trailers.clone())));
    }
    if let Some(v) = text("x-amz-sdk-checksum-algorithm")? {
        let a = Algorithm::from_name(v).ok_or_else(|| {
            s3_error!(
                InvalidRequest,
                "Checksum algorithm provided is unsupported. Please try again with any of the valid types: [CRC32, CRC32C, CRC64NVME, SHA1, SHA256]"
            )
        })?;
        match &found {
            Some((f, _)) if *f != a => {
                return Err(s3_error!(
                    InvalidRequest,
                    "Value for x-amz-sdk-checksum-algorithm header is invalid."
                ));
            }
            Some(_) => {}
            None => found = Some((a, Declared::Compute)),
        }
    }
    let length = match text("content-length")? {
        None => None,
        Some(v) => Some(
            v.trim()
                .parse::<u64>()
                .map_err(|_| s3_error!(InvalidArgument, "invalid header: content-length"))?,
        ),
    };
    Ok(Expected {
        content_md5,
        content_sha256,
        checksum: found.or_else(|| default.map(|a| (a, Declared::Compute))),
        length,
    })
}

/// Refuses user-defined metadata over AWS's 2 KB (names without `x-amz-meta-`, and values).
fn check_metadata_size(m: Option<&Metadata>) -> S3Result<()> {
    let size: usize = m
        .map(|m| m.iter().map(|(k, v)| k.len() + v.len()).sum())
        .unwrap_or(0);
    if size > MAX_USER_METADATA_BYTES {
        return Err(s3_error!(
            MetadataTooLarge,
            "Your metadata headers exceed the maximum allowed metadata size."
        ));
    }
    Ok(())
}

/// AWS bucket naming rules for general purpose buckets.
pub fn validate_bucket_name(name: &str) -> S3Result<()> {
    let bad = |why: &str| {
        Err(s3_error!(
            InvalidBucketName,
            "The specified bucket is not valid: {name} ({why})"
        ))
    };
    if name.len() < 3 || name.len() > 63 {
        return bad("must be 3 to 63 characters long");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return bad("only lowercase letters, digits, dots and hyphens are allowed");
    }
    let first = name.as_bytes()[0];
    let last = name.as_bytes()[name.len() - 1];
    if !(first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric()) {
        return bad("must begin and end with a letter or digit");
    }
    if name.contains("..") || name.contains(".-") || name.contains("-.") {
        return bad("dots must not be adjacent to dots or hyphens");
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return bad("must not be formatted as an IP address");
    }
    for prefix in ["xn--", "sthree-", "amzn-s3-demo-"] {
        if name.starts_with(prefix) {
            return bad("reserved prefix");
        }
    }
    for suffix in ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"] {
        if name.ends_with(suffix) {
            return bad("reserved suffix");
        }
    }
    Ok(())
}

fn validate_key(key: &str) -> S3Result<()> {
    if key.is_empty() {
        return Err(s3_error!(
            InvalidArgument,
            "The object key must not be empty"
        ));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(s3_error!(
            KeyTooLongError,
            "Your key is too long: {} bytes, the limit is {MAX_KEY_BYTES}",
            key.len()
        ));
    }
    Ok(())
}

fn tags_from_set(set: &[Tag], max: usize) -> S3Result<Pairs> {
    if set.len() > max {
        return Err(s3_error!(
            InvalidTag,
            "Object tags cannot be greater than {max}"
        ));
    }
    let mut out = Pairs::new();
    for t in set {
        let k = t.key.clone().unwrap_or_default();
        let v = t.value.clone().unwrap_or_default();
        check_tag(&k, &v)?;
        if out.insert(k.clone(), v).is_some() {
            return Err(s3_error!(
                InvalidTag,
                "Cannot provide multiple Tags with the same key: {k}"
            ));
        }
    }
    Ok(out)
}

fn check_tag(k: &str, v: &str) -> S3Result<()> {
    if k.is_empty() || k.chars().count() > 128 {
        return Err(s3_error!(
            InvalidTag,
            "The TagKey you have provided is invalid"
        ));
    }
    if v.chars().count() > 256 {
        return Err(s3_error!(
            InvalidTag,
            "The TagValue you have provided is invalid"
        ));
    }
    Ok(())
}

fn tags_from_header(h: Option<&str>) -> S3Result<Pairs> {
    let Some(h) = h else { return Ok(Pairs::new()) };
    let set: Vec<Tag> = form_urlencoded::parse(h.as_bytes())
        .map(|(k, v)| Tag {
            key: Some(k.into_owned()),
            value: Some(v.into_owned()),
        })
        .collect();
    tags_from_set(&set, 10)
}

fn tag_set(tags: &Pairs) -> TagSet {
    tags.iter()
        .map(|(k, v)| Tag {
            key: Some(k.clone()),
            value: Some(v.clone()),
        })
        .collect()
}

fn user_meta(m: Option<Metadata>) -> Pairs {
    m.unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect()
}

fn meta_out(m: &Pairs) -> Option<Metadata> {
    if m.is_empty() {
        None
    } else {
        Some(
            m.iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<HashMap<_, _>>(),
        )
    }
}

fn fmt_http_date(ts: &Timestamp) -> Option<String> {
    let mut buf = Vec::new();
    ts.format(TimestampFormat::HttpDate, &mut buf).ok()?;
    String::from_utf8(buf).ok()
}

fn parse_http_date(s: &str) -> Option<Timestamp> {
    Timestamp::parse(TimestampFormat::HttpDate, s).ok()
}

fn etag(v: &str) -> ETag {
    ETag::Strong(v.to_string())
}

/// Seconds resolution, as HTTP dates carry.
fn secs(t: &Timestamp) -> i64 {
    OffsetDateTime::from(t.clone()).unix_timestamp()
}

fn etag_matches(cond: &ETagCondition, current: &str) -> bool {
    match cond {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value() == current,
    }
}

/// GET/HEAD preconditions in the order and with the precedence AWS documents.
fn check_read_preconditions(
    v: &ObjectVersion,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> S3Result<()> {
    let modified = v.last_modified_ms.div_euclid(1000);
    match if_match {
        Some(c) if !etag_matches(c, &v.etag) => {
            return Err(s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold"
            ));
        }
        Some(_) => {}
        None => {
            if let Some(t) = if_unmodified_since
                && modified > secs(t)
            {
                return Err(s3_error!(
                    PreconditionFailed,
                    "At least one of the pre-conditions you specified did not hold"
                ));
            }
        }
    }
    match if_none_match {
        Some(c) if etag_matches(c, &v.etag) => return Err(not_modified()),
        Some(_) => {}
        None => {
            if let Some(t) = if_modified_since
                && modified <= secs(t)
            {
                return Err(not_modified());
            }
        }
    }
    Ok(())
}

fn not_modified() -> S3Error {
    let mut e = S3Error::new(S3ErrorCode::NotModified);
    e.set_message("Not Modified");
    e
}

/// Finds the version a read addresses: the current one, or the one named by `version_id`.
fn find_version<'a>(
    b: &'a Bucket,
    key: &str,
    version_id: Option<&str>,
    head: bool,
) -> S3Result<&'a ObjectVersion> {
    let entry = b.objects.get(key);
    match version_id {
        None => {
            let v = entry
                .and_then(|e| e.latest())
                .ok_or_else(|| no_such_key(key))?;
            if v.delete_marker {
                let mut e = no_such_key(key);
                let mut h = http::HeaderMap::new();
                h.insert(
                    "x-amz-delete-marker",
                    http::HeaderValue::from_static("true"),
                );
                if let Ok(val) = http::HeaderValue::from_str(&v.version_id) {
                    h.insert("x-amz-version-id", val);
                }
                e.set_headers(h);
                return Err(e);
            }
            Ok(v)
        }
        Some(id) => {
            let v = entry
                .and_then(|e| e.versions.iter().find(|v| v.version_id == id))
                .ok_or_else(|| {
                    if id != NULL_VERSION && uuid::Uuid::try_parse(id).is_err() {
                        s3_error!(InvalidArgument, "Invalid version id specified")
                    } else {
                        s3_error!(NoSuchVersion, "The specified version does not exist.")
                    }
                })?;
            if v.delete_marker {
                // HEAD and GET of a delete marker by version id both answer 405.
                let _ = head;
                let mut e = s3_error!(
                    MethodNotAllowed,
                    "The specified method is not allowed against this resource."
                );
                let mut h = http::HeaderMap::new();
                h.insert(
                    "x-amz-delete-marker",
                    http::HeaderValue::from_static("true"),
                );
                h.insert("allow", http::HeaderValue::from_static("DELETE"));
                e.set_headers(h);
                return Err(e);
            }
            Ok(v)
        }
    }
}

/// The version id a response reports: none for buckets that never had versioning.
fn reported_version(b: &Bucket, id: &str) -> Option<String> {
    if b.versioning == Versioning::Unversioned {
        None
    } else {
        Some(id.to_string())
    }
}

/// Installs `v` as the newest version of `key` following the bucket's versioning rules.
fn put_version(b: &mut Bucket, key: &str, mut v: ObjectVersion) -> String {
    let entry = b.objects.entry(key.to_string()).or_default();
    match b.versioning {
        Versioning::Enabled => {
            v.version_id = new_version_id();
        }
        Versioning::Unversioned | Versioning::Suspended => {
            v.version_id = NULL_VERSION.to_string();
            entry.versions.retain(|old| old.version_id != NULL_VERSION);
        }
    }
    let id = v.version_id.clone();
    entry.versions.push_front(v);
    id
}

// One parameter per S3 representation header, in the order the inputs list them; a struct
// would only rename them.
#[allow(clippy::too_many_arguments)]
fn meta_from_parts(
    content_type: Option<String>,
    content_encoding: Option<String>,
    content_disposition: Option<String>,
    content_language: Option<String>,
    cache_control: Option<String>,
    expires: Option<&Timestamp>,
    website_redirect_location: Option<String>,
    storage_class: Option<String>,
    metadata: Option<Metadata>,
    tags: Pairs,
) -> ObjectMeta {
    ObjectMeta {
        content_type,
        content_encoding,
        content_disposition,
        content_language,
        cache_control,
        expires: expires.and_then(fmt_http_date),
        website_redirect_location,
        storage_class: storage_class.filter(|s| s != "STANDARD"),
        user: user_meta(metadata),
        tags,
        checksum: None,
    }
}

fn multipart_etag(md5s: &[String]) -> S3Result<String> {
    let mut h = Md5::new();
    for m in md5s {
        let raw = hex::decode(m).map_err(|_| s3_error!(InvalidPart, "bad part ETag"))?;
        h.update(&raw);
    }
    Ok(format!("{}-{}", hex::encode(h.finalize()), md5s.len()))
}

fn parse_copy_source(cs: &CopySource) -> S3Result<(String, String, Option<String>)> {
    match cs {
        CopySource::Bucket {
            bucket,
            key,
            version_id,
        } => Ok((
            bucket.to_string(),
            key.to_string(),
            version_id.as_ref().map(|v| v.to_string()),
        )),
        _ => Err(s3_error!(
            NotImplemented,
            "access point and outpost copy sources are not supported"
        )),
    }
}

fn check_copy_preconditions(
    v: &ObjectVersion,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> S3Result<()> {
    // For copies every failed condition is 412 (there is no 304 for a copy).
    match check_read_preconditions(
        v,
        if_match,
        if_none_match,
        if_modified_since,
        if_unmodified_since,
    ) {
        Err(e) if *e.code() == S3ErrorCode::NotModified => Err(s3_error!(
            PreconditionFailed,
            "At least one of the pre-conditions you specified did not hold"
        )),
        other => other,
    }
}

fn max_keys(v: Option<i32>) -> S3Result<usize> {
    match v {
        None => Ok(MAX_KEYS as usize),
        Some(n) if n < 0 => Err(s3_error!(
            InvalidArgument,
            "max-keys must be a non-negative integer"
        )),
        Some(n) => Ok(n.min(MAX_KEYS) as usize),
    }
}

/// One page of a key listing: objects and common prefixes, in key order.
struct KeyPage {
    contents: Vec<(String, ObjectVersion)>,
    prefixes: Vec<String>,
    truncated: bool,
    /// The last key or common prefix returned, for markers and continuation tokens.
    last: Option<String>,
}

/// The shared walk behind ListObjects and ListObjectsV2.
fn list_keys(
    b: &Bucket,
    prefix: &str,
    delimiter: Option<&str>,
    after: Option<&str>,
    max: usize,
) -> KeyPage {
    let mut page = KeyPage {
        contents: Vec::new(),
        prefixes: Vec::new(),
        truncated: false,
        last: None,
    };
    let start: Bound<String> = match after {
        Some(a) if a >= prefix => Bound::Excluded(a.to_string()),
        _ => Bound::Included(prefix.to_string()),
    };
    let delimiter = delimiter.filter(|d| !d.is_empty());
    let mut count = 0usize;
    let mut skip_prefix: Option<String> = None;
    for (key, entry) in b.objects.range((start, Bound::Unbounded)) {
        if !key.starts_with(prefix) {
            break;
        }
        if let Some(sp) = &skip_prefix
            && key.starts_with(sp.as_str())
        {
            continue;
        }
        let Some(v) = entry.latest() else { continue };
        if v.delete_marker {
            continue;
        }
        let common = delimiter.and_then(|d| {
            key[prefix.len()..]
                .find(d)
                .map(|i| key[..prefix.len() + i + d.len()].to_string())
        });
        if let Some(cp) = &common
            && after.is_some_and(|a| a >= cp.as_str() && a.starts_with(cp.as_str()))
        {
            // This common prefix was returned on an earlier page.
            skip_prefix = Some(cp.clone());
            continue;
        }
        if count == max {
            page.truncated = true;
            break;
        }
        count += 1;
        match common {
            Some(cp) => {
                page.last = Some(cp.clone());
                skip_prefix = Some(cp.clone());
                page.prefixes.push(cp);
            }
            None => {
                page.last = Some(key.clone());
                page.contents.push((key.clone(), v.clone()));
            }
        }
    }
    page
}

fn object_out(key: &str, v: &ObjectVersion, owner: Option<Owner>) -> Object {
    Object {
        e_tag: Some(etag(&v.etag)),
        key: Some(key.to_string()),
        last_modified: Some(ts(v.last_modified_ms)),
        size: Some(v.size as i64),
        storage_class: Some(ObjectStorageClass::from(
            v.meta
                .storage_class
                .clone()
                .unwrap_or_else(|| "STANDARD".into()),
        )),
        owner,
        ..Default::default()
    }
}

fn owner(account: &str) -> Owner {
    Owner {
        display_name: Some("webfile".into()),
        id: Some(account.to_string()),
    }
}

fn cors_in(rules: &[CORSRule]) -> Vec<CorsRule> {
    rules
        .iter()
        .map(|r| CorsRule {
            id: r.id.clone(),
            allowed_headers: r.allowed_headers.clone().unwrap_or_default(),
            allowed_methods: r.allowed_methods.clone(),
            allowed_origins: r.allowed_origins.clone(),
            expose_headers: r.expose_headers.clone().unwrap_or_default(),
            max_age_seconds: r.max_age_seconds,
        })
        .collect()
}

fn cors_out(rules: &[CorsRule]) -> Vec<CORSRule> {
    rules
        .iter()
        .map(|r| CORSRule {
            id: r.id.clone(),
            allowed_headers: (!r.allowed_headers.is_empty()).then(|| r.allowed_headers.clone()),
            allowed_methods: r.allowed_methods.clone(),
            allowed_origins: r.allowed_origins.clone(),
            expose_headers: (!r.expose_headers.is_empty()).then(|| r.expose_headers.clone()),
            max_age_seconds: r.max_age_seconds,
        })
        .collect()
}

fn range_of(range: Option<&Range>, size: u64) -> S3Result<Option<std::ops::Range<u64>>> {
    match range {
        None => Ok(None),
        Some(r) => match r.check(size) {
            Ok(rg) => Ok(Some(rg)),
            Err(_) => {
                let mut e = s3_error!(InvalidRange, "The requested range is not satisfiable");
                e.set_status_code(http::StatusCode::RANGE_NOT_SATISFIABLE);
                let mut h = http::HeaderMap::new();
                if let Ok(v) = http::HeaderValue::from_str(&format!("bytes */{size}")) {
                    h.insert(http::header::CONTENT_RANGE, v);
                }
                e.set_headers(h);
                Err(e)
            }
        },
    }
}

/// The region a `LocationConstraint` names (`EU` is the legacy name of eu-west-1).
fn constraint_region(c: &str) -> &str {
    if c == "EU" { "eu-west-1" } else { c }
}

// ---------------------------------------------------------------- the API

#[async_trait::async_trait]
impl S3 for Backend {
    // ------------------------------------------------------------ buckets

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let caller = scope_of(&req);
        let input = req.input;
        let name = input.bucket;
        validate_bucket_name(&name)?;
        let constraint = input
            .create_bucket_configuration
            .and_then(|c| c.location_constraint)
            .map(|c| c.as_str().to_string())
            .filter(|c| !c.is_empty());
        let region = match &constraint {
            Some(c) if c == "us-east-1" => {
                return Err(s3_error!(
                    InvalidLocationConstraint,
                    "The specified location-constraint is not valid"
                ));
            }
            Some(c) => {
                let r = constraint_region(c).to_string();
                if r != caller.region {
                    return Err(s3_error!(
                        IllegalLocationConstraintException,
                        "The {r} location constraint is incompatible for the region specific endpoint this request was sent to ({}).",
                        caller.region
                    ));
                }
                r
            }
            None => {
                if caller.region != "us-east-1" {
                    return Err(s3_error!(
                        IllegalLocationConstraintException,
                        "The unspecified location constraint is incompatible for the region specific endpoint this request was sent to."
                    ));
                }
                "us-east-1".to_string()
            }
        };
        let scope = Scope::new(caller.account.clone(), region);
        let index = &self.inner.index;
        let created_ms = now_ms();
        self.inner
            .cell
            .write(&scope, |s| {
                if let Some(owner_scope) = index.read().get(&name) {
                    return Err(if owner_scope.account == scope.account {
                        s3_error!(
                            BucketAlreadyOwnedByYou,
                            "Your previous request to create the named bucket succeeded and you already own it."
                        )
                    } else {
                        s3_error!(
                            BucketAlreadyExists,
                            "The requested bucket name is not available. The bucket namespace is shared by all users of the system. Please select a different name and try again."
                        )
                    });
                }
                s.scopes.get_mut(&scope).buckets.insert(
                    name.clone(),
                    Bucket::new(name.clone(), created_ms, constraint.clone()),
                );
                // The write commits once this closure returns Ok.
                index.write().insert(name.clone(), scope.clone());
                Ok(())
            })
            .await?;
        tracing::debug!(bucket = %name, scope = %scope, "bucket created");
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{name}")),
        }))
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let name = req.input.bucket;
        let scope = self.inner.bucket_scope(&name)?;
        let index = &self.inner.index;
        self.inner
            .cell
            .write(&scope, |s| {
                let res = s.scopes.get_mut(&scope);
                let b = res
                    .buckets
                    .get(&name)
                    .ok_or_else(|| no_such_bucket(&name))?;
                if !b.objects.is_empty() {
                    return Err(s3_error!(
                        BucketNotEmpty,
                        "The bucket you tried to delete is not empty"
                    ));
                }
                res.buckets.remove(&name);
                index.write().remove(&name);
                Ok(())
            })
            .await?;
        Ok(S3Response::new(DeleteBucketOutput::default()))
    }

    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let caller = scope_of(&req);
        let prefix = req.input.prefix.unwrap_or_default();
        let region_filter = req.input.bucket_region;
        let mut buckets: Vec<Bucket> = Vec::new();
        let mut regions: BTreeMap<String, String> = BTreeMap::new();
        self.inner.cell.read(|s| {
            for (scope, res) in s.scopes.iter() {
                if scope.account != caller.account {
                    continue;
                }
                if region_filter.as_ref().is_some_and(|r| r != &scope.region) {
                    continue;
                }
                for b in res.buckets.values() {
                    if b.name.starts_with(&prefix) {
                        regions.insert(b.name.clone(), scope.region.clone());
                        buckets.push(b.clone());
                    }
                }
            }
        });
        buckets.sort_by(|a, b| a.name.cmp(&b.name));
        let start = req.input.continuation_token.unwrap_or_default();
        let max = req
            .input
            .max_buckets
            .map_or(usize::MAX, |m| m.max(1) as usize);
        let mut out = Vec::new();
        let mut next = None;
        for b in buckets.into_iter().filter(|b| b.name > start) {
            if out.len() == max {
                next = out
                    .last()
                    .map(|x: &s3s::dto::Bucket| x.name.clone().unwrap_or_default());
                break;
            }
            out.push(s3s::dto::Bucket {
                bucket_region: regions.get(&b.name).cloned(),
                creation_date: Some(ts(b.created_ms)),
                name: Some(b.name.clone()),
            });
        }
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(out),
            continuation_token: next,
            owner: Some(owner(&caller.account)),
            prefix: (!prefix.is_empty()).then_some(prefix),
        }))
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        let (scope, _) = self.inner.bucket(&req.input.bucket)?;
        Ok(S3Response::new(HeadBucketOutput {
            bucket_region: Some(scope.region),
            ..Default::default()
        }))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        let (_, b) = self.inner.bucket(&req.input.bucket)?;
        Ok(S3Response::new(GetBucketLocationOutput {
            location_constraint: b.location_constraint.map(BucketLocationConstraint::from),
        }))
    }

    async fn put_bucket_tagging(
        &self,
        req: S3Request<PutBucketTaggingInput>,
    ) -> S3Result<S3Response<PutBucketTaggingOutput>> {
        let tags = tags_from_set(&req.input.tagging.tag_set, 50)?;
        self.inner
            .write_bucket(&req.input.bucket, |b| {
                b.tags = tags;
                Ok(())
            })
            .await?;
        Ok(S3Response::new(PutBucketTaggingOutput::default()))
    }

    async fn get_bucket_tagging(
        &self,
        req: S3Request<GetBucketTaggingInput>,
    ) -> S3Result<S3Response<GetBucketTaggingOutput>> {
        let (_, b) = self.inner.bucket(&req.input.bucket)?;
        if b.tags.is_empty() {
            return Err(s3_error!(NoSuchTagSet, "The TagSet does not exist"));
        }
        Ok(S3Response::new(GetBucketTaggingOutput {
            tag_set: tag_set(&b.tags),
        }))
    }

    async fn delete_bucket_tagging(
        &self,
        req: S3Request<DeleteBucketTaggingInput>,
    ) -> S3Result<S3Response<DeleteBucketTaggingOutput>> {
        self.inner
            .write_bucket(&req.input.bucket, |b| {
                b.tags = Pairs::new();
                Ok(())
            })
            .await?;
        Ok(S3Response::new(DeleteBucketTaggingOutput::default()))
    }

    async fn put_bucket_versioning(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        let status = req.input.versioning_configuration.status;
        let new = match status.as_ref().map(|s| s.as_str()) {
            Some("Enabled") => Some(Versioning::Enabled),
            Some("Suspended") => Some(Versioning::Suspended),
            None => None,
            Some(other) => {
                return Err(s3_error!(MalformedXML, "unknown versioning status {other}"));
            }
        };
        self.inner
            .write_bucket(&req.input.bucket, |b| {
                if let Some(v) = new {
                    b.versioning = v;
                }
                Ok(())
            })
            .await?;
        Ok(S3Response::new(PutBucketVersioningOutput::default()))
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        let (_, b) = self.inner.bucket(&req.input.bucket)?;
        let status = match b.versioning {
            Versioning::Unversioned => None,
            Versioning::Enabled => Some(BucketVersioningStatus::from_static(
                BucketVersioningStatus::ENABLED,
            )),
            Versioning::Suspended => Some(BucketVersioningStatus::from_static(
                BucketVersioningStatus::SUSPENDED,
            )),
        };
        Ok(S3Response::new(GetBucketVersioningOutput {
            status,
            mfa_delete: None,
        }))
    }

    async fn put_bucket_policy(
        &self,
        req: S3Request<PutBucketPolicyInput>,
    ) -> S3Result<S3Response<PutBucketPolicyOutput>> {
        let policy = req.input.policy;
        let parsed: serde_json::Value = serde_json::from_str(&policy).map_err(|_| {
            s3_error!(
                MalformedPolicy,
                "Policies must be valid JSON and the first byte must be '{{'"
            )
        })?;
        if !parsed.is_object() || parsed.get("Statement").is_none() {
            return Err(s3_error!(
                MalformedPolicy,
                "Missing required field Statement"
            ));
        }
        self.inner
            .write_bucket(&req.input.bucket, |b| {
                b.policy = Some(policy);
                Ok(())
            })
            .await?;
        Ok(S3Response::new(PutBucketPolicyOutput::default()))
    }

    async fn get_bucket_policy(
        &self,
        req: S3Request<GetBucketPolicyInput>,
    ) -> S3Result<S3Response<GetBucketPolicyOutput>> {
        let (_, b) = self.inner.bucket(&req.input.bucket)?;
        let policy = b
            .policy
            .ok_or_else(|| s3_error!(NoSuchBucketPolicy, "The bucket policy does not exist"))?;
        Ok(S3Response::new(GetBucketPolicyOutput {
            policy: Some(policy),
        }))
    }

    async fn delete_bucket_policy(
        &self,
        req: S3Request<DeleteBucketPolicyInput>,
    ) -> S3Result<S3Response<DeleteBucketPolicyOutput>> {
        self.inner
            .write_bucket(&req.input.bucket, |b| {
                b.policy = None;
                Ok(())
            })
            .await?;
        Ok(S3Response::new(DeleteBucketPolicyOutput::default()))
    }

    async fn put_bucket_cors(
        &self,
        req: S3Request<PutBucketCorsInput>,
    ) -> S3Result<S3Response<PutBucketCorsOutput>> {
        let rules = cors_in(&req.input.cors_configuration.cors_rules);
        if rules.is_empty() || rules.len() > 100 {
            return Err(s3_error!(
                MalformedXML,
                "a CORS configuration holds 1 to 100 rules"
            ));
        }
        for r in &rules {
            if r.allowed_methods.is_empty() || r.allowed_origins.is_empty() {
                return Err(s3_error!(
                    MalformedXML,
                    "each CORS rule needs AllowedMethod and AllowedOrigin"
                ));
            }
            for m in &r.allowed_methods {
                if !matches!(m.as_str(), "GET" | "PUT" | "POST" | "DELETE" | "HEAD") {
                    return Err(s3_error!(
                        InvalidRequest,
                        "Found unsupported HTTP method in CORS config. Unsupported method is {m}"
                    ));
                }
            }
        }
        self.inner
            .write_bucket(&req.input.bucket, |b| {
                b.cors = Some(rules);
                Ok(())
            })
            .await?;
        Ok(S3Response::new(PutBucketCorsOutput::default()))
    }

    async fn get_bucket_cors(
        &self,
        req: S3Request<GetBucketCorsInput>,
    ) -> S3Result<S3Response<GetBucketCorsOutput>> {
        let (_, b) = self.inner.bucket(&req.input.bucket)?;
        let rules = b.cors.ok_or_else(|| {
            s3_error!(
                NoSuchCORSConfiguration,
                "The CORS configuration does not exist"
            )
        })?;
        Ok(S3Response::new(GetBucketCorsOutput {
            cors_rules: Some(cors_out(&rules)),
        }))
    }

    async fn delete_bucket_cors(
        &self,
        req: S3Request<DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
        self.inner
            .write_bucket(&req.input.bucket, |b| {
                b.cors = None;
                Ok(())
            })
            .await?;
        Ok(S3Response::new(DeleteBucketCorsOutput::default()))
    }

    // ------------------------------------------------------------ objects

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let expected = expected_body(&req, Some(Algorithm::Crc64Nvme))?;
        let input = req.input;
        validate_key(&input.key)?;
        // Fail fast before reading the body.
        let _ = self.inner.bucket(&input.bucket)?;
        let tags = tags_from_header(input.tagging.as_deref())?;
        check_metadata_size(input.metadata.as_ref())?;
        let stored = store_body(&self.inner, input.body, MAX_PUT_BYTES, &expected).await?;
        let mut meta = meta_from_parts(
            input.content_type.map(|c| c.to_string()),
            input.content_encoding,
            input.content_disposition,
            input.content_language,
            input.cache_control,
            input.expires.as_ref(),
            input.website_redirect_location,
            input.storage_class.map(|s| s.as_str().to_string()),
            input.metadata,
            tags,
        );
        meta.checksum = stored.checksum.clone();
        let version = ObjectVersion {
            version_id: String::new(),
            delete_marker: false,
            last_modified_ms: now_ms(),
            chunks: stored.chunks(),
            size: stored.size,
            etag: stored.md5_hex.clone(),
            parts_count: None,
            meta,
        };
        let key = input.key;
        let if_match = input.if_match;
        let if_none_match = input.if_none_match;
        let (vid, versioned) = self
            .inner
            .write_bucket(&input.bucket, |b| {
                let current = b
                    .objects
                    .get(&key)
                    .and_then(|e| e.latest())
                    .filter(|v| !v.delete_marker);
                if let Some(c) = &if_none_match
                    && let Some(cur) = current
                    && etag_matches(c, &cur.etag)
                {
                    return Err(s3_error!(
                        PreconditionFailed,
                        "At least one of the pre-conditions you specified did not hold"
                    ));
                }
                if let Some(c) = &if_match {
                    match current {
                        None => return Err(no_such_key(&key)),
                        Some(cur) if !etag_matches(c, &cur.etag) => {
                            return Err(s3_error!(
                                PreconditionFailed,
                                "At least one of the pre-conditions you specified did not hold"
                            ));
                        }
                        Some(_) => {}
                    }
                }
                let id = put_version(b, &key, version);
                Ok((id.clone(), reported_version(b, &id)))
            })
            .await?;
        tracing::debug!(key = %key, version = %vid, size = stored.size, "object stored");
        let mut out = PutObjectOutput {
            e_tag: Some(etag(&stored.md5_hex)),
            version_id: versioned,
            size: Some(stored.size as i64),
            ..Default::default()
        };
        if let Some(c) = &stored.checksum {
            set_checksum!(out, c.to_dto(), checksum_type);
        }
        Ok(S3Response::new(out))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        let (_, b) = self.inner.bucket(&input.bucket)?;
        let v = find_version(&b, &input.key, input.version_id.as_deref(), false)?.clone();
        check_read_preconditions(
            &v,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
        )?;
        let range = range_of(input.range.as_ref(), v.size)?;
        let (rg, content_range) = match range {
            Some(r) => {
                let cr = format!("bytes {}-{}/{}", r.start, r.end - 1, v.size);
                (r, Some(cr))
            }
            None => (0..v.size, None),
        };
        let len = rg.end - rg.start;
        let whole = content_range.is_none();
        let blobs = self.inner.cell.context().blobs.clone();
        let body = if len <= body::SMALL_BODY {
            body::read_small(blobs, v.chunks.clone(), rg)
                .await
                .map_err(|e| io_error("reading the object body", &e))?
        } else {
            body::read_stream(blobs, v.chunks.clone(), rg)
        };
        let mut out = GetObjectOutput {
            accept_ranges: Some("bytes".into()),
            body: Some(body),
            content_length: Some(len as i64),
            content_range,
            version_id: reported_version(&b, &v.version_id),
            ..read_headers(&v)
        };
        set_checksum!(
            out,
            checksum_out(&v, input.checksum_mode.as_ref(), whole),
            checksum_type
        );
        Ok(S3Response::new(out))
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        let (_, b) = self.inner.bucket(&input.bucket)?;
        let v = find_version(&b, &input.key, input.version_id.as_deref(), true)?.clone();
        check_read_preconditions(
            &v,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
        )?;
        let range = range_of(input.range.as_ref(), v.size)?;
        let (len, content_range) = match range {
            Some(r) => (
                r.end - r.start,
                Some(format!("bytes {}-{}/{}", r.start, r.end - 1, v.size)),
            ),
            None => (v.size, None),
        };
        let g = read_headers(&v);
        let c = checksum_out(&v, input.checksum_mode.as_ref(), content_range.is_none());
        let mut out = HeadObjectOutput {
            accept_ranges: Some("bytes".into()),
            content_length: Some(len as i64),
            content_range,
            version_id: reported_version(&b, &v.version_id),
            cache_control: g.cache_control,
            content_disposition: g.content_disposition,
            content_encoding: g.content_encoding,
            content_language: g.content_language,
            content_type: g.content_type,
            e_tag: g.e_tag,
            expires: g.expires,
            last_modified: g.last_modified,
            metadata: g.metadata,
            parts_count: g.parts_count,
            storage_class: g.storage_class,
            website_redirect_location: g.website_redirect_location,
            ..Default::default()
        };
        set_checksum!(out, c, checksum_type);
        Ok(S3Response::new(out))
    }

    /// The attributes asked for; `Checksum` is the stored full-object checksum, and
    /// `ObjectParts` reports the part count of a multipart object (parts themselves are
    /// not kept apart once completed).
    async fn get_object_attributes(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        let input = req.input;
        let (_, b) = self.inner.bucket(&input.bucket)?;
        let v = find_version(&b, &input.key, input.version_id.as_deref(), false)?.clone();
        let wants = |a: &str| input.object_attributes.iter().any(|x| x.as_str() == a);
        Ok(S3Response::new(GetObjectAttributesOutput {
            checksum: wants(ObjectAttributes::CHECKSUM)
                .then(|| v.meta.checksum.as_ref().map(|c| c.to_dto()))
                .flatten(),
            e_tag: wants(ObjectAttributes::ETAG).then(|| ETag::Strong(v.etag.clone())),
            object_parts: wants(ObjectAttributes::OBJECT_PARTS)
                .then(|| {
                    v.parts_count.map(|n| GetObjectAttributesParts {
                        total_parts_count: Some(n as i32),
                        ..Default::default()
                    })
                })
                .flatten(),
            object_size: wants(ObjectAttributes::OBJECT_SIZE).then_some(v.size as i64),
            storage_class: wants(ObjectAttributes::STORAGE_CLASS).then(|| {
                StorageClass::from(
                    v.meta
                        .storage_class
                        .clone()
                        .unwrap_or_else(|| "STANDARD".into()),
                )
            }),
            last_modified: Some(ts(v.last_modified_ms)),
            version_id: reported_version(&b, &v.version_id),
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let input = req.input;
        let now = now_ms();
        let out = self
            .inner
            .write_bucket(&input.bucket, |b| {
                delete_one(b, &input.key, input.version_id.as_deref(), now)
            })
            .await?;
        Ok(S3Response::new(out))
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let input = req.input;
        if input.delete.objects.len() > 1000 {
            return Err(s3_error!(
                MalformedXML,
                "at most 1000 keys can be deleted in one request"
            ));
        }
        let quiet = input.delete.quiet.unwrap_or(false);
        let now = now_ms();
        let (deleted, errors) = self
            .inner
            .write_bucket(&input.bucket, |b| {
                let mut deleted = Vec::new();
                let mut errors = Vec::new();
                for o in &input.delete.objects {
                    match delete_one(b, &o.key, o.version_id.as_deref(), now) {
                        Ok(out) => {
                            if !quiet {
                                deleted.push(DeletedObject {
                                    key: Some(o.key.clone()),
                                    version_id: o.version_id.clone(),
                                    delete_marker: out.delete_marker,
                                    delete_marker_version_id: if out.delete_marker == Some(true) {
                                        out.version_id.clone()
                                    } else {
                                        None
                                    },
                                });
                            }
                        }
                        Err(e) => errors.push(Error {
                            code: Some(e.code().as_str().to_string()),
                            key: Some(o.key.clone()),
                            message: e.message().map(str::to_string),
                            version_id: o.version_id.clone(),
                        }),
                    }
                }
                Ok((deleted, errors))
            })
            .await?;
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            request_charged: None,
        }))
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let input = req.input;
        validate_key(&input.key)?;
        let (src_bucket, src_key, src_version) = parse_copy_source(&input.copy_source)?;
        let (_, sb) = self.inner.bucket(&src_bucket)?;
        let src = find_version(&sb, &src_key, src_version.as_deref(), false)?.clone();
        check_copy_preconditions(
            &src,
            input.copy_source_if_match.as_ref(),
            input.copy_source_if_none_match.as_ref(),
            input.copy_source_if_modified_since.as_ref(),
            input.copy_source_if_unmodified_since.as_ref(),
        )?;
        let replace_meta = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == "REPLACE");
        let replace_tags = input
            .tagging_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == "REPLACE");
        if replace_meta {
            check_metadata_size(input.metadata.as_ref())?;
        }
        if src_bucket == input.bucket
            && src_key == input.key
            && src_version.is_none()
            && !replace_meta
            && !replace_tags
            && input.storage_class.is_none()
            && input.website_redirect_location.is_none()
        {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
            ));
        }
        let tags = if replace_tags {
            tags_from_header(input.tagging.as_deref())?
        } else {
            src.meta.tags.clone()
        };
        let mut meta = if replace_meta {
            meta_from_parts(
                input.content_type.map(|c| c.to_string()),
                input.content_encoding,
                input.content_disposition,
                input.content_language,
                input.cache_control,
                input.expires.as_ref(),
                input.website_redirect_location,
                None,
                input.metadata,
                Pairs::new(),
            )
        } else {
            let mut m = src.meta.clone();
            if input.website_redirect_location.is_some() {
                m.website_redirect_location = input.website_redirect_location;
            }
            m
        };
        meta.tags = tags;
        // The bytes are the source's, and so is their checksum.
        meta.checksum = src.meta.checksum.clone();
        meta.storage_class = input
            .storage_class
            .map(|s| s.as_str().to_string())
            .filter(|s| s != "STANDARD")
            .or_else(|| {
                if replace_meta {
                    None
                } else {
                    src.meta.storage_class.clone()
                }
            });
        let now = now_ms();
        let version = ObjectVersion {
            version_id: String::new(),
            delete_marker: false,
            last_modified_ms: now,
            chunks: src.chunks.clone(),
            size: src.size,
            etag: src.etag.clone(),
            parts_count: src.parts_count,
            meta,
        };
        let key = input.key;
        let versioned = self
            .inner
            .write_bucket(&input.bucket, |b| {
                let id = put_version(b, &key, version);
                Ok(reported_version(b, &id))
            })
            .await?;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(etag(&src.etag)),
                last_modified: Some(ts(now)),
                ..Default::default()
            }),
            copy_source_version_id: reported_version(&sb, &src.version_id),
            version_id: versioned,
            ..Default::default()
        }))
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = req.input;
        let (scope, b) = self.inner.bucket(&input.bucket)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let max = max_keys(input.max_keys)?;
        let page = list_keys(
            &b,
            &prefix,
            input.delimiter.as_deref(),
            input.marker.as_deref(),
            max,
        );
        let own = owner(&scope.account);
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: Some(prefix),
            marker: Some(input.marker.unwrap_or_default()),
            max_keys: Some(max as i32),
            is_truncated: Some(page.truncated),
            next_marker: if page.truncated {
                page.last.clone()
            } else {
                None
            },
            contents: Some(
                page.contents
                    .iter()
                    .map(|(k, v)| object_out(k, v, Some(own.clone())))
                    .collect(),
            ),
            common_prefixes: Some(
                page.prefixes
                    .into_iter()
                    .map(|p| CommonPrefix { prefix: Some(p) })
                    .collect(),
            ),
            delimiter: input.delimiter,
            encoding_type: input.encoding_type,
            request_charged: None,
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let (scope, b) = self.inner.bucket(&input.bucket)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let max = max_keys(input.max_keys)?;
        let after = match &input.continuation_token {
            Some(t) => Some(decode_token(t)?),
            None => input.start_after.clone(),
        };
        let page = list_keys(
            &b,
            &prefix,
            input.delimiter.as_deref(),
            after.as_deref(),
            max,
        );
        let own = input
            .fetch_owner
            .unwrap_or(false)
            .then(|| owner(&scope.account));
        let key_count = (page.contents.len() + page.prefixes.len()) as i32;
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(prefix),
            max_keys: Some(max as i32),
            key_count: Some(key_count),
            continuation_token: input.continuation_token,
            is_truncated: Some(page.truncated),
            next_continuation_token: if page.truncated {
                page.last.as_deref().map(encode_token)
            } else {
                None
            },
            contents: Some(
                page.contents
                    .iter()
                    .map(|(k, v)| object_out(k, v, own.clone()))
                    .collect(),
            ),
            common_prefixes: Some(
                page.prefixes
                    .into_iter()
                    .map(|p| CommonPrefix { prefix: Some(p) })
                    .collect(),
            ),
            delimiter: input.delimiter,
            encoding_type: input.encoding_type,
            start_after: input.start_after,
            request_charged: None,
        }))
    }

    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        let input = req.input;
        let (scope, b) = self.inner.bucket(&input.bucket)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let max = max_keys(input.max_keys)?;
        let own = owner(&scope.account);
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        let key_marker = input.key_marker.clone().filter(|k| !k.is_empty());
        let vid_marker = input.version_id_marker.clone().filter(|v| !v.is_empty());
        let mut versions = Vec::new();
        let mut markers = Vec::new();
        let mut prefixes: Vec<String> = Vec::new();
        let mut count = 0usize;
        let mut truncated = false;
        let mut next_key = None;
        let mut next_vid = None;
        let start: Bound<String> = match &key_marker {
            Some(k) if k.as_str() >= prefix.as_str() => Bound::Included(k.clone()),
            _ => Bound::Included(prefix.clone()),
        };
        'keys: for (key, entry) in b.objects.range((start, Bound::Unbounded)) {
            if !key.starts_with(&prefix) {
                break;
            }
            if let Some(d) = &delimiter
                && let Some(i) = key[prefix.len()..].find(d.as_str())
            {
                let cp = key[..prefix.len() + i + d.len()].to_string();
                if prefixes.last() == Some(&cp)
                    || key_marker.as_ref().is_some_and(|m| m.starts_with(&cp))
                {
                    continue;
                }
                if count == max {
                    truncated = true;
                    break;
                }
                count += 1;
                next_key = Some(cp.clone());
                next_vid = None;
                prefixes.push(cp);
                continue;
            }
            let mut skipping = false;
            if let Some(k) = &key_marker
                && k == key
            {
                // Resume after the marker version, or skip the key entirely.
                match &vid_marker {
                    None => continue 'keys,
                    Some(_) => skipping = true,
                }
            }
            for (i, v) in entry.versions.iter().enumerate() {
                if skipping {
                    if Some(&v.version_id) == vid_marker.as_ref() {
                        skipping = false;
                    }
                    continue;
                }
                if count == max {
                    truncated = true;
                    break 'keys;
                }
                count += 1;
                next_key = Some(key.clone());
                next_vid = Some(v.version_id.clone());
                if v.delete_marker {
                    markers.push(DeleteMarkerEntry {
                        is_latest: Some(i == 0),
                        key: Some(key.clone()),
                        last_modified: Some(ts(v.last_modified_ms)),
                        owner: Some(own.clone()),
                        version_id: Some(v.version_id.clone()),
                    });
                } else {
                    versions.push(s3s::dto::ObjectVersion {
                        e_tag: Some(etag(&v.etag)),
                        is_latest: Some(i == 0),
                        key: Some(key.clone()),
                        last_modified: Some(ts(v.last_modified_ms)),
                        owner: Some(own.clone()),
                        size: Some(v.size as i64),
                        storage_class: Some(ObjectVersionStorageClass::from(
                            "STANDARD".to_string(),
                        )),
                        version_id: Some(v.version_id.clone()),
                        ..Default::default()
                    });
                }
            }
        }
        Ok(S3Response::new(ListObjectVersionsOutput {
            common_prefixes: Some(
                prefixes
                    .into_iter()
                    .map(|p| CommonPrefix { prefix: Some(p) })
                    .collect(),
            ),
            delete_markers: Some(markers),
            delimiter: input.delimiter,
            encoding_type: input.encoding_type,
            is_truncated: Some(truncated),
            key_marker: Some(input.key_marker.unwrap_or_default()),
            max_keys: Some(max as i32),
            name: Some(input.bucket),
            next_key_marker: if truncated { next_key } else { None },
            next_version_id_marker: if truncated { next_vid } else { None },
            prefix: Some(prefix),
            request_charged: None,
            version_id_marker: input.version_id_marker,
            versions: Some(versions),
        }))
    }

    async fn put_object_tagging(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        let input = req.input;
        let tags = tags_from_set(&input.tagging.tag_set, 10)?;
        let vid = self
            .inner
            .write_bucket(&input.bucket, |b| {
                let versioned = b.versioning != Versioning::Unversioned;
                let v = version_mut(b, &input.key, input.version_id.as_deref())?;
                v.meta.tags = tags;
                Ok(versioned.then(|| v.version_id.clone()))
            })
            .await?;
        Ok(S3Response::new(PutObjectTaggingOutput { version_id: vid }))
    }

    async fn get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        let input = req.input;
        let (_, b) = self.inner.bucket(&input.bucket)?;
        let v = find_version(&b, &input.key, input.version_id.as_deref(), false)?;
        Ok(S3Response::new(GetObjectTaggingOutput {
            tag_set: tag_set(&v.meta.tags),
            version_id: reported_version(&b, &v.version_id),
        }))
    }

    async fn delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        let input = req.input;
        let vid = self
            .inner
            .write_bucket(&input.bucket, |b| {
                let versioned = b.versioning != Versioning::Unversioned;
                let v = version_mut(b, &input.key, input.version_id.as_deref())?;
                v.meta.tags = Pairs::new();
                Ok(versioned.then(|| v.version_id.clone()))
            })
            .await?;
        Ok(S3Response::new(DeleteObjectTaggingOutput {
            version_id: vid,
        }))
    }

    // ------------------------------------------------------------ multipart

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let input = req.input;
        validate_key(&input.key)?;
        let tags = tags_from_header(input.tagging.as_deref())?;
        check_metadata_size(input.metadata.as_ref())?;
        let meta = meta_from_parts(
            input.content_type.map(|c| c.to_string()),
            input.content_encoding,
            input.content_disposition,
            input.content_language,
            input.cache_control,
            input.expires.as_ref(),
            input.website_redirect_location,
            input.storage_class.map(|s| s.as_str().to_string()),
            input.metadata,
            tags,
        );
        let upload_id = new_upload_id();
        let upload = Upload {
            upload_id: upload_id.clone(),
            key: input.key.clone(),
            initiated_ms: now_ms(),
            meta,
            parts: OrdMap::new(),
        };
        self.inner
            .write_bucket(&input.bucket, |b| {
                b.uploads.insert(upload_id.clone(), upload);
                Ok(())
            })
            .await?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload_id),
            ..Default::default()
        }))
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let expected = expected_body(&req, None)?;
        let input = req.input;
        let pn = check_part_number(input.part_number)?;
        check_upload(&self.inner, &input.bucket, &input.key, &input.upload_id)?;
        let stored = store_body(&self.inner, input.body, MAX_PUT_BYTES, &expected).await?;
        let md5_hex = stored.md5_hex.clone();
        let c = stored.checksum.as_ref().map(|c| c.to_dto());
        let part = part_from(stored);
        self.inner
            .write_bucket(&input.bucket, |b| {
                let u = upload_mut(b, &input.key, &input.upload_id)?;
                u.parts.insert(pn, part);
                Ok(())
            })
            .await?;
        let mut out = UploadPartOutput {
            e_tag: Some(etag(&md5_hex)),
            ..Default::default()
        };
        if let Some(c) = c {
            set_checksum!(out, c);
        }
        Ok(S3Response::new(out))
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let input = req.input;
        let pn = check_part_number(input.part_number)?;
        check_upload(&self.inner, &input.bucket, &input.key, &input.upload_id)?;
        let (src_bucket, src_key, src_version) = parse_copy_source(&input.copy_source)?;
        let (_, sb) = self.inner.bucket(&src_bucket)?;
        let src = find_version(&sb, &src_key, src_version.as_deref(), false)?.clone();
        check_copy_preconditions(
            &src,
            input.copy_source_if_match.as_ref(),
            input.copy_source_if_none_match.as_ref(),
            input.copy_source_if_modified_since.as_ref(),
            input.copy_source_if_unmodified_since.as_ref(),
        )?;
        let range = match &input.copy_source_range {
            None => 0..src.size,
            Some(r) => parse_copy_range(r, src.size)?,
        };
        let blobs = self.inner.cell.context().blobs.clone();
        let chunks = src.chunks.clone();
        let stored = tokio::task::spawn_blocking(move || {
            body::copy_range_to_blob(&blobs, &chunks, range, None)
        })
        .await
        .map_err(|e| io_error("copying a part", &std::io::Error::other(e.to_string())))?
        .map_err(store_error)?;
        let md5_hex = stored.md5_hex.clone();
        let part = part_from(stored);
        let modified = part.last_modified_ms;
        self.inner
            .write_bucket(&input.bucket, |b| {
                let u = upload_mut(b, &input.key, &input.upload_id)?;
                u.parts.insert(pn, part);
                Ok(())
            })
            .await?;
        Ok(S3Response::new(UploadPartCopyOutput {
            copy_part_result: Some(CopyPartResult {
                e_tag: Some(etag(&md5_hex)),
                last_modified: Some(ts(modified)),
                ..Default::default()
            }),
            copy_source_version_id: reported_version(&sb, &src.version_id),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = req.input;
        let wanted: Vec<(i32, Option<String>)> = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                (
                    p.part_number.unwrap_or(0),
                    p.e_tag.map(|e| e.value().to_string()),
                )
            })
            .collect();
        if wanted.is_empty() {
            return Err(s3_error!(
                MalformedXML,
                "The XML you provided was not well-formed or did not validate against our published schema"
            ));
        }
        let key = input.key.clone();
        let upload_id = input.upload_id.clone();
        let now = now_ms();
        let if_none_match = input.if_none_match;
        let if_match = input.if_match;
        let (etag_v, vid) = self
            .inner
            .write_bucket(&input.bucket, |b| {
                let u = b
                    .uploads
                    .get(&upload_id)
                    .filter(|u| u.key == key)
                    .cloned()
                    .ok_or_else(|| no_such_upload(&upload_id))?;
                // Order is checked over the whole list first, as AWS does.
                if wanted.windows(2).any(|w| w[1].0 <= w[0].0) {
                    return Err(s3_error!(
                        InvalidPartOrder,
                        "The list of parts was not in ascending order. The parts list must be specified in order by part number."
                    ));
                }
                let mut chunks = Vec::new();
                let mut md5s = Vec::new();
                let mut size = 0u64;
                for (i, (pn, tag)) in wanted.iter().enumerate() {
                    let part = u32::try_from(*pn).ok().and_then(|n| u.parts.get(&n)).ok_or_else(|| {
                        s3_error!(
                            InvalidPart,
                            "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag."
                        )
                    })?;
                    if tag.as_ref().is_some_and(|t| *t != part.md5_hex) {
                        return Err(s3_error!(
                            InvalidPart,
                            "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag."
                        ));
                    }
                    let last = i + 1 == wanted.len();
                    if !last && part.chunk.size < MIN_PART_BYTES {
                        return Err(s3_error!(
                            EntityTooSmall,
                            "Your proposed upload is smaller than the minimum allowed object size."
                        ));
                    }
                    if part.chunk.size > 0 {
                        chunks.push(part.chunk);
                    }
                    md5s.push(part.md5_hex.clone());
                    size += part.chunk.size;
                }
                let current = b.objects.get(&key).and_then(|e| e.latest()).filter(|v| !v.delete_marker);
                if let Some(c) = &if_none_match
                    && current.is_some_and(|cur| etag_matches(c, &cur.etag))
                {
                    return Err(s3_error!(PreconditionFailed, "At least one of the pre-conditions you specified did not hold"));
                }
                if let Some(c) = &if_match
                    && !current.is_some_and(|cur| etag_matches(c, &cur.etag))
                {
                    return Err(s3_error!(PreconditionFailed, "At least one of the pre-conditions you specified did not hold"));
                }
                let etag_v = multipart_etag(&md5s)?;
                let version = ObjectVersion {
                    version_id: String::new(),
                    delete_marker: false,
                    last_modified_ms: now,
                    chunks,
                    size,
                    etag: etag_v.clone(),
                    parts_count: Some(md5s.len() as u32),
                    meta: u.meta.clone(),
                };
                let id = put_version(b, &key, version);
                b.uploads.remove(&upload_id);
                Ok((etag_v, reported_version(b, &id)))
            })
            .await?;
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket.clone()),
            key: Some(input.key.clone()),
            e_tag: Some(etag(&etag_v)),
            location: Some(format!("/{}/{}", input.bucket, input.key)),
            version_id: vid,
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        self.inner
            .write_bucket(&input.bucket, |b| {
                upload_mut(b, &input.key, &input.upload_id)?;
                b.uploads.remove(&input.upload_id);
                Ok(())
            })
            .await?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        let (scope, b) = self.inner.bucket(&input.bucket)?;
        let u = b
            .uploads
            .get(&input.upload_id)
            .filter(|u| u.key == input.key)
            .ok_or_else(|| no_such_upload(&input.upload_id))?;
        let max = max_keys(input.max_parts)?;
        let marker = input.part_number_marker.unwrap_or(0).max(0) as u32;
        let mut parts = Vec::new();
        let mut truncated = false;
        for (pn, p) in u.parts.range((Bound::Excluded(marker), Bound::Unbounded)) {
            if parts.len() == max {
                truncated = true;
                break;
            }
            let mut part = s3s::dto::Part {
                e_tag: Some(etag(&p.md5_hex)),
                last_modified: Some(ts(p.last_modified_ms)),
                part_number: Some(*pn as i32),
                size: Some(p.chunk.size as i64),
                ..Default::default()
            };
            if let Some(c) = &p.checksum {
                set_checksum!(part, c.to_dto());
            }
            parts.push(part);
        }
        let next = if truncated {
            parts.last().and_then(|p| p.part_number)
        } else {
            None
        };
        let own = owner(&scope.account);
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            initiator: Some(Initiator {
                display_name: own.display_name.clone(),
                id: own.id.clone(),
            }),
            owner: Some(own),
            is_truncated: Some(truncated),
            max_parts: Some(max as i32),
            next_part_number_marker: next,
            part_number_marker: input.part_number_marker,
            parts: Some(parts),
            storage_class: Some(StorageClass::from(
                u.meta
                    .storage_class
                    .clone()
                    .unwrap_or_else(|| "STANDARD".into()),
            )),
            ..Default::default()
        }))
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let input = req.input;
        let (scope, b) = self.inner.bucket(&input.bucket)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let max = max_keys(input.max_uploads)?;
        let mut all: Vec<&Upload> = b
            .uploads
            .values()
            .filter(|u| u.key.starts_with(&prefix))
            .collect();
        all.sort_by(|a, b| {
            (&a.key, a.initiated_ms, &a.upload_id).cmp(&(&b.key, b.initiated_ms, &b.upload_id))
        });
        let key_marker = input.key_marker.clone().unwrap_or_default();
        let id_marker = input.upload_id_marker.clone();
        let own = owner(&scope.account);
        let mut uploads = Vec::new();
        let mut prefixes: Vec<String> = Vec::new();
        let mut truncated = false;
        let mut past_id_marker = id_marker.is_none();
        for u in all {
            if !key_marker.is_empty() {
                if u.key < key_marker {
                    continue;
                }
                if u.key == key_marker {
                    if !past_id_marker {
                        if Some(&u.upload_id) == id_marker.as_ref() {
                            past_id_marker = true;
                        }
                        continue;
                    }
                    if id_marker.is_none() {
                        continue;
                    }
                }
            }
            if let Some(d) = input.delimiter.as_deref().filter(|d| !d.is_empty())
                && let Some(i) = u.key[prefix.len()..].find(d)
            {
                let cp = u.key[..prefix.len() + i + d.len()].to_string();
                if prefixes.last() != Some(&cp) {
                    if uploads.len() + prefixes.len() == max {
                        truncated = true;
                        break;
                    }
                    prefixes.push(cp);
                }
                continue;
            }
            if uploads.len() + prefixes.len() == max {
                truncated = true;
                break;
            }
            uploads.push(MultipartUpload {
                initiated: Some(ts(u.initiated_ms)),
                initiator: Some(Initiator {
                    display_name: own.display_name.clone(),
                    id: own.id.clone(),
                }),
                key: Some(u.key.clone()),
                owner: Some(own.clone()),
                storage_class: Some(StorageClass::from(
                    u.meta
                        .storage_class
                        .clone()
                        .unwrap_or_else(|| "STANDARD".into()),
                )),
                upload_id: Some(u.upload_id.clone()),
                ..Default::default()
            });
        }
        let (next_key, next_id) = match uploads.last() {
            Some(u) if truncated => (u.key.clone(), u.upload_id.clone()),
            _ => (None, None),
        };
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            common_prefixes: Some(
                prefixes
                    .into_iter()
                    .map(|p| CommonPrefix { prefix: Some(p) })
                    .collect(),
            ),
            delimiter: input.delimiter,
            encoding_type: input.encoding_type,
            is_truncated: Some(truncated),
            key_marker: input.key_marker,
            max_uploads: Some(max as i32),
            next_key_marker: next_key,
            next_upload_id_marker: next_id,
            prefix: Some(prefix),
            request_charged: None,
            upload_id_marker: input.upload_id_marker,
            uploads: Some(uploads),
        }))
    }
}

// ---------------------------------------------------------------- more helpers

/// Continuation tokens are opaque to clients; hex keeps any key safe in XML and URLs.
fn encode_token(key: &str) -> String {
    hex::encode(key.as_bytes())
}

fn decode_token(t: &str) -> S3Result<String> {
    hex::decode(t)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "The continuation token provided is incorrect"
            )
        })
}

fn new_upload_id() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn check_part_number(pn: i32) -> S3Result<u32> {
    if !(1..=10_000).contains(&pn) {
        return Err(s3_error!(
            InvalidArgument,
            "Part number must be an integer between 1 and 10000, inclusive"
        ));
    }
    Ok(pn as u32)
}

fn check_upload(inner: &Inner, bucket: &str, key: &str, upload_id: &str) -> S3Result<()> {
    let (_, b) = inner.bucket(bucket)?;
    match b.uploads.get(upload_id) {
        Some(u) if u.key == key => Ok(()),
        _ => Err(no_such_upload(upload_id)),
    }
}

fn upload_mut<'a>(b: &'a mut Bucket, key: &str, upload_id: &str) -> S3Result<&'a mut Upload> {
    match b.uploads.get_mut(upload_id) {
        Some(u) if u.key == key => Ok(u),
        _ => Err(no_such_upload(upload_id)),
    }
}

fn part_from(stored: Stored) -> crate::state::Part {
    crate::state::Part {
        chunk: stored.chunk.unwrap_or(Chunk {
            digest: cryopod::Digest::of(b""),
            size: 0,
        }),
        md5_hex: stored.md5_hex,
        last_modified_ms: now_ms(),
        checksum: stored.checksum,
    }
}

fn parse_copy_range(r: &str, size: u64) -> S3Result<std::ops::Range<u64>> {
    let bad = || {
        s3_error!(
            InvalidArgument,
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy"
        )
    };
    let spec = r.strip_prefix("bytes=").ok_or_else(bad)?;
    let (a, b) = spec.split_once('-').ok_or_else(bad)?;
    let first: u64 = a.trim().parse().map_err(|_| bad())?;
    let last: u64 = b.trim().parse().map_err(|_| bad())?;
    if first > last {
        return Err(bad());
    }
    if last >= size {
        return Err(s3_error!(
            InvalidRange,
            "The requested range is not satisfiable"
        ));
    }
    Ok(first..last + 1)
}

fn version_mut<'a>(
    b: &'a mut Bucket,
    key: &str,
    version_id: Option<&str>,
) -> S3Result<&'a mut crate::state::ObjectVersion> {
    let entry = b.objects.get_mut(key).ok_or_else(|| no_such_key(key))?;
    let v = match version_id {
        None => entry
            .versions
            .front_mut()
            .filter(|v| !v.delete_marker)
            .ok_or_else(|| no_such_key(key))?,
        Some(id) => entry
            .versions
            .iter_mut()
            .find(|v| v.version_id == id)
            .ok_or_else(|| s3_error!(NoSuchVersion, "The specified version does not exist."))?,
    };
    if v.delete_marker {
        return Err(s3_error!(
            MethodNotAllowed,
            "The specified method is not allowed against this resource."
        ));
    }
    Ok(v)
}

fn delete_one(
    b: &mut Bucket,
    key: &str,
    version_id: Option<&str>,
    now: i64,
) -> S3Result<DeleteObjectOutput> {
    match version_id {
        Some(id) => {
            if id != NULL_VERSION && uuid::Uuid::try_parse(id).is_err() {
                return Err(s3_error!(InvalidArgument, "Invalid version id specified"));
            }
            let mut out = DeleteObjectOutput {
                version_id: Some(id.to_string()),
                ..Default::default()
            };
            if let Some(entry) = b.objects.get_mut(key) {
                let pos = entry.versions.iter().position(|v| v.version_id == id);
                if let Some(pos) = pos {
                    let removed = entry.versions.remove(pos);
                    if removed.delete_marker {
                        out.delete_marker = Some(true);
                    }
                }
                if entry.versions.is_empty() {
                    b.objects.remove(key);
                }
            }
            Ok(out)
        }
        None => match b.versioning {
            Versioning::Unversioned => {
                b.objects.remove(key);
                Ok(DeleteObjectOutput::default())
            }
            Versioning::Enabled | Versioning::Suspended => {
                let marker = crate::state::ObjectVersion {
                    version_id: String::new(),
                    delete_marker: true,
                    last_modified_ms: now,
                    chunks: Vec::new(),
                    size: 0,
                    etag: String::new(),
                    parts_count: None,
                    meta: ObjectMeta::default(),
                };
                let id = put_version(b, key, marker);
                Ok(DeleteObjectOutput {
                    delete_marker: Some(true),
                    version_id: Some(id),
                    request_charged: None,
                })
            }
        },
    }
}

/// The representation headers GET and HEAD share.
fn read_headers(v: &crate::state::ObjectVersion) -> GetObjectOutput {
    GetObjectOutput {
        cache_control: v.meta.cache_control.clone(),
        content_disposition: v.meta.content_disposition.clone(),
        content_encoding: v.meta.content_encoding.clone(),
        content_language: v.meta.content_language.clone(),
        content_type: Some(
            v.meta
                .content_type
                .clone()
                .unwrap_or_else(|| "binary/octet-stream".into())
                .parse()
                .unwrap_or_else(|_| ContentType::from("binary/octet-stream".to_string())),
        ),
        e_tag: Some(etag(&v.etag)),
        expires: v.meta.expires.as_deref().and_then(parse_http_date),
        last_modified: Some(ts(v.last_modified_ms)),
        metadata: meta_out(&v.meta.user),
        parts_count: v.parts_count.map(|n| n as i32),
        storage_class: v.meta.storage_class.clone().map(StorageClass::from),
        tag_count: (!v.meta.tags.is_empty()).then_some(v.meta.tags.len() as i32),
        website_redirect_location: v.meta.website_redirect_location.clone(),
        ..Default::default()
    }
}

/// The stored checksum, for GET and HEAD: only when asked (`x-amz-checksum-mode: ENABLED`)
/// and only for a whole-object read, as AWS does (a range has no checksum of its own).
fn checksum_out(
    v: &crate::state::ObjectVersion,
    mode: Option<&ChecksumMode>,
    whole: bool,
) -> s3s::dto::Checksum {
    let enabled = mode.is_some_and(|m| m.as_str().eq_ignore_ascii_case(ChecksumMode::ENABLED));
    match &v.meta.checksum {
        Some(c) if enabled && whole => c.to_dto(),
        _ => s3s::dto::Checksum::default(),
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Backend>();
    let _ = Vector::<u8>::new();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_follow_aws_rules() {
        for ok in ["abc", "my-bucket.data", "a1b2c3", &"a".repeat(63)] {
            assert!(validate_bucket_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "Upper",
            "under_score",
            "-start",
            "end-",
            "a..b",
            "192.168.1.1",
            "xn--abc",
            "name-s3alias",
            &"a".repeat(64),
        ] {
            let e = validate_bucket_name(bad).unwrap_err();
            assert_eq!(*e.code(), S3ErrorCode::InvalidBucketName, "{bad}");
        }
    }

    #[test]
    fn multipart_etag_is_md5_of_part_md5s_with_count() {
        let a = hex::encode(Md5::digest(b"a"));
        let b = hex::encode(Md5::digest(b"b"));
        let mut h = Md5::new();
        h.update(Md5::digest(b"a"));
        h.update(Md5::digest(b"b"));
        let want = format!("{}-2", hex::encode(h.finalize()));
        assert_eq!(multipart_etag(&[a, b]).unwrap(), want);
    }

    #[test]
    fn io_errors_name_their_cause_and_a_full_disk_is_service_unavailable() {
        // ENOSPC and EDQUOT: 503, with the OS's words.
        for errno in [28, 122] {
            let e = io_error("storing", &std::io::Error::from_raw_os_error(errno));
            assert_eq!(e.code(), &S3ErrorCode::ServiceUnavailable);
            assert_eq!(e.status_code(), Some(http::StatusCode::SERVICE_UNAVAILABLE));
            assert!(
                e.message()
                    .is_some_and(|m| m.contains(&format!("(os error {errno})")))
            );
        }
        let full = io_error("storing", &std::io::Error::from_raw_os_error(28));
        assert!(
            full.message()
                .is_some_and(|m| m.contains("No space left on device")),
            "{full:?}"
        );
        // Anything else: 500, still with its cause.
        let other = io_error("storing", &std::io::Error::from_raw_os_error(5));
        assert_eq!(other.code(), &S3ErrorCode::InternalError);
        assert!(other.message().is_some_and(|m| m.contains("(os error 5)")));
        // A full disk met while storing a body maps the same way.
        let e = store_error(StoreError::Io(std::io::Error::from_raw_os_error(28)));
        assert_eq!(e.code(), &S3ErrorCode::ServiceUnavailable);
    }

    #[test]
    fn metadata_over_two_kilobytes_is_refused() {
        let mut m = Metadata::new();
        m.insert("k".into(), "v".repeat(MAX_USER_METADATA_BYTES - 1));
        assert!(check_metadata_size(Some(&m)).is_ok());
        m.insert("x".into(), String::new());
        let e = check_metadata_size(Some(&m)).unwrap_err();
        assert_eq!(e.code(), &S3ErrorCode::MetadataTooLarge);
    }

    fn obj(etag: &str, ms: i64) -> crate::state::ObjectVersion {
        crate::state::ObjectVersion {
            version_id: NULL_VERSION.into(),
            delete_marker: false,
            last_modified_ms: ms,
            chunks: vec![],
            size: 0,
            etag: etag.into(),
            parts_count: None,
            meta: ObjectMeta::default(),
        }
    }

    #[test]
    fn read_preconditions_follow_aws_precedence() {
        let v = obj("abc", 10_000);
        let m = ETagCondition::ETag(ETag::Strong("abc".into()));
        let other = ETagCondition::ETag(ETag::Strong("zzz".into()));
        let early = Timestamp::from(odt(1_000));
        let late = Timestamp::from(odt(20_000));
        assert!(check_read_preconditions(&v, Some(&m), None, None, None).is_ok());
        let e = check_read_preconditions(&v, Some(&other), None, None, None).unwrap_err();
        assert_eq!(*e.code(), S3ErrorCode::PreconditionFailed);
        // If-Match true wins over a failing If-Unmodified-Since.
        assert!(check_read_preconditions(&v, Some(&m), None, None, Some(&early)).is_ok());
        let e = check_read_preconditions(&v, None, None, None, Some(&early)).unwrap_err();
        assert_eq!(*e.code(), S3ErrorCode::PreconditionFailed);
        let e = check_read_preconditions(&v, None, Some(&m), None, None).unwrap_err();
        assert_eq!(*e.code(), S3ErrorCode::NotModified);
        let e = check_read_preconditions(&v, None, None, Some(&late), None).unwrap_err();
        assert_eq!(*e.code(), S3ErrorCode::NotModified);
        // If-None-Match false wins over If-Modified-Since.
        assert!(check_read_preconditions(&v, None, Some(&other), Some(&late), None).is_ok());
        assert!(check_read_preconditions(&v, None, None, Some(&early), None).is_ok());
    }

    fn bucket_with_keys(keys: &[&str]) -> Bucket {
        let mut b = Bucket::new("b".into(), 0, None);
        for k in keys {
            put_version(&mut b, k, obj("e", 0));
        }
        b
    }

    #[test]
    fn listing_groups_common_prefixes_and_pages_through_them() {
        let b = bucket_with_keys(&["a/1", "a/2", "b", "c/1", "d"]);
        let p = list_keys(&b, "", Some("/"), None, 2);
        assert_eq!(p.prefixes, ["a/"]);
        assert_eq!(
            p.contents.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(),
            ["b"]
        );
        assert!(p.truncated);
        let p2 = list_keys(&b, "", Some("/"), p.last.as_deref(), 2);
        assert_eq!(p2.prefixes, ["c/"]);
        assert_eq!(
            p2.contents.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(),
            ["d"]
        );
        assert!(!p2.truncated);
        let p3 = list_keys(&b, "a/", None, None, 10);
        assert_eq!(p3.contents.len(), 2);
    }

    #[test]
    fn deletes_in_versioned_buckets_leave_markers_and_versions() {
        let mut b = bucket_with_keys(&[]);
        b.versioning = Versioning::Enabled;
        let v1 = put_version(&mut b, "k", obj("1", 0));
        let out = delete_one(&mut b, "k", None, 1).unwrap();
        assert_eq!(out.delete_marker, Some(true));
        let entry = &b.objects["k"];
        assert_eq!(entry.versions.len(), 2);
        assert!(entry.latest().unwrap().delete_marker);
        assert!(find_version(&b, "k", None, false).is_err());
        assert!(find_version(&b, "k", Some(&v1), false).is_ok());
        // Removing the marker brings the object back.
        let marker = out.version_id.unwrap();
        delete_one(&mut b, "k", Some(&marker), 2).unwrap();
        assert_eq!(find_version(&b, "k", None, false).unwrap().version_id, v1);
    }

    #[test]
    fn copy_ranges_are_checked() {
        assert_eq!(parse_copy_range("bytes=0-9", 10).unwrap(), 0..10);
        assert!(parse_copy_range("bytes=5-10", 10).is_err());
        assert!(parse_copy_range("0-1", 10).is_err());
    }
}
