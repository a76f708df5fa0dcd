//! Request input: typed access to a JSON body and the checks Lambda applies to each value.
//!
//! Two kinds of refusal, as AWS makes them: values that break the service model's own
//! constraints (pattern, length, range, enum) get `ValidationException`; values the model
//! allows but Lambda's limits refuse (memory over 10240 MiB, timeout over 900 s, a deprecated
//! runtime, oversized environments) get `InvalidParameterValueException`.

use cryopod::AwsError;
use imbl::{OrdMap, Vector};
use serde_json::Value;

pub use crate::error::constraint;
use crate::error::{invalid, serialization};

/// Every runtime identifier in the service model.
pub const RUNTIMES: &[&str] = &[
    "nodejs",
    "nodejs4.3",
    "nodejs6.10",
    "nodejs8.10",
    "nodejs10.x",
    "nodejs12.x",
    "nodejs14.x",
    "nodejs16.x",
    "nodejs18.x",
    "nodejs20.x",
    "nodejs22.x",
    "nodejs24.x",
    "nodejs26.x",
    "java8",
    "java8.al2",
    "java8.al2023",
    "java11",
    "java11.al2023",
    "java17",
    "java17.al2023",
    "java21",
    "java25",
    "python2.7",
    "python3.6",
    "python3.7",
    "python3.8",
    "python3.9",
    "python3.10",
    "python3.11",
    "python3.12",
    "python3.13",
    "python3.14",
    "python3.15",
    "dotnetcore1.0",
    "dotnetcore2.0",
    "dotnetcore2.1",
    "dotnetcore3.1",
    "dotnet6",
    "dotnet8",
    "dotnet10",
    "nodejs4.3-edge",
    "go1.x",
    "ruby2.5",
    "ruby2.7",
    "ruby3.2",
    "ruby3.3",
    "ruby3.4",
    "ruby4.0",
    "provided",
    "provided.al2",
    "provided.al2023",
    "custom",
];

/// Runtimes past their deprecation date, for which Lambda refuses new functions and updates.
pub const BLOCKED_RUNTIMES: &[&str] = &[
    "nodejs",
    "nodejs4.3",
    "nodejs4.3-edge",
    "nodejs6.10",
    "nodejs8.10",
    "nodejs10.x",
    "nodejs12.x",
    "python2.7",
    "python3.6",
    "dotnetcore1.0",
    "dotnetcore2.0",
    "dotnetcore2.1",
    "ruby2.5",
];

/// Environment variables Lambda sets itself and refuses to let a function override.
const RESERVED_ENV: &[&str] = &[
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
];

/// Largest total size of a function's environment variables (keys plus values), in bytes.
pub const MAX_ENV_BYTES: usize = 4096;

/// A JSON request body with typed, AWS-worded accessors.
pub struct Input<'a>(pub &'a Value);

impl<'a> Input<'a> {
    /// The raw value of `field`, `None` when absent or null.
    pub fn raw(&self, field: &str) -> Option<&'a Value> {
        match self.0.get(field) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    /// An optional string.
    pub fn str(&self, field: &str) -> Result<Option<String>, AwsError> {
        match self.raw(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(serialization(format!("{field} must be a string"))),
        }
    }

    /// A required string.
    pub fn req_str(&self, field: &str) -> Result<String, AwsError> {
        self.str(field)?
            .ok_or_else(|| constraint(&lower_first(field), "null", "Member must not be null"))
    }

    /// An optional integer within the model's range `min..=max`.
    pub fn int(&self, field: &str, min: i64, max: i64) -> Result<Option<i64>, AwsError> {
        match self.raw(field) {
            None => Ok(None),
            Some(v) => {
                let n = v
                    .as_i64()
                    .ok_or_else(|| serialization(format!("{field} must be an integer")))?;
                check_range(field, n, min, max)?;
                Ok(Some(n))
            }
        }
    }

    /// An optional boolean.
    pub fn bool(&self, field: &str) -> Result<Option<bool>, AwsError> {
        match self.raw(field) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(serialization(format!("{field} must be a boolean"))),
        }
    }

    /// An optional list of strings.
    pub fn str_list(&self, field: &str) -> Result<Option<Vector<String>>, AwsError> {
        match self.raw(field) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| serialization(format!("{field} must hold strings")))
                })
                .collect::<Result<Vector<_>, _>>()
                .map(Some),
            Some(_) => Err(serialization(format!("{field} must be a list"))),
        }
    }

    /// An optional string → string map.
    pub fn str_map(&self, field: &str) -> Result<Option<OrdMap<String, String>>, AwsError> {
        match self.raw(field) {
            None => Ok(None),
            Some(v) => str_map(field, v).map(Some),
        }
    }

    /// An optional object, as a nested input.
    pub fn object(&self, field: &str) -> Result<Option<Input<'a>>, AwsError> {
        match self.raw(field) {
            None => Ok(None),
            Some(v @ Value::Object(_)) => Ok(Some(Input(v))),
            Some(_) => Err(serialization(format!("{field} must be an object"))),
        }
    }
}

/// A JSON object of strings as a map.
pub fn str_map(field: &str, v: &Value) -> Result<OrdMap<String, String>, AwsError> {
    match v {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| {
                v.as_str()
                    .map(|s| (k.clone(), s.to_string()))
                    .ok_or_else(|| serialization(format!("values of {field} must be strings")))
            })
            .collect(),
        _ => Err(serialization(format!("{field} must be an object"))),
    }
}

/// `MemorySize` → `memorySize`, the spelling AWS uses in validation messages.
pub fn lower_first(field: &str) -> String {
    let mut c = field.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// A model range check (`ValidationException`).
pub fn check_range(field: &str, n: i64, min: i64, max: i64) -> Result<(), AwsError> {
    if n < min {
        return Err(constraint(
            &lower_first(field),
            &n.to_string(),
            &format!("Member must have value greater than or equal to {min}"),
        ));
    }
    if n > max {
        return Err(constraint(
            &lower_first(field),
            &n.to_string(),
            &format!("Member must have value less than or equal to {max}"),
        ));
    }
    Ok(())
}

/// A model length check (`ValidationException`).
pub fn check_len(field: &str, s: &str, min: usize, max: usize) -> Result<(), AwsError> {
    let n = s.chars().count();
    if n < min {
        return Err(constraint(
            &lower_first(field),
            s,
            &format!("Member must have length greater than or equal to {min}"),
        ));
    }
    if n > max {
        return Err(constraint(
            &lower_first(field),
            s,
            &format!("Member must have length less than or equal to {max}"),
        ));
    }
    Ok(())
}

fn word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// A bare function name: 1 to 64 of `[a-zA-Z0-9-_]`.
pub fn function_name(name: &str) -> Result<(), AwsError> {
    if name.is_empty() || name.len() > 64 || !name.chars().all(word_char) {
        return Err(constraint_function_name(name));
    }
    Ok(())
}

/// The `ValidationException` for a malformed function name or ARN.
pub fn constraint_function_name(raw: &str) -> AwsError {
    constraint(
        "functionName",
        raw,
        "Member must satisfy regular expression pattern: (arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\\d{1}:)?(\\d{12}:)?(function:)?([a-zA-Z0-9-_]{1,64})(:(\\$LATEST|[a-zA-Z0-9-_]+))?",
    )
}

/// A qualifier: `$LATEST`, a version number or an alias name.
pub fn qualifier(q: &str) -> Result<(), AwsError> {
    if q == "$LATEST" || (!q.is_empty() && q.len() <= 128 && q.chars().all(word_char)) {
        return Ok(());
    }
    Err(constraint(
        "qualifier",
        q,
        "Member must satisfy regular expression pattern: (|[a-zA-Z0-9$_-]+)",
    ))
}

/// An alias name: 1 to 128 of `[a-zA-Z0-9-_]`, not all digits (that would be a version).
pub fn alias_name(name: &str) -> Result<(), AwsError> {
    if name.is_empty()
        || name.len() > 128
        || !name.chars().all(word_char)
        || name.chars().all(|c| c.is_ascii_digit())
    {
        return Err(constraint(
            "name",
            name,
            "Member must satisfy regular expression pattern: (?!^[0-9]+$)([a-zA-Z0-9-_]+)",
        ));
    }
    Ok(())
}

/// A layer name: 1 to 140 of `[a-zA-Z0-9-_]`.
pub fn layer_name(name: &str) -> Result<(), AwsError> {
    if name.is_empty() || name.len() > 140 || !name.chars().all(word_char) {
        return Err(constraint(
            "layerName",
            name,
            "Member must satisfy regular expression pattern: (arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\\d{12}:layer:[a-zA-Z0-9-_]+)|[a-zA-Z0-9-_]+",
        ));
    }
    Ok(())
}

/// A statement id: 1 to 100 of `[a-zA-Z0-9-_]` (`.` too when removing).
pub fn statement_id(sid: &str, allow_dot: bool) -> Result<(), AwsError> {
    if sid.is_empty()
        || sid.len() > 100
        || !sid.chars().all(|c| word_char(c) || (allow_dot && c == '.'))
    {
        return Err(constraint(
            "statementId",
            sid,
            "Member must satisfy regular expression pattern: ([a-zA-Z0-9-_]+)",
        ));
    }
    Ok(())
}

/// An execution role ARN: `arn:aws:iam::123456789012:role/name`.
pub fn role_arn(role: &str) -> Result<(), AwsError> {
    let ok = (|| {
        let rest = role.strip_prefix("arn:")?;
        let (partition, rest) = rest.split_once(':')?;
        if !partition.starts_with("aws") {
            return None;
        }
        let rest = rest.strip_prefix("iam::")?;
        let (account, rest) = rest.split_once(':')?;
        let name = rest.strip_prefix("role")?;
        let name = name.strip_prefix('/').unwrap_or(name);
        let good = account.len() == 12
            && account.bytes().all(|b| b.is_ascii_digit())
            && !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@-_/".contains(c));
        good.then_some(())
    })()
    .is_some();
    if !ok {
        return Err(constraint(
            "role",
            role,
            "Member must satisfy regular expression pattern: arn:(aws[a-zA-Z-]*)?:iam::\\d{12}:role/?[a-zA-Z_0-9+=,.@\\-_/]+",
        ));
    }
    Ok(())
}

/// A runtime identifier: one of the model's, and not one Lambda no longer accepts.
pub fn runtime(r: &str) -> Result<(), AwsError> {
    if !RUNTIMES.contains(&r) {
        return Err(constraint(
            "runtime",
            r,
            &format!(
                "Member must satisfy enum value set: [{}]",
                RUNTIMES.join(", ")
            ),
        ));
    }
    if BLOCKED_RUNTIMES.contains(&r) {
        return Err(invalid(format!(
            "The runtime parameter of {r} is no longer supported for creating or updating AWS Lambda functions. We recommend you use a supported runtime while creating or updating functions."
        )));
    }
    Ok(())
}

/// Environment variables: key pattern, reserved keys, 4 KB total.
pub fn environment(vars: &OrdMap<String, String>) -> Result<(), AwsError> {
    for k in vars.keys() {
        let mut chars = k.chars();
        let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && k.len() >= 2
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(constraint(
                "environment.variables",
                k,
                "Member must satisfy regular expression pattern: [a-zA-Z]([a-zA-Z0-9_])+",
            ));
        }
    }
    let reserved: Vec<&str> = vars
        .keys()
        .map(String::as_str)
        .filter(|k| RESERVED_ENV.contains(k))
        .collect();
    if !reserved.is_empty() {
        return Err(invalid(format!(
            "Lambda was unable to configure your environment variables because the environment variables you have provided contains reserved keys that are currently not supported for modification. Reserved keys used in this request: {}",
            reserved.join(", ")
        )));
    }
    let size: usize = vars.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > MAX_ENV_BYTES {
        return Err(invalid(format!(
            "Lambda was unable to configure your environment variables because the environment variables you have provided exceeded the 4KB limit. String measured: {}",
            serde_json::to_string(&vars).unwrap_or_default()
        )));
    }
    Ok(())
}

/// Tags: at most 50, keys 1–128 characters not starting with `aws:`, values up to 256.
pub fn tags(tags: &OrdMap<String, String>) -> Result<(), AwsError> {
    if tags.len() > 50 {
        return Err(invalid("Number of tags exceeds resource tag limit (50)."));
    }
    for (k, v) in tags {
        check_len("tags.key", k, 1, 128)?;
        check_len("tags.value", v, 0, 256)?;
        if k.to_ascii_lowercase().starts_with("aws:") {
            return Err(invalid(format!(
                "Tag key {k} is invalid: keys starting with aws: are reserved for AWS use."
            )));
        }
    }
    Ok(())
}

/// Architectures: exactly one of `x86_64`, `arm64`.
pub fn architectures(a: &Vector<String>) -> Result<(), AwsError> {
    if a.len() != 1 {
        return Err(constraint(
            "architectures",
            &format!("{:?}", a.iter().collect::<Vec<_>>()),
            "Member must have length less than or equal to 1 and greater than or equal to 1",
        ));
    }
    for x in a {
        if x != "x86_64" && x != "arm64" {
            return Err(constraint(
                "architectures",
                x,
                "Member must satisfy enum value set: [x86_64, arm64]",
            ));
        }
    }
    Ok(())
}

/// A value of a closed set (`ValidationException` naming the set).
pub fn one_of(field: &str, value: &str, allowed: &[&str]) -> Result<(), AwsError> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(constraint(
            &lower_first(field),
            value,
            &format!(
                "Member must satisfy enum value set: [{}]",
                allowed.join(", ")
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names_follow_the_aws_pattern() {
        assert!(function_name("my-func_1").is_ok());
        assert!(function_name(&"a".repeat(64)).is_ok());
        assert!(function_name(&"a".repeat(65)).is_err());
        assert!(function_name("").is_err());
        assert!(function_name("has space").is_err());
        assert!(function_name("dot.ted").is_err());
        assert_eq!(function_name("x!").unwrap_err().code, "ValidationException");
    }

    #[test]
    fn blocked_runtimes_are_invalid_parameters_and_unknown_ones_validation_errors() {
        assert!(runtime("python3.12").is_ok());
        assert_eq!(
            runtime("python2.7").unwrap_err().code,
            "InvalidParameterValueException"
        );
        assert_eq!(runtime("cobol").unwrap_err().code, "ValidationException");
    }

    #[test]
    fn role_arns_are_checked() {
        assert!(role_arn("arn:aws:iam::123456789012:role/service-role/x").is_ok());
        assert!(role_arn("arn:aws:iam::12345:role/x").is_err());
        assert!(role_arn("role").is_err());
        assert!(role_arn("arn:aws:iam::123456789012:user/x").is_err());
    }

    #[test]
    fn environment_refuses_reserved_keys_bad_names_and_more_than_4kb() {
        let ok: OrdMap<String, String> = [("STAGE".to_string(), "prod".to_string())]
            .into_iter()
            .collect();
        assert!(environment(&ok).is_ok());
        let reserved: OrdMap<String, String> = [("AWS_REGION".to_string(), "x".to_string())]
            .into_iter()
            .collect();
        assert_eq!(
            environment(&reserved).unwrap_err().code,
            "InvalidParameterValueException"
        );
        let bad: OrdMap<String, String> =
            [("1X".to_string(), "x".to_string())].into_iter().collect();
        assert_eq!(environment(&bad).unwrap_err().code, "ValidationException");
        let big: OrdMap<String, String> = [("BIG".to_string(), "x".repeat(4094))]
            .into_iter()
            .collect();
        assert_eq!(
            environment(&big).unwrap_err().code,
            "InvalidParameterValueException"
        );
    }

    #[test]
    fn alias_names_cannot_be_all_digits() {
        assert!(alias_name("live").is_ok());
        assert!(alias_name("v2").is_ok());
        assert!(alias_name("2").is_err());
    }

    #[test]
    fn model_ranges_use_aws_wording() {
        let e = check_range("MemorySize", 64, 128, 32768).unwrap_err();
        assert!(e.message.contains("at 'memorySize'"), "{}", e.message);
        assert!(e.message.contains("greater than or equal to 128"));
    }
}
