//! The query protocol: `Action=Operation&Version=…` form requests (POST body or query
//! string) answered in XML, `<OperationResponse><OperationResult>…</OperationResult>
//! <ResponseMetadata><RequestId>…</RequestId></ResponseMetadata></OperationResponse>`, and
//! errors as `<ErrorResponse><Error><Type/><Code/><Message/></Error><RequestId/></ErrorResponse>`.
//!
//! Why here: STS, IAM, SNS and SQS's older face all speak this protocol; written once, every
//! such plugin parses the same way, bounds the same inputs and escapes the same output.
//!
//! - [`QueryRequest`] reads the form (size-bounded, parameter count bounded) and hands out
//!   typed parameters: scalars, `Name.member.N` lists, `Tags.member.N.Key` structures and
//!   maps, with AWS's `ValidationError` wording when a value breaks a constraint;
//! - [`Xml`] builds response bodies with escaping; [`response`] wraps a result in AWS's
//!   envelope, and [`error_response`] renders an [`AwsError`] as `<ErrorResponse>`;
//! - [`timestamp`] formats instants as the protocol's ISO 8601 `dateTime`.

use std::collections::BTreeMap;

use http::{HeaderValue, Response, StatusCode};

use crate::aws::{AwsError, AwsRequest, Body};

/// Most form parameters one request may carry: far above any AWS operation's needs
/// (a 50-tag request has ~100), low enough that a hostile form cannot make us build a huge
/// map of tiny entries.
pub const MAX_PARAMS: usize = 4096;

/// Highest `member.N` index accepted in a list; AWS lists in the query protocol are all
/// shorter (IAM's longest, `ActionNames`, has no documented max, SQS's batches have 10).
pub const MAX_MEMBERS: usize = 1000;

/// Form keys that are protocol plumbing (signature version 2 and presigned SigV4), never
/// operation input.
const PLUMBING: &[&str] = &[
    "AWSAccessKeyId",
    "Signature",
    "SignatureMethod",
    "SignatureVersion",
    "Timestamp",
    "Expires",
    "SecurityToken",
];

/// A query-protocol request that could not be read, or a parameter that breaks its shape's
/// constraint. Converts into the [`AwsError`] AWS answers for it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// No `Action` parameter.
    #[error("Could not find operation to perform: no Action parameter")]
    MissingAction,
    /// A required parameter is absent.
    #[error(
        "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
        member_name(.0)
    )]
    Missing(String),
    /// A parameter breaks a constraint of its shape (length, range, pattern, enum).
    #[error("1 validation error detected: Value '{value}' at '{}' failed to satisfy constraint: {constraint}", member_name(.name))]
    Constraint {
        /// The parameter's form name (`UserName`).
        name: String,
        /// The offending value, as sent (truncated to 256 characters in messages).
        value: String,
        /// AWS's wording of the constraint (`Member must have length less than or equal to 64`).
        constraint: String,
    },
    /// The form is not readable (too many parameters, a list index out of range).
    #[error("{0}")]
    Malformed(String),
}

impl From<QueryError> for AwsError {
    fn from(e: QueryError) -> Self {
        let code = match &e {
            QueryError::MissingAction => "MissingAction",
            QueryError::Missing(_) | QueryError::Constraint { .. } => "ValidationError",
            QueryError::Malformed(_) => "MalformedQueryString",
        };
        AwsError::bad_request(code, e.to_string())
    }
}

/// `UserName` → `userName`, as AWS names members in validation messages.
fn member_name(name: &str) -> String {
    let last = name.rsplit('.').next().unwrap_or(name);
    let mut chars = last.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Length and character constraints of a string shape, as the botocore model states them.
#[derive(Clone, Copy, Debug)]
pub struct Text {
    /// Smallest length in characters.
    pub min: usize,
    /// Largest length in characters.
    pub max: usize,
    /// Whether one character is allowed (the shape's `pattern`, per character); `None` for
    /// any character.
    pub allowed: Option<fn(char) -> bool>,
    /// AWS's wording of the pattern for messages (`[\w+=,.@-]+`).
    pub pattern: &'static str,
}

impl Text {
    /// Any string of `min..=max` characters.
    pub const fn len(min: usize, max: usize) -> Text {
        Text {
            min,
            max,
            allowed: None,
            pattern: "",
        }
    }

    /// AWS's name shape, `[\w+=,.@-]` characters (IAM user, role, group and policy names,
    /// STS session names), of `min..=max` characters.
    pub const fn name(min: usize, max: usize) -> Text {
        Text {
            min,
            max,
            allowed: Some(is_name_char),
            pattern: "[\\w+=,.@-]+",
        }
    }

    /// Checks `value` (the parameter `name`'s) against the constraint.
    pub fn check(&self, name: &str, value: &str) -> Result<(), QueryError> {
        let n = value.chars().count();
        let fail = |constraint: String| QueryError::Constraint {
            name: name.to_string(),
            value: value.chars().take(256).collect(),
            constraint,
        };
        if n < self.min {
            return Err(fail(format!(
                "Member must have length greater than or equal to {}",
                self.min
            )));
        }
        if n > self.max {
            return Err(fail(format!(
                "Member must have length less than or equal to {}",
                self.max
            )));
        }
        if let Some(ok) = self.allowed
            && !value.chars().all(ok)
        {
            return Err(fail(format!(
                "Member must satisfy regular expression pattern: {}",
                self.pattern
            )));
        }
        Ok(())
    }
}

/// A character of AWS's name pattern `[\w+=,.@-]`.
pub fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '+' | '=' | ',' | '.' | '@' | '-')
}

/// One query-protocol request: its `Action`, `Version` and the other form parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryRequest {
    /// The operation (`GetCallerIdentity`).
    pub action: String,
    /// The API version the client sent (`2011-06-15`), if any.
    pub version: Option<String>,
    params: BTreeMap<String, String>,
}

impl QueryRequest {
    /// Reads the query string and, for a form POST, the body (at most `limit` bytes).
    pub async fn read(req: &mut AwsRequest, limit: usize) -> Result<Self, AwsError> {
        let is_form = req
            .header("content-type")
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
        let body = if is_form || req.request.method() == http::Method::POST {
            req.body_bytes(limit).await?
        } else {
            bytes::Bytes::new()
        };
        let query = req.request.uri().query().map(str::to_string);
        Ok(Self::parse(query.as_deref(), &body)?)
    }

    /// Parses form parameters from a query string and a form body; a key in both takes the
    /// body's value. Refuses more than [`MAX_PARAMS`] parameters.
    pub fn parse(query: Option<&str>, body: &[u8]) -> Result<Self, QueryError> {
        let mut out = QueryRequest::default();
        let pairs = query
            .map(|q| form_urlencoded::parse(q.as_bytes()))
            .into_iter()
            .flatten()
            .chain(form_urlencoded::parse(body));
        for (k, v) in pairs {
            match k.as_ref() {
                "Action" => out.action = v.into_owned(),
                "Version" => out.version = Some(v.into_owned()),
                key if PLUMBING.contains(&key) || key.starts_with("X-Amz-") => {}
                _ => {
                    if out.params.len() >= MAX_PARAMS {
                        return Err(QueryError::Malformed(format!(
                            "a request carries at most {MAX_PARAMS} parameters"
                        )));
                    }
                    out.params.insert(k.into_owned(), v.into_owned());
                }
            }
        }
        if out.action.is_empty() {
            return Err(QueryError::MissingAction);
        }
        Ok(out)
    }

    /// A parameter's value, if sent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// A required parameter; AWS's `ValidationError` when absent.
    pub fn required(&self, name: &str) -> Result<&str, QueryError> {
        self.get(name)
            .ok_or_else(|| QueryError::Missing(name.to_string()))
    }

    /// An optional string checked against its shape's constraint.
    pub fn text(&self, name: &str, shape: &Text) -> Result<Option<&str>, QueryError> {
        match self.get(name) {
            Some(v) => {
                shape.check(name, v)?;
                Ok(Some(v))
            }
            None => Ok(None),
        }
    }

    /// A required string checked against its shape's constraint.
    pub fn required_text(&self, name: &str, shape: &Text) -> Result<&str, QueryError> {
        let v = self.required(name)?;
        shape.check(name, v)?;
        Ok(v)
    }

    /// An optional integer within `min..=max`.
    pub fn int(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>, QueryError> {
        let Some(raw) = self.get(name) else {
            return Ok(None);
        };
        let fail = |constraint: String| QueryError::Constraint {
            name: name.to_string(),
            value: raw.chars().take(256).collect(),
            constraint,
        };
        let n: i64 = raw
            .trim()
            .parse()
            .map_err(|_| fail("Member must be an integer".into()))?;
        if n < min {
            return Err(fail(format!(
                "Member must have value greater than or equal to {min}"
            )));
        }
        if n > max {
            return Err(fail(format!(
                "Member must have value less than or equal to {max}"
            )));
        }
        Ok(Some(n))
    }

    /// An optional boolean (`true` / `false`, any case).
    pub fn bool(&self, name: &str) -> Result<Option<bool>, QueryError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(v) => Err(QueryError::Constraint {
                name: name.to_string(),
                value: v.chars().take(256).collect(),
                constraint: "Member must be a boolean (true or false)".into(),
            }),
        }
    }

    /// The entries under `prefix.` whose next segment is a member index, in index order:
    /// `(N, rest of the key, value)`. Refuses indexes that are not 1..=[`MAX_MEMBERS`].
    fn indexed(&self, prefix: &str) -> Result<Vec<(usize, &str, &str)>, QueryError> {
        let start = format!("{prefix}.");
        let mut out = Vec::new();
        for (k, v) in self.params.range(start.clone()..) {
            let Some(rest) = k.strip_prefix(&start) else {
                break;
            };
            let (index, tail) = rest.split_once('.').unwrap_or((rest, ""));
            let n: usize = match index.parse() {
                Ok(n) if (1..=MAX_MEMBERS).contains(&n) => n,
                _ => {
                    return Err(QueryError::Malformed(format!(
                        "parameter {k}: a list index must be between 1 and {MAX_MEMBERS}"
                    )));
                }
            };
            out.push((n, tail, v.as_str()));
        }
        out.sort_by_key(|(n, _, _)| *n);
        Ok(out)
    }

    /// A list of strings, `Name.member.1`, `Name.member.2`, … (empty when absent).
    pub fn list(&self, name: &str) -> Result<Vec<String>, QueryError> {
        Ok(self
            .indexed(&format!("{name}.member"))?
            .into_iter()
            .filter(|(_, tail, _)| tail.is_empty())
            .map(|(_, _, v)| v.to_string())
            .collect())
    }

    /// A list of structures, `Name.member.N.Field=…`: one map of fields per member, in
    /// index order (empty when absent).
    pub fn structs(&self, name: &str) -> Result<Vec<BTreeMap<String, String>>, QueryError> {
        let mut out: BTreeMap<usize, BTreeMap<String, String>> = BTreeMap::new();
        for (n, tail, v) in self.indexed(&format!("{name}.member"))? {
            if !tail.is_empty() {
                out.entry(n)
                    .or_default()
                    .insert(tail.to_string(), v.to_string());
            }
        }
        Ok(out.into_values().collect())
    }

    /// A list of `Key`/`Value` pairs (`Tags.member.N.Key`, `Tags.member.N.Value`), in index
    /// order; a member without `Key` is a `ValidationError`, a missing `Value` is empty.
    pub fn tags(&self, name: &str) -> Result<Vec<(String, String)>, QueryError> {
        self.structs(name)?
            .into_iter()
            .map(|mut m| {
                let key = m
                    .remove("Key")
                    .ok_or_else(|| QueryError::Missing(format!("{name}.member.Key")))?;
                Ok((key, m.remove("Value").unwrap_or_default()))
            })
            .collect()
    }

    /// A map sent as `Name.entry.N.key` / `Name.entry.N.value` (the query protocol's
    /// default map encoding), in index order.
    pub fn map(&self, name: &str) -> Result<Vec<(String, String)>, QueryError> {
        let mut out: BTreeMap<usize, (Option<String>, String)> = BTreeMap::new();
        for (n, tail, v) in self.indexed(&format!("{name}.entry"))? {
            let e = out.entry(n).or_default();
            match tail {
                "key" => e.0 = Some(v.to_string()),
                "value" => e.1 = v.to_string(),
                _ => {}
            }
        }
        out.into_values()
            .map(|(k, v)| {
                k.map(|k| (k, v))
                    .ok_or_else(|| QueryError::Missing(format!("{name}.entry.key")))
            })
            .collect()
    }
}

/// Escapes text for XML content. Beyond [`crate::aws::xml_escape`], characters that XML 1.0
/// cannot carry at all (control characters other than tab, newline, carriage return) become
/// U+FFFD, so a stored value can never make a response unparsable.
pub fn escape(s: &str) -> String {
    if s.chars()
        .any(|c| (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r'))
    {
        let cleaned: String = s
            .chars()
            .map(|c| {
                if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') {
                    '\u{FFFD}'
                } else {
                    c
                }
            })
            .collect();
        crate::aws::xml_escape(&cleaned)
    } else {
        crate::aws::xml_escape(s)
    }
}

/// An XML fragment under construction; every text goes through [`escape`], element names
/// are the caller's constants.
#[derive(Clone, Debug, Default)]
pub struct Xml {
    buf: String,
}

impl Xml {
    /// An empty fragment.
    pub fn new() -> Self {
        Self::default()
    }

    /// `<name>text</name>`.
    pub fn leaf(&mut self, name: &str, text: &str) -> &mut Self {
        self.buf.push('<');
        self.buf.push_str(name);
        self.buf.push('>');
        self.buf.push_str(&escape(text));
        self.buf.push_str("</");
        self.buf.push_str(name);
        self.buf.push('>');
        self
    }

    /// `<name>text</name>` when `text` is present, nothing otherwise.
    pub fn opt(&mut self, name: &str, text: Option<&str>) -> &mut Self {
        if let Some(t) = text {
            self.leaf(name, t);
        }
        self
    }

    /// `<name>…</name>` with the content `f` writes.
    pub fn elem(&mut self, name: &str, f: impl FnOnce(&mut Xml)) -> &mut Self {
        self.buf.push('<');
        self.buf.push_str(name);
        self.buf.push('>');
        f(self);
        self.buf.push_str("</");
        self.buf.push_str(name);
        self.buf.push('>');
        self
    }

    /// A list as the query protocol renders it: `<name><member>…</member>…</name>`, each
    /// member's content written by `f`.
    pub fn members<T>(
        &mut self,
        name: &str,
        items: impl IntoIterator<Item = T>,
        mut f: impl FnMut(&mut Xml, T),
    ) -> &mut Self {
        self.elem(name, |x| {
            for item in items {
                x.elem("member", |x| f(x, item));
            }
        })
    }

    /// A list of strings: `<name><member>text</member>…</name>`.
    pub fn string_members<S: AsRef<str>>(
        &mut self,
        name: &str,
        items: impl IntoIterator<Item = S>,
    ) -> &mut Self {
        self.members(name, items, |x, s| {
            x.buf.push_str(&escape(s.as_ref()));
        })
    }

    /// A map as the query protocol renders it: `<name><entry><key/><value/></entry>…</name>`.
    pub fn entries<K: AsRef<str>, V: AsRef<str>>(
        &mut self,
        name: &str,
        items: impl IntoIterator<Item = (K, V)>,
    ) -> &mut Self {
        self.elem(name, |x| {
            for (k, v) in items {
                x.elem("entry", |x| {
                    x.leaf("key", k.as_ref()).leaf("value", v.as_ref());
                });
            }
        })
    }

    /// The fragment so far.
    pub fn as_str(&self) -> &str {
        &self.buf
    }
}

/// The success response of `action`: `<{action}Response xmlns="{xmlns}">`, the result in
/// `<{action}Result>` (none for operations whose output is empty, as AWS sends), and the
/// request id in `<ResponseMetadata>` and the `x-amzn-RequestId` header.
pub fn response(action: &str, xmlns: &str, result: Option<&Xml>) -> Response<Body> {
    let id = uuid::Uuid::new_v4().to_string();
    let mut body = String::with_capacity(256 + result.map_or(0, |r| r.buf.len()));
    body.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    body.push_str(&format!(
        "<{action}Response xmlns=\"{}\">",
        crate::aws::xml_escape(xmlns)
    ));
    if let Some(r) = result {
        body.push_str(&format!("<{action}Result>"));
        body.push_str(&r.buf);
        body.push_str(&format!("</{action}Result>"));
    }
    body.push_str(&format!(
        "<ResponseMetadata><RequestId>{id}</RequestId></ResponseMetadata></{action}Response>"
    ));
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("text/xml"));
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-amzn-requestid", v);
    }
    resp
}

/// An error as the query protocol reports it: `<ErrorResponse>` with `Sender` or `Receiver`.
pub fn error_response(err: &AwsError) -> Response<Body> {
    err.to_query_xml_response()
}

/// The answer to an operation that the service's API has but this emulator does not
/// implement: `400 UnsupportedOperation` naming it, so a client sees at once what is missing
/// (never a 501 that SDKs retry or report as a server fault).
pub fn unsupported(service: &str, action: &str) -> AwsError {
    AwsError::bad_request(
        "UnsupportedOperation",
        format!("{action} is not supported by this emulator's {service} service"),
    )
}

/// The answer to an action the service's API does not have (AWS's `InvalidAction`).
pub fn invalid_action(action: &str) -> AwsError {
    AwsError::bad_request(
        "InvalidAction",
        format!("The action {action} is not valid for this web service."),
    )
}

/// An instant (seconds since the Unix epoch) as the protocol's `dateTime`:
/// `2024-01-02T03:04:05Z`, what AWS's query services send.
pub fn timestamp(unix_seconds: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix_seconds)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Now, in seconds since the Unix epoch.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_lists_structures_and_maps_are_read() {
        let q = QueryRequest::parse(
            Some("Action=CreateRole&Version=2010-05-08"),
            b"RoleName=r&Tags.member.2.Key=b&Tags.member.2.Value=2&Tags.member.1.Key=a&Tags.member.1.Value=1\
              &Names.member.10=ten&Names.member.2=two&Attributes.entry.1.key=k&Attributes.entry.1.value=v\
              &MaxItems=5&Flag=TRUE&Signature=x",
        )
        .expect("parse");
        assert_eq!(q.action, "CreateRole");
        assert_eq!(q.version.as_deref(), Some("2010-05-08"));
        assert_eq!(q.get("RoleName"), Some("r"));
        assert_eq!(q.get("Signature"), None);
        assert_eq!(
            q.tags("Tags").expect("tags"),
            vec![("a".into(), "1".into()), ("b".into(), "2".into())]
        );
        assert_eq!(q.list("Names").expect("list"), vec!["two", "ten"]);
        assert_eq!(
            q.map("Attributes").expect("map"),
            vec![("k".into(), "v".into())]
        );
        assert_eq!(q.int("MaxItems", 1, 1000).expect("int"), Some(5));
        assert_eq!(q.bool("Flag").expect("bool"), Some(true));
        assert!(q.list("Nothing").expect("empty").is_empty());
    }

    #[test]
    fn bad_input_gives_aws_errors() {
        assert_eq!(
            QueryRequest::parse(None, b"RoleName=r").unwrap_err(),
            QueryError::MissingAction
        );
        let q = QueryRequest::parse(None, b"Action=X&MaxItems=0&Name=toolong&L.member.0=a")
            .expect("parse");
        let e: AwsError = q.required("UserName").unwrap_err().into();
        assert_eq!(e.code, "ValidationError");
        assert!(e.message.contains("at 'userName'"), "{}", e.message);
        let e: AwsError = q.int("MaxItems", 1, 1000).unwrap_err().into();
        assert!(e.message.contains("greater than or equal to 1"));
        let e = q.required_text("Name", &Text::len(1, 3)).unwrap_err();
        assert!(e.to_string().contains("less than or equal to 3"));
        let e: AwsError = q.list("L").unwrap_err().into();
        assert_eq!(e.code, "MalformedQueryString");
        let many: String = (0..=MAX_PARAMS).map(|i| format!("p{i}=1&")).collect();
        let e = QueryRequest::parse(Some("Action=X"), many.as_bytes()).unwrap_err();
        assert!(matches!(e, QueryError::Malformed(_)));
    }

    #[test]
    fn responses_escape_and_wrap_in_the_envelope() {
        let mut x = Xml::new();
        x.leaf("Name", "a<b>&\u{1}")
            .string_members("Plain", ["p"])
            .entries("M", [("k", "v")]);
        assert!(x.as_str().ends_with(
            "<Plain><member>p</member></Plain><M><entry><key>k</key><value>v</value></entry></M>"
        ));
        let mut y = Xml::new();
        y.members("Items", ["x"], |x, s| {
            x.leaf("Id", s);
        });
        assert_eq!(y.as_str(), "<Items><member><Id>x</Id></member></Items>");
        assert!(
            x.as_str()
                .starts_with("<Name>a&lt;b&gt;&amp;\u{FFFD}</Name>")
        );
        let r = response(
            "GetUser",
            "https://iam.amazonaws.com/doc/2010-05-08/",
            Some(&y),
        );
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers().contains_key("x-amzn-requestid"));
        assert_eq!(timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(timestamp(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
