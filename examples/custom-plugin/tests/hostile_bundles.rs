//! Damaged bundles: a truncated or bit-flipped bundle is refused with a typed error
//! (`Error::Bundle` or `Error::Decode`), never a panic, and the running state stays exactly
//! as it was, whatever the merge strategy.

mod common;

use std::io::Cursor;

use base64::Engine;
use common::*;
use cryopod::bundle::{Limits, SeekableBundle, WriteOptions};
use cryopod::{Error, MergeStrategy, Runtime, ScopeFilter};
use serde_json::json;

/// A running state, and a different state's bundle with several chunks per stream and
/// attachments (blob streams).
async fn setup() -> (Runtime, Vec<u8>) {
    let rt = runtime();
    install(
        &rt,
        vec![
            Box::new(notes_state(&[NotebookSpec {
                scope: (A1, US),
                name: "mine",
                tags: &[],
                notes: &[("k", "ours", 1)],
            }])),
            Box::new(counter_state(&[(A1, US, "hits", 10)])),
        ],
    )
    .await;

    let theirs = runtime();
    for (k, (a, r)) in [(A1, US), (A2, EU)].into_iter().enumerate() {
        let s = scope(a, r);
        notes_call(
            &theirs,
            &s,
            "CreateNotebook",
            json!({"NotebookName": "theirs"}),
        )
        .await;
        for i in 0..3 {
            let attachment: Vec<u8> = (0..700u32)
                .map(|j| (j * 31 + i + 7 * k as u32) as u8)
                .collect();
            notes_call(
                &theirs,
                &s,
                "PutNote",
                json!({"NotebookName": "theirs", "Key": format!("k{i}"),
                       "Text": "theirs ".repeat(40),
                       "Attachment": base64::engine::general_purpose::STANDARD.encode(attachment)}),
            )
            .await;
        }
        counter(&theirs).set(&s, "hits", 99).await;
    }
    let (bundle, _) = theirs
        .export(
            None,
            &ScopeFilter::all(),
            Vec::new(),
            WriteOptions {
                level: 3,
                chunk_size: 256,
            },
        )
        .await
        .unwrap();
    (rt, bundle)
}

/// Offsets worth cutting or flipping at: file edges, the manifest, and the start, inside
/// and end of every stream, plus an even spread.
fn interesting_offsets(bundle: &[u8]) -> Vec<usize> {
    let len = bundle.len();
    let sb = SeekableBundle::open(Cursor::new(bundle), Limits::default()).unwrap();
    let mut at: Vec<usize> = vec![
        0,
        1,
        8,
        12,
        15,
        16,
        20,
        35,
        40,
        len - 33,
        len - 32,
        len - 20,
        len - 1,
    ];
    let streams = sb
        .sections()
        .iter()
        .map(|s| (s.offset, s.stored_bytes))
        .chain(sb.blobs().iter().map(|b| (b.offset, b.stored_bytes)))
        .collect::<Vec<_>>();
    assert!(streams.len() >= 8, "2 sections and 6 blobs");
    for (offset, stored) in streams {
        let (o, s) = (offset as usize, stored as usize);
        at.extend([o, o + 5, o + 20, o + s / 2, o + s - 1]);
    }
    at.extend((1..20).map(|i| len * i / 20));
    at.sort_unstable();
    at.dedup();
    at
}

async fn assert_refused(rt: &Runtime, damaged: Vec<u8>, merge: MergeStrategy, what: &str) {
    let before = fingerprint(rt).await;
    match rt.import(Cursor::new(damaged), None, merge).await {
        Err(Error::Bundle(_)) | Err(Error::Decode { .. }) => {}
        Err(other) => panic!("{what}: expected Error::Bundle or Error::Decode, got {other:?}"),
        Ok(report) => panic!("{what}: a damaged bundle was accepted: {report:?}"),
    }
    assert!(
        fingerprint(rt).await == before,
        "{what}: the failed import changed the state"
    );
}

#[tokio::test]
async fn a_truncated_bundle_is_refused_and_changes_nothing() {
    let (rt, bundle) = setup().await;
    let before = fingerprint(&rt).await;
    let offsets = interesting_offsets(&bundle);
    for (i, cut) in offsets.iter().enumerate() {
        let merge = MergeStrategy::ALL[i % 3];
        assert_refused(
            &rt,
            bundle[..*cut].to_vec(),
            merge,
            &format!("cut at {cut} ({merge})"),
        )
        .await;
    }
    // Also from a pipe, for a few cuts.
    for cut in [bundle.len() / 3, bundle.len() - 1] {
        let r = rt
            .import(
                Pipe::new(bundle[..cut].to_vec(), 97),
                None,
                MergeStrategy::Overwrite,
            )
            .await;
        assert!(
            matches!(r, Err(Error::Bundle(_)) | Err(Error::Decode { .. })),
            "{r:?}"
        );
    }
    assert!(fingerprint(&rt).await == before);
    // The whole bundle is fine: the cuts were what failed.
    rt.import(Cursor::new(bundle), None, MergeStrategy::Overwrite)
        .await
        .expect("intact bundle");
    assert!(fingerprint(&rt).await != before);
}

#[tokio::test]
async fn a_bit_flipped_bundle_is_refused_and_changes_nothing() {
    let (rt, bundle) = setup().await;
    let offsets = interesting_offsets(&bundle);
    for (i, at) in offsets.iter().enumerate() {
        for mask in [0x01u8, 0x80] {
            let mut damaged = bundle.clone();
            damaged[*at] ^= mask;
            let merge = MergeStrategy::ALL[i % 3];
            assert_refused(
                &rt,
                damaged,
                merge,
                &format!("flip {mask:#04x} at {at} ({merge})"),
            )
            .await;
        }
    }
}

#[tokio::test]
async fn bytes_after_the_footer_are_refused_and_change_nothing() {
    let (rt, mut bundle) = setup().await;
    bundle.extend_from_slice(b"trailing");
    assert_refused(&rt, bundle, MergeStrategy::Overwrite, "trailing bytes").await;
}
