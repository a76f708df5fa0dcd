//! The Secrets Manager state: secrets with their versions and staging labels, per scope.
//!
//! Units ([`SecretsScope::units`]), what merges and dry runs count:
//! - `secret` (name): its configuration (description, key id, tags, policies, rotation,
//!   replication, deletion), without versions or labels;
//! - `secret-version` (`name:versionId`): one version's value and creation time;
//! - `secret-stage` (`name:STAGE`): which version a staging label is on. A label is on one
//!   version at a time, so it is a unit of its own: inside the versions, a `service-merge`
//!   could put `AWSCURRENT` on two of them.

use std::collections::BTreeMap;
use std::fmt;

use cryopod::units::Units;
use cryopod::{ResourceCounts, Resources, Scoped, ScopedState};
use imbl::OrdMap;
use serde::{Deserialize, Serialize};

/// The label of the version `GetSecretValue` returns by default.
pub const CURRENT: &str = "AWSCURRENT";
/// The label the previous current version gets when `AWSCURRENT` moves.
pub const PREVIOUS: &str = "AWSPREVIOUS";
/// The label of a version being rotated in.
pub const PENDING: &str = "AWSPENDING";

/// A secret's value: text or bytes, stored as given (AWS returns it to whoever may read it).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecretValue {
    /// `SecretString`.
    Text(String),
    /// `SecretBinary`.
    Binary(Vec<u8>),
}

/// Never prints the value: debug output ends up in logs and panics.
impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretValue::Text(s) => write!(f, "Text(<{} bytes redacted>)", s.len()),
            SecretValue::Binary(b) => write!(f, "Binary(<{} bytes redacted>)", b.len()),
        }
    }
}

/// One version of a secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretVersion {
    /// The value.
    pub value: SecretValue,
    /// When it was created, epoch milliseconds.
    pub created_ms: i64,
    /// The key id the value was stored for (the secret's `KmsKeyId` at the time).
    pub kms_key_id: Option<String>,
}

/// How a secret rotates: stored and returned; the rotation function runs once Lambda runs
/// code.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    /// Whether rotation is turned on.
    pub enabled: bool,
    /// The rotation function.
    pub lambda_arn: Option<String>,
    /// `AutomaticallyAfterDays`.
    pub after_days: Option<i64>,
    /// `Duration` (`3h`).
    pub duration: Option<String>,
    /// `ScheduleExpression` (`rate(10 days)`, `cron(…)`).
    pub schedule: Option<String>,
    /// `ExternalSecretRotationMetadata`, key → value.
    pub external_metadata: BTreeMap<String, String>,
    /// `ExternalSecretRotationRoleArn`.
    pub external_role_arn: Option<String>,
    /// When rotation was last started, epoch milliseconds.
    pub last_rotated_ms: Option<i64>,
}

/// A region the secret is replicated to (recorded; no replica secret is created).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replica {
    /// The replica's key id.
    pub kms_key_id: Option<String>,
    /// `InSync`, `Failed`, …
    pub status: String,
}

/// A secret's configuration and contents.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret {
    /// The six random characters AWS appends to the name in the ARN.
    pub arn_suffix: String,
    /// `Description`.
    pub description: Option<String>,
    /// `KmsKeyId` as given (the default key when absent).
    pub kms_key_id: Option<String>,
    /// `Type` (set by services that own secrets).
    pub kind: Option<String>,
    /// Tags, in the order they were added.
    pub tags: Vec<(String, String)>,
    /// Resource policies by name.
    pub policies: BTreeMap<String, String>,
    /// Rotation configuration.
    pub rotation: Rotation,
    /// Replica regions.
    pub replicas: BTreeMap<String, Replica>,
    /// Cross-account replicas: replica ARN → replication role ARN.
    pub cross_account: BTreeMap<String, Option<String>>,
    /// Created, epoch milliseconds.
    pub created_ms: i64,
    /// Last changed (value or configuration), epoch milliseconds.
    pub changed_ms: i64,
    /// When `DeleteSecret` was called, if it is scheduled for deletion.
    pub deleted_ms: Option<i64>,
    /// When it will be gone for good (end of the recovery window).
    pub purge_ms: Option<i64>,
    /// Versions by id.
    pub versions: OrdMap<String, SecretVersion>,
    /// Staging label → version id.
    pub stages: BTreeMap<String, String>,
}

/// The configuration of a secret as a unit: everything but versions and labels.
#[derive(Serialize)]
struct SecretConfig<'a> {
    arn_suffix: &'a str,
    description: &'a Option<String>,
    kms_key_id: &'a Option<String>,
    kind: &'a Option<String>,
    tags: &'a [(String, String)],
    policies: &'a BTreeMap<String, String>,
    rotation: &'a Rotation,
    replicas: &'a BTreeMap<String, Replica>,
    cross_account: &'a BTreeMap<String, Option<String>>,
    created_ms: i64,
    deleted_ms: Option<i64>,
    purge_ms: Option<i64>,
}

impl Secret {
    /// The labels on version `id`, in label order.
    pub fn stages_of(&self, id: &str) -> Vec<&str> {
        self.stages
            .iter()
            .filter(|(_, v)| v.as_str() == id)
            .map(|(s, _)| s.as_str())
            .collect()
    }

    /// Whether it is gone for good at `now_ms`: past its recovery window.
    pub fn is_purged(&self, now_ms: i64) -> bool {
        self.purge_ms.is_some_and(|t| t <= now_ms)
    }

    fn config(&self) -> SecretConfig<'_> {
        SecretConfig {
            arn_suffix: &self.arn_suffix,
            description: &self.description,
            kms_key_id: &self.kms_key_id,
            kind: &self.kind,
            tags: &self.tags,
            policies: &self.policies,
            rotation: &self.rotation,
            replicas: &self.replicas,
            cross_account: &self.cross_account,
            created_ms: self.created_ms,
            deleted_ms: self.deleted_ms,
            purge_ms: self.purge_ms,
        }
    }
}

/// One scope's secrets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretsScope {
    /// Secrets by name.
    pub secrets: OrdMap<String, Secret>,
}

impl Resources for SecretsScope {
    /// A secret on both sides takes its configuration from the bundle and keeps both sides'
    /// versions (the bundle's on an id clash) and labels (the bundle's where both have the
    /// label, so `AWSCURRENT` is the bundle's current version).
    fn merge(&mut self, incoming: Self) {
        for (name, mut secret) in incoming.secrets {
            if let Some(mine) = self.secrets.remove(&name) {
                secret.versions = secret.versions.union(mine.versions);
                for (stage, id) in mine.stages {
                    secret.stages.entry(stage).or_insert(id);
                }
                secret.changed_ms = secret.changed_ms.max(mine.changed_ms);
            }
            self.secrets.insert(name, secret);
        }
    }

    fn units(&self, out: &mut Units) {
        for (name, s) in &self.secrets {
            out.add("secret", name.clone(), &s.config());
            for (id, v) in &s.versions {
                out.add("secret-version", format!("{name}:{id}"), v);
            }
            for (stage, id) in &s.stages {
                out.add("secret-stage", format!("{name}:{stage}"), id);
            }
        }
    }

    /// Counts only: values never leave through a summary, an inspect or a manifest.
    fn summary(&self) -> ResourceCounts {
        let mut c = ResourceCounts::new();
        c.insert("secret".into(), self.secrets.len() as u64);
        c.insert(
            "secret-version".into(),
            self.secrets.values().map(|s| s.versions.len() as u64).sum(),
        );
        c.insert(
            "scheduled-deletion".into(),
            self.secrets
                .values()
                .filter(|s| s.deleted_ms.is_some())
                .count() as u64,
        );
        c
    }

    fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }
}

/// The Secrets Manager state, version 1.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SecretsState {
    /// Secrets by scope.
    pub scopes: Scoped<SecretsScope>,
}

impl ScopedState for SecretsState {
    type Resources = SecretsScope;
    fn scoped(&self) -> &Scoped<SecretsScope> {
        &self.scopes
    }
    fn scoped_mut(&mut self) -> &mut Scoped<SecretsScope> {
        &mut self.scopes
    }
}
