//! The official AWS SDK for Rust against the emulator over real HTTP: the Lambda control plane
//! behaves as AWS does, and its whole state (including a 50 MiB layer) moves into a fresh
//! emulator with every answer and every code byte unchanged.

mod common;

use std::io::Cursor;

use aws_credential_types::Credentials;
use aws_sdk_lambda::Client;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{
    AliasRoutingConfiguration, Environment, FunctionCode, LayerVersionContentInput, Runtime,
};
use aws_types::region::Region;
use common::{incompressible, small_zip, stored_zip};
use cryopod::server::TestServer;
use cryopod::{MergeStrategy, ScopeFilter};

const ACCOUNT: &str = "111111111111";
const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];

fn client(server: &TestServer, region: &str) -> Client {
    let conf = aws_sdk_lambda::Config::builder()
        .behavior_version_latest()
        .region(Region::new(region.to_string()))
        .endpoint_url(&server.endpoint)
        .credentials_provider(Credentials::new(ACCOUNT, "secret", None, None, "t"))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    Client::from_conf(conf)
}

fn role() -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/exec")
}

/// A plain HTTP GET (the code location is an unsigned URL, like AWS's presigned ones).
async fn http_get(url: &str) -> (u16, Vec<u8>) {
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
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let status: u16 = head[9..12].parse().expect("status");
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "download should carry a content-length"
    );
    (status, buf[end..].to_vec())
}

/// Debug text of an SDK answer without what legitimately differs between two emulators:
/// the request id and the endpoint inside download URLs.
fn scrub(v: &impl std::fmt::Debug, endpoint: &str) -> String {
    let mut s = format!("{v:?}").replace(endpoint, "ENDPOINT");
    while let Some(i) = s.find("_request_id: Some(\"") {
        let j = s[i..].find("\")").map_or(s.len(), |j| i + j + 2);
        s.replace_range(i..j, "_request_id: _");
    }
    s
}

/// `CodeSha256` as AWS computes it: base64 of the raw sha256 of the zip.
fn sha256_base64(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(cryopod::Digest::of(b).0)
}

/// Everything a client can read back, as scrubbed text, in a fixed order.
async fn read_everything(server: &TestServer) -> Vec<String> {
    let ep = &server.endpoint;
    let mut out = Vec::new();
    for region in REGIONS {
        let c = client(server, region);
        let fns = c
            .list_functions()
            .function_version(aws_sdk_lambda::types::FunctionVersion::All)
            .send()
            .await
            .unwrap();
        out.push(scrub(&fns, ep));
        for f in fns
            .functions()
            .iter()
            .filter(|f| f.version() == Some("$LATEST"))
        {
            let name = f.function_name().unwrap();
            out.push(scrub(
                &c.get_function().function_name(name).send().await.unwrap(),
                ep,
            ));
            let versions = c
                .list_versions_by_function()
                .function_name(name)
                .send()
                .await
                .unwrap();
            out.push(scrub(&versions, ep));
            for v in versions.versions() {
                let q = v.version().unwrap();
                out.push(scrub(
                    &c.get_function_configuration()
                        .function_name(name)
                        .qualifier(q)
                        .send()
                        .await
                        .unwrap(),
                    ep,
                ));
            }
            let aliases = c.list_aliases().function_name(name).send().await.unwrap();
            out.push(scrub(&aliases, ep));
            for a in aliases.aliases() {
                let an = a.name().unwrap();
                out.push(scrub(
                    &c.get_alias()
                        .function_name(name)
                        .name(an)
                        .send()
                        .await
                        .unwrap(),
                    ep,
                ));
                out.push(scrub(
                    &c.get_policy()
                        .function_name(name)
                        .qualifier(an)
                        .send()
                        .await,
                    ep,
                ));
            }
            out.push(scrub(&c.get_policy().function_name(name).send().await, ep));
            out.push(scrub(
                &c.list_tags()
                    .resource(f.function_arn().unwrap())
                    .send()
                    .await
                    .unwrap(),
                ep,
            ));
        }
        let layers = c.list_layers().send().await.unwrap();
        out.push(scrub(&layers, ep));
        for l in layers.layers() {
            let ln = l.layer_name().unwrap();
            let lv = c.list_layer_versions().layer_name(ln).send().await.unwrap();
            out.push(scrub(&lv, ep));
            for v in lv.layer_versions() {
                out.push(scrub(
                    &c.get_layer_version()
                        .layer_name(ln)
                        .version_number(v.version())
                        .send()
                        .await
                        .unwrap(),
                    ep,
                ));
            }
        }
        let esms = c.list_event_source_mappings().send().await.unwrap();
        out.push(scrub(&esms, ep));
        for m in esms.event_source_mappings() {
            out.push(scrub(
                &c.get_event_source_mapping()
                    .uuid(m.uuid().unwrap())
                    .send()
                    .await
                    .unwrap(),
                ep,
            ));
        }
    }
    out
}

#[tokio::test]
async fn functions_versions_aliases_permissions_and_a_50_mib_layer_round_trip_into_a_fresh_emulator()
 {
    let a = TestServer::start(&[cryopod_lambda::SERVICE]).await;
    // The big layer: incompressible content in a stored zip of exactly 50 MiB, the largest
    // package AWS accepts inline.
    let big_content = incompressible(50 * 1024 * 1024 - 200, 7);
    let big_zip = stored_zip(&[("blob.bin", &big_content)]);
    assert!(big_zip.len() <= 50 * 1024 * 1024);
    let mut packages = Vec::new();
    for (i, region) in REGIONS.iter().enumerate() {
        let c = client(&a, region);
        let layer_zip = if i == 0 {
            big_zip.clone()
        } else {
            small_zip("small layer")
        };
        let layer = c
            .publish_layer_version()
            .layer_name("deps")
            .description("dependencies")
            .content(
                LayerVersionContentInput::builder()
                    .zip_file(Blob::new(layer_zip.clone()))
                    .build(),
            )
            .compatible_runtimes(Runtime::Python312)
            .license_info("MIT")
            .send()
            .await
            .unwrap();
        assert_eq!(layer.content().unwrap().code_size(), layer_zip.len() as i64);
        assert_eq!(
            layer.content().unwrap().code_sha256(),
            Some(sha256_base64(&layer_zip).as_str())
        );
        let code = small_zip(&format!("def handler(e, c): return '{region}'"));
        let created = c
            .create_function()
            .function_name("api")
            .runtime(Runtime::Python312)
            .role(role())
            .handler("index.handler")
            .code(
                FunctionCode::builder()
                    .zip_file(Blob::new(code.clone()))
                    .build(),
            )
            .environment(
                Environment::builder()
                    .variables("STAGE", "prod")
                    .variables("REGION", *region)
                    .build(),
            )
            .tags("team", "platform")
            .layers(layer.layer_version_arn().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(created.code_sha256(), Some(sha256_base64(&code).as_str()));
        assert_eq!(created.code_size(), code.len() as i64);
        for v in 1..=3 {
            c.update_function_configuration()
                .function_name("api")
                .memory_size(128 * (v + 1))
                .description(format!("release {v}"))
                .send()
                .await
                .unwrap();
            let published = c
                .publish_version()
                .function_name("api")
                .send()
                .await
                .unwrap();
            assert_eq!(published.version(), Some(v.to_string().as_str()));
        }
        c.create_alias()
            .function_name("api")
            .name("live")
            .function_version("2")
            .routing_config(
                AliasRoutingConfiguration::builder()
                    .additional_version_weights("3", 0.1)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        c.add_permission()
            .function_name("api")
            .statement_id("apigw")
            .action("lambda:InvokeFunction")
            .principal("apigateway.amazonaws.com")
            .source_arn(format!("arn:aws:execute-api:{region}:{ACCOUNT}:abc/*"))
            .send()
            .await
            .unwrap();
        c.add_permission()
            .function_name("api")
            .qualifier("live")
            .statement_id("alias-only")
            .action("lambda:InvokeFunction")
            .principal("events.amazonaws.com")
            .send()
            .await
            .unwrap();
        c.create_event_source_mapping()
            .function_name("api")
            .event_source_arn(format!("arn:aws:sqs:{region}:{ACCOUNT}:jobs"))
            .batch_size(7)
            .send()
            .await
            .unwrap();
        packages.push((region, code, layer_zip));
    }
    let before = read_everything(&a).await;

    let (bundle, _) = a
        .runtime
        .export(None, &ScopeFilter::all(), Vec::new(), Default::default())
        .await
        .unwrap();
    let b = TestServer::start(&[cryopod_lambda::SERVICE]).await;
    b.runtime
        .import(Cursor::new(bundle), None, MergeStrategy::AccountRegionMerge)
        .await
        .unwrap();
    let after = read_everything(&b).await;
    assert_eq!(before.len(), after.len());
    for (x, y) in before.iter().zip(&after) {
        assert_eq!(x, y);
    }

    // The code downloaded from B is byte-identical and has the same CodeSha256.
    for (region, code, layer_zip) in packages {
        let c = client(&b, region);
        let f = c.get_function().function_name("api").send().await.unwrap();
        let (status, bytes) = http_get(f.code().unwrap().location().unwrap()).await;
        assert_eq!(status, 200);
        assert!(
            bytes == code,
            "function code differs after import in {region}"
        );
        assert_eq!(
            f.configuration().unwrap().code_sha256(),
            Some(sha256_base64(&bytes).as_str())
        );
        let l = c
            .get_layer_version()
            .layer_name("deps")
            .version_number(1)
            .send()
            .await
            .unwrap();
        let (status, bytes) = http_get(l.content().unwrap().location().unwrap()).await;
        assert_eq!(status, 200);
        assert_eq!(bytes.len(), layer_zip.len());
        assert!(bytes == layer_zip, "layer differs after import in {region}");
        assert_eq!(
            l.content().unwrap().code_sha256(),
            Some(sha256_base64(&bytes).as_str())
        );
    }
}

#[tokio::test]
async fn aws_refusals_come_back_as_the_same_exceptions() {
    let s = TestServer::start(&[cryopod_lambda::SERVICE]).await;
    let c = client(&s, "us-east-1");
    let code = || {
        FunctionCode::builder()
            .zip_file(Blob::new(small_zip("x")))
            .build()
    };
    let base = || {
        c.create_function()
            .function_name("f")
            .runtime(Runtime::Python312)
            .role(role())
            .handler("index.handler")
            .code(code())
    };
    let e = base()
        .memory_size(20000)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_invalid_parameter_value_exception(), "{e:?}");
    let e = base()
        .timeout(901)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_invalid_parameter_value_exception(), "{e:?}");
    let e = base()
        .runtime(Runtime::Python27)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_invalid_parameter_value_exception(), "{e:?}");
    let e = base()
        .function_name("bad name!")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(
        aws_sdk_lambda::error::ProvideErrorMetadata::code(&e),
        Some("ValidationException")
    );
    let e = base()
        .code(
            FunctionCode::builder()
                .zip_file(Blob::new(b"not a zip".to_vec()))
                .build(),
        )
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_invalid_parameter_value_exception(), "{e:?}");
    base().send().await.unwrap();
    let e = base().send().await.unwrap_err().into_service_error();
    assert!(e.is_resource_conflict_exception(), "{e:?}");
    let e = c
        .get_function()
        .function_name("missing")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_resource_not_found_exception(), "{e:?}");
    let e = c
        .get_policy()
        .function_name("f")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_resource_not_found_exception(), "{e:?}");
    let e = c
        .create_alias()
        .function_name("f")
        .name("live")
        .function_version("9")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_resource_not_found_exception(), "{e:?}");
    let e = c
        .update_function_configuration()
        .function_name("f")
        .revision_id("stale")
        .description("x")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_precondition_failed_exception(), "{e:?}");
    // Invoking a function that does not exist is AWS's ResourceNotFoundException (running
    // code is tested in tests/invoke.rs).
    let e = c
        .invoke()
        .function_name("nope")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_resource_not_found_exception(), "{e:?}");
}

#[tokio::test]
async fn a_zip_over_50_mib_is_refused_but_50_mib_is_accepted() {
    let s = TestServer::start(&[cryopod_lambda::SERVICE]).await;
    let c = client(&s, "us-east-1");
    let too_big = vec![0u8; 50 * 1024 * 1024 + 1];
    let err = c
        .create_function()
        .function_name("big")
        .runtime(Runtime::Python312)
        .role(role())
        .handler("h")
        .code(FunctionCode::builder().zip_file(Blob::new(too_big)).build())
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(413));
    let ok = stored_zip(&[("a.bin", &vec![1u8; 50 * 1024 * 1024 - 200])]);
    let f = c
        .create_function()
        .function_name("big")
        .runtime(Runtime::Python312)
        .role(role())
        .handler("h")
        .code(
            FunctionCode::builder()
                .zip_file(Blob::new(ok.clone()))
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(f.code_size(), ok.len() as i64);
}

#[tokio::test]
async fn list_functions_pages_with_marker_and_max_items() {
    let s = TestServer::start(&[cryopod_lambda::SERVICE]).await;
    let c = client(&s, "us-east-1");
    for i in 0..7 {
        c.create_function()
            .function_name(format!("fn-{i}"))
            .runtime(Runtime::Nodejs20x)
            .role(role())
            .handler("index.handler")
            .code(
                FunctionCode::builder()
                    .zip_file(Blob::new(small_zip("same")))
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    let mut names = Vec::new();
    let mut marker = None;
    let mut pages = 0;
    loop {
        let page = c
            .list_functions()
            .max_items(3)
            .set_marker(marker)
            .send()
            .await
            .unwrap();
        pages += 1;
        names.extend(
            page.functions()
                .iter()
                .map(|f| f.function_name().unwrap().to_string()),
        );
        marker = page.next_marker().map(str::to_string);
        if marker.is_none() {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, (0..7).map(|i| format!("fn-{i}")).collect::<Vec<_>>());
}

#[tokio::test]
async fn service_merge_through_the_sdk_keeps_running_functions_and_takes_the_bundles_on_a_clash() {
    let running = TestServer::start(&[cryopod_lambda::SERVICE]).await;
    let other = TestServer::start(&[cryopod_lambda::SERVICE]).await;
    for (server, names, desc) in [
        (&running, ["keep", "clash"], "running"),
        (&other, ["new", "clash"], "bundle"),
    ] {
        let c = client(server, "us-east-1");
        for n in names {
            c.create_function()
                .function_name(n)
                .runtime(Runtime::Python312)
                .role(role())
                .handler("h")
                .description(desc)
                .code(
                    FunctionCode::builder()
                        .zip_file(Blob::new(small_zip(desc)))
                        .build(),
                )
                .send()
                .await
                .unwrap();
        }
    }
    let (bundle, _) = other
        .runtime
        .export(None, &ScopeFilter::all(), Vec::new(), Default::default())
        .await
        .unwrap();
    running
        .runtime
        .import(Cursor::new(bundle), None, MergeStrategy::ServiceMerge)
        .await
        .unwrap();
    let c = client(&running, "us-east-1");
    let fns = c.list_functions().send().await.unwrap();
    let got: Vec<(String, String)> = fns
        .functions()
        .iter()
        .map(|f| {
            (
                f.function_name().unwrap().into(),
                f.description().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("clash".to_string(), "bundle".to_string()),
            ("keep".into(), "running".into()),
            ("new".into(), "bundle".into()),
        ]
    );
}
