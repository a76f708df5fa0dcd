//! Export and import of a state holding object data in many objects, against `zstd -1` of
//! the same bytes in the same run (the target: within 1.5×).
//!
//! `CRYOPOD_BENCH_MB` sets the volume (default 256 MiB in objects of 100 KiB: 2,560 objects;
//! the 1 GiB / 10,000 objects is `CRYOPOD_BENCH_MB=1024`). `CRYOPOD_BENCH_DIR` puts
//! the blob stores in that directory (default: the system temp dir), e.g. `/dev/shm` to take
//! the disk's sync latency out of the measurement.

use std::io::Cursor;
use std::time::{Duration, Instant};

use cryopod::{AwsRequest, BlobStore, Body, MergeStrategy, Runtime, Scope, ScopeFilter};
use cryopod_s3::SERVICE;

const OBJECT_BYTES: usize = 100 * 1024;

fn runtime(dir: &std::path::Path) -> Runtime {
    Runtime::builder()
        .enable(Some(vec![SERVICE.into()]))
        .blob_store(BlobStore::open(dir).expect("blob store"))
        .build()
        .expect("runtime")
}

/// Text-like bytes (a 32-symbol alphabet) so compression has work to do, as real data does.
fn object(seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..OBJECT_BYTES)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b"abcdefghijklmnopqrstuvwxyz ,.\n01"[(x % 32) as usize]
        })
        .collect()
}

async fn put(rt: &Runtime, uri: &str, body: Vec<u8>) {
    let svc = rt.service(SERVICE).expect("s3");
    let request = http::Request::builder()
        .method("PUT")
        .uri(uri)
        .header("host", "127.0.0.1")
        .header("content-length", body.len())
        .body(Body::from(body))
        .expect("request");
    let resp = svc
        .handle(AwsRequest {
            scope: Scope::default(),
            access_key_id: None,
            endpoint: "http://127.0.0.1".into(),
            request,
        })
        .await;
    assert!(resp.status().is_success(), "PUT {uri}: {}", resp.status());
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
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
    let rt_tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let src_dir = tempfile::tempdir_in(&base).expect("dir");
    let dst_dir = tempfile::tempdir_in(&base).expect("dir");
    rt_tokio.block_on(async {
        let src = runtime(src_dir.path());
        put(&src, "/bench", Vec::new()).await;
        let mut raw = Vec::with_capacity(count * OBJECT_BYTES);
        for i in 0..count {
            let body = object(i as u64);
            raw.extend_from_slice(&body);
            put(&src, &format!("/bench/obj-{i:06}"), body).await;
        }
        let total = raw.len();

        let t = Instant::now();
        let (bundle, _) = src
            .export(None, &ScopeFilter::all(), Vec::with_capacity(total), Default::default())
            .await
            .expect("export");
        let export = t.elapsed();

        let t = Instant::now();
        let compressed = zstd::bulk::compress(&raw, 1).expect("zstd");
        let zstd_c = t.elapsed();

        let dst = runtime(dst_dir.path());
        let t = Instant::now();
        dst.import(Cursor::new(bundle.clone()), None, MergeStrategy::Overwrite)
            .await
            .expect("import");
        let import = t.elapsed();

        let t = Instant::now();
        let back = zstd::bulk::decompress(&compressed, total).expect("unzstd");
        let zstd_d = t.elapsed();
        assert_eq!(back.len(), total);

        let mib = total as f64 / (1024.0 * 1024.0);
        println!("objects: {count} × {} KiB = {mib:.0} MiB; blob dir: {}", OBJECT_BYTES / 1024, base.display());
        println!(
            "export: {:.3} s ({:.0} MiB/s), bundle {:.1} MiB | zstd -1: {:.3} s, {:.1} MiB | ratio {:.2}×",
            export.as_secs_f64(),
            mib / export.as_secs_f64(),
            bundle.len() as f64 / 1048576.0,
            zstd_c.as_secs_f64(),
            compressed.len() as f64 / 1048576.0,
            ratio(export, zstd_c)
        );
        println!(
            "import: {:.3} s ({:.0} MiB/s) | zstd -d: {:.3} s | ratio {:.2}×",
            import.as_secs_f64(),
            mib / import.as_secs_f64(),
            zstd_d.as_secs_f64(),
            ratio(import, zstd_d)
        );
    });
}
