//! Function code from S3 goes through the S3 service's object source into the shared blob
//! store: the function keeps its code when the object (and its bucket) are deleted, and the
//! code travels with the Lambda state in a bundle.

mod common;

use std::io::Cursor;

use aws_credential_types::Credentials;
use aws_sdk_lambda::types::{FunctionCode, Runtime};
use aws_types::region::Region;
use common::small_zip;
use cryopod::server::TestServer;
use cryopod::{MergeStrategy, ScopeFilter};

const ACCOUNT: &str = "111111111111";

fn creds() -> Credentials {
    Credentials::new(ACCOUNT, "secret", None, None, "t")
}

fn lambda(server: &TestServer) -> aws_sdk_lambda::Client {
    aws_sdk_lambda::Client::from_conf(
        aws_sdk_lambda::Config::builder()
            .behavior_version_latest()
            .region(Region::new("us-east-1"))
            .endpoint_url(&server.endpoint)
            .credentials_provider(creds())
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .build(),
    )
}

fn s3(server: &TestServer) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version_latest()
            .region(Region::new("us-east-1"))
            .endpoint_url(&server.endpoint)
            .force_path_style(true)
            .credentials_provider(creds())
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .build(),
    )
}

async fn download(url: &str) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest.split_at(rest.find('/').expect("path"));
    let mut s = tokio::net::TcpStream::connect(host).await.expect("connect");
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read");
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("headers")
        + 4;
    assert!(
        buf.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..end])
    );
    buf[end..].to_vec()
}

#[tokio::test]
async fn function_created_from_s3_keeps_its_code_after_the_object_is_deleted() {
    let server = TestServer::start(&[cryopod_lambda::SERVICE, cryopod_s3::SERVICE]).await;
    let s3 = s3(&server);
    let lc = lambda(&server);
    let zip = small_zip("def handler(e, c): return 's3'");
    s3.create_bucket()
        .bucket("code-bucket")
        .send()
        .await
        .unwrap();
    s3.put_object()
        .bucket("code-bucket")
        .key("app.zip")
        .body(zip.clone().into())
        .send()
        .await
        .unwrap();
    let created = lc
        .create_function()
        .function_name("from-s3")
        .runtime(Runtime::Python312)
        .role(format!("arn:aws:iam::{ACCOUNT}:role/exec"))
        .handler("index.handler")
        .code(
            FunctionCode::builder()
                .s3_bucket("code-bucket")
                .s3_key("app.zip")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.code_size(), zip.len() as i64);

    s3.delete_object()
        .bucket("code-bucket")
        .key("app.zip")
        .send()
        .await
        .unwrap();
    s3.delete_bucket()
        .bucket("code-bucket")
        .send()
        .await
        .unwrap();

    let f = lc
        .get_function()
        .function_name("from-s3")
        .send()
        .await
        .unwrap();
    assert_eq!(
        f.configuration().unwrap().code_sha256(),
        created.code_sha256()
    );
    assert!(download(f.code().unwrap().location().unwrap()).await == zip);

    // And the code travels with the Lambda state alone.
    let (bundle, _) = server
        .runtime
        .export(
            Some(&[cryopod_lambda::SERVICE.into()]),
            &ScopeFilter::all(),
            Vec::new(),
            Default::default(),
        )
        .await
        .unwrap();
    let fresh = TestServer::start(&[cryopod_lambda::SERVICE, cryopod_s3::SERVICE]).await;
    fresh
        .runtime
        .import(Cursor::new(bundle), None, MergeStrategy::AccountRegionMerge)
        .await
        .unwrap();
    let g = lambda(&fresh)
        .get_function()
        .function_name("from-s3")
        .send()
        .await
        .unwrap();
    assert_eq!(
        g.configuration().unwrap().code_sha256(),
        created.code_sha256()
    );
    assert!(download(g.code().unwrap().location().unwrap()).await == zip);
}

#[tokio::test]
async fn code_from_a_missing_s3_object_is_an_invalid_parameter() {
    let server = TestServer::start(&[cryopod_lambda::SERVICE, cryopod_s3::SERVICE]).await;
    let e = lambda(&server)
        .create_function()
        .function_name("nope")
        .runtime(Runtime::Python312)
        .role(format!("arn:aws:iam::{ACCOUNT}:role/exec"))
        .handler("index.handler")
        .code(
            FunctionCode::builder()
                .s3_bucket("no-such-bucket")
                .s3_key("a.zip")
                .build(),
        )
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_invalid_parameter_value_exception(), "{e:?}");
}
