//! The Parameter Store operations, on the JSON 1.1 protocol's shapes
//! (`X-Amz-Target: AmazonSSM.<Operation>`), with AWS's names rules, limits and error codes.
//!
//! Reads take the scope's resources (`&SsmScope`), writes a copy to change (`&mut SsmScope`,
//! inside `StateCell::write`, so a write that fails half-way changes nothing).

use base64::Engine;
use cryopod::Scope;
use cryopod::protocol::json::{self, Input, timestamp};
use serde_json::{Value, json};

use crate::crypto::{self, DEFAULT_KEY_ID};
use crate::error::{SsmError, SsmResult};
use crate::state::{
    MAX_VERSIONS, Parameter, ParameterType, ParameterVersion, SsmScope, StoredValue, Tier,
};

/// The Parameter Store operations, all implemented.
pub const OPERATIONS: &[&str] = &[
    "AddTagsToResource",
    "DeleteParameter",
    "DeleteParameters",
    "DescribeParameters",
    "GetParameter",
    "GetParameterHistory",
    "GetParameters",
    "GetParametersByPath",
    "LabelParameterVersion",
    "ListTagsForResource",
    "PutParameter",
    "RemoveTagsFromResource",
    "UnlabelParameterVersion",
];

include!("other_operations.rs");

/// Most tags on one parameter.
pub const MAX_TAGS: usize = 50;
/// Longest value of a Standard-tier version, in characters.
pub const STANDARD_VALUE_MAX: usize = 4096;
/// Longest value of an Advanced-tier version, in characters.
pub const ADVANCED_VALUE_MAX: usize = 8192;
/// Most labels on one version.
pub const MAX_LABELS_PER_VERSION: usize = 10;
/// Most levels of a hierarchical name.
pub const MAX_LEVELS: usize = 15;
/// Longest parameter ARN, which bounds names with the account and region.
pub const MAX_ARN: usize = 1011;

/// What a request carries besides its input: where and when it runs.
#[derive(Clone, Debug)]
pub struct Ctx {
    /// The request's scope.
    pub scope: Scope,
    /// Now, epoch milliseconds.
    pub now_ms: i64,
}

impl Ctx {
    /// The ARN of parameter `name`.
    pub fn arn(&self, name: &str) -> String {
        format!(
            "arn:aws:ssm:{}:{}:parameter/{}",
            self.scope.region,
            self.scope.account,
            name.strip_prefix('/').unwrap_or(name)
        )
    }

    fn user(&self) -> String {
        format!("arn:aws:iam::{}:root", self.scope.account)
    }
}

/// Whether `op` changes state.
pub fn is_write(op: &str) -> bool {
    matches!(
        op,
        "PutParameter"
            | "DeleteParameter"
            | "DeleteParameters"
            | "LabelParameterVersion"
            | "UnlabelParameterVersion"
            | "AddTagsToResource"
            | "RemoveTagsFromResource"
    )
}

/// Runs a write operation on the scope's resources.
pub fn write(res: &mut SsmScope, ctx: &Ctx, op: &str, input: &Input) -> SsmResult<Value> {
    match op {
        "PutParameter" => put_parameter(res, ctx, input),
        "DeleteParameter" => delete_parameter(res, ctx, input),
        "DeleteParameters" => delete_parameters(res, ctx, input),
        "LabelParameterVersion" => label_parameter_version(res, ctx, input),
        "UnlabelParameterVersion" => unlabel_parameter_version(res, ctx, input),
        "AddTagsToResource" => add_tags(res, ctx, input),
        "RemoveTagsFromResource" => remove_tags(res, ctx, input),
        other => Err(unknown(other)),
    }
}

/// Runs a read operation; `res` is `None` when the scope never held anything.
pub fn read(res: Option<&SsmScope>, ctx: &Ctx, op: &str, input: &Input) -> SsmResult<Value> {
    let empty = SsmScope::default();
    let res = res.unwrap_or(&empty);
    match op {
        "GetParameter" => get_parameter(res, ctx, input),
        "GetParameters" => get_parameters(res, ctx, input),
        "GetParametersByPath" => get_parameters_by_path(res, ctx, input),
        "DescribeParameters" => describe_parameters(res, ctx, input),
        "GetParameterHistory" => get_parameter_history(res, ctx, input),
        "ListTagsForResource" => list_tags(res, ctx, input),
        other => Err(unknown(other)),
    }
}

/// The answer to an operation name: SSM operations outside Parameter Store are a
/// `ValidationException` naming the scope; names SSM does not have are unknown.
pub fn unknown(op: &str) -> SsmError {
    if OTHER_OPERATIONS.contains(&op) {
        SsmError::Validation(format!(
            "The operation {op} is not supported by this emulator's SSM (Parameter Store only: {})",
            OPERATIONS.join(", ")
        ))
    } else {
        SsmError::Protocol(cryopod::AwsError::bad_request(
            "UnknownOperationException",
            format!("SSM has no operation {op}"),
        ))
    }
}

// ---------------------------------------------------------------------------------------
// Names, selectors, values

/// Checks a name given to PutParameter against AWS's rules.
fn check_name(ctx: &Ctx, name: &str) -> SsmResult<()> {
    json::check_len("Name", name, 1, 2048)?;
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/');
    if !name.chars().all(allowed) {
        return Err(SsmError::Validation(
            "Parameter name: can't be prefixed with \"aws\" or \"ssm\" (case-insensitive). If formed as a path, it can consist of sub-paths divided by slash symbol; each sub-path can be formed as a mix of letters, numbers and the following 3 symbols .-_".into(),
        ));
    }
    if name.contains('/') && !name.starts_with('/') {
        return Err(SsmError::Validation(
            "Parameter name must be a fully qualified name.".into(),
        ));
    }
    let first = name.trim_start_matches('/').to_ascii_lowercase();
    if first.starts_with("aws") || first.starts_with("ssm") {
        return Err(SsmError::Validation(
            "No access to reserved parameter name: can't be prefixed with \"aws\" or \"ssm\" (case-insensitive).".into(),
        ));
    }
    if name.ends_with('/') || name.contains("//") {
        return Err(SsmError::Validation(
            "Parameter name must not end with slash or contain empty levels.".into(),
        ));
    }
    if levels(name) > MAX_LEVELS {
        return Err(SsmError::HierarchyLevelLimitExceeded);
    }
    if ctx.arn(name).len() > MAX_ARN {
        return Err(SsmError::Validation(format!(
            "Parameter name, including the full ARN, must be at most {MAX_ARN} characters."
        )));
    }
    Ok(())
}

fn levels(name: &str) -> usize {
    name.trim_start_matches('/').split('/').count()
}

/// A name as stored: ARNs of this scope are accepted wherever a name is.
fn resolve_name<'a>(res: &SsmScope, ctx: &Ctx, name: &'a str) -> std::borrow::Cow<'a, str> {
    let prefix = format!(
        "arn:aws:ssm:{}:{}:parameter/",
        ctx.scope.region, ctx.scope.account
    );
    match name.strip_prefix(&prefix) {
        Some(rest) => {
            let slashed = format!("/{rest}");
            if res.parameters.contains_key(&slashed) || rest.contains('/') {
                slashed.into()
            } else {
                rest.to_string().into()
            }
        }
        None => name.into(),
    }
}

/// A version selector (`name:3`, `name:label`).
enum Selector<'a> {
    Latest,
    Version(u64),
    Label(&'a str),
}

fn split_selector(name: &str) -> (&str, Selector<'_>, Option<&str>) {
    // ARNs hold colons of their own; the selector is after the name part.
    let start = name.find(":parameter/").map_or(0, |i| i + 11);
    match name[start..].rfind(':') {
        Some(i) => {
            let (base, sel) = (&name[..start + i], &name[start + i + 1..]);
            let selector = match sel.parse::<u64>() {
                Ok(n) => Selector::Version(n),
                Err(_) => Selector::Label(sel),
            };
            (base, selector, Some(&name[start + i..]))
        }
        None => (name, Selector::Latest, None),
    }
}

fn not_found(name: &str) -> SsmError {
    SsmError::ParameterNotFound(format!("Parameter {name} not found."))
}

/// The version `name` (with its selector) picks.
fn select<'r>(
    res: &'r SsmScope,
    ctx: &Ctx,
    full: &str,
) -> SsmResult<(
    String,
    &'r Parameter,
    u64,
    &'r ParameterVersion,
    Option<String>,
)> {
    let (base, selector, shown) = split_selector(full);
    let name = resolve_name(res, ctx, base).into_owned();
    let p = res.parameters.get(&name).ok_or_else(|| not_found(base))?;
    let n = match selector {
        Selector::Latest => p.current().map(|(n, _)| n).ok_or_else(|| not_found(base))?,
        Selector::Version(n) => {
            if !p.versions.contains_key(&n) {
                return Err(SsmError::ParameterVersionNotFound(format!(
                    "Systems Manager could not find version {n} of {base}. Verify the version and try again."
                )));
            }
            n
        }
        Selector::Label(l) => *p.labels.get(l).ok_or_else(|| {
            SsmError::ParameterVersionNotFound(format!(
                "Systems Manager could not find label {l} of {base}. Verify the label and try again."
            ))
        })?,
    };
    let v = p.versions.get(&n).ok_or_else(|| not_found(base))?;
    Ok((name, p, n, v, shown.map(str::to_string)))
}

/// The value as returned: SecureStrings decrypted only when asked, else their ciphertext
/// (base64), as AWS returns it.
fn shown_value(res: &SsmScope, v: &ParameterVersion, decrypt: bool) -> SsmResult<String> {
    match &v.value {
        StoredValue::Plain(s) => Ok(s.clone()),
        StoredValue::Sealed(sealed) if decrypt => crypto::open(res, sealed),
        StoredValue::Sealed(sealed) => {
            let mut bytes = sealed.nonce.clone();
            bytes.extend_from_slice(&sealed.ciphertext);
            Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
    }
}

fn parameter_json(
    res: &SsmScope,
    ctx: &Ctx,
    name: &str,
    n: u64,
    v: &ParameterVersion,
    selector: Option<&str>,
    decrypt: bool,
) -> SsmResult<Value> {
    let mut out = json!({
        "Name": name,
        "Type": v.kind.as_str(),
        "Value": shown_value(res, v, decrypt)?,
        "Version": n,
        "LastModifiedDate": timestamp(v.modified_ms),
        "ARN": ctx.arn(name),
        "DataType": v.data_type,
    });
    if let Some(s) = selector {
        out["Selector"] = json!(s);
    }
    Ok(out)
}

fn policies_json(v: &ParameterVersion) -> Value {
    let Some(text) = &v.policies else {
        return json!([]);
    };
    let parsed: Vec<Value> = serde_json::from_str(text).unwrap_or_default();
    Value::Array(
        parsed
            .into_iter()
            .map(|p| {
                json!({
                    "PolicyText": p.to_string(),
                    "PolicyType": p.get("Type").and_then(Value::as_str).unwrap_or_default(),
                    "PolicyStatus": "Pending",
                })
            })
            .collect(),
    )
}

// ---------------------------------------------------------------------------------------
// PutParameter

const DATA_TYPES: &[&str] = &["text", "aws:ec2:image", "aws:ssm:integration"];
const POLICY_TYPES: &[&str] = &[
    "Expiration",
    "ExpirationNotification",
    "NoChangeNotification",
];

fn check_policies(text: &str) -> SsmResult<()> {
    let parsed: Value = serde_json::from_str(text).map_err(|_| {
        SsmError::InvalidPolicyAttribute("The policies are not a valid JSON array.".into())
    })?;
    let Value::Array(list) = parsed else {
        return Err(SsmError::InvalidPolicyAttribute(
            "The policies must be a JSON array of policy objects.".into(),
        ));
    };
    if list.len() > 10 {
        return Err(SsmError::PoliciesLimitExceeded);
    }
    let mut seen = Vec::new();
    for p in &list {
        let kind = p.get("Type").and_then(Value::as_str).unwrap_or_default();
        if !POLICY_TYPES.contains(&kind) {
            return Err(SsmError::InvalidPolicyType(format!(
                "The following policy type is not supported: {kind}. Valid types are: {}",
                POLICY_TYPES.join(", ")
            )));
        }
        if !p.get("Attributes").is_some_and(Value::is_object) {
            return Err(SsmError::InvalidPolicyAttribute(format!(
                "A policy of type {kind} needs an Attributes object."
            )));
        }
        if seen.contains(&kind) {
            return Err(SsmError::IncompatiblePolicy(format!(
                "A parameter can have only one {kind} policy."
            )));
        }
        seen.push(kind);
    }
    Ok(())
}

fn check_tags(tags: &[(String, String)]) -> SsmResult<()> {
    let ok = |c: char| {
        c.is_alphanumeric()
            || c.is_whitespace()
            || matches!(c, '_' | '.' | ':' | '/' | '=' | '+' | '-' | '@')
    };
    for (k, v) in tags {
        if !k.chars().all(ok) || !v.chars().all(ok) {
            return Err(SsmError::Validation(format!(
                "1 validation error detected: Value '{k}' at 'tags' failed to satisfy constraint: Member must satisfy regular expression pattern: ^([\\p{{L}}\\p{{Z}}\\p{{N}}_.:/=+\\-@]*)$"
            )));
        }
        if k.to_ascii_lowercase().starts_with("aws:") {
            return Err(SsmError::Validation(format!(
                "Tag key {k} uses the reserved prefix aws:."
            )));
        }
    }
    if tags.len() > MAX_TAGS {
        return Err(SsmError::TooManyTags);
    }
    Ok(())
}

fn matches_pattern(pattern: &str, value: &str) -> SsmResult<bool> {
    let re = regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .build()
        .map_err(|e| {
            SsmError::InvalidAllowedPattern(format!("The allowed pattern is not valid: {e}"))
        })?;
    Ok(re.is_match(value))
}

fn put_parameter(res: &mut SsmScope, ctx: &Ctx, input: &Input) -> SsmResult<Value> {
    let name = input.string("Name", 1, 2048)?.to_string();
    check_name(ctx, &name)?;
    let value = input.string("Value", 1, ADVANCED_VALUE_MAX)?.to_string();
    let description = input
        .opt_string("Description", 0, 1024)?
        .map(str::to_string);
    let kind = input
        .opt_enum("Type", &["String", "StringList", "SecureString"])?
        .and_then(ParameterType::parse);
    let key_id = input.opt_string("KeyId", 1, 256)?.map(str::to_string);
    if let Some(k) = &key_id
        && !k
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '/' | '_' | '-'))
    {
        return Err(json::constraint(
            k,
            "KeyId",
            "Member must satisfy regular expression pattern: ^([a-zA-Z0-9:/_-]+)$",
        )
        .into());
    }
    let overwrite = input.flag("Overwrite")?;
    let allowed_pattern = input
        .opt_string("AllowedPattern", 0, 1024)?
        .map(str::to_string);
    let tags = input.opt_tags("Tags", 1000)?.unwrap_or_default();
    let tier = input.opt_enum("Tier", &["Standard", "Advanced", "Intelligent-Tiering"])?;
    let policies = input.opt_string("Policies", 1, 4096)?.map(str::to_string);
    let data_type = input.opt_string("DataType", 0, 128)?.map(str::to_string);

    let existing = res.parameters.get(&name).cloned();
    if existing.is_some() && !overwrite {
        return Err(SsmError::ParameterAlreadyExists);
    }
    if existing.is_some() && !tags.is_empty() {
        return Err(SsmError::Validation(
            "Invalid request: tags and overwrite can't be used together. To create a parameter with tags, please remove overwrite flag. To update tags for an existing parameter, please use AddTagsToResource or RemoveTagsFromResource.".into(),
        ));
    }
    check_tags(&tags)?;
    let previous = existing
        .as_ref()
        .and_then(|p| p.current().map(|(_, v)| v.clone()));
    let kind = match (kind, &previous) {
        (Some(k), _) => k,
        (None, Some(prev)) => prev.kind,
        (None, None) => {
            return Err(SsmError::Validation(
                "A parameter type is required when you create a parameter.".into(),
            ));
        }
    };
    if key_id.is_some() && kind != ParameterType::SecureString {
        return Err(SsmError::Validation(
            "KeyId is required for SecureString type parameter only.".into(),
        ));
    }
    let data_type = data_type.unwrap_or_else(|| "text".into());
    if !DATA_TYPES.contains(&data_type.as_str()) {
        return Err(SsmError::Validation(format!(
            "The following data type is not supported: {data_type} (Data type names are all lowercase.)"
        )));
    }
    if data_type != "text" && kind != ParameterType::String {
        return Err(SsmError::Validation(format!(
            "Data type {data_type} is supported only for parameters of type String."
        )));
    }
    if let Some(p) = &policies {
        check_policies(p)?;
    }
    let was_advanced = previous.as_ref().is_some_and(|v| v.tier == Tier::Advanced);
    let len = value.chars().count();
    let tier = match tier {
        Some("Advanced") => Tier::Advanced,
        Some("Standard") if was_advanced => {
            return Err(SsmError::Validation(
                "This parameter uses the advanced-parameter tier. You can't downgrade a parameter from the advanced-parameter tier to the standard-parameter tier. If necessary, you can delete the advanced parameter and recreate it as a standard parameter.".into(),
            ));
        }
        Some("Standard") => Tier::Standard,
        _ if was_advanced || len > STANDARD_VALUE_MAX || policies.is_some() => Tier::Advanced,
        _ => Tier::Standard,
    };
    if tier == Tier::Standard && len > STANDARD_VALUE_MAX {
        return Err(SsmError::Validation(
            "Standard tier parameters support a maximum parameter value of 4096 characters. To create a larger parameter value, upgrade the parameter to use the advanced-parameter tier. For more information, see https://docs.aws.amazon.com/systems-manager/latest/userguide/parameter-store-advanced-parameters.html".into(),
        ));
    }
    if tier == Tier::Standard && policies.is_some() {
        return Err(SsmError::Validation(
            "Parameter policies are supported only for advanced-tier parameters.".into(),
        ));
    }
    if let Some(p) = &allowed_pattern
        && !matches_pattern(p, &value)?
    {
        return Err(SsmError::PatternMismatch(format!(
            "Parameter value, cannot be validated against allowedPattern: {p}"
        )));
    }
    let mut param = existing.unwrap_or_default();
    if param.versions.len() >= MAX_VERSIONS
        && let Some(&(oldest, _)) = param.versions.get_min()
    {
        if param.labels.values().any(|n| *n == oldest) {
            return Err(SsmError::MaxVersionLimitExceeded(format!(
                "You attempted to create a new version of {name} by calling the PutParameter API with the overwrite flag. Version {oldest}, the oldest version, can't be deleted because it has a label associated with it. Move the label to another version of the parameter, and try again."
            )));
        }
        param.versions.remove(&oldest);
    }
    let (stored, key_id) = if kind == ParameterType::SecureString {
        let key_id = key_id
            .or_else(|| previous.as_ref().and_then(|v| v.key_id.clone()))
            .unwrap_or_else(|| DEFAULT_KEY_ID.to_string());
        (
            StoredValue::Sealed(crypto::seal(res, &key_id, &value)?),
            Some(key_id),
        )
    } else {
        (StoredValue::Plain(value), None)
    };
    param.latest += 1;
    let n = param.latest;
    param.versions.insert(
        n,
        ParameterVersion {
            value: stored,
            kind,
            description: description
                .or_else(|| previous.as_ref().and_then(|v| v.description.clone())),
            key_id,
            allowed_pattern: allowed_pattern
                .or_else(|| previous.as_ref().and_then(|v| v.allowed_pattern.clone())),
            tier,
            policies,
            data_type,
            modified_ms: ctx.now_ms,
            modified_user: ctx.user(),
        },
    );
    param.tags.extend(tags);
    res.parameters.insert(name, param);
    Ok(json!({ "Version": n, "Tier": tier.as_str() }))
}

// ---------------------------------------------------------------------------------------
// Reads

fn get_parameter(res: &SsmScope, ctx: &Ctx, input: &Input) -> SsmResult<Value> {
    let full = input.string("Name", 1, 2048)?;
    let decrypt = input.flag("WithDecryption")?;
    let (name, _, n, v, sel) = select(res, ctx, full)?;
    Ok(json!({ "Parameter": parameter_json(res, ctx, &name, n, v, sel.as_deref(), decrypt)? }))
}

fn get_parameters(res: &SsmScope, ctx: &Ctx, input: &Input) -> SsmResult<Value> {
    let names = input.strings("Names", 10, 1, 2048)?;
    let decrypt = input.flag("WithDecryption")?;
    let mut found = Vec::new();
    let mut invalid = Vec::new();
    for full in names {
        match select(res, ctx, full) {
            Ok((name, _, n, v, sel)) => found.push(parameter_json(
                res,
                ctx,
                &name,
                n,
                v,
                sel.as_deref(),
                decrypt,
            )?),
            Err(SsmError::ParameterNotFound(_) | SsmError::ParameterVersionNotFound(_)) => {
                invalid.push(full)
            }
            Err(e) => return Err(e),
        }
    }
    Ok(json!({ "Parameters": found, "InvalidParameters": invalid }))
}

/// A parsed `ParameterStringFilter`.
struct Filter {
    key: String,
    option: String,
    values: Vec<String>,
}

fn parse_filters(input: &Input, allowed: &[&str]) -> SsmResult<Vec<Filter>> {
    let Some(list) = input.opt_structs("ParameterFilters", 50)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for f in list {
        let key = f.string("Key", 1, 132)?.to_string();
        let base = if key.starts_with("tag:") {
            "tag"
        } else {
            key.as_str()
        };
        if !allowed.contains(&base) {
            return Err(SsmError::InvalidFilterKey(format!(
                "The following filter key is not valid: {key}. Valid filter keys include: [{}].",
                allowed.join(", ")
            )));
        }
        let values: Vec<String> = f
            .opt_strings("Values", 50, 1, 1024)?
            .unwrap_or_default()
            .into_iter()
            .map(str::to_string)
            .collect();
        let options: &[&str] = match base {
            "Name" => &["Equals", "BeginsWith", "Contains"],
            "Path" => &["Recursive", "OneLevel"],
            "tag" => &["Equals", "BeginsWith"],
            _ => &["Equals"],
        };
        let option = f
            .opt_string("Option", 1, 10)?
            .unwrap_or(if base == "Path" { "OneLevel" } else { "Equals" })
            .to_string();
        if !options.contains(&option.as_str()) {
            return Err(SsmError::InvalidFilterOption(format!(
                "The filter option {option} is not valid for key {key}. Valid options are: [{}].",
                options.join(", ")
            )));
        }
        if values.is_empty() && base != "tag" {
            return Err(SsmError::InvalidFilterValue(format!(
                "The filter {key} needs at least one value."
            )));
        }
        if base == "Type"
            && let Some(bad) = values.iter().find(|v| ParameterType::parse(v).is_none())
        {
            return Err(SsmError::InvalidFilterValue(format!(
                "The following filter value is not valid: {bad}. Valid values include: [String, StringList, SecureString]."
            )));
        }
        out.push(Filter {
            key,
            option,
            values,
        });
    }
    Ok(out)
}

fn under_path(name: &str, path: &str, recursive: bool) -> bool {
    let prefix = if path.ends_with('/') {
        path.to_string()
    } else {
        format!("{path}/")
    };
    match name.strip_prefix(&prefix) {
        Some(rest) => !rest.is_empty() && (recursive || !rest.contains('/')),
        None => false,
    }
}

fn filter_matches(f: &Filter, name: &str, p: &Parameter, v: &ParameterVersion) -> bool {
    let any = |field: &str| f.values.iter().any(|x| x == field);
    match f.key.as_str() {
        "Name" => {
            let bare = name.trim_start_matches('/');
            f.values.iter().any(|x| {
                let x = x.trim_start_matches('/');
                match f.option.as_str() {
                    "BeginsWith" => bare.starts_with(x),
                    "Contains" => bare.contains(x),
                    _ => bare == x,
                }
            })
        }
        "Path" => f
            .values
            .iter()
            .any(|x| under_path(name, x, f.option == "Recursive")),
        "Type" => any(v.kind.as_str()),
        "KeyId" => v.key_id.as_deref().is_some_and(any),
        "Label" => p.labels.keys().any(|l| any(l)),
        "Tier" => any(v.tier.as_str()),
        "DataType" => any(&v.data_type),
        key => {
            let tag = key.trim_start_matches("tag:");
            match p.tags.get(tag) {
                None => false,
                Some(_) if f.values.is_empty() => true,
                Some(t) if f.option == "BeginsWith" => f.values.iter().any(|x| t.starts_with(x)),
                Some(t) => any(t),
            }
        }
    }
}

fn next_token(input: &Input) -> SsmResult<Option<&str>> {
    Ok(input.opt_string("NextToken", 0, 4096)?)
}

fn get_parameters_by_path(res: &SsmScope, ctx: &Ctx, input: &Input) -> SsmResult<Value> {
    let path = input.string("Path", 1, 2048)?;
    if !path.starts_with('/') {
        return Err(SsmError::Validation(
            "The parameter doesn't meet the parameter name requirements. The parameter name must begin with a forward slash \"/\".".into(),
        ));
    }
    if levels(path) > MAX_LEVELS {
        return Err(SsmError::HierarchyLevelLimitExceeded);
    }
    let recursive = input.flag("Recursive")?;
    let decrypt = input.flag("WithDecryption")?;
    let limit = input.opt_int("MaxResults", 1, 10)?.unwrap_or(10) as usize;
    let filters = parse_filters(
        input,
        &["Type", "KeyId", "Label", "tag", "DataType", "Tier"],
    )?;
    let label = filters
        .iter()
        .find(|f| f.key == "Label")
        .map(|f| f.values.clone());
    let candidates = res.parameters.iter().filter_map(|(name, p)| {
        if !under_path(name, path, recursive) {
            return None;
        }
        // With a Label filter, the labelled version is the one returned.
        let n = match &label {
            Some(ls) => ls.iter().find_map(|l| p.labels.get(l).copied())?,
            None => p.current()?.0,
        };
        let v = p.versions.get(&n)?;
        filters
            .iter()
            .all(|f| filter_matches(f, name, p, v))
            .then_some((name.as_str(), (name, n, v)))
    });
    let (page, token) = json::page(candidates, next_token(input)?, limit)
        .map_err(|_| SsmError::InvalidNextToken)?;
    let params = page
        .into_iter()
        .map(|(name, n, v)| parameter_json(res, ctx, name, n, v, None, decrypt))
        .collect::<SsmResult<Vec<_>>>()?;
    let mut out = json!({ "Parameters": params });
    if let Some(t) = token {
        out["NextToken"] = json!(t);
    }
    Ok(out)
}

fn metadata_json(ctx: &Ctx, name: &str, n: u64, v: &ParameterVersion) -> Value {
    let mut out = json!({
        "Name": name,
        "ARN": ctx.arn(name),
        "Type": v.kind.as_str(),
        "LastModifiedDate": timestamp(v.modified_ms),
        "LastModifiedUser": v.modified_user,
        "Version": n,
        "Tier": v.tier.as_str(),
        "Policies": policies_json(v),
        "DataType": v.data_type,
    });
    if let Some(k) = &v.key_id {
        out["KeyId"] = json!(k);
    }
    if let Some(d) = &v.description {
        out["Description"] = json!(d);
    }
    if let Some(p) = &v.allowed_pattern {
        out["AllowedPattern"] = json!(p);
    }
    out
}

fn describe_parameters(res: &SsmScope, ctx: &Ctx, input: &Input) -> SsmResult<Value> {
    let limit = input.opt_int("MaxResults", 1, 50)?.unwrap_or(50) as usize;
    let mut filters = parse_filters(
        input,
        &[
            "Name", "Path", "Type", "KeyId", "Label", "tag", "DataType", "Tier",
        ],
    )?;
    if let Some(legacy) = input.opt_structs("Filters", 50)? {
        if !filters.is_empty() {
            return Err(SsmError::Validation(
                "You can use either Filters or ParameterFilters in a single request.".into(),
            ));
        }
        for f in legacy {
            let key = f
                .opt_enum("Key", &["Name", "Type", "KeyId"])?
                .ok_or_else(|| json::missing("Key"))?;
            let values = f.strings("Values", 50, 1, 1024)?;
            filters.push(Filter {
                key: key.to_string(),
                option: if key == "Name" {
                    "BeginsWith"
                } else {
                    "Equals"
                }
                .into(),
                values: values.into_iter().map(str::to_string).collect(),
            });
        }
    }
    let candidates = res.parameters.iter().filter_map(|(name, p)| {
        let (n, v) = p.current()?;
        filters
            .iter()
            .all(|f| filter_matches(f, name, p, v))
            .then_some((name.as_str(), metadata_json(ctx, name, n, v)))
    });
    let (page, token) = json::page(candidates, next_token(input)?, limit)
        .map_err(|_| SsmError::InvalidNextToken)?;
    let mut out = json!({ "Parameters": page });
    if let Some(t) = token {
        out["NextToken"] = json!(t);
    }
    Ok(out)
}

fn get_parameter_history(res: &SsmScope, ctx: &Ctx, input: &Input) -> SsmResult<Value> {
    let given = input.string("Name", 1, 2048)?;
    let decrypt = input.flag("WithDecryption")?;
    let limit = input.opt_int("MaxResults", 1, 50)?.unwrap_or(50) as usize;
    let name = resolve_name(res, ctx, given).into_owned();
    let p = res.parameters.get(&name).ok_or_else(|| not_found(given))?;
    let keys: Vec<(String, u64)> = p
        .versions
        .keys()
        .map(|n| (format!("{n:020}"), *n))
        .collect();
    let (page, token) = json::page(
        keys.iter().map(|(k, n)| (k.as_str(), *n)),
        next_token(input)?,
        limit,
    )
    .map_err(|_| SsmError::InvalidNextToken)?;
    let mut list = Vec::new();
    for n in page {
        let Some(v) = p.versions.get(&n) else {
            continue;
        };
        let mut h = metadata_json(ctx, &name, n, v);
        if let Some(o) = h.as_object_mut() {
            o.remove("ARN");
        }
        h["Value"] = json!(shown_value(res, v, decrypt)?);
        h["Labels"] = json!(p.labels_of(n));
        list.push(h);
    }
    let mut out = json!({ "Parameters": list });
    if let Some(t) = token {
        out["NextToken"] = json!(t);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Deletes

fn delete_parameter(res: &mut SsmScope, ctx: &Ctx, input: &Input) -> SsmResult<Value> {
    let given = input.string("Name", 1, 2048)?;
    let name = resolve_name(res, ctx, given).into_owned();
    res.parameters
        .remove(&name)
        .ok_or_else(|| not_found(given))?;
    Ok(json!({}))
}

fn delete_parameters(res: &mut SsmScope, ctx: &Ctx, input: &Input) -> SsmResult<Value> {
    let names = input.strings("Names", 10, 1, 2048)?;
    let mut deleted = Vec::new();
    let mut invalid = Vec::new();
    for given in names {
        let name = resolve_name(res, ctx, given).into_owned();
        if res.parameters.remove(&name).is_some() {
            deleted.push(given);
        } else {
            invalid.push(given);
        }
    }
    Ok(json!({ "DeletedParameters": deleted, "InvalidParameters": invalid }))
}

// ---------------------------------------------------------------------------------------
// Labels

fn valid_label(label: &str) -> bool {
    let lower = label.to_ascii_lowercase();
    !label.is_empty()
        && label.len() <= 100
        && !lower.starts_with("aws")
        && !lower.starts_with("ssm")
        && !label.starts_with(|c: char| c.is_ascii_digit())
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn version_of(p: &Parameter, name: &str, input: &Input, required: bool) -> SsmResult<u64> {
    let n = match input.opt_int("ParameterVersion", i64::MIN, i64::MAX)? {
        Some(n) => n,
        None if required => return Err(json::missing("ParameterVersion").into()),
        None => p.latest as i64,
    };
    let found = u64::try_from(n).ok().filter(|n| p.versions.contains_key(n));
    found.ok_or_else(|| {
        SsmError::ParameterVersionNotFound(format!(
            "Systems Manager could not find version {n} of {name}. Verify the version and try again."
        ))
    })
}

fn label_parameter_version(res: &mut SsmScope, ctx: &Ctx, input: &Input) -> SsmResult<Value> {
    let given = input.string("Name", 1, 2048)?;
    let labels = input.strings("Labels", 10, 1, 100)?;
    let name = resolve_name(res, ctx, given).into_owned();
    let p = res
        .parameters
        .get_mut(&name)
        .ok_or_else(|| not_found(given))?;
    let n = version_of(p, given, input, false)?;
    let mut invalid = Vec::new();
    for l in labels {
        if valid_label(l) {
            p.labels.insert(l.to_string(), n);
        } else {
            invalid.push(l);
        }
    }
    if p.labels_of(n).len() > MAX_LABELS_PER_VERSION {
        return Err(SsmError::LabelLimitExceeded(format!(
            "A parameter version can have a maximum of {MAX_LABELS_PER_VERSION} labels. Move one or more labels to another version and try again."
        )));
    }
    Ok(json!({ "InvalidLabels": invalid, "ParameterVersion": n }))
}

fn unlabel_parameter_version(res: &mut SsmScope, ctx: &Ctx, input: &Input) -> SsmResult<Value> {
    let given = input.string("Name", 1, 2048)?;
    let labels = input.strings("Labels", 10, 1, 100)?;
    let name = resolve_name(res, ctx, given).into_owned();
    let p = res
        .parameters
        .get_mut(&name)
        .ok_or_else(|| not_found(given))?;
    let n = version_of(p, given, input, true)?;
    let mut removed = Vec::new();
    let mut invalid = Vec::new();
    for l in labels {
        if p.labels.get(l) == Some(&n) {
            p.labels.remove(l);
            removed.push(l);
        } else {
            invalid.push(l);
        }
    }
    Ok(json!({ "RemovedLabels": removed, "InvalidLabels": invalid }))
}

// ---------------------------------------------------------------------------------------
// Tags

const RESOURCE_TYPES: &[&str] = &[
    "Document",
    "ManagedInstance",
    "MaintenanceWindow",
    "Parameter",
    "PatchBaseline",
    "OpsItem",
    "OpsMetadata",
    "Automation",
    "Association",
    "CloudConnector",
];

/// The tagged parameter's stored name.
fn tagged(res: &SsmScope, ctx: &Ctx, input: &Input) -> SsmResult<String> {
    let kind = input
        .opt_enum("ResourceType", RESOURCE_TYPES)?
        .ok_or_else(|| json::missing("ResourceType"))?;
    let id = input.string("ResourceId", 1, 2048)?;
    if kind != "Parameter" {
        return Err(SsmError::InvalidResourceType(format!(
            "Resource type {kind} is not supported by this emulator's SSM (Parameter Store only)."
        )));
    }
    let name = resolve_name(res, ctx, id).into_owned();
    if res.parameters.contains_key(&name) {
        return Ok(name);
    }
    // AWS accepts a top-level parameter's id with or without its slash.
    let other = match name.strip_prefix('/') {
        Some(bare) => bare.to_string(),
        None => format!("/{name}"),
    };
    if res.parameters.contains_key(&other) && !other[1..].contains('/') {
        return Ok(other);
    }
    Err(SsmError::InvalidResourceId(format!(
        "The resource ID {id} is not valid. Verify the ID and try again."
    )))
}

fn add_tags(res: &mut SsmScope, ctx: &Ctx, input: &Input) -> SsmResult<Value> {
    let name = tagged(res, ctx, input)?;
    let tags = input
        .opt_tags("Tags", 1000)?
        .ok_or_else(|| json::missing("Tags"))?;
    check_tags(&tags)?;
    let p = res
        .parameters
        .get_mut(&name)
        .ok_or_else(|| not_found(&name))?;
    p.tags.extend(tags);
    if p.tags.len() > MAX_TAGS {
        return Err(SsmError::TooManyTags);
    }
    Ok(json!({}))
}

fn remove_tags(res: &mut SsmScope, ctx: &Ctx, input: &Input) -> SsmResult<Value> {
    let name = tagged(res, ctx, input)?;
    let keys = input
        .opt_strings("TagKeys", 1000, 1, 128)?
        .ok_or_else(|| json::missing("TagKeys"))?;
    let p = res
        .parameters
        .get_mut(&name)
        .ok_or_else(|| not_found(&name))?;
    for k in keys {
        p.tags.remove(k);
    }
    Ok(json!({}))
}

fn list_tags(res: &SsmScope, ctx: &Ctx, input: &Input) -> SsmResult<Value> {
    let name = tagged(res, ctx, input)?;
    let tags: Vec<Value> = res
        .parameters
        .get(&name)
        .map(|p| {
            p.tags
                .iter()
                .map(|(k, v)| json!({"Key": k, "Value": v}))
                .collect()
        })
        .unwrap_or_default();
    Ok(json!({ "TagList": tags }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Ctx {
        Ctx {
            scope: Scope::new("123456789012", "us-east-1"),
            now_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn names_follow_aws_rules() {
        let c = ctx();
        assert!(check_name(&c, "/app/db/password").is_ok());
        assert!(check_name(&c, "plain.name-1_x").is_ok());
        assert!(matches!(
            check_name(&c, "a/b"),
            Err(SsmError::Validation(_))
        ));
        assert!(matches!(
            check_name(&c, "/aws/x"),
            Err(SsmError::Validation(_))
        ));
        assert!(matches!(
            check_name(&c, "SSMthing"),
            Err(SsmError::Validation(_))
        ));
        assert!(matches!(
            check_name(&c, "/a b"),
            Err(SsmError::Validation(_))
        ));
        let deep = "/l".repeat(16);
        assert_eq!(
            check_name(&c, &deep),
            Err(SsmError::HierarchyLevelLimitExceeded)
        );
        assert!(check_name(&c, &format!("/{}", "x".repeat(1000))).is_err());
    }

    #[test]
    fn selectors_split_after_the_arn() {
        let (b, s, shown) = split_selector("arn:aws:ssm:us-east-1:1:parameter/a/b:3");
        assert_eq!(b, "arn:aws:ssm:us-east-1:1:parameter/a/b");
        assert!(matches!(s, Selector::Version(3)));
        assert_eq!(shown, Some(":3"));
        assert!(matches!(
            split_selector("/a:prod").1,
            Selector::Label("prod")
        ));
        assert!(matches!(split_selector("/a").1, Selector::Latest));
    }

    #[test]
    fn paths_match_one_level_or_recursively() {
        assert!(under_path("/a/b", "/a", false));
        assert!(!under_path("/a/b/c", "/a", false));
        assert!(under_path("/a/b/c", "/a/", true));
        assert!(under_path("/x", "/", false));
        assert!(!under_path("/ab", "/a", true));
    }

    #[test]
    fn labels_follow_aws_rules() {
        assert!(valid_label("prod"));
        assert!(!valid_label("1prod"));
        assert!(!valid_label("awsprod"));
        assert!(!valid_label("pro d"));
    }
}
