//! Parameter Store's errors, each with the code AWS answers it with.

use cryopod::AwsError;

/// An error of a Parameter Store operation; [`SsmError::code`] is AWS's error code, and the
/// message is AWS's wording where AWS has one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SsmError {
    /// A protocol-level refusal (validation of shapes, bad JSON), already AWS-shaped.
    #[error(transparent)]
    Protocol(#[from] AwsError),
    /// `ValidationException`: a value breaks one of Parameter Store's rules.
    #[error("{0}")]
    Validation(String),
    /// `ParameterNotFound`.
    #[error("{0}")]
    ParameterNotFound(String),
    /// `ParameterAlreadyExists`: a put without `Overwrite` of an existing name.
    #[error(
        "The parameter already exists. To overwrite this value, set the overwrite option in the request to true."
    )]
    ParameterAlreadyExists,
    /// `ParameterVersionNotFound`.
    #[error("{0}")]
    ParameterVersionNotFound(String),
    /// `ParameterVersionLabelLimitExceeded`: more than 10 labels on one version.
    #[error("{0}")]
    LabelLimitExceeded(String),
    /// `ParameterMaxVersionLimitExceeded`: the oldest of 100 versions is labelled.
    #[error("{0}")]
    MaxVersionLimitExceeded(String),
    /// `HierarchyLevelLimitExceededException`: more than 15 levels.
    #[error(
        "A hierarchy can have a maximum of 15 levels. For more information, see Requirements and constraints for parameter names in the Amazon Web Services Systems Manager User Guide."
    )]
    HierarchyLevelLimitExceeded,
    /// `InvalidAllowedPatternException`.
    #[error("{0}")]
    InvalidAllowedPattern(String),
    /// `ParameterPatternMismatchException`.
    #[error("{0}")]
    PatternMismatch(String),
    /// `InvalidKeyId`.
    #[error("{0}")]
    InvalidKeyId(String),
    /// `InvalidFilterKey`.
    #[error("{0}")]
    InvalidFilterKey(String),
    /// `InvalidFilterOption`.
    #[error("{0}")]
    InvalidFilterOption(String),
    /// `InvalidFilterValue`.
    #[error("{0}")]
    InvalidFilterValue(String),
    /// `InvalidNextToken`.
    #[error("The specified token isn't valid.")]
    InvalidNextToken,
    /// `InvalidResourceType`.
    #[error("{0}")]
    InvalidResourceType(String),
    /// `InvalidResourceId`.
    #[error("{0}")]
    InvalidResourceId(String),
    /// `TooManyTagsError`: more than 50 tags on a parameter.
    #[error("The Tags parameter contains more than the maximum of 50 tags.")]
    TooManyTags,
    /// `InvalidPolicyTypeException`.
    #[error("{0}")]
    InvalidPolicyType(String),
    /// `InvalidPolicyAttributeException`.
    #[error("{0}")]
    InvalidPolicyAttribute(String),
    /// `PoliciesLimitExceededException`.
    #[error(
        "You specified more than the maximum number of allowed policies for the parameter. The maximum is 10."
    )]
    PoliciesLimitExceeded,
    /// `IncompatiblePolicyException`.
    #[error("{0}")]
    IncompatiblePolicy(String),
    /// `UnsupportedParameterType`.
    #[error("{0}")]
    UnsupportedParameterType(String),
    /// `InternalServerError`: a stored value cannot be processed.
    #[error("{0}")]
    Internal(String),
}

impl SsmError {
    /// AWS's error code.
    pub fn code(&self) -> &str {
        match self {
            SsmError::Protocol(e) => &e.code,
            SsmError::Validation(_) => "ValidationException",
            SsmError::ParameterNotFound(_) => "ParameterNotFound",
            SsmError::ParameterAlreadyExists => "ParameterAlreadyExists",
            SsmError::ParameterVersionNotFound(_) => "ParameterVersionNotFound",
            SsmError::LabelLimitExceeded(_) => "ParameterVersionLabelLimitExceeded",
            SsmError::MaxVersionLimitExceeded(_) => "ParameterMaxVersionLimitExceeded",
            SsmError::HierarchyLevelLimitExceeded => "HierarchyLevelLimitExceededException",
            SsmError::InvalidAllowedPattern(_) => "InvalidAllowedPatternException",
            SsmError::PatternMismatch(_) => "ParameterPatternMismatchException",
            SsmError::InvalidKeyId(_) => "InvalidKeyId",
            SsmError::InvalidFilterKey(_) => "InvalidFilterKey",
            SsmError::InvalidFilterOption(_) => "InvalidFilterOption",
            SsmError::InvalidFilterValue(_) => "InvalidFilterValue",
            SsmError::InvalidNextToken => "InvalidNextToken",
            SsmError::InvalidResourceType(_) => "InvalidResourceType",
            SsmError::InvalidResourceId(_) => "InvalidResourceId",
            SsmError::TooManyTags => "TooManyTagsError",
            SsmError::InvalidPolicyType(_) => "InvalidPolicyTypeException",
            SsmError::InvalidPolicyAttribute(_) => "InvalidPolicyAttributeException",
            SsmError::PoliciesLimitExceeded => "PoliciesLimitExceededException",
            SsmError::IncompatiblePolicy(_) => "IncompatiblePolicyException",
            SsmError::UnsupportedParameterType(_) => "UnsupportedParameterType",
            SsmError::Internal(_) => "InternalServerError",
        }
    }
}

impl From<SsmError> for AwsError {
    fn from(e: SsmError) -> Self {
        match e {
            SsmError::Protocol(e) => e,
            SsmError::Internal(m) => AwsError::new(
                http::StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                m,
            ),
            other => AwsError::bad_request(other.code().to_string(), other.to_string()),
        }
    }
}

/// Shorthand for results of Parameter Store operations.
pub type SsmResult<T> = Result<T, SsmError>;
