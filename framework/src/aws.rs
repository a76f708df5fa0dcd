//! What a plugin sees of an AWS request, and AWS-shaped errors in each wire protocol.
//!
//! Plugins answer in their service's protocol; these helpers keep the error shapes (the
//! ones the SDKs parse to pick an exception type) identical across plugins.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;

use crate::scope::Scope;

/// The HTTP body type used for AWS requests and responses (streaming).
pub type Body = axum_core::body::Body;

/// One AWS API request routed to a plugin, with what the gateway derived from it.
#[derive(Debug)]
pub struct AwsRequest {
    /// Account and region from the access key id and SigV4 credential scope.
    pub scope: Scope,
    /// The access key id the client signed with, if any.
    pub access_key_id: Option<String>,
    /// `http://host:port` as the client addressed the emulator, for URLs in responses.
    pub endpoint: String,
    /// The request itself, body unread.
    pub request: http::Request<Body>,
}

impl AwsRequest {
    /// Reads the whole body, refusing more than `limit` bytes with an AWS-style error.
    pub async fn body_bytes(&mut self, limit: usize) -> Result<Bytes, AwsError> {
        let body = std::mem::replace(self.request.body_mut(), Body::empty());
        let limited = http_body_util::Limited::new(body, limit);
        match limited.collect().await {
            Ok(c) => Ok(c.to_bytes()),
            Err(e) => {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    Err(AwsError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "RequestEntityTooLarge",
                        format!("request body is larger than {limit} bytes"),
                    ))
                } else {
                    Err(AwsError::new(
                        StatusCode::BAD_REQUEST,
                        "IncompleteBody",
                        format!("could not read the request body: {e}"),
                    ))
                }
            }
        }
    }

    /// A request header as a string, when present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
    }
}

/// An error as AWS reports it: HTTP status, error code, message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AwsError {
    /// HTTP status.
    pub status: StatusCode,
    /// The AWS error code (`QueueDoesNotExist`, `NoSuchBucket`, ...).
    pub code: String,
    /// Human readable message.
    pub message: String,
}

impl AwsError {
    /// Builds an error.
    pub fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    /// 400 with the given code.
    pub fn bad_request(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// Whether the client is at fault (4xx), which the query protocol reports as `Sender`.
    pub fn is_sender_fault(&self) -> bool {
        self.status.is_client_error()
    }

    /// The awsJson1.0 / awsJson1.1 shape: `{"__type": code, "message": …}`.
    pub fn to_json_response(&self) -> Response<Body> {
        let body = serde_json::json!({ "__type": self.code, "message": self.message });
        let mut resp = Response::new(Body::from(body.to_string()));
        *resp.status_mut() = self.status;
        set(&mut resp, "content-type", "application/x-amz-json-1.0");
        set_owned(&mut resp, "x-amzn-errortype", &self.code);
        set_request_id(&mut resp);
        resp
    }

    /// The restJson1 shape (Lambda): `x-amzn-ErrorType` header and `{"Type", "message"}`.
    pub fn to_rest_json_response(&self) -> Response<Body> {
        let kind = if self.is_sender_fault() {
            "User"
        } else {
            "Service"
        };
        let body =
            serde_json::json!({ "Type": kind, "message": self.message, "Message": self.message });
        let mut resp = Response::new(Body::from(body.to_string()));
        *resp.status_mut() = self.status;
        set(&mut resp, "content-type", "application/json");
        set_owned(&mut resp, "x-amzn-errortype", &self.code);
        set_request_id(&mut resp);
        resp
    }

    /// The awsQuery shape (SQS query protocol, SNS, ...): `<ErrorResponse>` XML.
    pub fn to_query_xml_response(&self) -> Response<Body> {
        let kind = if self.is_sender_fault() {
            "Sender"
        } else {
            "Receiver"
        };
        let id = uuid::Uuid::new_v4();
        let body = format!(
            "<?xml version=\"1.0\"?><ErrorResponse><Error><Type>{kind}</Type><Code>{}</Code><Message>{}</Message><Detail/></Error><RequestId>{id}</RequestId></ErrorResponse>",
            xml_escape(&self.code),
            xml_escape(&self.message)
        );
        let mut resp = Response::new(Body::from(body));
        *resp.status_mut() = self.status;
        set(&mut resp, "content-type", "text/xml");
        set_owned(&mut resp, "x-amzn-requestid", &id.to_string());
        resp
    }

    /// The restXml shape (S3): `<Error><Code>…</Code><Message>…</Message></Error>`.
    pub fn to_rest_xml_response(&self) -> Response<Body> {
        let id = uuid::Uuid::new_v4();
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{}</Code><Message>{}</Message><RequestId>{id}</RequestId></Error>",
            xml_escape(&self.code),
            xml_escape(&self.message)
        );
        let mut resp = Response::new(Body::from(body));
        *resp.status_mut() = self.status;
        set(&mut resp, "content-type", "application/xml");
        set_owned(&mut resp, "x-amz-request-id", &id.to_string());
        resp
    }
}

/// Escapes text for XML element content and attributes.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
    out
}

/// A JSON success response for the awsJson protocols.
pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(Body::from(value.to_string()));
    *resp.status_mut() = status;
    set(&mut resp, "content-type", "application/x-amz-json-1.0");
    set_request_id(&mut resp);
    resp
}

fn set(resp: &mut Response<Body>, name: &'static str, value: &'static str) {
    resp.headers_mut()
        .insert(name, HeaderValue::from_static(value));
}

fn set_owned(resp: &mut Response<Body>, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

fn set_request_id(resp: &mut Response<Body>) {
    set_owned(resp, "x-amzn-requestid", &uuid::Uuid::new_v4().to_string());
}

/// Account id derived from an access key id, without any lookup:
/// - a 12-digit key id is the account (LocalStack's convention, so test keys work);
/// - a key id the emulator issued ([`issue_access_key_id`]: 20 characters, `AKIA` or `ASIA`,
///   then the 12-digit account, then 4 characters) maps to the account it embeds, so keys
///   from IAM `CreateAccessKey` and STS `AssumeRole` act in their user's or role's account;
/// - anything else maps to [`crate::DEFAULT_ACCOUNT`].
pub fn account_from_access_key(key: Option<&str>) -> String {
    match key {
        Some(k) if is_account_id(k) => k.to_string(),
        Some(k) => embedded_account(k)
            .unwrap_or(crate::scope::DEFAULT_ACCOUNT)
            .to_string(),
        None => crate::scope::DEFAULT_ACCOUNT.to_string(),
    }
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// The account inside an emulator-issued key id (see [`issue_access_key_id`]).
fn embedded_account(key: &str) -> Option<&str> {
    if key.len() != 20 || !(key.starts_with("AKIA") || key.starts_with("ASIA")) {
        return None;
    }
    let account = key.get(4..16)?;
    let tail = key.get(16..)?;
    (is_account_id(account) && tail.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(account)
}

/// Which kind of access key id to issue: AWS's prefixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// A long-term key of an IAM user (`AKIA…`).
    LongTerm,
    /// Temporary credentials from STS (`ASIA…`).
    Temporary,
}

/// A new access key id for `account` in the format [`account_from_access_key`] maps back
/// without a lookup: `AKIA`/`ASIA`, the 12-digit account, 4 random characters of AWS's
/// key alphabet (`A-Z`, `2-7`): 20 characters, the length of AWS's own key ids. An
/// `account` that is not 12 digits is replaced by [`crate::DEFAULT_ACCOUNT`].
pub fn issue_access_key_id(kind: KeyKind, account: &str) -> String {
    let prefix = match kind {
        KeyKind::LongTerm => "AKIA",
        KeyKind::Temporary => "ASIA",
    };
    let account = if is_account_id(account) {
        account
    } else {
        crate::scope::DEFAULT_ACCOUNT
    };
    format!("{prefix}{account}{}", random_chars(4, KEY_ALPHABET))
}

/// A new secret access key: 40 random characters, as AWS's.
pub fn issue_secret_access_key() -> String {
    random_chars(40, SECRET_ALPHABET)
}

/// `len` random characters of `alphabet` (at most 256 entries), from v4 UUIDs' random bits,
/// for resource ids and tokens that must not repeat (not for cryptographic secrets: the
/// emulator verifies no signatures).
pub fn random_chars(len: usize, alphabet: &[u8]) -> String {
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for b in uuid::Uuid::new_v4().as_bytes() {
            if out.len() == len || alphabet.is_empty() {
                break;
            }
            out.push(char::from(alphabet[usize::from(*b) % alphabet.len()]));
        }
        if alphabet.is_empty() {
            break;
        }
    }
    out
}

/// The characters of AWS's access key ids and unique ids (base32).
pub const KEY_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The parts of a SigV4 credential (`AKID/date/region/service/aws4_request`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    /// Access key id.
    pub access_key_id: String,
    /// Region of the credential scope.
    pub region: String,
    /// Service signing name of the credential scope.
    pub service: String,
}

/// Parses the SigV4 credential from an `Authorization` header or from a presigned URL's
/// `X-Amz-Credential` query parameter.
pub fn sigv4_credential(req: &http::Request<Body>) -> Option<Credential> {
    if let Some(auth) = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        && let Some(idx) = auth.find("Credential=")
    {
        let rest = &auth[idx + "Credential=".len()..];
        let cred = rest.split([',', ' ']).next().unwrap_or("");
        return parse_credential(cred);
    }
    let query = req.uri().query()?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k.eq_ignore_ascii_case("X-Amz-Credential"))
        .and_then(|(_, v)| parse_credential(&v))
}

fn parse_credential(cred: &str) -> Option<Credential> {
    let mut parts = cred.split('/');
    let access_key_id = parts.next()?.to_string();
    let _date = parts.next()?;
    let region = parts.next()?.to_string();
    let service = parts.next()?.to_string();
    if access_key_id.is_empty() || region.is_empty() || service.is_empty() {
        return None;
    }
    Some(Credential {
        access_key_id,
        region,
        service,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_is_read_from_the_authorization_header() {
        let req = http::Request::builder()
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=111122223333/20240101/eu-west-1/sqs/aws4_request, SignedHeaders=host, Signature=abc",
            )
            .body(Body::empty())
            .unwrap();
        let c = sigv4_credential(&req).unwrap();
        assert_eq!(c.access_key_id, "111122223333");
        assert_eq!(c.region, "eu-west-1");
        assert_eq!(c.service, "sqs");
        assert_eq!(
            account_from_access_key(Some(&c.access_key_id)),
            "111122223333"
        );
    }

    #[test]
    fn credential_is_read_from_a_presigned_url() {
        let req = http::Request::builder()
            .uri("/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=test%2F20240101%2Fus-west-2%2Fs3%2Faws4_request")
            .body(Body::empty())
            .unwrap();
        let c = sigv4_credential(&req).unwrap();
        assert_eq!(c.region, "us-west-2");
        assert_eq!(c.service, "s3");
        assert_eq!(account_from_access_key(Some("test")), "000000000000");
    }

    #[test]
    fn issued_key_ids_map_to_their_account_and_others_as_before() {
        for kind in [KeyKind::LongTerm, KeyKind::Temporary] {
            let k = issue_access_key_id(kind, "123456789012");
            assert_eq!(k.len(), 20);
            assert!(k.starts_with(if kind == KeyKind::LongTerm {
                "AKIA"
            } else {
                "ASIA"
            }));
            assert_eq!(account_from_access_key(Some(&k)), "123456789012");
        }
        assert!(issue_access_key_id(KeyKind::Temporary, "nope").starts_with("ASIA000000000000"));
        // Backwards compatible: 12-digit ids, test keys and AWS-style ids keep their mapping.
        assert_eq!(
            account_from_access_key(Some("111122223333")),
            "111122223333"
        );
        for other in [
            "test",
            "AKIAIOSFODNN7EXAMPLE",
            "ASIA12345678901",
            "AKIA1234567890123456789",
            "AKIA123456789012ab-d",
            "XKIA123456789012ABCD",
        ] {
            assert_eq!(
                account_from_access_key(Some(other)),
                "000000000000",
                "{other}"
            );
        }
        assert_eq!(account_from_access_key(None), "000000000000");
        assert_eq!(issue_secret_access_key().len(), 40);
        assert_ne!(issue_secret_access_key(), issue_secret_access_key());
    }

    #[test]
    fn query_errors_escape_xml() {
        let e = AwsError::bad_request("X", "a<b>&");
        let r = e.to_query_xml_response();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    }
}
