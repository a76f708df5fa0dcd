//! The DynamoDB API (awsJson1.0, `X-Amz-Target: DynamoDB_20120810.<Operation>`).
//!
//! Each operation parses and validates its request (expressions included) before touching
//! the state, then runs either inside [`cryopod::StateCell::write`] (writes: an error
//! anywhere leaves every table as it was, which is also what makes transactions atomic) or
//! under a read lock.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use cryopod::Scope;
use serde_json::{Map, Value, json};

use crate::error::DdbError;
use crate::expr::{self, Action, Cond, Kind, Path, Placeholders};
use crate::state::{
    DynamoScope, DynamoState, IndexDef, KeySchema, Projection, Table, Throughput, Ttl, range_iter,
};
use crate::value::{AttrValue, IndexKey, Item, ItemKey, KeyVal, attrs_from_json, attrs_to_json};

/// Most items a BatchWriteItem may carry.
pub const MAX_BATCH_WRITE: usize = 25;
/// Most keys a BatchGetItem may carry.
pub const MAX_BATCH_GET: usize = 100;
/// Most actions in a transaction.
pub const MAX_TRANSACT: usize = 100;
/// Query and Scan stop after reading this many bytes, as DynamoDB does.
pub const MAX_PAGE_BYTES: usize = 1024 * 1024;

/// Whether an operation changes state.
pub fn is_write(op: &str) -> bool {
    matches!(
        op,
        "CreateTable"
            | "UpdateTable"
            | "DeleteTable"
            | "PutItem"
            | "DeleteItem"
            | "UpdateItem"
            | "BatchWriteItem"
            | "TransactWriteItems"
            | "TagResource"
            | "UntagResource"
            | "UpdateTimeToLive"
    )
}

/// Runs a write operation on the state.
pub fn write_op(
    state: &mut DynamoState,
    scope: &Scope,
    op: &str,
    body: &Value,
    now: f64,
) -> Result<Value, DdbError> {
    let res = state.scopes.get_mut(scope);
    match op {
        "CreateTable" => create_table(res, scope, body, now),
        "UpdateTable" => update_table(res, scope, body),
        "DeleteTable" => delete_table(res, scope, body),
        "PutItem" => put_item(res, body),
        "DeleteItem" => delete_item(res, body),
        "UpdateItem" => update_item(res, body),
        "BatchWriteItem" => batch_write(res, body),
        "TransactWriteItems" => transact_write(res, body),
        "TagResource" => tag_resource(res, scope, body),
        "UntagResource" => untag_resource(res, scope, body),
        "UpdateTimeToLive" => update_ttl(res, body),
        other => Err(unknown_op(other)),
    }
}

/// Answers a read operation.
pub fn read_op(
    state: &DynamoState,
    scope: &Scope,
    op: &str,
    body: &Value,
) -> Result<Value, DdbError> {
    let empty = DynamoScope::default();
    let res = state.scopes.get(scope).unwrap_or(&empty);
    match op {
        "DescribeTable" => {
            let t = table(res, body)?;
            Ok(json!({ "Table": describe(t, scope, "ACTIVE") }))
        }
        "ListTables" => list_tables(res, body),
        "GetItem" => get_item(res, body),
        "Query" => query(res, body),
        "Scan" => scan(res, body),
        "BatchGetItem" => batch_get(res, body),
        "TransactGetItems" => transact_get(res, body),
        "ListTagsOfResource" => list_tags(res, scope, body),
        "DescribeTimeToLive" => {
            let t = table(res, body)?;
            let d = match &t.ttl {
                Some(Ttl {
                    attribute,
                    enabled: true,
                }) => json!({"TimeToLiveStatus": "ENABLED", "AttributeName": attribute}),
                _ => json!({"TimeToLiveStatus": "DISABLED"}),
            };
            Ok(json!({ "TimeToLiveDescription": d }))
        }
        "DescribeLimits" => Ok(json!({
            "AccountMaxReadCapacityUnits": 80000, "AccountMaxWriteCapacityUnits": 80000,
            "TableMaxReadCapacityUnits": 40000, "TableMaxWriteCapacityUnits": 40000
        })),
        other => Err(unknown_op(other)),
    }
}

fn unknown_op(op: &str) -> DdbError {
    DdbError::new(
        "UnknownOperationException",
        format!("DynamoDB has no operation {op}"),
    )
}

// ------------------------------------------------------------------------------------------
// Request helpers
// ------------------------------------------------------------------------------------------

fn constraint(value: impl std::fmt::Display, field: &str, what: &str) -> DdbError {
    DdbError::validation(format!(
        "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: {what}"
    ))
}

fn req_str<'a>(body: &'a Value, field: &str) -> Result<&'a str, DdbError> {
    match body.get(field) {
        Some(Value::String(s)) => Ok(s),
        Some(Value::Null) | None => Err(DdbError::validation(format!(
            "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
            lower_first(field)
        ))),
        Some(_) => Err(DdbError::serialization(format!(
            "Unexpected value type for {field}"
        ))),
    }
}

fn opt_str<'a>(body: &'a Value, field: &str) -> Result<Option<&'a str>, DdbError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(DdbError::serialization(format!(
            "Unexpected value type for {field}"
        ))),
    }
}

fn opt_u64(body: &Value, field: &str) -> Result<Option<u64>, DdbError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| DdbError::serialization(format!("Unexpected value type for {field}"))),
    }
}

fn opt_bool(body: &Value, field: &str) -> Result<Option<bool>, DdbError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(DdbError::serialization(format!(
            "Unexpected value type for {field}"
        ))),
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn table_name(body: &Value) -> Result<&str, DdbError> {
    let n = req_str(body, "TableName")?;
    validate_table_name(n, "tableName")?;
    Ok(n)
}

fn validate_table_name(n: &str, field: &str) -> Result<(), DdbError> {
    if n.len() < 3 {
        return Err(constraint(
            n,
            field,
            "Member must have length greater than or equal to 3",
        ));
    }
    if n.len() > 255 {
        return Err(constraint(
            n,
            field,
            "Member must have length less than or equal to 255",
        ));
    }
    if !n
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
    {
        return Err(constraint(
            n,
            field,
            "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+",
        ));
    }
    Ok(())
}

fn table<'a>(res: &'a DynamoScope, body: &Value) -> Result<&'a Table, DdbError> {
    let n = table_name(body)?;
    res.tables
        .get(n)
        .ok_or_else(|| DdbError::table_not_found(n))
}

fn table_named<'a>(res: &'a DynamoScope, n: &str) -> Result<&'a Table, DdbError> {
    res.tables.get(n).ok_or_else(DdbError::not_found)
}

fn table_mut<'a>(res: &'a mut DynamoScope, n: &str) -> Result<&'a mut Table, DdbError> {
    res.tables.get_mut(n).ok_or_else(DdbError::not_found)
}

/// The placeholders of a request.
fn placeholders(body: &Value) -> Result<Placeholders, DdbError> {
    let names = match body.get("ExpressionAttributeNames") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(m)) => {
            if m.is_empty() {
                return Err(DdbError::validation(
                    "ExpressionAttributeNames must not be empty",
                ));
            }
            m.iter()
                .map(|(k, v)| {
                    v.as_str()
                        .map(|s| (k.clone(), s.to_string()))
                        .ok_or_else(|| {
                            DdbError::serialization(
                                "ExpressionAttributeNames values must be strings",
                            )
                        })
                })
                .collect::<Result<_, _>>()?
        }
        Some(_) => {
            return Err(DdbError::serialization(
                "ExpressionAttributeNames must be a map",
            ));
        }
    };
    let values = match body.get("ExpressionAttributeValues") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(v @ Value::Object(m)) => {
            if m.is_empty() {
                return Err(DdbError::validation(
                    "ExpressionAttributeValues must not be empty",
                ));
            }
            attrs_from_json(v).map_err(|e| {
                DdbError::validation(format!(
                    "ExpressionAttributeValues contains invalid value: {} for key {}",
                    e.message,
                    m.keys().next().map(String::as_str).unwrap_or("")
                ))
            })?
        }
        Some(_) => {
            return Err(DdbError::serialization(
                "ExpressionAttributeValues must be a map",
            ));
        }
    };
    Ok(Placeholders::new(names, values))
}

/// Refuses placeholders when no expression was given, or unused ones.
fn finish_placeholders(ph: &Placeholders, any_expression: bool) -> Result<(), DdbError> {
    if !any_expression {
        if !ph.names.is_empty() {
            return Err(DdbError::validation(
                "ExpressionAttributeNames can only be specified when using expressions",
            ));
        }
        if !ph.values.is_empty() {
            return Err(DdbError::validation(
                "ExpressionAttributeValues can only be specified when using expressions",
            ));
        }
    }
    ph.check_unused()
}

fn refuse_legacy(body: &Value, fields: &[&str]) -> Result<(), DdbError> {
    for f in fields {
        if body.get(*f).is_some_and(|v| !v.is_null()) {
            return Err(DdbError::validation(format!(
                "The legacy parameter {f} is not supported by this emulator; use expressions instead"
            )));
        }
    }
    Ok(())
}

fn opt_condition(
    body: &Value,
    field: &str,
    kind: Kind,
    ph: &mut Placeholders,
) -> Result<Option<Cond>, DdbError> {
    match opt_str(body, field)? {
        Some(s) => Ok(Some(expr::parse_condition(s, kind, ph)?)),
        None => Ok(None),
    }
}

fn opt_projection(body: &Value, ph: &mut Placeholders) -> Result<Option<Vec<Path>>, DdbError> {
    match opt_str(body, "ProjectionExpression")? {
        Some(s) => Ok(Some(expr::parse_projection(s, ph)?)),
        None => Ok(None),
    }
}

fn attr_map(body: &Value, field: &str) -> Result<BTreeMap<String, AttrValue>, DdbError> {
    match body.get(field) {
        None | Some(Value::Null) => Err(DdbError::validation(format!(
            "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
            lower_first(field)
        ))),
        Some(v) => attrs_from_json(v),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ReturnValues {
    None,
    AllOld,
    UpdatedOld,
    AllNew,
    UpdatedNew,
}

fn return_values(body: &Value, allowed: &[&str]) -> Result<ReturnValues, DdbError> {
    let v = opt_str(body, "ReturnValues")?.unwrap_or("NONE");
    let rv = match v {
        "NONE" => ReturnValues::None,
        "ALL_OLD" => ReturnValues::AllOld,
        "UPDATED_OLD" => ReturnValues::UpdatedOld,
        "ALL_NEW" => ReturnValues::AllNew,
        "UPDATED_NEW" => ReturnValues::UpdatedNew,
        other => {
            return Err(constraint(
                other,
                "returnValues",
                "Member must satisfy enum value set: [ALL_NEW, UPDATED_OLD, ALL_OLD, NONE, UPDATED_NEW]",
            ));
        }
    };
    if !allowed.contains(&v) {
        return Err(DdbError::validation(
            "ReturnValues can only be ALL_OLD or NONE",
        ));
    }
    Ok(rv)
}

fn return_old_on_failure(body: &Value) -> Result<bool, DdbError> {
    match opt_str(body, "ReturnValuesOnConditionCheckFailure")? {
        None | Some("NONE") => Ok(false),
        Some("ALL_OLD") => Ok(true),
        Some(other) => Err(constraint(
            other,
            "returnValuesOnConditionCheckFailure",
            "Member must satisfy enum value set: [ALL_OLD, NONE]",
        )),
    }
}

fn check_condition(
    cond: Option<&Cond>,
    old: Option<&Item>,
    return_old: bool,
) -> Result<(), DdbError> {
    if let Some(c) = cond
        && !expr::eval_condition(c, old.map(Item::attrs))
    {
        let mut e = DdbError::condition_failed();
        if return_old && let Some(o) = old {
            e = e.with("Item", o.to_json());
        }
        return Err(e);
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Tables
// ------------------------------------------------------------------------------------------

fn key_schema(v: &Value, field: &str) -> Result<KeySchema, DdbError> {
    let arr = v
        .as_array()
        .ok_or_else(|| DdbError::validation(format!("{field} must be a list")))?;
    if arr.is_empty() || arr.len() > 2 {
        return Err(constraint(
            "[...]",
            &lower_first(field),
            "Member must have length less than or equal to 2",
        ));
    }
    let mut hash = None;
    let mut range = None;
    for e in arr {
        let name = req_str(e, "AttributeName")?.to_string();
        if name.is_empty() || name.len() > 255 {
            return Err(DdbError::validation(
                "One or more parameter values were invalid: Invalid KeySchema: attribute name length must be between 1 and 255",
            ));
        }
        match req_str(e, "KeyType")? {
            "HASH" if hash.is_none() => hash = Some(name),
            "RANGE" if range.is_none() => range = Some(name),
            "HASH" | "RANGE" => {
                return Err(DdbError::validation(
                    "Invalid KeySchema: Some index key attribute have no definition",
                ));
            }
            other => {
                return Err(constraint(
                    other,
                    "keySchema.member.keyType",
                    "Member must satisfy enum value set: [HASH, RANGE]",
                ));
            }
        }
    }
    let Some(hash) = hash else {
        return Err(DdbError::validation(
            "Invalid KeySchema: The first KeySchemaElement is not a HASH key type",
        ));
    };
    if arr
        .first()
        .and_then(|e| e.get("KeyType"))
        .and_then(Value::as_str)
        != Some("HASH")
    {
        return Err(DdbError::validation(
            "Invalid KeySchema: The first KeySchemaElement is not a HASH key type",
        ));
    }
    if range.as_deref() == Some(hash.as_str()) {
        return Err(DdbError::validation(
            "Both the Hash Key and the Range Key element in the KeySchema have the same name",
        ));
    }
    Ok(KeySchema { hash, range })
}

fn key_schema_json(k: &KeySchema) -> Value {
    let mut v = vec![json!({"AttributeName": k.hash, "KeyType": "HASH"})];
    if let Some(r) = &k.range {
        v.push(json!({"AttributeName": r, "KeyType": "RANGE"}));
    }
    Value::Array(v)
}

fn throughput(v: Option<&Value>) -> Result<Option<Throughput>, DdbError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let r = opt_u64(v, "ReadCapacityUnits")?;
            let w = opt_u64(v, "WriteCapacityUnits")?;
            match (r, w) {
                (Some(r), Some(w)) => {
                    if r == 0 || w == 0 {
                        return Err(DdbError::validation(
                            "One or more parameter values were invalid: Each of ReadCapacityUnits and WriteCapacityUnits must be greater than or equal to 1",
                        ));
                    }
                    Ok(Some(Throughput { read: r, write: w }))
                }
                _ => Err(DdbError::validation(
                    "One or more parameter values were invalid: ReadCapacityUnits and WriteCapacityUnits must both be specified",
                )),
            }
        }
    }
}

fn projection(v: Option<&Value>, index: &str) -> Result<Projection, DdbError> {
    let Some(v) = v else {
        return Err(DdbError::validation(format!(
            "One or more parameter values were invalid: Projection must be specified for index: {index}"
        )));
    };
    let kind = opt_str(v, "ProjectionType")?.unwrap_or("ALL").to_string();
    let non_key: Vec<String> = match v.get("NonKeyAttributes") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| DdbError::serialization("NonKeyAttributes must be strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(DdbError::serialization("NonKeyAttributes must be a list")),
    };
    match kind.as_str() {
        "ALL" | "KEYS_ONLY" => {
            if !non_key.is_empty() {
                return Err(DdbError::validation(format!(
                    "One or more parameter values were invalid: ProjectionType is {kind}, but NonKeyAttributes is specified"
                )));
            }
        }
        "INCLUDE" => {
            if non_key.is_empty() {
                return Err(DdbError::validation(
                    "One or more parameter values were invalid: ProjectionType is INCLUDE, but NonKeyAttributes is not specified",
                ));
            }
        }
        other => {
            return Err(constraint(
                other,
                "projection.projectionType",
                "Member must satisfy enum value set: [ALL, INCLUDE, KEYS_ONLY]",
            ));
        }
    }
    Ok(Projection { kind, non_key })
}

fn index_def(v: &Value, global: bool, provisioned: bool) -> Result<IndexDef, DdbError> {
    let name = req_str(v, "IndexName")?.to_string();
    validate_table_name(&name, "indexName")?;
    let key = key_schema(v.get("KeySchema").unwrap_or(&Value::Null), "KeySchema")?;
    let projection = projection(v.get("Projection"), &name)?;
    let tp = throughput(v.get("ProvisionedThroughput"))?;
    if global && provisioned && tp.is_none() {
        return Err(DdbError::validation(format!(
            "One or more parameter values were invalid: ProvisionedThroughput must be specified for index: {name}"
        )));
    }
    if global && !provisioned && tp.is_some() {
        return Err(DdbError::validation(format!(
            "One or more parameter values were invalid: ProvisionedThroughput should not be specified for index: {name} when BillingMode is PAY_PER_REQUEST"
        )));
    }
    Ok(IndexDef {
        name,
        key,
        projection,
        throughput: if global { tp } else { None },
    })
}

fn tags_from(v: Option<&Value>) -> Result<Vec<(String, String)>, DdbError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|t| {
                let k = req_str(t, "Key")?;
                let v = req_str(t, "Value")?;
                if k.is_empty() || k.len() > 128 {
                    return Err(constraint(
                        k,
                        "tags.member.key",
                        "Member must have length less than or equal to 128",
                    ));
                }
                if v.len() > 256 {
                    return Err(constraint(
                        v,
                        "tags.member.value",
                        "Member must have length less than or equal to 256",
                    ));
                }
                if k.starts_with("aws:") {
                    return Err(DdbError::validation(
                        "User-defined tag keys must not start with aws:",
                    ));
                }
                Ok((k.to_string(), v.to_string()))
            })
            .collect(),
        Some(_) => Err(DdbError::serialization("Tags must be a list")),
    }
}

fn create_table(
    res: &mut DynamoScope,
    scope: &Scope,
    body: &Value,
    now: f64,
) -> Result<Value, DdbError> {
    let name = table_name(body)?.to_string();
    let key = key_schema(
        body.get("KeySchema").ok_or_else(|| {
            DdbError::validation(
                "1 validation error detected: Value null at 'keySchema' failed to satisfy constraint: Member must not be null",
            )
        })?,
        "KeySchema",
    )?;
    let defs: Vec<(String, String)> = match body.get("AttributeDefinitions") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|d| {
                let n = req_str(d, "AttributeName")?.to_string();
                let t = req_str(d, "AttributeType")?.to_string();
                if !matches!(t.as_str(), "S" | "N" | "B") {
                    return Err(constraint(
                        &t,
                        "attributeDefinitions.member.attributeType",
                        "Member must satisfy enum value set: [B, N, S]",
                    ));
                }
                Ok((n, t))
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(DdbError::validation(
                "1 validation error detected: Value null at 'attributeDefinitions' failed to satisfy constraint: Member must not be null",
            ));
        }
    };
    let mut seen = BTreeSet::new();
    for (n, _) in &defs {
        if !seen.insert(n.clone()) {
            return Err(DdbError::validation(format!(
                "Cannot have two attributes with the same name; attribute name: {n}"
            )));
        }
    }
    let billing = opt_str(body, "BillingMode")?
        .unwrap_or("PROVISIONED")
        .to_string();
    let tp = throughput(body.get("ProvisionedThroughput"))?;
    let provisioned = match billing.as_str() {
        "PROVISIONED" => {
            if tp.is_none() {
                return Err(DdbError::validation(
                    "One or more parameter values were invalid: ReadCapacityUnits and WriteCapacityUnits must both be specified when BillingMode is PROVISIONED",
                ));
            }
            true
        }
        "PAY_PER_REQUEST" => {
            if tp.is_some() {
                return Err(DdbError::validation(
                    "One or more parameter values were invalid: Neither ReadCapacityUnits nor WriteCapacityUnits can be specified when BillingMode is PAY_PER_REQUEST",
                ));
            }
            false
        }
        other => {
            return Err(constraint(
                other,
                "billingMode",
                "Member must satisfy enum value set: [PROVISIONED, PAY_PER_REQUEST]",
            ));
        }
    };
    let list = |field: &str| -> Vec<Value> {
        body.get(field)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let lsis = list("LocalSecondaryIndexes")
        .iter()
        .map(|v| index_def(v, false, provisioned))
        .collect::<Result<Vec<_>, _>>()?;
    let gsis = list("GlobalSecondaryIndexes")
        .iter()
        .map(|v| index_def(v, true, provisioned))
        .collect::<Result<Vec<_>, _>>()?;
    if body
        .get("LocalSecondaryIndexes")
        .is_some_and(|v| v.as_array().is_some_and(Vec::is_empty))
    {
        return Err(DdbError::validation(
            "One or more parameter values were invalid: List of LocalSecondaryIndexes is empty",
        ));
    }
    if body
        .get("GlobalSecondaryIndexes")
        .is_some_and(|v| v.as_array().is_some_and(Vec::is_empty))
    {
        return Err(DdbError::validation(
            "One or more parameter values were invalid: List of GlobalSecondaryIndexes is empty",
        ));
    }
    if lsis.len() > 5 {
        return Err(DdbError::new(
            "LimitExceededException",
            "One or more parameter values were invalid: Number of LocalSecondaryIndexes exceeds per-table limit of 5",
        ));
    }
    if gsis.len() > 20 {
        return Err(DdbError::new(
            "LimitExceededException",
            "One or more parameter values were invalid: GlobalSecondaryIndex count exceeds the per-table limit of 20",
        ));
    }
    let mut names = BTreeSet::new();
    for idx in lsis.iter().chain(&gsis) {
        if !names.insert(idx.name.clone()) {
            return Err(DdbError::validation(format!(
                "One or more parameter values were invalid: Duplicate index name: {}",
                idx.name
            )));
        }
    }
    for idx in &lsis {
        let Some(_) = &key.range else {
            return Err(DdbError::validation(
                "One or more parameter values were invalid: Table KeySchema does not have a range key, which is required when specifying a LocalSecondaryIndex",
            ));
        };
        if idx.key.hash != key.hash || idx.key.range.is_none() {
            return Err(DdbError::validation(format!(
                "One or more parameter values were invalid: Index KeySchema does not have the same leading hash key as table KeySchema for index: {}. index hash key: {}, table hash key: {}",
                idx.name, idx.key.hash, key.hash
            )));
        }
    }
    // Attribute definitions must be exactly the key attributes of the table and indexes.
    let mut used: BTreeSet<String> = BTreeSet::new();
    used.insert(key.hash.clone());
    used.extend(key.range.clone());
    for idx in lsis.iter().chain(&gsis) {
        used.insert(idx.key.hash.clone());
        used.extend(idx.key.range.clone());
    }
    let defined: BTreeSet<String> = defs.iter().map(|(n, _)| n.clone()).collect();
    if used != defined {
        let missing: Vec<&String> = used.difference(&defined).collect();
        if !missing.is_empty() {
            return Err(DdbError::validation(format!(
                "One or more parameter values were invalid: Some index key attributes are not defined in AttributeDefinitions. Keys: [{}], AttributeDefinitions: [{}]",
                used.iter().cloned().collect::<Vec<_>>().join(", "),
                defs.iter()
                    .map(|(n, _)| n.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        return Err(DdbError::validation(
            "One or more parameter values were invalid: Number of attributes in KeySchema does not exactly match number of attributes defined in AttributeDefinitions",
        ));
    }
    if res.tables.contains_key(&name) {
        return Err(DdbError::new(
            "ResourceInUseException",
            format!("Table already exists: {name}"),
        ));
    }
    let tags = tags_from(body.get("Tags"))?;
    let mut t = Table {
        name: name.clone(),
        table_id: uuid::Uuid::new_v4().to_string(),
        created: now,
        key,
        attribute_definitions: defs,
        billing_mode: billing,
        throughput: tp,
        local_indexes: lsis,
        global_indexes: gsis,
        ttl: None,
        tags: tags.into_iter().collect(),
        deletion_protection: opt_bool(body, "DeletionProtectionEnabled")?.unwrap_or(false),
        items: Default::default(),
        indexes: Default::default(),
        size_bytes: 0,
    };
    t.rebuild_indexes();
    tracing::info!(table = %name, scope = %scope, "created table");
    let d = describe(&t, scope, "ACTIVE");
    res.tables.insert(name, t);
    Ok(json!({ "TableDescription": d }))
}

fn throughput_json(t: Option<&Throughput>) -> Value {
    let (r, w) = t.map_or((0, 0), |t| (t.read, t.write));
    json!({"ReadCapacityUnits": r, "WriteCapacityUnits": w, "NumberOfDecreasesToday": 0})
}

fn projection_json(p: &Projection) -> Value {
    let mut v = json!({"ProjectionType": p.kind});
    if !p.non_key.is_empty() {
        v["NonKeyAttributes"] = json!(p.non_key);
    }
    v
}

/// The `TableDescription` structure.
pub fn describe(t: &Table, scope: &Scope, status: &str) -> Value {
    let arn = t.arn(scope);
    let mut d = json!({
        "TableName": t.name,
        "TableArn": arn,
        "TableId": t.table_id,
        "TableStatus": status,
        "CreationDateTime": t.created,
        "KeySchema": key_schema_json(&t.key),
        "AttributeDefinitions": t.attribute_definitions.iter()
            .map(|(n, ty)| json!({"AttributeName": n, "AttributeType": ty})).collect::<Vec<_>>(),
        "ProvisionedThroughput": throughput_json(t.throughput.as_ref()),
        "ItemCount": t.items.len(),
        "TableSizeBytes": t.size_bytes,
        "DeletionProtectionEnabled": t.deletion_protection,
    });
    if t.billing_mode == "PAY_PER_REQUEST" {
        d["BillingModeSummary"] = json!({
            "BillingMode": "PAY_PER_REQUEST",
            "LastUpdateToPayPerRequestDateTime": t.created,
        });
    }
    let idx_json = |i: &IndexDef, global: bool| {
        let entries = t.index_entries(&i.name);
        let count = entries.map_or(0, |e| e.len());
        let size: u64 = entries.map_or(0, |e| {
            e.keys()
                .filter_map(|k| t.items.get(&k.pk))
                .map(|it| it.size() as u64)
                .sum()
        });
        let mut v = json!({
            "IndexName": i.name,
            "KeySchema": key_schema_json(&i.key),
            "Projection": projection_json(&i.projection),
            "IndexSizeBytes": size,
            "ItemCount": count,
            "IndexArn": format!("{arn}/index/{}", i.name),
        });
        if global {
            v["IndexStatus"] = json!("ACTIVE");
            v["ProvisionedThroughput"] = throughput_json(i.throughput.as_ref());
        }
        v
    };
    if !t.local_indexes.is_empty() {
        d["LocalSecondaryIndexes"] =
            Value::Array(t.local_indexes.iter().map(|i| idx_json(i, false)).collect());
    }
    if !t.global_indexes.is_empty() {
        d["GlobalSecondaryIndexes"] =
            Value::Array(t.global_indexes.iter().map(|i| idx_json(i, true)).collect());
    }
    d
}

fn update_table(res: &mut DynamoScope, scope: &Scope, body: &Value) -> Result<Value, DdbError> {
    let name = table_name(body)?.to_string();
    let t = res
        .tables
        .get_mut(&name)
        .ok_or_else(|| DdbError::table_not_found(&name))?;
    let mut changed = false;
    if let Some(Value::Array(defs)) = body.get("AttributeDefinitions") {
        for d in defs {
            let n = req_str(d, "AttributeName")?.to_string();
            let ty = req_str(d, "AttributeType")?.to_string();
            match t.attr_type(&n) {
                Some(existing) if existing != ty => {
                    return Err(DdbError::validation(format!(
                        "One or more parameter values were invalid: Attribute {n} is already defined with type {existing}"
                    )));
                }
                Some(_) => {}
                None => t.attribute_definitions.push((n, ty)),
            }
        }
    }
    if let Some(b) = opt_str(body, "BillingMode")? {
        match b {
            "PROVISIONED" | "PAY_PER_REQUEST" => {
                t.billing_mode = b.to_string();
                changed = true;
            }
            other => {
                return Err(constraint(
                    other,
                    "billingMode",
                    "Member must satisfy enum value set: [PROVISIONED, PAY_PER_REQUEST]",
                ));
            }
        }
    }
    if let Some(tp) = throughput(body.get("ProvisionedThroughput"))? {
        if t.billing_mode == "PAY_PER_REQUEST" {
            return Err(DdbError::validation(
                "One or more parameter values were invalid: Neither ReadCapacityUnits nor WriteCapacityUnits can be specified when BillingMode is PAY_PER_REQUEST",
            ));
        }
        t.throughput = Some(tp);
        changed = true;
    } else if t.billing_mode == "PAY_PER_REQUEST" {
        t.throughput = None;
    } else if t.throughput.is_none() {
        return Err(DdbError::validation(
            "One or more parameter values were invalid: ProvisionedThroughput must be specified when BillingMode is PROVISIONED",
        ));
    }
    if let Some(dp) = opt_bool(body, "DeletionProtectionEnabled")? {
        t.deletion_protection = dp;
        changed = true;
    }
    let provisioned = t.billing_mode == "PROVISIONED";
    if let Some(Value::Array(updates)) = body.get("GlobalSecondaryIndexUpdates") {
        if updates.len() > 1 {
            return Err(DdbError::new(
                "LimitExceededException",
                "Subscriber limit exceeded: Only 1 online index can be created or deleted simultaneously per table",
            ));
        }
        for u in updates {
            if let Some(c) = u.get("Create") {
                let idx = index_def(c, true, provisioned)?;
                if t.index(&idx.name).is_some() {
                    return Err(DdbError::validation(format!(
                        "One or more parameter values were invalid: Index with name: {} already exists",
                        idx.name
                    )));
                }
                for k in std::iter::once(&idx.key.hash).chain(idx.key.range.iter()) {
                    if t.attr_type(k).is_none() {
                        return Err(DdbError::validation(format!(
                            "One or more parameter values were invalid: Some index key attributes are not defined in AttributeDefinitions. Keys: [{k}]"
                        )));
                    }
                }
                if t.global_indexes.len() >= 20 {
                    return Err(DdbError::new(
                        "LimitExceededException",
                        "GlobalSecondaryIndex count exceeds the per-table limit of 20",
                    ));
                }
                tracing::info!(table = %name, index = %idx.name, "creating GSI");
                t.global_indexes.push(idx);
                t.rebuild_indexes();
                changed = true;
            } else if let Some(d) = u.get("Delete") {
                let iname = req_str(d, "IndexName")?;
                let before = t.global_indexes.len();
                t.global_indexes.retain(|i| i.name != iname);
                if t.global_indexes.len() == before {
                    return Err(DdbError::new(
                        "ResourceNotFoundException",
                        format!("Requested resource not found: Index: {iname} not found"),
                    ));
                }
                t.drop_index(iname);
                changed = true;
            } else if let Some(up) = u.get("Update") {
                let iname = req_str(up, "IndexName")?;
                let tp = throughput(up.get("ProvisionedThroughput"))?;
                let idx = t
                    .global_indexes
                    .iter_mut()
                    .find(|i| i.name == iname)
                    .ok_or_else(|| {
                        DdbError::new(
                            "ResourceNotFoundException",
                            format!("Requested resource not found: Index: {iname} not found"),
                        )
                    })?;
                idx.throughput = tp;
                changed = true;
            }
        }
    }
    if !changed {
        return Err(DdbError::validation(
            "At least one of ProvisionedThroughput, BillingMode, UpdateStreamEnabled, GlobalSecondaryIndexUpdates or SSESpecification or ReplicaUpdates is required",
        ));
    }
    // Drop definitions no key uses any more (a deleted GSI's attributes).
    let mut used: BTreeSet<String> = BTreeSet::new();
    used.insert(t.key.hash.clone());
    used.extend(t.key.range.clone());
    for i in t.all_indexes() {
        used.insert(i.key.hash.clone());
        used.extend(i.key.range.clone());
    }
    t.attribute_definitions.retain(|(n, _)| used.contains(n));
    Ok(json!({ "TableDescription": describe(t, scope, "ACTIVE") }))
}

fn delete_table(res: &mut DynamoScope, scope: &Scope, body: &Value) -> Result<Value, DdbError> {
    let name = table_name(body)?.to_string();
    let t = res
        .tables
        .get(&name)
        .ok_or_else(|| DdbError::table_not_found(&name))?;
    if t.deletion_protection {
        return Err(DdbError::validation(
            "Resource cannot be deleted as it is currently protected against deletion. Disable deletion protection first.",
        ));
    }
    let d = describe(t, scope, "DELETING");
    res.tables.remove(&name);
    tracing::info!(table = %name, scope = %scope, "deleted table");
    Ok(json!({ "TableDescription": d }))
}

fn list_tables(res: &DynamoScope, body: &Value) -> Result<Value, DdbError> {
    let limit = opt_u64(body, "Limit")?.unwrap_or(100);
    if !(1..=100).contains(&limit) {
        return Err(constraint(
            limit,
            "limit",
            "Member must have value less than or equal to 100",
        ));
    }
    let start = opt_str(body, "ExclusiveStartTableName")?;
    let lo = match start {
        Some(s) => Bound::Excluded(s.to_string()),
        None => Bound::Unbounded,
    };
    let mut names: Vec<&String> = res
        .tables
        .range((lo, Bound::Unbounded))
        .map(|(k, _)| k)
        .take(limit as usize + 1)
        .collect();
    let more = names.len() > limit as usize;
    names.truncate(limit as usize);
    let mut out = json!({ "TableNames": names });
    if more && let Some(last) = names.last() {
        out["LastEvaluatedTableName"] = json!(last);
    }
    Ok(out)
}

// ------------------------------------------------------------------------------------------
// Items
// ------------------------------------------------------------------------------------------

/// A parsed PutItem (also a transaction's or batch's Put).
struct PutReq {
    table: String,
    item: BTreeMap<String, AttrValue>,
    cond: Option<Cond>,
    return_old: bool,
}

fn parse_put(body: &Value, item_field: &str) -> Result<PutReq, DdbError> {
    refuse_legacy(body, &["Expected", "ConditionalOperator"])?;
    let table = table_name(body)?.to_string();
    let item = attr_map(body, item_field)?;
    let mut ph = placeholders(body)?;
    let cond = opt_condition(body, "ConditionExpression", Kind::Condition, &mut ph)?;
    finish_placeholders(&ph, cond.is_some())?;
    Ok(PutReq {
        table,
        item,
        cond,
        return_old: return_old_on_failure(body)?,
    })
}

fn do_put(res: &mut DynamoScope, r: PutReq) -> Result<Option<Item>, DdbError> {
    let t = table_mut(res, &r.table)?;
    let pk = t.validate_item(&r.item)?;
    let old = t.items.get(&pk).cloned();
    check_condition(r.cond.as_ref(), old.as_ref(), r.return_old)?;
    t.put(pk, Item::new(r.item));
    Ok(old)
}

fn put_item(res: &mut DynamoScope, body: &Value) -> Result<Value, DdbError> {
    let rv = return_values(body, &["NONE", "ALL_OLD"])?;
    let r = parse_put(body, "Item")?;
    let old = do_put(res, r)?;
    Ok(match (rv, old) {
        (ReturnValues::AllOld, Some(o)) => json!({ "Attributes": o.to_json() }),
        _ => json!({}),
    })
}

struct DeleteReq {
    table: String,
    key: BTreeMap<String, AttrValue>,
    cond: Option<Cond>,
    return_old: bool,
}

fn parse_delete(body: &Value) -> Result<DeleteReq, DdbError> {
    refuse_legacy(body, &["Expected", "ConditionalOperator"])?;
    let table = table_name(body)?.to_string();
    let key = attr_map(body, "Key")?;
    let mut ph = placeholders(body)?;
    let cond = opt_condition(body, "ConditionExpression", Kind::Condition, &mut ph)?;
    finish_placeholders(&ph, cond.is_some())?;
    Ok(DeleteReq {
        table,
        key,
        cond,
        return_old: return_old_on_failure(body)?,
    })
}

fn do_delete(res: &mut DynamoScope, r: DeleteReq) -> Result<Option<Item>, DdbError> {
    let t = table_mut(res, &r.table)?;
    let pk = t.validate_key(&r.key)?;
    let old = t.items.get(&pk).cloned();
    check_condition(r.cond.as_ref(), old.as_ref(), r.return_old)?;
    t.delete(&pk);
    Ok(old)
}

fn delete_item(res: &mut DynamoScope, body: &Value) -> Result<Value, DdbError> {
    let rv = return_values(body, &["NONE", "ALL_OLD"])?;
    let r = parse_delete(body)?;
    let old = do_delete(res, r)?;
    Ok(match (rv, old) {
        (ReturnValues::AllOld, Some(o)) => json!({ "Attributes": o.to_json() }),
        _ => json!({}),
    })
}

struct UpdateReq {
    table: String,
    key: BTreeMap<String, AttrValue>,
    actions: Vec<Action>,
    cond: Option<Cond>,
    return_old: bool,
}

fn parse_update(body: &Value) -> Result<UpdateReq, DdbError> {
    refuse_legacy(
        body,
        &["Expected", "ConditionalOperator", "AttributeUpdates"],
    )?;
    let table = table_name(body)?.to_string();
    let key = attr_map(body, "Key")?;
    let mut ph = placeholders(body)?;
    let actions = match opt_str(body, "UpdateExpression")? {
        Some(s) => expr::parse_update(s, &mut ph)?,
        None => Vec::new(),
    };
    let cond = opt_condition(body, "ConditionExpression", Kind::Condition, &mut ph)?;
    finish_placeholders(
        &ph,
        cond.is_some() || body.get("UpdateExpression").is_some(),
    )?;
    Ok(UpdateReq {
        table,
        key,
        actions,
        cond,
        return_old: return_old_on_failure(body)?,
    })
}

/// Returns (old item, new item).
fn do_update(res: &mut DynamoScope, r: UpdateReq) -> Result<(Option<Item>, Item), DdbError> {
    let t = table_mut(res, &r.table)?;
    let pk = t.validate_key(&r.key)?;
    for name in expr::touched_attributes(&r.actions) {
        if name == t.key.hash || t.key.range.as_deref() == Some(name.as_str()) {
            return Err(DdbError::validation(format!(
                "One or more parameter values were invalid: Cannot update attribute {name}. This attribute is part of the key"
            )));
        }
    }
    let old = t.items.get(&pk).cloned();
    check_condition(r.cond.as_ref(), old.as_ref(), r.return_old)?;
    let mut attrs = match &old {
        Some(o) => o.attrs().clone(),
        None => r.key.clone(),
    };
    expr::apply_update(&mut attrs, &r.actions)?;
    t.validate_item(&attrs)?;
    let new = Item::new(attrs);
    t.put(pk, new.clone());
    Ok((old, new))
}

fn update_item(res: &mut DynamoScope, body: &Value) -> Result<Value, DdbError> {
    let rv = return_values(
        body,
        &["NONE", "ALL_OLD", "UPDATED_OLD", "ALL_NEW", "UPDATED_NEW"],
    )?;
    let r = parse_update(body)?;
    let touched = expr::touched_attributes(&r.actions);
    let (old, new) = do_update(res, r)?;
    let pick = |i: &Item| -> Value {
        let m: BTreeMap<String, AttrValue> = i
            .attrs()
            .iter()
            .filter(|(k, _)| touched.contains(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        attrs_to_json(&m)
    };
    let attrs = match rv {
        ReturnValues::None => None,
        ReturnValues::AllOld => old.as_ref().map(Item::to_json),
        ReturnValues::UpdatedOld => old.as_ref().map(pick),
        ReturnValues::AllNew => Some(new.to_json()),
        ReturnValues::UpdatedNew => Some(pick(&new)),
    };
    Ok(match attrs {
        Some(a) if a.as_object().is_some_and(|m| !m.is_empty()) => json!({ "Attributes": a }),
        _ => json!({}),
    })
}

struct GetReq {
    key: BTreeMap<String, AttrValue>,
    projection: Option<Vec<Path>>,
}

fn parse_get(body: &Value) -> Result<GetReq, DdbError> {
    refuse_legacy(body, &["AttributesToGet"])?;
    let key = attr_map(body, "Key")?;
    let mut ph = placeholders(body)?;
    let projection = opt_projection(body, &mut ph)?;
    finish_placeholders(&ph, projection.is_some())?;
    Ok(GetReq { key, projection })
}

fn projected(item: &Item, projection: Option<&Vec<Path>>) -> Value {
    match projection {
        Some(p) => attrs_to_json(&expr::project(item.attrs(), p)),
        None => item.to_json(),
    }
}

fn get_item(res: &DynamoScope, body: &Value) -> Result<Value, DdbError> {
    let n = table_name(body)?;
    let r = parse_get(body)?;
    let t = table_named(res, n)?;
    let pk = t.validate_key(&r.key)?;
    Ok(match t.items.get(&pk) {
        Some(item) => json!({ "Item": projected(item, r.projection.as_ref()) }),
        None => json!({}),
    })
}

// ------------------------------------------------------------------------------------------
// Query and Scan
// ------------------------------------------------------------------------------------------

/// What a Query or Scan reads: the table itself or one of its indexes.
struct Source<'a> {
    table: &'a Table,
    index: Option<(&'a IndexDef, bool)>,
}

impl<'a> Source<'a> {
    fn key(&self) -> &KeySchema {
        match self.index {
            Some((i, _)) => &i.key,
            None => &self.table.key,
        }
    }

    /// The attributes an index holds for an item.
    fn index_view(&self, item: &Item) -> Item {
        let Some((idx, _)) = self.index else {
            return item.clone();
        };
        if idx.projection.kind == "ALL" {
            return item.clone();
        }
        let mut keep: BTreeSet<&str> = BTreeSet::new();
        keep.insert(&self.table.key.hash);
        keep.extend(self.table.key.range.as_deref());
        keep.insert(&idx.key.hash);
        keep.extend(idx.key.range.as_deref());
        keep.extend(idx.projection.non_key.iter().map(String::as_str));
        Item::new(
            item.attrs()
                .iter()
                .filter(|(k, _)| keep.contains(k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    }

    /// `LastEvaluatedKey` for an item: table key plus index key attributes.
    fn last_key(&self, item: &Item) -> Value {
        let mut names = vec![self.table.key.hash.as_str()];
        names.extend(self.table.key.range.as_deref());
        if let Some((i, _)) = self.index {
            names.push(&i.key.hash);
            names.extend(i.key.range.as_deref());
        }
        let m: BTreeMap<String, AttrValue> = names
            .into_iter()
            .filter_map(|n| item.get(n).map(|v| (n.to_string(), v.clone())))
            .collect();
        attrs_to_json(&m)
    }

    /// Parses `ExclusiveStartKey` into the position to continue after.
    fn start_after(&self, body: &Value) -> Result<Option<Pos>, DdbError> {
        let Some(v) = body.get("ExclusiveStartKey").filter(|v| !v.is_null()) else {
            return Ok(None);
        };
        let attrs = attrs_from_json(v)?;
        let bad = || {
            DdbError::validation(
                "The provided starting key is invalid: The provided key element does not match the schema",
            )
        };
        let kv = |n: &str| -> Result<KeyVal, DdbError> {
            attrs.get(n).and_then(KeyVal::from_attr).ok_or_else(bad)
        };
        let pk = ItemKey {
            hash: kv(&self.table.key.hash)?,
            range: match &self.table.key.range {
                Some(r) => Some(kv(r)?),
                None => None,
            },
        };
        Ok(Some(match self.index {
            None => {
                if attrs.len() != 1 + usize::from(self.table.key.range.is_some()) {
                    return Err(bad());
                }
                Pos::Table(pk)
            }
            Some((i, _)) => Pos::Index(IndexKey {
                hash: kv(&i.key.hash)?,
                range: match &i.key.range {
                    Some(r) => Some(kv(r)?),
                    None => None,
                },
                pk,
            }),
        }))
    }

    /// Items in key order between `lo` and `hi` (range-key values; `None` = open),
    /// restricted to partition `hash` when given, continuing after `after`.
    fn iter(
        &self,
        hash: Option<KeyVal>,
        lo: Option<KeyVal>,
        hi: Option<KeyVal>,
        after: Option<Pos>,
        forward: bool,
    ) -> Box<dyn Iterator<Item = &'a Item> + 'a> {
        let table = self.table;
        match self.index {
            None => {
                let has_range = table.key.range.is_some();
                let (mut l, mut h) = match &hash {
                    Some(hk) => (
                        Bound::Included(ItemKey {
                            hash: hk.clone(),
                            range: has_range.then(|| lo.unwrap_or(KeyVal::MIN)),
                        }),
                        Bound::Included(ItemKey {
                            hash: hk.clone(),
                            range: has_range.then(|| hi.unwrap_or(KeyVal::MAX)),
                        }),
                    ),
                    None => (Bound::Unbounded, Bound::Unbounded),
                };
                if let Some(Pos::Table(k)) = after {
                    if forward {
                        l = tighter_lo(l, k);
                    } else {
                        h = tighter_hi(h, k);
                    }
                }
                Box::new(range_iter(&table.items, l, h, forward).map(|(_, v)| v))
            }
            Some((idx, _)) => {
                let Some(set) = table.index_entries(&idx.name) else {
                    return Box::new(std::iter::empty());
                };
                let has_range = idx.key.range.is_some();
                let (mut l, mut h) = match &hash {
                    Some(hk) => (
                        Bound::Included(IndexKey {
                            hash: hk.clone(),
                            range: has_range.then(|| lo.unwrap_or(KeyVal::MIN)),
                            pk: ItemKey::MIN,
                        }),
                        Bound::Included(IndexKey {
                            hash: hk.clone(),
                            range: has_range.then(|| hi.unwrap_or(KeyVal::MAX)),
                            pk: ItemKey::MAX,
                        }),
                    ),
                    None => (Bound::Unbounded, Bound::Unbounded),
                };
                if let Some(Pos::Index(k)) = after {
                    if forward {
                        l = tighter_lo(l, k);
                    } else {
                        h = tighter_hi(h, k);
                    }
                }
                Box::new(
                    range_iter(set, l, h, forward).filter_map(move |(k, _)| table.items.get(&k.pk)),
                )
            }
        }
    }
}

enum Pos {
    Table(ItemKey),
    Index(IndexKey),
}

fn tighter_lo<K: Ord>(l: Bound<K>, after: K) -> Bound<K> {
    match l {
        Bound::Included(x) | Bound::Excluded(x) if x > after => Bound::Included(x),
        _ => Bound::Excluded(after),
    }
}

fn tighter_hi<K: Ord>(h: Bound<K>, after: K) -> Bound<K> {
    match h {
        Bound::Included(x) | Bound::Excluded(x) if x < after => Bound::Included(x),
        _ => Bound::Excluded(after),
    }
}

fn source<'a>(res: &'a DynamoScope, body: &Value) -> Result<Source<'a>, DdbError> {
    let n = table_name(body)?;
    let table = table_named(res, n)?;
    let index = match opt_str(body, "IndexName")? {
        Some(i) => Some(table.index(i).ok_or_else(|| {
            DdbError::validation(format!("The table does not have the specified index: {i}"))
        })?),
        None => None,
    };
    if let Some((_, true)) = index
        && opt_bool(body, "ConsistentRead")? == Some(true)
    {
        return Err(DdbError::validation(
            "Consistent reads are not supported on global secondary indexes",
        ));
    }
    Ok(Source { table, index })
}

/// Options shared by Query and Scan.
struct ReadOpts {
    filter: Option<Cond>,
    projection: Option<Vec<Path>>,
    limit: Option<usize>,
    count_only: bool,
}

fn read_opts(body: &Value, ph: &mut Placeholders) -> Result<ReadOpts, DdbError> {
    refuse_legacy(
        body,
        &[
            "AttributesToGet",
            "QueryFilter",
            "ScanFilter",
            "ConditionalOperator",
            "KeyConditions",
        ],
    )?;
    let filter = opt_condition(body, "FilterExpression", Kind::Filter, ph)?;
    let projection = opt_projection(body, ph)?;
    let limit = match opt_u64(body, "Limit")? {
        Some(0) => {
            return Err(constraint(
                0,
                "limit",
                "Member must have value greater than or equal to 1",
            ));
        }
        Some(n) => Some(n as usize),
        None => None,
    };
    let select = opt_str(body, "Select")?;
    let count_only = match select {
        None | Some("ALL_ATTRIBUTES") | Some("ALL_PROJECTED_ATTRIBUTES") => false,
        Some("COUNT") => true,
        Some("SPECIFIC_ATTRIBUTES") => {
            if projection.is_none() {
                return Err(DdbError::validation(
                    "1 validation error detected: Value SPECIFIC_ATTRIBUTES requires ProjectionExpression or AttributesToGet",
                ));
            }
            false
        }
        Some(other) => {
            return Err(constraint(
                other,
                "select",
                "Member must satisfy enum value set: [SPECIFIC_ATTRIBUTES, COUNT, ALL_ATTRIBUTES, ALL_PROJECTED_ATTRIBUTES]",
            ));
        }
    };
    if projection.is_some() && select.is_some_and(|s| s != "SPECIFIC_ATTRIBUTES") {
        return Err(DdbError::validation(format!(
            "Cannot specify the ProjectionExpression when choosing to get {}",
            select.unwrap_or_default()
        )));
    }
    Ok(ReadOpts {
        filter,
        projection,
        limit,
        count_only,
    })
}

fn collect_page<'a>(
    src: &Source<'a>,
    it: impl Iterator<Item = &'a Item>,
    keep: impl Fn(&Item) -> bool,
    opts: &ReadOpts,
) -> Value {
    let mut items = Vec::new();
    let mut scanned = 0usize;
    let mut count = 0usize;
    let mut bytes = 0usize;
    let mut last: Option<Value> = None;
    let mut it = it.filter(|i| keep(i)).peekable();
    while let Some(item) = it.next() {
        scanned += 1;
        bytes += item.size();
        let view = src.index_view(item);
        if opts
            .filter
            .as_ref()
            .is_none_or(|f| expr::eval_condition(f, Some(view.attrs())))
        {
            count += 1;
            if !opts.count_only {
                items.push(projected(&view, opts.projection.as_ref()));
            }
        }
        let at_limit = opts.limit.is_some_and(|l| scanned >= l);
        // DynamoDB reports a LastEvaluatedKey whenever Limit stopped the read, and when the
        // 1 MB page size did with more items left.
        if at_limit || (bytes >= MAX_PAGE_BYTES && it.peek().is_some()) {
            last = Some(src.last_key(item));
            break;
        }
    }
    let mut out = json!({ "Count": count, "ScannedCount": scanned });
    if !opts.count_only {
        out["Items"] = Value::Array(items);
    }
    if let Some(l) = last {
        out["LastEvaluatedKey"] = l;
    }
    out
}

fn filter_uses_keys(filter: &Cond, keys: &[&str]) -> Option<String> {
    fn paths(c: &Cond, out: &mut Vec<String>) {
        use expr::Operand as O;
        let op = |o: &O, out: &mut Vec<String>| match o {
            O::Path(p) | O::Size(p) => {
                if let Some(expr::PathElem::Attr(a)) = p.first() {
                    out.push(a.clone());
                }
            }
            _ => {}
        };
        match c {
            Cond::And(a, b) | Cond::Or(a, b) => {
                paths(a, out);
                paths(b, out);
            }
            Cond::Not(a) => paths(a, out),
            Cond::Cmp(a, _, b) | Cond::BeginsWith(a, b) | Cond::Contains(a, b) => {
                op(a, out);
                op(b, out);
            }
            Cond::Between(a, b, d) => {
                op(a, out);
                op(b, out);
                op(d, out);
            }
            Cond::In(a, l) => {
                op(a, out);
                for x in l {
                    op(x, out);
                }
            }
            Cond::Exists(p) | Cond::NotExists(p) | Cond::AttrType(p, _) => {
                if let Some(expr::PathElem::Attr(a)) = p.first() {
                    out.push(a.clone());
                }
            }
        }
    }
    let mut v = Vec::new();
    paths(filter, &mut v);
    v.into_iter().find(|p| keys.contains(&p.as_str()))
}

fn query(res: &DynamoScope, body: &Value) -> Result<Value, DdbError> {
    let src = source(res, body)?;
    let mut ph = placeholders(body)?;
    let kce = opt_str(body, "KeyConditionExpression")?.ok_or_else(|| {
        DdbError::validation(
            "Either the KeyConditions or KeyConditionExpression parameter must be specified in the request.",
        )
    })?;
    let key = src.key().clone();
    let ty = |n: &str| src.table.attr_type(n).unwrap_or("S").to_string();
    let hash_t = ty(&key.hash);
    let range_t = key.range.as_deref().map(ty);
    let kc = expr::parse_key_condition(
        kce,
        &mut ph,
        (&key.hash, &hash_t),
        key.range.as_deref().zip(range_t.as_deref()),
    )?;
    let opts = read_opts(body, &mut ph)?;
    finish_placeholders(&ph, true)?;
    if let Some(f) = &opts.filter {
        let mut keys = vec![key.hash.as_str()];
        keys.extend(key.range.as_deref());
        if let Some(k) = filter_uses_keys(f, &keys) {
            return Err(DdbError::validation(format!(
                "Filter Expression can only contain non-primary key attributes: Primary key attribute: {k}"
            )));
        }
    }
    let forward = opt_bool(body, "ScanIndexForward")?.unwrap_or(true);
    let after = src.start_after(body)?;
    let hash = KeyVal::from_attr(&kc.hash)
        .ok_or_else(|| DdbError::validation("Query key condition not supported"))?;
    let (lo, hi) = match &kc.range {
        Some(rc) => {
            let (l, h) = rc.bounds();
            (l.and_then(KeyVal::from_attr), h.and_then(KeyVal::from_attr))
        }
        None => (None, None),
    };
    let range_name = key.range.clone();
    let it = src.iter(Some(hash), lo, hi, after, forward);
    let rc = kc.range.clone();
    Ok(collect_page(
        &src,
        it,
        move |item| match (&rc, &range_name) {
            (Some(rc), Some(rn)) => item.get(rn).is_some_and(|v| rc.matches(v)),
            _ => true,
        },
        &opts,
    ))
}

/// The parallel-scan segment of a partition key: a stable hash of its bytes.
fn segment_of(k: &KeyVal, total: u64) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in k.hash_bytes().iter() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h % total
}

fn scan(res: &DynamoScope, body: &Value) -> Result<Value, DdbError> {
    let src = source(res, body)?;
    let mut ph = placeholders(body)?;
    let opts = read_opts(body, &mut ph)?;
    finish_placeholders(&ph, opts.filter.is_some() || opts.projection.is_some())?;
    let segment = opt_u64(body, "Segment")?;
    let total = opt_u64(body, "TotalSegments")?;
    let seg = match (segment, total) {
        (None, None) => None,
        (Some(s), Some(t)) => {
            if !(1..=1_000_000).contains(&t) {
                return Err(constraint(
                    t,
                    "totalSegments",
                    "Member must have value less than or equal to 1000000",
                ));
            }
            if s >= t {
                return Err(DdbError::validation(format!(
                    "The Segment parameter is zero-based and must be less than parameter TotalSegments: Segment: {s} is not less than TotalSegments: {t}"
                )));
            }
            Some((s, t))
        }
        (Some(_), None) => {
            return Err(DdbError::validation(
                "The TotalSegments parameter is required but was not present in the request when parameter Segment is present",
            ));
        }
        (None, Some(_)) => {
            return Err(DdbError::validation(
                "The Segment parameter is required but was not present in the request when parameter TotalSegments is present",
            ));
        }
    };
    let after = src.start_after(body)?;
    let it = src.iter(None, None, None, after, true);
    let hash_name = src.key().hash.clone();
    Ok(collect_page(
        &src,
        it,
        move |item| match seg {
            None => true,
            Some((s, t)) => item
                .get(&hash_name)
                .and_then(KeyVal::from_attr)
                .is_some_and(|k| segment_of(&k, t) == s),
        },
        &opts,
    ))
}

// ------------------------------------------------------------------------------------------
// Batches
// ------------------------------------------------------------------------------------------

fn request_items(body: &Value) -> Result<&Map<String, Value>, DdbError> {
    match body.get("RequestItems") {
        Some(Value::Object(m)) if !m.is_empty() => Ok(m),
        Some(Value::Object(_)) => Err(constraint(
            "{}",
            "requestItems",
            "Member must have length greater than or equal to 1",
        )),
        _ => Err(DdbError::validation(
            "1 validation error detected: Value null at 'requestItems' failed to satisfy constraint: Member must not be null",
        )),
    }
}

fn batch_write(res: &mut DynamoScope, body: &Value) -> Result<Value, DdbError> {
    let req = request_items(body)?;
    let total: usize = req.values().map(|v| v.as_array().map_or(0, Vec::len)).sum();
    if total > MAX_BATCH_WRITE {
        return Err(DdbError::validation(format!(
            "1 validation error detected: Value at 'requestItems' failed to satisfy constraint: Map value must satisfy constraint: [Member must have length less than or equal to {MAX_BATCH_WRITE}, Member must have length greater than or equal to 1]"
        )));
    }
    // Validate everything first: a batch with one invalid request writes nothing.
    enum W {
        Put(ItemKey, BTreeMap<String, AttrValue>),
        Del(ItemKey),
    }
    let mut plan: Vec<(String, W)> = Vec::new();
    for (tname, reqs) in req {
        let t = table_named(res, tname)?;
        let reqs = reqs.as_array().filter(|a| !a.is_empty()).ok_or_else(|| {
            constraint(
                "[]",
                "requestItems",
                "Member must have length greater than or equal to 1",
            )
        })?;
        let mut seen = BTreeSet::new();
        for r in reqs {
            let w = if let Some(p) = r.get("PutRequest") {
                let item = attr_map(p, "Item")?;
                W::Put(t.validate_item(&item)?, item)
            } else if let Some(d) = r.get("DeleteRequest") {
                let key = attr_map(d, "Key")?;
                W::Del(t.validate_key(&key)?)
            } else {
                return Err(DdbError::validation(
                    "Supplied AttributeValue has more than one datatypes set, must contain exactly one of the supported datatypes",
                ));
            };
            let k = match &w {
                W::Put(k, _) | W::Del(k) => k.clone(),
            };
            if !seen.insert(k) {
                return Err(DdbError::validation(
                    "Provided list of item keys contains duplicates",
                ));
            }
            plan.push((tname.clone(), w));
        }
    }
    for (tname, w) in plan {
        let t = table_mut(res, &tname)?;
        match w {
            W::Put(k, item) => {
                t.put(k, Item::new(item));
            }
            W::Del(k) => {
                t.delete(&k);
            }
        }
    }
    Ok(json!({ "UnprocessedItems": {} }))
}

fn batch_get(res: &DynamoScope, body: &Value) -> Result<Value, DdbError> {
    let req = request_items(body)?;
    let total: usize = req
        .values()
        .map(|v| v.get("Keys").and_then(Value::as_array).map_or(0, Vec::len))
        .sum();
    if total > MAX_BATCH_GET {
        return Err(DdbError::validation(
            "Too many items requested for the BatchGetItem call",
        ));
    }
    let mut responses = Map::new();
    for (tname, spec) in req {
        refuse_legacy(spec, &["AttributesToGet"])?;
        let t = table_named(res, tname)?;
        let keys = spec
            .get("Keys")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
            .ok_or_else(|| {
                constraint(
                    "[]",
                    "requestItems.member.keys",
                    "Member must have length greater than or equal to 1",
                )
            })?;
        let mut ph = placeholders(spec)?;
        let projection = opt_projection(spec, &mut ph)?;
        finish_placeholders(&ph, projection.is_some())?;
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for k in keys {
            let pk = t.validate_key(&attrs_from_json(k)?)?;
            if !seen.insert(pk.clone()) {
                return Err(DdbError::validation(
                    "Provided list of item keys contains duplicates",
                ));
            }
            if let Some(item) = t.items.get(&pk) {
                out.push(projected(item, projection.as_ref()));
            }
        }
        responses.insert(tname.clone(), Value::Array(out));
    }
    Ok(json!({ "Responses": responses, "UnprocessedKeys": {} }))
}

// ------------------------------------------------------------------------------------------
// Transactions
// ------------------------------------------------------------------------------------------

enum TxOp {
    Check(DeleteReq),
    Put(PutReq),
    Delete(DeleteReq),
    Update(UpdateReq),
}

fn transact_items(body: &Value) -> Result<&Vec<Value>, DdbError> {
    let items = body
        .get("TransactItems")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            DdbError::validation(
                "1 validation error detected: Value null at 'transactItems' failed to satisfy constraint: Member must not be null",
            )
        })?;
    if items.is_empty() {
        return Err(constraint(
            "[]",
            "transactItems",
            "Member must have length greater than or equal to 1",
        ));
    }
    if items.len() > MAX_TRANSACT {
        return Err(constraint(
            "[...]",
            "transactItems",
            &format!("Member must have length less than or equal to {MAX_TRANSACT}"),
        ));
    }
    Ok(items)
}

fn transact_write(res: &mut DynamoScope, body: &Value) -> Result<Value, DdbError> {
    let items = transact_items(body)?;
    let mut ops = Vec::with_capacity(items.len());
    for it in items {
        let op = if let Some(c) = it.get("ConditionCheck") {
            let r = parse_delete(c)?;
            if r.cond.is_none() {
                return Err(DdbError::validation(
                    "1 validation error detected: Value null at 'transactItems.1.member.conditionCheck.conditionExpression' failed to satisfy constraint: Member must not be null",
                ));
            }
            TxOp::Check(r)
        } else if let Some(p) = it.get("Put") {
            TxOp::Put(parse_put(p, "Item")?)
        } else if let Some(d) = it.get("Delete") {
            TxOp::Delete(parse_delete(d)?)
        } else if let Some(u) = it.get("Update") {
            if u.get("UpdateExpression").is_none() {
                return Err(DdbError::validation(
                    "1 validation error detected: Value null at 'transactItems.1.member.update.updateExpression' failed to satisfy constraint: Member must not be null",
                ));
            }
            TxOp::Update(parse_update(u)?)
        } else {
            return Err(DdbError::validation(
                "TransactItems can only contain one of Check, Put, Update or Delete",
            ));
        };
        ops.push(op);
    }
    // Resolve keys, refuse two actions on one item.
    let mut seen = BTreeSet::new();
    let mut keys = Vec::with_capacity(ops.len());
    for op in &ops {
        let (tname, k) = match op {
            TxOp::Check(r) | TxOp::Delete(r) => {
                (&r.table, table_named(res, &r.table)?.validate_key(&r.key)?)
            }
            TxOp::Put(r) => (
                &r.table,
                table_named(res, &r.table)?.validate_item(&r.item)?,
            ),
            TxOp::Update(r) => (&r.table, table_named(res, &r.table)?.validate_key(&r.key)?),
        };
        if !seen.insert((tname.clone(), k.clone())) {
            return Err(DdbError::validation(
                "Transaction request cannot include multiple operations on one item",
            ));
        }
        keys.push((tname.clone(), k));
    }
    // Evaluate every condition against the state before the transaction.
    let mut reasons = Vec::with_capacity(ops.len());
    let mut failed = false;
    for (op, (tname, k)) in ops.iter().zip(&keys) {
        let (cond, return_old) = match op {
            TxOp::Check(r) | TxOp::Delete(r) => (r.cond.as_ref(), r.return_old),
            TxOp::Put(r) => (r.cond.as_ref(), r.return_old),
            TxOp::Update(r) => (r.cond.as_ref(), r.return_old),
        };
        let old = table_named(res, tname)?.items.get(k);
        match check_condition(cond, old, return_old) {
            Ok(()) => reasons.push(json!({"Code": "None"})),
            Err(e) => {
                failed = true;
                let mut r = json!({"Code": "ConditionalCheckFailed", "Message": "The conditional request failed"});
                if let Some(item) = e.extra.get("Item") {
                    r["Item"] = item.clone();
                }
                reasons.push(r);
            }
        }
    }
    if failed {
        let codes: Vec<&str> = reasons
            .iter()
            .map(|r| r["Code"].as_str().unwrap_or("None"))
            .collect();
        return Err(DdbError::new(
            "TransactionCanceledException",
            format!(
                "Transaction cancelled, please refer cancellation reasons for specific reasons [{}]",
                codes.join(", ")
            ),
        )
        .with("CancellationReasons", Value::Array(reasons)));
    }
    for op in ops {
        match op {
            TxOp::Check(_) => {}
            TxOp::Put(mut r) => {
                r.cond = None;
                do_put(res, r)?;
            }
            TxOp::Delete(mut r) => {
                r.cond = None;
                do_delete(res, r)?;
            }
            TxOp::Update(mut r) => {
                r.cond = None;
                do_update(res, r)?;
            }
        }
    }
    Ok(json!({}))
}

fn transact_get(res: &DynamoScope, body: &Value) -> Result<Value, DdbError> {
    let items = transact_items(body)?;
    let mut out = Vec::with_capacity(items.len());
    for it in items {
        let g = it.get("Get").ok_or_else(|| {
            DdbError::validation(
                "1 validation error detected: Value null at 'transactItems.1.member.get' failed to satisfy constraint: Member must not be null",
            )
        })?;
        let n = table_name(g)?;
        let r = parse_get(g)?;
        let t = table_named(res, n)?;
        let pk = t.validate_key(&r.key)?;
        out.push(match t.items.get(&pk) {
            Some(item) => json!({ "Item": projected(item, r.projection.as_ref()) }),
            None => json!({}),
        });
    }
    Ok(json!({ "Responses": out }))
}

// ------------------------------------------------------------------------------------------
// Tags and TTL
// ------------------------------------------------------------------------------------------

fn table_from_arn<'a>(scope: &Scope, arn: &'a str) -> Result<&'a str, DdbError> {
    let bad = || {
        DdbError::validation(format!(
            "Invalid TableArn: Invalid ResourceArn provided as input {arn}"
        ))
    };
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if parts.len() != 6 || parts[0] != "arn" || parts[2] != "dynamodb" {
        return Err(bad());
    }
    let name = parts[5].strip_prefix("table/").ok_or_else(bad)?;
    if name.contains('/') {
        return Err(bad());
    }
    if parts[3] != scope.region || parts[4] != scope.account {
        return Err(DdbError::new(
            "ResourceNotFoundException",
            format!("Requested resource not found: ResourcArn: {arn} not found"),
        ));
    }
    Ok(name)
}

fn arn_table_mut<'a>(
    res: &'a mut DynamoScope,
    scope: &Scope,
    body: &Value,
) -> Result<&'a mut Table, DdbError> {
    let arn = req_str(body, "ResourceArn")?;
    let name = table_from_arn(scope, arn)?;
    res.tables.get_mut(name).ok_or_else(|| {
        DdbError::new(
            "ResourceNotFoundException",
            format!("Requested resource not found: ResourcArn: {arn} not found"),
        )
    })
}

fn tag_resource(res: &mut DynamoScope, scope: &Scope, body: &Value) -> Result<Value, DdbError> {
    let tags = tags_from(body.get("Tags"))?;
    let t = arn_table_mut(res, scope, body)?;
    for (k, v) in tags {
        t.tags.insert(k, v);
    }
    if t.tags.len() > 50 {
        return Err(DdbError::new(
            "LimitExceededException",
            "Too many tags: a table can have at most 50 tags",
        ));
    }
    Ok(json!({}))
}

fn untag_resource(res: &mut DynamoScope, scope: &Scope, body: &Value) -> Result<Value, DdbError> {
    let keys: Vec<String> = match body.get("TagKeys") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => {
            return Err(DdbError::validation(
                "1 validation error detected: Value null at 'tagKeys' failed to satisfy constraint: Member must not be null",
            ));
        }
    };
    let t = arn_table_mut(res, scope, body)?;
    for k in keys {
        t.tags.remove(&k);
    }
    Ok(json!({}))
}

fn list_tags(res: &DynamoScope, scope: &Scope, body: &Value) -> Result<Value, DdbError> {
    let arn = req_str(body, "ResourceArn")?;
    let name = table_from_arn(scope, arn)?;
    let t = res.tables.get(name).ok_or_else(|| {
        DdbError::new(
            "ResourceNotFoundException",
            format!("Requested resource not found: ResourcArn: {arn} not found"),
        )
    })?;
    let tags: Vec<Value> = t
        .tags
        .iter()
        .map(|(k, v)| json!({"Key": k, "Value": v}))
        .collect();
    Ok(json!({ "Tags": tags }))
}

fn update_ttl(res: &mut DynamoScope, body: &Value) -> Result<Value, DdbError> {
    let name = table_name(body)?.to_string();
    let spec = body.get("TimeToLiveSpecification").ok_or_else(|| {
        DdbError::validation(
            "1 validation error detected: Value null at 'timeToLiveSpecification' failed to satisfy constraint: Member must not be null",
        )
    })?;
    let enabled = opt_bool(spec, "Enabled")?.ok_or_else(|| {
        DdbError::validation(
            "1 validation error detected: Value null at 'timeToLiveSpecification.enabled' failed to satisfy constraint: Member must not be null",
        )
    })?;
    let attr = req_str(spec, "AttributeName")?.to_string();
    if attr.is_empty() || attr.len() > 255 {
        return Err(constraint(
            &attr,
            "timeToLiveSpecification.attributeName",
            "Member must have length greater than or equal to 1",
        ));
    }
    let t = res
        .tables
        .get_mut(&name)
        .ok_or_else(|| DdbError::table_not_found(&name))?;
    let currently = t.ttl.as_ref().is_some_and(|x| x.enabled);
    if enabled && currently {
        return Err(DdbError::validation("TimeToLive is already enabled"));
    }
    if !enabled && !currently {
        return Err(DdbError::validation("TimeToLive is already disabled"));
    }
    if !enabled && t.ttl.as_ref().is_some_and(|x| x.attribute != attr) {
        return Err(DdbError::validation(
            "TimeToLive is active on a different AttributeName: current AttributeName is different",
        ));
    }
    t.ttl = Some(Ttl {
        attribute: attr.clone(),
        enabled,
    });
    Ok(json!({ "TimeToLiveSpecification": {"Enabled": enabled, "AttributeName": attr} }))
}
