//! Helpers the S3 benches share: object bodies and filling a state without HTTP.

use cryopod::{AwsRequest, Body, Runtime, Scope};
use cryopod_s3::SERVICE;

/// Text-like bytes (a 32-symbol alphabet, about 1.6:1 for zstd) so that exports have
/// compression work to do, as real data does; `seed` makes each object different.
pub fn object(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b"abcdefghijklmnopqrstuvwxyz ,.\n01"[(x % 32) as usize]
        })
        .collect()
}

/// A PUT straight into the S3 service (no HTTP): fills the state quickly.
pub async fn put(rt: &Runtime, uri: &str, body: Vec<u8>) {
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
