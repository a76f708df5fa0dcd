//! The plugin contract: what a service crate implements and how it registers.
//!
//! Lifecycle of a service, in order:
//! 1. **register**: the plugin crate ends with [`crate::plugin!`], which puts a
//!    [`Registration`] in the `inventory` registry. Nothing runs yet.
//! 2. **build**: the [`crate::Runtime`] calls [`Registration::build`] once with a
//!    [`ServiceContext`] (blob store, change tracking, the barrier, other services).
//! 3. **serve**: the gateway hands the service the requests its [`Route`]s claim.
//! 4. **capture / restore**: persistence, export and pods call [`StateProvider`].
//! 5. **reset**, and at shutdown the runtime is dropped.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use async_trait::async_trait;
use http::Response;
use parking_lot::{Mutex, RwLock};

use crate::aws::{AwsError, AwsRequest, Body};
use crate::blob::BlobStore;
use crate::error::ProviderError;
use crate::scope::{Scope, ScopeFilter};
use crate::state::{Digest, ScopedState, ServiceState};

/// Captures and restores one service's state. Persistence, export and pods are all built on
/// these few methods.
#[async_trait]
pub trait StateProvider: Send + Sync + 'static {
    /// The service name, the AWS signing name (`"s3"`).
    fn service(&self) -> &'static str;
    /// The newest state version this build writes; older ones are upgraded on load.
    fn state_version(&self) -> u32;
    /// A point-in-time copy of the state in the scopes `filter` selects. Must be O(1) in the
    /// state's size (clone a persistent map): the runtime calls it while holding the barrier
    /// that stops writers, and serializes only after releasing it.
    async fn snapshot(&self, filter: &ScopeFilter) -> Result<Box<dyn ServiceState>, ProviderError>;
    /// Installs `state` as the whole new state of the service (the framework has already
    /// merged it) and re-creates what it implies at run time: timers, indexes, workers.
    /// The state has been validated; failing here triggers a rollback of every service.
    async fn restore(&self, state: Box<dyn ServiceState>) -> Result<(), ProviderError>;
    /// An empty state of the current version.
    fn empty_state(&self) -> Box<dyn ServiceState>;
    /// Forgets everything.
    async fn reset(&self) -> Result<(), ProviderError> {
        self.restore(self.empty_state()).await
    }
}

/// A running emulated service: its AWS API and its state.
#[async_trait]
pub trait Service: StateProvider {
    /// Answers one AWS request routed to this service. Errors are answered in the service's
    /// own protocol, so this returns a response, not a `Result`.
    async fn handle(&self, req: AwsRequest) -> Response<Body>;

    /// S3-like services expose their objects to other services (Lambda code from S3)
    /// through this, so plugins never depend on each other's crates.
    fn object_source(&self) -> Option<&dyn ObjectSource> {
        None
    }

    /// Decides a request that a browser sent from another site (an `Origin` that is not the
    /// emulator's own, or `Sec-Fetch-Site: cross-site`); `origin` is that foreign `Origin`,
    /// if the browser sent one. Why a hook: AWS answers such requests per service (S3 by the
    /// bucket's CORS configuration), and the gateway must not know any service.
    ///
    /// The default serves only requests signed in an `Authorization` header: a browser sends
    /// that header cross-site only after a CORS preflight that the emulator never grants,
    /// whereas a page can forge an unsigned request (`<img src="/?Action=DeleteQueue…">`) or
    /// a presigned query string (signatures are not verified) with no preflight at all.
    fn cross_origin(&self, req: &http::Request<Body>, origin: Option<&str>) -> CrossOrigin {
        let signed = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("AWS4-HMAC-SHA256 "));
        if signed {
            return CrossOrigin::Allow(http::HeaderMap::new());
        }
        CrossOrigin::Refuse(format!(
            "a request from another web site ({}) without a SigV4 Authorization header is refused; \
             AWS SDKs, the AWS CLI and curl send no Origin and are not affected",
            origin.unwrap_or("Sec-Fetch-Site: cross-site")
        ))
    }

    /// For the rare cross-service call that needs the concrete type.
    fn as_any(&self) -> &dyn Any;
}

/// A service's answer to a cross-site browser request ([`Service::cross_origin`]).
#[derive(Debug)]
pub enum CrossOrigin {
    /// Serve the request and add these headers to its response (a CORS grant).
    Allow(http::HeaderMap),
    /// Answer with this response instead of serving the request (a CORS preflight).
    Answer(Response<Body>),
    /// Refuse it with `403 AccessDenied`; the message says why and how to allow it.
    Refuse(String),
}

/// Read access to objects held by a storage service, for other services.
#[async_trait]
pub trait ObjectSource: Send + Sync {
    /// The blob digest and size of `bucket/key` in `scope`, if it exists.
    async fn object_blob(
        &self,
        scope: &Scope,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<(Digest, u64), AwsError>;
}

/// How the gateway recognises requests for a service. A service lists several; the gateway
/// tries every service's rules in the order of this enum's variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// JSON protocols: `X-Amz-Target` starts with this prefix (`"AmazonSQS."`).
    JsonTarget(&'static str),
    /// The SigV4 credential scope names this signing service (`"sqs"`).
    SigningName(&'static str),
    /// Query protocol without a signature: the form's `Action` is one of these.
    QueryAction(&'static [&'static str]),
    /// REST APIs: the path starts with this prefix (`"/2015-03-31/functions"`).
    PathPrefix(&'static str),
    /// Takes whatever nothing else claimed (S3, by AWS convention).
    Fallback,
}

/// A plugin's entry in the registry. Create it with [`crate::plugin!`], which derives every
/// field that must agree with another (service, state version, tag) from one statement.
pub struct Registration {
    /// The service name; unique per build.
    pub service: &'static str,
    /// The state version the service writes, as its state type declares it; `None` only for
    /// the older [`crate::register_service!`], which does not name the state.
    /// [`crate::testing::check_registration`] checks it against the built provider.
    pub state_version: Option<u32>,
    /// Request routing rules.
    pub routes: &'static [Route],
    /// The operations the service answers, in AWS's names: the README's service table is
    /// checked against these lists, so they must be what the dispatch really answers.
    pub operations: &'static [&'static str],
    /// Builds the running service.
    pub build: fn(ServiceContext) -> Arc<dyn Service>,
}

inventory::collect!(Registration);

/// Every registered plugin, in service-name order.
pub fn registrations() -> Vec<&'static Registration> {
    let mut v: Vec<&'static Registration> = inventory::iter::<Registration>.into_iter().collect();
    v.sort_by_key(|r| r.service);
    v
}

/// Registers a service without stating its state or operations; prefer [`crate::plugin!`],
/// which also derives the state's tag, `SERVICE` and the state version from one statement.
/// Kept for test services and code written before `plugin!`.
///
/// ```ignore
/// cryopod::register_service! {
///     service: "notes",
///     routes: &[cryopod::Route::JsonTarget("Notes.")],
///     build: |ctx| std::sync::Arc::new(NotesService::new(ctx)),
/// }
/// ```
#[macro_export]
macro_rules! register_service {
    (service: $svc:literal, routes: $routes:expr, build: $build:expr $(,)?) => {
        $crate::__private::inventory::submit! {
            $crate::Registration {
                service: $svc,
                state_version: None,
                routes: $routes,
                operations: &[],
                build: $build,
            }
        }
    };
}

/// What the framework gives a service when it is built.
#[derive(Clone)]
pub struct ServiceContext {
    /// The service's name.
    pub service: &'static str,
    /// The shared content-addressed blob store.
    pub blobs: BlobStore,
    pub(crate) changes: Arc<ChangeTracker>,
    pub(crate) barrier: Arc<tokio::sync::RwLock<()>>,
    pub(crate) lookup: ServiceLookup,
}

impl ServiceContext {
    /// Records that `scope` changed, for persistence's dirty tracking. [`StateCell::write`]
    /// calls it; call it yourself only for changes made outside a cell.
    pub fn mark_changed(&self, scope: &Scope) {
        self.changes.mark(self.service, scope);
    }

    /// Another running service by name, for cross-service behaviour.
    pub fn service(&self, name: &str) -> Option<Arc<dyn Service>> {
        self.lookup.get(name)
    }

    /// A context outside any runtime, for unit tests of a plugin's state logic.
    pub fn detached(service: &'static str) -> std::io::Result<Self> {
        Ok(Self {
            service,
            blobs: BlobStore::temporary()?,
            changes: Arc::new(ChangeTracker::default()),
            barrier: Arc::new(tokio::sync::RwLock::new(())),
            lookup: ServiceLookup::default(),
        })
    }
}

/// Resolves services by name; filled once every service is built.
#[derive(Clone, Default)]
pub(crate) struct ServiceLookup(Arc<OnceLock<BTreeMap<&'static str, Weak<dyn Service>>>>);

impl ServiceLookup {
    pub(crate) fn set(&self, services: &BTreeMap<&'static str, Arc<dyn Service>>) {
        let map = services
            .iter()
            .map(|(k, v)| (*k, Arc::downgrade(v)))
            .collect();
        let _ = self.0.set(map);
    }

    fn get(&self, name: &str) -> Option<Arc<dyn Service>> {
        self.0.get()?.get(name)?.upgrade()
    }
}

/// Which scopes of which services changed, and a generation counter per service, so
/// persistence saves only what changed and `ON_REQUEST` can wait for durability.
#[derive(Default)]
pub struct ChangeTracker {
    generation: AtomicU64,
    dirty: Mutex<BTreeMap<&'static str, BTreeSet<Scope>>>,
}

tokio::task_local! {
    /// The newest change generation the current request made (0: none); set by
    /// [`ChangeTracker::mark`], scoped around one request by [`track_changes`].
    static REQUEST_CHANGES: std::cell::Cell<u64>;
}

/// Runs one request's handler and returns, with its output, the generation of the newest
/// change it made ([`ChangeTracker::mark`]), or `None` if it changed nothing.
///
/// Why per request, not the global generation read after the handler: that one also counts
/// other requests' later changes (a read-only request would wait for their commit), and under
/// `ON_REQUEST` a failed commit rolls changes back between a write and that read, so only the
/// request's own generation says whether *its* change is durable or was undone. Changes made
/// by tasks the handler spawns are not the request's (task-locals do not propagate).
pub async fn track_changes<F: std::future::Future>(handler: F) -> (F::Output, Option<u64>) {
    REQUEST_CHANGES
        .scope(std::cell::Cell::new(0), async move {
            let out = handler.await;
            let newest = REQUEST_CHANGES.with(std::cell::Cell::get);
            (out, (newest > 0).then_some(newest))
        })
        .await
}

impl ChangeTracker {
    /// Marks `scope` of `service` changed and returns the change's generation (the first is
    /// 1). Inside [`track_changes`] the generation is also recorded as the request's.
    pub(crate) fn mark(&self, service: &'static str, scope: &Scope) -> u64 {
        let mut dirty = self.dirty.lock();
        dirty.entry(service).or_default().insert(scope.clone());
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        drop(dirty);
        // Outside a request (timers, the internal API) there is no request to record it for.
        let _ = REQUEST_CHANGES.try_with(|c| c.set(c.get().max(generation)));
        generation
    }

    /// Increases with every change anywhere.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Takes the set of changed services and scopes, leaving it empty.
    pub fn take(&self) -> BTreeMap<&'static str, BTreeSet<Scope>> {
        std::mem::take(&mut *self.dirty.lock())
    }

    /// Puts back changes that a failed save could not write.
    pub fn restore(&self, changes: BTreeMap<&'static str, BTreeSet<Scope>>) {
        let mut dirty = self.dirty.lock();
        for (svc, scopes) in changes {
            dirty.entry(svc).or_default().extend(scopes);
        }
    }

    /// Whether anything is waiting to be saved.
    pub fn is_dirty(&self) -> bool {
        !self.dirty.lock().is_empty()
    }
}

/// Holds a service's live state and makes every write transactional, tracked and consistent
/// with captures. Plugin authors get persistence by doing all writes through
/// [`StateCell::write`]; they write no persistence code.
pub struct StateCell<S> {
    state: RwLock<S>,
    ctx: ServiceContext,
}

impl<S: ScopedState + ServiceState> StateCell<S> {
    /// An empty cell.
    pub fn new(ctx: ServiceContext) -> Self {
        Self {
            state: RwLock::new(S::default()),
            ctx,
        }
    }

    /// The service context the cell reports changes to.
    pub fn context(&self) -> &ServiceContext {
        &self.ctx
    }

    /// Reads the state. Keep the closure short: it holds a read lock.
    pub fn read<T>(&self, f: impl FnOnce(&S) -> T) -> T {
        f(&self.state.read())
    }

    /// Runs `f` on a copy of the state and installs the copy only if `f` succeeds, so a
    /// request that fails half-way changes nothing. Marks `scope` changed on success, which
    /// also records the change's generation as the current request's ([`track_changes`]):
    /// under `ON_REQUEST` the request is answered once that generation is durable, or with
    /// 503 if its commit failed and persistence rolled the change back.
    /// Waits while a capture holds the barrier, which is what makes a capture one point in
    /// time across services (and what lets a rollback run while no write is half done).
    pub async fn write<T, E>(
        &self,
        scope: &Scope,
        f: impl FnOnce(&mut S) -> Result<T, E>,
    ) -> Result<T, E> {
        let _gate = self.ctx.barrier.read().await;
        let mut guard = self.state.write();
        let mut copy = guard.clone();
        let out = f(&mut copy)?;
        *guard = copy;
        drop(guard);
        self.ctx.mark_changed(scope);
        Ok(out)
    }

    /// Like [`StateCell::write`] for changes not caused by a request (timers, background
    /// work): no scope is given, every scope `f` reports is marked changed.
    pub async fn write_scopes<T>(&self, f: impl FnOnce(&mut S) -> (T, Vec<Scope>)) -> T {
        let _gate = self.ctx.barrier.read().await;
        let mut guard = self.state.write();
        let (out, scopes) = f(&mut guard);
        drop(guard);
        for s in &scopes {
            self.ctx.mark_changed(s);
        }
        out
    }

    /// The O(1) copy a [`StateProvider::snapshot`] returns.
    pub fn capture(&self, filter: &ScopeFilter) -> Box<dyn ServiceState> {
        let copy = self.state.read().clone();
        if filter.is_all() {
            Box::new(copy)
        } else {
            copy.filtered(filter)
        }
    }

    /// Replaces the whole state; what [`StateProvider::restore`] does before rebuilding
    /// run-time structures.
    pub fn install(&self, state: Box<dyn ServiceState>) -> Result<(), ProviderError> {
        let s: S = state.downcast(self.ctx.service)?;
        *self.state.write() = s;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_sees_only_its_own_newest_change() {
        let changes = ChangeTracker::default();
        let scope = Scope::default();
        changes.mark("notes", &scope);
        let ((), none) = track_changes(async {}).await;
        assert_eq!(none, None, "a request that wrote nothing waits for nothing");
        let (first, mine) = track_changes(async {
            let a = changes.mark("notes", &scope);
            let b = changes.mark("notes", &scope);
            (a, b)
        })
        .await;
        assert_eq!(mine, Some(first.1));
        assert!(first.0 < first.1);
        // A change outside any request (a timer) is nobody's.
        let later = changes.mark("notes", &scope);
        assert!(later > first.1);
        assert_eq!(changes.generation(), later);
    }
}
