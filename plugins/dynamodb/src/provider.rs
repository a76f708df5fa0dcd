//! The running service: request handling plus the [`StateProvider`] that snapshots it.

use std::any::Any;

use async_trait::async_trait;
use cryopod::plugin::CellProvider;
use cryopod::{AwsRequest, Body, Service, ServiceContext, StateCell};
use serde_json::Value;

use crate::api;
use crate::error::DdbError;
use crate::state::DynamoState;

/// Every operation this service answers, in AWS's names: the operations `api::write_op` and
/// `api::read_op` match. The registration carries it, the README's service table is checked
/// against it, and `tests/registration.rs` checks each is dispatched.
pub const OPERATIONS: &[&str] = &[
    "BatchGetItem",
    "BatchWriteItem",
    "CreateTable",
    "DeleteItem",
    "DeleteTable",
    "DescribeLimits",
    "DescribeTable",
    "DescribeTimeToLive",
    "GetItem",
    "ListTables",
    "ListTagsOfResource",
    "PutItem",
    "Query",
    "Scan",
    "TagResource",
    "TransactGetItems",
    "TransactWriteItems",
    "UntagResource",
    "UpdateItem",
    "UpdateTable",
    "UpdateTimeToLive",
];

/// The `X-Amz-Target` prefix of every DynamoDB operation.
pub const TARGET_PREFIX: &str = "DynamoDB_20120810.";

/// Largest request body accepted: a 25-item batch of 400 KB items plus JSON overhead.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

/// Parses a request body. serde_json refuses JSON nested more than 128 levels deep, which
/// is what keeps its own recursion (and the drop of the `Value`) safe; in a DynamoDB
/// request only attribute values can nest that deep, so that refusal is answered the way
/// AWS answers a value nested past 32 levels rather than as malformed JSON.
fn parse_body(body: &[u8]) -> Result<Value, DdbError> {
    serde_json::from_slice(body).map_err(|e| {
        // serde_json has no typed accessor for this error; its message is pinned by the
        // `deep_json_is_a_nesting_error` test.
        if e.to_string().starts_with("recursion limit exceeded") {
            crate::value::nesting_error()
        } else {
            DdbError::serialization(format!("invalid JSON: {e}"))
        }
    })
}

/// The DynamoDB service. All state, derived indexes included, lives in one [`StateCell`],
/// so every write is transactional and a capture is an O(1) clone.
pub struct DynamoService {
    state: StateCell<DynamoState>,
}

impl DynamoService {
    /// Built by the runtime from the registration in `lib.rs`.
    pub fn new(ctx: ServiceContext) -> Self {
        Self {
            state: StateCell::new(ctx),
        }
    }

    async fn dispatch(&self, mut req: AwsRequest) -> Result<Value, DdbError> {
        let target = req.header("x-amz-target").unwrap_or_default().to_string();
        let Some(op) = target.strip_prefix(TARGET_PREFIX).map(str::to_string) else {
            return Err(DdbError::new(
                "UnknownOperationException",
                format!("unknown target {target}"),
            ));
        };
        let body = req
            .body_bytes(MAX_REQUEST_BYTES)
            .await
            .map_err(|e| DdbError::new("ValidationException", e.message))?;
        let json: Value = if body.is_empty() {
            Value::Object(Default::default())
        } else {
            parse_body(&body)?
        };
        if !json.is_object() {
            return Err(DdbError::serialization(
                "the request body must be a JSON object",
            ));
        }
        let scope = req.scope.clone();
        tracing::debug!(op = %op, scope = %scope, "dynamodb request");
        if api::is_write(&op) {
            let now = now_epoch();
            self.state
                .write(&scope, |s| api::write_op(s, &scope, &op, &json, now))
                .await
        } else {
            self.state.read(|s| api::read_op(s, &scope, &op, &json))
        }
    }

    /// Runs one operation directly, without HTTP: for tests and embedders that seed state.
    pub async fn call(
        &self,
        scope: &cryopod::Scope,
        op: &str,
        body: Value,
    ) -> Result<Value, DdbError> {
        if api::is_write(op) {
            let now = now_epoch();
            self.state
                .write(scope, |s| api::write_op(s, scope, op, &body, now))
                .await
        } else {
            self.state.read(|s| api::read_op(s, scope, op, &body))
        }
    }
}

fn now_epoch() -> f64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    // Millisecond precision, as DynamoDB reports CreationDateTime.
    (d.as_millis() as f64) / 1000.0
}

/// The [`cryopod::StateProvider`] comes from the cell, with one hook: secondary indexes are
/// derived data, never serialized, so those of every table that came from a bundle are
/// pending and are built in the background once installed (queries that need one first wait
/// for it). Tables taken from the running state keep theirs.
impl CellProvider for DynamoService {
    type State = DynamoState;
    fn cell(&self) -> &StateCell<DynamoState> {
        &self.state
    }
    fn after_restore(&self, installed: &DynamoState) {
        installed.start_index_builds();
    }
}

#[async_trait]
impl Service for DynamoService {
    async fn handle(&self, req: AwsRequest) -> http::Response<Body> {
        match self.dispatch(req).await {
            Ok(v) => cryopod::aws::json_response(http::StatusCode::OK, &v),
            Err(e) => {
                tracing::debug!(code = e.code, message = %e.message, "dynamodb error");
                e.to_response()
            }
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_json_is_a_nesting_error() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let err = parse_body(deep.as_bytes()).unwrap_err();
        assert_eq!(err.code, "ValidationException");
        assert_eq!(err.message, crate::value::NESTING_MESSAGE);
        let bad = parse_body(b"{").unwrap_err();
        assert_eq!(bad.code, "SerializationException");
        assert!(parse_body(br#"{"a": [[[1]]]}"#).is_ok());
    }
}
