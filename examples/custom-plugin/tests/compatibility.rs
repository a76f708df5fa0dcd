//! Bundles from other builds and other versions: a service this build lacks is reported by
//! name while everything else loads; an older notes state loads through its upgrade path
//! (from a committed fixture written by an earlier build); a newer one is refused.
//!
//! Regenerate the fixture (only when the v1 layout itself must change, which it never
//! should): `cargo test -p cryopod-notes --test compatibility -- --ignored regenerate_notes_v1_fixture`

mod common;

use std::io::Cursor;
use std::path::PathBuf;

use common::*;
use cryopod::bundle::{BundleWriter, Limits, Manifest, ScopeEntry, SeekableBundle, ServiceEntry};
use cryopod::{Error, MergeStrategy, ScopeFilter, SkipReason, SkippedService};
use cryopod_notes::state::v1::{NoteV1, NotesStateV1, ScopeV1};
use serde_json::json;

fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/notes-v1.cryopod")
}

/// What the fixture holds, as version 1 stored it.
fn notes_v1() -> NotesStateV1 {
    let note = |t: &str| NoteV1 { text: t.into() };
    NotesStateV1 {
        scopes: vec![
            ScopeV1 {
                scope: scope(A1, US),
                notebooks: [
                    (
                        "recipes".to_string(),
                        [
                            ("pancakes".to_string(), note("flour, eggs, milk")),
                            ("tea".to_string(), note("boil water")),
                        ]
                        .into(),
                    ),
                    ("empty".to_string(), Default::default()),
                ]
                .into(),
            },
            ScopeV1 {
                scope: scope(A2, EU),
                notebooks: [(
                    "diary".to_string(),
                    [("2019-01-01".to_string(), note("Dear diary, ünïcödé ✓"))].into(),
                )]
                .into(),
            },
        ],
    }
}

#[test]
#[ignore = "writes tests/fixtures/notes-v1.cryopod; run only to regenerate the fixture"]
fn regenerate_notes_v1_fixture() {
    let state = notes_v1();
    let count = |nbs: &std::collections::BTreeMap<String, _>| -> Vec<(String, u64)> {
        let notes: usize = nbs
            .values()
            .map(|n: &std::collections::BTreeMap<String, NoteV1>| n.len())
            .sum();
        vec![
            ("note".into(), notes as u64),
            ("notebook".into(), nbs.len() as u64),
        ]
    };
    let manifest = Manifest {
        producer: "cryopod 0.1.0 (notes v1 fixture)".into(),
        created_at: "2024-06-01T00:00:00Z".into(),
        services: vec![ServiceEntry {
            name: "notes".into(),
            state_version: 1,
            scopes: state
                .scopes
                .iter()
                .map(|s| ScopeEntry {
                    account: s.scope.account.clone(),
                    region: s.scope.region.clone(),
                    resources: count(&s.notebooks).into_iter().collect(),
                })
                .collect(),
        }],
        blobs: Default::default(),
    };
    let mut w = BundleWriter::new(Vec::new(), &manifest, Default::default()).unwrap();
    w.write_section("notes", 1, &payload(&state)).unwrap();
    let bytes = w.finish().unwrap();
    std::fs::create_dir_all(fixture_path().parent().unwrap()).unwrap();
    std::fs::write(fixture_path(), bytes).unwrap();
}

fn fixture() -> Vec<u8> {
    std::fs::read(fixture_path()).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; generate it with `cargo test -p cryopod-notes --test compatibility -- --ignored regenerate_notes_v1_fixture`",
            fixture_path().display()
        )
    })
}

#[tokio::test]
async fn the_committed_fixture_holds_a_version_1_notes_section() {
    let bytes = fixture();
    let sb = SeekableBundle::open(Cursor::new(&bytes), Limits::default()).unwrap();
    let sections = sb.sections();
    assert_eq!(sections.len(), 1);
    assert_eq!(
        (sections[0].service.as_str(), sections[0].state_version),
        ("notes", 1)
    );
    cryopod::bundle::verify(&bytes[..], Limits::default()).expect("fixture verifies");
}

#[tokio::test]
async fn a_version_1_notes_bundle_loads_through_the_upgrade_path() {
    let rt = runtime();
    let report = rt
        .import(
            Cursor::new(fixture()),
            None,
            MergeStrategy::AccountRegionMerge,
        )
        .await
        .expect("v1 bundle imports");
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert_eq!(report.loaded["notes"].len(), 2);

    // Texts kept, every note at revision 1 without attachment, notebooks without tags.
    assert_eq!(
        describe_notes(&live_notes(&rt).await),
        lines(&[
            "111111111111/us-east-1 empty []",
            "111111111111/us-east-1 recipes []",
            "111111111111/us-east-1 recipes/pancakes r1 = flour, eggs, milk",
            "111111111111/us-east-1 recipes/tea r1 = boil water",
            "222222222222/eu-west-1 diary []",
            "222222222222/eu-west-1 diary/2019-01-01 r1 = Dear diary, ünïcödé ✓",
        ])
    );

    // The upgraded state is a current one: it is written back as version 2.
    let bundle = export(&rt, Some(&["notes"])).await;
    let sb = SeekableBundle::open(Cursor::new(&bundle), Limits::default()).unwrap();
    assert_eq!(sb.sections()[0].state_version, 2);
}

#[tokio::test]
async fn a_notes_section_from_a_newer_version_is_refused_and_changes_nothing() {
    let rt = runtime();
    install(
        &rt,
        vec![Box::new(notes_state(&[NotebookSpec {
            scope: (A1, US),
            name: "mine",
            tags: &[],
            notes: &[("k", "v", 1)],
        }]))],
    )
    .await;
    let before = fingerprint(&rt).await;
    let current = payload(&notes_state(&[]));
    let bundle = handmade_bundle(&[("notes", 3, current)]);
    for merge in MergeStrategy::ALL {
        let err = rt
            .import(Cursor::new(bundle.clone()), None, merge)
            .await
            .expect_err("version 3 is from the future");
        assert!(
            matches!(
                &err,
                Error::FutureStateVersion { service, found: 3, supported: 2 } if service == "notes"
            ),
            "{err:?}"
        );
        assert_eq!(fingerprint(&rt).await, before);
    }
}

#[tokio::test]
async fn a_section_whose_header_version_disagrees_with_its_content_is_refused() {
    let rt = runtime();
    let v2_content = payload(&notes_state(&[NotebookSpec {
        scope: (A1, US),
        name: "nb",
        tags: &[],
        notes: &[],
    }]));
    let err = rt
        .import(
            Cursor::new(handmade_bundle(&[("notes", 1, v2_content)])),
            None,
            MergeStrategy::Overwrite,
        )
        .await
        .expect_err("header says v1, content is v2");
    assert!(
        matches!(&err, Error::Decode { service, .. } if service == "notes"),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_service_this_build_lacks_is_reported_by_name_and_everything_else_loads() {
    // `fragile` is linked into this test binary but not enabled in this runtime.
    let rt = runtime();
    let notes = notes_state(&[NotebookSpec {
        scope: (A1, US),
        name: "nb",
        tags: &[("t", "1")],
        notes: &[("k", "kept", 2)],
    }]);
    let counters = counter_state(&[(A2, EU, "hits", 4)]);
    let bundle = handmade_bundle(&[
        ("counter", 1, payload(&counters)),
        // Not even valid msgpack: a section that is skipped is never decoded.
        ("mystery", 4, b"\xc1 whatever a newer build stores".to_vec()),
        ("notes", 2, payload(&notes)),
        ("fragile", 1, payload(&FragileState::default())),
    ]);

    let report = rt
        .import(
            Cursor::new(bundle.clone()),
            None,
            MergeStrategy::AccountRegionMerge,
        )
        .await
        .expect("import");
    assert_eq!(
        report.skipped,
        vec![
            SkippedService {
                service: "mystery".into(),
                reason: SkipReason::NotInBuild
            },
            SkippedService {
                service: "fragile".into(),
                reason: SkipReason::NotEnabled
            },
        ]
    );
    assert_eq!(
        serde_json::to_value(&report.skipped).unwrap(),
        json!([
            {"service": "mystery", "reason": "not-in-build"},
            {"service": "fragile", "reason": "not-enabled"},
        ])
    );
    assert_eq!(
        report.loaded.keys().collect::<Vec<_>>(),
        vec!["counter", "notes"]
    );
    assert_eq!(
        describe_notes(&live_notes(&rt).await),
        lines(&[
            "111111111111/us-east-1 nb [t=1]",
            "111111111111/us-east-1 nb/k r2 = kept"
        ])
    );
    assert_eq!(
        describe_counters(&live_counters(&rt).await),
        lines(&["222222222222/eu-west-1 hits = 4"])
    );

    // A service left out by the caller is reported as such.
    let rt = runtime();
    let report = rt
        .import(
            Cursor::new(bundle),
            Some(&["notes".to_string()]),
            MergeStrategy::AccountRegionMerge,
        )
        .await
        .expect("import");
    assert!(report.skipped.contains(&SkippedService {
        service: "counter".into(),
        reason: SkipReason::NotSelected
    }));
    assert!(live_counters(&rt).await.scopes.iter().next().is_none());
    assert_eq!(live_notes(&rt).await, notes);
}

#[tokio::test]
async fn an_upgraded_state_is_whole_before_it_is_merged() {
    // A v1 bundle merged resource by resource into a running state: v1 notes join it, and
    // the notebook on both sides takes its configuration (tags: none in v1) from the bundle.
    let rt = runtime();
    install(
        &rt,
        vec![Box::new(notes_state(&[NotebookSpec {
            scope: (A1, US),
            name: "recipes",
            tags: &[("mine", "yes")],
            notes: &[("tea", "with milk", 5), ("coffee", "black", 2)],
        }]))],
    )
    .await;
    rt.import(Cursor::new(fixture()), None, MergeStrategy::ServiceMerge)
        .await
        .expect("import");
    let snap = rt.capture(None, &ScopeFilter::all()).await.unwrap();
    assert_eq!(snap.services["notes"].version(), 2);
    assert_eq!(
        describe_notes(&live_notes(&rt).await),
        lines(&[
            "111111111111/us-east-1 empty []",
            "111111111111/us-east-1 recipes []",
            "111111111111/us-east-1 recipes/coffee r2 = black",
            "111111111111/us-east-1 recipes/pancakes r1 = flour, eggs, milk",
            "111111111111/us-east-1 recipes/tea r1 = boil water",
            "222222222222/eu-west-1 diary []",
            "222222222222/eu-west-1 diary/2019-01-01 r1 = Dear diary, ünïcödé ✓",
        ])
    );
}
