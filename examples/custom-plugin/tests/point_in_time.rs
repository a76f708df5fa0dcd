//! One point in time: a capture of several services clones them all inside one barrier, so
//! it never shows one service *after* a write and another *before* an earlier one.
//!
//! A writer advances two services in lockstep, step N being `counter.step = N` and then
//! `notes clock/step` at revision N, each through its own `StateCell::write`. A capture may
//! fall between the two writes of a step (counter = N, notes = N − 1), but a capture taken at
//! one instant can never show notes ahead of the counter. Captures clone `counter` before
//! `notes` (service-name order), and `counter` is made slow to clone, so a capture that let
//! writers run between the two clones would see exactly that within a few captures; the
//! control experiment shows the check catches such a capture every time.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use cryopod::{Runtime, Scope, ScopeFilter, ServiceState};
use cryopod_notes::state::NotesState;
use serde_json::json;

const CAPTURES: usize = 200;

fn step_scope() -> Scope {
    scope(A1, US)
}

/// The counter's step in a captured counter state (0 before the first step).
fn counter_step(state: &dyn ServiceState) -> i64 {
    let s: &CounterState = state.as_any().downcast_ref().expect("counter state");
    s.scopes
        .get(&step_scope())
        .and_then(|r| r.counters.get("step").copied())
        .unwrap_or(0)
}

/// The note's revision in a captured notes state (0 before the first step).
fn notes_step(state: &dyn ServiceState) -> i64 {
    let s: &NotesState = state.as_any().downcast_ref().expect("notes state");
    s.scopes
        .get(&step_scope())
        .and_then(|r| r.notebooks.get("clock"))
        .and_then(|nb| nb.notes.get("step"))
        .map_or(0, |n| n.revision as i64)
}

/// Whether `(counter, notes)` can be one instant of the lockstep writer.
fn one_instant(counter: i64, notes: i64) -> bool {
    notes <= counter && counter - notes <= 1
}

/// Starts the lockstep writer; it runs until `stop` is set and returns its last step.
fn start_writer(rt: &Runtime, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<i64> {
    let rt = rt.clone();
    tokio::spawn(async move {
        let s = step_scope();
        let mut n = 0;
        while !stop.load(Ordering::SeqCst) {
            n += 1;
            counter(&rt).set(&s, "step", n).await;
            let r = notes_call(
                &rt,
                &s,
                "PutNote",
                json!({"NotebookName": "clock", "Key": "step", "Text": n.to_string()}),
            )
            .await;
            assert_eq!(r["Revision"], n);
        }
        n
    })
}

/// Polls (never a fixed sleep) until the writer's counter is past `step`.
async fn wait_for_writer_past(rt: &Runtime, step: i64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while counter(rt).get(&step_scope(), "step").unwrap_or(0) <= step {
        assert!(
            Instant::now() < deadline,
            "the writer made no progress past step {step}"
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

async fn runtime_with_clock() -> Runtime {
    let rt = runtime();
    // A slow clone of `counter` leaves the writer time to finish whole steps before `notes`
    // is cloned, should a capture let it.
    counter(&rt).slow_snapshot.store(true, Ordering::SeqCst);
    notes_call(
        &rt,
        &step_scope(),
        "CreateNotebook",
        json!({"NotebookName": "clock"}),
    )
    .await;
    rt
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_capture_shows_both_services_at_one_instant_while_a_writer_runs() {
    let rt = runtime_with_clock().await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = start_writer(&rt, stop.clone());

    let mut seen = Vec::with_capacity(CAPTURES);
    for i in 0..CAPTURES {
        let snap = rt.capture(None, &ScopeFilter::all()).await.unwrap();
        let a = counter_step(snap.services["counter"].as_ref());
        let b = notes_step(snap.services["notes"].as_ref());
        assert!(
            one_instant(a, b),
            "capture {i} mixes two instants: counter at step {a}, notes at step {b}"
        );
        seen.push((a, b));
        // Let the writer move on, so every capture is taken at a different step.
        wait_for_writer_past(&rt, a).await;
    }
    stop.store(true, Ordering::SeqCst);
    let last = writer.await.expect("writer");

    let distinct: std::collections::BTreeSet<i64> = seen.iter().map(|(a, _)| *a).collect();
    assert_eq!(distinct.len(), CAPTURES, "each capture saw a new step");
    assert!(last >= CAPTURES as i64);
}

/// Control experiment: the same check on captures that clone `counter`, let the writer run,
/// then clone `notes` (what a capture without the barrier may do) reports a mixed instant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_detects_a_capture_that_lets_writers_run_between_clones() {
    let rt = runtime_with_clock().await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = start_writer(&rt, stop.clone());
    let all = ScopeFilter::all();

    for _ in 0..5 {
        // Clone each service through its provider directly, outside the barrier.
        let a_state = rt.service("counter").unwrap().snapshot(&all).await.unwrap();
        let a = counter_step(a_state.as_ref());
        // Counter past a + 1 means step a + 1 (counter, then notes) is complete.
        wait_for_writer_past(&rt, a + 1).await;
        let b_state = rt.service("notes").unwrap().snapshot(&all).await.unwrap();
        let b = notes_step(b_state.as_ref());
        assert!(
            !one_instant(a, b),
            "a capture mixing instants (counter {a}, notes {b}) went unnoticed"
        );
    }
    stop.store(true, Ordering::SeqCst);
    writer.await.expect("writer");
}
