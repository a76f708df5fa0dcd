//! The running service: the gateway adapter around s3s, the [`StateProvider`] that
//! snapshots the state, and the [`ObjectSource`] other services read objects through.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use cryopod::plugin::CellProvider;
use cryopod::{
    AwsError, AwsRequest, Body, Digest, ObjectSource, Scope, Service, ServiceContext, StateCell,
};
use futures::TryStreamExt;
use http::{HeaderValue, StatusCode};
use http_body_util::StreamBody;
use parking_lot::RwLock;
use s3s::S3Result;
use s3s::host::{S3Host, VirtualHost};
use s3s::service::{S3Service, S3ServiceBuilder};

use crate::api::{Backend, Inner, RequestCtx};
use crate::body::AwsChunkedDecoder;
use crate::checksum::ChunkedTrailer;
use crate::state::S3State;

/// Every operation this service answers, in AWS's names: the [`s3s::S3`] methods `api::Backend`
/// implements; s3s answers every other operation `NotImplemented`. The registration carries it,
/// the README's service table is checked against it, and `tests/registration.rs` checks each is
/// dispatched.
pub const OPERATIONS: &[&str] = &[
    "AbortMultipartUpload",
    "CompleteMultipartUpload",
    "CopyObject",
    "CreateBucket",
    "CreateMultipartUpload",
    "DeleteBucket",
    "DeleteBucketCors",
    "DeleteBucketPolicy",
    "DeleteBucketTagging",
    "DeleteObject",
    "DeleteObjectTagging",
    "DeleteObjects",
    "GetBucketCors",
    "GetBucketLocation",
    "GetBucketPolicy",
    "GetBucketTagging",
    "GetBucketVersioning",
    "GetObject",
    "GetObjectAttributes",
    "GetObjectTagging",
    "HeadBucket",
    "HeadObject",
    "ListBuckets",
    "ListMultipartUploads",
    "ListObjectVersions",
    "ListObjects",
    "ListObjectsV2",
    "ListParts",
    "PutBucketCors",
    "PutBucketPolicy",
    "PutBucketTagging",
    "PutBucketVersioning",
    "PutObject",
    "PutObjectTagging",
    "UploadPart",
    "UploadPartCopy",
];

/// The S3 service. Requests go through s3s (protocol) into [`Backend`] (semantics), which
/// keeps all state in one [`StateCell`].
pub struct S3Plugin {
    inner: Arc<Inner>,
    s3s: S3Service,
}

impl S3Plugin {
    /// Built by the runtime from the registration in `lib.rs`.
    pub fn new(ctx: ServiceContext) -> Self {
        let inner = Arc::new(Inner {
            cell: StateCell::new(ctx),
            index: RwLock::new(BTreeMap::new()),
        });
        let mut builder = S3ServiceBuilder::new(Backend {
            inner: inner.clone(),
        });
        builder.set_host(Hosts);
        Self {
            inner,
            s3s: builder.build(),
        }
    }
}

/// Virtual-hosted-style addressing for the names local emulators use
/// (`bucket.localhost:4566`, `bucket.s3.localhost.localstack.cloud`, `bucket.s3.amazonaws.com`);
/// anything else (`127.0.0.1:PORT`, `localhost`) is path-style.
struct Hosts;

impl S3Host for Hosts {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        Ok(match virtual_host_bucket(host) {
            Some((bucket, domain)) => VirtualHost::new(domain).with_bucket(bucket),
            None => VirtualHost::new(host),
        })
    }
}

/// `(bucket, domain)` when `host` addresses a bucket by name.
pub(crate) fn virtual_host_bucket(host: &str) -> Option<(&str, &str)> {
    let h = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    const DOMAINS: [&str; 5] = [
        "s3.localhost.localstack.cloud",
        "localhost.localstack.cloud",
        "s3.localhost",
        "localhost",
        "s3.amazonaws.com",
    ];
    for d in DOMAINS {
        if h == d {
            return None;
        }
        if let Some(b) = h.strip_suffix(d).and_then(|b| b.strip_suffix('.'))
            && !b.is_empty()
        {
            // `bucket.s3.localhost`: the longer domain matched first, so `b` is the bucket.
            return Some((b, &h[b.len() + 1..]));
        }
    }
    // bucket.s3.<region>.amazonaws.com
    let rest = h.strip_suffix(".amazonaws.com")?;
    let i = rest.find(".s3.")?;
    (i > 0).then(|| (&h[..i], &h[i + 1..]))
}

/// Query parameters of SigV4/SigV2 presigned URLs; removed before s3s sees the request.
const PRESIGN_PARAMS: [&str; 10] = [
    "x-amz-algorithm",
    "x-amz-credential",
    "x-amz-date",
    "x-amz-expires",
    "x-amz-signedheaders",
    "x-amz-signature",
    "x-amz-security-token",
    "awsaccesskeyid",
    "signature",
    "expires",
];

/// Accepts any credentials, as local emulators do: the gateway already derived the scope from
/// them. Removes what would make s3s verify a signature (it would need the secret key), after
/// checking that a presigned URL has not expired, which AWS enforces.
fn strip_auth(parts: &mut http::request::Parts) -> Result<(), AwsError> {
    parts.headers.remove(http::header::AUTHORIZATION);
    let Some(query) = parts.uri.query() else {
        return Ok(());
    };
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.to_ascii_lowercase(), v.into_owned()))
        .collect();
    let presigned = pairs
        .iter()
        .any(|(k, _)| k == "x-amz-signature" || k == "signature");
    if !presigned {
        return Ok(());
    }
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if let (Some(date), Some(expires)) = (get("x-amz-date"), get("x-amz-expires")) {
        let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
        let signed = time::PrimitiveDateTime::parse(date, &fmt)
            .map_err(|_| {
                AwsError::bad_request(
                    "AuthorizationQueryParametersError",
                    "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"",
                )
            })?
            .assume_utc();
        let secs: i64 = expires.parse().map_err(|_| {
            AwsError::bad_request(
                "AuthorizationQueryParametersError",
                "X-Amz-Expires should be a number",
            )
        })?;
        if !(1..=604_800).contains(&secs) {
            return Err(AwsError::bad_request(
                "AuthorizationQueryParametersError",
                "X-Amz-Expires must be less than a week (in seconds) that is 604800",
            ));
        }
        if time::OffsetDateTime::now_utc() > signed + time::Duration::seconds(secs) {
            return Err(AwsError::new(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                "Request has expired",
            ));
        }
    }
    // Keep the other parameters byte for byte.
    let kept: Vec<&str> = query
        .split('&')
        .filter(|kv| {
            let name = kv.split('=').next().unwrap_or("");
            let name = percent_decode_lower(name);
            !PRESIGN_PARAMS.contains(&name.as_str())
        })
        .collect();
    let path = parts.uri.path();
    let pq = if kept.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", kept.join("&"))
    };
    let mut uri = http::uri::Builder::new();
    if let Some(s) = parts.uri.scheme() {
        uri = uri.scheme(s.clone());
    }
    if let Some(a) = parts.uri.authority() {
        uri = uri.authority(a.clone());
    }
    parts.uri = uri
        .path_and_query(pq)
        .build()
        .map_err(|e| AwsError::bad_request("InvalidURI", e.to_string()))?;
    Ok(())
}

fn percent_decode_lower(s: &str) -> String {
    form_urlencoded::parse(s.as_bytes())
        .next()
        .map(|(k, _)| k.to_ascii_lowercase())
        .unwrap_or_default()
}

/// Whether the body uses `aws-chunked` framing (streaming SigV4 uploads).
fn is_aws_chunked(headers: &http::HeaderMap) -> bool {
    let enc = headers
        .get(http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim() == "aws-chunked"));
    let sha = headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("STREAMING-"));
    enc || sha
}

/// Refuses a PUT whose body is sent with `Transfer-Encoding` (but not `aws-chunked`
/// framing), as S3 does: 501 `NotImplemented`. This also covers a request with both
/// `Content-Length` and `Transfer-Encoding: chunked`, whose `Content-Length` hyper has
/// already dropped by the time a service sees it (RFC 9112 §6.3: the transfer coding
/// wins, and hyper closes the connection after the answer), so the two cannot be told
/// apart here.
fn check_transfer_encoding(parts: &http::request::Parts) -> Result<(), AwsError> {
    if parts.method == http::Method::PUT
        && parts.headers.contains_key(http::header::TRANSFER_ENCODING)
        && !is_aws_chunked(&parts.headers)
    {
        return Err(AwsError::new(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            "A header you provided implies functionality that is not implemented",
        ));
    }
    Ok(())
}

/// Rewrites the headers of an `aws-chunked` request to describe the decoded body.
fn unchunk_headers(headers: &mut http::HeaderMap) {
    if let Some(n) = headers.remove("x-amz-decoded-content-length") {
        headers.insert(http::header::CONTENT_LENGTH, n);
    } else {
        headers.remove(http::header::CONTENT_LENGTH);
    }
    let rest: Option<String> = headers
        .get(http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|e| *e != "aws-chunked" && !e.is_empty())
                .collect::<Vec<_>>()
                .join(", ")
        });
    match rest
        .filter(|r| !r.is_empty())
        .and_then(|r| HeaderValue::from_str(&r).ok())
    {
        Some(v) => {
            headers.insert(http::header::CONTENT_ENCODING, v);
        }
        None => {
            headers.remove(http::header::CONTENT_ENCODING);
        }
    }
    headers.insert(
        "x-amz-content-sha256",
        HeaderValue::from_static("UNSIGNED-PAYLOAD"),
    );
    headers.remove("x-amz-trailer");
}

/// The [`cryopod::StateProvider`] comes from the cell; the bucket-name index is derived
/// state, rebuilt from what a restore installed.
impl CellProvider for S3Plugin {
    type State = S3State;
    fn cell(&self) -> &StateCell<S3State> {
        &self.inner.cell
    }
    fn after_restore(&self, _installed: &S3State) {
        self.inner.rebuild_index();
    }
}

#[async_trait]
impl Service for S3Plugin {
    async fn handle(&self, req: AwsRequest) -> http::Response<Body> {
        let scope = req.scope.clone();
        let (mut parts, body) = req.request.into_parts();
        if let Err(e) = strip_auth(&mut parts) {
            return e.to_rest_xml_response();
        }
        if let Err(e) = check_transfer_encoding(&parts) {
            return e.to_rest_xml_response();
        }
        let body = if is_aws_chunked(&parts.headers) {
            let declared = parts
                .headers
                .get("x-amz-trailer")
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_ascii_lowercase());
            unchunk_headers(&mut parts.headers);
            let decoder = AwsChunkedDecoder::new(body.into_data_stream());
            // The handlers check the declared trailing checksum once the body has ended.
            parts.extensions.insert(ChunkedTrailer {
                declared,
                trailers: decoder.trailers(),
            });
            let decoded = decoder.map_ok(http_body::Frame::data);
            s3s::Body::http_body_unsync(StreamBody::new(decoded))
        } else {
            // s3s needs a length for bodies it parses (XML); in-process callers may give
            // a sized body without the header.
            if !parts.headers.contains_key(http::header::CONTENT_LENGTH)
                && let Some(n) = http_body::Body::size_hint(&body).exact()
            {
                parts
                    .headers
                    .insert(http::header::CONTENT_LENGTH, HeaderValue::from(n));
            }
            s3s::Body::http_body_unsync(body)
        };
        parts.extensions.insert(RequestCtx { scope });
        match self.s3s.call(http::Request::from_parts(parts, body)).await {
            Ok(resp) => resp.map(Body::new),
            Err(e) => {
                tracing::error!(error = ?e, "s3s failed to answer");
                AwsError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    format!("{e:?}"),
                )
                .to_rest_xml_response()
            }
        }
    }

    fn object_source(&self) -> Option<&dyn ObjectSource> {
        Some(self)
    }

    /// Answered from the bucket's CORS rules, as S3 does ([`crate::cors`]).
    fn cross_origin(
        &self,
        req: &http::Request<Body>,
        origin: Option<&str>,
    ) -> cryopod::service::CrossOrigin {
        crate::cors::cross_origin(&self.inner, req, origin)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[async_trait]
impl ObjectSource for S3Plugin {
    /// Buckets are found by name wherever they live (names are global); `scope` is the
    /// caller's and is not needed to locate the bucket. A multipart object is made of several
    /// blobs; it is joined into one blob on first use (content addressing keeps one copy).
    async fn object_blob(
        &self,
        _scope: &Scope,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<(Digest, u64), AwsError> {
        let to_aws = |e: s3s::S3Error| {
            let status = e.status_code().unwrap_or(StatusCode::NOT_FOUND);
            AwsError::new(status, e.code().as_str(), e.message().unwrap_or_default())
        };
        let (_, b) = self.inner.bucket(bucket).map_err(to_aws)?;
        let entry = b.objects.get(key).ok_or_else(|| {
            AwsError::new(
                StatusCode::NOT_FOUND,
                "NoSuchKey",
                format!("no object {bucket}/{key}"),
            )
        })?;
        let v = match version_id {
            None => entry.latest(),
            Some(id) => entry.versions.iter().find(|v| v.version_id == id),
        }
        .filter(|v| !v.delete_marker)
        .ok_or_else(|| {
            AwsError::new(
                StatusCode::NOT_FOUND,
                "NoSuchKey",
                format!("no object {bucket}/{key}"),
            )
        })?
        .clone();
        if let [one] = v.chunks.as_slice() {
            return Ok((one.digest, one.size));
        }
        let blobs = self.inner.cell.context().blobs.clone();
        let size = v.size;
        let joined = tokio::task::spawn_blocking(move || {
            if v.chunks.is_empty() {
                return blobs
                    .put(&Bytes::new())
                    .map(|d| (d, 0))
                    .map_err(crate::body::StoreError::Io);
            }
            crate::body::copy_range_to_blob(&blobs, &v.chunks, 0..size, None)
                .map(|s| s.chunk.map_or((Digest::of(b""), 0), |c| (c.digest, c.size)))
        })
        .await
        .map_err(|e| {
            AwsError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                e.to_string(),
            )
        })?
        .map_err(|e| {
            AwsError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                e.to_string(),
            )
        })?;
        Ok(joined)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_hosts_name_buckets_and_plain_hosts_are_path_style() {
        assert_eq!(virtual_host_bucket("127.0.0.1:4566"), None);
        assert_eq!(virtual_host_bucket("localhost:4566"), None);
        assert_eq!(virtual_host_bucket("s3.localhost"), None);
        assert_eq!(
            virtual_host_bucket("my-bucket.localhost:4566"),
            Some(("my-bucket", "localhost"))
        );
        assert_eq!(
            virtual_host_bucket("a.b.s3.localhost"),
            Some(("a.b", "s3.localhost"))
        );
        assert_eq!(
            virtual_host_bucket("bkt.s3.localhost.localstack.cloud:4566"),
            Some(("bkt", "s3.localhost.localstack.cloud"))
        );
        assert_eq!(
            virtual_host_bucket("bkt.s3.eu-west-1.amazonaws.com"),
            Some(("bkt", "s3.eu-west-1.amazonaws.com"))
        );
    }

    #[test]
    fn presign_parameters_are_removed_and_expiry_is_enforced() {
        let now = time::OffsetDateTime::now_utc();
        let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
        let date = now.format(&fmt).unwrap();
        let uri = format!(
            "http://h/b/k?versionId=x%2By&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date={date}&X-Amz-Expires=60&X-Amz-Signature=abc&X-Amz-Credential=a%2F1%2Fus-east-1%2Fs3%2Faws4_request"
        );
        let (mut parts, _) = http::Request::builder()
            .uri(uri)
            .body(())
            .unwrap()
            .into_parts();
        strip_auth(&mut parts).unwrap();
        assert_eq!(parts.uri.query(), Some("versionId=x%2By"));

        let old = (now - time::Duration::hours(2)).format(&fmt).unwrap();
        let uri = format!("http://h/b/k?X-Amz-Date={old}&X-Amz-Expires=60&X-Amz-Signature=abc");
        let (mut parts, _) = http::Request::builder()
            .uri(uri)
            .body(())
            .unwrap()
            .into_parts();
        let e = strip_auth(&mut parts).unwrap_err();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        assert_eq!(e.code, "AccessDenied");
    }

    #[test]
    fn aws_chunked_headers_describe_the_decoded_body() {
        let mut h = http::HeaderMap::new();
        h.insert(
            "content-encoding",
            HeaderValue::from_static("aws-chunked, gzip"),
        );
        h.insert(
            "x-amz-decoded-content-length",
            HeaderValue::from_static("5"),
        );
        h.insert("content-length", HeaderValue::from_static("99"));
        h.insert(
            "x-amz-content-sha256",
            HeaderValue::from_static("STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
        );
        assert!(is_aws_chunked(&h));
        unchunk_headers(&mut h);
        assert_eq!(h["content-length"], "5");
        assert_eq!(h["content-encoding"], "gzip");
        assert!(!is_aws_chunked(&h));
    }
}
