//! DynamoDB errors in the awsJson1.0 shape the SDKs parse.
//!
//! The framework's [`cryopod::AwsError`] carries only a code and a message; DynamoDB also
//! needs structured members (`CancellationReasons` of `TransactionCanceledException`, the
//! `Item` of a failed condition), so this crate renders its own error bodies.

use http::StatusCode;
use serde_json::{Map, Value, json};

/// The namespace DynamoDB prefixes to every error type.
pub const ERROR_PREFIX: &str = "com.amazonaws.dynamodb.v20120810#";

/// An error as DynamoDB answers it.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct DdbError {
    /// HTTP status.
    pub status: StatusCode,
    /// Short error code (`ValidationException`).
    pub code: &'static str,
    /// Message.
    pub message: String,
    /// Extra members of the error structure.
    pub extra: Map<String, Value>,
}

impl DdbError {
    /// A 400 error.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
            extra: Map::new(),
        }
    }

    /// `ValidationException`.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new("ValidationException", message)
    }

    /// `SerializationException` (malformed JSON shapes).
    pub fn serialization(message: impl Into<String>) -> Self {
        Self::new("SerializationException", message)
    }

    /// `ResourceNotFoundException` with AWS's text.
    pub fn not_found() -> Self {
        Self::new("ResourceNotFoundException", "Requested resource not found")
    }

    /// `ResourceNotFoundException` naming a table, as DescribeTable/DeleteTable say it.
    pub fn table_not_found(name: &str) -> Self {
        Self::new(
            "ResourceNotFoundException",
            format!("Requested resource not found: Table: {name} not found"),
        )
    }

    /// `ConditionalCheckFailedException`.
    pub fn condition_failed() -> Self {
        Self::new(
            "ConditionalCheckFailedException",
            "The conditional request failed",
        )
    }

    /// `InternalServerError` (500).
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            ..Self::new("InternalServerError", message)
        }
    }

    /// Adds a structure member.
    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.to_string(), value);
        self
    }

    /// The HTTP response.
    pub fn to_response(&self) -> http::Response<cryopod::Body> {
        let mut body = Map::new();
        body.insert(
            "__type".into(),
            Value::String(format!("{ERROR_PREFIX}{}", self.code)),
        );
        body.insert("message".into(), Value::String(self.message.clone()));
        for (k, v) in &self.extra {
            body.insert(k.clone(), v.clone());
        }
        let mut resp = cryopod::aws::json_response(self.status, &Value::Object(body));
        if let Ok(v) = http::HeaderValue::from_str(self.code) {
            resp.headers_mut().insert("x-amzn-errortype", v);
        }
        resp
    }

    /// A body for unit tests.
    pub fn to_json(&self) -> Value {
        json!({"code": self.code, "message": self.message})
    }
}
