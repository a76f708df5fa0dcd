//! Service state values: what a snapshot is made of.
//!
//! Each plugin's state is a plain serde type implementing [`ServiceState`], a
//! `#[typetag::serde]` trait, so a snapshot of many services is one heterogeneous value whose
//! tags (`"sqs/1"`) carry the schema version. Most plugins do not implement the trait by hand:
//! they keep their resources in a [`Scoped`] map, implement [`Resources`] for one scope's
//! worth, and let [`crate::service_state!`] write the rest. Merging, filtering and summaries
//! then behave identically for every service.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use cryopod_bundle::Digest;

use crate::error::StateError;
use crate::scope::{Scope, ScopeFilter};

/// How an imported snapshot combines with the running state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MergeStrategy {
    /// Reset every service, then load the bundle's state.
    Overwrite,
    /// Each (account, region) present in the bundle replaces that scope; others stay.
    #[default]
    AccountRegionMerge,
    /// Resources merge one by one inside each scope; on an id clash the bundle wins.
    ServiceMerge,
}

impl MergeStrategy {
    /// Every strategy, for tests and help texts.
    pub const ALL: [MergeStrategy; 3] = [
        MergeStrategy::Overwrite,
        MergeStrategy::AccountRegionMerge,
        MergeStrategy::ServiceMerge,
    ];

    /// The name used on the command line, in the API and in `MERGE_STRATEGY`.
    pub fn as_str(self) -> &'static str {
        match self {
            MergeStrategy::Overwrite => "overwrite",
            MergeStrategy::AccountRegionMerge => "account-region-merge",
            MergeStrategy::ServiceMerge => "service-merge",
        }
    }
}

impl fmt::Display for MergeStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A merge strategy name that is none of the known ones.
#[derive(Debug, thiserror::Error)]
#[error(
    "unknown merge strategy `{0}`; expected one of: overwrite, account-region-merge, service-merge"
)]
pub struct UnknownMergeStrategy(pub String);

impl FromStr for MergeStrategy {
    type Err = UnknownMergeStrategy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "overwrite" => Ok(MergeStrategy::Overwrite),
            "account-region-merge" => Ok(MergeStrategy::AccountRegionMerge),
            "service-merge" => Ok(MergeStrategy::ServiceMerge),
            _ => Err(UnknownMergeStrategy(s.to_string())),
        }
    }
}

/// Resource counts of one scope by resource type (`"queue" → 3`), for summaries and manifests.
pub type ResourceCounts = BTreeMap<String, u64>;

/// One service's complete state at one point in time.
///
/// Cloning must be cheap (persistent maps), because a capture clones the live state under a
/// short barrier and serializes it after the barrier is released.
#[typetag::serde]
pub trait ServiceState: Any + fmt::Debug + Send + Sync {
    /// The service this state belongs to (`"sqs"`).
    fn service(&self) -> &'static str;
    /// The schema version of this value's type; the tag is `"{service}/{version}"`.
    fn version(&self) -> u32;
    /// Turns an older version into the next one. The framework calls it until the version
    /// equals the running provider's, so old pods keep loading.
    fn upgrade(self: Box<Self>) -> Result<Box<dyn ServiceState>, StateError>;
    /// Scopes that hold at least one resource.
    fn scopes(&self) -> Vec<Scope>;
    /// Resource counts per scope.
    fn summary(&self) -> Vec<(Scope, ResourceCounts)>;
    /// Every blob digest this state refers to, so bundles and garbage collection know them.
    fn blobs(&self) -> BTreeSet<Digest>;
    /// A copy holding only the scopes `filter` selects.
    fn filtered(&self, filter: &ScopeFilter) -> Box<dyn ServiceState>;
    /// `self` with `incoming` merged in by `strategy`; `self` is left untouched so a failing
    /// import can simply drop the result.
    fn merged(
        &self,
        incoming: Box<dyn ServiceState>,
        strategy: MergeStrategy,
    ) -> Result<Box<dyn ServiceState>, StateError>;
    /// Clones behind the trait object.
    fn clone_box(&self) -> Box<dyn ServiceState>;
    /// For downcasting to the concrete type.
    fn as_any(&self) -> &dyn Any;
    /// For downcasting to the concrete type by value.
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send>;
}

impl Clone for Box<dyn ServiceState> {
    fn clone(&self) -> Self {
        self.clone_box()
    }
}

impl dyn ServiceState {
    /// Takes the concrete state out, or says whose state it was instead.
    pub fn downcast<T: ServiceState>(
        self: Box<Self>,
        expected: &'static str,
    ) -> Result<T, StateError> {
        let found = self.service();
        self.into_any()
            .downcast::<T>()
            .map(|b| *b)
            .map_err(|_| StateError::WrongService { expected, found })
    }

    /// Serializes the state with its type tag as MessagePack with field names, the encoding of
    /// bundle sections (it survives added and removed fields).
    pub fn encode_to(&self, out: &mut dyn std::io::Write) -> Result<(), rmp_serde::encode::Error> {
        let mut ser = rmp_serde::Serializer::new(out).with_struct_map();
        Serialize::serialize(self, &mut ser)
    }
}

/// One scope's worth of one service's resources.
///
/// The framework builds every merge strategy and summary from these few methods, so a plugin
/// author says once what "a resource" is and gets identical behaviour everywhere.
pub trait Resources:
    Clone + Default + fmt::Debug + Send + Sync + Serialize + DeserializeOwned + 'static
{
    /// `service-merge`: fold `incoming` into `self` resource by resource; on an id clash the
    /// incoming resource wins, everything else in `self` stays.
    fn merge(&mut self, incoming: Self);
    /// Resource counts by type, for summaries, manifests and `inspect`.
    fn summary(&self) -> ResourceCounts;
    /// Blob digests referenced by these resources.
    fn blobs(&self, _out: &mut BTreeSet<Digest>) {}
    /// Whether the scope holds nothing, so empty scopes are not reported or stored.
    fn is_empty(&self) -> bool {
        self.summary().values().all(|n| *n == 0)
    }
}

/// A service's resources partitioned by scope, in a persistent map so clones are O(1).
#[derive(Clone, Debug)]
pub struct Scoped<R: Clone> {
    scopes: imbl::OrdMap<Scope, R>,
}

impl<R: Clone> Default for Scoped<R> {
    fn default() -> Self {
        Self {
            scopes: imbl::OrdMap::new(),
        }
    }
}

impl<R: Resources> PartialEq for Scoped<R>
where
    R: PartialEq,
{
    fn eq(&self, other: &Self) -> bool {
        self.scopes == other.scopes
    }
}

impl<R: Resources> Scoped<R> {
    /// The resources of `scope`, if any were ever created there.
    pub fn get(&self, scope: &Scope) -> Option<&R> {
        self.scopes.get(scope)
    }

    /// The resources of `scope` for mutation, created empty on first use.
    pub fn get_mut(&mut self, scope: &Scope) -> &mut R {
        self.scopes.entry(scope.clone()).or_default()
    }

    /// Replaces one scope wholesale.
    pub fn insert(&mut self, scope: Scope, resources: R) {
        self.scopes.insert(scope, resources);
    }

    /// Removes one scope.
    pub fn remove(&mut self, scope: &Scope) -> Option<R> {
        self.scopes.remove(scope)
    }

    /// Every scope with its resources, in scope order.
    pub fn iter(&self) -> impl Iterator<Item = (&Scope, &R)> {
        self.scopes.iter()
    }

    /// Scopes holding at least one resource.
    pub fn scopes(&self) -> Vec<Scope> {
        self.scopes
            .iter()
            .filter(|(_, r)| !r.is_empty())
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// Counts of non-empty scopes.
    pub fn summary(&self) -> Vec<(Scope, ResourceCounts)> {
        self.scopes
            .iter()
            .filter(|(_, r)| !r.is_empty())
            .map(|(s, r)| (s.clone(), r.summary()))
            .collect()
    }

    /// Every referenced blob.
    pub fn blobs(&self) -> BTreeSet<Digest> {
        let mut out = BTreeSet::new();
        for r in self.scopes.values() {
            r.blobs(&mut out);
        }
        out
    }

    /// The scopes `filter` keeps.
    pub fn filtered(&self, filter: &ScopeFilter) -> Self {
        if filter.is_all() {
            return self.clone();
        }
        Self {
            scopes: self
                .scopes
                .iter()
                .filter(|(s, _)| filter.matches(s))
                .map(|(s, r)| (s.clone(), r.clone()))
                .collect(),
        }
    }

    /// Merges `incoming` by `strategy` (see [`MergeStrategy`]).
    pub fn merged(&self, incoming: Self, strategy: MergeStrategy) -> Self {
        match strategy {
            MergeStrategy::Overwrite => incoming,
            MergeStrategy::AccountRegionMerge => {
                let mut out = self.clone();
                for (scope, r) in incoming.scopes {
                    out.scopes.insert(scope, r);
                }
                out
            }
            MergeStrategy::ServiceMerge => {
                let mut out = self.clone();
                for (scope, r) in incoming.scopes {
                    match out.scopes.get_mut(&scope) {
                        Some(existing) => existing.merge(r),
                        None => {
                            out.scopes.insert(scope, r);
                        }
                    }
                }
                out
            }
        }
    }
}

/// Serialized as a list of `{scope, resources}` entries rather than a map keyed by a struct,
/// so every serde format (JSON for debugging included) can carry it, and order is stable.
impl<R: Resources> Serialize for Scoped<R> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Entry<'a, R> {
            scope: &'a Scope,
            resources: &'a R,
        }
        serializer.collect_seq(
            self.scopes
                .iter()
                .filter(|(_, r)| !r.is_empty())
                .map(|(scope, resources)| Entry { scope, resources }),
        )
    }
}

impl<'de, R: Resources> Deserialize<'de> for Scoped<R> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(bound = "R: Resources")]
        struct Entry<R> {
            scope: Scope,
            resources: R,
        }
        let entries: Vec<Entry<R>> = Vec::deserialize(deserializer)?;
        Ok(Self {
            scopes: entries.into_iter().map(|e| (e.scope, e.resources)).collect(),
        })
    }
}

/// A plugin state built on [`Scoped`]: implement this (three lines) and call
/// [`crate::service_state!`] to get [`ServiceState`].
pub trait ScopedState:
    Clone + Default + fmt::Debug + Send + Sync + Serialize + DeserializeOwned + 'static
{
    /// One scope's resources.
    type Resources: Resources;
    /// The scoped resources.
    fn scoped(&self) -> &Scoped<Self::Resources>;
    /// The scoped resources, mutable.
    fn scoped_mut(&mut self) -> &mut Scoped<Self::Resources>;
}

/// Implements [`ServiceState`] for a [`ScopedState`] type, and registers its typetag name.
///
/// ```ignore
/// cryopod::service_state!(NotesState, service = "notes", version = 2, tag = "notes/2");
/// ```
/// The tag must be `"{service}/{version}"`: it is what bundles store, and what lets an old
/// version stay registered beside the new one. The calling crate must depend on `typetag`
/// (its expansion names `typetag::` paths).
#[macro_export]
macro_rules! service_state {
    ($ty:ty, service = $svc:literal, version = $ver:literal, tag = $tag:literal) => {
        #[typetag::serde(name = $tag)]
        impl $crate::ServiceState for $ty {
            fn service(&self) -> &'static str {
                $svc
            }
            fn version(&self) -> u32 {
                $ver
            }
            fn upgrade(
                self: Box<Self>,
            ) -> ::std::result::Result<Box<dyn $crate::ServiceState>, $crate::StateError> {
                Err($crate::StateError::Upgrade {
                    service: $svc,
                    from: $ver,
                    reason: "this is the newest version".into(),
                })
            }
            fn scopes(&self) -> Vec<$crate::Scope> {
                $crate::ScopedState::scoped(self).scopes()
            }
            fn summary(&self) -> Vec<($crate::Scope, $crate::ResourceCounts)> {
                $crate::ScopedState::scoped(self).summary()
            }
            fn blobs(&self) -> ::std::collections::BTreeSet<$crate::Digest> {
                $crate::ScopedState::scoped(self).blobs()
            }
            fn filtered(&self, filter: &$crate::ScopeFilter) -> Box<dyn $crate::ServiceState> {
                let mut out = <$ty as ::std::default::Default>::default();
                *$crate::ScopedState::scoped_mut(&mut out) =
                    $crate::ScopedState::scoped(self).filtered(filter);
                Box::new(out)
            }
            fn merged(
                &self,
                incoming: Box<dyn $crate::ServiceState>,
                strategy: $crate::MergeStrategy,
            ) -> ::std::result::Result<Box<dyn $crate::ServiceState>, $crate::StateError> {
                let incoming: $ty = incoming.downcast($svc)?;
                let mut out = <$ty as ::std::default::Default>::default();
                *$crate::ScopedState::scoped_mut(&mut out) = $crate::ScopedState::scoped(self)
                    .merged(
                        ::std::clone::Clone::clone($crate::ScopedState::scoped(&incoming)),
                        strategy,
                    );
                Ok(Box::new(out))
            }
            fn clone_box(&self) -> Box<dyn $crate::ServiceState> {
                Box::new(::std::clone::Clone::clone(self))
            }
            fn as_any(&self) -> &dyn ::std::any::Any {
                self
            }
            fn into_any(self: Box<Self>) -> Box<dyn ::std::any::Any + Send> {
                self
            }
        }
    };
}

/// Implements [`ServiceState`] for an older schema version that exists only to be read from
/// old bundles and upgraded: every other operation reports that it must be upgraded first.
///
/// `$upgrade` is a `fn(Old) -> Result<Next, StateError>` where `Next: ServiceState`.
#[macro_export]
macro_rules! legacy_service_state {
    ($ty:ty, service = $svc:literal, version = $ver:literal, tag = $tag:literal, upgrade = $up:path) => {
        #[typetag::serde(name = $tag)]
        impl $crate::ServiceState for $ty {
            fn service(&self) -> &'static str {
                $svc
            }
            fn version(&self) -> u32 {
                $ver
            }
            fn upgrade(
                self: Box<Self>,
            ) -> ::std::result::Result<Box<dyn $crate::ServiceState>, $crate::StateError> {
                let next = $up(*self)?;
                Ok(Box::new(next))
            }
            fn scopes(&self) -> Vec<$crate::Scope> {
                Vec::new()
            }
            fn summary(&self) -> Vec<($crate::Scope, $crate::ResourceCounts)> {
                Vec::new()
            }
            fn blobs(&self) -> ::std::collections::BTreeSet<$crate::Digest> {
                ::std::collections::BTreeSet::new()
            }
            fn filtered(&self, _filter: &$crate::ScopeFilter) -> Box<dyn $crate::ServiceState> {
                Box::new(::std::clone::Clone::clone(self))
            }
            fn merged(
                &self,
                _incoming: Box<dyn $crate::ServiceState>,
                _strategy: $crate::MergeStrategy,
            ) -> ::std::result::Result<Box<dyn $crate::ServiceState>, $crate::StateError> {
                Err($crate::StateError::NotCurrent {
                    service: $svc,
                    version: $ver,
                })
            }
            fn clone_box(&self) -> Box<dyn $crate::ServiceState> {
                Box::new(::std::clone::Clone::clone(self))
            }
            fn as_any(&self) -> &dyn ::std::any::Any {
                self
            }
            fn into_any(self: Box<Self>) -> Box<dyn ::std::any::Any + Send> {
                self
            }
        }
    };
}

/// Brings every state in `state` up to `target` through its upgrade path.
pub fn upgrade_to(
    mut state: Box<dyn ServiceState>,
    target: u32,
) -> Result<Box<dyn ServiceState>, StateError> {
    while state.version() < target {
        state = state.upgrade()?;
    }
    Ok(state)
}
