//! All or nothing: an import either applies every service of the bundle or changes nothing.
//! A bad section is refused before anything is touched, with an error naming its service;
//! a provider whose restore fails makes the services already restored roll back.

mod common;

use std::io::Cursor;

use common::*;
use cryopod::{Error, MergeStrategy, ProviderError, Runtime};

/// The running state every test starts from.
async fn running(rt: &Runtime) {
    install(
        rt,
        vec![
            Box::new(notes_state(&[NotebookSpec {
                scope: (A1, US),
                name: "work",
                tags: &[("team", "ours")],
                notes: &[("todo", "ours todo", 1)],
            }])),
            Box::new(counter_state(&[(A1, US, "hits", 10), (A2, EU, "hits", 5)])),
        ],
    )
    .await;
}

/// A valid notes section holding a different state than `running`, from a real capture.
async fn their_notes_section() -> Vec<u8> {
    let theirs = runtime();
    install(
        &theirs,
        vec![Box::new(notes_state(&[NotebookSpec {
            scope: (A1, US),
            name: "work",
            tags: &[],
            notes: &[("todo", "theirs todo", 2), ("new", "theirs new", 1)],
        }]))],
    )
    .await;
    let snap = theirs
        .capture(Some(&["notes".into()]), &cryopod::ScopeFilter::all())
        .await
        .unwrap();
    payload(snap.services["notes"].as_ref())
}

/// Counter section payloads that must be refused, by what is wrong with them.
fn bad_counter_payloads() -> Vec<(&'static str, Vec<u8>)> {
    let msgpack = |v: &serde_json::Value| rmp_serde::to_vec_named(v).unwrap();
    let notes_state_bytes = payload(&notes_state(&[NotebookSpec {
        scope: (A1, US),
        name: "x",
        tags: &[],
        notes: &[],
    }]));
    vec![
        ("garbage bytes", vec![0xc1, 0xde, 0xad, 0xbe, 0xef]),
        ("empty payload", Vec::new()),
        ("msgpack cut short", {
            let mut full = payload(&counter_state(&[(A1, US, "hits", 1)]));
            full.truncate(full.len() / 2);
            full
        }),
        (
            "valid msgpack, not a tagged state",
            msgpack(&serde_json::json!(42)),
        ),
        (
            "valid msgpack, counter tag with a value of the wrong type",
            msgpack(&serde_json::json!({"counter/1": "not a counter state"})),
        ),
        (
            "valid msgpack, an unknown tag",
            msgpack(&serde_json::json!({"counter/99": {}})),
        ),
        ("a notes state in the counter section", notes_state_bytes),
        ("a valid counter state followed by junk", {
            let mut v = payload(&counter_state(&[(A1, US, "hits", 1)]));
            v.extend_from_slice(b"junk");
            v
        }),
    ]
}

#[tokio::test]
async fn a_corrupt_section_fails_the_import_naming_its_service_and_changes_no_service() {
    let notes = their_notes_section().await;
    let rt = runtime();
    running(&rt).await;
    let before = fingerprint(&rt).await;
    for (what, bad) in bad_counter_payloads() {
        // The valid notes section comes first (already decoded when counter fails) and last.
        for bundle in [
            handmade_bundle(&[("notes", 2, notes.clone()), ("counter", 1, bad.clone())]),
            handmade_bundle(&[("counter", 1, bad.clone()), ("notes", 2, notes.clone())]),
        ] {
            for merge in MergeStrategy::ALL {
                let err = rt
                    .import(Cursor::new(bundle.clone()), None, merge)
                    .await
                    .expect_err(what);
                match &err {
                    Error::Decode { service, .. } => {
                        assert_eq!(service, "counter", "{what}: {err}")
                    }
                    other => panic!(
                        "{what} ({merge}): expected a decode error naming counter, got {other:?}"
                    ),
                }
                assert_eq!(
                    fingerprint(&rt).await,
                    before,
                    "{what} ({merge}) changed the state"
                );
            }
        }
    }
    // The notes section alone is fine: the failures above were the counter section's.
    rt.import(
        Cursor::new(handmade_bundle(&[("notes", 2, notes)])),
        None,
        MergeStrategy::Overwrite,
    )
    .await
    .expect("the notes section is valid");
    assert_ne!(fingerprint(&rt).await, before);
}

#[tokio::test]
async fn a_failing_restore_rolls_back_the_services_already_restored() {
    let services = ["counter", "fragile", "notes"];
    // Restores run in service-name order: counter is restored before fragile fails.
    let theirs = runtime_with(&services);
    install(
        &theirs,
        vec![
            Box::new(notes_state(&[NotebookSpec {
                scope: (A2, US),
                name: "theirs",
                tags: &[],
                notes: &[("a", "b", 1)],
            }])),
            Box::new(counter_state(&[(A1, US, "hits", 99), (A1, EU, "new", 1)])),
            Box::new(FragileState {
                scopes: counter_state(&[(A1, US, "f", 2)]).scopes,
            }),
        ],
    )
    .await;
    let bundle = export(&theirs, None).await;

    let rt = runtime_with(&services);
    running(&rt).await;
    fragile(&rt)
        .cell
        .write(&scope(A1, US), |s| {
            s.scopes
                .get_mut(&scope(A1, US))
                .counters
                .insert("f".into(), 1);
            Ok::<_, std::convert::Infallible>(())
        })
        .await
        .unwrap();
    let before = fingerprint(&rt).await;

    for merge in MergeStrategy::ALL {
        fragile(&rt)
            .fail_next_restore
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let err = rt
            .import(Cursor::new(bundle.clone()), None, merge)
            .await
            .expect_err("fragile's restore fails");
        assert!(
            matches!(
                &err,
                Error::Provider(ProviderError::Other {
                    service: "fragile",
                    ..
                })
            ),
            "{merge}: {err:?}"
        );
        assert_eq!(fingerprint(&rt).await, before, "{merge}: not rolled back");
    }

    // The same bundle applies once restore works: the rollback above undid real changes.
    rt.import(Cursor::new(bundle), None, MergeStrategy::Overwrite)
        .await
        .expect("import");
    assert_eq!(fingerprint(&rt).await, fingerprint(&theirs).await);
}
