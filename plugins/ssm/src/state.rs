//! The Parameter Store state: parameters with their versions, labels and tags, and the data
//! keys that seal SecureString values, per scope.
//!
//! What a user creates, and so what merges and dry runs count ([`SsmScope::units`]):
//! - `parameter` (name): its tags;
//! - `parameter-version` (`name:N`): one version's value and settings;
//! - `parameter-label` (`name:label`): which version a label points at. Labels are units of
//!   their own because a label belongs to one version at a time: kept inside a version, a
//!   `service-merge` could leave the same label on two versions (one from each side).
//!
//! The version counter (`latest`) moves on its own and is left out of every unit. The data
//! keys are not the user's units either, but every merge keeps both sides' keys, so every
//! sealed value can still be opened.

use std::collections::BTreeMap;
use std::fmt;

use cryopod::units::Units;
use cryopod::{ResourceCounts, Resources, Scoped, ScopedState};
use imbl::OrdMap;
use serde::{Deserialize, Serialize};

/// Most versions a parameter keeps (AWS's limit); the oldest goes when a new one comes.
pub const MAX_VERSIONS: usize = 100;

/// The three parameter types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ParameterType {
    /// Plain text.
    String,
    /// Comma-separated values.
    StringList,
    /// Encrypted at rest; returned decrypted only on request.
    SecureString,
}

impl ParameterType {
    /// AWS's name of the type.
    pub fn as_str(self) -> &'static str {
        match self {
            ParameterType::String => "String",
            ParameterType::StringList => "StringList",
            ParameterType::SecureString => "SecureString",
        }
    }

    /// Parses AWS's name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "String" => ParameterType::String,
            "StringList" => ParameterType::StringList,
            "SecureString" => ParameterType::SecureString,
            _ => return None,
        })
    }
}

/// The storage tier of a version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Tier {
    /// Up to 4 KB values, no policies.
    Standard,
    /// Up to 8 KB values, policies allowed.
    Advanced,
}

impl Tier {
    /// AWS's name of the tier.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Standard => "Standard",
            Tier::Advanced => "Advanced",
        }
    }
}

/// A SecureString value sealed with AES-256-GCM under one of the scope's data keys.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// The data key's id in [`SsmScope::keys`].
    pub key: String,
    /// The 96-bit nonce, unique per sealing.
    pub nonce: Vec<u8>,
    /// Ciphertext and tag.
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Sealed {{ key: {}, {} bytes }}",
            self.key,
            self.ciphertext.len()
        )
    }
}

/// A version's value: plain text for String and StringList, sealed for SecureString.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoredValue {
    /// As given.
    Plain(String),
    /// Encrypted.
    Sealed(Sealed),
}

/// Values never appear in logs or debug output, whatever their type: a String parameter
/// often holds what should have been a SecureString.
impl fmt::Debug for StoredValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoredValue::Plain(s) => write!(f, "Plain(<{} bytes redacted>)", s.len()),
            StoredValue::Sealed(s) => write!(f, "{s:?}"),
        }
    }
}

/// One version of a parameter: its value and the settings given with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParameterVersion {
    /// The value.
    pub value: StoredValue,
    /// The type.
    pub kind: ParameterType,
    /// The description given with this version.
    pub description: Option<String>,
    /// The KMS key id named for a SecureString (`alias/aws/ssm` by default).
    pub key_id: Option<String>,
    /// The regular expression values must match.
    pub allowed_pattern: Option<String>,
    /// The tier.
    pub tier: Tier,
    /// The policies as given (a JSON array), stored and returned.
    pub policies: Option<String>,
    /// `text`, `aws:ec2:image` or `aws:ssm:integration`.
    pub data_type: String,
    /// When this version was written, epoch milliseconds.
    pub modified_ms: i64,
    /// Who wrote it (an ARN).
    pub modified_user: String,
}

/// A parameter: its versions (at most [`MAX_VERSIONS`]), labels and tags.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parameter {
    /// Versions by number.
    pub versions: OrdMap<u64, ParameterVersion>,
    /// The highest version number ever given: numbers are never reused, also after the
    /// oldest versions were dropped.
    pub latest: u64,
    /// Label → version number.
    pub labels: BTreeMap<String, u64>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl Parameter {
    /// The newest version.
    pub fn current(&self) -> Option<(u64, &ParameterVersion)> {
        self.versions.get_max().map(|(n, v)| (*n, v))
    }

    /// The labels on version `n`, sorted.
    pub fn labels_of(&self, n: u64) -> Vec<&str> {
        self.labels
            .iter()
            .filter(|(_, v)| **v == n)
            .map(|(l, _)| l.as_str())
            .collect()
    }
}

/// A data key: 256 bits that seal SecureString values, and the KMS key id it stands for.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataKey {
    /// The key id the values were sealed for (`alias/aws/ssm`).
    pub key_id: String,
    /// The key material. It lives in the state so that values open after a restore; a
    /// bundle or pod saved with `--secret` is encrypted as a whole.
    pub material: Vec<u8>,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DataKey {{ key_id: {}, material: <redacted> }}",
            self.key_id
        )
    }
}

/// One scope's parameters and data keys.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SsmScope {
    /// Parameters by name.
    pub parameters: OrdMap<String, Parameter>,
    /// Data keys by id (random, so two sides' keys never clash in a merge).
    pub keys: OrdMap<String, DataKey>,
}

impl Resources for SsmScope {
    /// A parameter on both sides takes its tags from the bundle and keeps both sides'
    /// versions (the bundle's on a number clash) and labels (the bundle's where both label);
    /// the version counter is the larger. Data keys of both sides are kept.
    fn merge(&mut self, incoming: Self) {
        self.keys = incoming.keys.union(std::mem::take(&mut self.keys));
        for (name, mut param) in incoming.parameters {
            if let Some(mine) = self.parameters.remove(&name) {
                param.latest = param.latest.max(mine.latest);
                param.versions = param.versions.union(mine.versions);
                for (label, n) in mine.labels {
                    param.labels.entry(label).or_insert(n);
                }
            }
            self.parameters.insert(name, param);
        }
    }

    fn units(&self, out: &mut Units) {
        for (name, p) in &self.parameters {
            out.add("parameter", name.clone(), &p.tags);
            for (n, v) in &p.versions {
                out.add("parameter-version", format!("{name}:{n}"), v);
            }
            for (label, n) in &p.labels {
                out.add("parameter-label", format!("{name}:{label}"), n);
            }
        }
    }

    /// Counts only; values never leave the state through a summary.
    fn summary(&self) -> ResourceCounts {
        let mut c = ResourceCounts::new();
        c.insert("parameter".into(), self.parameters.len() as u64);
        c.insert(
            "parameter-version".into(),
            self.parameters
                .values()
                .map(|p| p.versions.len() as u64)
                .sum(),
        );
        c.insert(
            "secure-string".into(),
            self.parameters
                .values()
                .filter(|p| {
                    p.current()
                        .is_some_and(|(_, v)| v.kind == ParameterType::SecureString)
                })
                .count() as u64,
        );
        c
    }

    fn is_empty(&self) -> bool {
        self.parameters.is_empty()
    }
}

/// The Parameter Store state, version 1.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SsmState {
    /// Parameters by scope.
    pub scopes: Scoped<SsmScope>,
}

impl ScopedState for SsmState {
    type Resources = SsmScope;
    fn scoped(&self) -> &Scoped<SsmScope> {
        &self.scopes
    }
    fn scoped_mut(&mut self) -> &mut Scoped<SsmScope> {
        &mut self.scopes
    }
}
