//! The Secrets Manager operations, on the JSON 1.1 protocol's shapes
//! (`X-Amz-Target: secretsmanager.<Operation>`), with AWS's rules for versions and staging
//! labels, deletion windows, limits and error codes.
//!
//! Writes run on a copy of the scope's secrets inside `StateCell::write`; every write first
//! drops the secrets whose recovery window has ended, and reads treat them as gone, so a
//! secret past its window disappears at the next access.

use base64::Engine;
use cryopod::Scope;
use cryopod::protocol::json::{self, Input, timestamp};
use rand::Rng;
use serde_json::{Map, Value, json};

use crate::error::{Kind, SmError, SmResult, fail};
use crate::password::{self, PasswordSpec};
use crate::state::{
    CURRENT, PENDING, PREVIOUS, Replica, Secret, SecretValue, SecretVersion, SecretsScope,
};

/// Every Secrets Manager operation (botocore `secretsmanager/2017-10-17`), all answered.
pub const OPERATIONS: &[&str] = &[
    "AssociateCrossAccountReplica",
    "BatchGetSecretValue",
    "CancelRotateSecret",
    "CreateSecret",
    "DeleteResourcePolicy",
    "DeleteSecret",
    "DescribeSecret",
    "DisassociateCrossAccountReplica",
    "GetRandomPassword",
    "GetResourcePolicy",
    "GetSecretValue",
    "ListResourcePolicies",
    "ListSecretVersionIds",
    "ListSecrets",
    "PutResourcePolicy",
    "PutSecretValue",
    "RemoveRegionsFromReplication",
    "ReplicateSecretToRegions",
    "RestoreSecret",
    "RotateSecret",
    "StopReplicationToReplica",
    "TagResource",
    "UntagResource",
    "UpdateSecret",
    "UpdateSecretVersionStage",
    "ValidateResourcePolicy",
];

/// Most versions a secret keeps; older versions without labels are dropped beyond it.
pub const MAX_VERSIONS: usize = 100;
/// Most staging labels on one version.
pub const MAX_STAGES_PER_VERSION: usize = 20;
/// Most tags on a secret.
pub const MAX_TAGS: usize = 50;
/// Largest secret value, in bytes.
pub const MAX_VALUE: usize = 65536;
/// The policy name used when a request names none.
pub const DEFAULT_POLICY: &str = "default";
const DAY_MS: i64 = 86_400_000;

/// Where and when a request runs.
#[derive(Clone, Debug)]
pub struct Ctx {
    /// The request's scope.
    pub scope: Scope,
    /// Now, epoch milliseconds (the service's clock).
    pub now_ms: i64,
}

impl Ctx {
    fn arn(&self, name: &str, s: &Secret) -> String {
        format!(
            "arn:aws:secretsmanager:{}:{}:secret:{name}-{}",
            self.scope.region, self.scope.account, s.arn_suffix
        )
    }
}

/// Whether `op` changes state.
pub fn is_write(op: &str) -> bool {
    !matches!(
        op,
        "DescribeSecret"
            | "GetSecretValue"
            | "BatchGetSecretValue"
            | "ListSecrets"
            | "ListSecretVersionIds"
            | "GetResourcePolicy"
            | "ListResourcePolicies"
            | "ValidateResourcePolicy"
            | "GetRandomPassword"
    )
}

/// Runs a write operation.
pub fn write(res: &mut SecretsScope, ctx: &Ctx, op: &str, input: &Input) -> SmResult<Value> {
    let expired: Vec<String> = res
        .secrets
        .iter()
        .filter(|(_, s)| s.is_purged(ctx.now_ms))
        .map(|(n, _)| n.clone())
        .collect();
    for name in expired {
        res.secrets.remove(&name);
    }
    match op {
        "CreateSecret" => create_secret(res, ctx, input),
        "PutSecretValue" => put_secret_value(res, ctx, input),
        "UpdateSecret" => update_secret(res, ctx, input),
        "UpdateSecretVersionStage" => update_version_stage(res, ctx, input),
        "DeleteSecret" => delete_secret(res, ctx, input),
        "RestoreSecret" => restore_secret(res, ctx, input),
        "TagResource" => tag_resource(res, ctx, input),
        "UntagResource" => untag_resource(res, ctx, input),
        "PutResourcePolicy" => put_policy(res, ctx, input),
        "DeleteResourcePolicy" => delete_policy(res, ctx, input),
        "RotateSecret" => rotate_secret(res, ctx, input),
        "CancelRotateSecret" => cancel_rotate(res, ctx, input),
        "ReplicateSecretToRegions" => replicate(res, ctx, input),
        "RemoveRegionsFromReplication" => remove_regions(res, ctx, input),
        "StopReplicationToReplica" => stop_replication(res, ctx, input),
        "AssociateCrossAccountReplica" => associate_cross_account(res, ctx, input),
        "DisassociateCrossAccountReplica" => disassociate_cross_account(res, ctx, input),
        other => Err(unknown(other)),
    }
}

/// Runs a read operation; `res` is `None` for a scope that never held a secret.
pub fn read(res: Option<&SecretsScope>, ctx: &Ctx, op: &str, input: &Input) -> SmResult<Value> {
    let empty = SecretsScope::default();
    let res = res.unwrap_or(&empty);
    match op {
        "DescribeSecret" => describe_secret(res, ctx, input),
        "GetSecretValue" => get_secret_value(res, ctx, input),
        "BatchGetSecretValue" => batch_get(res, ctx, input),
        "ListSecrets" => list_secrets(res, ctx, input),
        "ListSecretVersionIds" => list_version_ids(res, ctx, input),
        "GetResourcePolicy" => get_policy(res, ctx, input),
        "ListResourcePolicies" => list_policies(res, ctx, input),
        "ValidateResourcePolicy" => validate_policy(res, ctx, input),
        "GetRandomPassword" => random_password(input),
        other => Err(unknown(other)),
    }
}

/// The answer to an operation Secrets Manager does not have.
pub fn unknown(op: &str) -> crate::error::Failure {
    cryopod::AwsError::bad_request(
        "UnknownOperationException",
        format!("Secrets Manager has no operation {op}"),
    )
    .into()
}

// ---------------------------------------------------------------------------------------
// Finding secrets and versions

/// The name of the secret `id` (a name, a full ARN or an ARN without the random suffix)
/// names in this scope, if it is there and not past its recovery window.
fn find<'r>(res: &'r SecretsScope, ctx: &Ctx, id: &str) -> SmResult<(&'r String, &'r Secret)> {
    let live = |s: &Secret| !s.is_purged(ctx.now_ms);
    if let Some((name, s)) = res.secrets.get_key_value(id)
        && live(s)
    {
        return Ok((name, s));
    }
    if let Some(rest) = id.strip_prefix(&format!(
        "arn:aws:secretsmanager:{}:{}:secret:",
        ctx.scope.region, ctx.scope.account
    )) {
        for (name, s) in &res.secrets {
            let full = format!("{name}-{}", s.arn_suffix);
            if live(s) && (rest == full || rest == name) {
                return Ok((name, s));
            }
        }
    }
    Err(SmError::no_secret().into())
}

fn secret_id(input: &Input) -> SmResult<&str> {
    Ok(input.string("SecretId", 1, 2048)?)
}

/// The secret a write names, for changing; refused when scheduled for deletion unless
/// `allow_deleted`.
fn find_mut<'r>(
    res: &'r mut SecretsScope,
    ctx: &Ctx,
    input: &Input,
    allow_deleted: bool,
) -> SmResult<(String, &'r mut Secret)> {
    let name = find(res, ctx, secret_id(input)?)?.0.clone();
    let secret = res.secrets.get_mut(&name).ok_or_else(SmError::no_secret)?;
    if secret.deleted_ms.is_some() && !allow_deleted {
        return Err(SmError::deleted().into());
    }
    Ok((name, secret))
}

fn version_id(input: &Input, field: &str) -> SmResult<Option<String>> {
    Ok(input.opt_string(field, 32, 64)?.map(str::to_string))
}

fn new_version_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn arn_suffix() -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::rng();
    (0..6)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

/// The value a request carries: `SecretString` or `SecretBinary`, not both.
fn value_of(input: &Input) -> SmResult<Option<SecretValue>> {
    let text = input.opt_string("SecretString", 1, MAX_VALUE)?;
    let binary = match input.opt_blob_text("SecretBinary", MAX_VALUE)? {
        None => None,
        Some(b64) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| json::serialization(format!("SecretBinary is not base64: {e}")))?;
            if bytes.is_empty() || bytes.len() > MAX_VALUE {
                return Err(json::validation(format!(
                    "1 validation error detected: Value at 'secretBinary' failed to satisfy constraint: Member must have length between 1 and {MAX_VALUE}"
                ))
                .into());
            }
            Some(bytes)
        }
    };
    match (text, binary) {
        (Some(_), Some(_)) => fail(
            Kind::InvalidParameter,
            "You can't specify both a binary secret value and a string secret value in the same secret.",
        ),
        (Some(t), None) => Ok(Some(SecretValue::Text(t.to_string()))),
        (None, Some(b)) => Ok(Some(SecretValue::Binary(b))),
        (None, None) => Ok(None),
    }
}

fn check_name(name: &str) -> SmResult<()> {
    json::check_len("Name", name, 1, 512)?;
    let ok = |c: char| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c);
    if !name.chars().all(ok) {
        return fail(
            Kind::Validation,
            "Invalid name. Must be a valid name containing alphanumeric characters, or any of the following: -/_+=.@!",
        );
    }
    Ok(())
}

fn check_tags(tags: &[(String, String)]) -> SmResult<()> {
    for (k, _) in tags {
        if k.to_ascii_lowercase().starts_with("aws:") {
            return fail(
                Kind::InvalidParameter,
                format!("Invalid tag key {k}: the aws: prefix is reserved for AWS use."),
            );
        }
    }
    Ok(())
}

fn add_tags(secret: &mut Secret, tags: Vec<(String, String)>) -> SmResult<()> {
    check_tags(&tags)?;
    for (k, v) in tags {
        match secret.tags.iter_mut().find(|(key, _)| *key == k) {
            Some(t) => t.1 = v,
            None => secret.tags.push((k, v)),
        }
    }
    if secret.tags.len() > MAX_TAGS {
        return fail(
            Kind::LimitExceeded,
            format!("A secret can have at most {MAX_TAGS} tags."),
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Versions and staging labels

/// Moves `stage` to version `id`; when `AWSCURRENT` moves, the version it leaves gets
/// `AWSPREVIOUS`, as AWS does.
fn move_stage(secret: &mut Secret, stage: &str, id: &str) {
    let from = secret.stages.insert(stage.to_string(), id.to_string());
    if stage == CURRENT
        && let Some(old) = from
        && old != id
    {
        secret.stages.insert(PREVIOUS.to_string(), old);
    }
}

/// Adds a version with `stages` (AWS's idempotency rule: the same id with the same value is
/// a repeat, with another value an error), then drops the oldest unlabelled versions beyond
/// [`MAX_VERSIONS`].
fn add_version(
    secret: &mut Secret,
    id: String,
    value: SecretValue,
    stages: &[&str],
    now_ms: i64,
) -> SmResult<Vec<String>> {
    if let Some(existing) = secret.versions.get(&id) {
        if existing.value != value {
            return fail(
                Kind::ResourceExists,
                "You can't modify an existing version, you can only create a new version.",
            );
        }
        return Ok(secret
            .stages_of(&id)
            .into_iter()
            .map(str::to_string)
            .collect());
    }
    if stages.len() > MAX_STAGES_PER_VERSION {
        return fail(
            Kind::LimitExceeded,
            format!("A version can have at most {MAX_STAGES_PER_VERSION} staging labels."),
        );
    }
    secret.versions.insert(
        id.clone(),
        SecretVersion {
            value,
            created_ms: now_ms,
            kms_key_id: secret.kms_key_id.clone(),
        },
    );
    for stage in stages {
        move_stage(secret, stage, &id);
    }
    prune_versions(secret)?;
    secret.changed_ms = now_ms;
    Ok(stages.iter().map(|s| s.to_string()).collect())
}

fn prune_versions(secret: &mut Secret) -> SmResult<()> {
    while secret.versions.len() > MAX_VERSIONS {
        let oldest = secret
            .versions
            .iter()
            .filter(|(id, _)| !secret.stages.values().any(|v| v == *id))
            .min_by_key(|(id, v)| (v.created_ms, (*id).clone()))
            .map(|(id, _)| id.clone());
        match oldest {
            Some(id) => {
                secret.versions.remove(&id);
            }
            None => {
                return fail(
                    Kind::LimitExceeded,
                    format!(
                        "A secret can have at most {MAX_VERSIONS} versions, and every version has a staging label."
                    ),
                );
            }
        }
    }
    Ok(())
}

fn stages_input(input: &Input) -> SmResult<Option<Vec<&str>>> {
    let stages = input.opt_strings("VersionStages", MAX_STAGES_PER_VERSION, 1, 256)?;
    if stages.as_ref().is_some_and(Vec::is_empty) {
        return Err(json::validation(
            "1 validation error detected: Value '[]' at 'versionStages' failed to satisfy constraint: Member must have length greater than or equal to 1",
        )
        .into());
    }
    Ok(stages)
}

// ---------------------------------------------------------------------------------------
// Create, put, update

fn create_secret(res: &mut SecretsScope, ctx: &Ctx, input: &Input) -> SmResult<Value> {
    let name = input.string("Name", 1, 512)?.to_string();
    check_name(&name)?;
    let token = version_id(input, "ClientRequestToken")?;
    let description = input
        .opt_string("Description", 0, 2048)?
        .map(str::to_string);
    let kms_key_id = input
        .opt_string("KmsKeyId", 0, 2048)?
        .filter(|k| !k.is_empty())
        .map(str::to_string);
    let kind = input.opt_string("Type", 0, 256)?.map(str::to_string);
    let value = value_of(input)?;
    let tags = input.opt_tags("Tags", 1000)?.unwrap_or_default();
    let replicas = replica_regions(input, false)?;
    if let Some(existing) = res.secrets.get(&name) {
        if existing.deleted_ms.is_some() {
            return fail(
                Kind::InvalidRequest,
                "You can't create this secret because a secret with this name is already scheduled for deletion.",
            );
        }
        // A retry of the same create (same token and value) answers as the first did.
        if let (Some(t), Some(v)) = (&token, &value)
            && existing.versions.get(t).is_some_and(|e| &e.value == v)
        {
            return Ok(json!({"ARN": ctx.arn(&name, existing), "Name": name, "VersionId": t}));
        }
        return fail(
            Kind::ResourceExists,
            format!("The operation failed because the secret {name} already exists."),
        );
    }
    let mut secret = Secret {
        arn_suffix: arn_suffix(),
        description,
        kms_key_id,
        kind,
        created_ms: ctx.now_ms,
        changed_ms: ctx.now_ms,
        ..Default::default()
    };
    add_tags(&mut secret, tags)?;
    for (region, key) in replicas {
        secret.replicas.insert(
            region,
            Replica {
                kms_key_id: key,
                status: "InSync".into(),
            },
        );
    }
    let mut out = json!({"ARN": ctx.arn(&name, &secret), "Name": name});
    if let Some(v) = value {
        let id = token.unwrap_or_else(new_version_id);
        add_version(&mut secret, id.clone(), v, &[CURRENT], ctx.now_ms)?;
        out["VersionId"] = json!(id);
    }
    if !secret.replicas.is_empty() {
        out["ReplicationStatus"] = replication_json(&secret);
    }
    res.secrets.insert(name, secret);
    Ok(out)
}

fn put_secret_value(res: &mut SecretsScope, ctx: &Ctx, input: &Input) -> SmResult<Value> {
    let token = version_id(input, "ClientRequestToken")?;
    let value = value_of(input)?;
    let stages = stages_input(input)?;
    input.opt_string("RotationToken", 36, 256)?;
    let (name, secret) = find_mut(res, ctx, input, false)?;
    let Some(value) = value else {
        return fail(
            Kind::InvalidRequest,
            "You must provide either SecretString or SecretBinary.",
        );
    };
    let id = token.unwrap_or_else(new_version_id);
    let stages = stages.unwrap_or_else(|| vec![CURRENT]);
    let stages = add_version(secret, id.clone(), value, &stages, ctx.now_ms)?;
    Ok(json!({
        "ARN": ctx.arn(&name, secret),
        "Name": name,
        "VersionId": id,
        "VersionStages": stages,
    }))
}

fn update_secret(res: &mut SecretsScope, ctx: &Ctx, input: &Input) -> SmResult<Value> {
    let token = version_id(input, "ClientRequestToken")?;
    let description = input
        .opt_string("Description", 0, 2048)?
        .map(str::to_string);
    let kms_key_id = input.opt_string("KmsKeyId", 0, 2048)?.map(str::to_string);
    let kind = input.opt_string("Type", 0, 256)?.map(str::to_string);
    let value = value_of(input)?;
    let (name, secret) = find_mut(res, ctx, input, false)?;
    if let Some(d) = description {
        secret.description = Some(d);
    }
    if let Some(k) = kms_key_id {
        secret.kms_key_id = Some(k).filter(|k| !k.is_empty());
    }
    if let Some(t) = kind {
        secret.kind = Some(t);
    }
    secret.changed_ms = ctx.now_ms;
    let mut out = json!({"ARN": ctx.arn(&name, secret), "Name": name});
    if let Some(v) = value {
        let id = token.unwrap_or_else(new_version_id);
        add_version(secret, id.clone(), v, &[CURRENT], ctx.now_ms)?;
        out["VersionId"] = json!(id);
    }
    Ok(out)
}

fn update_version_stage(res: &mut SecretsScope, ctx: &Ctx, input: &Input) -> SmResult<Value> {
    let stage = input.string("VersionStage", 1, 256)?.to_string();
    let remove_from = version_id(input, "RemoveFromVersionId")?;
    let move_to = version_id(input, "MoveToVersionId")?;
    let (name, secret) = find_mut(res, ctx, input, false)?;
    for id in remove_from.iter().chain(move_to.iter()) {
        if !secret.versions.contains_key(id) {
            return fail(
                Kind::ResourceNotFound,
                format!("Secrets Manager can't find the specified secret version: {id}."),
            );
        }
    }
    let holder = secret.stages.get(&stage).cloned();
    if let Some(h) = &holder
        && move_to.as_deref() != Some(h.as_str())
        && remove_from.as_deref() != Some(h.as_str())
    {
        return fail(
            Kind::InvalidParameter,
            format!(
                "The parameter RemoveFromVersionId can't be empty. Staging label {stage} is currently attached to version {h}, so you must explicitly reference that version in RemoveFromVersionId."
            ),
        );
    }
    if let (Some(from), None) = (&remove_from, &holder)
        && move_to.is_none()
    {
        return fail(
            Kind::InvalidParameter,
            format!("The staging label {stage} is not attached to version {from}."),
        );
    }
    match &move_to {
        Some(to) => {
            if secret.stages_of(to).len() >= MAX_STAGES_PER_VERSION
                && holder.as_deref() != Some(to.as_str())
            {
                return fail(
                    Kind::LimitExceeded,
                    format!("A version can have at most {MAX_STAGES_PER_VERSION} staging labels."),
                );
            }
            move_stage(secret, &stage, to);
        }
        None => {
            if stage == CURRENT {
                return fail(
                    Kind::InvalidParameter,
                    "You can't remove the AWSCURRENT staging label without moving it to another version.",
                );
            }
            secret.stages.remove(&stage);
        }
    }
    secret.changed_ms = ctx.now_ms;
    prune_versions(secret)?;
    Ok(json!({"ARN": ctx.arn(&name, secret), "Name": name}))
}

// ---------------------------------------------------------------------------------------
// Delete and restore

fn delete_secret(res: &mut SecretsScope, ctx: &Ctx, input: &Input) -> SmResult<Value> {
    let window = input.opt_int("RecoveryWindowInDays", i64::MIN, i64::MAX)?;
    let force = input.flag("ForceDeleteWithoutRecovery")?;
    if force && window.is_some() {
        return fail(
            Kind::InvalidParameter,
            "You can't use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays.",
        );
    }
    if let Some(w) = window
        && !(7..=30).contains(&w)
    {
        return fail(
            Kind::InvalidParameter,
            "The RecoveryWindowInDays value must be between 7 and 30 days (inclusive).",
        );
    }
    let (name, secret) = find_mut(res, ctx, input, force)?;
    let arn = ctx.arn(&name, secret);
    if force {
        res.secrets.remove(&name);
        return Ok(json!({"ARN": arn, "Name": name, "DeletionDate": timestamp(ctx.now_ms)}));
    }
    let purge = ctx.now_ms + window.unwrap_or(30) * DAY_MS;
    secret.deleted_ms = Some(ctx.now_ms);
    secret.purge_ms = Some(purge);
    Ok(json!({"ARN": arn, "Name": name, "DeletionDate": timestamp(purge)}))
}

fn restore_secret(res: &mut SecretsScope, ctx: &Ctx, input: &Input) -> SmResult<Value> {
    let (name, secret) = find_mut(res, ctx, input, true)?;
    secret.deleted_ms = None;
    secret.purge_ms = None;
    secret.changed_ms = ctx.now_ms;
    Ok(json!({"ARN": ctx.arn(&name, secret), "Name": name}))
}

// ---------------------------------------------------------------------------------------
// Reads

fn value_fields(out: &mut Value, v: &SecretVersion) {
    match &v.value {
        SecretValue::Text(t) => out["SecretString"] = json!(t),
        SecretValue::Binary(b) => {
            out["SecretBinary"] = json!(base64::engine::general_purpose::STANDARD.encode(b))
        }
    }
}

/// The version a `GetSecretValue` asks for: by id, by label, or both (which must agree).
fn pick_version<'s>(
    s: &'s Secret,
    id: Option<&str>,
    stage: Option<&str>,
) -> SmResult<(&'s str, &'s SecretVersion)> {
    let id = match (id, stage) {
        (Some(id), Some(stage)) => {
            if s.stages.get(stage).map(String::as_str) != Some(id) {
                return fail(
                    Kind::ResourceNotFound,
                    format!(
                        "Secrets Manager can't find the specified secret value for VersionId: {id} and staging label: {stage}"
                    ),
                );
            }
            id.to_string()
        }
        (Some(id), None) => id.to_string(),
        (None, stage) => {
            let stage = stage.unwrap_or(CURRENT);
            s.stages.get(stage).cloned().ok_or_else(|| {
                SmError::new(
                    Kind::ResourceNotFound,
                    format!(
                        "Secrets Manager can't find the specified secret value for staging label: {stage}"
                    ),
                )
            })?
        }
    };
    s.versions
        .get_key_value(&id)
        .map(|(k, v)| (k.as_str(), v))
        .ok_or_else(|| {
            SmError::new(
                Kind::ResourceNotFound,
                format!(
                    "Secrets Manager can't find the specified secret value for VersionId: {id}"
                ),
            )
            .into()
        })
}

fn value_json(ctx: &Ctx, name: &str, s: &Secret, id: &str, v: &SecretVersion) -> Value {
    let mut out = json!({
        "ARN": ctx.arn(name, s),
        "Name": name,
        "VersionId": id,
        "VersionStages": s.stages_of(id),
        "CreatedDate": timestamp(v.created_ms),
    });
    value_fields(&mut out, v);
    out
}

fn get_secret_value(res: &SecretsScope, ctx: &Ctx, input: &Input) -> SmResult<Value> {
    let id = input.opt_string("VersionId", 32, 64)?;
    let stage = input.opt_string("VersionStage", 1, 256)?;
    let (name, s) = find(res, ctx, secret_id(input)?)?;
    if s.deleted_ms.is_some() {
        return Err(SmError::deleted().into());
    }
    let (vid, v) = pick_version(s, id, stage)?;
    Ok(value_json(ctx, name, s, vid, v))
}

fn rotation_fields(out: &mut Map<String, Value>, s: &Secret) {
    let r = &s.rotation;
    out.insert("RotationEnabled".into(), json!(r.enabled));
    if let Some(a) = &r.lambda_arn {
        out.insert("RotationLambdaARN".into(), json!(a));
    }
    let mut rules = Map::new();
    if let Some(d) = r.after_days {
        rules.insert("AutomaticallyAfterDays".into(), json!(d));
    }
    if let Some(d) = &r.duration {
        rules.insert("Duration".into(), json!(d));
    }
    if let Some(e) = &r.schedule {
        rules.insert("ScheduleExpression".into(), json!(e));
    }
    if !rules.is_empty() {
        out.insert("RotationRules".into(), Value::Object(rules));
    }
    if !r.external_metadata.is_empty() {
        out.insert(
            "ExternalSecretRotationMetadata".into(),
            r.external_metadata
                .iter()
                .map(|(k, v)| json!({"Key": k, "Value": v}))
                .collect(),
        );
    }
    if let Some(a) = &r.external_role_arn {
        out.insert("ExternalSecretRotationRoleArn".into(), json!(a));
    }
    if let Some(t) = r.last_rotated_ms {
        out.insert("LastRotatedDate".into(), timestamp(t));
        if r.enabled
            && let Some(d) = r.after_days
        {
            out.insert("NextRotationDate".into(), timestamp(t + d * DAY_MS));
        }
    }
}

/// The metadata `DescribeSecret` and `ListSecrets` share.
fn metadata(ctx: &Ctx, name: &str, s: &Secret, stages_field: &str) -> Value {
    let mut out = Map::new();
    out.insert("ARN".into(), json!(ctx.arn(name, s)));
    out.insert("Name".into(), json!(name));
    for (field, v) in [
        ("Description", &s.description),
        ("KmsKeyId", &s.kms_key_id),
        ("Type", &s.kind),
    ] {
        if let Some(v) = v {
            out.insert(field.into(), json!(v));
        }
    }
    rotation_fields(&mut out, s);
    out.insert("LastChangedDate".into(), timestamp(s.changed_ms));
    out.insert("CreatedDate".into(), timestamp(s.created_ms));
    if let Some(d) = s.deleted_ms {
        out.insert("DeletedDate".into(), timestamp(d));
    }
    out.insert(
        "Tags".into(),
        s.tags
            .iter()
            .map(|(k, v)| json!({"Key": k, "Value": v}))
            .collect(),
    );
    let mut by_version: Map<String, Value> = Map::new();
    for (stage, id) in &s.stages {
        match by_version.get_mut(id) {
            Some(Value::Array(a)) => a.push(json!(stage)),
            _ => {
                by_version.insert(id.clone(), json!([stage]));
            }
        }
    }
    out.insert(stages_field.into(), Value::Object(by_version));
    if !s.replicas.is_empty() {
        out.insert("PrimaryRegion".into(), json!(ctx.scope.region));
    }
    Value::Object(out)
}

fn replication_json(s: &Secret) -> Value {
    s.replicas
        .iter()
        .map(|(region, r)| {
            let mut e = json!({"Region": region, "Status": r.status});
            if let Some(k) = &r.kms_key_id {
                e["KmsKeyId"] = json!(k);
            }
            e
        })
        .collect()
}

fn describe_secret(res: &SecretsScope, ctx: &Ctx, input: &Input) -> SmResult<Value> {
    let (name, s) = find(res, ctx, secret_id(input)?)?;
    let mut out = metadata(ctx, name, s, "VersionIdsToStages");
    if !s.replicas.is_empty() {
        out["ReplicationStatus"] = replication_json(s);
    }
    if !s.cross_account.is_empty() {
        out["CrossAccountReplicas"] = s
            .cross_account
            .iter()
            .map(|(arn, role)| {
                let mut e = json!({"ReplicaSecretARN": arn, "ReplicationStatus": "InSync"});
                if let Some(r) = role {
                    e["ReplicationRoleARN"] = json!(r);
                }
                e
            })
            .collect();
    }
    Ok(out)
}

/// A parsed `Filter` of `ListSecrets` and `BatchGetSecretValue`.
struct Filter {
    key: String,
    values: Vec<String>,
}

const FILTER_KEYS: &[&str] = &[
    "description",
    "name",
    "tag-key",
    "tag-value",
    "primary-region",
    "owning-service",
    "all",
];

fn filters(input: &Input) -> SmResult<Option<Vec<Filter>>> {
    let Some(list) = input.opt_structs("Filters", 10)? else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for f in list {
        let key = f
            .opt_enum("Key", FILTER_KEYS)?
            .ok_or_else(|| json::missing("Key"))?
            .to_string();
        let values = f.strings("Values", 10, 0, 512)?;
        let ok = |c: char| c.is_ascii_alphanumeric() || " :_@/+=.-!".contains(c);
        if let Some(bad) = values.iter().find(|v| !v.chars().all(ok)) {
            return Err(json::constraint(
                bad,
                "Values",
                "Member must satisfy regular expression pattern: ^\\!?[a-zA-Z0-9 :_@\\/\\+\\=\\.\\-\\!]*$",
            )
            .into());
        }
        out.push(Filter {
            key,
            values: values.into_iter().map(str::to_string).collect(),
        });
    }
    Ok(Some(out))
}

/// AWS's filter semantics: values of one filter are alternatives, filters all apply, a
/// value starting with `!` negates, names and tags match by case-sensitive prefix,
/// descriptions and `all` by case-insensitive prefix of a word.
fn filter_matches(f: &Filter, ctx: &Ctx, name: &str, s: &Secret) -> bool {
    let fields: Vec<&str> = match f.key.as_str() {
        "name" => vec![name],
        "description" => s.description.iter().map(String::as_str).collect(),
        "tag-key" => s.tags.iter().map(|(k, _)| k.as_str()).collect(),
        "tag-value" => s.tags.iter().map(|(_, v)| v.as_str()).collect(),
        "primary-region" => {
            if s.replicas.is_empty() {
                vec![]
            } else {
                vec![ctx.scope.region.as_str()]
            }
        }
        "owning-service" => vec![],
        _ => {
            let mut all = vec![name];
            all.extend(s.description.iter().map(String::as_str));
            all.extend(s.tags.iter().flat_map(|(k, v)| [k.as_str(), v.as_str()]));
            all
        }
    };
    let insensitive = matches!(f.key.as_str(), "description" | "all");
    let hit = |value: &str| {
        fields.iter().any(|field| {
            if insensitive {
                let (field, value) = (field.to_lowercase(), value.to_lowercase());
                field.starts_with(&value) || field.split(' ').any(|w| w.starts_with(&value))
            } else {
                field.starts_with(value)
            }
        })
    };
    let (negated, plain): (Vec<&String>, Vec<&String>) =
        f.values.iter().partition(|v| v.starts_with('!'));
    let plain_ok = plain.is_empty() || plain.iter().any(|v| hit(v));
    let negated_ok = negated.iter().all(|v| !hit(&v[1..]));
    plain_ok && negated_ok
}

/// One page of `items` (already in the answer's order), with a token naming the offset.
fn page_of<T>(
    items: Vec<T>,
    token: Option<&str>,
    limit: usize,
) -> SmResult<(Vec<T>, Option<String>)> {
    let keys: Vec<String> = (0..items.len()).map(|i| format!("{i:010}")).collect();
    json::page(keys.iter().map(String::as_str).zip(items), token, limit).map_err(|_| {
        SmError::new(Kind::InvalidNextToken, "The NextToken value is not valid.").into()
    })
}

fn list_secrets(res: &SecretsScope, ctx: &Ctx, input: &Input) -> SmResult<Value> {
    let include_deleted = input.flag("IncludePlannedDeletion")?;
    let limit = input.opt_int("MaxResults", 1, 100)?.unwrap_or(100) as usize;
    let token = input.opt_string("NextToken", 1, 4096)?;
    let filters = filters(input)?.unwrap_or_default();
    let order = input
        .opt_enum("SortOrder", &["asc", "desc"])?
        .unwrap_or("desc");
    let by = input
        .opt_enum(
            "SortBy",
            &[
                "created-date",
                "last-accessed-date",
                "last-changed-date",
                "name",
            ],
        )?
        .unwrap_or("created-date");
    let mut found: Vec<(&String, &Secret)> = res
        .secrets
        .iter()
        .filter(|(_, s)| !s.is_purged(ctx.now_ms))
        .filter(|(_, s)| include_deleted || s.deleted_ms.is_none())
        .filter(|(n, s)| filters.iter().all(|f| filter_matches(f, ctx, n, s)))
        .collect();
    found.sort_by(|(an, a), (bn, b)| {
        let o = match by {
            "name" => an.cmp(bn),
            "last-changed-date" => a.changed_ms.cmp(&b.changed_ms).then(an.cmp(bn)),
            _ => a.created_ms.cmp(&b.created_ms).then(an.cmp(bn)),
        };
        if order == "desc" { o.reverse() } else { o }
    });
    let (page, next) = page_of(found, token, limit)?;
    let list: Vec<Value> = page
        .into_iter()
        .map(|(n, s)| metadata(ctx, n, s, "SecretVersionsToStages"))
        .collect();
    let mut out = json!({"SecretList": list});
    if let Some(t) = next {
        out["NextToken"] = json!(t);
    }
    Ok(out)
}

fn batch_get(res: &SecretsScope, ctx: &Ctx, input: &Input) -> SmResult<Value> {
    let ids = input.opt_strings("SecretIdList", 20, 1, 2048)?;
    let filters = filters(input)?;
    let limit = input.opt_int("MaxResults", 1, 20)?;
    let token = input.opt_string("NextToken", 1, 4096)?;
    let mut values = Vec::new();
    let mut errors = Vec::new();
    let mut next = None;
    match (ids, filters) {
        (Some(ids), None) => {
            if ids.is_empty() {
                return Err(json::missing("SecretIdList").into());
            }
            if limit.is_some() {
                return fail(
                    Kind::InvalidParameter,
                    "'MaxResults' is only valid when 'Filters' is provided.",
                );
            }
            for id in ids {
                let got = find(res, ctx, id).and_then(|(name, s)| {
                    if s.deleted_ms.is_some() {
                        return Err(SmError::deleted().into());
                    }
                    let (vid, v) = pick_version(s, None, None)?;
                    Ok(value_json(ctx, name, s, vid, v))
                });
                match got {
                    Ok(v) => values.push(v),
                    Err(crate::error::Failure::Service(e)) => errors.push(json!({
                        "SecretId": id,
                        "ErrorCode": e.kind.code(),
                        "Message": e.message,
                    })),
                    Err(e) => return Err(e),
                }
            }
        }
        (None, Some(filters)) => {
            let found: Vec<(&String, &Secret)> = res
                .secrets
                .iter()
                .filter(|(_, s)| !s.is_purged(ctx.now_ms) && s.deleted_ms.is_none())
                .filter(|(n, s)| filters.iter().all(|f| filter_matches(f, ctx, n, s)))
                .collect();
            let (page, t) = page_of(found, token, limit.unwrap_or(20) as usize)?;
            next = t;
            for (name, s) in page {
                if let Ok((vid, v)) = pick_version(s, None, None) {
                    values.push(value_json(ctx, name, s, vid, v));
                }
            }
        }
        _ => {
            return fail(
                Kind::InvalidParameter,
                "Either 'SecretIdList' or 'Filters' must be provided, but not both.",
            );
        }
    }
    let mut out = json!({"SecretValues": values, "Errors": errors});
    if let Some(t) = next {
        out["NextToken"] = json!(t);
    }
    Ok(out)
}

fn list_version_ids(res: &SecretsScope, ctx: &Ctx, input: &Input) -> SmResult<Value> {
    let limit = input.opt_int("MaxResults", 1, 100)?.unwrap_or(100) as usize;
    let token = input.opt_string("NextToken", 1, 4096)?;
    let deprecated = input.flag("IncludeDeprecated")?;
    let (name, s) = find(res, ctx, secret_id(input)?)?;
    let mut versions: Vec<(&String, &SecretVersion)> = s
        .versions
        .iter()
        .filter(|(id, _)| deprecated || !s.stages_of(id).is_empty())
        .collect();
    versions.sort_by(|(ai, a), (bi, b)| b.created_ms.cmp(&a.created_ms).then(ai.cmp(bi)));
    let (page, next) = page_of(versions, token, limit)?;
    let list: Vec<Value> = page
        .into_iter()
        .map(|(id, v)| {
            let mut e = json!({
                "VersionId": id,
                "VersionStages": s.stages_of(id),
                "CreatedDate": timestamp(v.created_ms),
            });
            if let Some(k) = &v.kms_key_id {
                e["KmsKeyIds"] = json!([k]);
            }
            e
        })
        .collect();
    let mut out = json!({"ARN": ctx.arn(name, s), "Name": name, "Versions": list});
    if let Some(t) = next {
        out["NextToken"] = json!(t);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Tags

fn tag_resource(res: &mut SecretsScope, ctx: &Ctx, input: &Input) -> SmResult<Value> {
    let tags = input
        .opt_tags("Tags", 1000)?
        .ok_or_else(|| json::missing("Tags"))?;
    let (_, secret) = find_mut(res, ctx, input, false)?;
    add_tags(secret, tags)?;
    secret.changed_ms = ctx.now_ms;
    Ok(json!({}))
}

fn untag_resource(res: &mut SecretsScope, ctx: &Ctx, input: &Input) -> SmResult<Value> {
    let keys = input
        .opt_strings("TagKeys", 1000, 1, 128)?
        .ok_or_else(|| json::missing("TagKeys"))?;
    let (_, secret) = find_mut(res, ctx, input, false)?;
    secret.tags.retain(|(k, _)| !keys.contains(&k.as_str()));
    secret.changed_ms = ctx.now_ms;
    Ok(json!({}))
}

// ---------------------------------------------------------------------------------------
// Resource policies

fn policy_name(input: &Input) -> SmResult<String> {
    let name = input
        .opt_string("PolicyName", 1, 64)?
        .unwrap_or(DEFAULT_POLICY);
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(json::constraint(
            name,
            "PolicyName",
            "Member must satisfy regular expression pattern: [0-9A-Za-z\\-\\_]+",
        )
        .into());
    }
    Ok(name.to_string())
}

/// Parses a policy document; AWS refuses what is not a JSON object.
fn parse_policy(doc: &str) -> SmResult<Value> {
    match serde_json::from_str::<Value>(doc) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => fail(
            Kind::MalformedPolicyDocument,
            "This resource policy contains a syntax error.",
        ),
    }
}

/// Whether a policy allows anyone (`"Principal": "*"` or `{"AWS": "*"}`) in.
fn is_public(policy: &Value) -> bool {
    let statements = match policy.get("Statement") {
        Some(Value::Array(a)) => a.clone(),
        Some(s @ Value::Object(_)) => vec![s.clone()],
        _ => vec![],
    };
    statements.iter().any(|s| {
        let allow = s.get("Effect").and_then(Value::as_str) == Some("Allow");
        let star = |v: &Value| match v {
            Value::String(p) => p == "*",
            Value::Array(a) => a.iter().any(|p| p.as_str() == Some("*")),
            _ => false,
        };
        let principal = match s.get("Principal") {
            Some(p @ Value::String(_)) => star(p),
            Some(Value::Object(m)) => m.get("AWS").is_some_and(star),
            _ => false,
        };
        allow && principal
    })
}

fn put_policy(res: &mut SecretsScope, ctx: &Ctx, input: &Input) -> SmResult<Value> {
    let doc = input.string("ResourcePolicy", 1, 20480)?.to_string();
    let pname = policy_name(input)?;
    let block = input.opt_bool("BlockPublicPolicy")?.unwrap_or(false);
    let parsed = parse_policy(&doc)?;
    if block && is_public(&parsed) {
        return fail(
            Kind::PublicPolicy,
            "The BlockPublicPolicy parameter is set to true, and the resource policy did not prevent broad access to the secret.",
        );
    }
    let (name, secret) = find_mut(res, ctx, input, false)?;
    secret.policies.insert(pname.clone(), doc);
    secret.changed_ms = ctx.now_ms;
    Ok(json!({"ARN": ctx.arn(&name, secret), "Name": name, "PolicyName": pname}))
}

fn delete_policy(res: &mut SecretsScope, ctx: &Ctx, input: &Input) -> SmResult<Value> {
    let pname = policy_name(input)?;
    let (name, secret) = find_mut(res, ctx, input, false)?;
    secret.policies.remove(&pname);
    secret.changed_ms = ctx.now_ms;
    Ok(json!({"ARN": ctx.arn(&name, secret), "Name": name, "PolicyName": pname}))
}

fn get_policy(res: &SecretsScope, ctx: &Ctx, input: &Input) -> SmResult<Value> {
    let pname = policy_name(input)?;
    let (name, s) = find(res, ctx, secret_id(input)?)?;
    let mut out = json!({"ARN": ctx.arn(name, s), "Name": name});
    if let Some(doc) = s.policies.get(&pname) {
        out["ResourcePolicy"] = json!(doc);
        out["PolicyName"] = json!(pname);
    }
    Ok(out)
}

fn list_policies(res: &SecretsScope, ctx: &Ctx, input: &Input) -> SmResult<Value> {
    let limit = input.opt_int("MaxResults", 1, 100)?.unwrap_or(100) as usize;
    let token = input.opt_string("NextToken", 1, 4096)?;
    let (_, s) = find(res, ctx, secret_id(input)?)?;
    let names: Vec<&String> = s.policies.keys().collect();
    let (page, next) = page_of(names, token, limit)?;
    let mut out = json!({
        "ResourcePolicies": page.into_iter().map(|n| json!({"PolicyName": n})).collect::<Vec<_>>()
    });
    if let Some(t) = next {
        out["NextToken"] = json!(t);
    }
    Ok(out)
}

fn validate_policy(res: &SecretsScope, ctx: &Ctx, input: &Input) -> SmResult<Value> {
    let doc = input.string("ResourcePolicy", 1, 20480)?;
    if let Some(id) = input.opt_string("SecretId", 1, 2048)? {
        find(res, ctx, id)?;
    }
    parse_policy(doc)?;
    Ok(json!({"PolicyValidationPassed": true, "ValidationErrors": []}))
}

// ---------------------------------------------------------------------------------------
// Rotation

fn rotate_secret(res: &mut SecretsScope, ctx: &Ctx, input: &Input) -> SmResult<Value> {
    let token = version_id(input, "ClientRequestToken")?;
    let lambda = input
        .opt_string("RotationLambdaARN", 0, 2048)?
        .map(str::to_string);
    let rules = input.opt_struct("RotationRules")?;
    let metadata = input.opt_structs("ExternalSecretRotationMetadata", 100)?;
    let role = input
        .opt_string("ExternalSecretRotationRoleArn", 20, 2048)?
        .map(str::to_string);
    input.opt_bool("RotateImmediately")?;
    let mut parsed_rules = None;
    if let Some(r) = &rules {
        let days = r.opt_int("AutomaticallyAfterDays", 1, 1000)?;
        let duration = r.opt_string("Duration", 2, 3)?.map(str::to_string);
        let schedule = r
            .opt_string("ScheduleExpression", 1, 256)?
            .map(str::to_string);
        if days.is_some() && schedule.is_some() {
            return fail(
                Kind::InvalidParameter,
                "You can't specify both AutomaticallyAfterDays and ScheduleExpression.",
            );
        }
        parsed_rules = Some((days, duration, schedule));
    }
    let mut parsed_meta = None;
    if let Some(m) = metadata {
        let mut map = std::collections::BTreeMap::new();
        for item in m {
            map.insert(
                item.string("Key", 1, 256)?.to_string(),
                item.string("Value", 1, 2048)?.to_string(),
            );
        }
        parsed_meta = Some(map);
    }
    let (name, secret) = find_mut(res, ctx, input, false)?;
    let r = &mut secret.rotation;
    if let Some(l) = lambda {
        r.lambda_arn = Some(l).filter(|l| !l.is_empty());
    }
    if let Some((days, duration, schedule)) = parsed_rules {
        r.after_days = days;
        r.duration = duration;
        r.schedule = schedule;
    }
    if let Some(m) = parsed_meta {
        r.external_metadata = m;
    }
    if role.is_some() {
        r.external_role_arn = role;
    }
    if r.lambda_arn.is_none() && r.external_role_arn.is_none() {
        return fail(
            Kind::InvalidRequest,
            "No Lambda rotation function ARN is associated with this secret.",
        );
    }
    r.enabled = true;
    r.last_rotated_ms = Some(ctx.now_ms);
    secret.changed_ms = ctx.now_ms;
    // The rotation function would create this version; until Lambda runs code, only the
    // configuration is kept, and the id the rotation would use is returned.
    let id = token.unwrap_or_else(new_version_id);
    Ok(json!({"ARN": ctx.arn(&name, secret), "Name": name, "VersionId": id}))
}

fn cancel_rotate(res: &mut SecretsScope, ctx: &Ctx, input: &Input) -> SmResult<Value> {
    let (name, secret) = find_mut(res, ctx, input, false)?;
    secret.rotation.enabled = false;
    let pending = secret.stages.remove(PENDING);
    secret.changed_ms = ctx.now_ms;
    let mut out = json!({"ARN": ctx.arn(&name, secret), "Name": name});
    if let Some(id) = pending {
        out["VersionId"] = json!(id);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Replication (recorded; no replica secret is created in the other region)

fn replica_regions(input: &Input, required: bool) -> SmResult<Vec<(String, Option<String>)>> {
    let Some(list) = input.opt_structs("AddReplicaRegions", 100)? else {
        if required {
            return Err(json::missing("AddReplicaRegions").into());
        }
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for r in list {
        let region = r.string("Region", 1, 128)?;
        check_region(region)?;
        let key = r.opt_string("KmsKeyId", 0, 2048)?.map(str::to_string);
        out.push((region.to_string(), key));
    }
    Ok(out)
}

fn check_region(region: &str) -> SmResult<()> {
    let mut parts: Vec<&str> = region.split('-').collect();
    let last = parts.pop().unwrap_or_default();
    let ok = !parts.is_empty()
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        && !last.is_empty()
        && last.chars().all(|c| c.is_ascii_digit());
    if !ok {
        return Err(json::constraint(
            region,
            "Region",
            "Member must satisfy regular expression pattern: ^([a-z]+-)+\\d+$",
        )
        .into());
    }
    Ok(())
}

fn replicate(res: &mut SecretsScope, ctx: &Ctx, input: &Input) -> SmResult<Value> {
    let regions = replica_regions(input, true)?;
    input.opt_bool("ForceOverwriteReplicaSecret")?;
    let (name, secret) = find_mut(res, ctx, input, false)?;
    for (region, key) in regions {
        if region == ctx.scope.region {
            return fail(
                Kind::InvalidParameter,
                "You can't replicate a secret to the region it is in.",
            );
        }
        secret.replicas.insert(
            region,
            Replica {
                kms_key_id: key,
                status: "InSync".into(),
            },
        );
    }
    secret.changed_ms = ctx.now_ms;
    Ok(json!({"ARN": ctx.arn(&name, secret), "ReplicationStatus": replication_json(secret)}))
}

fn remove_regions(res: &mut SecretsScope, ctx: &Ctx, input: &Input) -> SmResult<Value> {
    let regions = input.strings("RemoveReplicaRegions", 100, 1, 128)?;
    for r in &regions {
        check_region(r)?;
    }
    let (name, secret) = find_mut(res, ctx, input, false)?;
    for r in regions {
        secret.replicas.remove(r);
    }
    secret.changed_ms = ctx.now_ms;
    Ok(json!({"ARN": ctx.arn(&name, secret), "ReplicationStatus": replication_json(secret)}))
}

fn stop_replication(res: &mut SecretsScope, ctx: &Ctx, input: &Input) -> SmResult<Value> {
    find_mut(res, ctx, input, false)?;
    // Replicas are recorded on their primary only, so no secret here is a replica.
    fail(
        Kind::InvalidRequest,
        "This secret is not a replica: StopReplicationToReplica applies to a replica secret.",
    )
}

fn associate_cross_account(res: &mut SecretsScope, ctx: &Ctx, input: &Input) -> SmResult<Value> {
    let replica = input
        .string("CrossAccountReplicaARN", 20, 2048)?
        .to_string();
    input.opt_enum("ReplicaRestriction", &["SameOrg", "NoRestriction"])?;
    let role = input
        .opt_string("ReplicationRoleARN", 20, 2048)?
        .map(str::to_string);
    let (name, secret) = find_mut(res, ctx, input, false)?;
    secret.cross_account.insert(replica.clone(), role);
    secret.changed_ms = ctx.now_ms;
    Ok(json!({
        "ARN": ctx.arn(&name, secret),
        "CrossAccountReplicaARN": replica,
        "ReplicationStatus": "InSync",
    }))
}

fn disassociate_cross_account(res: &mut SecretsScope, ctx: &Ctx, input: &Input) -> SmResult<Value> {
    let replica = input
        .string("CrossAccountReplicaARN", 20, 2048)?
        .to_string();
    let (name, secret) = find_mut(res, ctx, input, false)?;
    if secret.cross_account.remove(&replica).is_none() {
        return fail(
            Kind::ResourceNotFound,
            format!("The secret has no cross-account replica {replica}."),
        );
    }
    secret.changed_ms = ctx.now_ms;
    Ok(json!({"ARN": ctx.arn(&name, secret), "CrossAccountReplicaARN": replica}))
}

// ---------------------------------------------------------------------------------------
// GetRandomPassword

fn random_password(input: &Input) -> SmResult<Value> {
    let spec = PasswordSpec {
        length: input.opt_int("PasswordLength", 1, 4096)?.unwrap_or(32) as usize,
        exclude: input
            .opt_string("ExcludeCharacters", 0, 4096)?
            .unwrap_or(""),
        no_numbers: input.flag("ExcludeNumbers")?,
        no_punctuation: input.flag("ExcludePunctuation")?,
        no_uppercase: input.flag("ExcludeUppercase")?,
        no_lowercase: input.flag("ExcludeLowercase")?,
        space: input.flag("IncludeSpace")?,
        each_class: input.opt_bool("RequireEachIncludedType")?.unwrap_or(true),
    };
    Ok(json!({"RandomPassword": password::generate(&spec)?}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret_with_versions(n: usize) -> Secret {
        let mut s = Secret::default();
        for i in 0..n {
            add_version(
                &mut s,
                format!("{i:032}"),
                SecretValue::Text(format!("v{i}")),
                &[CURRENT],
                i as i64,
            )
            .expect("version");
        }
        s
    }

    #[test]
    fn current_moves_and_previous_follows() {
        let s = secret_with_versions(3);
        assert_eq!(s.stages[CURRENT], format!("{:032}", 2));
        assert_eq!(s.stages[PREVIOUS], format!("{:032}", 1));
        assert!(s.stages_of(&format!("{:032}", 0)).is_empty());
    }

    #[test]
    fn at_most_a_hundred_versions_are_kept_oldest_unlabelled_first() {
        let s = secret_with_versions(MAX_VERSIONS + 5);
        assert_eq!(s.versions.len(), MAX_VERSIONS);
        assert!(!s.versions.contains_key(&format!("{:032}", 0)));
        assert!(
            s.versions
                .contains_key(&format!("{:032}", MAX_VERSIONS + 4))
        );
    }

    #[test]
    fn a_version_id_is_never_given_another_value() {
        let mut s = secret_with_versions(1);
        let id = format!("{:032}", 0);
        assert!(
            add_version(
                &mut s,
                id.clone(),
                SecretValue::Text("v0".into()),
                &[CURRENT],
                9
            )
            .is_ok()
        );
        let e =
            add_version(&mut s, id, SecretValue::Text("other".into()), &[CURRENT], 9).unwrap_err();
        assert!(matches!(
            e,
            crate::error::Failure::Service(SmError {
                kind: Kind::ResourceExists,
                ..
            })
        ));
    }

    #[test]
    fn regions_and_names_are_checked() {
        assert!(check_region("eu-west-1").is_ok());
        assert!(check_region("eu-west").is_err());
        assert!(check_name("prod/db-password_1+=.@").is_ok());
        assert!(check_name("bad name").is_err());
    }
}
