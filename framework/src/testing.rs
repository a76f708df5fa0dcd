//! The conformance harness every plugin's tests call.
//!
//! The most common persistence bug is a field or resource type left out of save or restore.
//! [`check_provider`] catches it for any service: given a runtime whose service holds a richly
//! populated state, it checks capture → bundle → fresh runtime → apply → capture gives the
//! same state (byte for byte in its encoding, blobs included), for every merge strategy, and
//! that reset empties the service.

use std::io::Cursor;

use cryopod_bundle::WriteOptions;

use crate::error::{Error, Result};
use crate::runtime::Runtime;
use crate::scope::ScopeFilter;
use crate::state::{MergeStrategy, ServiceState};

/// The canonical bytes of a state, for equality checks.
pub fn encoded(state: &dyn ServiceState) -> Vec<u8> {
    let mut out = Vec::new();
    // Encoding into a Vec cannot fail for serde-derived types.
    if let Err(e) = state.encode_to(&mut out) {
        panic!("state of {} does not encode: {e}", state.service());
    }
    out
}

/// Runs the conformance checks for `service` in `populated` (a runtime whose service was
/// filled with a rich state). `fresh` builds an empty runtime running the same service.
/// Panics with a message naming the failed promise.
pub async fn check_provider(
    service: &str,
    populated: &Runtime,
    fresh: impl Fn() -> Runtime,
) -> Result<()> {
    let services = vec![service.to_string()];
    let before = populated
        .capture(Some(&services), &ScopeFilter::all())
        .await?;
    let state = &before.services[service];
    assert!(
        !state.scopes().is_empty(),
        "conformance needs a populated {service} state"
    );
    let (bundle, _) = populated
        .export(
            Some(&services),
            &ScopeFilter::all(),
            Vec::new(),
            WriteOptions::default(),
        )
        .await?;
    let expected = encoded(state.as_ref());

    for merge in MergeStrategy::ALL {
        // Into an empty runtime, every strategy must reproduce the state exactly.
        let target = fresh();
        target
            .import(Cursor::new(bundle.clone()), None, merge)
            .await?;
        let after = target.capture(Some(&services), &ScopeFilter::all()).await?;
        let got = encoded(after.services[service].as_ref());
        assert!(
            got == expected,
            "{service}: state after export/import with {merge} differs from the original (a field or resource type is not captured or not restored)"
        );
        for d in after.services[service].blobs() {
            let a = populated.blobs().read(&d)?;
            let b = target.blobs().read(&d)?;
            assert!(a == b, "{service}: blob {d} differs after import");
        }

        // Importing the same bundle twice changes nothing.
        target
            .import(Cursor::new(bundle.clone()), None, merge)
            .await?;
        let again = target.capture(Some(&services), &ScopeFilter::all()).await?;
        assert!(
            encoded(again.services[service].as_ref()) == expected,
            "{service}: importing the same bundle twice with {merge} is not idempotent"
        );

        // Reset empties the service; re-import restores it.
        target.reset(Some(&services)).await?;
        let empty = target.capture(Some(&services), &ScopeFilter::all()).await?;
        assert!(
            empty.services[service].scopes().is_empty(),
            "{service}: reset left resources behind"
        );
        target
            .import(Cursor::new(bundle.clone()), None, merge)
            .await?;
        let back = target.capture(Some(&services), &ScopeFilter::all()).await?;
        assert!(
            encoded(back.services[service].as_ref()) == expected,
            "{service}: import after reset with {merge} differs from the original"
        );
    }

    // Loading a state and dry-running the same state again shows no change: nothing that
    // moves on its own (capture times, clocks, derived indexes) counts as a modification.
    for merge in MergeStrategy::ALL {
        let target = fresh();
        target
            .import(Cursor::new(bundle.clone()), None, merge)
            .await?;
        let diff = crate::diff::plan(&target, &before, merge).await?;
        assert!(
            diff.is_empty(),
            "{service}: a dry run of the state just loaded ({merge}) reports changes: {}",
            serde_json::to_string(&diff).unwrap_or_default()
        );
    }

    // A corrupt bundle changes nothing.
    let target = fresh();
    target
        .import(Cursor::new(bundle.clone()), None, MergeStrategy::Overwrite)
        .await?;
    let mut corrupt = bundle.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0x55;
    match target
        .import(Cursor::new(corrupt), None, MergeStrategy::Overwrite)
        .await
    {
        Err(Error::Bundle(_)) | Err(Error::Decode { .. }) => {}
        Err(e) => panic!("{service}: corrupt bundle gave an unexpected error kind: {e}"),
        Ok(_) => panic!("{service}: a corrupt bundle was accepted"),
    }
    let still = target.capture(Some(&services), &ScopeFilter::all()).await?;
    assert!(
        encoded(still.services[service].as_ref()) == expected,
        "{service}: a failed import changed the running state"
    );
    Ok(())
}

/// Checks a plugin's merges at the level of its units ([`crate::units`]), with `running`
/// the state in the emulator and `incoming` a bundle's, which must overlap: some units only
/// in one, some only in the other, some in both with different content.
///
/// - `service-merge` must give every unit of `incoming` plus every unit of `running` that
///   `incoming` lacks, each with its own content: nothing of the user's dropped, nothing
///   mixed (a container's configuration comes from `incoming`, its contents are the union);
/// - `account-region-merge` must give `incoming`'s units in each scope `incoming` holds and
///   `running`'s elsewhere;
/// - `overwrite` must give exactly `incoming`'s units.
///
/// Panics with a message naming the unit that went wrong.
pub fn check_merges(running: &dyn ServiceState, incoming: &dyn ServiceState) {
    use std::collections::{BTreeMap, BTreeSet};

    use crate::scope::Scope;
    use crate::units::Units;

    let service = running.service();
    let by_scope =
        |s: &dyn ServiceState| -> BTreeMap<Scope, Units> { s.units().into_iter().collect() };
    let a = by_scope(running);
    let b = by_scope(incoming);

    // The states must overlap for the check to mean anything.
    let (mut only_a, mut only_b, mut clash) = (0, 0, 0);
    for (scope, ua) in &a {
        let Some(ub) = b.get(scope) else { continue };
        for (k, fa) in ua.iter() {
            match ub.get(k.kind, &k.id) {
                None => only_a += 1,
                Some(fb) if fb != fa => clash += 1,
                Some(_) => {}
            }
        }
        only_b += ub
            .iter()
            .filter(|(k, _)| ua.get(k.kind, &k.id).is_none())
            .count();
    }
    assert!(
        only_a > 0 && only_b > 0 && clash > 0,
        "{service}: check_merges needs overlapping states sharing a scope (units only in running: {only_a}, only in incoming: {only_b}, in both with other content: {clash})"
    );

    let empty = Units::new();
    for strategy in MergeStrategy::ALL {
        let merged = match running.merged(incoming.clone_box(), strategy) {
            Ok(m) => m,
            Err(e) => panic!("{service}: {strategy} of two valid states failed: {e}"),
        };
        let got = by_scope(merged.as_ref());
        let scopes: BTreeSet<&Scope> = a.keys().chain(b.keys()).collect();
        for scope in scopes {
            let ua = a.get(scope).unwrap_or(&empty);
            let ub = b.get(scope);
            let expected = match strategy {
                MergeStrategy::ServiceMerge => match ub {
                    Some(ub) => ua.overlaid(ub),
                    None => ua.clone(),
                },
                MergeStrategy::AccountRegionMerge => ub.cloned().unwrap_or_else(|| ua.clone()),
                MergeStrategy::Overwrite => ub.cloned().unwrap_or_default(),
            };
            let actual = got.get(scope).unwrap_or(&empty);
            if actual == &expected {
                continue;
            }
            for (k, fp) in expected.iter() {
                match actual.get(k.kind, &k.id) {
                    None => panic!(
                        "{service}: {strategy} in {scope} lost {} `{}`",
                        k.kind, k.id
                    ),
                    Some(f) if f != fp => {
                        let from = if ub.and_then(|u| u.get(k.kind, &k.id)).is_some() {
                            "the incoming state"
                        } else {
                            "the running state"
                        };
                        panic!(
                            "{service}: {strategy} in {scope}: {} `{}` is not the one from {from}",
                            k.kind, k.id
                        )
                    }
                    Some(_) => {}
                }
            }
            for (k, _) in actual.iter() {
                if expected.get(k.kind, &k.id).is_none() {
                    panic!(
                        "{service}: {strategy} in {scope} produced {} `{}`, which neither state holds",
                        k.kind, k.id
                    );
                }
            }
        }
    }
}

/// CPU time this process has used so far, every thread, user and system, from
/// `/proc/self/stat` (10 ms ticks); zero where that file does not exist.
///
/// Benchmarks report it beside wall time: on a shared machine other work takes turns on
/// the CPU, which stretches wall time but adds no CPU time here.
pub fn process_cpu_time() -> std::time::Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (in parentheses): utime is the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    std::time::Duration::from_millis(ticks * 10)
}

/// A `Write` that keeps nothing and counts what it was given, like `> /dev/null`.
///
/// Benchmarks compare an export against a baseline (raw zstd, an HTTP client reading the
/// body) that only counts bytes; writing both into this sink keeps either side from paying
/// for filling a large buffer (whose page faults would be charged to one side only).
#[derive(Debug, Default)]
pub struct CountingSink(pub u64);

impl std::io::Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// The plugin test kit: build a runtime in process, call a service, check a registration.

/// A runtime running exactly `services`, which must be linked into the test binary (name
/// the plugin crate somewhere, `assert_eq!(my_plugin::SERVICE, "notes")`, or its
/// registration is not there). Panics naming the problem, as a test should.
pub fn runtime_with(services: &[&str]) -> Runtime {
    match Runtime::builder()
        .enable(Some(services.iter().map(|s| s.to_string()).collect()))
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("cannot build a runtime with {services:?}: {e}"),
    }
}

/// A service's answer to an in-process call ([`call`], [`call_json`]).
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: http::StatusCode,
    /// The response headers.
    pub headers: http::HeaderMap,
    /// The whole body.
    pub body: bytes::Bytes,
}

impl Answer {
    /// The body as JSON; panics (naming the body) if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        match serde_json::from_slice(&self.body) {
            Ok(v) => v,
            Err(e) => panic!(
                "answer ({}) is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            ),
        }
    }

    /// The JSON body of a success; panics with the error if the status is not 2xx.
    pub fn ok_json(&self) -> serde_json::Value {
        assert!(
            self.status.is_success(),
            "expected success, got {}: {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        self.json()
    }

    /// The AWS error code, without namespace (`com.amazonaws.x#Code`, `AWS.SimpleQueueService.`):
    /// from `x-amzn-ErrorType`, a JSON `__type`/`Type`/`code`, or an XML `<Code>`.
    pub fn error_code(&self) -> Option<String> {
        if self.status.is_success() {
            return None;
        }
        let trim = |c: &str| -> String {
            let c = c.split(':').next().unwrap_or(c);
            let c = c.rsplit('#').next().unwrap_or(c);
            c.trim_start_matches("AWS.SimpleQueueService.").to_string()
        };
        if let Some(v) = self
            .headers
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
        {
            return Some(trim(v));
        }
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&self.body) {
            for field in ["__type", "code", "Code", "Type"] {
                if let Some(c) = v.get(field).and_then(|c| c.as_str()) {
                    return Some(trim(c));
                }
            }
        }
        let text = String::from_utf8_lossy(&self.body);
        let start = text.find("<Code>")? + "<Code>".len();
        let end = text[start..].find("</Code>")? + start;
        Some(trim(&text[start..end]))
    }

    /// Whether this is the answer to an operation the service does not implement: the
    /// error codes cryopod's services use for that (`UnknownOperationException`,
    /// `InvalidAction`, `UnsupportedOperation`, `NotImplemented…`) or a 501.
    pub fn is_unknown_operation(&self) -> bool {
        self.status == http::StatusCode::NOT_IMPLEMENTED
            || self.error_code().is_some_and(|c| {
                matches!(
                    c.as_str(),
                    "UnknownOperationException"
                        | "UnknownOperation"
                        | "InvalidAction"
                        | "UnsupportedOperation"
                        | "NotImplemented"
                        | "NotImplementedException"
                )
            })
    }
}

/// Sends one request to `service` in process, as the gateway would after routing it, with
/// the scope already derived, and reads the whole answer. Panics if `service` is not running.
pub async fn call(
    rt: &Runtime,
    service: &str,
    scope: &crate::scope::Scope,
    request: http::Request<crate::aws::Body>,
) -> Answer {
    use http_body_util::BodyExt;

    let Some(svc) = rt.service(service) else {
        panic!("{service} is not running in this runtime");
    };
    let req = crate::aws::AwsRequest {
        scope: scope.clone(),
        access_key_id: None,
        endpoint: "http://127.0.0.1:4566".into(),
        request,
    };
    let (parts, body) = svc.handle(req).await.into_parts();
    let body = match body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => panic!("{service}: the answer's body broke off: {e}"),
    };
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// The service whose [`Route::JsonTarget`](crate::Route::JsonTarget) claims `target`, as
/// the gateway routes JSON protocols.
fn json_target_service(target: &str) -> Option<&'static str> {
    crate::service::registrations().into_iter().find_map(|r| {
        r.routes
            .iter()
            .any(|route| matches!(route, crate::Route::JsonTarget(p) if target.starts_with(p)))
            .then_some(r.service)
    })
}

/// Calls a JSON-protocol operation in process: `target` is the `X-Amz-Target`
/// (`"Notes.PutNote"`), which also picks the service, as the gateway does. Answers whatever
/// the service answers; [`Answer::ok_json`] asserts success.
pub async fn call_json(
    rt: &Runtime,
    scope: &crate::scope::Scope,
    target: &str,
    body: serde_json::Value,
) -> Answer {
    let Some(service) = json_target_service(target) else {
        panic!("no registered service claims X-Amz-Target {target}");
    };
    let request = match http::Request::builder()
        .method("POST")
        .uri("/")
        .header("x-amz-target", target)
        .header("content-type", "application/x-amz-json-1.0")
        .body(crate::aws::Body::from(body.to_string()))
    {
        Ok(r) => r,
        Err(e) => panic!("X-Amz-Target {target} does not make a request: {e}"),
    };
    call(rt, service, scope, request).await
}

/// Checks that a plugin registered itself consistently: a registration exists (the crate is
/// linked), it states its state version (`cryopod::plugin!`, not `register_service!`), the
/// built provider reports that service and version, its empty state is of that service and
/// version, a typed codec is registered under the tag `"{service}/{version}"`, and the empty
/// state survives a section round trip. Every plugin's tests call it; `cryopod::plugin!`
/// makes most of it true by construction, and this catches hand-written providers.
/// Call it inside a tokio runtime (building a service may spawn tasks).
pub fn check_registration(service: &str) {
    let Some(reg) = crate::service::registrations()
        .into_iter()
        .find(|r| r.service == service)
    else {
        panic!("{service}: no registration (is the plugin crate named in the test, so it links?)");
    };
    let Some(version) = reg.state_version else {
        panic!(
            "{service}: registered with register_service!, which does not state the state version; use cryopod::plugin!"
        );
    };
    let ctx = match crate::service::ServiceContext::detached(reg.service) {
        Ok(c) => c,
        Err(e) => panic!("{service}: no temporary blob store: {e}"),
    };
    let svc = (reg.build)(ctx);
    assert_eq!(
        svc.service(),
        service,
        "{service}: the provider names another service"
    );
    assert_eq!(
        svc.state_version(),
        version,
        "{service}: the provider's state_version() disagrees with the registration"
    );
    let empty = svc.empty_state();
    assert_eq!(
        (empty.service(), empty.version()),
        (service, version),
        "{service}: the empty state is not of this service and version"
    );
    let tag = format!("{service}/{version}");
    assert!(
        crate::state::section_codec(&tag).is_some(),
        "{service}: no state registered under the tag {tag}"
    );
    let bytes = encoded(empty.as_ref());
    match crate::state::decode_section(service, version, &mut &bytes[..]) {
        Ok((back, 0)) => assert_eq!(
            encoded(back.as_ref()),
            bytes,
            "{service}: the empty state changes in a round trip"
        ),
        Ok((_, n)) => panic!("{service}: {n} bytes follow the encoded empty state"),
        Err(e) => panic!("{service}: the empty state does not decode under {tag}: {e}"),
    }
    let mut seen = std::collections::BTreeSet::new();
    for op in reg.operations {
        assert!(
            seen.insert(*op),
            "{service}: operation {op} is listed twice"
        );
    }
}

/// Checks that every operation `service` lists in its registration is dispatched, not
/// answered as an unknown operation ([`Answer::is_unknown_operation`]), and that a made-up
/// operation is (so the check can fail). `request` builds a request for one operation name;
/// its input need not be valid, a validation error is an answer. For JSON-protocol
/// services, [`check_json_operations`] builds the requests.
pub async fn check_operations(
    rt: &Runtime,
    service: &str,
    request: impl Fn(&str) -> http::Request<crate::aws::Body>,
) {
    let Some(reg) = crate::service::registrations()
        .into_iter()
        .find(|r| r.service == service)
    else {
        panic!("{service}: no registration");
    };
    assert!(
        !reg.operations.is_empty(),
        "{service}: the registration lists no operations"
    );
    let scope = crate::scope::Scope::default();
    for op in reg.operations {
        let answer = call(rt, service, &scope, request(op)).await;
        assert!(
            !answer.is_unknown_operation(),
            "{service}: listed operation {op} is answered as unknown: {} {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
    }
    let made_up = call(rt, service, &scope, request("NoSuchOperationAtAll")).await;
    assert!(
        made_up.is_unknown_operation(),
        "{service}: a made-up operation is not answered as unknown ({} {}), so this check proves nothing",
        made_up.status,
        String::from_utf8_lossy(&made_up.body)
    );
}

/// [`check_operations`] for a JSON-protocol service: each operation is sent as
/// `X-Amz-Target: {prefix}{op}` with an empty JSON object, `prefix` being the service's first
/// [`Route::JsonTarget`](crate::Route::JsonTarget).
pub async fn check_json_operations(rt: &Runtime, service: &str) {
    let prefix = crate::service::registrations()
        .into_iter()
        .find(|r| r.service == service)
        .and_then(|r| {
            r.routes.iter().find_map(|route| match route {
                crate::Route::JsonTarget(p) => Some(*p),
                _ => None,
            })
        });
    let Some(prefix) = prefix else {
        panic!("{service}: no JsonTarget route");
    };
    check_operations(rt, service, |op| {
        match http::Request::builder()
            .method("POST")
            .uri("/")
            .header("x-amz-target", format!("{prefix}{op}"))
            .header("content-type", "application/x-amz-json-1.0")
            .body(crate::aws::Body::from("{}"))
        {
            Ok(r) => r,
            Err(e) => panic!("{service}: operation {op} does not make a request: {e}"),
        }
    })
    .await;
}

/// A real HTTP emulator on a loopback port running exactly `services`, for tests with an
/// AWS SDK or any HTTP client: point the client at `server.endpoint`; `server.runtime` is
/// the runtime behind it. The server stops when the value is dropped. Call it inside a
/// tokio runtime.
#[cfg(feature = "server")]
pub async fn http_server(services: &[&str]) -> crate::server::TestServer {
    crate::server::TestServer::start(services).await
}

/// Writes the golden bundle of `service`'s current state version: `rt`'s state of that
/// service (fill it with the plugin's richest `populate`) exported to `path`. Run it only
/// from an ignored test, once per state version: the file is committed and never rewritten,
/// so that [`load_golden`] proves that this version's bundles still load in later builds.
pub async fn write_golden(rt: &Runtime, service: &str, path: &std::path::Path) -> Result<()> {
    let services = vec![service.to_string()];
    let (bytes, _) = rt
        .export(
            Some(&services),
            &ScopeFilter::all(),
            Vec::new(),
            WriteOptions::default(),
        )
        .await?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, bytes)?;
    Ok(())
}

/// Loads a committed golden bundle of `service` into `rt` (replacing its state) and checks
/// that the bundle holds that service at state version `version` and that it loaded, not
/// skipped. The caller then checks concrete values of the loaded state.
pub async fn load_golden(
    rt: &Runtime,
    service: &str,
    version: u32,
    path: &std::path::Path,
) -> Result<crate::runtime::ApplyReport> {
    let bytes = std::fs::read(path)?;
    let bundle = cryopod_bundle::SeekableBundle::open(
        Cursor::new(bytes.clone()),
        cryopod_bundle::Limits::default(),
    )?;
    let entry = bundle
        .manifest()
        .services
        .iter()
        .find(|s| s.name == service)
        .map(|s| s.state_version);
    assert_eq!(
        entry,
        Some(version),
        "{}: the golden bundle does not hold {service} at version {version}",
        path.display()
    );
    let report = rt
        .import(Cursor::new(bytes), None, MergeStrategy::Overwrite)
        .await?;
    assert!(
        report.loaded.contains_key(service),
        "{}: {service} was not loaded: {:?}",
        path.display(),
        report.skipped
    );
    Ok(report)
}

/// Checks that a checkpoint of `service` restores it exactly: the capture after taking the
/// checkpoint, emptying the service and restoring equals the capture before (byte for byte
/// in its encoding), so whatever a pod load re-creates, a restore re-creates too. Panics
/// naming the failed promise; `populated` must hold a populated state of `service`.
pub async fn check_checkpoint(service: &str, populated: &Runtime) -> Result<()> {
    let services = vec![service.to_string()];
    let expected = encoded(
        populated
            .capture(Some(&services), &ScopeFilter::all())
            .await?
            .services[service]
            .as_ref(),
    );
    let name = "cryopod-conformance";
    populated
        .checkpoint_save(name, Some(&services))
        .await
        .map_err(checkpoint_failed)?;
    populated.reset(Some(&services)).await?;
    populated
        .checkpoint_restore(name, Some(&services))
        .await
        .map_err(checkpoint_failed)?;
    let got = encoded(
        populated
            .capture(Some(&services), &ScopeFilter::all())
            .await?
            .services[service]
            .as_ref(),
    );
    populated
        .checkpoint_delete(name)
        .map_err(checkpoint_failed)?;
    assert!(
        got == expected,
        "{service}: state after a checkpoint restore differs from the checkpoint's capture"
    );
    Ok(())
}

fn checkpoint_failed(e: crate::checkpoint::CheckpointError) -> Error {
    match e {
        crate::checkpoint::CheckpointError::Runtime(e) => e,
        other => Error::Task(other.to_string()),
    }
}

/// A fixture for tests that each start from the same state: take it once after seeding,
/// then call [`Checkpointed::fresh`] at the start of every test. The checkpoint is deleted
/// when the fixture is dropped.
///
/// ```ignore
/// let base = Checkpointed::take(&runtime, "seeded").await?;
/// for case in cases {
///     base.fresh().await?; // exactly the seeded state, in milliseconds
///     run(case, &runtime).await;
/// }
/// ```
pub struct Checkpointed {
    runtime: Runtime,
    name: String,
}

impl Checkpointed {
    /// Takes checkpoint `name` of every running service.
    pub async fn take(
        runtime: &Runtime,
        name: &str,
    ) -> std::result::Result<Self, crate::checkpoint::CheckpointError> {
        runtime.checkpoint_save(name, None).await?;
        Ok(Self {
            runtime: runtime.clone(),
            name: name.to_string(),
        })
    }

    /// Puts the running state back to the checkpoint.
    pub async fn fresh(&self) -> std::result::Result<(), crate::checkpoint::CheckpointError> {
        self.runtime.checkpoint_restore(&self.name, None).await?;
        Ok(())
    }

    /// Runs `test` on the checkpoint's state, restoring it first.
    pub async fn run<T, F: std::future::Future<Output = T>>(
        &self,
        test: impl FnOnce(Runtime) -> F,
    ) -> std::result::Result<T, crate::checkpoint::CheckpointError> {
        self.fresh().await?;
        Ok(test(self.runtime.clone()).await)
    }
}

impl Drop for Checkpointed {
    fn drop(&mut self) {
        if let Err(e) = self.runtime.checkpoint_delete(&self.name) {
            tracing::debug!(checkpoint = %self.name, error = %e, "fixture checkpoint already gone");
        }
    }
}
