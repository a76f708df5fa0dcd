//! The protocol kit: what every AWS service plugin needs to speak its wire protocol, written
//! once here so that a new service writes only its own operations.
//!
//! - [`json`]: the AWS JSON protocols (1.0 and 1.1): `X-Amz-Target` dispatch, typed field
//!   extraction that answers AWS-shaped `ValidationException`s, JSON responses and errors
//!   (SSM, Secrets Manager, KMS, DynamoDB, SQS's JSON face, …);
//! - [`query`]: the query protocol: form-encoded `Action=` requests and XML responses with
//!   AWS's `<…Response><…Result>` envelope and `<ErrorResponse>` errors (STS, IAM, SNS, SQS's
//!   query face, …).
pub mod json;
pub mod query;
