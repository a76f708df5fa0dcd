//! Export and import of a state holding object data in many objects, against `zstd -1` of
//! the same bytes in the same run (the target: within 1.5×).
//!
//! `CRYOPOD_BENCH_MB` sets the volume (default 256 MiB in objects of 100 KiB: 2,560 objects;
//! the 1 GiB / 10,000 objects is `CRYOPOD_BENCH_MB=1024`). `CRYOPOD_BENCH_DIR` puts
//! the blob stores in that directory (default: the system temp dir), e.g. `/dev/shm` to take
//! the disk's sync latency out of the measurement.
//!
//! After the two headline ratios it breaks the import down, each step on the same bundle
//! into a fresh directory, to show where the time goes: reading alone (zstd + the reader's
//! sha256 verification), reading plus one plain file per blob written by the reading
//! thread, the blob store's writer on the reading thread (the import path until session 3),
//! and the blobs piped to the hashing thread, which writes them through `BlobImport` sinks
//! (today's path), plus one sha256 pass over the raw bytes.
//!
//! Next to the headline import ratio it prints a second reference, not the target's:
//! `zstd -d` writing its output to a file in the blob directory, as the CLI does by default
//! (the import must write its blobs; the headline baseline writes nothing).
//!
//! The file writes of an import (and of `zstd -d` into a file) slow down when the machine's
//! free memory is low and each page must first be reclaimed from the page cache; the bench
//! prints the memory available at its start, and `CRYOPOD_BENCH_DROP_CACHES=1` (root)
//! drops the clean page cache once before it starts. Before each timed step that writes
//! files, the page cache of the files earlier steps left is evicted (see [`settle`];
//! `CRYOPOD_BENCH_EVICT=0` keeps it).
//!
//! `CRYOPOD_BENCH_PROFILE=import` runs only `CRYOPOD_BENCH_ROUNDS` imports back to back,
//! printing each one's time and minor page faults, for a profiler to attach to once it
//! prints "profile from here" (`perf record -g -p PID`).

mod common;

use std::collections::BTreeSet;
use std::io::{self, Cursor, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{object, put};
use cryopod::bundle::{BundleReader, Entry, Hasher, Limits};
use cryopod::testing::CountingSink;
use cryopod::{BlobImport, BlobStore, MergeStrategy, Runtime, ScopeFilter};
use cryopod_s3::SERVICE;

const OBJECT_BYTES: usize = 100 * 1024;

fn runtime(dir: &std::path::Path) -> Runtime {
    Runtime::builder()
        .enable(Some(vec![SERVICE.into()]))
        .blob_store(BlobStore::open(dir).expect("blob store"))
        .build()
        .expect("runtime")
}

/// What an import step does with each blob stream of the bundle.
#[derive(Clone, Copy)]
enum Sink {
    /// Drain it: the reader's cost alone (decompression, crc, sha256 verification).
    Discard,
    /// A plain file per blob, written by the reading thread, renamed once verified.
    PlainFile,
    /// `BlobStore::writer_verified_by_caller` fed by `io::copy` on the reading thread.
    BlobStoreInline,
    /// `StreamReader::pipe_to` a `BlobImport` sink, as `cryopod::snapshot::read_bundle`
    /// does: hashing and writing leave the reading thread.
    Piped,
}

/// Reads `bundle` front to back, handing every blob to `sink` (sections are drained).
fn read_into(bundle: &[u8], dir: &Path, sink: Sink) -> io::Result<u64> {
    let store = BlobStore::open(dir.join("store"))?;
    let import = BlobImport::new(&store);
    let plain = dir.join("plain");
    let mut made = BTreeSet::new();
    let mut reader = BundleReader::new(bundle, Limits::default()).map_err(io::Error::other)?;
    let mut blobs = 0;
    while let Some(entry) = reader.next_entry().map_err(io::Error::other)? {
        match entry {
            Entry::Section { mut reader, .. } => {
                io::copy(&mut reader, &mut io::sink())?;
            }
            Entry::Blob {
                digest, mut reader, ..
            } => {
                blobs += 1;
                match sink {
                    Sink::Discard => {
                        io::copy(&mut reader, &mut io::sink())?;
                    }
                    Sink::PlainFile => {
                        let hex = digest.hex();
                        let sub = plain.join(&hex[..2]);
                        if made.insert(hex[..2].to_string()) {
                            std::fs::create_dir_all(&sub)?;
                        }
                        let tmp = sub.join(format!(".tmp-{hex}"));
                        let mut f = std::fs::File::create(&tmp)?;
                        io::copy(&mut reader, &mut f)?;
                        std::fs::rename(&tmp, sub.join(hex))?;
                    }
                    Sink::BlobStoreInline => {
                        let mut w = store.writer_verified_by_caller(digest)?;
                        io::copy(&mut reader, &mut w)?;
                        w.commit()?;
                    }
                    Sink::Piped => {
                        reader
                            .pipe_to(import.sink(digest))
                            .map_err(io::Error::other)?;
                    }
                }
            }
        }
    }
    drop(reader);
    let stored = import.stored();
    if matches!(sink, Sink::Piped) {
        assert_eq!(stored, blobs);
    }
    Ok(blobs)
}

/// One sha256 pass over `raw` in object-sized pieces, as the blob store's second hash does.
fn sha256_pass(raw: &[u8]) -> Duration {
    let t = Instant::now();
    for piece in raw.chunks(OBJECT_BYTES) {
        let mut h = Hasher::new();
        h.update(piece);
        std::hint::black_box(h.finish());
    }
    t.elapsed()
}

/// Writes back every dirty page (`sync`), so a timed step does not pay for an earlier
/// step's disk writes.
fn flush_page_cache() {
    let _ = std::process::Command::new("sync").status();
}

/// Before a timed step that writes files: flushes dirty pages, then evicts the page cache
/// of the files earlier steps left in `kept` (`posix_fadvise(DONTNEED)`; their directories
/// and the file system's metadata stay cached). Why: on this benchmark's VM, memory the
/// guest has not used for a while is backed lazily by the host, and the first write to
/// each such page costs a host fault. With 6 GiB of earlier files in the page cache, a
/// plain write of 1 GiB into a new file took 1.1–1.5 s instead of 0.22 s (79 % of its
/// samples in the kernel's copy into the page cache), and the 1 GiB import and `zstd -d`
/// into a file slowed alike. Evicting the bench's own leftovers hands the next step the
/// pages they used, as on a machine whose memory is all backed; `CRYOPOD_BENCH_EVICT=0`
/// keeps them.
fn settle(kept: &[tempfile::TempDir]) {
    flush_page_cache();
    if std::env::var("CRYOPOD_BENCH_EVICT").as_deref() == Ok("0") {
        return;
    }
    fn evict(dir: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => evict(&path),
                Ok(t) if t.is_file() => {
                    if let Ok(f) = std::fs::File::open(&path) {
                        let _ = rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed);
                    }
                }
                _ => {}
            }
        }
    }
    for d in kept {
        evict(d.path());
    }
}

/// With `CRYOPOD_BENCH_DROP_CACHES=1` (root only), drops the clean page cache once, before
/// the state is built, so the run's file writes find free memory instead of reclaiming
/// pages first: on a machine whose page cache is full (after builds, say) that reclaim
/// made the import and `zstd -d` into a file 1.3–2× slower. Once, not before each step:
/// dropping also empties the file system's metadata caches, and a step that starts with
/// them cold (inode and block bitmaps read from disk) is slower on a real disk.
fn drop_page_cache_once() -> bool {
    if std::env::var("CRYOPOD_BENCH_DROP_CACHES").as_deref() != Ok("1") {
        return false;
    }
    flush_page_cache();
    match std::fs::write("/proc/sys/vm/drop_caches", "1") {
        Ok(()) => true,
        Err(e) => {
            eprintln!("cannot drop the page cache: {e}");
            false
        }
    }
}

/// `MemAvailable` and `MemFree` of `/proc/meminfo`, in MiB: how much a step's file writes
/// can take without reclaiming the page cache first.
fn memory_mib() -> (u64, u64) {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb / 1024)
    };
    (field("MemAvailable:"), field("MemFree:"))
}

/// The process's minor page faults so far (Linux; 0 elsewhere).
fn minor_faults() -> u64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.to_string();
            rest.split_whitespace().nth(7)?.parse().ok()
        })
        .unwrap_or(0)
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

/// "median M× (lo–hi×)" of per-round ratios.
fn spread(ratios: &mut [f64]) -> String {
    ratios.sort_by(f64::total_cmp);
    match ratios {
        [] => "-".into(),
        [only] => format!("{only:.2}×"),
        _ => {
            let n = ratios.len();
            let median = if n % 2 == 1 {
                ratios[n / 2]
            } else {
                (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0
            };
            format!(
                "median {median:.2}× ({:.2}–{:.2}×)",
                ratios[0],
                ratios[n - 1]
            )
        }
    }
}

fn main() {
    let mb: usize = std::env::var("CRYOPOD_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let base = std::env::var("CRYOPOD_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    let count = (mb * 1024 * 1024 / OBJECT_BYTES).max(1);
    let dropped = drop_page_cache_once();
    let mem_start = memory_mib();
    let rt_tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let src_dir = tempfile::tempdir_in(&base).expect("dir");
    rt_tokio.block_on(async {
        let src = runtime(src_dir.path());
        put(&src, "/bench", Vec::new()).await;
        let mut raw = Vec::with_capacity(count * OBJECT_BYTES);
        for i in 0..count {
            let body = object(i as u64, OBJECT_BYTES);
            raw.extend_from_slice(&body);
            put(&src, &format!("/bench/obj-{i:06}"), body).await;
        }
        let total = raw.len();
        let rounds: usize = std::env::var("CRYOPOD_BENCH_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3)
            .max(1);

        // Untimed: the bundle the imports read, and the zstd frame the baseline decompresses.
        let (bundle, _) = src
            .export(None, &ScopeFilter::all(), Vec::with_capacity(total), Default::default())
            .await
            .expect("export");
        let compressed = zstd::bulk::compress(&raw, 1).expect("zstd");
        // Imports read the bundle from shared memory, as the baseline reads its frame from
        // a slice: a cloned `Vec` per import would put freeing it (~10 ms of munmap at
        // 256 MiB) inside the timed import.
        let bundle: Arc<[u8]> = bundle.into();

        // `CRYOPOD_BENCH_PROFILE=import`: only imports, back to back, for a profiler.
        if std::env::var("CRYOPOD_BENCH_PROFILE").as_deref() == Ok("import") {
            // Directories are dropped at the end, so a profile of this loop (attach once
            // it says so) holds the imports alone.
            let mut keep = Vec::new();
            println!("profile from here");
            for _ in 0..rounds {
                let dir = tempfile::tempdir_in(&base).expect("dir");
                let fresh = runtime(dir.path());
                let input = Cursor::new(Arc::clone(&bundle));
                let faults = minor_faults();
                let t = Instant::now();
                fresh
                    .import(input, None, MergeStrategy::Overwrite)
                    .await
                    .expect("import");
                let took = t.elapsed();
                println!(
                    "import: {:.3} s, minor faults {}",
                    took.as_secs_f64(),
                    minor_faults() - faults
                );
                keep.push(dir);
            }
            return;
        }

        // Headline rounds. Both sides of each ratio stream into a sink that only counts
        // bytes (`zstd -1 > /dev/null` and `zstd -d > /dev/null`), so neither pays for
        // filling a large buffer. Before each timed step the page cache's dirty pages are
        // flushed (`sync`), so one step's disk writeback does not land on the next. Every
        // round's directory stays until the end: ext4 without a journal (this machine's
        // disk) skips inodes deleted in the last 30 s when it allocates one, and after
        // thousands of deletions that scan dominated file creation (a third of all CPU
        // samples), an artifact of deleting between rounds that no import meets.
        let mut keep = Vec::new();
        let mut head = [Duration::MAX; 4];
        let mut to_file = Duration::MAX;
        let mut import_cpu = Duration::ZERO;
        let mut bundle_bytes = 0;
        // Each round's own ratios (export / zstd -1, import / zstd -d), whose two sides ran
        // back to back: the host's speed drifts by up to 2× over minutes (a plain
        // `sha256sum` of the same file took 2.1–4.9 s in one series), and a best-of ratio
        // can pair a fast baseline with a slow import.
        let (mut paired_export, mut paired_import) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            flush_page_cache();
            let t = Instant::now();
            let (sink, _) = src
                .export(None, &ScopeFilter::all(), CountingSink::default(), Default::default())
                .await
                .expect("export");
            let export_t = t.elapsed();
            head[0] = head[0].min(export_t);
            bundle_bytes = sink.0;

            let t = Instant::now();
            let mut out = CountingSink::default();
            zstd::stream::copy_encode(&raw[..], &mut out, 1).expect("zstd");
            head[1] = head[1].min(t.elapsed());
            paired_export.push(ratio(export_t, t.elapsed()));

            let dir = tempfile::tempdir_in(&base).expect("dir");
            let fresh = runtime(dir.path());
            let input = Cursor::new(Arc::clone(&bundle));
            settle(&keep);
            let cpu = cryopod::testing::process_cpu_time();
            let t = Instant::now();
            fresh
                .import(input, None, MergeStrategy::Overwrite)
                .await
                .expect("import");
            let import_t = t.elapsed();
            if import_t < head[2] {
                head[2] = import_t;
                import_cpu = cryopod::testing::process_cpu_time().saturating_sub(cpu);
            }
            keep.push(dir);

            let t = Instant::now();
            let mut out = CountingSink::default();
            zstd::stream::copy_decode(&compressed[..], &mut out).expect("unzstd");
            head[3] = head[3].min(t.elapsed());
            paired_import.push(ratio(import_t, t.elapsed()));
            assert_eq!(out.0 as usize, total);

            // A second reference, not the target's: `zstd -d` as its CLI runs by default,
            // writing the output to a file, in the same directory as the import's blobs.
            let dir = tempfile::tempdir_in(&base).expect("dir");
            let mut file = std::fs::File::create(dir.path().join("raw")).expect("file");
            settle(&keep);
            let t = Instant::now();
            zstd::stream::copy_decode(&compressed[..], &mut file).expect("unzstd");
            drop(file);
            to_file = to_file.min(t.elapsed());
            keep.push(dir);
        }
        let [export, zstd_c, import, zstd_d] = head;

        let mib = total as f64 / (1024.0 * 1024.0);
        println!(
            "objects: {count} × {} KiB = {mib:.0} MiB; blob dir: {}; best of {rounds} rounds; \
             memory at the start: {} MiB available, {} MiB free{}",
            OBJECT_BYTES / 1024,
            base.display(),
            mem_start.0,
            mem_start.1,
            if dropped {
                " (page cache dropped first)"
            } else {
                ""
            }
        );
        println!(
            "export: {:.3} s ({:.0} MiB/s), bundle {:.1} MiB | zstd -1: {:.3} s, {:.1} MiB | ratio {:.2}×",
            export.as_secs_f64(),
            mib / export.as_secs_f64(),
            bundle_bytes as f64 / 1048576.0,
            zstd_c.as_secs_f64(),
            compressed.len() as f64 / 1048576.0,
            ratio(export, zstd_c)
        );
        println!(
            "import: {:.3} s ({:.0} MiB/s), CPU {:.3} s | zstd -d: {:.3} s | ratio {:.2}×, CPU {:.2}×",
            import.as_secs_f64(),
            mib / import.as_secs_f64(),
            import_cpu.as_secs_f64(),
            zstd_d.as_secs_f64(),
            ratio(import, zstd_d),
            ratio(import_cpu, zstd_d)
        );
        println!(
            "  paired by round (each side right after the other): export {}, import {}",
            spread(&mut paired_export),
            spread(&mut paired_import)
        );
        println!(
            "  (zstd -d into a file in the blob dir: {:.3} s; import / that {:.2}×)",
            to_file.as_secs_f64(),
            ratio(import, to_file)
        );

        println!("import breakdown (each step on the same bundle, fresh directory, best of rounds):");
        let steps = [
            ("read, blobs drained (reader only)", Sink::Discard),
            ("read + plain file per blob, same thread", Sink::PlainFile),
            ("read + blob store writer, same thread", Sink::BlobStoreInline),
            ("read + blobs piped to BlobImport (today)", Sink::Piped),
        ];
        let mut best = vec![Duration::MAX; steps.len()];
        for _ in 0..rounds {
            for (i, (name, sink)) in steps.iter().enumerate() {
                let dir = tempfile::tempdir_in(&base).expect("dir");
                settle(&keep);
                let t = Instant::now();
                let n = read_into(&bundle, dir.path(), *sink).expect(name);
                best[i] = best[i].min(t.elapsed());
                assert_eq!(n as usize, count);
                keep.push(dir);
            }
        }
        // The whole import split in its two calls: decoding (sections, blobs into the
        // store, every check) and applying the decoded state.
        let (mut decode_best, mut apply_best) = (Duration::MAX, Duration::MAX);
        for _ in 0..rounds {
            let dir = tempfile::tempdir_in(&base).expect("dir");
            let fresh = runtime(dir.path());
            let input = Cursor::new(Arc::clone(&bundle));
            settle(&keep);
            let t = Instant::now();
            let decoded = fresh
                .decode(input, None, Limits::default())
                .await
                .expect("decode");
            decode_best = decode_best.min(t.elapsed());
            let t = Instant::now();
            fresh
                .apply_to(decoded.snapshot, MergeStrategy::Overwrite, None)
                .await
                .expect("apply");
            apply_best = apply_best.min(t.elapsed());
            keep.push(dir);
        }
        for ((name, _), took) in steps.iter().zip(&best) {
            println!(
                "  {name:<44} {:.3} s  {:.2}× zstd -d",
                took.as_secs_f64(),
                ratio(*took, zstd_d)
            );
        }
        let best_import = import;
        let [read, plain, inline, piped] = best[..] else {
            unreachable!("four steps")
        };
        println!(
            "  {:<44} {:.3} s  {:.2}× zstd -d",
            "Runtime::import (the whole import)",
            best_import.as_secs_f64(),
            ratio(best_import, zstd_d)
        );
        for (name, took) in [
            ("Runtime::decode (read_bundle)", decode_best),
            ("Runtime::apply_to (the decoded state)", apply_best),
        ] {
            println!(
                "  {name:<44} {:.3} s  {:.2}× zstd -d",
                took.as_secs_f64(),
                ratio(took, zstd_d)
            );
        }
        let sha = sha256_pass(&raw);
        println!(
            "  {:<44} {:.3} s  {:.2}× zstd -d",
            "one sha256 pass over the raw bytes",
            sha.as_secs_f64(),
            ratio(sha, zstd_d)
        );
        println!(
            "  files on the reading thread cost {:.3} s; piping saves {:.3} s over the inline \
             blob store; Runtime::import's extra over the piped step {:.3} s",
            plain.as_secs_f64() - read.as_secs_f64(),
            inline.as_secs_f64() - piped.as_secs_f64(),
            best_import.as_secs_f64() - piped.as_secs_f64()
        );
        let _ = io::stdout().flush();
    });
}
