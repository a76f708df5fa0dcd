//! Invoke latency of a Python no-op handler over HTTP with the AWS SDK: cold (a new
//! execution environment each time), warm (the same environment), and warm invokes per
//! second, against the cost of starting `python3 -c pass` measured in the same run, which is
//! the floor any process-per-function emulator pays for a cold start.
//!
//! `cargo bench -p cryopod-lambda --bench invoke` (`BENCH_WARM=N` sets the warm count).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use aws_credential_types::Credentials;
use aws_sdk_lambda::Client;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{Environment, FunctionCode, Runtime};
use aws_types::region::Region;
use cryopod::server::TestServer;

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn pct(v: &[Duration], p: f64) -> Duration {
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn invoke(c: &Client) -> Duration {
    let t = Instant::now();
    let out = c
        .invoke()
        .function_name("noop")
        .payload(Blob::new("{}"))
        .send()
        .await
        .expect("invoke");
    assert!(out.function_error().is_none(), "{:?}", out.payload());
    t.elapsed()
}

#[tokio::main]
async fn main() {
    let warm_n: usize = std::env::var("BENCH_WARM")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    // The interpreter the emulator runs: `python3` resolved through `sys.executable` (a
    // version manager's shim on PATH is a script that costs far more than the interpreter).
    let real = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 runs");
    let real = String::from_utf8_lossy(&real.stdout).trim().to_string();
    let mut base: Vec<Duration> = (0..20)
        .map(|_| {
            let t = Instant::now();
            let ok = std::process::Command::new(&real)
                .args(["-c", "pass"])
                .status()
                .expect("python3 runs")
                .success();
            assert!(ok);
            t.elapsed()
        })
        .collect();
    let base = median(&mut base);

    let s = TestServer::start(&[cryopod_lambda::SERVICE]).await;
    let c = Client::from_conf(
        aws_sdk_lambda::Config::builder()
            .behavior_version_latest()
            .region(Region::new("us-east-1"))
            .endpoint_url(&s.endpoint)
            .credentials_provider(Credentials::new("000000000000", "s", None, None, "b"))
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .build(),
    );
    let zip = common::stored_zip(&[(
        "index.py",
        b"def handler(event, context):\n    return None\n",
    )]);
    c.create_function()
        .function_name("noop")
        .runtime(Runtime::Python312)
        .role("arn:aws:iam::000000000000:role/r")
        .handler("index.handler")
        .code(FunctionCode::builder().zip_file(Blob::new(zip)).build())
        .send()
        .await
        .expect("create");

    // Cold: a configuration change is a new revision, so the next invoke starts anew.
    let mut cold = Vec::new();
    for i in 0..10 {
        c.update_function_configuration()
            .function_name("noop")
            .environment(
                Environment::builder()
                    .variables("RUN", i.to_string())
                    .build(),
            )
            .send()
            .await
            .expect("update");
        cold.push(invoke(&c).await);
    }
    let cold = median(&mut cold);

    invoke(&c).await;
    let mut warm: Vec<Duration> = Vec::with_capacity(warm_n);
    let t = Instant::now();
    for _ in 0..warm_n {
        warm.push(invoke(&c).await);
    }
    let rate = warm_n as f64 / t.elapsed().as_secs_f64();
    let warm_med = median(&mut warm);
    println!(
        "python3 -c pass (process start, median of 20): {:.1} ms",
        ms(base)
    );
    println!(
        "cold invoke (median of 10):                     {:.1} ms ({:.2}x python3 -c)",
        ms(cold),
        ms(cold) / ms(base)
    );
    println!(
        "warm invoke (median of {warm_n}):                    {:.2} ms (p99 {:.2} ms; {:.3}x python3 -c)",
        ms(warm_med),
        ms(pct(&warm, 0.99)),
        ms(warm_med) / ms(base)
    );
    println!("warm invokes per second (sequential, one client): {rate:.0}");
}
