//! SQS errors with the codes each protocol reports.
//!
//! SQS speaks two protocols with different error names for the same error: the JSON protocol
//! sends `__type: com.amazonaws.sqs#QueueDoesNotExist` plus the header
//! `x-amzn-query-error: AWS.SimpleQueueService.NonExistentQueue;Sender` (which the SDKs use to
//! pick the exception type), the query protocol sends `<Code>AWS.SimpleQueueService.NonExistentQueue</Code>`.
//! One [`ErrorKind`] carries both names and the HTTP status.

use cryopod::Body;
use http::{HeaderValue, Response, StatusCode};

/// Every error this plugin answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The queue does not exist.
    QueueDoesNotExist,
    /// A queue with this name exists with different attributes.
    QueueNameExists,
    /// Unknown attribute name.
    InvalidAttributeName,
    /// Attribute value out of range or malformed.
    InvalidAttributeValue,
    /// A parameter value is invalid.
    InvalidParameterValue,
    /// A required parameter is missing.
    MissingParameter,
    /// The message contains characters outside the allowed set.
    InvalidMessageContents,
    /// The receipt handle is malformed or belongs to another queue.
    ReceiptHandleIsInvalid,
    /// The message is not in flight.
    MessageNotInflight,
    /// A purge ran less than 60 seconds ago.
    PurgeQueueInProgress,
    /// More than 10 batch entries.
    TooManyEntriesInBatchRequest,
    /// No batch entries.
    EmptyBatchRequest,
    /// Two batch entries share an id.
    BatchEntryIdsNotDistinct,
    /// The batch is larger than the maximum message size.
    BatchRequestTooLong,
    /// A batch entry id is malformed.
    InvalidBatchEntryId,
    /// A limit was exceeded (tags, in-flight messages).
    OverLimit,
    /// The operation is not supported by this emulator or for this queue type.
    UnsupportedOperation,
    /// The action is unknown.
    InvalidAction,
    /// The queue URL is not an address of this endpoint.
    InvalidAddress,
    /// The request could not be parsed.
    MalformedRequest,
    /// A bug or an I/O failure on our side.
    InternalError,
}

impl ErrorKind {
    /// The shape name the JSON protocol puts in `__type` (after `com.amazonaws.sqs#`).
    pub fn json_type(self) -> &'static str {
        match self {
            ErrorKind::QueueDoesNotExist => "QueueDoesNotExist",
            ErrorKind::QueueNameExists => "QueueNameExists",
            ErrorKind::InvalidAttributeName => "InvalidAttributeName",
            ErrorKind::InvalidAttributeValue => "InvalidAttributeValue",
            ErrorKind::InvalidParameterValue => "InvalidParameterValueException",
            ErrorKind::MissingParameter => "MissingRequiredParameterException",
            ErrorKind::InvalidMessageContents => "InvalidMessageContents",
            ErrorKind::ReceiptHandleIsInvalid => "ReceiptHandleIsInvalid",
            ErrorKind::MessageNotInflight => "MessageNotInflight",
            ErrorKind::PurgeQueueInProgress => "PurgeQueueInProgress",
            ErrorKind::TooManyEntriesInBatchRequest => "TooManyEntriesInBatchRequest",
            ErrorKind::EmptyBatchRequest => "EmptyBatchRequest",
            ErrorKind::BatchEntryIdsNotDistinct => "BatchEntryIdsNotDistinct",
            ErrorKind::BatchRequestTooLong => "BatchRequestTooLong",
            ErrorKind::InvalidBatchEntryId => "InvalidBatchEntryId",
            ErrorKind::OverLimit => "OverLimit",
            ErrorKind::UnsupportedOperation => "UnsupportedOperation",
            ErrorKind::InvalidAction => "UnknownOperationException",
            ErrorKind::InvalidAddress => "InvalidAddress",
            ErrorKind::MalformedRequest => "SerializationException",
            ErrorKind::InternalError => "InternalFailure",
        }
    }

    /// The legacy query-protocol code (also sent in `x-amzn-query-error`).
    pub fn query_code(self) -> &'static str {
        match self {
            ErrorKind::QueueDoesNotExist => "AWS.SimpleQueueService.NonExistentQueue",
            ErrorKind::QueueNameExists => "QueueAlreadyExists",
            ErrorKind::InvalidAttributeName => "InvalidAttributeName",
            ErrorKind::InvalidAttributeValue => "InvalidAttributeValue",
            ErrorKind::InvalidParameterValue => "InvalidParameterValue",
            ErrorKind::MissingParameter => "MissingParameter",
            ErrorKind::InvalidMessageContents => "InvalidMessageContents",
            ErrorKind::ReceiptHandleIsInvalid => "ReceiptHandleIsInvalid",
            ErrorKind::MessageNotInflight => "AWS.SimpleQueueService.MessageNotInflight",
            ErrorKind::PurgeQueueInProgress => "AWS.SimpleQueueService.PurgeQueueInProgress",
            ErrorKind::TooManyEntriesInBatchRequest => {
                "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"
            }
            ErrorKind::EmptyBatchRequest => "AWS.SimpleQueueService.EmptyBatchRequest",
            ErrorKind::BatchEntryIdsNotDistinct => {
                "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"
            }
            ErrorKind::BatchRequestTooLong => "AWS.SimpleQueueService.BatchRequestTooLong",
            ErrorKind::InvalidBatchEntryId => "AWS.SimpleQueueService.InvalidBatchEntryId",
            ErrorKind::OverLimit => "OverLimit",
            ErrorKind::UnsupportedOperation => "AWS.SimpleQueueService.UnsupportedOperation",
            ErrorKind::InvalidAction => "InvalidAction",
            ErrorKind::InvalidAddress => "InvalidAddress",
            ErrorKind::MalformedRequest => "MalformedQueryString",
            ErrorKind::InternalError => "InternalError",
        }
    }

    /// The HTTP status AWS answers with.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::OverLimit | ErrorKind::PurgeQueueInProgress => StatusCode::FORBIDDEN,
            ErrorKind::ReceiptHandleIsInvalid => StatusCode::NOT_FOUND,
            ErrorKind::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// An SQS error: its kind and a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", kind.query_code())]
pub struct SqsError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// For humans.
    pub message: String,
}

/// Results of SQS operations.
pub type SqsResult<T> = Result<T, SqsError>;

impl SqsError {
    /// Builds an error.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// `QueueDoesNotExist` with AWS's message.
    pub fn no_queue() -> Self {
        Self::new(
            ErrorKind::QueueDoesNotExist,
            "The specified queue does not exist.",
        )
    }

    /// `InvalidParameterValue`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidParameterValue, message)
    }

    /// `MissingParameter` for `field`, with AWS's message.
    pub fn missing(field: &str) -> Self {
        Self::new(
            ErrorKind::MissingParameter,
            format!("The request must contain the parameter {field}."),
        )
    }

    /// `Sender` for client faults, `Receiver` for ours.
    pub fn fault(&self) -> &'static str {
        if self.kind.status().is_client_error() {
            "Sender"
        } else {
            "Receiver"
        }
    }

    /// The JSON-protocol error response.
    pub fn to_json_response(&self) -> Response<Body> {
        let body = serde_json::json!({
            "__type": format!("com.amazonaws.sqs#{}", self.kind.json_type()),
            "message": self.message,
        });
        let mut resp = Response::new(Body::from(body.to_string()));
        *resp.status_mut() = self.kind.status();
        let h = resp.headers_mut();
        h.insert(
            "content-type",
            HeaderValue::from_static("application/x-amz-json-1.0"),
        );
        if let Ok(v) =
            HeaderValue::from_str(&format!("{};{}", self.kind.query_code(), self.fault()))
        {
            h.insert("x-amzn-query-error", v);
        }
        if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
            h.insert("x-amzn-requestid", v);
        }
        resp
    }

    /// The query-protocol (XML) error response.
    pub fn to_query_response(&self) -> Response<Body> {
        cryopod::AwsError::new(self.kind.status(), self.kind.query_code(), &self.message)
            .to_query_xml_response()
    }
}

impl From<cryopod::AwsError> for SqsError {
    fn from(e: cryopod::AwsError) -> Self {
        let kind = if e.status.is_client_error() {
            ErrorKind::MalformedRequest
        } else {
            ErrorKind::InternalError
        };
        Self::new(kind, e.message)
    }
}
