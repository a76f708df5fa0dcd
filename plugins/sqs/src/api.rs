//! The SQS operations, on the JSON protocol's shapes.
//!
//! Each write operation is a function `(&mut SqsState, &Call, &Value) -> SqsResult<Value>` that
//! the provider runs inside [`cryopod::StateCell::write`], so a request that fails half-way
//! (one bad entry of a batch aborts nothing, but a missing queue does) changes nothing. Read
//! operations take `&SqsState`. Validation and error codes follow AWS (botocore's model and the
//! SQS developer guide), because an emulator that accepts what AWS refuses lets bugs through.

use std::collections::BTreeSet;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use cryopod::Scope;
use imbl::OrdMap;
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use crate::digest::{md5_of_attributes, md5_of_body};
use crate::error::{ErrorKind, SqsError, SqsResult};
use crate::state::{
    AttributeValue, Attributes, DEDUP_WINDOW_MS, DedupRecord, Message, Queue, SqsState,
};

/// The most entries a batch request may hold.
pub const MAX_BATCH: usize = 10;
/// Default and maximum message size (1 MiB since 2025).
pub const MAX_MESSAGE_BYTES: i64 = 1_048_576;
/// The most message attributes per message.
pub const MAX_MESSAGE_ATTRIBUTES: usize = 10;
/// The most tags per queue.
pub const MAX_TAGS: usize = 50;
/// `PurgeQueue` may run once per this many milliseconds.
pub const PURGE_COOLDOWN_MS: i64 = 60_000;

/// What an operation needs to know about its request besides the input.
#[derive(Clone, Debug)]
pub struct Call {
    /// Scope of the caller (account from the access key, region from the signature).
    pub scope: Scope,
    /// `http://host:port` as the client addressed us, for queue URLs.
    pub endpoint: String,
    /// Wall-clock epoch millis.
    pub now: i64,
}

impl Call {
    /// The URL of queue `name` in `scope`.
    pub fn queue_url(&self, scope: &Scope, name: &str) -> String {
        format!(
            "{}/{}/{}",
            self.endpoint.trim_end_matches('/'),
            scope.account,
            name
        )
    }
}

/// The ARN of queue `name` in `scope`.
pub fn queue_arn(scope: &Scope, name: &str) -> String {
    format!("arn:aws:sqs:{}:{}:{}", scope.region, scope.account, name)
}

// ---------------------------------------------------------------------------------------
// Input helpers

fn opt_str<'a>(input: &'a Value, field: &str) -> SqsResult<Option<&'a str>> {
    match input.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(SqsError::invalid(format!(
            "Value for parameter {field} must be a string."
        ))),
    }
}

fn req_str<'a>(input: &'a Value, field: &str) -> SqsResult<&'a str> {
    opt_str(input, field)?.ok_or_else(|| SqsError::missing(field))
}

fn opt_int(input: &Value, field: &str) -> SqsResult<Option<i64>> {
    match input.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| {
            SqsError::invalid(format!("Value {n} for parameter {field} is invalid."))
        }),
        Some(Value::String(s)) => {
            s.trim().parse().map(Some).map_err(|_| {
                SqsError::invalid(format!("Value {s} for parameter {field} is invalid."))
            })
        }
        Some(other) => Err(SqsError::invalid(format!(
            "Value {other} for parameter {field} is invalid."
        ))),
    }
}

fn int_in(input: &Value, field: &str, min: i64, max: i64) -> SqsResult<Option<i64>> {
    match opt_int(input, field)? {
        Some(v) if v < min || v > max => Err(SqsError::invalid(format!(
            "Value {v} for parameter {field} is invalid. Reason: Must be between {min} and {max}, if provided."
        ))),
        other => Ok(other),
    }
}

fn str_list(input: &Value, field: &str) -> SqsResult<Vec<String>> {
    match input.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| SqsError::invalid(format!("{field} must hold strings.")))
            })
            .collect(),
        Some(_) => Err(SqsError::invalid(format!("{field} must be a list."))),
    }
}

fn str_map(input: &Value, field: &str) -> SqsResult<Vec<(String, String)>> {
    match input.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                Value::Null => Ok((k.clone(), String::new())),
                _ => Err(SqsError::invalid(format!("{field}.{k} must be a string."))),
            })
            .collect(),
        Some(_) => Err(SqsError::invalid(format!("{field} must be a map."))),
    }
}

/// Finds the scope and name of the queue a `QueueUrl` names. The URL's path is
/// `/{account}/{name}`; its region is the caller's (or the one in an AWS host name).
pub fn locate(call: &Call, url: &str) -> SqsResult<(Scope, String)> {
    let (host, path) = match url.split_once("://") {
        Some((_, rest)) => match rest.split_once('/') {
            Some((h, p)) => (h, p),
            None => (rest, ""),
        },
        None => ("", url.trim_start_matches('/')),
    };
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let (account, name) = match parts.as_slice() {
        [account, name] => (*account, *name),
        [name] if !url.contains("://") => (call.scope.account.as_str(), *name),
        _ => {
            return Err(SqsError::new(
                ErrorKind::InvalidAddress,
                format!("The address {url} is not valid for this endpoint."),
            ));
        }
    };
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SqsError::new(
            ErrorKind::InvalidAddress,
            format!("The address {url} is not valid for this endpoint."),
        ));
    }
    // `sqs.eu-west-1.amazonaws.com` or `eu-west-1.queue.amazonaws.com`: honour the region.
    let region = host
        .split(':')
        .next()
        .and_then(|h| {
            let labels: Vec<&str> = h.split('.').collect();
            match labels.as_slice() {
                ["sqs", region, "amazonaws", ..] => Some(region.to_string()),
                [region, "queue", "amazonaws", ..] => Some(region.to_string()),
                _ => None,
            }
        })
        .unwrap_or_else(|| call.scope.region.clone());
    Ok((Scope::new(account, region), name.to_string()))
}

fn queue<'a>(state: &'a SqsState, scope: &Scope, name: &str) -> SqsResult<&'a Queue> {
    state
        .scopes
        .get(scope)
        .and_then(|r| r.queues.get(name))
        .ok_or_else(SqsError::no_queue)
}

fn queue_mut<'a>(state: &'a mut SqsState, scope: &Scope, name: &str) -> SqsResult<&'a mut Queue> {
    // Avoid creating an empty scope entry for a lookup that fails.
    if state
        .scopes
        .get(scope)
        .is_none_or(|r| !r.queues.contains_key(name))
    {
        return Err(SqsError::no_queue());
    }
    state
        .scopes
        .get_mut(scope)
        .queues
        .get_mut(name)
        .ok_or_else(SqsError::no_queue)
}

// ---------------------------------------------------------------------------------------
// Queue attributes

/// Attributes every queue has, with their defaults.
const STANDARD_DEFAULTS: &[(&str, &str)] = &[
    ("DelaySeconds", "0"),
    ("MaximumMessageSize", "1048576"),
    ("MessageRetentionPeriod", "345600"),
    ("ReceiveMessageWaitTimeSeconds", "0"),
    ("VisibilityTimeout", "30"),
    ("SqsManagedSseEnabled", "true"),
];

/// Attributes only FIFO queues have, with their defaults.
const FIFO_DEFAULTS: &[(&str, &str)] = &[
    ("FifoQueue", "true"),
    ("ContentBasedDeduplication", "false"),
    ("DeduplicationScope", "queue"),
    ("FifoThroughputLimit", "perQueue"),
];

/// Computed, read-only attributes.
const READ_ONLY: &[&str] = &[
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
    "CreatedTimestamp",
    "LastModifiedTimestamp",
    "QueueArn",
];

fn bad_attr_value(name: &str, reason: &str) -> SqsError {
    let reason = if reason.is_empty() {
        String::new()
    } else {
        format!(" Reason: {reason}")
    };
    SqsError::new(
        ErrorKind::InvalidAttributeValue,
        format!("Invalid value for the parameter {name}.{reason}"),
    )
}

fn unknown_attr(name: &str) -> SqsError {
    SqsError::new(
        ErrorKind::InvalidAttributeName,
        format!("Unknown Attribute {name}."),
    )
}

fn check_range(name: &str, value: &str, min: i64, max: i64) -> SqsResult<String> {
    match value.trim().parse::<i64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v.to_string()),
        _ => Err(bad_attr_value(name, "")),
    }
}

fn check_bool(name: &str, value: &str) -> SqsResult<String> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok("true".into()),
        "false" => Ok("false".into()),
        _ => Err(bad_attr_value(name, "")),
    }
}

/// A parsed `RedrivePolicy`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedrivePolicy {
    /// ARN of the dead-letter queue.
    pub target_arn: String,
    /// Receives after which a message moves there.
    pub max_receive_count: u32,
}

/// Parses a redrive policy attribute value.
pub fn parse_redrive(value: &str) -> SqsResult<RedrivePolicy> {
    let bad = |why: &str| {
        SqsError::invalid(format!(
            "Value {value} for parameter RedrivePolicy is invalid. Reason: {why}"
        ))
    };
    let v: Value = serde_json::from_str(value).map_err(|_| bad("Invalid JSON."))?;
    let target_arn = v
        .get("deadLetterTargetArn")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            bad("Redrive policy does not contain mandatory attribute: deadLetterTargetArn.")
        })?
        .to_string();
    let count = match v.get("maxReceiveCount") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| bad("Redrive policy does not contain mandatory attribute: maxReceiveCount."))?;
    if !(1..=1000).contains(&count) {
        return Err(bad(
            "Invalid value for maxReceiveCount: must be between 1 and 1000.",
        ));
    }
    Ok(RedrivePolicy {
        target_arn,
        max_receive_count: count as u32,
    })
}

/// Splits `arn:aws:sqs:region:account:name`.
pub fn parse_arn(arn: &str) -> Option<(Scope, String)> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", _, "sqs", region, account, name] => {
            Some((Scope::new(*account, *region), (*name).to_string()))
        }
        _ => None,
    }
}

/// Validates and normalizes settable attributes; `fifo` is the queue's type.
fn validate_attributes(
    state: &SqsState,
    scope: &Scope,
    fifo: bool,
    attrs: &[(String, String)],
    creating: bool,
) -> SqsResult<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (name, value) in attrs {
        let v = match name.as_str() {
            "DelaySeconds" => check_range(name, value, 0, 900)?,
            "MaximumMessageSize" => check_range(name, value, 1024, MAX_MESSAGE_BYTES)?,
            "MessageRetentionPeriod" => check_range(name, value, 60, 1_209_600)?,
            "ReceiveMessageWaitTimeSeconds" => check_range(name, value, 0, 20)?,
            "VisibilityTimeout" => check_range(name, value, 0, 43_200)?,
            "KmsDataKeyReusePeriodSeconds" => check_range(name, value, 60, 86_400)?,
            "SqsManagedSseEnabled" => check_bool(name, value)?,
            "KmsMasterKeyId" => value.clone(),
            "Policy" | "RedriveAllowPolicy" => {
                if !value.is_empty() && serde_json::from_str::<Value>(value).is_err() {
                    return Err(bad_attr_value(name, "Invalid JSON."));
                }
                value.clone()
            }
            "RedrivePolicy" => {
                if !value.is_empty() {
                    let p = parse_redrive(value)?;
                    let (dlq_scope, dlq_name) = parse_arn(&p.target_arn).ok_or_else(|| {
                        SqsError::invalid(format!(
                            "Value {value} for parameter RedrivePolicy is invalid. Reason: Invalid value for deadLetterTargetArn."
                        ))
                    })?;
                    let dlq = if &dlq_scope == scope {
                        queue(state, &dlq_scope, &dlq_name).ok()
                    } else {
                        None
                    };
                    match dlq {
                        None => {
                            return Err(SqsError::invalid(format!(
                                "Value {value} for parameter RedrivePolicy is invalid. Reason: Dead letter target does not exist."
                            )));
                        }
                        Some(d) if d.fifo != fifo => {
                            return Err(SqsError::invalid(format!(
                                "Value {value} for parameter RedrivePolicy is invalid. Reason: Dead-letter queue must be same type of queue as the source."
                            )));
                        }
                        Some(_) => {}
                    }
                }
                value.clone()
            }
            "FifoQueue" => {
                let v = check_bool(name, value)?;
                if !creating {
                    return Err(bad_attr_value(
                        name,
                        "Modifying queue type is not supported.",
                    ));
                }
                if v == "false" && fifo {
                    return Err(bad_attr_value(name, ""));
                }
                if v == "true" && !fifo {
                    return Err(SqsError::invalid(
                        "The name of a FIFO queue can only include alphanumeric characters, hyphens, or underscores, must end with .fifo suffix and be 1 to 80 in length.",
                    ));
                }
                if !fifo {
                    // `FifoQueue=false` on a standard queue is accepted and not stored.
                    continue;
                }
                v
            }
            "ContentBasedDeduplication" if fifo => check_bool(name, value)?,
            "DeduplicationScope" if fifo => match value.as_str() {
                "messageGroup" | "queue" => value.clone(),
                _ => return Err(bad_attr_value(name, "")),
            },
            "FifoThroughputLimit" if fifo => match value.as_str() {
                "perQueue" | "perMessageGroupId" => value.clone(),
                _ => return Err(bad_attr_value(name, "")),
            },
            _ => return Err(unknown_attr(name)),
        };
        out.push((name.clone(), v));
    }
    if fifo {
        let get = |n: &str| out.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        if get("FifoThroughputLimit") == Some("perMessageGroupId")
            && get("DeduplicationScope") == Some("queue")
        {
            return Err(bad_attr_value(
                "FifoThroughputLimit",
                "The perMessageGroupId value is allowed only when the value for DeduplicationScope is messageGroup.",
            ));
        }
    }
    Ok(out)
}

fn valid_queue_name(name: &str) -> SqsResult<bool> {
    let (base, fifo) = match name.strip_suffix(".fifo") {
        Some(b) => (b, true),
        None => (name, false),
    };
    if name.is_empty()
        || name.len() > 80
        || base.is_empty()
        || !base
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(SqsError::invalid(
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length",
        ));
    }
    Ok(fifo)
}

fn valid_tags(tags: &[(String, String)]) -> SqsResult<()> {
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 || v.chars().count() > 256 {
            return Err(SqsError::invalid(format!(
                "Tag {k} is invalid: keys are 1 to 128 characters, values up to 256."
            )));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Queue operations

/// `CreateQueue`: idempotent for identical attributes, `QueueAlreadyExists` otherwise.
pub fn create_queue(state: &mut SqsState, call: &Call, input: &Value) -> SqsResult<Value> {
    let name = req_str(input, "QueueName")?.to_string();
    let fifo = valid_queue_name(&name)?;
    let attrs = str_map(input, "Attributes")?;
    let wants_fifo = attrs
        .iter()
        .any(|(k, v)| k == "FifoQueue" && v.eq_ignore_ascii_case("true"));
    if fifo && !wants_fifo {
        return Err(SqsError::invalid(
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length",
        ));
    }
    let scope = call.scope.clone();
    let attrs = validate_attributes(state, &scope, fifo, &attrs, true)?;
    let mut tags = str_map(input, "tags")?;
    tags.extend(str_map(input, "Tags")?);
    valid_tags(&tags)?;
    if tags.len() > MAX_TAGS {
        return Err(SqsError::invalid(format!(
            "Too many tags added for queue {name}."
        )));
    }
    if let Some(existing) = state.scopes.get(&scope).and_then(|r| r.queues.get(&name)) {
        for (k, v) in &attrs {
            if existing.attributes.get(k).map(String::as_str).unwrap_or("") != v.as_str() {
                return Err(SqsError::new(
                    ErrorKind::QueueNameExists,
                    format!(
                        "A queue already exists with the same name and a different value for attribute {k}"
                    ),
                ));
            }
        }
        return Ok(json!({ "QueueUrl": call.queue_url(&scope, &name) }));
    }
    let mut all: OrdMap<String, String> = STANDARD_DEFAULTS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if fifo {
        all.extend(
            FIFO_DEFAULTS
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
    }
    all.extend(attrs);
    let mut q = Queue::new(name.clone(), fifo, all, call.now);
    q.tags = tags.into_iter().collect();
    state.scopes.get_mut(&scope).queues.insert(name.clone(), q);
    tracing::debug!(%scope, queue = %name, fifo, "queue created");
    Ok(json!({ "QueueUrl": call.queue_url(&scope, &name) }))
}

/// `DeleteQueue`.
pub fn delete_queue(state: &mut SqsState, call: &Call, input: &Value) -> SqsResult<Value> {
    let (scope, name) = locate(call, req_str(input, "QueueUrl")?)?;
    queue_mut(state, &scope, &name)?;
    state.scopes.get_mut(&scope).queues.remove(&name);
    tracing::debug!(%scope, queue = %name, "queue deleted");
    Ok(json!({}))
}

/// `GetQueueUrl`.
pub fn get_queue_url(state: &SqsState, call: &Call, input: &Value) -> SqsResult<Value> {
    let name = req_str(input, "QueueName")?;
    let mut scope = call.scope.clone();
    if let Some(owner) = opt_str(input, "QueueOwnerAWSAccountId")? {
        scope.account = owner.to_string();
    }
    queue(state, &scope, name)?;
    Ok(json!({ "QueueUrl": call.queue_url(&scope, name) }))
}

fn page_token(last: &str) -> String {
    URL_SAFE_NO_PAD.encode(last.as_bytes())
}

fn parse_token(token: &str) -> SqsResult<String> {
    URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| SqsError::invalid("Invalid NextToken value."))
}

/// `ListQueues`: name order, optional prefix, pages of `MaxResults` (1 to 1000).
pub fn list_queues(state: &SqsState, call: &Call, input: &Value) -> SqsResult<Value> {
    let prefix = opt_str(input, "QueueNamePrefix")?.unwrap_or("");
    let max = int_in(input, "MaxResults", 1, 1000)?;
    let after = match opt_str(input, "NextToken")? {
        Some(t) if max.is_some() => Some(parse_token(t)?),
        _ => None,
    };
    let limit = max.unwrap_or(1000) as usize;
    let mut urls = Vec::new();
    let mut next = None;
    if let Some(r) = state.scopes.get(&call.scope) {
        let names = r
            .queues
            .keys()
            .filter(|n| n.starts_with(prefix))
            .filter(|n| after.as_ref().is_none_or(|a| n.as_str() > a.as_str()));
        for n in names {
            if urls.len() == limit {
                if max.is_some()
                    && let Some(Value::String(last)) = urls.last()
                    && let Some(last_name) = last.rsplit('/').next()
                {
                    next = Some(page_token(last_name));
                }
                break;
            }
            urls.push(Value::String(call.queue_url(&call.scope, n)));
        }
    }
    let mut out = Map::new();
    out.insert("QueueUrls".into(), Value::Array(urls));
    if let Some(t) = next {
        out.insert("NextToken".into(), Value::String(t));
    }
    Ok(Value::Object(out))
}

/// `ListDeadLetterSourceQueues`: queues whose redrive policy targets this one.
pub fn list_dead_letter_sources(state: &SqsState, call: &Call, input: &Value) -> SqsResult<Value> {
    let (scope, name) = locate(call, req_str(input, "QueueUrl")?)?;
    queue(state, &scope, &name)?;
    let arn = queue_arn(&scope, &name);
    let max = int_in(input, "MaxResults", 1, 1000)?;
    let after = match opt_str(input, "NextToken")? {
        Some(t) if max.is_some() => Some(parse_token(t)?),
        _ => None,
    };
    let limit = max.unwrap_or(1000) as usize;
    let mut urls = Vec::new();
    let mut next = None;
    if let Some(r) = state.scopes.get(&scope) {
        for (n, q) in r.queues.iter() {
            if after.as_ref().is_some_and(|a| n.as_str() <= a.as_str()) {
                continue;
            }
            let targets = q
                .attributes
                .get("RedrivePolicy")
                .and_then(|p| parse_redrive(p).ok())
                .is_some_and(|p| p.target_arn == arn);
            if !targets {
                continue;
            }
            if urls.len() == limit {
                if max.is_some() {
                    next = urls
                        .last()
                        .and_then(|u: &Value| u.as_str())
                        .and_then(|u| u.rsplit('/').next())
                        .map(page_token);
                }
                break;
            }
            urls.push(Value::String(call.queue_url(&scope, n)));
        }
    }
    let mut out = Map::new();
    out.insert("queueUrls".into(), Value::Array(urls));
    if let Some(t) = next {
        out.insert("NextToken".into(), Value::String(t));
    }
    Ok(Value::Object(out))
}

/// `GetQueueAttributes`: the requested names (`All` for every one).
pub fn get_queue_attributes(state: &SqsState, call: &Call, input: &Value) -> SqsResult<Value> {
    let (scope, name) = locate(call, req_str(input, "QueueUrl")?)?;
    let q = queue(state, &scope, &name)?;
    let names = str_list(input, "AttributeNames")?;
    let all = names.iter().any(|n| n == "All");
    let now = q.now(call.now);
    let mut out = Map::new();
    let computed = |n: &str| -> Option<String> {
        match n {
            "ApproximateNumberOfMessages" => Some(q.counts(now).0.to_string()),
            "ApproximateNumberOfMessagesNotVisible" => Some(q.counts(now).1.to_string()),
            "ApproximateNumberOfMessagesDelayed" => Some(q.counts(now).2.to_string()),
            "CreatedTimestamp" => Some(q.created_at.to_string()),
            "LastModifiedTimestamp" => Some(q.last_modified_at.to_string()),
            "QueueArn" => Some(queue_arn(&scope, &name)),
            _ => None,
        }
    };
    if all {
        let (visible, in_flight, delayed) = q.counts(now);
        for (k, v) in q.attributes.iter() {
            out.insert(k.clone(), Value::String(v.clone()));
        }
        out.insert(
            "ApproximateNumberOfMessages".into(),
            Value::String(visible.to_string()),
        );
        out.insert(
            "ApproximateNumberOfMessagesNotVisible".into(),
            Value::String(in_flight.to_string()),
        );
        out.insert(
            "ApproximateNumberOfMessagesDelayed".into(),
            Value::String(delayed.to_string()),
        );
        for n in ["CreatedTimestamp", "LastModifiedTimestamp", "QueueArn"] {
            if let Some(v) = computed(n) {
                out.insert(n.into(), Value::String(v));
            }
        }
    } else {
        for n in &names {
            if let Some(v) = computed(n) {
                out.insert(n.clone(), Value::String(v));
                continue;
            }
            let known = STANDARD_DEFAULTS.iter().any(|(k, _)| k == n)
                || (q.fifo && FIFO_DEFAULTS.iter().any(|(k, _)| k == n))
                || matches!(
                    n.as_str(),
                    "Policy"
                        | "RedrivePolicy"
                        | "RedriveAllowPolicy"
                        | "KmsMasterKeyId"
                        | "KmsDataKeyReusePeriodSeconds"
                );
            if !known {
                return Err(unknown_attr(n));
            }
            if let Some(v) = q.attributes.get(n) {
                out.insert(n.clone(), Value::String(v.clone()));
            }
        }
    }
    if out.is_empty() {
        return Ok(json!({}));
    }
    Ok(json!({ "Attributes": Value::Object(out) }))
}

/// `SetQueueAttributes`. An empty `RedrivePolicy` or `Policy` removes it.
pub fn set_queue_attributes(state: &mut SqsState, call: &Call, input: &Value) -> SqsResult<Value> {
    let (scope, name) = locate(call, req_str(input, "QueueUrl")?)?;
    let attrs = str_map(input, "Attributes")?;
    let fifo = queue(state, &scope, &name)?.fifo;
    for (n, _) in &attrs {
        if READ_ONLY.contains(&n.as_str()) {
            return Err(unknown_attr(n));
        }
    }
    let attrs = validate_attributes(state, &scope, fifo, &attrs, false)?;
    let q = queue_mut(state, &scope, &name)?;
    for (k, v) in attrs {
        if v.is_empty()
            && matches!(
                k.as_str(),
                "RedrivePolicy" | "Policy" | "RedriveAllowPolicy" | "KmsMasterKeyId"
            )
        {
            q.attributes.remove(&k);
        } else {
            q.attributes.insert(k, v);
        }
    }
    q.last_modified_at = call.now / 1000;
    Ok(json!({}))
}

/// `TagQueue`.
pub fn tag_queue(state: &mut SqsState, call: &Call, input: &Value) -> SqsResult<Value> {
    let (scope, name) = locate(call, req_str(input, "QueueUrl")?)?;
    let tags = str_map(input, "Tags")?;
    if tags.is_empty() {
        return Err(SqsError::missing("Tags"));
    }
    valid_tags(&tags)?;
    let q = queue_mut(state, &scope, &name)?;
    let mut merged = q.tags.clone();
    merged.extend(tags);
    if merged.len() > MAX_TAGS {
        return Err(SqsError::invalid(format!(
            "Too many tags added for queue {name}."
        )));
    }
    q.tags = merged;
    Ok(json!({}))
}

/// `UntagQueue`.
pub fn untag_queue(state: &mut SqsState, call: &Call, input: &Value) -> SqsResult<Value> {
    let (scope, name) = locate(call, req_str(input, "QueueUrl")?)?;
    let keys = str_list(input, "TagKeys")?;
    if keys.is_empty() {
        return Err(SqsError::missing("TagKeys"));
    }
    let q = queue_mut(state, &scope, &name)?;
    for k in keys {
        q.tags.remove(&k);
    }
    Ok(json!({}))
}

/// `ListQueueTags`.
pub fn list_queue_tags(state: &SqsState, call: &Call, input: &Value) -> SqsResult<Value> {
    let (scope, name) = locate(call, req_str(input, "QueueUrl")?)?;
    let q = queue(state, &scope, &name)?;
    if q.tags.is_empty() {
        return Ok(json!({}));
    }
    let tags: Map<String, Value> = q
        .tags
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    Ok(json!({ "Tags": tags }))
}

/// `PurgeQueue`: deletes every message; once per 60 seconds.
pub fn purge_queue(state: &mut SqsState, call: &Call, input: &Value) -> SqsResult<Value> {
    let (scope, name) = locate(call, req_str(input, "QueueUrl")?)?;
    let q = queue_mut(state, &scope, &name)?;
    let now = q.now(call.now);
    if let Some(at) = q.last_purge_at
        && now - at < PURGE_COOLDOWN_MS
    {
        return Err(SqsError::new(
            ErrorKind::PurgeQueueInProgress,
            format!("Only one PurgeQueue operation on {name} is allowed every 60 seconds."),
        ));
    }
    q.clear();
    q.last_purge_at = Some(now);
    Ok(json!({}))
}

// ---------------------------------------------------------------------------------------
// Messages: sending

/// A message to send, parsed and validated as far as possible without its queue.
#[derive(Debug)]
pub struct Outgoing {
    body: String,
    delay: Option<i64>,
    attributes: Attributes,
    system_attributes: Attributes,
    dedup_id: Option<String>,
    group_id: Option<String>,
}

impl Outgoing {
    /// Bytes counted against `MaximumMessageSize`: body plus attribute names, types, values.
    fn size(&self) -> usize {
        self.body.len()
            + self
                .attributes
                .iter()
                .map(|(k, v)| {
                    k.len()
                        + v.data_type.len()
                        + v.string_value.as_ref().map_or(0, String::len)
                        + v.binary_value.as_ref().map_or(0, Bytes::len)
                })
                .sum::<usize>()
    }
}

fn valid_body(body: &str) -> SqsResult<()> {
    for c in body.chars() {
        let ok = matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}');
        if !ok {
            return Err(SqsError::new(
                ErrorKind::InvalidMessageContents,
                format!(
                    "Invalid binary character '#x{:X}' was found in the message body, the set of allowed characters is #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF",
                    c as u32
                ),
            ));
        }
    }
    Ok(())
}

fn parse_attribute_map(input: &Value, field: &str, system: bool) -> SqsResult<Attributes> {
    let mut out = Attributes::new();
    let Some(v) = input.get(field) else {
        return Ok(out);
    };
    let Value::Object(m) = v else {
        if v.is_null() {
            return Ok(out);
        }
        return Err(SqsError::invalid(format!("{field} must be a map.")));
    };
    if m.len() > MAX_MESSAGE_ATTRIBUTES {
        return Err(SqsError::invalid(format!(
            "Number of message attributes [{}] exceeds the allowed maximum [{MAX_MESSAGE_ATTRIBUTES}].",
            m.len()
        )));
    }
    for (name, v) in m {
        if system {
            if name != "AWSTraceHeader" {
                return Err(SqsError::invalid(format!(
                    "Message system attribute name '{name}' is invalid."
                )));
            }
        } else {
            let lower = name.to_ascii_lowercase();
            if name.is_empty()
                || name.len() > 256
                || lower.starts_with("aws.")
                || lower.starts_with("amazon.")
                || name.starts_with('.')
                || name.ends_with('.')
                || name.contains("..")
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
            {
                return Err(SqsError::invalid(format!(
                    "Message (user) attribute name '{name}' is invalid."
                )));
            }
        }
        let data_type = opt_str(v, "DataType")?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                SqsError::invalid(format!(
                    "The message attribute '{name}' must contain non-empty message attribute type."
                ))
            })?
            .to_string();
        let base = data_type.split('.').next().unwrap_or("");
        if data_type.len() > 256 {
            return Err(SqsError::invalid(format!(
                "The message attribute '{name}' has an invalid message attribute type."
            )));
        }
        let string_value = opt_str(v, "StringValue")?.map(str::to_string);
        let binary_value = match opt_str(v, "BinaryValue")? {
            Some(b) => Some(Bytes::from(STANDARD.decode(b).map_err(|_| {
                SqsError::invalid(format!(
                    "The message attribute '{name}' has an invalid binary value."
                ))
            })?)),
            None => None,
        };
        if v.get("StringListValues").is_some_and(|l| !l.is_null())
            || v.get("BinaryListValues").is_some_and(|l| !l.is_null())
        {
            return Err(SqsError::new(
                ErrorKind::UnsupportedOperation,
                "Message attribute list values in SendMessage operation are not supported.",
            ));
        }
        let value = match base {
            "String" | "Number" => {
                let s = string_value.filter(|s| !s.is_empty()).ok_or_else(|| {
                    SqsError::invalid(format!(
                        "The message attribute '{name}' must contain non-empty message attribute value for message attribute type '{base}'."
                    ))
                })?;
                if base == "Number" && s.trim().parse::<f64>().is_err() {
                    return Err(SqsError::invalid(format!(
                        "Can't cast the value of message (user) attribute '{name}' to a number."
                    )));
                }
                if system && data_type != "String" {
                    return Err(SqsError::invalid(format!(
                        "The message system attribute '{name}' must be of type String."
                    )));
                }
                valid_body(&s)?;
                AttributeValue {
                    data_type,
                    string_value: Some(s),
                    binary_value: None,
                }
            }
            "Binary" => {
                let b = binary_value.filter(|b| !b.is_empty()).ok_or_else(|| {
                    SqsError::invalid(format!(
                        "The message attribute '{name}' must contain non-empty message attribute value for message attribute type 'Binary'."
                    ))
                })?;
                AttributeValue {
                    data_type,
                    string_value: None,
                    binary_value: Some(b),
                }
            }
            _ => {
                return Err(SqsError::invalid(format!(
                    "The type of message (user) attribute '{name}' is invalid. You must use only the following supported type prefixes: Binary, Number, String."
                )));
            }
        };
        out.insert(name.clone(), value);
    }
    Ok(out)
}

fn valid_token(field: &str, v: &str) -> SqsResult<()> {
    if v.is_empty() || v.len() > 128 || !v.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(SqsError::invalid(format!(
            "Value {v} for parameter {field} is invalid. Reason: {field} can only include alphanumeric and punctuation characters. 1 to 128 in length."
        )));
    }
    Ok(())
}

/// Parses a `SendMessage` input or a `SendMessageBatch` entry.
pub fn parse_outgoing(input: &Value) -> SqsResult<Outgoing> {
    let body = match opt_str(input, "MessageBody")? {
        Some(b) if !b.is_empty() => b.to_string(),
        _ => return Err(SqsError::missing("MessageBody")),
    };
    valid_body(&body)?;
    let delay = int_in(input, "DelaySeconds", 0, 900)?;
    let attributes = parse_attribute_map(input, "MessageAttributes", false)?;
    let system_attributes = parse_attribute_map(input, "MessageSystemAttributes", true)?;
    let dedup_id = opt_str(input, "MessageDeduplicationId")?.map(str::to_string);
    let group_id = opt_str(input, "MessageGroupId")?.map(str::to_string);
    if let Some(d) = &dedup_id {
        valid_token("MessageDeduplicationId", d)?;
    }
    if let Some(g) = &group_id {
        valid_token("MessageGroupId", g)?;
    }
    Ok(Outgoing {
        body,
        delay,
        attributes,
        system_attributes,
        dedup_id,
        group_id,
    })
}

/// Adds a message to a queue (or, for a FIFO duplicate, answers with the original);
/// returns the result entry (`MessageId`, digests, `SequenceNumber`).
pub fn send_into(q: &mut Queue, call: &Call, msg: Outgoing) -> SqsResult<Map<String, Value>> {
    let max = q.attr_i64("MaximumMessageSize", MAX_MESSAGE_BYTES);
    if msg.size() as i64 > max {
        return Err(SqsError::invalid(format!(
            "One or more parameters are invalid. Reason: Message must be shorter than {max} bytes."
        )));
    }
    let now = q.now(call.now);
    let mut out = Map::new();
    out.insert(
        "MD5OfMessageBody".into(),
        Value::String(md5_of_body(&msg.body)),
    );
    if let Some(d) = md5_of_attributes(msg.attributes.iter()) {
        out.insert("MD5OfMessageAttributes".into(), Value::String(d));
    }
    if let Some(d) = md5_of_attributes(msg.system_attributes.iter()) {
        out.insert("MD5OfMessageSystemAttributes".into(), Value::String(d));
    }
    let mut dedup_key = None;
    if q.fifo {
        let group = msg
            .group_id
            .as_deref()
            .ok_or_else(|| SqsError::missing("MessageGroupId"))?;
        if msg.delay.is_some_and(|d| d > 0) {
            return Err(SqsError::invalid(
                "Value for parameter DelaySeconds is invalid. Reason: The request include parameter that is not valid for this queue type.",
            ));
        }
        let dedup = match (&msg.dedup_id, q.attr_bool("ContentBasedDeduplication")) {
            (Some(d), _) => d.clone(),
            (None, true) => hex::encode(Sha256::digest(msg.body.as_bytes())),
            (None, false) => {
                return Err(SqsError::invalid(
                    "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly",
                ));
            }
        };
        q.prune_dedup(now);
        let key =
            if q.attributes.get("DeduplicationScope").map(String::as_str) == Some("messageGroup") {
                format!("{group}\u{0}{dedup}")
            } else {
                dedup.clone()
            };
        if let Some(rec) = q.dedup.get(&key) {
            tracing::debug!(queue = %q.name, dedup = %dedup, "duplicate send suppressed");
            out.insert("MessageId".into(), Value::String(rec.message_id.clone()));
            out.insert(
                "SequenceNumber".into(),
                Value::String(format!("{:020}", rec.seq)),
            );
            return Ok(out);
        }
        dedup_key = Some((key, dedup));
    } else if msg.dedup_id.is_some() {
        return Err(SqsError::invalid(
            "Value for parameter MessageDeduplicationId is invalid. Reason: The request include parameter that is not valid for this queue type.",
        ));
    }
    let delay_s = msg.delay.unwrap_or_else(|| q.attr_i64("DelaySeconds", 0));
    let retention_s = q.attr_i64("MessageRetentionPeriod", 345_600);
    let id = uuid::Uuid::new_v4().to_string();
    let m = Message {
        id: id.clone(),
        body: msg.body,
        attributes: msg.attributes,
        system_attributes: msg.system_attributes,
        sender_id: call.scope.account.clone(),
        sent_at: call.now,
        receive_count: 0,
        first_received_at: None,
        visible_at: now + delay_s * 1000,
        delayed: delay_s > 0,
        expires_at: now + retention_s * 1000,
        group_id: msg.group_id,
        dedup_id: dedup_key.as_ref().map(|(_, d)| d.clone()),
        dead_letter_source: None,
    };
    let seq = q.push(m);
    if let Some((key, _)) = dedup_key {
        q.remember_dedup(
            key,
            DedupRecord {
                message_id: id.clone(),
                seq,
                expires_at: now + DEDUP_WINDOW_MS,
            },
        );
    }
    out.insert("MessageId".into(), Value::String(id));
    if q.fifo {
        out.insert("SequenceNumber".into(), Value::String(format!("{seq:020}")));
    }
    Ok(out)
}

/// `SendMessage`.
pub fn send_message(state: &mut SqsState, call: &Call, input: &Value) -> SqsResult<Value> {
    let (scope, name) = locate(call, req_str(input, "QueueUrl")?)?;
    let msg = parse_outgoing(input)?;
    let q = queue_mut(state, &scope, &name)?;
    Ok(Value::Object(send_into(q, call, msg)?))
}

fn valid_entry_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 80
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Checks a batch's shape (1 to 10 entries, distinct well-formed ids) and returns its entries.
fn batch_entries(input: &Value) -> SqsResult<&Vec<Value>> {
    let entries = match input.get("Entries") {
        Some(Value::Array(e)) => e,
        None | Some(Value::Null) => {
            return Err(SqsError::new(
                ErrorKind::EmptyBatchRequest,
                "There should be at least one SendMessageBatchRequestEntry in the request.",
            ));
        }
        Some(_) => return Err(SqsError::invalid("Entries must be a list.")),
    };
    if entries.is_empty() {
        return Err(SqsError::new(
            ErrorKind::EmptyBatchRequest,
            "There should be at least one entry in the request.",
        ));
    }
    if entries.len() > MAX_BATCH {
        return Err(SqsError::new(
            ErrorKind::TooManyEntriesInBatchRequest,
            format!(
                "Maximum number of entries per request are {MAX_BATCH}. You have sent {}.",
                entries.len()
            ),
        ));
    }
    let mut seen = BTreeSet::new();
    for e in entries {
        let id = req_str(e, "Id")?;
        if !valid_entry_id(id) {
            return Err(SqsError::new(
                ErrorKind::InvalidBatchEntryId,
                "A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long.",
            ));
        }
        if !seen.insert(id) {
            return Err(SqsError::new(
                ErrorKind::BatchEntryIdsNotDistinct,
                format!("Id {id} repeated."),
            ));
        }
    }
    Ok(entries)
}

fn failed(id: &str, e: &SqsError) -> Value {
    json!({
        "Id": id,
        "SenderFault": e.kind.status().is_client_error(),
        "Code": e.kind.query_code(),
        "Message": e.message,
    })
}

fn batch_result(ok: Vec<Value>, bad: Vec<Value>) -> Value {
    json!({ "Successful": ok, "Failed": bad })
}

/// `SendMessageBatch`: entries succeed or fail one by one.
pub fn send_message_batch(state: &mut SqsState, call: &Call, input: &Value) -> SqsResult<Value> {
    let (scope, name) = locate(call, req_str(input, "QueueUrl")?)?;
    let entries = batch_entries(input)?;
    let q = queue_mut(state, &scope, &name)?;
    let parsed: Vec<(String, SqsResult<Outgoing>)> = entries
        .iter()
        .map(|e| {
            let id = e
                .get("Id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            (id, parse_outgoing(e))
        })
        .collect();
    let total: usize = parsed
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok().map(Outgoing::size))
        .sum();
    let max = q
        .attr_i64("MaximumMessageSize", MAX_MESSAGE_BYTES)
        .max(MAX_MESSAGE_BYTES);
    if total as i64 > max {
        return Err(SqsError::new(
            ErrorKind::BatchRequestTooLong,
            format!(
                "Batch requests cannot be longer than {max} bytes. You have sent {total} bytes."
            ),
        ));
    }
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for (id, r) in parsed {
        match r.and_then(|m| send_into(q, call, m)) {
            Ok(mut entry) => {
                entry.insert("Id".into(), Value::String(id));
                ok.push(Value::Object(entry));
            }
            Err(e) => bad.push(failed(&id, &e)),
        }
    }
    Ok(batch_result(ok, bad))
}

// ---------------------------------------------------------------------------------------
// Messages: receiving

/// What a receive asks for.
#[derive(Clone, Debug, Default)]
pub struct ReceiveParams {
    /// 1 to 10.
    pub max: usize,
    /// Visibility timeout override, seconds.
    pub visibility: Option<i64>,
    /// Long-poll wait override, seconds.
    pub wait: Option<i64>,
    /// System attribute names to return (`All` for every one).
    pub attribute_names: Vec<String>,
    /// Message attribute names to return (`All`, `.*`, `prefix.*` or exact names).
    pub message_attribute_names: Vec<String>,
}

/// Parses a `ReceiveMessage` input.
pub fn parse_receive(input: &Value) -> SqsResult<ReceiveParams> {
    let max = int_in(input, "MaxNumberOfMessages", 1, 10)?.unwrap_or(1) as usize;
    let visibility = int_in(input, "VisibilityTimeout", 0, 43_200)?;
    let wait = int_in(input, "WaitTimeSeconds", 0, 20)?;
    let mut attribute_names = str_list(input, "AttributeNames")?;
    attribute_names.extend(str_list(input, "MessageSystemAttributeNames")?);
    Ok(ReceiveParams {
        max,
        visibility,
        wait,
        attribute_names,
        message_attribute_names: str_list(input, "MessageAttributeNames")?,
    })
}

/// Why a receive attempt returned nothing; aborts the write so an idle poll changes nothing.
#[derive(Debug)]
pub enum ReceiveOutcome {
    /// A real error.
    Failed(SqsError),
    /// No message now; the next one becomes visible at this wall time, if any.
    Idle(Option<i64>),
}

impl From<SqsError> for ReceiveOutcome {
    fn from(e: SqsError) -> Self {
        ReceiveOutcome::Failed(e)
    }
}

/// A receipt handle: opaque to clients, it names the queue, the message and which receive
/// it came from.
pub fn receipt_handle(scope: &Scope, queue: &str, seq: u64, receive_count: u32) -> String {
    URL_SAFE_NO_PAD.encode(format!(
        "{}\u{1}{}\u{1}{}\u{1}{seq}\u{1}{receive_count}",
        scope.account, scope.region, queue
    ))
}

/// Decodes a receipt handle for `queue` in `scope` into `(seq, receive_count)`.
pub fn parse_receipt(handle: &str, scope: &Scope, queue: &str) -> SqsResult<(u64, u32)> {
    let invalid = || {
        SqsError::new(
            ErrorKind::ReceiptHandleIsInvalid,
            format!("The input receipt handle \"{handle}\" is not a valid receipt handle."),
        )
    };
    let raw = URL_SAFE_NO_PAD.decode(handle).map_err(|_| invalid())?;
    let s = String::from_utf8(raw).map_err(|_| invalid())?;
    let parts: Vec<&str> = s.split('\u{1}').collect();
    match parts.as_slice() {
        [account, region, q, seq, count]
            if *account == scope.account && *region == scope.region && *q == queue =>
        {
            Ok((
                seq.parse().map_err(|_| invalid())?,
                count.parse().map_err(|_| invalid())?,
            ))
        }
        _ => Err(invalid()),
    }
}

fn wants_attr(names: &[String], name: &str) -> bool {
    names.iter().any(|n| n == "All" || n == name)
}

fn wants_message_attr(names: &[String], name: &str) -> bool {
    names.iter().any(|n| {
        n == "All"
            || n == ".*"
            || n == name
            || n.strip_suffix(".*")
                .is_some_and(|p| name.starts_with(p) && name[p.len()..].starts_with('.'))
    })
}

fn attr_json(v: &AttributeValue) -> Value {
    let mut m = Map::new();
    m.insert("DataType".into(), Value::String(v.data_type.clone()));
    if let Some(s) = &v.string_value {
        m.insert("StringValue".into(), Value::String(s.clone()));
    }
    if let Some(b) = &v.binary_value {
        m.insert("BinaryValue".into(), Value::String(STANDARD.encode(b)));
    }
    Value::Object(m)
}

fn render_message(scope: &Scope, q: &Queue, seq: u64, m: &Message, p: &ReceiveParams) -> Value {
    let mut out = Map::new();
    out.insert("MessageId".into(), Value::String(m.id.clone()));
    out.insert(
        "ReceiptHandle".into(),
        Value::String(receipt_handle(scope, &q.name, seq, m.receive_count)),
    );
    out.insert("MD5OfBody".into(), Value::String(md5_of_body(&m.body)));
    out.insert("Body".into(), Value::String(m.body.clone()));
    let names = &p.attribute_names;
    let mut attrs = Map::new();
    let mut put = |k: &str, v: Option<String>| {
        if wants_attr(names, k)
            && let Some(v) = v
        {
            attrs.insert(k.to_string(), Value::String(v));
        }
    };
    put("SenderId", Some(m.sender_id.clone()));
    put("SentTimestamp", Some(m.sent_at.to_string()));
    put("ApproximateReceiveCount", Some(m.receive_count.to_string()));
    put(
        "ApproximateFirstReceiveTimestamp",
        m.first_received_at.map(|t| t.to_string()),
    );
    if q.fifo {
        put("SequenceNumber", Some(format!("{seq:020}")));
        put("MessageDeduplicationId", m.dedup_id.clone());
    }
    put("MessageGroupId", m.group_id.clone());
    put(
        "AWSTraceHeader",
        m.system_attributes
            .get("AWSTraceHeader")
            .and_then(|v| v.string_value.clone()),
    );
    put("DeadLetterQueueSourceArn", m.dead_letter_source.clone());
    if !attrs.is_empty() {
        out.insert("Attributes".into(), Value::Object(attrs));
    }
    let selected: Vec<(&String, &AttributeValue)> = m
        .attributes
        .iter()
        .filter(|(k, _)| wants_message_attr(&p.message_attribute_names, k))
        .collect();
    if let Some(d) = md5_of_attributes(selected.iter().copied()) {
        out.insert("MD5OfMessageAttributes".into(), Value::String(d));
        let ma: Map<String, Value> = selected
            .iter()
            .map(|(k, v)| ((*k).clone(), attr_json(v)))
            .collect();
        out.insert("MessageAttributes".into(), Value::Object(ma));
    }
    Value::Object(out)
}

/// Messages moved to dead-letter queues by a receive, so their waiters can be woken.
pub type Moved = Vec<(Scope, String)>;

/// Where a message that exceeded `maxReceiveCount` goes, if the queue has a redrive policy
/// whose target exists.
fn dead_letter_target(state: &SqsState, scope: &Scope, q: &Queue) -> Option<(String, u32)> {
    let p = parse_redrive(q.attributes.get("RedrivePolicy")?).ok()?;
    let (dlq_scope, dlq_name) = parse_arn(&p.target_arn)?;
    if &dlq_scope != scope || dlq_name == q.name {
        return None;
    }
    queue(state, scope, &dlq_name).ok()?;
    Some((dlq_name, p.max_receive_count))
}

/// One receive attempt: takes up to `max` visible messages, makes them in flight, moves the
/// ones over `maxReceiveCount` to the dead-letter queue. `Idle` (which aborts the write)
/// when there is nothing to take.
pub fn receive_once(
    state: &mut SqsState,
    call: &Call,
    scope: &Scope,
    name: &str,
    p: &ReceiveParams,
) -> Result<(Vec<Value>, Moved), ReceiveOutcome> {
    let q = queue(state, scope, name)?;
    let dlq = dead_letter_target(state, scope, q);
    let now = q.now(call.now);
    let vt_ms = p
        .visibility
        .unwrap_or_else(|| q.attr_i64("VisibilityTimeout", 30))
        * 1000;
    let fifo = q.fifo;
    let mut queue_copy = q.clone();
    let mut out = Vec::new();
    let mut moved_msgs = Vec::new();
    let mut expired = 0usize;
    let mut taken: BTreeSet<u64> = BTreeSet::new();
    loop {
        let want = p.max - out.len();
        if want == 0 {
            break;
        }
        let candidates: Vec<u64> = if fifo {
            // Deliver in sequence order; a group with a message in flight or delayed is
            // blocked so later messages of that group cannot overtake it.
            let mut blocked: BTreeSet<&str> = BTreeSet::new();
            let mut c = Vec::new();
            for (seq, m) in queue_copy.messages.iter() {
                if c.len() >= want {
                    break;
                }
                let group = m.group_id.as_deref().unwrap_or("");
                if taken.contains(seq) || blocked.contains(group) {
                    continue;
                }
                if m.visible_at > now && m.expires_at > now {
                    blocked.insert(group);
                    continue;
                }
                c.push(*seq);
            }
            c
        } else {
            queue_copy
                .ready()
                .range(..=(now, u64::MAX))
                .filter(|(_, s)| !taken.contains(s))
                .take(want)
                .map(|(_, s)| *s)
                .collect()
        };
        if candidates.is_empty() {
            break;
        }
        for seq in candidates {
            taken.insert(seq);
            let Some(m) = queue_copy.messages.get(&seq) else {
                continue;
            };
            if m.expires_at <= now {
                queue_copy.remove(seq);
                expired += 1;
                continue;
            }
            if let Some((_, max_count)) = &dlq
                && m.receive_count >= *max_count
            {
                if let Some(m) = queue_copy.remove(seq) {
                    moved_msgs.push(m);
                }
                continue;
            }
            queue_copy.set_visible_at(seq, now + vt_ms, false);
            if let Some(m) = queue_copy.messages.get_mut(&seq) {
                let m = Arc::make_mut(m);
                m.receive_count += 1;
                m.first_received_at.get_or_insert(call.now);
            }
            if let Some(m) = queue_copy.messages.get(&seq) {
                out.push(render_message(scope, &queue_copy, seq, m, p));
            }
        }
    }
    if out.is_empty() && moved_msgs.is_empty() && expired == 0 {
        let next = queue_copy
            .next_visible_after(now)
            .map(|at| at + queue_copy.clock_offset_ms);
        return Err(ReceiveOutcome::Idle(next));
    }
    let source_arn = queue_arn(scope, name);
    let mut moved = Vec::new();
    let r = state.scopes.get_mut(scope);
    r.queues.insert(name.to_string(), queue_copy);
    if let Some((dlq_name, _)) = dlq
        && !moved_msgs.is_empty()
        && let Some(d) = r.queues.get_mut(&dlq_name)
    {
        let dnow = d.now(call.now);
        let retention = d.attr_i64("MessageRetentionPeriod", 345_600) * 1000;
        tracing::debug!(queue = %name, dlq = %dlq_name, count = moved_msgs.len(), "moved to dead-letter queue");
        for mut m in moved_msgs {
            m.visible_at = dnow;
            m.delayed = false;
            m.expires_at = dnow + retention;
            m.dead_letter_source = Some(source_arn.clone());
            d.push(m);
        }
        moved.push((scope.clone(), dlq_name));
    }
    Ok((out, moved))
}

// ---------------------------------------------------------------------------------------
// Messages: deleting and changing visibility

fn delete_one(q: &mut Queue, scope: &Scope, handle: &str, now_wall: i64) -> SqsResult<()> {
    let (seq, count) = parse_receipt(handle, scope, &q.name)?;
    let now = q.now(now_wall);
    if let Some(m) = q.messages.get(&seq) {
        // FIFO queues refuse a handle from an earlier receive once the message was received
        // again; standard queues delete anyway, as AWS does.
        if q.fifo && m.receive_count != count && !m.in_flight(now) {
            return Err(SqsError::new(
                ErrorKind::ReceiptHandleIsInvalid,
                "The receipt handle has expired.",
            ));
        }
        q.remove(seq);
    }
    Ok(())
}

/// `DeleteMessage`: deleting an already deleted message succeeds, as in AWS.
pub fn delete_message(state: &mut SqsState, call: &Call, input: &Value) -> SqsResult<Value> {
    let (scope, name) = locate(call, req_str(input, "QueueUrl")?)?;
    let handle = req_str(input, "ReceiptHandle")?;
    let q = queue_mut(state, &scope, &name)?;
    delete_one(q, &scope, handle, call.now)?;
    Ok(json!({}))
}

/// `DeleteMessageBatch`.
pub fn delete_message_batch(state: &mut SqsState, call: &Call, input: &Value) -> SqsResult<Value> {
    let (scope, name) = locate(call, req_str(input, "QueueUrl")?)?;
    let entries = batch_entries(input)?;
    let q = queue_mut(state, &scope, &name)?;
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for e in entries {
        let id = e.get("Id").and_then(Value::as_str).unwrap_or("");
        match req_str(e, "ReceiptHandle").and_then(|h| delete_one(q, &scope, h, call.now)) {
            Ok(()) => ok.push(json!({ "Id": id })),
            Err(err) => bad.push(failed(id, &err)),
        }
    }
    Ok(batch_result(ok, bad))
}

fn change_one(
    q: &mut Queue,
    scope: &Scope,
    handle: &str,
    timeout: i64,
    now_wall: i64,
) -> SqsResult<()> {
    let (seq, count) = parse_receipt(handle, scope, &q.name)?;
    if !(0..=43_200).contains(&timeout) {
        return Err(SqsError::invalid(format!(
            "Value {timeout} for parameter VisibilityTimeout is invalid. Reason: Must be between 0 and 43200."
        )));
    }
    let now = q.now(now_wall);
    match q.messages.get(&seq) {
        Some(m) if m.in_flight(now) && m.receive_count == count => {
            q.set_visible_at(seq, now + timeout * 1000, false);
            Ok(())
        }
        _ => Err(SqsError::new(
            ErrorKind::MessageNotInflight,
            "Message does not exist or is not available for visibility timeout change.",
        )),
    }
}

/// `ChangeMessageVisibility`: only for a message in flight from this receipt.
pub fn change_message_visibility(
    state: &mut SqsState,
    call: &Call,
    input: &Value,
) -> SqsResult<Value> {
    let (scope, name) = locate(call, req_str(input, "QueueUrl")?)?;
    let handle = req_str(input, "ReceiptHandle")?;
    let timeout = opt_int(input, "VisibilityTimeout")?
        .ok_or_else(|| SqsError::missing("VisibilityTimeout"))?;
    let q = queue_mut(state, &scope, &name)?;
    change_one(q, &scope, handle, timeout, call.now)?;
    Ok(json!({}))
}

/// `ChangeMessageVisibilityBatch`.
pub fn change_message_visibility_batch(
    state: &mut SqsState,
    call: &Call,
    input: &Value,
) -> SqsResult<Value> {
    let (scope, name) = locate(call, req_str(input, "QueueUrl")?)?;
    let entries = batch_entries(input)?;
    let q = queue_mut(state, &scope, &name)?;
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for e in entries {
        let id = e.get("Id").and_then(Value::as_str).unwrap_or("");
        let r = req_str(e, "ReceiptHandle").and_then(|h| {
            let t = opt_int(e, "VisibilityTimeout")?
                .ok_or_else(|| SqsError::missing("VisibilityTimeout"))?;
            change_one(q, &scope, h, t, call.now)
        });
        match r {
            Ok(()) => ok.push(json!({ "Id": id })),
            Err(err) => bad.push(failed(id, &err)),
        }
    }
    Ok(batch_result(ok, bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(now: i64) -> Call {
        Call {
            scope: Scope::default(),
            endpoint: "http://localhost:4566".into(),
            now,
        }
    }

    fn url(name: &str) -> String {
        format!("http://localhost:4566/000000000000/{name}")
    }

    fn setup(fifo: bool) -> (SqsState, String) {
        let mut st = SqsState::default();
        let name = if fifo { "q.fifo" } else { "q" };
        let attrs = if fifo {
            json!({"FifoQueue": "true"})
        } else {
            json!({})
        };
        create_queue(
            &mut st,
            &call(0),
            &json!({"QueueName": name, "Attributes": attrs}),
        )
        .expect("create");
        (st, url(name))
    }

    fn receive(st: &mut SqsState, now: i64, url: &str, max: usize) -> Vec<Value> {
        let c = call(now);
        let (scope, name) = locate(&c, url).expect("locate");
        let p = ReceiveParams {
            max,
            attribute_names: vec!["All".into()],
            message_attribute_names: vec!["All".into()],
            ..Default::default()
        };
        match receive_once(st, &c, &scope, &name, &p) {
            Ok((m, _)) => m,
            Err(ReceiveOutcome::Idle(_)) => Vec::new(),
            Err(ReceiveOutcome::Failed(e)) => panic!("{e}"),
        }
    }

    #[test]
    fn queue_names_are_validated() {
        let mut st = SqsState::default();
        for bad in ["", "a b", "x.fifo", &"a".repeat(81)] {
            let e = create_queue(&mut st, &call(0), &json!({"QueueName": bad})).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidParameterValue, "{bad}");
        }
    }

    #[test]
    fn create_is_idempotent_but_refuses_different_attributes() {
        let (mut st, _) = setup(false);
        create_queue(&mut st, &call(0), &json!({"QueueName": "q"})).expect("same");
        let e = create_queue(
            &mut st,
            &call(0),
            &json!({"QueueName": "q", "Attributes": {"VisibilityTimeout": "5"}}),
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::QueueNameExists);
        assert_eq!(e.kind.query_code(), "QueueAlreadyExists");
    }

    #[test]
    fn attribute_ranges_are_enforced() {
        let mut st = SqsState::default();
        let e = create_queue(
            &mut st,
            &call(0),
            &json!({"QueueName": "q", "Attributes": {"DelaySeconds": "901"}}),
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidAttributeValue);
        let e = create_queue(
            &mut st,
            &call(0),
            &json!({"QueueName": "q", "Attributes": {"Bogus": "1"}}),
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidAttributeName);
    }

    #[test]
    fn a_received_message_is_invisible_until_its_timeout() {
        let (mut st, u) = setup(false);
        send_message(
            &mut st,
            &call(0),
            &json!({"QueueUrl": u, "MessageBody": "hi"}),
        )
        .expect("send");
        assert_eq!(receive(&mut st, 0, &u, 10).len(), 1);
        assert!(receive(&mut st, 29_999, &u, 10).is_empty());
        let again = receive(&mut st, 30_000, &u, 10);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0]["Attributes"]["ApproximateReceiveCount"], "2");
    }

    #[test]
    fn delayed_messages_wait_for_their_delay() {
        let (mut st, u) = setup(false);
        send_message(
            &mut st,
            &call(0),
            &json!({"QueueUrl": u, "MessageBody": "d", "DelaySeconds": 5}),
        )
        .expect("send");
        assert!(receive(&mut st, 4_999, &u, 1).is_empty());
        assert_eq!(receive(&mut st, 5_000, &u, 1).len(), 1);
    }

    #[test]
    fn fifo_groups_are_delivered_in_order_one_batch_at_a_time() {
        let (mut st, u) = setup(true);
        for (i, g) in [("1", "a"), ("2", "b"), ("3", "a")] {
            send_message(
                &mut st,
                &call(0),
                &json!({"QueueUrl": u, "MessageBody": i, "MessageGroupId": g, "MessageDeduplicationId": i}),
            )
            .expect("send");
        }
        let first = receive(&mut st, 0, &u, 1);
        assert_eq!(first[0]["Body"], "1");
        // Group a is blocked while message 1 is in flight: only b's message comes.
        let next = receive(&mut st, 0, &u, 10);
        assert_eq!(next.len(), 1);
        assert_eq!(next[0]["Body"], "2");
    }

    #[test]
    fn fifo_duplicates_inside_the_window_are_suppressed() {
        let (mut st, u) = setup(true);
        let send = |st: &mut SqsState, now| {
            send_message(
                st,
                &call(now),
                &json!({"QueueUrl": u, "MessageBody": "x", "MessageGroupId": "g", "MessageDeduplicationId": "d"}),
            )
            .expect("send")
        };
        let a = send(&mut st, 0);
        let b = send(&mut st, DEDUP_WINDOW_MS - 1);
        assert_eq!(a["MessageId"], b["MessageId"]);
        let c = send(&mut st, DEDUP_WINDOW_MS);
        assert_ne!(a["MessageId"], c["MessageId"]);
    }

    #[test]
    fn fifo_sends_need_a_group_and_a_dedup_id() {
        let (mut st, u) = setup(true);
        let e = send_message(
            &mut st,
            &call(0),
            &json!({"QueueUrl": u, "MessageBody": "x"}),
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::MissingParameter);
        let e = send_message(
            &mut st,
            &call(0),
            &json!({"QueueUrl": u, "MessageBody": "x", "MessageGroupId": "g"}),
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidParameterValue);
    }

    #[test]
    fn messages_over_max_receive_count_move_to_the_dead_letter_queue() {
        let mut st = SqsState::default();
        create_queue(&mut st, &call(0), &json!({"QueueName": "dlq"})).expect("dlq");
        let policy = json!({"deadLetterTargetArn": "arn:aws:sqs:us-east-1:000000000000:dlq", "maxReceiveCount": 1}).to_string();
        create_queue(
            &mut st,
            &call(0),
            &json!({"QueueName": "src", "Attributes": {"RedrivePolicy": policy, "VisibilityTimeout": "1"}}),
        )
        .expect("src");
        send_message(
            &mut st,
            &call(0),
            &json!({"QueueUrl": url("src"), "MessageBody": "m"}),
        )
        .expect("send");
        assert_eq!(receive(&mut st, 0, &url("src"), 1).len(), 1);
        assert!(receive(&mut st, 1_000, &url("src"), 1).is_empty());
        let d = receive(&mut st, 1_000, &url("dlq"), 1);
        assert_eq!(d.len(), 1);
        assert_eq!(
            d[0]["Attributes"]["DeadLetterQueueSourceArn"],
            "arn:aws:sqs:us-east-1:000000000000:src"
        );
    }

    #[test]
    fn redrive_policy_needs_an_existing_target() {
        let mut st = SqsState::default();
        let policy = json!({"deadLetterTargetArn": "arn:aws:sqs:us-east-1:000000000000:nope", "maxReceiveCount": 1}).to_string();
        let e = create_queue(
            &mut st,
            &call(0),
            &json!({"QueueName": "src", "Attributes": {"RedrivePolicy": policy}}),
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidParameterValue);
    }

    #[test]
    fn delete_and_change_visibility_check_receipts() {
        let (mut st, u) = setup(false);
        send_message(
            &mut st,
            &call(0),
            &json!({"QueueUrl": u, "MessageBody": "hi"}),
        )
        .expect("send");
        let m = receive(&mut st, 0, &u, 1);
        let h = m[0]["ReceiptHandle"].as_str().expect("handle").to_string();
        change_message_visibility(
            &mut st,
            &call(0),
            &json!({"QueueUrl": u, "ReceiptHandle": h, "VisibilityTimeout": 0}),
        )
        .expect("change");
        let e = change_message_visibility(
            &mut st,
            &call(0),
            &json!({"QueueUrl": u, "ReceiptHandle": h, "VisibilityTimeout": 10}),
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::MessageNotInflight);
        let e = delete_message(
            &mut st,
            &call(0),
            &json!({"QueueUrl": u, "ReceiptHandle": "garbage"}),
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::ReceiptHandleIsInvalid);
        delete_message(
            &mut st,
            &call(0),
            &json!({"QueueUrl": u, "ReceiptHandle": h}),
        )
        .expect("delete");
        assert!(receive(&mut st, 0, &u, 1).is_empty());
    }

    #[test]
    fn batches_are_checked_and_fail_entry_by_entry() {
        let (mut st, u) = setup(false);
        let e = send_message_batch(&mut st, &call(0), &json!({"QueueUrl": u, "Entries": []}))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::EmptyBatchRequest);
        let e = send_message_batch(&mut st, &call(0), &json!({"QueueUrl": u, "Entries": [{"Id": "a", "MessageBody": "x"}, {"Id": "a", "MessageBody": "y"}]})).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BatchEntryIdsNotDistinct);
        let r = send_message_batch(&mut st, &call(0), &json!({"QueueUrl": u, "Entries": [{"Id": "a", "MessageBody": "x"}, {"Id": "b", "MessageBody": ""}]})).expect("batch");
        assert_eq!(r["Successful"].as_array().map(Vec::len), Some(1));
        assert_eq!(r["Failed"][0]["Code"], "MissingParameter");
    }

    #[test]
    fn list_queues_pages_by_name() {
        let mut st = SqsState::default();
        for n in ["a1", "a2", "a3", "b"] {
            create_queue(&mut st, &call(0), &json!({"QueueName": n})).expect("create");
        }
        let p1 = list_queues(
            &st,
            &call(0),
            &json!({"QueueNamePrefix": "a", "MaxResults": 2}),
        )
        .expect("list");
        assert_eq!(p1["QueueUrls"].as_array().map(Vec::len), Some(2));
        let t = p1["NextToken"].as_str().expect("token");
        let p2 = list_queues(
            &st,
            &call(0),
            &json!({"QueueNamePrefix": "a", "MaxResults": 2, "NextToken": t}),
        )
        .expect("list");
        assert_eq!(p2["QueueUrls"], json!([url("a3")]));
        assert!(p2.get("NextToken").is_none());
    }

    #[test]
    fn purge_runs_once_a_minute() {
        let (mut st, u) = setup(false);
        purge_queue(&mut st, &call(0), &json!({"QueueUrl": u})).expect("purge");
        let e = purge_queue(&mut st, &call(59_000), &json!({"QueueUrl": u})).unwrap_err();
        assert_eq!(e.kind, ErrorKind::PurgeQueueInProgress);
        purge_queue(&mut st, &call(60_000), &json!({"QueueUrl": u})).expect("purge");
    }
}
