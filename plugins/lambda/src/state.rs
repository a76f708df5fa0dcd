//! The Lambda state, version 1: functions (with their published versions, aliases and
//! resource policies), layers and event source mappings, partitioned by scope.
//!
//! Code packages are never stored inline: a [`CodeRef`] names a blob in the framework's
//! content-addressed store, so two functions (or a function and a layer, or an S3 object) with
//! the same zip share one copy, and captures stay O(1) whatever the package sizes.
//!
//! Service-merge granularity (what "one resource" is for Lambda):
//! - a **function version** and an **alias** are units: a function on both sides takes its
//!   `$LATEST` configuration, code, tags and resource policies from the bundle, and keeps the
//!   union of both sides' published versions (by number) and aliases (by name), the bundle's
//!   on a clash. The version counter becomes the larger of the two, so a number is never
//!   published twice. An alias of the running side that points at a version number the
//!   bundle also publishes then points at the bundle's version of that number: the bundle
//!   wins on a clash.
//! - a **layer version** is one unit: layer versions are immutable and independent, so the
//!   bundle's versions are added to (or replace, on a number clash) the running layer's, and
//!   the layer's version counter becomes the larger of the two so numbers are never reused.
//! - an **event source mapping** is one unit, keyed by its UUID.

use std::collections::BTreeSet;

use base64::Engine;
use cryopod::{Digest, ResourceCounts, Resources, Scoped, ScopedState};
use imbl::{OrdMap, Vector};
use serde::{Deserialize, Serialize};

/// A code package in the blob store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeRef {
    /// sha256 of the zip; also its name in the blob store.
    pub digest: Digest,
    /// Size of the zip in bytes (AWS `CodeSize`).
    pub size: u64,
}

impl CodeRef {
    /// `CodeSha256` as AWS reports it: base64 of the raw sha256 of the zip.
    pub fn sha256_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.digest.0)
    }
}

/// Logging settings (`LoggingConfig`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggingConfig {
    /// `Text` or `JSON`.
    pub log_format: String,
    /// Only with `JSON` format.
    pub application_log_level: Option<String>,
    /// Only with `JSON` format.
    pub system_log_level: Option<String>,
    /// CloudWatch log group; `/aws/lambda/<name>` by default.
    pub log_group: String,
}

/// Everything a function version freezes: configuration and code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionConfig {
    /// Runtime identifier (`python3.12`); `None` for container images.
    pub runtime: Option<String>,
    /// Execution role ARN.
    pub role: String,
    /// Handler (`index.handler`); `None` for container images.
    pub handler: Option<String>,
    /// Free text, up to 256 characters.
    pub description: String,
    /// Seconds, 1 to 900.
    pub timeout: u32,
    /// MiB, 128 to 10240.
    pub memory_size: u32,
    /// `Zip` or `Image`.
    pub package_type: String,
    /// The zip package, for `Zip` functions.
    pub code: Option<CodeRef>,
    /// The container image, for `Image` functions.
    pub image_uri: Option<String>,
    /// Environment variables; `None` when never set (AWS then omits `Environment`).
    pub environment: Option<OrdMap<String, String>>,
    /// Layer version ARNs, in order.
    pub layers: Vector<String>,
    /// `x86_64` or `arm64` (one element).
    pub architectures: Vector<String>,
    /// `/tmp` size in MiB, 512 to 10240.
    pub ephemeral_storage: u32,
    /// X-Ray tracing: `PassThrough` or `Active`.
    pub tracing_mode: String,
    /// SnapStart: `None` or `PublishedVersions`.
    pub snap_start: String,
    /// Logging settings.
    pub logging: LoggingConfig,
    /// Configuration blocks the emulator stores and echoes without interpreting them
    /// (`VpcConfig`, `DeadLetterConfig`, `KMSKeyArn`, `FileSystemConfigs`, `ImageConfig`, …),
    /// as canonical JSON by field name.
    pub extra: OrdMap<String, String>,
}

/// One version of a function: `$LATEST` or a published, immutable number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionVersion {
    /// Configuration and code.
    pub config: FunctionConfig,
    /// `2024-01-01T00:00:00.000+0000`.
    pub last_modified: String,
    /// Changes with every update; clients pass it back for optimistic locking.
    pub revision_id: String,
}

/// A named pointer to a version, optionally splitting traffic with a second one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alias {
    /// `$LATEST` or a version number.
    pub function_version: String,
    /// Free text.
    pub description: String,
    /// Additional version → weight (0.0 to 1.0).
    pub routing: OrdMap<String, f64>,
    /// Changes with every update.
    pub revision_id: String,
}

/// One statement of a resource-based policy, as `AddPermission` received it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    /// Statement id, unique in its policy.
    pub sid: String,
    /// `lambda:InvokeFunction`, `lambda:*`, …
    pub action: String,
    /// Service principal, account id, ARN or `*`.
    pub principal: String,
    /// `AWS:SourceArn` condition.
    pub source_arn: Option<String>,
    /// `AWS:SourceAccount` condition.
    pub source_account: Option<String>,
    /// `lambda:EventSourceToken` condition.
    pub event_source_token: Option<String>,
    /// `aws:PrincipalOrgID` condition.
    pub principal_org_id: Option<String>,
    /// `lambda:FunctionUrlAuthType` condition.
    pub function_url_auth_type: Option<String>,
}

/// The resource policy of a function or of one of its qualifiers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Statements in the order they were added (the order `GetPolicy` shows).
    pub statements: Vector<Statement>,
    /// Changes with every added or removed statement.
    pub revision_id: String,
}

/// A function with everything that belongs to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Function {
    /// `$LATEST`.
    pub latest: FunctionVersion,
    /// Published versions by number.
    pub versions: OrdMap<u64, FunctionVersion>,
    /// Highest version number ever published: numbers are never reused, even after deletes.
    pub last_version: u64,
    /// Aliases by name.
    pub aliases: OrdMap<String, Alias>,
    /// Resource policies by qualifier; `""` is the unqualified function's policy.
    pub policies: OrdMap<String, Policy>,
    /// Tags of the function.
    pub tags: OrdMap<String, String>,
}

/// One immutable version of a layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerVersion {
    /// Free text.
    pub description: String,
    /// `2024-01-01T00:00:00.000+0000`.
    pub created_date: String,
    /// Runtimes the layer declares.
    pub compatible_runtimes: Vector<String>,
    /// Architectures the layer declares.
    pub compatible_architectures: Vector<String>,
    /// License text or SPDX id.
    pub license_info: Option<String>,
    /// The layer's zip.
    pub code: CodeRef,
}

/// A layer: its versions and its version counter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    /// Versions by number.
    pub versions: OrdMap<u64, LayerVersion>,
    /// Highest version number ever published (AWS never reuses one).
    pub last_version: u64,
}

/// A stored event source mapping (the emulator does not poll the source).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventSourceMapping {
    /// Target function ARN, qualified or not.
    pub function_arn: String,
    /// Source ARN (queue, stream, cluster); `None` for self-managed sources.
    pub event_source_arn: Option<String>,
    /// Records per batch.
    pub batch_size: u32,
    /// `Enabled` or `Disabled` from the user's point of view.
    pub enabled: bool,
    /// Stream position (`TRIM_HORIZON`, `LATEST`, `AT_TIMESTAMP`).
    pub starting_position: Option<String>,
    /// Last change, milliseconds since the epoch.
    pub last_modified_ms: i64,
    /// Tags of the mapping.
    pub tags: OrdMap<String, String>,
    /// Other settings stored and echoed as given, canonical JSON by field name.
    pub extra: OrdMap<String, String>,
}

/// One scope's Lambda resources.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LambdaScope {
    /// Functions by name.
    pub functions: OrdMap<String, Function>,
    /// Layers by name.
    pub layers: OrdMap<String, Layer>,
    /// Event source mappings by UUID.
    pub event_source_mappings: OrdMap<String, EventSourceMapping>,
}

impl Resources for LambdaScope {
    /// `service-merge` works down to versions and aliases (see the module docs).
    fn merge(&mut self, incoming: Self) {
        for (name, mut f) in incoming.functions {
            if let Some(existing) = self.functions.remove(&name) {
                // `union` keeps the receiver's value on a clash: the bundle's.
                f.versions = f.versions.union(existing.versions);
                f.aliases = f.aliases.union(existing.aliases);
                f.last_version = f.last_version.max(existing.last_version);
            }
            self.functions.insert(name, f);
        }
        for (name, mut layer) in incoming.layers {
            if let Some(existing) = self.layers.remove(&name) {
                layer.versions = layer.versions.union(existing.versions);
                layer.last_version = layer.last_version.max(existing.last_version);
            }
            self.layers.insert(name, layer);
        }
        for (uuid, m) in incoming.event_source_mappings {
            self.event_source_mappings.insert(uuid, m);
        }
    }

    /// Functions (`$LATEST` with tags and policies), function versions (`fn:3`), aliases
    /// (`fn:alias`), layer versions (`layer:2`) and event source mappings (by UUID). The
    /// version counters are not content: they follow from the versions.
    fn units(&self, out: &mut cryopod::units::Units) {
        for (name, f) in &self.functions {
            let mut head = f.clone();
            head.versions = OrdMap::new();
            head.aliases = OrdMap::new();
            head.last_version = 0;
            out.add("function", name.clone(), &head);
            for (n, v) in &f.versions {
                out.add("function-version", format!("{name}:{n}"), v);
            }
            for (alias, a) in &f.aliases {
                out.add("alias", format!("{name}:{alias}"), a);
            }
        }
        for (name, l) in &self.layers {
            for (n, v) in &l.versions {
                out.add("layer-version", format!("{name}:{n}"), v);
            }
        }
        for (uuid, m) in &self.event_source_mappings {
            out.add("event-source-mapping", uuid.clone(), m);
        }
    }

    fn summary(&self) -> ResourceCounts {
        let mut c = ResourceCounts::new();
        let fs = || self.functions.values();
        c.insert("function".into(), self.functions.len() as u64);
        c.insert(
            "function_version".into(),
            fs().map(|f| f.versions.len() as u64).sum(),
        );
        c.insert("alias".into(), fs().map(|f| f.aliases.len() as u64).sum());
        c.insert(
            "permission".into(),
            fs().map(|f| {
                f.policies
                    .values()
                    .map(|p| p.statements.len() as u64)
                    .sum::<u64>()
            })
            .sum(),
        );
        c.insert(
            "layer".into(),
            self.layers
                .values()
                .filter(|l| !l.versions.is_empty())
                .count() as u64,
        );
        c.insert(
            "layer_version".into(),
            self.layers.values().map(|l| l.versions.len() as u64).sum(),
        );
        c.insert(
            "event_source_mapping".into(),
            self.event_source_mappings.len() as u64,
        );
        c
    }

    fn blobs(&self, out: &mut BTreeSet<Digest>) {
        for f in self.functions.values() {
            out.extend(f.latest.config.code.map(|c| c.digest));
            out.extend(
                f.versions
                    .values()
                    .filter_map(|v| v.config.code.map(|c| c.digest)),
            );
        }
        for l in self.layers.values() {
            out.extend(l.versions.values().map(|v| v.code.digest));
        }
    }

    /// A layer whose versions were all deleted still holds its version counter, which must
    /// survive (AWS never reuses a layer version number), so it keeps the scope non-empty.
    fn is_empty(&self) -> bool {
        self.functions.is_empty() && self.layers.is_empty() && self.event_source_mappings.is_empty()
    }
}

/// The Lambda state, version 1.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LambdaState {
    /// Resources by scope.
    pub scopes: Scoped<LambdaScope>,
}

impl ScopedState for LambdaState {
    type Resources = LambdaScope;
    fn scoped(&self) -> &Scoped<LambdaScope> {
        &self.scopes
    }
    fn scoped_mut(&mut self) -> &mut Scoped<LambdaScope> {
        &mut self.scopes
    }
}

cryopod::service_state!(
    LambdaState,
    service = "lambda",
    version = 1,
    tag = "lambda/1"
);

#[cfg(test)]
mod tests {
    use super::*;

    fn code(b: &[u8]) -> CodeRef {
        CodeRef {
            digest: Digest::of(b),
            size: b.len() as u64,
        }
    }

    fn layer(versions: &[(u64, &[u8])], last: u64) -> Layer {
        Layer {
            versions: versions
                .iter()
                .map(|(n, b)| {
                    (
                        *n,
                        LayerVersion {
                            description: String::new(),
                            created_date: String::new(),
                            compatible_runtimes: Vector::new(),
                            compatible_architectures: Vector::new(),
                            license_info: None,
                            code: code(b),
                        },
                    )
                })
                .collect(),
            last_version: last,
        }
    }

    #[test]
    fn code_sha256_is_base64_of_the_raw_digest() {
        // echo -n hello | openssl dgst -sha256 -binary | base64
        assert_eq!(
            code(b"hello").sha256_base64(),
            "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ="
        );
    }

    #[test]
    fn service_merge_adds_layer_versions_and_keeps_the_higher_counter() {
        let mut running = LambdaScope::default();
        running
            .layers
            .insert("l".into(), layer(&[(1, b"a"), (2, b"b")], 2));
        let mut incoming = LambdaScope::default();
        incoming
            .layers
            .insert("l".into(), layer(&[(2, b"B"), (5, b"e")], 5));
        running.merge(incoming);
        let l = &running.layers["l"];
        assert_eq!(l.last_version, 5);
        assert_eq!(
            l.versions.keys().copied().collect::<Vec<_>>(),
            vec![1, 2, 5]
        );
        assert_eq!(l.versions[&2].code, code(b"B"));
    }

    #[test]
    fn empty_layer_keeps_the_scope_non_empty() {
        let mut s = LambdaScope::default();
        assert!(s.is_empty());
        s.layers.insert("l".into(), layer(&[], 3));
        assert!(!s.is_empty());
        assert_eq!(s.summary()["layer"], 0);
    }
}
