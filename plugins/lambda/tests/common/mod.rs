//! Helpers shared by the integration tests.
#![allow(dead_code)]

use cryopod::{AwsRequest, Body, Runtime, Scope};
use http_body_util::BodyExt;
use serde_json::Value;

/// A zip of stored (uncompressed) entries, as `zip -0` writes it: a real zip whose size is
/// the size of its content, so incompressible content gives a package of a chosen size.
pub fn stored_zip(files: &[(&str, &[u8])]) -> Vec<u8> {
    fn common(buf: &mut Vec<u8>, crc: u32, len: u32, name: &str) {
        buf.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        buf.extend_from_slice(&crc.to_le_bytes());
        buf.extend_from_slice(&len.to_le_bytes());
        buf.extend_from_slice(&len.to_le_bytes());
        buf.extend_from_slice(&(name.len() as u16).to_le_bytes());
        buf.extend_from_slice(&0u16.to_le_bytes());
    }
    let mut out = Vec::new();
    let mut cd = Vec::new();
    for (name, data) in files {
        let crc = crc32fast::hash(data);
        let offset = out.len() as u32;
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        common(&mut out, crc, data.len() as u32, name);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        cd.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        cd.extend_from_slice(&20u16.to_le_bytes());
        common(&mut cd, crc, data.len() as u32, name);
        cd.extend_from_slice(&[0; 10]);
        cd.extend_from_slice(&offset.to_le_bytes());
        cd.extend_from_slice(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&cd);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(files.len() as u16).to_le_bytes());
    out.extend_from_slice(&(files.len() as u16).to_le_bytes());
    out.extend_from_slice(&(cd.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// `n` bytes that no compressor can shrink (xorshift), deterministic per `seed`.
pub fn incompressible(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// A small zip holding one handler file.
pub fn small_zip(text: &str) -> Vec<u8> {
    stored_zip(&[("index.py", text.as_bytes())])
}

/// Base64 of `b`.
pub fn b64(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Sends one request straight to the runtime's Lambda handler (no HTTP server).
pub async fn call(
    rt: &Runtime,
    scope: &Scope,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let svc = rt
        .service(cryopod_lambda::SERVICE)
        .expect("lambda is running");
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .body(match body {
            Some(v) => Body::from(v.to_string()),
            None => Body::empty(),
        })
        .expect("request");
    let resp = svc
        .handle(AwsRequest {
            scope: scope.clone(),
            access_key_id: Some(scope.account.clone()),
            endpoint: "http://127.0.0.1:4566".into(),
            request: req,
        })
        .await;
    let status = resp.status().as_u16();
    let err = resp
        .headers()
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let mut v: Value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    if let (Some(code), Value::Object(o)) = (err, &mut v) {
        o.insert("__code".into(), Value::String(code));
    }
    (status, v)
}

/// Like [`call`], panicking unless the status is 2xx.
pub async fn ok(
    rt: &Runtime,
    scope: &Scope,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Value {
    let (status, v) = call(rt, scope, method, path, body).await;
    assert!(
        (200..300).contains(&status),
        "{method} {path} -> {status}: {v}"
    );
    v
}

/// A fresh runtime running only Lambda.
pub fn fresh_runtime() -> Runtime {
    Runtime::builder()
        .enable(Some(vec![cryopod_lambda::SERVICE.into()]))
        .build()
        .expect("runtime builds")
}

/// A valid execution role.
pub fn role(account: &str) -> String {
    format!("arn:aws:iam::{account}:role/lambda-exec")
}
