//! Secrets Manager's errors: a kind (AWS's error code) and AWS's message.

use cryopod::AwsError;

/// The error codes Secrets Manager answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The secret, version or label does not exist.
    ResourceNotFound,
    /// The request is not valid in the secret's state (deleted, being created, …).
    InvalidRequest,
    /// A parameter value is not valid.
    InvalidParameter,
    /// A shape constraint (length, range, pattern) is broken.
    Validation,
    /// The secret or version exists already.
    ResourceExists,
    /// A quota (versions, labels, tags) is reached.
    LimitExceeded,
    /// A resource policy does not parse.
    MalformedPolicyDocument,
    /// A resource policy grants public access while that is blocked.
    PublicPolicy,
    /// A pagination token this service did not issue.
    InvalidNextToken,
}

impl Kind {
    /// AWS's error code.
    pub fn code(self) -> &'static str {
        match self {
            Kind::ResourceNotFound => "ResourceNotFoundException",
            Kind::InvalidRequest => "InvalidRequestException",
            Kind::InvalidParameter => "InvalidParameterException",
            Kind::Validation => "ValidationException",
            Kind::ResourceExists => "ResourceExistsException",
            Kind::LimitExceeded => "LimitExceededException",
            Kind::MalformedPolicyDocument => "MalformedPolicyDocumentException",
            Kind::PublicPolicy => "PublicPolicyException",
            Kind::InvalidNextToken => "InvalidNextTokenException",
        }
    }
}

/// An error of a Secrets Manager operation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", kind.code())]
pub struct SmError {
    /// What went wrong, as AWS's code.
    pub kind: Kind,
    /// AWS's wording.
    pub message: String,
}

impl SmError {
    /// An error of `kind`.
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// `ResourceNotFoundException` for a secret id that names nothing.
    pub fn no_secret() -> Self {
        Self::new(
            Kind::ResourceNotFound,
            "Secrets Manager can't find the specified secret.",
        )
    }

    /// `InvalidRequestException` for an operation on a secret scheduled for deletion.
    pub fn deleted() -> Self {
        Self::new(
            Kind::InvalidRequest,
            "You can't perform this operation on the secret because it was marked for deletion.",
        )
    }
}

/// What an operation fails with: its own errors, or the protocol's (shape validation).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// Secrets Manager's own refusal.
    #[error(transparent)]
    Service(#[from] SmError),
    /// The framework's protocol layer refused the input.
    #[error(transparent)]
    Protocol(#[from] AwsError),
}

impl From<Failure> for AwsError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Protocol(e) => e,
            Failure::Service(e) => AwsError::bad_request(e.kind.code(), e.message),
        }
    }
}

/// Shorthand for results of Secrets Manager operations.
pub type SmResult<T> = Result<T, Failure>;

/// `Err(SmError::new(kind, message).into())`, for `?` and returns.
pub fn fail<T>(kind: Kind, message: impl Into<String>) -> SmResult<T> {
    Err(SmError::new(kind, message).into())
}
