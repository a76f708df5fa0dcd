//! Lambda's error codes with the HTTP statuses AWS answers them with (botocore's lambda
//! service model), so SDKs map them to the same exception types as against AWS.

use cryopod::AwsError;
use http::StatusCode;

/// 404 `ResourceNotFoundException`.
pub fn not_found(msg: impl Into<String>) -> AwsError {
    AwsError::new(StatusCode::NOT_FOUND, "ResourceNotFoundException", msg)
}

/// 409 `ResourceConflictException`: the resource exists already, or is in use.
pub fn conflict(msg: impl Into<String>) -> AwsError {
    AwsError::new(StatusCode::CONFLICT, "ResourceConflictException", msg)
}

/// 400 `InvalidParameterValueException`: a value the model allows but Lambda refuses.
pub fn invalid(msg: impl Into<String>) -> AwsError {
    AwsError::new(
        StatusCode::BAD_REQUEST,
        "InvalidParameterValueException",
        msg,
    )
}

/// 400 `ValidationException`: a value that breaks the model's own constraints (pattern,
/// length, range, enum), which AWS checks before Lambda sees the request.
pub fn validation(msg: impl Into<String>) -> AwsError {
    AwsError::new(StatusCode::BAD_REQUEST, "ValidationException", msg)
}

/// A `ValidationException` worded as AWS words it.
pub fn constraint(field: &str, value: &str, rule: &str) -> AwsError {
    validation(format!(
        "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: {rule}"
    ))
}

/// 412 `PreconditionFailedException`: a stale `RevisionId`.
pub fn precondition(msg: impl Into<String>) -> AwsError {
    AwsError::new(
        StatusCode::PRECONDITION_FAILED,
        "PreconditionFailedException",
        msg,
    )
}

/// 413 `RequestEntityTooLargeException`: the body or the decoded zip is over the limit.
pub fn too_large(msg: impl Into<String>) -> AwsError {
    AwsError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "RequestEntityTooLargeException",
        msg,
    )
}

/// 500 `ServiceException`: the emulator itself failed (blob store I/O).
pub fn internal(msg: impl Into<String>) -> AwsError {
    AwsError::new(StatusCode::INTERNAL_SERVER_ERROR, "ServiceException", msg)
}

/// 400 `SerializationException`: the body is not the JSON the operation expects.
pub fn serialization(msg: impl Into<String>) -> AwsError {
    AwsError::new(StatusCode::BAD_REQUEST, "SerializationException", msg)
}

/// 501 for operations outside the emulated control plane (Invoke and friends). 501 rather
/// than 500 so SDKs do not retry it as a transient failure.
pub fn unsupported(what: &str) -> AwsError {
    AwsError::new(
        StatusCode::NOT_IMPLEMENTED,
        "NotImplementedException",
        format!(
            "{what} is not supported by this emulator: cryopod emulates Lambda's control plane (functions, versions, aliases, permissions, layers, event source mappings, tags) and does not run function code"
        ),
    )
}
