//! The AWS JSON protocols (1.0 and 1.1): `X-Amz-Target: Prefix.Operation` requests with a JSON
//! body, JSON answers, and errors as `{"__type", "message"}` with the HTTP status AWS uses.
//!
//! Why here: every JSON-protocol plugin (DynamoDB, SQS's JSON face, SSM, Secrets Manager,
//! the notes example, …) needs the same three steps — find the operation in `X-Amz-Target`,
//! read a bounded body into a JSON object, pull typed fields out of it with AWS's validation
//! wording — and the same answers. Written once, the wording and codes the SDKs parse are the
//! same in every service.
//!
//! ```ignore
//! const PROTOCOL: JsonProtocol = JsonProtocol::v1_1("AmazonSSM.", 1024 * 1024);
//! let call = PROTOCOL.read(&mut req).await?;          // operation + input
//! let name = call.input.string("Name", 1, 2048)?;    // ValidationException on misuse
//! PROTOCOL.respond(result)                            // 200 JSON or the AWS error
//! ```
//!
//! Field names in messages follow AWS: the member's name with a lower-case first letter
//! (`Value 'x' at 'name' failed to satisfy constraint: …`). A value of the wrong JSON type is
//! a `SerializationException`, as AWS's deserializers answer; a missing or out-of-range one
//! is a `ValidationException` (`1 validation error detected: …`).

use http::{HeaderValue, Response, StatusCode};
use serde_json::{Map, Value};

use crate::aws::{AwsError, AwsRequest, Body};

/// Which of the two JSON protocols a service speaks; they differ only in content type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonVersion {
    /// `application/x-amz-json-1.0` (DynamoDB, SQS).
    V1_0,
    /// `application/x-amz-json-1.1` (SSM, Secrets Manager, KMS).
    V1_1,
}

impl JsonVersion {
    /// The content type of requests and answers.
    pub fn content_type(self) -> &'static str {
        match self {
            JsonVersion::V1_0 => "application/x-amz-json-1.0",
            JsonVersion::V1_1 => "application/x-amz-json-1.1",
        }
    }
}

/// One service's JSON protocol: its target prefix, version and body limit. A `const` per
/// plugin.
#[derive(Clone, Copy, Debug)]
pub struct JsonProtocol {
    /// The `X-Amz-Target` prefix, dot included (`"AmazonSSM."`).
    pub target_prefix: &'static str,
    /// 1.0 or 1.1.
    pub version: JsonVersion,
    /// Largest request body read; a larger one is refused before it is buffered.
    pub max_body: usize,
}

/// A parsed request: the operation named by `X-Amz-Target` and the JSON object sent.
#[derive(Debug)]
pub struct JsonCall {
    /// The operation, without the prefix (`"PutParameter"`).
    pub operation: String,
    /// The request's fields.
    pub input: Input,
}

impl JsonProtocol {
    /// awsJson1.0 with `prefix` and a body limit.
    pub const fn v1_0(target_prefix: &'static str, max_body: usize) -> Self {
        Self {
            target_prefix,
            version: JsonVersion::V1_0,
            max_body,
        }
    }

    /// awsJson1.1 with `prefix` and a body limit.
    pub const fn v1_1(target_prefix: &'static str, max_body: usize) -> Self {
        Self {
            target_prefix,
            version: JsonVersion::V1_1,
            max_body,
        }
    }

    /// The operation named by the request's `X-Amz-Target`. A missing header or another
    /// service's prefix is `UnknownOperationException`, as AWS answers it.
    pub fn operation<'a>(&self, req: &'a AwsRequest) -> Result<&'a str, AwsError> {
        operation_of(req.header("x-amz-target"), self.target_prefix)
    }

    /// Reads the operation and the bounded body of `req`. An empty body is an empty object;
    /// anything but a JSON object is a `SerializationException`.
    pub async fn read(&self, req: &mut AwsRequest) -> Result<JsonCall, AwsError> {
        let operation = self.operation(req)?.to_string();
        let body = req.body_bytes(self.max_body).await?;
        let input = Input::parse(&body)?;
        Ok(JsonCall { operation, input })
    }

    /// The answer to a request: 200 with the JSON value, or the error in the JSON shape.
    pub fn respond(&self, result: Result<Value, AwsError>) -> Response<Body> {
        match result {
            Ok(v) => self.ok(&v),
            Err(e) => self.error(&e),
        }
    }

    /// A 200 answer carrying `value`.
    pub fn ok(&self, value: &Value) -> Response<Body> {
        let mut resp = crate::aws::json_response(StatusCode::OK, value);
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(self.version.content_type()),
        );
        resp
    }

    /// An error answer: `{"__type", "message"}`, `x-amzn-ErrorType`, AWS's status.
    pub fn error(&self, err: &AwsError) -> Response<Body> {
        let mut resp = err.to_json_response();
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(self.version.content_type()),
        );
        resp
    }
}

/// The operation in an `X-Amz-Target` value with `prefix` (`"AmazonSSM.GetParameter"` →
/// `"GetParameter"`).
pub fn operation_of<'a>(target: Option<&'a str>, prefix: &str) -> Result<&'a str, AwsError> {
    let target = target.unwrap_or_default();
    match target.strip_prefix(prefix) {
        Some(op) if !op.is_empty() => Ok(op),
        _ => Err(AwsError::bad_request(
            "UnknownOperationException",
            format!("X-Amz-Target `{target}` names no operation of this service"),
        )),
    }
}

/// AWS's validation error (`ValidationException`, 400).
pub fn validation(message: impl Into<String>) -> AwsError {
    AwsError::bad_request("ValidationException", message)
}

/// AWS's deserialization error (`SerializationException`, 400): a field of the wrong type.
pub fn serialization(message: impl Into<String>) -> AwsError {
    AwsError::bad_request("SerializationException", message)
}

/// A member name as AWS's validation messages write it (`SecretId` → `secretId`).
pub fn member_name(field: &str) -> String {
    let mut c = field.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// `1 validation error detected: Value '<v>' at '<member>' failed to satisfy constraint: <what>`.
pub fn constraint(value: &str, field: &str, what: &str) -> AwsError {
    validation(format!(
        "1 validation error detected: Value '{value}' at '{}' failed to satisfy constraint: {what}",
        member_name(field)
    ))
}

/// Checks a string's length in characters against `min..=max`, with AWS's wording.
pub fn check_len(field: &str, value: &str, min: usize, max: usize) -> Result<(), AwsError> {
    // Bounded first: a huge value is refused without counting all its characters.
    let n = if value.len() > max.saturating_mul(4) {
        usize::MAX
    } else {
        value.chars().count()
    };
    if n < min {
        return Err(constraint(
            value,
            field,
            &format!("Member must have length greater than or equal to {min}"),
        ));
    }
    if n > max {
        // AWS does not echo huge values; neither do we (they may be secrets).
        return Err(validation(format!(
            "1 validation error detected: Value at '{}' failed to satisfy constraint: Member must have length less than or equal to {max}",
            member_name(field)
        )));
    }
    Ok(())
}

/// Checks a number against `min..=max`, with AWS's wording.
pub fn check_range(field: &str, value: i64, min: i64, max: i64) -> Result<(), AwsError> {
    if value < min {
        return Err(constraint(
            &value.to_string(),
            field,
            &format!("Member must have value greater than or equal to {min}"),
        ));
    }
    if value > max {
        return Err(constraint(
            &value.to_string(),
            field,
            &format!("Member must have value less than or equal to {max}"),
        ));
    }
    Ok(())
}

/// A timestamp as the JSON protocols send it: epoch seconds, milliseconds as the fraction.
pub fn timestamp(epoch_ms: i64) -> Value {
    Value::from(epoch_ms as f64 / 1000.0)
}

/// The fields of a JSON request, with typed getters that answer AWS's errors.
///
/// Every getter treats JSON `null` as absent (SDKs never send it, other clients do).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Input(Map<String, Value>);

impl Input {
    /// Parses a request body: empty is `{}`, otherwise it must be a JSON object. The body is
    /// already bounded by [`JsonProtocol::max_body`]; `serde_json` also bounds nesting depth.
    pub fn parse(body: &[u8]) -> Result<Input, AwsError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Input::default());
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => Ok(Input(m)),
            Ok(_) => Err(serialization("the request body must be a JSON object")),
            Err(e) => Err(serialization(format!("the request body is not JSON: {e}"))),
        }
    }

    /// Wraps an object (nested structures are read with the same getters).
    pub fn from_map(map: Map<String, Value>) -> Input {
        Input(map)
    }

    /// The raw value of a field, `None` when absent or null.
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.0.get(field).filter(|v| !v.is_null())
    }

    /// Whether the field is present (and not null).
    pub fn has(&self, field: &str) -> bool {
        self.get(field).is_some()
    }

    /// A required string of `min..=max` characters.
    pub fn string(&self, field: &str, min: usize, max: usize) -> Result<&str, AwsError> {
        match self.opt_string(field, min, max)? {
            Some(s) => Ok(s),
            None => Err(missing(field)),
        }
    }

    /// An optional string of `min..=max` characters.
    pub fn opt_string(
        &self,
        field: &str,
        min: usize,
        max: usize,
    ) -> Result<Option<&str>, AwsError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => {
                check_len(field, s, min, max)?;
                Ok(Some(s))
            }
            Some(_) => Err(wrong_type(field, "a string")),
        }
    }

    /// An optional boolean.
    pub fn opt_bool(&self, field: &str) -> Result<Option<bool>, AwsError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(wrong_type(field, "a boolean")),
        }
    }

    /// A boolean, `false` when absent.
    pub fn flag(&self, field: &str) -> Result<bool, AwsError> {
        Ok(self.opt_bool(field)?.unwrap_or(false))
    }

    /// An optional integer in `min..=max`.
    pub fn opt_int(&self, field: &str, min: i64, max: i64) -> Result<Option<i64>, AwsError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Number(n)) => {
                let v = n.as_i64().ok_or_else(|| wrong_type(field, "an integer"))?;
                check_range(field, v, min, max)?;
                Ok(Some(v))
            }
            Some(_) => Err(wrong_type(field, "an integer")),
        }
    }

    /// An optional enum value: one of `allowed`.
    pub fn opt_enum(&self, field: &str, allowed: &[&str]) -> Result<Option<&str>, AwsError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => {
                if allowed.contains(&s.as_str()) {
                    Ok(Some(s))
                } else {
                    Err(constraint(
                        s,
                        field,
                        &format!(
                            "Member must satisfy enum value set: [{}]",
                            allowed.join(", ")
                        ),
                    ))
                }
            }
            Some(_) => Err(wrong_type(field, "a string")),
        }
    }

    /// An optional list of at most `max_items` strings, each of `min..=max` characters.
    pub fn opt_strings(
        &self,
        field: &str,
        max_items: usize,
        min: usize,
        max: usize,
    ) -> Result<Option<Vec<&str>>, AwsError> {
        let Some(items) = self.opt_list(field, max_items)? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let s = item
                .as_str()
                .ok_or_else(|| wrong_type(field, "a list of strings"))?;
            check_len(field, s, min, max)?;
            out.push(s);
        }
        Ok(Some(out))
    }

    /// A required list of `1..=max_items` strings, each of `min..=max` characters.
    pub fn strings(
        &self,
        field: &str,
        max_items: usize,
        min: usize,
        max: usize,
    ) -> Result<Vec<&str>, AwsError> {
        let list = self
            .opt_strings(field, max_items, min, max)?
            .ok_or_else(|| missing(field))?;
        if list.is_empty() {
            return Err(validation(format!(
                "1 validation error detected: Value '[]' at '{}' failed to satisfy constraint: Member must have length greater than or equal to 1",
                member_name(field)
            )));
        }
        Ok(list)
    }

    /// An optional list of at most `max_items` values.
    pub fn opt_list(&self, field: &str, max_items: usize) -> Result<Option<&Vec<Value>>, AwsError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Array(a)) => {
                if a.len() > max_items {
                    return Err(validation(format!(
                        "1 validation error detected: Value at '{}' failed to satisfy constraint: Member must have length less than or equal to {max_items}",
                        member_name(field)
                    )));
                }
                Ok(Some(a))
            }
            Some(_) => Err(wrong_type(field, "a list")),
        }
    }

    /// An optional list of at most `max_items` structures, each read as an [`Input`].
    pub fn opt_structs(
        &self,
        field: &str,
        max_items: usize,
    ) -> Result<Option<Vec<Input>>, AwsError> {
        let Some(items) = self.opt_list(field, max_items)? else {
            return Ok(None);
        };
        items
            .iter()
            .map(|v| match v {
                Value::Object(m) => Ok(Input(m.clone())),
                _ => Err(wrong_type(field, "a list of structures")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// An optional nested structure.
    pub fn opt_struct(&self, field: &str) -> Result<Option<Input>, AwsError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(Input(m.clone()))),
            Some(_) => Err(wrong_type(field, "a structure")),
        }
    }

    /// An optional blob: the base64 text JSON carries it as, at most `max` bytes once
    /// decoded (checked on the text's length, so nothing huge is decoded). The caller
    /// decodes it with its own base64 engine.
    pub fn opt_blob_text(&self, field: &str, max: usize) -> Result<Option<&str>, AwsError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => {
                if s.len() > max.div_ceil(3).saturating_mul(4) {
                    return Err(validation(format!(
                        "1 validation error detected: Value at '{}' failed to satisfy constraint: Member must have length less than or equal to {max}",
                        member_name(field)
                    )));
                }
                Ok(Some(s))
            }
            Some(_) => Err(wrong_type(field, "a base64 string")),
        }
    }

    /// A list of `{"Key", "Value"}` tags (the shape most services share), at most
    /// `max_items`, keys of 1–128 characters and values of 0–256.
    pub fn opt_tags(
        &self,
        field: &str,
        max_items: usize,
    ) -> Result<Option<Vec<(String, String)>>, AwsError> {
        let Some(items) = self.opt_structs(field, max_items)? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(items.len());
        for t in items {
            let k = t.string("Key", 1, 128)?;
            let v = t.opt_string("Value", 0, 256)?.unwrap_or_default();
            out.push((k.to_string(), v.to_string()));
        }
        Ok(Some(out))
    }
}

/// `Member must not be null`, AWS's answer to a missing required member.
pub fn missing(field: &str) -> AwsError {
    validation(format!(
        "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
        member_name(field)
    ))
}

fn wrong_type(field: &str, expected: &str) -> AwsError {
    serialization(format!("{field} must be {expected}"))
}

/// A page of a sorted listing: the items after the `next_token` cursor, at most `limit`, and
/// the token of the next page. Tokens name the last key returned, so a page is
/// stable under writes between calls (AWS's tokens are opaque too; these are hex, which
/// needs no padding or escaping). `Err` is a token this code did not issue.
pub fn page<'a, T>(
    items: impl Iterator<Item = (&'a str, T)>,
    next_token: Option<&str>,
    limit: usize,
) -> Result<(Vec<T>, Option<String>), InvalidToken> {
    let after = match next_token {
        None => None,
        Some(t) => {
            let raw = hex::decode(t).map_err(|_| InvalidToken)?;
            Some(String::from_utf8(raw).map_err(|_| InvalidToken)?)
        }
    };
    let mut out = Vec::new();
    let mut last = None;
    let mut more = false;
    for (key, item) in items {
        if after.as_deref().is_some_and(|a| key <= a) {
            continue;
        }
        if out.len() == limit {
            more = true;
            break;
        }
        last = Some(key);
        out.push(item);
    }
    let token = if more {
        last.map(|k| hex::encode(k.as_bytes()))
    } else {
        None
    };
    Ok((out, token))
}

/// A pagination token this service did not issue ([`page`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the pagination token is not valid")]
pub struct InvalidToken;

/// Runs one operation on a plugin's state cell: a write through [`crate::StateCell::write`]
/// (on a copy, installed only on success, change-tracked), a read under the read lock.
/// Why here: every JSON plugin's dispatch ends in this same choice.
pub async fn run_on<S, E>(
    cell: &crate::StateCell<S>,
    scope: &crate::Scope,
    is_write: bool,
    on_write: impl FnOnce(&mut S) -> Result<Value, E>,
    on_read: impl FnOnce(&S) -> Result<Value, E>,
) -> Result<Value, AwsError>
where
    S: crate::ScopedState + crate::ServiceState,
    E: Into<AwsError>,
{
    if is_write {
        cell.write(scope, on_write).await.map_err(Into::into)
    } else {
        cell.read(on_read).map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(v: Value) -> Input {
        Input::parse(v.to_string().as_bytes()).expect("object")
    }

    #[test]
    fn target_prefix_selects_the_operation() {
        assert_eq!(
            operation_of(Some("AmazonSSM.GetParameter"), "AmazonSSM.").ok(),
            Some("GetParameter")
        );
        let e = operation_of(Some("Other.X"), "AmazonSSM.").unwrap_err();
        assert_eq!(e.code, "UnknownOperationException");
        assert!(operation_of(None, "AmazonSSM.").is_err());
    }

    #[test]
    fn bodies_must_be_objects() {
        assert_eq!(Input::parse(b"").unwrap(), Input::default());
        assert_eq!(
            Input::parse(b"[1]").unwrap_err().code,
            "SerializationException"
        );
        assert_eq!(
            Input::parse(b"{").unwrap_err().code,
            "SerializationException"
        );
    }

    #[test]
    fn getters_answer_with_aws_wording() {
        let i = input(json!({"Name": "", "Flag": 1, "N": 99, "E": "x", "L": ["a", "b", "c"]}));
        let e = i.string("Name", 1, 10).unwrap_err();
        assert_eq!(e.code, "ValidationException");
        assert!(e.message.contains("at 'name'"), "{}", e.message);
        assert_eq!(
            i.string("Missing", 1, 10).unwrap_err().message,
            "1 validation error detected: Value null at 'missing' failed to satisfy constraint: Member must not be null"
        );
        assert_eq!(
            i.opt_bool("Flag").unwrap_err().code,
            "SerializationException"
        );
        assert!(
            i.opt_int("N", 1, 50)
                .unwrap_err()
                .message
                .contains("less than or equal to 50")
        );
        assert!(
            i.opt_enum("E", &["a", "b"])
                .unwrap_err()
                .message
                .contains("enum value set: [a, b]")
        );
        assert!(i.opt_strings("L", 2, 1, 5).is_err());
        assert_eq!(
            i.opt_strings("L", 3, 1, 5).unwrap().unwrap(),
            vec!["a", "b", "c"]
        );
    }

    #[test]
    fn long_values_are_not_echoed() {
        let e = check_len("SecretString", &"s".repeat(100), 1, 10).unwrap_err();
        assert!(!e.message.contains("sss"), "{}", e.message);
    }

    #[test]
    fn pages_resume_after_the_last_key() {
        let keys = ["a", "b", "c", "d", "e"];
        let (p1, t1) = page(keys.iter().map(|k| (*k, *k)), None, 2).unwrap();
        assert_eq!(p1, vec!["a", "b"]);
        let (p2, t2) = page(keys.iter().map(|k| (*k, *k)), t1.as_deref(), 2).unwrap();
        assert_eq!(p2, vec!["c", "d"]);
        let (p3, t3) = page(keys.iter().map(|k| (*k, *k)), t2.as_deref(), 2).unwrap();
        assert_eq!((p3, t3), (vec!["e"], None));
        assert!(page(keys.iter().map(|k| (*k, *k)), Some("!!"), 2).is_err());
    }
}
