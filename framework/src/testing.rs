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
