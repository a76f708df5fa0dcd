//! Merge strategies, through a real bundle, across two services (`notes` and `counter`),
//! two accounts and two regions. Every expected result is written out literally.
//!
//! The two states overlap like this (A1 = 111111111111, A2 = 222222222222):
//!
//! | scope        | running ("ours")            | bundle ("theirs")            |
//! | ------------ | --------------------------- | ---------------------------- |
//! | A1/us-east-1 | notes + counters            | notes + counters (clashing)  |
//! | A1/eu-west-1 | notes                       | counters                     |
//! | A2/us-east-1 | notes                       | —                            |
//! | A2/eu-west-1 | counters                    | notes                        |

mod common;

use std::io::Cursor;

use common::*;
use cryopod::{MergeStrategy, Runtime};

async fn running_state(rt: &Runtime) {
    install(
        rt,
        vec![
            Box::new(notes_state(&[
                NotebookSpec {
                    scope: (A1, US),
                    name: "work",
                    tags: &[("team", "ours")],
                    notes: &[("todo", "ours todo", 1), ("plan", "ours plan", 3)],
                },
                NotebookSpec {
                    scope: (A1, US),
                    name: "home",
                    tags: &[],
                    notes: &[("list", "milk", 1)],
                },
                NotebookSpec {
                    scope: (A1, EU),
                    name: "travel",
                    tags: &[],
                    notes: &[("paris", "ours paris", 1)],
                },
                NotebookSpec {
                    scope: (A2, US),
                    name: "ops",
                    tags: &[],
                    notes: &[("runbook", "ours runbook", 4)],
                },
            ])),
            Box::new(counter_state(&[
                (A1, US, "hits", 10),
                (A1, US, "misses", 1),
                (A2, EU, "hits", 5),
            ])),
        ],
    )
    .await;
}

/// The bundle: exported from another runtime holding "their" state.
async fn their_bundle(services: Option<&[&str]>) -> Vec<u8> {
    let theirs = runtime();
    install(
        &theirs,
        vec![
            Box::new(notes_state(&[
                NotebookSpec {
                    scope: (A1, US),
                    name: "work",
                    tags: &[("team", "theirs"), ("env", "dev")],
                    notes: &[("todo", "theirs todo", 2), ("ideas", "theirs ideas", 1)],
                },
                NotebookSpec {
                    scope: (A1, US),
                    name: "music",
                    tags: &[],
                    notes: &[("playlist", "theirs playlist", 1)],
                },
                NotebookSpec {
                    scope: (A2, EU),
                    name: "ops",
                    tags: &[],
                    notes: &[("runbook", "theirs eu runbook", 1)],
                },
            ])),
            Box::new(counter_state(&[
                (A1, US, "hits", 99),
                (A1, US, "errors", 7),
                (A1, EU, "hits", 3),
            ])),
        ],
    )
    .await;
    export(&theirs, services).await
}

async fn import(rt: &Runtime, bundle: Vec<u8>, merge: MergeStrategy) {
    let report = rt
        .import(Cursor::new(bundle), None, merge)
        .await
        .expect("import");
    assert_eq!(report.merge, merge);
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
}

async fn merged_with(
    merge: MergeStrategy,
    services: Option<&[&str]>,
) -> (Vec<String>, Vec<String>) {
    let rt = runtime();
    running_state(&rt).await;
    import(&rt, their_bundle(services).await, merge).await;
    (
        describe_notes(&live_notes(&rt).await),
        describe_counters(&live_counters(&rt).await),
    )
}

/// The running state, unchanged.
const OUR_NOTES: &[&str] = &[
    "111111111111/us-east-1 work [team=ours]",
    "111111111111/us-east-1 work/todo r1 = ours todo",
    "111111111111/us-east-1 work/plan r3 = ours plan",
    "111111111111/us-east-1 home []",
    "111111111111/us-east-1 home/list r1 = milk",
    "111111111111/eu-west-1 travel []",
    "111111111111/eu-west-1 travel/paris r1 = ours paris",
    "222222222222/us-east-1 ops []",
    "222222222222/us-east-1 ops/runbook r4 = ours runbook",
];
const OUR_COUNTERS: &[&str] = &[
    "111111111111/us-east-1 hits = 10",
    "111111111111/us-east-1 misses = 1",
    "222222222222/eu-west-1 hits = 5",
];

#[tokio::test]
async fn overwrite_replaces_everything_with_the_bundle() {
    let (notes, counters) = merged_with(MergeStrategy::Overwrite, None).await;
    assert_eq!(
        notes,
        lines(&[
            "111111111111/us-east-1 work [env=dev,team=theirs]",
            "111111111111/us-east-1 work/todo r2 = theirs todo",
            "111111111111/us-east-1 work/ideas r1 = theirs ideas",
            "111111111111/us-east-1 music []",
            "111111111111/us-east-1 music/playlist r1 = theirs playlist",
            "222222222222/eu-west-1 ops []",
            "222222222222/eu-west-1 ops/runbook r1 = theirs eu runbook",
        ])
    );
    assert_eq!(
        counters,
        lines(&[
            "111111111111/us-east-1 errors = 7",
            "111111111111/us-east-1 hits = 99",
            "111111111111/eu-west-1 hits = 3",
        ])
    );
}

#[tokio::test]
async fn account_region_merge_replaces_the_bundles_scopes_and_keeps_the_others() {
    let (notes, counters) = merged_with(MergeStrategy::AccountRegionMerge, None).await;
    assert_eq!(
        notes,
        lines(&[
            // A1/us-east-1 is in the bundle: replaced wholesale (`home` and `work/plan` gone).
            "111111111111/us-east-1 work [env=dev,team=theirs]",
            "111111111111/us-east-1 work/todo r2 = theirs todo",
            "111111111111/us-east-1 work/ideas r1 = theirs ideas",
            "111111111111/us-east-1 music []",
            "111111111111/us-east-1 music/playlist r1 = theirs playlist",
            // Not in the bundle's notes: kept.
            "111111111111/eu-west-1 travel []",
            "111111111111/eu-west-1 travel/paris r1 = ours paris",
            "222222222222/us-east-1 ops []",
            "222222222222/us-east-1 ops/runbook r4 = ours runbook",
            // Only in the bundle: added.
            "222222222222/eu-west-1 ops []",
            "222222222222/eu-west-1 ops/runbook r1 = theirs eu runbook",
        ])
    );
    assert_eq!(
        counters,
        lines(&[
            // Replaced: `misses` is gone.
            "111111111111/us-east-1 errors = 7",
            "111111111111/us-east-1 hits = 99",
            // Added.
            "111111111111/eu-west-1 hits = 3",
            // Kept: the bundle's counters have no A2/eu-west-1 (its notes do; scopes are
            // per service).
            "222222222222/eu-west-1 hits = 5",
        ])
    );
}

#[tokio::test]
async fn service_merge_merges_resource_by_resource_and_the_bundle_wins_clashes() {
    let (notes, counters) = merged_with(MergeStrategy::ServiceMerge, None).await;
    assert_eq!(
        notes,
        lines(&[
            // `work` exists on both sides: notes merge one by one, the bundle's `todo` and
            // `team` tag win, our `plan` stays; `home` stays, `music` arrives.
            "111111111111/us-east-1 work [env=dev,team=theirs]",
            "111111111111/us-east-1 work/todo r2 = theirs todo",
            "111111111111/us-east-1 work/plan r3 = ours plan",
            "111111111111/us-east-1 work/ideas r1 = theirs ideas",
            "111111111111/us-east-1 home []",
            "111111111111/us-east-1 home/list r1 = milk",
            "111111111111/us-east-1 music []",
            "111111111111/us-east-1 music/playlist r1 = theirs playlist",
            "111111111111/eu-west-1 travel []",
            "111111111111/eu-west-1 travel/paris r1 = ours paris",
            "222222222222/us-east-1 ops []",
            "222222222222/us-east-1 ops/runbook r4 = ours runbook",
            "222222222222/eu-west-1 ops []",
            "222222222222/eu-west-1 ops/runbook r1 = theirs eu runbook",
        ])
    );
    assert_eq!(
        counters,
        lines(&[
            "111111111111/us-east-1 errors = 7",
            "111111111111/us-east-1 hits = 99",
            "111111111111/us-east-1 misses = 1",
            "111111111111/eu-west-1 hits = 3",
            "222222222222/eu-west-1 hits = 5",
        ])
    );
}

#[tokio::test]
async fn overwrite_resets_a_service_the_bundle_does_not_hold() {
    let (notes, counters) = merged_with(MergeStrategy::Overwrite, Some(&["notes"])).await;
    assert_eq!(counters, Vec::<String>::new(), "counter must be reset");
    assert_eq!(notes.len(), 7, "{notes:#?}");
}

#[tokio::test]
async fn merges_leave_a_service_the_bundle_does_not_hold_untouched() {
    for merge in [
        MergeStrategy::AccountRegionMerge,
        MergeStrategy::ServiceMerge,
    ] {
        let (notes, counters) = merged_with(merge, Some(&["counter"])).await;
        assert_eq!(notes, lines(OUR_NOTES), "{merge}");
        assert_ne!(
            counters,
            lines(OUR_COUNTERS),
            "{merge}: the counters were merged"
        );
    }
}

#[tokio::test]
async fn importing_an_empty_bundle_changes_nothing_except_under_overwrite() {
    for merge in MergeStrategy::ALL {
        let rt = runtime();
        running_state(&rt).await;
        let empty = export(&runtime(), None).await;
        import(&rt, empty, merge).await;
        let (notes, counters) = (
            describe_notes(&live_notes(&rt).await),
            describe_counters(&live_counters(&rt).await),
        );
        if merge == MergeStrategy::Overwrite {
            assert!(
                notes.is_empty() && counters.is_empty(),
                "{notes:?} {counters:?}"
            );
        } else {
            assert_eq!(
                (notes, counters),
                (lines(OUR_NOTES), lines(OUR_COUNTERS)),
                "{merge}"
            );
        }
    }
}

/// `import --services notes --merge overwrite` replaces notes and never resets a service the
/// caller did not select.
#[tokio::test]
async fn overwrite_limited_to_selected_services_leaves_the_others_alone() {
    let rt = runtime();
    running_state(&rt).await;
    let counters_before = describe_counters(&live_counters(&rt).await);
    // A bundle holding only notes.
    let source = runtime();
    install(
        &source,
        vec![Box::new(notes_state(&[NotebookSpec {
            scope: (A2, EU),
            name: "theirs",
            tags: &[],
            notes: &[("only", "their only note", 2)],
        }]))],
    )
    .await;
    let bundle = export(&source, Some(&["notes"])).await;
    rt.import(
        Cursor::new(bundle),
        Some(&["notes".to_string()]),
        MergeStrategy::Overwrite,
    )
    .await
    .unwrap();
    assert_eq!(
        describe_notes(&live_notes(&rt).await),
        describe_notes(&notes_state(&[NotebookSpec {
            scope: (A2, EU),
            name: "theirs",
            tags: &[],
            notes: &[("only", "their only note", 2)],
        }]))
    );
    assert_eq!(
        describe_counters(&live_counters(&rt).await),
        counters_before
    );
}
