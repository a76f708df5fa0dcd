//! Promises about what comes back out of a bundle.

mod common;

use std::io::{Cursor, Read, Write};

use common::*;
use cryopod_bundle::*;
use proptest::prelude::*;

fn data_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..400),
        // compressible: a short pattern repeated
        (prop::collection::vec(any::<u8>(), 1..8), 0usize..120).prop_map(|(p, n)| p.repeat(n)),
    ]
}

fn spec_strategy() -> impl Strategy<Value = Spec> {
    (
        prop::collection::btree_map(
            "[a-z][a-z0-9-]{0,10}",
            (any::<u32>(), data_strategy()),
            0..5,
        ),
        prop::collection::vec(data_strategy(), 0..6),
        1usize..200,
    )
        .prop_map(|(sections, blobs, chunk_size)| Spec {
            sections: sections.into_iter().map(|(n, (v, d))| (n, v, d)).collect(),
            blobs,
            chunk_size,
        })
}

fn expected(spec: &Spec) -> Contents {
    let mut seen = std::collections::HashSet::new();
    let blobs = spec
        .blobs
        .iter()
        .filter(|b| seen.insert(Digest::of(b)))
        .map(|b| (Digest::of(b), b.clone()))
        .collect();
    (spec.sections.clone(), blobs)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn an_output_that_keeps_lent_buffers_receives_exactly_the_bytes_a_vec_does(spec in spec_strategy()) {
        let (lent_bytes, _) = build_lending(&spec);
        prop_assert_eq!(lent_bytes, build(&spec));
    }

    #[test]
    fn round_trip_through_pipe_and_seek_returns_exactly_what_was_written(spec in spec_strategy(), step in 1usize..20) {
        let bytes = build(&spec);
        let want = expected(&spec);
        let pipe = Pipe { data: &bytes, pos: 0, step };
        prop_assert_eq!(&read_sequential(pipe, Limits::default()).unwrap(), &want);
        prop_assert_eq!(&read_seekable(&bytes, Limits::default()).unwrap(), &want);
        let pipe = Pipe { data: &bytes, pos: 0, step };
        let piped = read_piped(pipe, Limits::default()).map_err(|e| e.0).unwrap();
        prop_assert_eq!(&piped, &want);
        let report = verify(&bytes[..], Limits::default()).unwrap();
        prop_assert_eq!(report.total_bytes, bytes.len() as u64);
        prop_assert_eq!(report.sections.len(), spec.sections.len());
        prop_assert_eq!(report.blobs.len(), want.1.len());
        let sb = SeekableBundle::open(Cursor::new(&bytes), Limits::default()).unwrap();
        prop_assert_eq!(sb.sections(), report.sections);
        prop_assert_eq!(sb.blobs(), report.blobs);
        prop_assert_eq!(sb.manifest(), &manifest());
    }

    #[test]
    fn same_input_gives_same_bytes_however_the_writes_are_split(spec in spec_strategy(), split in 1usize..50) {
        let a = build(&spec);
        prop_assert_eq!(&a, &build(&spec));
        // Same content, written through the streaming API in pieces of `split` bytes.
        let opts = WriteOptions { level: 3, chunk_size: spec.chunk_size };
        let mut w = BundleWriter::new(Vec::new(), &manifest(), opts).unwrap();
        for (name, v, data) in &spec.sections {
            let mut s = w.section(name, *v).unwrap();
            for piece in data.chunks(split) {
                s.write_all(piece).unwrap();
                s.flush().unwrap();
            }
            let (d, n) = s.finish().unwrap();
            prop_assert_eq!(d, Digest::of(data));
            prop_assert_eq!(n, data.len() as u64);
        }
        for b in &spec.blobs {
            let mut pipe = Pipe { data: b, pos: 0, step: split };
            w.blob(&Digest::of(b), b.len() as u64, &mut pipe).unwrap();
        }
        prop_assert_eq!(&a, &w.finish().unwrap());
    }
}

#[test]
fn a_blob_written_twice_is_stored_once() {
    let blob = b"same bytes".to_vec();
    let d = Digest::of(&blob);
    let mut w = BundleWriter::new(Vec::new(), &manifest(), WriteOptions::default()).unwrap();
    assert!(w.blob(&d, blob.len() as u64, &mut &blob[..]).unwrap());
    let mut untouched: &[u8] = b"not read at all";
    assert!(!w.blob(&d, blob.len() as u64, &mut untouched).unwrap());
    assert_eq!(untouched.len(), 15, "a duplicate blob's data is not read");
    let bytes = w.finish().unwrap();
    let report = verify(&bytes[..], Limits::default()).unwrap();
    assert_eq!(report.blobs.len(), 1);
    assert_eq!(report.blobs[0].digest, d);
}

#[test]
fn writer_rejects_blob_data_that_does_not_match_its_digest() {
    let mut w = BundleWriter::new(Vec::new(), &manifest(), WriteOptions::default()).unwrap();
    let err = w
        .blob(&Digest::of(b"expected"), 5, &mut &b"wrong"[..])
        .unwrap_err();
    assert!(matches!(err, BundleError::DigestMismatch { .. }), "{err}");
    // The half-written stream cannot be taken back: the writer refuses to go on.
    assert!(matches!(
        w.write_section("s3", 1, b"x"),
        Err(BundleError::Usage(_))
    ));
    assert!(w.finish().is_err());
}

#[test]
fn a_large_misnamed_blob_fails_a_later_call_or_finish_and_never_completes() {
    // Large enough for its hash to run on the hashing thread, where the check may still be
    // running when `blob` returns.
    let data = vec![7u8; 300_000];
    let opts = WriteOptions {
        level: 1,
        chunk_size: 100_000,
    };
    for _ in 0..20 {
        let mut w = BundleWriter::new(Vec::new(), &manifest(), opts.clone()).unwrap();
        let blob = w
            .blob(&Digest::of(b"not this"), data.len() as u64, &mut &data[..])
            .err();
        let section = w.write_section("s3", 1, b"x").err();
        let finish = w.finish().err();
        assert!(
            finish.is_some(),
            "a bundle with a misnamed blob was completed"
        );
        let first = blob.or(section).or(finish).unwrap();
        assert!(
            matches!(first, BundleError::DigestMismatch { .. }),
            "{first}"
        );
    }
}

#[test]
fn writer_rejects_a_misnamed_blob_even_when_it_continues() {
    let mut w = BundleWriter::new(Vec::new(), &manifest(), WriteOptions::default()).unwrap();
    let _ = w.blob(&Digest::of(b"expected"), 5, &mut &b"wrong"[..]);
    // The half-written stream cannot be taken back: the writer refuses to go on.
    assert!(matches!(
        w.write_section("s3", 1, b"x"),
        Err(BundleError::Usage(_))
    ));
    assert!(w.finish().is_err());
}

#[test]
fn writer_rejects_blob_data_shorter_or_longer_than_declared() {
    let data = b"0123456789";
    let mut w = BundleWriter::new(Vec::new(), &manifest(), WriteOptions::default()).unwrap();
    let err = w.blob(&Digest::of(data), 11, &mut &data[..]).unwrap_err();
    assert!(
        matches!(
            err,
            BundleError::SizeMismatch {
                expected: 11,
                actual: 10,
                ..
            }
        ),
        "{err}"
    );
    let mut w = BundleWriter::new(Vec::new(), &manifest(), WriteOptions::default()).unwrap();
    let err = w
        .blob(&Digest::of(&data[..9]), 9, &mut &data[..])
        .unwrap_err();
    assert!(
        matches!(err, BundleError::SizeMismatch { expected: 9, .. }),
        "{err}"
    );
}

#[test]
fn writer_rejects_a_duplicate_section_and_bad_options() {
    let mut w = BundleWriter::new(Vec::new(), &manifest(), WriteOptions::default()).unwrap();
    w.write_section("s3", 1, b"a").unwrap();
    assert!(matches!(
        w.write_section("s3", 1, b"b"),
        Err(BundleError::Usage(_))
    ));
    assert!(matches!(
        w.write_section("", 1, b"b"),
        Err(BundleError::Usage(_))
    ));
    let bad = WriteOptions {
        level: 3,
        chunk_size: 0,
    };
    assert!(BundleWriter::new(Vec::new(), &manifest(), bad).is_err());
    let bad = WriteOptions {
        level: 3,
        chunk_size: 9 << 20,
    };
    assert!(BundleWriter::new(Vec::new(), &manifest(), bad).is_err());
}

#[test]
fn a_section_writer_dropped_without_finish_makes_the_bundle_unfinishable() {
    let mut w = BundleWriter::new(Vec::new(), &manifest(), WriteOptions::default()).unwrap();
    {
        let mut s = w.section("s3", 1).unwrap();
        s.write_all(b"partial").unwrap();
    }
    assert!(matches!(w.finish(), Err(BundleError::Usage(_))));
}

#[test]
fn a_writer_dropped_without_finish_leaves_a_file_readers_reject_as_truncated() {
    let mut out = Vec::new();
    {
        let mut w = BundleWriter::new(&mut out, &manifest(), WriteOptions::default()).unwrap();
        w.write_section("s3", 1, b"state").unwrap();
    }
    assert!(matches!(
        verify(&out[..], Limits::default()),
        Err(BundleError::Truncated { .. })
    ));
    assert!(SeekableBundle::open(Cursor::new(&out), Limits::default()).is_err());
}

#[test]
fn seekable_reads_one_section_without_touching_the_others() {
    let (spec, mut bytes) = sample();
    let sb = SeekableBundle::open(Cursor::new(bytes.clone()), Limits::default()).unwrap();
    let s3 = sb
        .sections()
        .into_iter()
        .find(|s| s.service == "s3")
        .unwrap();
    // Destroy every byte of the s3 stream and all blobs: reading dynamodb must not notice.
    let start = s3.offset as usize;
    for b in &mut bytes[start..start + s3.stored_bytes as usize] {
        *b = 0xAA;
    }
    for bl in sb.blobs() {
        let at = bl.offset as usize;
        bytes[at..at + bl.stored_bytes as usize].fill(0x55);
    }
    let mut sb = SeekableBundle::open(Cursor::new(&bytes), Limits::default()).unwrap();
    let got = sb
        .open_section("dynamodb")
        .unwrap()
        .unwrap()
        .read_all()
        .unwrap();
    assert_eq!(got, spec.sections[2].2);
    match sb.open_section("s3") {
        Err(e) => assert!(matches!(e, BundleError::Checksum { .. }), "{e}"),
        Ok(r) => assert!(r.unwrap().read_all().is_err()),
    }
    assert!(sb.open_section("nope").unwrap().is_none());
    assert!(sb.open_blob(&Digest::of(b"absent")).unwrap().is_none());
}

#[test]
fn an_entry_left_unread_is_still_verified_when_skipped() {
    let (_, mut bytes) = sample();
    let sb = SeekableBundle::open(Cursor::new(bytes.clone()), Limits::default()).unwrap();
    let s3 = &sb.sections()[0];
    let mid = (s3.offset + s3.stored_bytes / 2) as usize;
    bytes[mid] ^= 0x10;
    let mut br = BundleReader::new(&bytes[..], Limits::default()).unwrap();
    let first = br.next_entry().unwrap();
    assert!(matches!(first, Some(Entry::Section { .. })));
    let mut failed = false;
    loop {
        match br.next_entry() {
            Err(_) => {
                failed = true;
                break;
            }
            Ok(None) => break,
            Ok(Some(_)) => {}
        }
    }
    assert!(
        failed,
        "skipping a corrupt section must report the corruption"
    );
}

#[test]
fn stream_read_errors_carry_the_typed_bundle_error() {
    let (_, mut bytes) = sample();
    let sb = SeekableBundle::open(Cursor::new(bytes.clone()), Limits::default()).unwrap();
    let s3 = &sb.sections()[0];
    let mid = (s3.offset + s3.stored_bytes / 2) as usize;
    bytes[mid] ^= 0x01;
    let mut sb = SeekableBundle::open(Cursor::new(&bytes), Limits::default()).unwrap();
    let mut r = sb.open_section("s3").unwrap().unwrap();
    let err = r.read_to_end(&mut Vec::new()).unwrap_err();
    let inner = err.get_ref().and_then(|e| e.downcast_ref::<BundleError>());
    assert!(
        matches!(inner, Some(BundleError::Checksum { .. })),
        "{err:?}"
    );
    assert!(matches!(
        BundleError::from_io(err),
        BundleError::Checksum { .. }
    ));
}

#[test]
fn unknown_record_kinds_are_skipped() {
    let (spec, bytes) = sample();
    let (index_off, index_len) = footer_of(&bytes);
    let unknown = record(0x7E, 0, b"from a future version");
    let mut out = bytes[..index_off as usize].to_vec();
    out.extend_from_slice(&unknown);
    let end = bytes.len() - 32;
    out.extend_from_slice(&bytes[index_off as usize..end]);
    out.extend_from_slice(&footer(index_off + unknown.len() as u64, index_len, 1));
    let got = read_sequential(&out[..], Limits::default()).unwrap();
    assert_eq!(got.0, spec.sections);
    verify(&out[..], Limits::default()).unwrap();
    read_seekable(&out, Limits::default()).unwrap();
}

#[test]
fn unknown_manifest_fields_are_ignored() {
    let json = r#"{"producer":"cryopod 9","created_at":"2030-01-01T00:00:00Z","services":[{"name":"s3","state_version":3,"scopes":[],"colour":"blue"}],"blobs":{"count":0,"bytes":0},"new_field":{"x":1}}"#;
    let m: Manifest = serde_json::from_str(json).unwrap();
    assert_eq!(m.services[0].state_version, 3);
    let mut file = header(1);
    file.extend_from_slice(&record(0x01, 0, json.as_bytes()));
    let index_off = file.len() as u64;
    let idx = record(0x30, 0, &0u64.to_le_bytes());
    file.extend_from_slice(&idx);
    file.extend_from_slice(&footer(index_off, idx.len() as u64, 1));
    let report = verify(&file[..], Limits::default()).unwrap();
    assert_eq!(report.manifest, m);
}

#[test]
fn large_multi_chunk_streams_round_trip() {
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i % 251) as u8 ^ (i >> 12) as u8)
        .collect();
    let spec = Spec {
        sections: vec![("big".into(), 1, big.clone())],
        blobs: vec![big],
        chunk_size: 1 << 20,
    };
    let bytes = build(&spec);
    assert!(bytes.len() < 3_000_000, "compressible data is compressed");
    let got = read_sequential(
        Pipe {
            data: &bytes,
            pos: 0,
            step: 4096,
        },
        Limits::default(),
    )
    .unwrap();
    assert_eq!(got.0, spec.sections);
    assert_eq!(read_seekable(&bytes, Limits::default()).unwrap(), got);
}

/// Writes seed inputs for the fuzzer when `CRYOPOD_FUZZ_SEEDS=<dir>` is set
/// (`CRYOPOD_FUZZ_SEEDS=fuzz/corpus/reader cargo test -p cryopod-bundle --test roundtrip`).
#[test]
fn fuzz_seeds_are_valid_bundles() {
    let (_, sample) = sample();
    let tiny = build(&Spec {
        sections: vec![("s3".into(), 1, b"abcabcabcabc".repeat(30))],
        blobs: vec![b"blob".to_vec()],
        chunk_size: 64,
    });
    for (i, b) in [sample, tiny].iter().enumerate() {
        verify(&b[..], Limits::default()).unwrap();
        if let Ok(dir) = std::env::var("CRYOPOD_FUZZ_SEEDS") {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(format!("{dir}/seed-{i}.cryopod"), b).unwrap();
        }
    }
}

#[test]
fn blobs_from_a_verified_store_are_written_alike_and_still_verified_by_readers() {
    let data = vec![3u8; 250_000];
    let d = Digest::of(&data);
    let write = |trusted: bool, content: &[u8]| {
        let mut w = BundleWriter::new(Vec::new(), &manifest(), WriteOptions::default()).unwrap();
        if trusted {
            w.blob_from_verified_store(&d, content.len() as u64, &mut &content[..])
                .unwrap();
        } else {
            w.blob(&d, content.len() as u64, &mut &content[..]).unwrap();
        }
        w.finish().unwrap()
    };
    // Same bytes as the checking writer when the store is right.
    assert_eq!(write(true, &data), write(false, &data));
    // A damaged store file still makes a complete bundle, but no reader accepts it.
    let mut damaged = data.clone();
    damaged[1000] ^= 1;
    let bundle = write(true, &damaged);
    let err = read_sequential(&bundle[..], Limits::default()).unwrap_err();
    assert!(matches!(err, BundleError::DigestMismatch { .. }), "{err}");
    let err = read_piped(&bundle[..], Limits::default()).unwrap_err();
    assert!(
        matches!(err.0, BundleError::DigestMismatch { .. }),
        "{}",
        err.0
    );
    assert!(err.1.is_empty(), "the damaged blob was committed");
    // Sizes are still checked.
    let mut w = BundleWriter::new(Vec::new(), &manifest(), WriteOptions::default()).unwrap();
    assert!(matches!(
        w.blob_from_verified_store(&d, data.len() as u64 + 1, &mut &data[..]),
        Err(BundleError::SizeMismatch { .. })
    ));
}

#[test]
fn chunk_payloads_are_lent_not_copied_and_the_bundle_reads_back() {
    let random = Random(0x9e37_79b9_7f4a_7c15).bytes(300_000);
    let spec = Spec {
        sections: vec![("svc".into(), 1, b"state ".repeat(10_000))],
        blobs: vec![random, b"compressible ".repeat(30_000)],
        chunk_size: 64 << 10,
    };
    let (lent_bytes, out) = build_lending(&spec);
    assert_eq!(lent_bytes, build(&spec));
    // Record headers, checksums, the manifest and the index are copied; every chunk
    // payload is lent (raw or compressed).
    assert!(
        out.lent > 300_000 && out.copied < 10_000,
        "copied {} lent {}",
        out.copied,
        out.lent
    );
    assert_eq!(
        read_sequential(&lent_bytes[..], Limits::default()).unwrap(),
        expected(&spec)
    );
}

/// Drops every lent buffer at once (as an HTTP body does once a frame is written), so the
/// writer recycles them, and records the largest capacity it saw.
#[derive(Default)]
struct Forgetful {
    largest: usize,
}

impl BundleOutput for Forgetful {
    fn write_bytes(&mut self, _: &[u8]) -> std::io::Result<()> {
        Ok(())
    }

    fn write_shared(
        &mut self,
        buf: &std::sync::Arc<Vec<u8>>,
        _: std::ops::Range<usize>,
    ) -> std::io::Result<()> {
        self.largest = self.largest.max(buf.capacity());
        Ok(())
    }

    fn flush_output(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn recycled_buffers_stay_the_size_of_a_chunk_however_many_chunks_are_lent() {
    let chunk_size = 64 << 10;
    let opts = WriteOptions {
        level: 1,
        chunk_size,
    };
    let mut w = BundleWriter::new(Forgetful::default(), &manifest(), opts).unwrap();
    // Compressible and incompressible chunks in turn, so compressed buffers and raw chunk
    // buffers (of different capacities) pass through the same pool.
    let mut rng = Random(0x2545_f491_4f6c_dd1d);
    for i in 0..200u32 {
        let data: Vec<u8> = if i % 2 == 0 {
            format!("record {i} ").repeat(chunk_size / 8).into_bytes()
        } else {
            rng.bytes(chunk_size + 1000)
        };
        w.blob(&Digest::of(&data), data.len() as u64, &mut &data[..])
            .unwrap();
    }
    let out = w.finish().unwrap();
    assert!(
        out.largest <= 3 * chunk_size,
        "a lent buffer had a capacity of {} bytes for {chunk_size}-byte chunks",
        out.largest
    );
}
