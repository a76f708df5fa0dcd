//! Round trip, on generated states: export → import into a fresh runtime gives the same
//! state (encoding and blobs), whether the bundle is read from a pipe or from a file; and
//! the same state always gives the same bundle bytes, the manifest's `created_at` aside.

mod common;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::OnceLock;

use common::*;
use cryopod::bundle::{Limits, Manifest, SeekableBundle, WriteOptions};
use cryopod::{MergeStrategy, Runtime, ScopeFilter, ServiceState};
use cryopod_notes::state::{Note, Notebook, NotesState};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;

const ACCOUNTS: [&str; 3] = [cryopod::DEFAULT_ACCOUNT, A1, A2];
const REGIONS: [&str; 3] = [US, EU, "ap-southeast-2"];

#[derive(Clone, Debug)]
struct GenNote {
    text: String,
    /// Index into the attachment pool, so attachments are shared between notes.
    attachment: Option<usize>,
    revision: u64,
}

#[derive(Clone, Debug)]
struct GenNotebook {
    tags: BTreeMap<String, String>,
    notes: BTreeMap<String, GenNote>,
}

#[derive(Clone, Debug)]
struct GenState {
    /// Attachment contents (the empty one included when generated).
    pool: Vec<Vec<u8>>,
    /// (account index, region index) → notebook name → notebook.
    scopes: BTreeMap<(usize, usize), BTreeMap<String, GenNotebook>>,
}

fn gen_state() -> impl Strategy<Value = GenState> {
    let note = (".{0,40}", prop::option::of(0..4usize), 1..1000u64).prop_map(
        |(text, attachment, revision)| GenNote {
            text,
            attachment,
            revision,
        },
    );
    let notebook = (
        btree_map("[a-z]{1,6}", ".{0,10}", 0..3),
        btree_map("\\PC{1,12}", note, 0..5),
    )
        .prop_map(|(tags, notes)| GenNotebook { tags, notes });
    let scopes = btree_map(
        (0..ACCOUNTS.len(), 0..REGIONS.len()),
        btree_map("[A-Za-z0-9_-]{1,16}", notebook, 0..4),
        0..5,
    );
    let pool = vec(vec(any::<u8>(), 0..3000), 4);
    (pool, scopes).prop_map(|(pool, scopes)| GenState { pool, scopes })
}

/// Installs the generated state as the running notes state of a new runtime.
async fn runtime_holding(g: &GenState) -> Runtime {
    let rt = runtime();
    let digests: Vec<_> = g
        .pool
        .iter()
        .map(|bytes| rt.blobs().put(bytes).expect("blob"))
        .collect();
    let mut state = NotesState::default();
    for ((a, r), notebooks) in &g.scopes {
        let resources = state.scopes.get_mut(&scope(ACCOUNTS[*a], REGIONS[*r]));
        for (name, nb) in notebooks {
            resources.notebooks.insert(
                name.clone(),
                Notebook {
                    tags: nb.tags.clone().into_iter().collect(),
                    notes: nb
                        .notes
                        .iter()
                        .map(|(k, n)| {
                            (
                                k.clone(),
                                Note {
                                    text: n.text.clone(),
                                    attachment: n.attachment.map(|i| digests[i]),
                                    revision: n.revision,
                                },
                            )
                        })
                        .collect(),
                },
            );
        }
    }
    install(&rt, vec![Box::new(state)]).await;
    rt
}

/// Both runtimes hold the same state: same canonical encoding, same blob bytes.
async fn assert_same_state(expected: &Runtime, got: &Runtime, how: &str) {
    assert!(
        fingerprint(got).await == fingerprint(expected).await,
        "state after import {how} differs"
    );
    let notes = live_notes(got).await;
    for d in ServiceState::blobs(&notes) {
        assert_eq!(
            got.blobs().read(&d).expect("blob imported"),
            expected.blobs().read(&d).unwrap(),
            "blob {d} after import {how}"
        );
    }
}

/// A bundle's content with the creation time taken out: the manifest without `created_at`,
/// the bytes of every stream, and the index entries with offsets relative to the first
/// stream (a longer or shorter timestamp shifts every offset).
fn timeless(bundle: &[u8]) -> (Manifest, Vec<u8>, Vec<String>) {
    let sb = SeekableBundle::open(Cursor::new(bundle), Limits::default()).expect("bundle opens");
    let mut manifest = sb.manifest().clone();
    manifest.created_at.clear();
    // SPEC: a 16-byte file header, then the manifest record (20 bytes + its length).
    let manifest_len = u64::from_le_bytes(bundle[20..28].try_into().unwrap());
    let streams_start = 16 + 20 + manifest_len;
    // SPEC: the footer's first field is the index offset.
    let footer = bundle.len() - 32;
    let index_offset = u64::from_le_bytes(bundle[footer..footer + 8].try_into().unwrap());
    let streams = bundle[streams_start as usize..index_offset as usize].to_vec();
    let mut entries: Vec<String> = sb
        .sections()
        .iter()
        .map(|s| {
            format!(
                "section {} v{} {} {} +{} @{}",
                s.service,
                s.state_version,
                s.digest,
                s.size,
                s.stored_bytes,
                s.offset - streams_start
            )
        })
        .collect();
    entries.extend(sb.blobs().iter().map(|b| {
        format!(
            "blob {} {} +{} @{}",
            b.digest,
            b.size,
            b.stored_bytes,
            b.offset - streams_start
        )
    }));
    (manifest, streams, entries)
}

fn tokio_rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

async fn export_with(rt: &Runtime, opts: &WriteOptions) -> Vec<u8> {
    rt.export(None, &ScopeFilter::all(), Vec::new(), opts.clone())
        .await
        .expect("export")
        .0
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn export_then_import_reproduces_the_state_from_a_pipe_and_from_a_file(
        g in gen_state(),
        chunk_size in prop_oneof![Just(1usize << 20), 1usize..300],
        pipe_step in 1usize..10_000,
    ) {
        tokio_rt().block_on(async {
            let src = runtime_holding(&g).await;
            let opts = WriteOptions { level: 3, chunk_size };
            let bundle = export_with(&src, &opts).await;

            // From a pipe: no seeking, short reads.
            let via_pipe = runtime();
            via_pipe
                .import(Pipe::new(bundle.clone(), pipe_step), None, MergeStrategy::Overwrite)
                .await
                .expect("import from a pipe");
            assert_same_state(&src, &via_pipe, "from a pipe").await;

            // Through a file, exported straight into it.
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("state.cryopod");
            let file = std::fs::File::create(&path).unwrap();
            src.export(None, &ScopeFilter::all(), file, opts.clone())
                .await
                .expect("export to a file");
            let via_file = runtime();
            via_file
                .import(std::fs::File::open(&path).unwrap(), None, MergeStrategy::Overwrite)
                .await
                .expect("import from a file");
            assert_same_state(&src, &via_file, "from a file").await;
        });
    }

    #[test]
    fn the_same_state_gives_the_same_bundle_bytes_apart_from_created_at(
        g in gen_state(),
        chunk_size in prop_oneof![Just(1usize << 20), 1usize..300],
    ) {
        tokio_rt().block_on(async {
            let src = runtime_holding(&g).await;
            let opts = WriteOptions { level: 3, chunk_size };
            let first = export_with(&src, &opts).await;
            let second = export_with(&src, &opts).await;
            assert!(timeless(&first) == timeless(&second), "two exports of one state differ");

            // The state rebuilt elsewhere from the bundle exports to the same bytes too.
            let copy = runtime();
            copy.import(Cursor::new(first.clone()), None, MergeStrategy::Overwrite)
                .await
                .expect("import");
            let third = export_with(&copy, &opts).await;
            assert!(timeless(&first) == timeless(&third), "re-export of an imported state differs");
        });
    }
}

#[tokio::test]
async fn the_timeless_comparison_sees_a_one_character_change() {
    // Guards the comparison above against being vacuous.
    let g = GenState {
        pool: vec![b"x".to_vec()],
        scopes: [(
            (0, 0),
            [(
                "nb".to_string(),
                GenNotebook {
                    tags: BTreeMap::new(),
                    notes: [(
                        "k".to_string(),
                        GenNote {
                            text: "a".into(),
                            attachment: Some(0),
                            revision: 1,
                        },
                    )]
                    .into(),
                },
            )]
            .into(),
        )]
        .into(),
    };
    let opts = WriteOptions::default();
    let a = export_with(&runtime_holding(&g).await, &opts).await;
    let mut h = g.clone();
    h.scopes
        .get_mut(&(0, 0))
        .unwrap()
        .get_mut("nb")
        .unwrap()
        .notes
        .get_mut("k")
        .unwrap()
        .text = "b".into();
    let b = export_with(&runtime_holding(&h).await, &opts).await;
    assert!(timeless(&a) != timeless(&b));
    assert!(timeless(&a) == timeless(&a.clone()));
}
