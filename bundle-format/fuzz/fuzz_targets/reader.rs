//! Feeds arbitrary bytes to every reader. The property: no panic, no unbounded
//! allocation (libFuzzer's -rss_limit_mb catches that), and `verify` succeeding
//! implies the sequential and random-access readers succeed too.
//!
//! Run with `cargo +nightly fuzz run reader` from `bundle-format/`. Seed corpus:
//! any bundle written by the tests, e.g. from `cargo test -p cryopod-bundle`.
#![no_main]

use std::io::{Cursor, Read};

use cryopod_bundle::{BundleReader, Entry, Limits, SeekableBundle, verify};
use libfuzzer_sys::fuzz_target;

fn limits() -> Limits {
    // Small limits keep each run fast and make limit paths reachable.
    Limits {
        max_manifest_bytes: 1 << 16,
        max_chunk_bytes: 1 << 16,
        max_index_entries: 1 << 12,
        max_section_bytes: 1 << 20,
        max_blob_bytes: 1 << 20,
        ..Limits::default()
    }
}

fuzz_target!(|data: &[u8]| {
    let verified = verify(data, limits()).is_ok();

    let mut sequential_ok = false;
    if let Ok(mut r) = BundleReader::new(data, limits()) {
        sequential_ok = true;
        loop {
            match r.next_entry() {
                Ok(Some(Entry::Section { reader, .. })) | Ok(Some(Entry::Blob { reader, .. })) => {
                    let mut sink = Vec::new();
                    if reader.take(1 << 21).read_to_end(&mut sink).is_err() {
                        sequential_ok = false;
                        break;
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    sequential_ok = false;
                    break;
                }
            }
        }
    }

    let mut seek_ok = false;
    if let Ok(mut b) = SeekableBundle::open(Cursor::new(data), limits()) {
        seek_ok = true;
        for s in b.sections() {
            if let Ok(Some(r)) = b.open_section(&s.service) {
                if r.read_all().is_err() {
                    seek_ok = false;
                }
            } else {
                seek_ok = false;
            }
        }
        for bl in b.blobs() {
            if let Ok(Some(r)) = b.open_blob(&bl.digest) {
                if r.read_all().is_err() {
                    seek_ok = false;
                }
            } else {
                seek_ok = false;
            }
        }
    }

    if verified {
        assert!(sequential_ok, "verify accepted what the sequential reader rejects");
        assert!(seek_ok, "verify accepted what the seekable reader rejects");
    }
});
