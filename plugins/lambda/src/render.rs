//! The JSON shapes Lambda answers with, built from the state.
//!
//! Only derived values are computed here (ARNs, `CodeSha256`, download URLs); everything else
//! is what the state holds, so two emulators holding the same state answer byte-identical
//! documents, which is what the round-trip tests compare.

use cryopod::Scope;
use serde_json::{Map, Value, json};

use crate::names;
use crate::state::{
    Alias, CodeRef, EventSourceMapping, FunctionVersion, LambdaScope, LayerVersion, Policy,
    Statement,
};

/// Where `GetFunction` tells clients to download a function's zip: a GET on the emulator's
/// own endpoint that carries the scope (downloads are unsigned, like AWS's presigned URLs)
/// and the digest (so an old URL never silently serves newer code).
pub fn function_code_url(endpoint: &str, scope: &Scope, name: &str, code: &CodeRef) -> String {
    format!(
        "{endpoint}{}/{}/{}/{name}/{}",
        crate::CODE_DOWNLOAD_PREFIX,
        scope.account,
        scope.region,
        code.digest.hex()
    )
}

/// Where `GetLayerVersion` tells clients to download a layer's zip.
pub fn layer_code_url(endpoint: &str, scope: &Scope, name: &str, code: &CodeRef) -> String {
    format!(
        "{endpoint}{}/{}/{}/{name}/{}",
        crate::LAYER_DOWNLOAD_PREFIX,
        scope.account,
        scope.region,
        code.digest.hex()
    )
}

/// A `FunctionConfiguration`. `arn_qualifier` is what the caller named (`None` for the
/// unqualified function), `version` the version the configuration belongs to.
pub fn function_configuration(
    scope: &Scope,
    resources: &LambdaScope,
    name: &str,
    arn_qualifier: Option<&str>,
    version: &str,
    v: &FunctionVersion,
) -> Value {
    let c = &v.config;
    let mut m = Map::new();
    m.insert("FunctionName".into(), json!(name));
    m.insert(
        "FunctionArn".into(),
        json!(names::qualified_arn(scope, name, arn_qualifier)),
    );
    if let Some(r) = &c.runtime {
        m.insert("Runtime".into(), json!(r));
    }
    m.insert("Role".into(), json!(c.role));
    if let Some(h) = &c.handler {
        m.insert("Handler".into(), json!(h));
    }
    m.insert("CodeSize".into(), json!(c.code.map_or(0, |x| x.size)));
    m.insert("Description".into(), json!(c.description));
    m.insert("Timeout".into(), json!(c.timeout));
    m.insert("MemorySize".into(), json!(c.memory_size));
    m.insert("LastModified".into(), json!(v.last_modified));
    m.insert(
        "CodeSha256".into(),
        json!(c.code.map(|x| x.sha256_base64()).unwrap_or_default()),
    );
    m.insert("Version".into(), json!(version));
    if let Some(env) = &c.environment {
        m.insert("Environment".into(), json!({ "Variables": env }));
    }
    m.insert("TracingConfig".into(), json!({ "Mode": c.tracing_mode }));
    m.insert("RevisionId".into(), json!(v.revision_id));
    if !c.layers.is_empty() {
        let layers: Vec<Value> = c
            .layers
            .iter()
            .map(|arn| json!({ "Arn": arn, "CodeSize": layer_size(scope, resources, arn) }))
            .collect();
        m.insert("Layers".into(), Value::Array(layers));
    }
    m.insert("State".into(), json!("Active"));
    m.insert("LastUpdateStatus".into(), json!("Successful"));
    m.insert("PackageType".into(), json!(c.package_type));
    m.insert("Architectures".into(), json!(c.architectures));
    m.insert(
        "EphemeralStorage".into(),
        json!({ "Size": c.ephemeral_storage }),
    );
    m.insert(
        "SnapStart".into(),
        json!({ "ApplyOn": c.snap_start, "OptimizationStatus": "Off" }),
    );
    let mut logging = Map::new();
    logging.insert("LogFormat".into(), json!(c.logging.log_format));
    if let Some(l) = &c.logging.application_log_level {
        logging.insert("ApplicationLogLevel".into(), json!(l));
    }
    if let Some(l) = &c.logging.system_log_level {
        logging.insert("SystemLogLevel".into(), json!(l));
    }
    logging.insert("LogGroup".into(), json!(c.logging.log_group));
    m.insert("LoggingConfig".into(), Value::Object(logging));
    for (field, raw) in &c.extra {
        let value: Value = serde_json::from_str(raw).unwrap_or(Value::Null);
        match field.as_str() {
            "ImageConfig" => {
                m.insert(
                    "ImageConfigResponse".into(),
                    json!({ "ImageConfig": value }),
                );
            }
            "VpcConfig" => {
                let mut vpc = value;
                if let Value::Object(o) = &mut vpc {
                    o.entry("VpcId").or_insert(json!(""));
                }
                m.insert(field.clone(), vpc);
            }
            _ => {
                m.insert(field.clone(), value);
            }
        }
    }
    Value::Object(m)
}

fn layer_size(scope: &Scope, resources: &LambdaScope, arn: &str) -> u64 {
    match names::parse_layer_version_arn(arn) {
        Some((s, name, n)) if &s == scope => resources
            .layers
            .get(&name)
            .and_then(|l| l.versions.get(&n))
            .map_or(0, |v| v.code.size),
        _ => 0,
    }
}

/// An `AliasConfiguration`.
pub fn alias(scope: &Scope, function: &str, name: &str, a: &Alias) -> Value {
    let mut m = Map::new();
    m.insert(
        "AliasArn".into(),
        json!(names::qualified_arn(scope, function, Some(name))),
    );
    m.insert("Name".into(), json!(name));
    m.insert("FunctionVersion".into(), json!(a.function_version));
    m.insert("Description".into(), json!(a.description));
    if !a.routing.is_empty() {
        m.insert(
            "RoutingConfig".into(),
            json!({ "AdditionalVersionWeights": a.routing }),
        );
    }
    m.insert("RevisionId".into(), json!(a.revision_id));
    Value::Object(m)
}

/// One policy statement as IAM JSON.
pub fn statement(resource_arn: &str, s: &Statement) -> Value {
    let principal = if s.principal == "*" {
        json!("*")
    } else if s.principal.ends_with(".amazonaws.com") {
        json!({ "Service": s.principal })
    } else if s.principal.len() == 12 && s.principal.bytes().all(|b| b.is_ascii_digit()) {
        json!({ "AWS": format!("arn:aws:iam::{}:root", s.principal) })
    } else {
        json!({ "AWS": s.principal })
    };
    let mut condition = Map::new();
    let mut string_equals = Map::new();
    if let Some(a) = &s.source_account {
        string_equals.insert("AWS:SourceAccount".into(), json!(a));
    }
    if let Some(t) = &s.event_source_token {
        string_equals.insert("lambda:EventSourceToken".into(), json!(t));
    }
    if let Some(o) = &s.principal_org_id {
        string_equals.insert("aws:PrincipalOrgID".into(), json!(o));
    }
    if let Some(t) = &s.function_url_auth_type {
        string_equals.insert("lambda:FunctionUrlAuthType".into(), json!(t));
    }
    if !string_equals.is_empty() {
        condition.insert("StringEquals".into(), Value::Object(string_equals));
    }
    if let Some(a) = &s.source_arn {
        condition.insert("ArnLike".into(), json!({ "AWS:SourceArn": a }));
    }
    let mut m = Map::new();
    m.insert("Sid".into(), json!(s.sid));
    m.insert("Effect".into(), json!("Allow"));
    m.insert("Principal".into(), principal);
    m.insert("Action".into(), json!(s.action));
    m.insert("Resource".into(), json!(resource_arn));
    if !condition.is_empty() {
        m.insert("Condition".into(), Value::Object(condition));
    }
    Value::Object(m)
}

/// A whole resource policy document.
pub fn policy(resource_arn: &str, p: &Policy) -> Value {
    json!({
        "Version": "2012-10-17",
        "Id": "default",
        "Statement": p.statements.iter().map(|s| statement(resource_arn, s)).collect::<Vec<_>>(),
    })
}

/// A layer version's `Content`.
pub fn layer_content(endpoint: &str, scope: &Scope, name: &str, v: &LayerVersion) -> Value {
    json!({
        "Location": layer_code_url(endpoint, scope, name, &v.code),
        "CodeSha256": v.code.sha256_base64(),
        "CodeSize": v.code.size,
    })
}

/// The fields shared by `GetLayerVersion` and the list items.
pub fn layer_version(scope: &Scope, name: &str, n: u64, v: &LayerVersion) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        "LayerVersionArn".into(),
        json!(format!("{}:{n}", names::layer_arn(scope, name))),
    );
    m.insert("Version".into(), json!(n));
    m.insert("Description".into(), json!(v.description));
    m.insert("CreatedDate".into(), json!(v.created_date));
    m.insert("CompatibleRuntimes".into(), json!(v.compatible_runtimes));
    m.insert(
        "CompatibleArchitectures".into(),
        json!(v.compatible_architectures),
    );
    if let Some(l) = &v.license_info {
        m.insert("LicenseInfo".into(), json!(l));
    }
    m
}

/// The full `GetLayerVersion` / `PublishLayerVersion` answer.
pub fn layer_version_full(
    endpoint: &str,
    scope: &Scope,
    name: &str,
    n: u64,
    v: &LayerVersion,
) -> Value {
    let mut m = layer_version(scope, name, n, v);
    m.insert("Content".into(), layer_content(endpoint, scope, name, v));
    m.insert("LayerArn".into(), json!(names::layer_arn(scope, name)));
    Value::Object(m)
}

/// An `EventSourceMappingConfiguration`; `state` overrides the state shown (`Deleting`).
pub fn event_source_mapping(
    scope: &Scope,
    uuid: &str,
    m: &EventSourceMapping,
    state: Option<&str>,
) -> Value {
    let mut o = Map::new();
    o.insert("UUID".into(), json!(uuid));
    o.insert("BatchSize".into(), json!(m.batch_size));
    if let Some(arn) = &m.event_source_arn {
        o.insert("EventSourceArn".into(), json!(arn));
    }
    o.insert("FunctionArn".into(), json!(m.function_arn));
    o.insert(
        "LastModified".into(),
        json!(m.last_modified_ms as f64 / 1000.0),
    );
    let default_state = if m.enabled { "Enabled" } else { "Disabled" };
    o.insert("State".into(), json!(state.unwrap_or(default_state)));
    o.insert("StateTransitionReason".into(), json!("USER_INITIATED"));
    if let Some(p) = &m.starting_position {
        o.insert("StartingPosition".into(), json!(p));
    }
    o.insert(
        "EventSourceMappingArn".into(),
        json!(names::esm_arn(scope, uuid)),
    );
    for (field, raw) in &m.extra {
        o.insert(
            field.clone(),
            serde_json::from_str(raw).unwrap_or(Value::Null),
        );
    }
    Value::Object(o)
}
