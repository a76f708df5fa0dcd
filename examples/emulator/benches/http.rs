//! HTTP overhead of export and import: the internal API over loopback versus in-process
//! `capture`/`apply` of the same state, in the same run (issue "emulator runtime").
//!
//! The state is `CRYOPOD_BENCH_MB` MiB (default 1024) of incompressible note attachments
//! (16 MiB each) plus 20,000 small notes. Run: `cargo bench -p cryopod-emulator --bench http`.

use std::io::Cursor;
use std::time::Instant;

use cryopod::server::TestServer;
use cryopod::{MergeStrategy, Runtime, ScopeFilter};
use futures::StreamExt;
use rand::RngCore;

const ATTACHMENT: usize = 16 * 1024 * 1024;

async fn call(client: &reqwest::Client, endpoint: &str, op: &str, body: serde_json::Value) {
    let resp = client
        .post(endpoint)
        .header("x-amz-target", format!("Notes.{op}"))
        .body(body.to_string())
        .send()
        .await
        .expect("request");
    assert!(resp.status().is_success(), "{op}: {}", resp.status());
}

fn runtime() -> Runtime {
    Runtime::builder()
        .enable(Some(vec![cryopod_notes::SERVICE.to_string()]))
        .build()
        .expect("runtime")
}

#[tokio::main]
async fn main() {
    let mb: usize = std::env::var("CRYOPOD_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let server = TestServer::start_with_runtime(runtime()).await;
    let client = reqwest::Client::new();
    let ep = server.endpoint.clone();
    call(
        &client,
        &ep,
        "CreateNotebook",
        serde_json::json!({"NotebookName": "big"}),
    )
    .await;
    let mut rng = rand::rng();
    let n = (mb * 1024 * 1024).div_ceil(ATTACHMENT);
    use base64::Engine as _;
    for i in 0..n {
        let mut bytes = vec![0u8; ATTACHMENT];
        rng.fill_bytes(&mut bytes);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
        call(&client, &ep, "PutNote", serde_json::json!({"NotebookName": "big", "Key": format!("blob-{i}"), "Text": "x", "Attachment": b64})).await;
    }
    for i in 0..20_000 {
        call(&client, &ep, "PutNote", serde_json::json!({"NotebookName": "big", "Key": format!("small-{i}"), "Text": format!("note number {i}")})).await;
    }
    println!("state: {n} attachments of 16 MiB + 20,000 small notes");

    // In-process: capture + write the bundle to memory; decode + apply from memory.
    let t = Instant::now();
    let (bundle, _) = server
        .runtime
        .export(
            None,
            &ScopeFilter::all(),
            Vec::with_capacity(mb << 20),
            Default::default(),
        )
        .await
        .expect("export");
    let in_export = t.elapsed();
    let target = runtime();
    let t = Instant::now();
    target
        .import(Cursor::new(bundle.clone()), None, MergeStrategy::Overwrite)
        .await
        .expect("import");
    let in_import = t.elapsed();

    // HTTP: GET /_cryopod/state into memory; POST it to a fresh emulator.
    let t = Instant::now();
    let resp = client
        .get(format!("{ep}/_cryopod/state"))
        .send()
        .await
        .expect("export request");
    let mut body = Vec::with_capacity(bundle.len());
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(&chunk.expect("chunk"));
    }
    let http_export = t.elapsed();
    assert_eq!(
        body.len(),
        bundle.len(),
        "HTTP export differs in size from in-process export"
    );
    let fresh = TestServer::start_with_runtime(runtime()).await;
    let t = Instant::now();
    let resp = client
        .post(format!("{}/_cryopod/state?merge=overwrite", fresh.endpoint))
        .body(body)
        .send()
        .await
        .expect("import request");
    assert!(resp.status().is_success(), "import: {}", resp.status());
    let http_import = t.elapsed();

    let mib = bundle.len() as f64 / (1024.0 * 1024.0);
    println!("bundle: {mib:.0} MiB");
    println!(
        "export: in-process {:.2} s, HTTP {:.2} s, ratio {:.2}x",
        in_export.as_secs_f64(),
        http_export.as_secs_f64(),
        http_export.as_secs_f64() / in_export.as_secs_f64()
    );
    println!(
        "import: in-process {:.2} s, HTTP {:.2} s, ratio {:.2}x",
        in_import.as_secs_f64(),
        http_import.as_secs_f64(),
        http_import.as_secs_f64() / in_import.as_secs_f64()
    );
}
