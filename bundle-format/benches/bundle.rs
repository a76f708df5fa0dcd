//! Bundle write/read throughput against raw zstd of the same bytes, plus peak memory.
//!
//! `CRYOPOD_BENCH_MB` (default 1024) sets the input size: half incompressible blobs
//! of 8 MiB, half one section of small msgpack-like records. Run with
//! `cargo bench -p cryopod-bundle --bench bundle`.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::time::{Duration, Instant};

use cryopod_bundle::*;

const LEVEL: i32 = 3;
const BLOB: usize = 8 << 20;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Small records shaped like a msgpack `to_vec_named` state: a map of named fields,
/// mostly repetitive, with some random content (ids, etags).
fn state_section(bytes: usize) -> Vec<u8> {
    let mut rng = Rng(0xC0FFEE);
    let mut v = Vec::with_capacity(bytes + 256);
    let mut i = 0u32;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    while v.len() < bytes {
        v.push(0x85); // fixmap, 5 entries
        v.extend_from_slice(b"\xa2id\xce");
        v.extend_from_slice(&i.to_be_bytes());
        v.extend_from_slice(b"\xa4name\xaf");
        v.extend_from_slice(format!("object-{i:08}").as_bytes());
        v.extend_from_slice(b"\xa4size\xcf");
        v.extend_from_slice(&(rng.next() % 100_000).to_be_bytes());
        v.extend_from_slice(b"\xa4etag\xb0");
        let r = rng.next();
        for k in 0..16 {
            v.push(HEX[((r >> (k * 4)) & 15) as usize]);
        }
        v.extend_from_slice(b"\xa6bucket\xa9my-bucket");
        i += 1;
    }
    v.truncate(bytes);
    v
}

fn random_blob(seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    let mut v = Vec::with_capacity(BLOB);
    while v.len() < BLOB {
        v.extend_from_slice(&rng.next().to_le_bytes());
    }
    v
}

fn status(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Resets VmHWM so each phase's peak can be measured on its own (Linux ≥ 4.0).
fn reset_peak() -> u64 {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    status("VmRSS:")
}

fn peak_delta_mib(base_kib: u64) -> f64 {
    status("VmHWM:").saturating_sub(base_kib) as f64 / 1024.0
}

/// CPU seconds (user + system, all threads) used by this process so far.
fn cpu_secs() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = s.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

struct CountSink(u64);
impl Write for CountSink {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0 += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn write_bundle<W: Write>(out: W, section: &[u8], blobs: &[(Digest, Vec<u8>)]) -> W {
    let m = Manifest {
        producer: "cryopod-bench".into(),
        created_at: "2026-01-01T00:00:00Z".into(),
        ..Manifest::default()
    };
    let mut w = BundleWriter::new(
        out,
        &m,
        WriteOptions {
            level: LEVEL,
            ..WriteOptions::default()
        },
    )
    .unwrap();
    let mut s = w.section("state", 1).unwrap();
    for piece in section.chunks(64 << 10) {
        s.write_all(piece).unwrap();
    }
    s.finish().unwrap();
    for (d, b) in blobs {
        w.blob(d, b.len() as u64, &mut &b[..]).unwrap();
    }
    w.finish().unwrap()
}

/// Raw zstd of the same bytes, fed in the same pieces, as one stream.
fn raw_compress<W: Write>(out: W, section: &[u8], blobs: &[(Digest, Vec<u8>)]) -> W {
    let mut enc = zstd::stream::Encoder::new(out, LEVEL).unwrap();
    for piece in section.chunks(64 << 10) {
        enc.write_all(piece).unwrap();
    }
    for (_, b) in blobs {
        enc.write_all(b).unwrap();
    }
    enc.finish().unwrap()
}

/// Reads every stream to the end in 256 KiB reads, like a consumer would.
fn read_all<R: Read>(r: R) -> u64 {
    let mut br = BundleReader::new(r, Limits::default()).unwrap();
    let mut read_bytes = 0u64;
    let mut buf = vec![0u8; 256 << 10];
    while let Some(e) = br.next_entry().unwrap() {
        let mut r = match e {
            Entry::Section { reader, .. } | Entry::Blob { reader, .. } => reader,
        };
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            read_bytes += n as u64;
        }
    }
    read_bytes
}

fn main() {
    let mb: usize = std::env::var("CRYOPOD_BENCH_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    let half = (mb << 20) / 2;
    let nblobs = (half / BLOB).max(1);
    let t = Instant::now();
    let section = state_section(half);
    let blobs: Vec<(Digest, Vec<u8>)> = (0..nblobs as u64)
        .map(|i| {
            let b = random_blob(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            (Digest::of(&b), b)
        })
        .collect();
    let total = (section.len() + nblobs * BLOB) as u64;
    println!(
        "input: {:.0} MiB (section {:.0} MiB of small records, {} blobs of 8 MiB random), generated in {:.1?}",
        total as f64 / 1048576.0,
        section.len() as f64 / 1048576.0,
        nblobs,
        t.elapsed()
    );
    println!(
        "zstd level {LEVEL}, chunk 1 MiB, {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );

    // ---- raw zstd (one stream of all the same bytes, same level) ----
    let base = reset_peak();
    let (t, c) = (Instant::now(), cpu_secs());
    raw_compress(CountSink(0), &section, &blobs);
    let raw_write = t.elapsed();
    let raw_write_cpu = cpu_secs() - c;
    let raw_write_peak = peak_delta_mib(base);
    // The compressed bytes for the decompression baseline (untimed).
    let raw = raw_compress(Vec::with_capacity(total as usize), &section, &blobs);

    let base = reset_peak();
    let (t, c) = (Instant::now(), cpu_secs());
    zstd::stream::copy_decode(&raw[..], CountSink(0)).unwrap();
    let raw_read = t.elapsed();
    let raw_read_cpu = cpu_secs() - c;
    let raw_read_peak = peak_delta_mib(base);

    // ---- bundle to a sink ----
    let base = reset_peak();
    let (t, c) = (Instant::now(), cpu_secs());
    let sink = write_bundle(CountSink(0), &section, &blobs);
    let bundle_sink = t.elapsed();
    let bundle_sink_cpu = cpu_secs() - c;
    let sink_peak = peak_delta_mib(base);

    // ---- bundle to a file ----
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.cryopod");
    let base = reset_peak();
    let t = Instant::now();
    let f = write_bundle(
        BufWriter::with_capacity(1 << 20, File::create(&path).unwrap()),
        &section,
        &blobs,
    );
    f.into_inner().unwrap();
    let bundle_file = t.elapsed();
    let file_peak = peak_delta_mib(base);
    let file_len = std::fs::metadata(&path).unwrap().len();
    assert_eq!(file_len, sink.0);

    // ---- baselines for the parts of verification ----
    let t = Instant::now();
    let mut h = Hasher::new();
    h.update(&section);
    for (_, b) in &blobs {
        h.update(b);
    }
    std::hint::black_box(h.finish());
    let sha_t = t.elapsed();
    let t = Instant::now();
    let mut c = crc32fast::Hasher::new();
    c.update(&raw);
    std::hint::black_box(c.finalize());
    let crc_t = t.elapsed();
    let in_memory = write_bundle(Vec::with_capacity(file_len as usize), &section, &blobs);

    drop(section);
    drop(blobs);

    // ---- read from memory, to compare with raw decompression (also from memory) ----
    let (t, c) = (Instant::now(), cpu_secs());
    let mem_read_bytes = read_all(&in_memory[..]);
    let bundle_read_mem = t.elapsed();
    let bundle_read_mem_cpu = cpu_secs() - c;
    assert_eq!(mem_read_bytes, total);
    drop(in_memory);

    // ---- sequential read of every stream to the end ----
    let base = reset_peak();
    let t = Instant::now();
    let read_bytes = read_all(BufReader::with_capacity(
        1 << 20,
        File::open(&path).unwrap(),
    ));
    let bundle_read = t.elapsed();
    let read_peak = peak_delta_mib(base);
    assert_eq!(read_bytes, total);

    // ---- verify ----
    let t = Instant::now();
    let report = verify(
        BufReader::with_capacity(1 << 20, File::open(&path).unwrap()),
        Limits::default(),
    )
    .unwrap();
    let verify_t = t.elapsed();
    assert_eq!(report.total_bytes, file_len);

    let row = |name: &str, d: Duration, peak: f64| {
        println!(
            "{name:<34} {:>8.2} s {:>9.0} MiB/s  peak RSS +{peak:.0} MiB",
            d.as_secs_f64(),
            mbps(total, d)
        );
    };
    println!(
        "sizes: raw zstd {:.1} MiB, bundle {:.1} MiB",
        raw.len() as f64 / 1048576.0,
        file_len as f64 / 1048576.0
    );
    row("raw zstd compress (stream)", raw_write, raw_write_peak);
    row("bundle write -> sink", bundle_sink, sink_peak);
    row("bundle write -> file", bundle_file, file_peak);
    row("raw zstd decompress", raw_read, raw_read_peak);
    row("bundle read (sequential, memory)", bundle_read_mem, 0.0);
    row("bundle read (sequential, file)", bundle_read, read_peak);
    row("bundle verify (file)", verify_t, 0.0);
    row("sha256 of the input (one thread)", sha_t, 0.0);
    println!("crc32 of the raw zstd output: {:.3} s", crc_t.as_secs_f64());
    println!(
        "ratios: read(memory)/raw = {:.2}x",
        bundle_read_mem.as_secs_f64() / raw_read.as_secs_f64()
    );
    println!(
        "cpu seconds (all threads): raw compress {raw_write_cpu:.2}, bundle write {bundle_sink_cpu:.2} ({:.2}x); raw decompress {raw_read_cpu:.2}, bundle read {bundle_read_mem_cpu:.2} ({:.2}x)",
        bundle_sink_cpu / raw_write_cpu,
        bundle_read_mem_cpu / raw_read_cpu
    );
    println!(
        "load average at end: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    println!(
        "ratios: write(sink)/raw = {:.2}x, write(file)/raw = {:.2}x, read/raw = {:.2}x (target <= 1.3x)",
        bundle_sink.as_secs_f64() / raw_write.as_secs_f64(),
        bundle_file.as_secs_f64() / raw_write.as_secs_f64(),
        bundle_read.as_secs_f64() / raw_read.as_secs_f64()
    );
    println!(
        "process peak RSS (VmHWM, last phase) {} MiB",
        status("VmHWM:") / 1024
    );
}
