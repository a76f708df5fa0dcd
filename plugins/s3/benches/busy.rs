//! What an export costs the rest of the emulator while it runs: PutObject/GetObject latency
//! during an export versus without one (same run, same server), and the process's peak
//! memory growth while exporting the whole S3 state.
//!
//! The emulator is the in-process `cryopod::server::TestServer` (real HTTP on loopback); the
//! client is the official AWS SDK for Rust; the export is `GET /_cryopod/state` read by a
//! plain socket on another thread, as the CLI would. Settings (environment):
//! - `CRYOPOD_BENCH_MB` (default 1024) of object data in `CRYOPOD_BENCH_OBJECTS` (default
//!   10,000) objects of text-like bytes;
//! - `CRYOPOD_BENCH_SECONDS` (default 5): length of each latency phase (exports repeat
//!   back to back until it has passed), `CRYOPOD_BENCH_ROUNDS` (default 2) pairs of phases
//!   without and during exports, alternating;
//! - `CRYOPOD_BENCH_BODY_KB` (default 16): body size of the PutObject/GetObject mix;
//! - `CRYOPOD_BENCH_DIR` (default the system temp dir): where the blob store lives;
//! - `CRYOPOD_BENCH_BACKGROUND_CLIENT` (set to anything): the thread downloading the exports
//!   runs at the framework's background priority, to tell its share of the latency from the
//!   server's;
//! - `CRYOPOD_BENCH_EXPORT_IN_PROCESS` (set to anything): exports through `Runtime::export`
//!   into a sink instead of over HTTP, to tell the HTTP streaming's share from the export's.
//!
//! Memory is read from `/proc/self/status` (Linux): the peak (`VmHWM`) is reset through
//! `/proc/self/clear_refs` just before the export, so the growth is the export's alone.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_credential_types::Credentials;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_types::region::Region;
use common::{object, put};
use cryopod::server::TestServer;
use cryopod::{BlobStore, Runtime};
use cryopod_s3::SERVICE;

const MIB: usize = 1024 * 1024;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn client(endpoint: &str) -> Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("test", "test", None, None, "bench"))
        .force_path_style(true)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    Client::from_conf(conf)
}

/// `GET /_cryopod/state?services=s3` read to the end on a plain socket; returns the bytes.
fn export_over_http(addr: SocketAddr) -> u64 {
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET /_cryopod/state?services={SERVICE} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    let mut head = Vec::new();
    loop {
        let n = s.read(&mut buf).expect("read export");
        if n == 0 {
            break;
        }
        if head.len() < 12 {
            head.extend_from_slice(&buf[..n.min(12)]);
        }
        total += n as u64;
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "export answered {}",
        String::from_utf8_lossy(&head)
    );
    total
}

/// A field of `/proc/self/status` in bytes (`VmRSS`, `VmHWM`), `None` off Linux.
fn proc_status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Resets `VmHWM` to the current RSS (Linux ≥ 4.0).
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

/// One PutObject and one GetObject per round, from one client, each timed.
async fn mix(
    c: &Client,
    body: &[u8],
    until: impl Fn() -> bool,
    puts: &mut Vec<Duration>,
    gets: &mut Vec<Duration>,
) {
    let mut i = 0u64;
    while !until() {
        let key = format!("live/k{:02}", i % 64);
        let t = Instant::now();
        c.put_object()
            .bucket("bench")
            .key(&key)
            .body(ByteStream::from(body.to_vec()))
            .send()
            .await
            .expect("PutObject");
        puts.push(t.elapsed());
        let t = Instant::now();
        let got = c
            .get_object()
            .bucket("bench")
            .key(&key)
            .send()
            .await
            .expect("GetObject");
        let bytes = got.body.collect().await.expect("body").into_bytes();
        gets.push(t.elapsed());
        assert_eq!(bytes.len(), body.len());
        i += 1;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

struct Stats {
    n: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    Stats {
        n: v.len(),
        p50: percentile(&v, 0.50),
        p99: percentile(&v, 0.99),
        max: v.last().copied().unwrap_or_default(),
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let mb: usize = env_or("CRYOPOD_BENCH_MB", 1024);
    let objects: usize = env_or("CRYOPOD_BENCH_OBJECTS", 10_000).max(1);
    let seconds: f64 = env_or("CRYOPOD_BENCH_SECONDS", 5.0);
    let body_kb: usize = env_or("CRYOPOD_BENCH_BODY_KB", 16);
    let base = std::env::var("CRYOPOD_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    let object_bytes = (mb * MIB / objects).max(1);
    let phase = Duration::from_secs_f64(seconds);
    let rounds: usize = env_or("CRYOPOD_BENCH_ROUNDS", 2).max(1);

    let rt_tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let blob_dir = tempfile::tempdir_in(&base).expect("dir");
    rt_tokio.block_on(async {
        let rss_start = proc_status_bytes("VmRSS").unwrap_or(0);
        let runtime = Runtime::builder()
            .enable(Some(vec![SERVICE.into()]))
            .blob_store(BlobStore::open(blob_dir.path()).expect("blob store"))
            .build()
            .expect("runtime");
        let server = TestServer::start_with_runtime(runtime.clone()).await;
        put(&runtime, "/bench", Vec::new()).await;
        let t = Instant::now();
        for i in 0..objects {
            put(
                &runtime,
                &format!("/bench/obj-{i:06}"),
                object(i as u64, object_bytes),
            )
            .await;
        }
        let fill = t.elapsed();
        // The fill's dirty pages would otherwise be written back during the first phases.
        let _ = std::process::Command::new("sync").status();
        let total = (objects * object_bytes) as u64;
        let rss_state = proc_status_bytes("VmRSS").unwrap_or(0);
        println!(
            "state: {objects} objects × {object_bytes} B = {:.0} MiB (filled in {:.1} s); \
             blob dir {}; RSS {:.1} MiB at start, {:.1} MiB with the state",
            mib(total),
            fill.as_secs_f64(),
            base.display(),
            mib(rss_start),
            mib(rss_state)
        );

        // Memory: one export alone, peak RSS growth over the RSS just before it.
        let addr = server.addr;
        let before = proc_status_bytes("VmRSS").unwrap_or(0);
        let reset = reset_peak();
        let sampled = Arc::new(AtomicU64::new(before));
        let sampling = Arc::new(AtomicBool::new(true));
        let sampler = {
            let (sampled, sampling) = (Arc::clone(&sampled), Arc::clone(&sampling));
            std::thread::spawn(move || {
                while sampling.load(Ordering::Relaxed) {
                    if let Some(rss) = proc_status_bytes("VmRSS") {
                        sampled.fetch_max(rss, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        let t = Instant::now();
        let bytes = tokio::task::spawn_blocking(move || export_over_http(addr))
            .await
            .expect("export thread");
        let export_time = t.elapsed();
        sampling.store(false, Ordering::Relaxed);
        let _ = sampler.join();
        let hwm = proc_status_bytes("VmHWM").unwrap_or(0);
        let peak = if reset {
            hwm.max(sampled.load(Ordering::Relaxed))
        } else {
            sampled.load(Ordering::Relaxed)
        };
        println!(
            "export alone: {:.1} MiB bundle in {:.2} s ({:.0} MiB/s of object data); \
             RSS before {:.1} MiB, peak {:.1} MiB: growth {:.1} MiB ({})",
            mib(bytes),
            export_time.as_secs_f64(),
            mib(total) / export_time.as_secs_f64(),
            mib(before),
            mib(peak),
            mib(peak.saturating_sub(before)),
            if reset {
                "VmHWM reset before the export, and 5 ms samples"
            } else {
                "5 ms samples only: VmHWM could not be reset"
            }
        );

        // Latency: the same mix without and then during exports, same server, same run.
        let c = client(&server.endpoint);
        let body = object(u64::MAX, body_kb * 1024);
        // Warm-up: connections, the keys of the mix.
        let warm = Instant::now();
        let (mut p, mut g) = (Vec::new(), Vec::new());
        mix(
            &c,
            &body,
            || warm.elapsed() > Duration::from_millis(500),
            &mut p,
            &mut g,
        )
        .await;

        // Phases alternate (without, during, without, during, …) so that background disk
        // writeback and other load on the machine fall on both sides.
        let (mut idle_puts, mut idle_gets) = (Vec::new(), Vec::new());
        let (mut busy_puts, mut busy_gets) = (Vec::new(), Vec::new());
        let mut busy_time = Duration::ZERO;
        let exports = Arc::new(AtomicU64::new(0));
        for round in 0..rounds {
            let (mut ip, mut ig) = (Vec::new(), Vec::new());
            let start = Instant::now();
            mix(&c, &body, || start.elapsed() > phase, &mut ip, &mut ig).await;

            let (mut bp, mut bg) = (Vec::new(), Vec::new());
            let exporting = Arc::new(AtomicBool::new(true));
            let exporter = {
                let (exporting, exports) = (Arc::clone(&exporting), Arc::clone(&exports));
                let in_process = std::env::var_os("CRYOPOD_BENCH_EXPORT_IN_PROCESS")
                    .is_some()
                    .then(|| (runtime.clone(), tokio::runtime::Handle::current()));
                let work = move || {
                    let start = Instant::now();
                    // Back to back until the phase has passed; at least one whole export.
                    loop {
                        match &in_process {
                            // Diagnostic: `Runtime::export` into a sink, no HTTP.
                            Some((rt, handle)) => {
                                handle
                                    .block_on(rt.export(
                                        None,
                                        &cryopod::ScopeFilter::all(),
                                        std::io::sink(),
                                        Default::default(),
                                    ))
                                    .expect("export");
                            }
                            None => {
                                export_over_http(addr);
                            }
                        }
                        exports.fetch_add(1, Ordering::Relaxed);
                        if start.elapsed() > phase {
                            break;
                        }
                    }
                    exporting.store(false, Ordering::Relaxed);
                };
                // Diagnostic: the client that downloads the exports at background priority
                // too, to tell its share of the latency from the server's.
                if std::env::var_os("CRYOPOD_BENCH_BACKGROUND_CLIENT").is_some() {
                    cryopod::background::spawn("bench-export-client", work).expect("thread")
                } else {
                    std::thread::spawn(work)
                }
            };
            let busy_start = Instant::now();
            mix(
                &c,
                &body,
                || !exporting.load(Ordering::Relaxed),
                &mut bp,
                &mut bg,
            )
            .await;
            busy_time += busy_start.elapsed();
            exporter.join().expect("exporter");
            println!(
                "  round {round}: p99 put/get without export {:.0}/{:.0} µs, during {:.0}/{:.0} µs",
                us(stats(ip.clone()).p99),
                us(stats(ig.clone()).p99),
                us(stats(bp.clone()).p99),
                us(stats(bg.clone()).p99)
            );
            idle_puts.extend(ip);
            idle_gets.extend(ig);
            busy_puts.extend(bp);
            busy_gets.extend(bg);
        }

        println!(
            "latency, {body_kb} KiB bodies, one SDK client; {:.1} s without export, {:.1} s \
             during {} export(s) of the {:.0} MiB state (all rounds):",
            phase.as_secs_f64() * rounds as f64,
            busy_time.as_secs_f64(),
            exports.load(Ordering::Relaxed),
            mib(total)
        );
        for (name, idle, busy) in [
            ("PutObject", idle_puts, busy_puts),
            ("GetObject", idle_gets, busy_gets),
        ] {
            let (i, b) = (stats(idle), stats(busy));
            println!(
                "  {name}: without export n={} p50 {:.0} µs p99 {:.0} µs max {:.0} µs | \
                 during export n={} p50 {:.0} µs p99 {:.0} µs max {:.0} µs | \
                 p99 ratio {:.2}×, p50 ratio {:.2}×",
                i.n,
                us(i.p50),
                us(i.p99),
                us(i.max),
                b.n,
                us(b.p50),
                us(b.p99),
                us(b.max),
                us(b.p99) / us(i.p99).max(1e-3),
                us(b.p50) / us(i.p50).max(1e-3),
            );
        }
        drop(server);
    });
}
