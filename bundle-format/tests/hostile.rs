//! Promises about damaged and hostile input: always a typed error, never a panic,
//! never a huge allocation.

mod common;

use std::io::Cursor;
use std::panic::catch_unwind;

use common::*;
use cryopod_bundle::*;

/// Runs every reader over `bytes`, reading every stream to the end. Returns whether
/// each one succeeded; panics propagate (callers wrap in `catch_unwind`).
fn all_readers(bytes: &[u8]) -> (bool, bool, bool) {
    let v = verify(bytes, Limits::default()).is_ok();
    let seq = read_sequential(
        Pipe {
            data: bytes,
            pos: 0,
            step: 7,
        },
        Limits::default(),
    )
    .is_ok();
    let seek = read_seekable(bytes, Limits::default()).is_ok();
    // Piping blobs into sinks must fail exactly when reading them does, and must never
    // commit a blob whose bytes do not match its digest.
    let piped = read_piped(
        Pipe {
            data: bytes,
            pos: 0,
            step: 5,
        },
        Limits::default(),
    );
    let committed = match &piped {
        Ok((_, blobs)) | Err((_, blobs)) => blobs,
    };
    for (d, data) in committed {
        assert_eq!(
            *d,
            Digest::of(data),
            "a piped blob was committed unverified"
        );
    }
    assert_eq!(
        piped.is_ok(),
        seq,
        "piping and reading disagree: {:?}",
        piped.err().map(|e| e.0)
    );
    (v, seq, seek)
}

#[test]
fn truncation_at_any_offset_is_a_typed_error() {
    let (_, bytes) = sample();
    for cut in 0..bytes.len() {
        let part = &bytes[..cut];
        let r = catch_unwind(|| all_readers(part)).unwrap_or_else(|_| panic!("panic at cut {cut}"));
        assert_eq!(
            r,
            (false, false, false),
            "truncated at {cut} of {} was accepted",
            bytes.len()
        );
        let err = verify(part, Limits::default()).unwrap_err();
        assert!(
            matches!(err, BundleError::Truncated { .. } | BundleError::BadMagic),
            "cut {cut}: {err}"
        );
    }
    assert_eq!(all_readers(&bytes), (true, true, true));
}

#[test]
fn every_single_byte_flip_is_detected_by_verify() {
    let (_, bytes) = sample();
    for at in 0..bytes.len() {
        for mask in [0x01u8, 0x80, 0xFF] {
            let mut b = bytes.clone();
            b[at] ^= mask;
            let r = catch_unwind(|| verify(&b[..], Limits::default()).is_ok())
                .unwrap_or_else(|_| panic!("panic flipping byte {at}"));
            assert!(!r, "flip of byte {at} with {mask:#x} went undetected");
            catch_unwind(|| all_readers(&b)).unwrap_or_else(|_| panic!("panic flipping byte {at}"));
        }
    }
}

#[test]
fn random_mutations_of_a_larger_bundle_never_panic_and_are_detected() {
    let spec = Spec {
        sections: vec![
            ("a".into(), 1, b"abcdefgh".repeat(5000)),
            ("b".into(), 2, vec![7; 10]),
        ],
        blobs: vec![
            (0..20_000u32)
                .map(|i| (i.wrapping_mul(2654435761u32) >> 13) as u8)
                .collect(),
        ],
        chunk_size: 4096,
    };
    let bytes = build(&spec);
    let mut rng = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for _ in 0..2000 {
        let mut b = bytes.clone();
        let flips = 1 + next() % 4;
        for _ in 0..flips {
            let at = (next() % b.len() as u64) as usize;
            b[at] ^= 1 << (next() % 8);
        }
        let cut = if next() % 4 == 0 {
            (next() % b.len() as u64) as usize
        } else {
            b.len()
        };
        let b = &b[..cut];
        let r = catch_unwind(|| all_readers(b)).expect("no panic");
        assert!(!r.0 && !r.1, "mutation went undetected");
    }
}

#[test]
fn bad_magic_is_reported_as_such() {
    let (_, mut bytes) = sample();
    bytes[1] = b'X';
    assert!(matches!(
        verify(&bytes[..], Limits::default()),
        Err(BundleError::BadMagic)
    ));
    assert!(matches!(
        SeekableBundle::open(Cursor::new(&bytes), Limits::default()),
        Err(BundleError::BadMagic)
    ));
    assert!(matches!(
        verify(&b"PK\x03\x04"[..], Limits::default()),
        Err(BundleError::Truncated { .. })
    ));
    assert!(matches!(
        verify(&[0u8; 64][..], Limits::default()),
        Err(BundleError::BadMagic)
    ));
}

#[test]
fn a_future_format_version_is_refused_with_its_number() {
    let (_, bytes) = sample();
    let mut b = header(2);
    b.extend_from_slice(&bytes[16..]);
    let err = verify(&b[..], Limits::default()).unwrap_err();
    assert!(
        matches!(
            err,
            BundleError::UnsupportedVersion {
                found: 2,
                supported: 1
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("version 2"));
    // A footer claiming another version is refused too.
    let (off, len) = footer_of(&bytes);
    let mut b = bytes[..bytes.len() - 32].to_vec();
    b.extend_from_slice(&footer(off, len, 3));
    assert!(matches!(
        SeekableBundle::open(Cursor::new(&b), Limits::default()),
        Err(BundleError::UnsupportedVersion { found: 3, .. })
    ));
    assert!(matches!(
        verify(&b[..], Limits::default()),
        Err(BundleError::UnsupportedVersion { found: 3, .. })
    ));
}

fn prefix() -> Vec<u8> {
    let mut b = header(1);
    b.extend_from_slice(&manifest_record());
    b
}

fn assert_limit(bytes: &[u8], what_contains: &str) {
    let err = catch_unwind(|| verify(bytes, Limits::default()).unwrap_err()).expect("no panic");
    match &err {
        BundleError::LimitExceeded { what, .. } => assert!(what.contains(what_contains), "{err}"),
        other => panic!("expected LimitExceeded({what_contains}), got {other}"),
    }
}

#[test]
fn huge_lengths_and_counts_are_refused_before_allocating() {
    // Manifest claiming u64::MAX bytes.
    let mut b = header(1);
    b.extend_from_slice(&record_with_len(0x01, 0, u64::MAX, b"{}"));
    assert_limit(&b, "manifest");
    // Chunk record claiming near-u64::MAX length.
    let mut b = prefix();
    let mut start = 1u32.to_le_bytes().to_vec();
    start.extend_from_slice(&2u16.to_le_bytes());
    start.extend_from_slice(b"s3");
    b.extend_from_slice(&record(0x10, 0, &start));
    b.extend_from_slice(&record_with_len(0x20, 1, u64::MAX - 3, b""));
    assert_limit(&b, "chunk");
    // Chunk declaring a 4 GiB uncompressed size inside a small record.
    let mut b = prefix();
    b.extend_from_slice(&record(0x10, 0, &start));
    let mut chunk = u32::MAX.to_le_bytes().to_vec();
    chunk.extend_from_slice(&[0x28, 0xb5, 0x2f, 0xfd, 0, 0]);
    b.extend_from_slice(&record(0x20, 1, &chunk));
    assert_limit(&b, "chunk size");
    // Blob declaring u64::MAX bytes.
    let mut b = prefix();
    let mut blob = [0u8; 32].to_vec();
    blob.extend_from_slice(&u64::MAX.to_le_bytes());
    b.extend_from_slice(&record(0x11, 0, &blob));
    assert_limit(&b, "blob size");
    // Section name longer than the limit.
    let mut b = prefix();
    let mut long = 1u32.to_le_bytes().to_vec();
    long.extend_from_slice(&1000u16.to_le_bytes());
    long.extend_from_slice(&[b'a'; 1000]);
    b.extend_from_slice(&record(0x10, 0, &long));
    assert_limit(&b, "stream start");
    // Index claiming u64::MAX entries.
    let mut b = prefix();
    let idx_off = b.len() as u64;
    let idx = record(0x30, 0, &u64::MAX.to_le_bytes());
    b.extend_from_slice(&idx);
    b.extend_from_slice(&footer(idx_off, idx.len() as u64, 1));
    assert_limit(&b, "index entry count");
    let err = SeekableBundle::open(Cursor::new(&b), Limits::default())
        .err()
        .unwrap();
    assert!(matches!(err, BundleError::LimitExceeded { .. }), "{err}");
    // Index claiming many entries within the limit but with no room for them.
    let mut b = prefix();
    let idx_off = b.len() as u64;
    let idx = record(0x30, 0, &1000u64.to_le_bytes());
    b.extend_from_slice(&idx);
    b.extend_from_slice(&footer(idx_off, idx.len() as u64, 1));
    assert!(matches!(
        verify(&b[..], Limits::default()),
        Err(BundleError::Malformed { .. })
    ));
    // Index record claiming u64::MAX length.
    let mut b = prefix();
    b.extend_from_slice(&record_with_len(0x30, 0, u64::MAX, b""));
    assert_limit(&b, "index");
    // Unknown record claiming u64::MAX length: skipped by streaming, so it is truncation.
    let mut b = prefix();
    b.extend_from_slice(&record_with_len(0x7F, 0, u64::MAX, b"abc"));
    assert!(matches!(
        verify(&b[..], Limits::default()),
        Err(BundleError::Truncated { .. })
    ));
}

#[test]
fn footers_pointing_anywhere_are_refused() {
    let (_, bytes) = sample();
    let body = &bytes[..bytes.len() - 32];
    for (off, len) in [
        (u64::MAX, u64::MAX),
        (u64::MAX - 10, 20),
        (0, 0),
        (5, body.len() as u64 - 5),
        (body.len() as u64, 0),
    ] {
        let mut b = body.to_vec();
        b.extend_from_slice(&footer(off, len, 1));
        let r = catch_unwind(|| SeekableBundle::open(Cursor::new(&b), Limits::default()).is_err());
        assert!(r.expect("no panic"), "footer ({off}, {len}) accepted");
        assert!(verify(&b[..], Limits::default()).is_err());
    }
}

#[test]
fn a_lying_length_on_a_short_input_does_not_allocate_it() {
    // A manifest that claims the maximum allowed size but is 10 bytes long must fail
    // as truncated (the buffer grows only with data actually received).
    let mut b = header(1);
    b.extend_from_slice(&record_with_len(0x01, 0, 16 << 20, b"0123456789"));
    assert!(matches!(
        verify(&b[..], Limits::default()),
        Err(BundleError::Truncated { .. })
    ));
}

#[test]
fn tighter_limits_are_enforced() {
    let (_, bytes) = sample();
    let limits = Limits {
        max_chunk_bytes: 64,
        ..Limits::default()
    };
    assert!(matches!(
        verify(&bytes[..], limits),
        Err(BundleError::LimitExceeded { .. })
    ));
    let limits = Limits {
        max_section_bytes: 100,
        ..Limits::default()
    };
    assert!(matches!(
        verify(&bytes[..], limits),
        Err(BundleError::LimitExceeded { .. })
    ));
    let limits = Limits {
        max_manifest_bytes: 10,
        ..Limits::default()
    };
    assert!(matches!(
        verify(&bytes[..], limits),
        Err(BundleError::LimitExceeded { .. })
    ));
}

#[test]
fn trailing_garbage_after_the_footer_is_rejected() {
    let (_, mut bytes) = sample();
    bytes.push(0);
    assert!(verify(&bytes[..], Limits::default()).is_err());
    assert!(SeekableBundle::open(Cursor::new(&bytes), Limits::default()).is_err());
}

#[test]
fn error_messages_name_the_problem_and_the_offset() {
    let (_, mut bytes) = sample();
    let (off, _) = footer_of(&bytes);
    bytes[off as usize + 20] ^= 1;
    let msg = verify(&bytes[..], Limits::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("index") && msg.contains(&off.to_string()),
        "{msg}"
    );
}

/// Offsets and payload lengths of every CHUNK record whose frame is zstd.
fn zstd_chunks(bytes: &[u8]) -> Vec<(usize, usize)> {
    let end = bytes.len() - 32;
    let mut at = 16;
    let mut found = Vec::new();
    while at < end {
        let kind = bytes[at];
        let flags = bytes[at + 1];
        let len = u64::from_le_bytes(bytes[at + 4..at + 12].try_into().unwrap()) as usize;
        if kind == 0x20 && flags & 1 == 1 {
            found.push((at, len));
        }
        at += 20 + len;
    }
    found
}

#[test]
fn a_damaged_frame_under_a_valid_crc_is_refused_and_its_blob_never_committed() {
    // A multi-chunk compressible blob, piped to the reader's helper thread, which then
    // decompresses its chunks itself.
    let blob: Vec<u8> = (0..400_000u32).map(|i| (i % 97) as u8).collect();
    let spec = Spec {
        sections: vec![("s3".into(), 1, b"state".to_vec())],
        blobs: vec![b"first".to_vec(), blob.clone(), b"last".to_vec()],
        chunk_size: 64 << 10,
    };
    let good = build(&spec);
    let chunks = zstd_chunks(&good);
    assert!(chunks.len() >= 4, "{chunks:?}");
    for &(at, len) in &chunks[chunks.len() - 3..] {
        let mut bytes = good.clone();
        // Overwrite the middle of the frame, then make the record's crc valid again.
        let payload = at + 16..at + 16 + len;
        let mid = payload.start + 4 + (len - 4) / 2;
        bytes[mid..payload.end].fill(0xee);
        let c = crc(&bytes[payload.clone()]);
        bytes[payload.end..payload.end + 4].copy_from_slice(&c.to_le_bytes());
        let r = catch_unwind(|| all_readers(&bytes)).expect("no panic");
        assert_eq!(r, (false, false, false), "chunk at {at}");
        let (e, committed) = read_piped(&bytes[..], Limits::default()).unwrap_err();
        assert!(
            !committed.iter().any(|(d, _)| *d == Digest::of(&blob)),
            "the damaged blob was committed"
        );
        let msg = e.to_string();
        assert!(msg.contains(&format!("chunk at offset {at}")), "{msg}");
    }
}
