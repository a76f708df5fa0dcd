//! Shared support for the framework's semantic tests.
//!
//! Besides `notes` (the example plugin), every test binary that includes this module links
//! two tiny test services, registered exactly as a real plugin registers itself:
//! - `counter`: named integer counters per scope, so merges and point-in-time captures can
//!   be checked across *two* services;
//! - `fragile`: the same shape, but its `restore` can be told to fail, to prove that an
//!   apply rolls back the services it already changed.
//!
//! Each test binary uses only part of this module.
#![allow(dead_code)]

use std::any::Any;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use cryopod::bundle::WriteOptions;
use cryopod::plugin::CellProvider;
use cryopod::{
    AwsError, AwsRequest, Body, MergeStrategy, ProviderError, ResourceCounts, Resources, Runtime,
    Scope, ScopeFilter, Scoped, ScopedState, Service, ServiceState, Snapshot, StateCell,
    StateProvider,
};
use cryopod_notes::state::{Note, Notebook, NotesScope, NotesState};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const A1: &str = "111111111111";
pub const A2: &str = "222222222222";
pub const US: &str = "us-east-1";
pub const EU: &str = "eu-west-1";

pub fn scope(account: &str, region: &str) -> Scope {
    Scope::new(account, region)
}

// ---------------------------------------------------------------------------------------
// The `counter` test service.

/// One scope's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterScope {
    pub counters: imbl::OrdMap<String, i64>,
}

impl Resources for CounterScope {
    /// On a name clash the incoming counter wins.
    fn merge(&mut self, incoming: Self) {
        self.counters.extend(incoming.counters);
    }

    fn summary(&self) -> ResourceCounts {
        [("counter".to_string(), self.counters.len() as u64)].into()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CounterState {
    pub scopes: Scoped<CounterScope>,
}

impl ScopedState for CounterState {
    type Resources = CounterScope;
    fn scoped(&self) -> &Scoped<CounterScope> {
        &self.scopes
    }
    fn scoped_mut(&mut self) -> &mut Scoped<CounterScope> {
        &mut self.scopes
    }
}

cryopod::service_state!(CounterState, service = "counter", version = 1);

pub struct CounterService {
    pub cell: StateCell<CounterState>,
    /// When set, `snapshot` takes a millisecond after cloning, as a provider with more to
    /// copy would: it widens the gap between the clones of a multi-service capture.
    pub slow_snapshot: AtomicBool,
}

impl CounterService {
    /// Sets counter `name` in `scope` through the transactional write path every request
    /// uses.
    pub async fn set(&self, scope: &Scope, name: &str, value: i64) {
        self.cell
            .write(scope, |s| {
                s.scopes
                    .get_mut(scope)
                    .counters
                    .insert(name.to_string(), value);
                Ok::<_, Infallible>(())
            })
            .await
            .unwrap_or_else(|e| match e {});
    }

    /// The live value of counter `name` in `scope`.
    pub fn get(&self, scope: &Scope, name: &str) -> Option<i64> {
        self.cell.read(|s| {
            s.scopes
                .get(scope)
                .and_then(|r| r.counters.get(name).copied())
        })
    }
}

#[async_trait]
impl StateProvider for CounterService {
    fn service(&self) -> &'static str {
        "counter"
    }
    fn state_version(&self) -> u32 {
        1
    }
    async fn snapshot(&self, filter: &ScopeFilter) -> Result<Box<dyn ServiceState>, ProviderError> {
        let state = self.cell.capture(filter);
        if self.slow_snapshot.load(Ordering::SeqCst) {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        Ok(state)
    }
    async fn restore(&self, state: Box<dyn ServiceState>) -> Result<(), ProviderError> {
        self.cell.install(state)
    }
    fn empty_state(&self) -> Box<dyn ServiceState> {
        Box::new(CounterState::default())
    }
}

#[async_trait]
impl Service for CounterService {
    async fn handle(&self, _req: AwsRequest) -> http::Response<Body> {
        AwsError::bad_request("UnknownOperationException", "counter has no API").to_json_response()
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

cryopod::register_service! {
    service: "counter",
    routes: &[cryopod::Route::JsonTarget("Counter.")],
    build: |ctx| Arc::new(CounterService {
        cell: StateCell::new(ctx),
        slow_snapshot: AtomicBool::new(false),
    }),
}

// ---------------------------------------------------------------------------------------
// The `fragile` test service: counters whose restore fails on request.

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FragileState {
    pub scopes: Scoped<CounterScope>,
}

impl ScopedState for FragileState {
    type Resources = CounterScope;
    fn scoped(&self) -> &Scoped<CounterScope> {
        &self.scopes
    }
    fn scoped_mut(&mut self) -> &mut Scoped<CounterScope> {
        &mut self.scopes
    }
}

cryopod::service_state!(FragileState, service = "fragile", version = 1);

pub struct FragileService {
    pub cell: StateCell<FragileState>,
    /// When set, the next `restore` fails without installing anything (and clears the flag,
    /// so the rollback that follows can restore).
    pub fail_next_restore: AtomicBool,
}

impl CellProvider for FragileService {
    type State = FragileState;
    fn cell(&self) -> &StateCell<FragileState> {
        &self.cell
    }
    fn before_install(&self, _state: &mut FragileState) -> Result<(), ProviderError> {
        if self.fail_next_restore.swap(false, Ordering::SeqCst) {
            return Err(ProviderError::Other {
                service: "fragile",
                message: "restore refused by the test".into(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl Service for FragileService {
    async fn handle(&self, _req: AwsRequest) -> http::Response<Body> {
        AwsError::bad_request("UnknownOperationException", "fragile has no API").to_json_response()
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

cryopod::register_service! {
    service: "fragile",
    routes: &[cryopod::Route::JsonTarget("Fragile.")],
    build: |ctx| Arc::new(FragileService {
        cell: StateCell::new(ctx),
        fail_next_restore: AtomicBool::new(false),
    }),
}

// ---------------------------------------------------------------------------------------
// Runtimes and services.

/// A runtime running exactly `services`.
pub fn runtime_with(services: &[&str]) -> Runtime {
    // Naming the plugin crate links it, so its registration is in the registry.
    assert_eq!(cryopod_notes::SERVICE, "notes");
    cryopod::testing::runtime_with(services)
}

/// A runtime running `notes` and `counter`.
pub fn runtime() -> Runtime {
    runtime_with(&["notes", "counter"])
}

pub fn counter(rt: &Runtime) -> &CounterService {
    rt.service("counter")
        .expect("counter runs")
        .as_any()
        .downcast_ref()
        .expect("counter is a CounterService")
}

pub fn fragile(rt: &Runtime) -> &FragileService {
    rt.service("fragile")
        .expect("fragile runs")
        .as_any()
        .downcast_ref()
        .expect("fragile is a FragileService")
}

/// Sends one notes API request in `scope` and returns the JSON answer; panics unless 200.
pub async fn notes_call(rt: &Runtime, scope: &Scope, op: &str, body: Value) -> Value {
    cryopod::testing::call_json(rt, scope, &format!("Notes.{op}"), body)
        .await
        .ok_json()
}

// ---------------------------------------------------------------------------------------
// States written out literally.

/// One note in a literal state: `(key, text, revision)`.
pub type NoteSpec<'a> = (&'a str, &'a str, u64);

/// One notebook in a literal state.
pub struct NotebookSpec<'a> {
    pub scope: (&'a str, &'a str),
    pub name: &'a str,
    pub tags: &'a [(&'a str, &'a str)],
    pub notes: &'a [NoteSpec<'a>],
}

/// Builds a notes state from literal notebooks (no attachments).
pub fn notes_state(notebooks: &[NotebookSpec<'_>]) -> NotesState {
    let mut state = NotesState::default();
    for nb in notebooks {
        let resources: &mut NotesScope = state.scopes.get_mut(&scope(nb.scope.0, nb.scope.1));
        resources.notebooks.insert(
            nb.name.to_string(),
            Notebook {
                notes: nb
                    .notes
                    .iter()
                    .map(|(k, text, revision)| {
                        (
                            k.to_string(),
                            Note {
                                text: text.to_string(),
                                attachment: None,
                                revision: *revision,
                            },
                        )
                    })
                    .collect(),
                tags: nb
                    .tags
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            },
        );
    }
    state
}

/// Builds a counter state from `(account, region, name, value)` rows.
pub fn counter_state(rows: &[(&str, &str, &str, i64)]) -> CounterState {
    let mut state = CounterState::default();
    for (a, r, name, value) in rows {
        state
            .scopes
            .get_mut(&scope(a, r))
            .counters
            .insert(name.to_string(), *value);
    }
    state
}

/// Installs these states as the whole running state of `rt` (every other service empty).
pub async fn install(rt: &Runtime, states: Vec<Box<dyn ServiceState>>) {
    let mut snapshot = Snapshot::default();
    for s in states {
        snapshot.services.insert(s.service().to_string(), s);
    }
    rt.apply(snapshot, MergeStrategy::Overwrite)
        .await
        .expect("installing a test state");
}

/// The running notes state.
pub async fn live_notes(rt: &Runtime) -> NotesState {
    let snap = rt
        .capture(Some(&["notes".to_string()]), &ScopeFilter::all())
        .await
        .expect("capture");
    snap.services["notes"]
        .as_any()
        .downcast_ref::<NotesState>()
        .expect("notes state")
        .clone()
}

/// The running counter state.
pub async fn live_counters(rt: &Runtime) -> CounterState {
    let snap = rt
        .capture(Some(&["counter".to_string()]), &ScopeFilter::all())
        .await
        .expect("capture");
    snap.services["counter"]
        .as_any()
        .downcast_ref::<CounterState>()
        .expect("counter state")
        .clone()
}

/// The notes state as sorted lines, so expectations can be written out literally:
/// `"111111111111/us-east-1 work [team=ours]"` for a notebook and its tags,
/// `"111111111111/us-east-1 work/todo r2 = text"` for a note.
pub fn describe_notes(state: &NotesState) -> Vec<String> {
    let mut out = Vec::new();
    for (s, resources) in state.scopes.iter() {
        for (name, nb) in resources.notebooks.iter() {
            let tags: Vec<String> = nb.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push(format!("{s} {name} [{}]", tags.join(",")));
            for (key, note) in nb.notes.iter() {
                let attachment = match &note.attachment {
                    Some(d) => format!(" +{d}"),
                    None => String::new(),
                };
                out.push(format!(
                    "{s} {name}/{key} r{} = {}{attachment}",
                    note.revision, note.text
                ));
            }
        }
    }
    out.sort();
    out
}

/// The counter state as sorted lines: `"111111111111/us-east-1 hits = 10"`.
pub fn describe_counters(state: &CounterState) -> Vec<String> {
    let mut out: Vec<String> = state
        .scopes
        .iter()
        .flat_map(|(s, r)| {
            r.counters
                .iter()
                .map(move |(name, v)| format!("{s} {name} = {v}"))
        })
        .collect();
    out.sort();
    out
}

/// Sorted copy of literal expectation lines.
pub fn lines(expected: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// A state's canonical encoding (compared) with a JSON rendering (shown on a mismatch).
pub struct Encoded {
    pub bytes: Vec<u8>,
    json: String,
}

impl PartialEq for Encoded {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl std::fmt::Debug for Encoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.json)
    }
}

/// Every running service's state in its canonical encoding, for "exactly as before" checks.
pub async fn fingerprint(rt: &Runtime) -> BTreeMap<String, Encoded> {
    rt.capture(None, &ScopeFilter::all())
        .await
        .expect("capture")
        .services
        .iter()
        .map(|(name, st)| {
            let encoded = Encoded {
                bytes: cryopod::testing::encoded(st.as_ref()),
                json: serde_json::to_string(st).unwrap_or_else(|e| e.to_string()),
            };
            (name.clone(), encoded)
        })
        .collect()
}

/// Exports the running state of `services` (default: all) as bundle bytes.
pub async fn export(rt: &Runtime, services: Option<&[&str]>) -> Vec<u8> {
    let services: Option<Vec<String>> = services.map(|s| s.iter().map(|n| n.to_string()).collect());
    rt.export(
        services.as_deref(),
        &ScopeFilter::all(),
        Vec::new(),
        WriteOptions::default(),
    )
    .await
    .expect("export")
    .0
}

/// A non-seekable reader that hands out at most `step` bytes per read, like a pipe.
pub struct Pipe {
    pub data: Vec<u8>,
    pub pos: usize,
    pub step: usize,
}

impl Pipe {
    pub fn new(data: Vec<u8>, step: usize) -> Self {
        Self { data, pos: 0, step }
    }
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.step).min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A bundle written section by section with `BundleWriter`, for bundles `Runtime::export`
/// would never produce: `(service, state_version, payload)` in file order, no blobs.
pub fn handmade_bundle(sections: &[(&str, u32, Vec<u8>)]) -> Vec<u8> {
    use cryopod::bundle::{BundleWriter, Manifest, ServiceEntry};
    let manifest = Manifest {
        producer: "cryopod-notes tests".into(),
        created_at: "2025-01-01T00:00:00Z".into(),
        services: sections
            .iter()
            .map(|(name, version, _)| ServiceEntry {
                name: name.to_string(),
                state_version: *version,
                scopes: Vec::new(),
            })
            .collect(),
        blobs: Default::default(),
    };
    let mut w = BundleWriter::new(Vec::new(), &manifest, WriteOptions::default()).expect("writer");
    for (name, version, payload) in sections {
        w.write_section(name, *version, payload).expect("section");
    }
    w.finish().expect("finish")
}

/// The canonical section payload of a state (what `Runtime::export` writes).
pub fn payload(state: &dyn ServiceState) -> Vec<u8> {
    cryopod::testing::encoded(state)
}
