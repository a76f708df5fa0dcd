//! The runtime: owns the enabled services and composes their snapshots.
//!
//! Everything that moves state (persistence, export/import, pods) goes through
//! [`Runtime::capture`] and [`Runtime::apply`], so they share one set of guarantees:
//! a capture is one point in time across services, and an apply is all or nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::sync::Arc;

use cryopod_bundle::{Limits, Manifest, WriteOptions};
use serde::{Deserialize, Serialize};

use crate::blob::BlobStore;
use crate::error::{Error, Result};
use crate::scope::{Scope, ScopeFilter};
use crate::service::{ChangeTracker, Registration, Route, Service, ServiceContext, ServiceLookup};
use crate::snapshot::{DecodedBundle, SectionPolicy, SkipReason, SkippedService, Snapshot};
use crate::state::{MergeStrategy, ResourceCounts, ServiceState};

/// Builds a [`Runtime`] from the plugin registry.
#[derive(Default)]
pub struct RuntimeBuilder {
    blobs: Option<BlobStore>,
    enabled: Option<Vec<String>>,
    expected: Vec<&'static str>,
}

impl RuntimeBuilder {
    /// Uses `store` for blobs (persistence passes the data dir's store); default: a
    /// temporary directory.
    pub fn blob_store(mut self, store: BlobStore) -> Self {
        self.blobs = Some(store);
        self
    }

    /// Runs only these services (`SERVICES=s3,sqs`); default: every registered one.
    pub fn enable(mut self, services: Option<Vec<String>>) -> Self {
        self.enabled = services;
        self
    }

    /// Services the build promises (its cargo features). Building fails if the registry
    /// lacks one: a plugin crate that no code names is not linked, and its registration
    /// vanishes silently otherwise.
    pub fn expect(mut self, services: &[&'static str]) -> Self {
        self.expected.extend_from_slice(services);
        self
    }

    /// Builds every enabled service.
    pub fn build(self) -> Result<Runtime> {
        let regs = crate::service::registrations();
        let mut by_name: BTreeMap<&'static str, &'static Registration> = BTreeMap::new();
        for r in regs {
            if by_name.insert(r.service, r).is_some() {
                return Err(Error::DuplicateService(r.service));
            }
        }
        let linked: Vec<&'static str> = by_name.keys().copied().collect();
        for e in &self.expected {
            if !by_name.contains_key(e) {
                return Err(Error::UnknownService {
                    name: (*e).to_string(),
                    available: format!(
                        "{} (the build enables `{e}` but its plugin registered nothing: is the crate linked?)",
                        linked.join(", ")
                    ),
                });
            }
        }
        let enabled: Vec<&'static str> = match &self.enabled {
            None => linked.clone(),
            Some(list) => {
                let mut out = Vec::new();
                for name in list {
                    let name = name.trim();
                    if name.is_empty() {
                        continue;
                    }
                    match by_name.get_key_value(name) {
                        Some((k, _)) => out.push(*k),
                        None => {
                            return Err(Error::UnknownService {
                                name: name.to_string(),
                                available: linked.join(", "),
                            });
                        }
                    }
                }
                out.sort_unstable();
                out.dedup();
                out
            }
        };
        let blobs = match self.blobs {
            Some(b) => b,
            None => BlobStore::temporary()?,
        };
        let changes = Arc::new(ChangeTracker::default());
        let barrier = Arc::new(tokio::sync::RwLock::new(()));
        let lookup = ServiceLookup::default();
        let mut services: BTreeMap<&'static str, Arc<dyn Service>> = BTreeMap::new();
        let mut routes = Vec::new();
        for name in &enabled {
            let reg = by_name[name];
            let ctx = ServiceContext {
                service: reg.service,
                blobs: blobs.clone(),
                changes: changes.clone(),
                barrier: barrier.clone(),
                lookup: lookup.clone(),
            };
            services.insert(reg.service, (reg.build)(ctx));
            routes.extend(reg.routes.iter().map(|r| (*r, reg.service)));
        }
        lookup.set(&services);
        Ok(Runtime {
            inner: Arc::new(Inner {
                services,
                linked,
                routes,
                blobs,
                changes,
                barrier,
                checkpoints: Arc::default(),
            }),
        })
    }
}

struct Inner {
    services: BTreeMap<&'static str, Arc<dyn Service>>,
    linked: Vec<&'static str>,
    routes: Vec<(Route, &'static str)>,
    blobs: BlobStore,
    changes: Arc<ChangeTracker>,
    barrier: Arc<tokio::sync::RwLock<()>>,
    checkpoints: Arc<crate::checkpoint::Checkpoints>,
}

/// The enabled services and the operations that move their state. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

/// What an apply loaded, per service and scope.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ApplyReport {
    /// The merge strategy used.
    pub merge: MergeStrategy,
    /// Per loaded service: resource counts per scope in the bundle.
    pub loaded: BTreeMap<String, Vec<ScopeCounts>>,
    /// Bundle sections not loaded, and why.
    pub skipped: Vec<SkippedService>,
    /// Blobs the import wrote into the blob store.
    pub blobs_imported: u64,
}

/// Resource counts of one scope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeCounts {
    /// Account id.
    pub account: String,
    /// Region.
    pub region: String,
    /// Counts by resource type.
    pub resources: ResourceCounts,
}

impl ScopeCounts {
    pub(crate) fn from_summary(summary: Vec<(Scope, ResourceCounts)>) -> Vec<ScopeCounts> {
        summary
            .into_iter()
            .map(|(s, resources)| ScopeCounts {
                account: s.account,
                region: s.region,
                resources,
            })
            .collect()
    }
}

impl Runtime {
    /// A builder over the plugin registry.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    /// Names of the running services.
    pub fn service_names(&self) -> Vec<&'static str> {
        self.inner.services.keys().copied().collect()
    }

    /// Names of every plugin linked into this build, running or not.
    pub fn linked_services(&self) -> &[&'static str] {
        &self.inner.linked
    }

    /// A running service.
    pub fn service(&self, name: &str) -> Option<&Arc<dyn Service>> {
        self.inner.services.get(name)
    }

    /// The routing rules of every running service, for the gateway.
    pub fn routes(&self) -> &[(Route, &'static str)] {
        &self.inner.routes
    }

    /// The shared blob store.
    pub fn blobs(&self) -> &BlobStore {
        &self.inner.blobs
    }

    /// The named in-memory checkpoints ([`crate::checkpoint`]); blob collection treats
    /// their blobs as referenced.
    pub fn checkpoints(&self) -> &Arc<crate::checkpoint::Checkpoints> {
        &self.inner.checkpoints
    }

    /// Change tracking shared with every service.
    pub fn changes(&self) -> &Arc<ChangeTracker> {
        &self.inner.changes
    }

    /// Resolves an optional list of service names against the running ones, with an error
    /// that names an unknown one.
    pub fn select(&self, services: Option<&[String]>) -> Result<Vec<&'static str>> {
        match services {
            None => Ok(self.service_names()),
            Some(list) => {
                let mut out = Vec::new();
                for name in list {
                    let name = name.trim();
                    if name.is_empty() {
                        continue;
                    }
                    match self.inner.services.get_key_value(name) {
                        Some((k, _)) => out.push(*k),
                        None => {
                            return Err(Error::UnknownService {
                                name: name.to_string(),
                                available: self.service_names().join(", "),
                            });
                        }
                    }
                }
                out.sort_unstable();
                out.dedup();
                Ok(out)
            }
        }
    }

    /// Captures the selected services at one point in time: writers are held off only for
    /// the O(1) clones, never for serialization or I/O.
    pub async fn capture(
        &self,
        services: Option<&[String]>,
        filter: &ScopeFilter,
    ) -> Result<Snapshot> {
        let names = self.select(services)?;
        let exclusive = self.exclusive().await;
        self.capture_exclusive(&exclusive, &names, filter).await
    }

    /// Takes the capture barrier exclusively: until the guard is dropped no
    /// [`crate::StateCell::write`] runs, so the change tracker's generation and dirty set
    /// stand still and match the states exactly. Persistence uses it to capture a state
    /// together with the generation it holds, and to roll a failed commit back.
    pub(crate) async fn exclusive(&self) -> Exclusive<'_> {
        Exclusive {
            _guard: self.inner.barrier.write().await,
        }
    }

    /// [`Runtime::capture`] of running `names` while the caller holds the barrier.
    pub(crate) async fn capture_exclusive(
        &self,
        _exclusive: &Exclusive<'_>,
        names: &[&'static str],
        filter: &ScopeFilter,
    ) -> Result<Snapshot> {
        let mut snapshot = Snapshot {
            _readers: Some(Arc::new(self.blobs().readers())),
            ..Snapshot::default()
        };
        for name in names {
            let Some(provider) = self.inner.services.get(name) else {
                continue;
            };
            let state = provider.snapshot(filter).await?;
            snapshot.services.insert(name.to_string(), state);
        }
        Ok(snapshot)
    }

    /// Installs `state` as the whole state of `service` through its provider's `restore`
    /// (so run-time structures such as timers are rebuilt), without marking anything
    /// changed: for putting back a state that is already saved (a rolled-back commit).
    pub(crate) async fn reinstall(
        &self,
        _exclusive: &Exclusive<'_>,
        service: &str,
        state: Box<dyn ServiceState>,
    ) -> Result<()> {
        let Some(provider) = self.inner.services.get(service) else {
            return Err(Error::UnknownService {
                name: service.to_string(),
                available: self.service_names().join(", "),
            });
        };
        provider.restore(state).await?;
        Ok(())
    }

    /// Applies `snapshot` with `merge`, all or nothing: every state is upgraded and merged
    /// first, then each service installs its new state; if one fails, the services already
    /// changed get their previous state back.
    pub async fn apply(&self, snapshot: Snapshot, merge: MergeStrategy) -> Result<ApplyReport> {
        self.apply_to(snapshot, merge, None).await
    }

    /// Like [`Runtime::apply`], limited to `services` (default: all running): with
    /// `overwrite`, only the selected services absent from the snapshot are reset, so
    /// `import --services sqs --merge overwrite` never empties another service.
    pub async fn apply_to(
        &self,
        snapshot: Snapshot,
        merge: MergeStrategy,
        services: Option<&[String]>,
    ) -> Result<ApplyReport> {
        self.apply_inner(snapshot, merge, services, BlobCheck::Stat)
            .await
    }

    /// Overwrites exactly the services in `snapshot` with its states, all or nothing, for a
    /// checkpoint restore: the snapshot was captured by this runtime (same state versions)
    /// and its blobs are pinned, so nothing is checked or counted per blob or resource and
    /// the cost does not grow with the state's size. Returns the services installed.
    pub(crate) async fn apply_pinned(&self, snapshot: Snapshot) -> Result<Vec<&'static str>> {
        let names: Vec<String> = snapshot.services.keys().cloned().collect();
        let report = self
            .apply_inner(
                snapshot,
                MergeStrategy::Overwrite,
                Some(&names),
                BlobCheck::Pinned,
            )
            .await?;
        self.select(Some(&report.loaded.into_keys().collect::<Vec<_>>()))
    }

    async fn apply_inner(
        &self,
        snapshot: Snapshot,
        merge: MergeStrategy,
        services: Option<&[String]>,
        blob_check: BlobCheck,
    ) -> Result<ApplyReport> {
        let selected: BTreeSet<&'static str> = self.select(services)?.into_iter().collect();
        let mut incoming = BTreeMap::new();
        let mut report = ApplyReport {
            merge,
            ..Default::default()
        };
        for (name, state) in snapshot.services {
            let Some((key, provider)) = self.inner.services.get_key_value(name.as_str()) else {
                report.skipped.push(SkippedService {
                    reason: if self.inner.linked.contains(&name.as_str()) {
                        SkipReason::NotEnabled
                    } else {
                        SkipReason::NotInBuild
                    },
                    service: name,
                });
                continue;
            };
            let state = crate::state::upgrade_to(state, provider.state_version())?;
            if blob_check == BlobCheck::Stat {
                for d in state.blobs() {
                    if !self.inner.blobs.contains(&d) {
                        return Err(Error::MissingBlob {
                            service: name.clone(),
                            digest: d,
                        });
                    }
                }
            }
            let counts = match blob_check {
                BlobCheck::Pinned => Vec::new(),
                _ => ScopeCounts::from_summary(state.summary()),
            };
            report.loaded.insert(name.clone(), counts);
            incoming.insert(*key, state);
        }

        let _gate = self.inner.barrier.write().await;
        let gated = std::time::Instant::now();
        let all = ScopeFilter::all();
        // Compute every target state before touching anything.
        // (service, state before, target state)
        type Step = (&'static str, Box<dyn ServiceState>, Box<dyn ServiceState>);
        let mut plan: Vec<Step> = Vec::new();
        for (name, provider) in &self.inner.services {
            let incoming_state = incoming.remove(name);
            if incoming_state.is_none()
                && (merge != MergeStrategy::Overwrite || !selected.contains(name))
            {
                continue;
            }
            let before = provider.snapshot(&all).await?;
            let target = match (merge, incoming_state) {
                (MergeStrategy::Overwrite, Some(s)) => s,
                (MergeStrategy::Overwrite, None) => provider.empty_state(),
                (m, Some(s)) => before.merged(s, m)?,
                (_, None) => continue,
            };
            plan.push((name, before, target));
        }
        tracing::debug!(elapsed = ?gated.elapsed(), "apply planned");
        // Commit, rolling back on the first failure.
        let mut done: Vec<(&'static str, Box<dyn ServiceState>)> = Vec::new();
        for (name, before, target) in plan {
            let provider = &self.inner.services[name];
            let scopes: BTreeSet<Scope> =
                before.scopes().into_iter().chain(target.scopes()).collect();
            let start = std::time::Instant::now();
            let restored = provider.restore(target).await;
            tracing::debug!(service = name, elapsed = ?start.elapsed(), "state installed");
            if let Err(e) = restored {
                tracing::error!(service = name, error = %e, "restore failed; rolling back");
                for (n, prev) in done.into_iter().rev() {
                    if let Err(e2) = self.inner.services[n].restore(prev).await {
                        tracing::error!(service = n, error = %e2, "rollback failed");
                    }
                }
                if let Err(e2) = provider.restore(before).await {
                    tracing::error!(service = name, error = %e2, "rollback failed");
                }
                return Err(e.into());
            }
            for s in &scopes {
                self.inner.changes.mark(name, s);
            }
            if scopes.is_empty() {
                self.inner.changes.mark(name, &Scope::default());
            }
            done.push((name, before));
        }
        Ok(report)
    }

    /// Resets the selected services to empty.
    pub async fn reset(&self, services: Option<&[String]>) -> Result<Vec<&'static str>> {
        let names = self.select(services)?;
        let _gate = self.inner.barrier.write().await;
        for name in &names {
            let provider = &self.inner.services[name];
            let before = provider.snapshot(&ScopeFilter::all()).await?;
            provider.reset().await?;
            for s in before.scopes() {
                self.inner.changes.mark(name, &s);
            }
            self.inner.changes.mark(name, &Scope::default());
        }
        Ok(names)
    }

    /// Resource counts of the selected services by scope.
    pub async fn summary(
        &self,
        services: Option<&[String]>,
    ) -> Result<BTreeMap<String, Vec<ScopeCounts>>> {
        let snap = self.capture(services, &ScopeFilter::all()).await?;
        Ok(snap
            .services
            .into_iter()
            .map(|(name, st)| (name, ScopeCounts::from_summary(st.summary())))
            .collect())
    }

    /// Captures and writes a bundle to `out`, on a low-priority thread ([`crate::background`]).
    pub async fn export<W: crate::bundle::BundleOutput + Send + 'static>(
        &self,
        services: Option<&[String]>,
        filter: &ScopeFilter,
        out: W,
        opts: WriteOptions,
    ) -> Result<(W, Manifest)> {
        let snapshot = self.capture(services, filter).await?;
        let blobs = self.inner.blobs.clone();
        crate::background::run("export", move || snapshot.write_bundle(&blobs, out, opts)).await?
    }

    /// Decodes a bundle without applying it: sections of `services` (default: all running)
    /// are decoded and upgraded, their blobs land in the blob store (which changes no running
    /// state), everything is verified.
    pub async fn decode<R: Read + Send + 'static>(
        &self,
        input: R,
        services: Option<&[String]>,
        limits: Limits,
    ) -> Result<DecodedBundle> {
        let selected: Option<BTreeSet<String>> = match services {
            None => None,
            Some(list) => Some(
                self.select(Some(list))?
                    .into_iter()
                    .map(str::to_string)
                    .collect(),
            ),
        };
        let policy = Policy {
            running: self
                .inner
                .services
                .iter()
                .map(|(k, v)| (k.to_string(), v.state_version()))
                .collect(),
            linked: self.inner.linked.iter().map(|s| s.to_string()).collect(),
            selected,
        };
        let blobs = self.inner.blobs.clone();
        tokio::task::spawn_blocking(move || {
            crate::snapshot::read_bundle(input, &blobs, &policy, limits)
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?
    }

    /// Decodes and applies a bundle: the import behind the API, persistence load and pods.
    pub async fn import<R: Read + Send + 'static>(
        &self,
        input: R,
        services: Option<&[String]>,
        merge: MergeStrategy,
    ) -> Result<ApplyReport> {
        // Blob collection is skipped while this lives, so every blob `decode` found in the
        // store or stored is still there when the state referring to it is applied, and
        // the apply need not stat each one again (10,000 stats ran after the whole
        // pipeline, ~20 ms at 1 GiB of S3 objects).
        let _no_collection = self.inner.blobs.readers();
        let decoded = self.decode(input, services, Limits::default()).await?;
        let mut report = self
            .apply_inner(decoded.snapshot, merge, services, BlobCheck::Decoded)
            .await?;
        report.skipped.extend(decoded.skipped);
        report.blobs_imported = decoded.blobs_imported;
        Ok(report)
    }
}

/// The capture barrier held exclusively ([`Runtime::exclusive`]): no state write is in
/// progress or can start while it lives.
pub(crate) struct Exclusive<'a> {
    _guard: tokio::sync::RwLockWriteGuard<'a, ()>,
}

/// How an apply makes sure the blobs a snapshot refers to exist.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BlobCheck {
    /// Look each one up in the store.
    Stat,
    /// `read_bundle` checked them all, and blob collection was off since.
    Decoded,
    /// A checkpoint's: pinned against collection while it exists. Resources are not
    /// counted either (the checkpoint counted them when it was taken).
    Pinned,
}

struct Policy {
    running: BTreeMap<String, u32>,
    linked: BTreeSet<String>,
    selected: Option<BTreeSet<String>>,
}

impl SectionPolicy for Policy {
    fn decide(&self, service: &str) -> std::result::Result<u32, SkipReason> {
        if let Some(sel) = &self.selected
            && !sel.contains(service)
        {
            return Err(SkipReason::NotSelected);
        }
        match self.running.get(service) {
            Some(v) => Ok(*v),
            None if self.linked.contains(service) => Err(SkipReason::NotEnabled),
            None => Err(SkipReason::NotInBuild),
        }
    }
}
