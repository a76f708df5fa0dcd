//! Conformance: a richly populated S3 state (every resource type, every settable field, two
//! accounts × two regions, populated through the service's own handler with real HTTP
//! requests) survives capture → bundle → fresh runtime → apply for every merge strategy; and
//! each merge strategy combines two overlapping states as DESIGN.md says.

use std::io::Cursor;

use cryopod::{AwsRequest, Body, MergeStrategy, Runtime, Scope, ScopeFilter};
use cryopod_s3::SERVICE;
use cryopod_s3::state::S3State;
use http::{Method, StatusCode};
use http_body_util::BodyExt;

fn fresh_runtime() -> Runtime {
    Runtime::builder()
        .enable(Some(vec![SERVICE.into()]))
        .build()
        .expect("runtime with the s3 plugin")
}

/// Sends one request to the S3 service as the gateway would, returning status, headers and
/// body.
async fn call(
    rt: &Runtime,
    scope: &Scope,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (StatusCode, http::HeaderMap, Vec<u8>) {
    let svc = rt.service(SERVICE).expect("s3 runs");
    let mut b = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "127.0.0.1:4566");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let request = b.body(Body::from(body)).expect("request");
    let resp = svc
        .handle(AwsRequest {
            scope: scope.clone(),
            access_key_id: Some(scope.account.clone()),
            endpoint: "http://127.0.0.1:4566".into(),
            request,
        })
        .await;
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    (status, headers, bytes)
}

async fn ok(
    rt: &Runtime,
    scope: &Scope,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (http::HeaderMap, Vec<u8>) {
    let (st, h, b) = call(rt, scope, method.clone(), uri, headers, body).await;
    assert!(
        st.is_success(),
        "{method} {uri} failed: {st} {}",
        String::from_utf8_lossy(&b)
    );
    (h, b)
}

fn create_bucket_body(region: &str) -> Vec<u8> {
    if region == "us-east-1" {
        Vec::new()
    } else {
        format!("<CreateBucketConfiguration><LocationConstraint>{region}</LocationConstraint></CreateBucketConfiguration>").into_bytes()
    }
}

/// Populates every resource type and field in `scope`, bucket names prefixed with `tag`.
async fn populate(rt: &Runtime, scope: &Scope, tag: &str) {
    let b = format!("{tag}-{}-{}", &scope.account[..4], scope.region);
    ok(
        rt,
        scope,
        Method::PUT,
        &format!("/{b}"),
        &[],
        create_bucket_body(&scope.region),
    )
    .await;
    // Bucket configuration: tags, policy, CORS, versioning.
    ok(
        rt,
        scope,
        Method::PUT,
        &format!("/{b}?tagging"),
        &[],
        b"<Tagging><TagSet><Tag><Key>team</Key><Value>data</Value></Tag><Tag><Key>env</Key><Value>test</Value></Tag></TagSet></Tagging>".to_vec(),
    )
    .await;
    let policy = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::{b}/*"}}]}}"#
    );
    ok(
        rt,
        scope,
        Method::PUT,
        &format!("/{b}?policy"),
        &[],
        policy.into_bytes(),
    )
    .await;
    ok(
        rt,
        scope,
        Method::PUT,
        &format!("/{b}?cors"),
        &[],
        b"<CORSConfiguration><CORSRule><ID>r1</ID><AllowedHeader>*</AllowedHeader><AllowedMethod>GET</AllowedMethod><AllowedMethod>PUT</AllowedMethod><AllowedOrigin>https://example.com</AllowedOrigin><ExposeHeader>ETag</ExposeHeader><MaxAgeSeconds>300</MaxAgeSeconds></CORSRule></CORSConfiguration>".to_vec(),
    )
    .await;
    // Objects with every metadata field.
    ok(
        rt,
        scope,
        Method::PUT,
        &format!("/{b}/docs/readme.txt"),
        &[
            ("content-type", "text/plain"),
            ("content-encoding", "identity"),
            ("content-disposition", "inline"),
            ("content-language", "en"),
            ("cache-control", "max-age=60"),
            ("expires", "Wed, 21 Oct 2037 07:28:00 GMT"),
            ("x-amz-website-redirect-location", "/other"),
            ("x-amz-storage-class", "STANDARD_IA"),
            ("x-amz-meta-owner", "alice"),
            ("x-amz-tagging", "a=1&b=2"),
        ],
        format!("hello from {b}").into_bytes(),
    )
    .await;
    ok(
        rt,
        scope,
        Method::PUT,
        &format!("/{b}/empty"),
        &[],
        Vec::new(),
    )
    .await;
    ok(
        rt,
        scope,
        Method::PUT,
        &format!("/{b}/shared"),
        &[],
        b"same bytes everywhere".to_vec(),
    )
    .await;
    ok(
        rt,
        scope,
        Method::PUT,
        &format!("/{b}/copy"),
        &[("x-amz-copy-source", &format!("/{b}/docs/readme.txt"))],
        Vec::new(),
    )
    .await;
    // A versioned bucket with versions and a delete marker.
    let vb = format!("{b}-v");
    ok(
        rt,
        scope,
        Method::PUT,
        &format!("/{vb}"),
        &[],
        create_bucket_body(&scope.region),
    )
    .await;
    ok(
        rt,
        scope,
        Method::PUT,
        &format!("/{vb}?versioning"),
        &[],
        b"<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>".to_vec(),
    )
    .await;
    ok(
        rt,
        scope,
        Method::PUT,
        &format!("/{vb}/k"),
        &[],
        b"v1".to_vec(),
    )
    .await;
    ok(
        rt,
        scope,
        Method::PUT,
        &format!("/{vb}/k"),
        &[],
        b"v2".to_vec(),
    )
    .await;
    ok(
        rt,
        scope,
        Method::DELETE,
        &format!("/{vb}/k"),
        &[],
        Vec::new(),
    )
    .await;
    ok(
        rt,
        scope,
        Method::PUT,
        &format!("/{vb}/kept"),
        &[],
        b"kept".to_vec(),
    )
    .await;
    // A completed multipart object and an unfinished upload with parts.
    let (_, body) = ok(
        rt,
        scope,
        Method::POST,
        &format!("/{b}/big?uploads"),
        &[
            ("content-type", "application/zip"),
            ("x-amz-meta-kind", "mp"),
        ],
        Vec::new(),
    )
    .await;
    let id = upload_id(&body);
    let part1 = vec![7u8; 5 * 1024 * 1024];
    ok(
        rt,
        scope,
        Method::PUT,
        &format!("/{b}/big?partNumber=1&uploadId={id}"),
        &[],
        part1,
    )
    .await;
    ok(
        rt,
        scope,
        Method::PUT,
        &format!("/{b}/big?partNumber=2&uploadId={id}"),
        &[],
        b"tail".to_vec(),
    )
    .await;
    let complete = "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber></Part><Part><PartNumber>2</PartNumber></Part></CompleteMultipartUpload>";
    ok(
        rt,
        scope,
        Method::POST,
        &format!("/{b}/big?uploadId={id}"),
        &[],
        complete.as_bytes().to_vec(),
    )
    .await;
    let (_, body) = ok(
        rt,
        scope,
        Method::POST,
        &format!("/{b}/unfinished?uploads"),
        &[("x-amz-tagging", "t=1")],
        Vec::new(),
    )
    .await;
    let id = upload_id(&body);
    ok(
        rt,
        scope,
        Method::PUT,
        &format!("/{b}/unfinished?partNumber=3&uploadId={id}"),
        &[],
        b"part three".to_vec(),
    )
    .await;
}

fn upload_id(xml: &[u8]) -> String {
    let s = String::from_utf8_lossy(xml);
    let start = s.find("<UploadId>").expect("UploadId") + "<UploadId>".len();
    let end = s[start..].find("</UploadId>").expect("end") + start;
    s[start..end].to_string()
}

fn scopes() -> Vec<Scope> {
    let mut out = Vec::new();
    for account in ["111111111111", "222222222222"] {
        for region in ["us-east-1", "eu-west-1"] {
            out.push(Scope::new(account, region));
        }
    }
    out
}

#[tokio::test]
async fn every_field_and_resource_survives_export_and_import_with_every_strategy() {
    let rt = fresh_runtime();
    for s in scopes() {
        populate(&rt, &s, "c").await;
    }
    let counts = rt.summary(None).await.expect("summary");
    assert_eq!(counts["s3"].len(), 4, "four scopes hold buckets");
    cryopod::testing::check_provider(SERVICE, &rt, fresh_runtime)
        .await
        .expect("conformance");
}

async fn state_of(rt: &Runtime) -> S3State {
    let snap = rt
        .capture(Some(&[SERVICE.to_string()]), &ScopeFilter::all())
        .await
        .expect("capture");
    let st = snap.services.get(SERVICE).expect("s3 state").clone();
    st.downcast::<S3State>(SERVICE).expect("s3 state type")
}

/// (scope, bucket, keys) triples of a state, sorted.
fn layout(st: &S3State) -> Vec<(String, String, Vec<String>)> {
    let mut out = Vec::new();
    for (scope, res) in st.scopes.iter() {
        for (name, b) in res.buckets.iter() {
            out.push((
                scope.to_string(),
                name.clone(),
                b.objects.keys().cloned().collect(),
            ));
        }
    }
    out
}

/// Running state: A/us-east-1 has `shared` (keys `running`, `k`) and `only-running`;
/// A/eu-west-1 has `eu-running`. Bundle: A/us-east-1 has `shared` (keys `bundle`, `k` with
/// another body) and `only-bundle`; B/us-east-1 has `b-bundle`. Returns (running, bundle).
async fn two_sides() -> (Runtime, Runtime) {
    let a_us = Scope::new("111111111111", "us-east-1");
    let a_eu = Scope::new("111111111111", "eu-west-1");
    let b_us = Scope::new("222222222222", "us-east-1");
    async fn fill(rt: &Runtime, objects: &[(&Scope, &str, &str, &str)]) {
        for (scope, bucket, key, body) in objects {
            let (st, _, _) = call(
                rt,
                scope,
                Method::HEAD,
                &format!("/{bucket}"),
                &[],
                Vec::new(),
            )
            .await;
            if st == StatusCode::NOT_FOUND {
                ok(
                    rt,
                    scope,
                    Method::PUT,
                    &format!("/{bucket}"),
                    &[],
                    create_bucket_body(&scope.region),
                )
                .await;
            }
            ok(
                rt,
                scope,
                Method::PUT,
                &format!("/{bucket}/{key}"),
                &[],
                body.as_bytes().to_vec(),
            )
            .await;
        }
    }
    let bundle_rt = fresh_runtime();
    fill(
        &bundle_rt,
        &[
            (&a_us, "shared", "bundle", "bundle"),
            (&a_us, "shared", "k", "k from the bundle"),
            (&a_us, "only-bundle", "x", "x"),
            (&b_us, "b-bundle", "y", "y"),
        ],
    )
    .await;
    let running = fresh_runtime();
    fill(
        &running,
        &[
            (&a_us, "shared", "running", "running"),
            (&a_us, "shared", "k", "k from the running state"),
            (&a_us, "only-running", "r", "r"),
            (&a_eu, "eu-running", "e", "e"),
        ],
    )
    .await;
    (running, bundle_rt)
}

async fn overlapping(merge: MergeStrategy) -> (Runtime, Vec<(String, String, Vec<String>)>) {
    let (running, bundle_rt) = two_sides().await;
    let (bundle, _) = bundle_rt
        .export(None, &ScopeFilter::all(), Vec::new(), Default::default())
        .await
        .expect("export");
    running
        .import(Cursor::new(bundle), None, merge)
        .await
        .expect("import");
    let st = state_of(&running).await;
    (running, layout(&st))
}

fn row(scope: &str, bucket: &str, keys: &[&str]) -> (String, String, Vec<String>) {
    (
        scope.to_string(),
        bucket.to_string(),
        keys.iter().map(|k| k.to_string()).collect(),
    )
}

#[tokio::test]
async fn overwrite_keeps_only_the_bundle() {
    let (rt, got) = overlapping(MergeStrategy::Overwrite).await;
    assert_eq!(
        got,
        vec![
            row("111111111111/us-east-1", "only-bundle", &["x"]),
            row("111111111111/us-east-1", "shared", &["bundle", "k"]),
            row("222222222222/us-east-1", "b-bundle", &["y"]),
        ]
    );
    // The name index follows the restored state: a dropped bucket is gone, a loaded one served.
    let a_us = Scope::new("111111111111", "us-east-1");
    let (st, _, _) = call(&rt, &a_us, Method::HEAD, "/only-running", &[], Vec::new()).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _, _) = call(&rt, &a_us, Method::GET, "/b-bundle/y", &[], Vec::new()).await;
    assert_eq!(
        st,
        StatusCode::OK,
        "buckets are served by name from any account and region"
    );
}

#[tokio::test]
async fn account_region_merge_replaces_only_the_scopes_in_the_bundle() {
    let (rt, got) = overlapping(MergeStrategy::AccountRegionMerge).await;
    assert_eq!(
        got,
        vec![
            row("111111111111/eu-west-1", "eu-running", &["e"]),
            row("111111111111/us-east-1", "only-bundle", &["x"]),
            row("111111111111/us-east-1", "shared", &["bundle", "k"]),
            row("222222222222/us-east-1", "b-bundle", &["y"]),
        ]
    );
    // Another account cannot take a name the import brought in.
    let other = Scope::new("333333333333", "us-east-1");
    let (st, _, body) = call(&rt, &other, Method::PUT, "/b-bundle", &[], Vec::new()).await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert!(String::from_utf8_lossy(&body).contains("BucketAlreadyExists"));
}

#[tokio::test]
async fn service_merge_keeps_both_sides_objects_and_the_bundle_wins_a_key_clash() {
    let (rt, got) = overlapping(MergeStrategy::ServiceMerge).await;
    assert_eq!(
        got,
        vec![
            row("111111111111/eu-west-1", "eu-running", &["e"]),
            row("111111111111/us-east-1", "only-bundle", &["x"]),
            row("111111111111/us-east-1", "only-running", &["r"]),
            row(
                "111111111111/us-east-1",
                "shared",
                &["bundle", "k", "running"]
            ),
            row("222222222222/us-east-1", "b-bundle", &["y"]),
        ]
    );
    let a_us = Scope::new("111111111111", "us-east-1");
    let (_, body) = ok(&rt, &a_us, Method::GET, "/shared/k", &[], Vec::new()).await;
    assert_eq!(
        body, b"k from the bundle",
        "on a key clash the bundle's object wins"
    );
    let (_, body) = ok(&rt, &a_us, Method::GET, "/shared/running", &[], Vec::new()).await;
    assert_eq!(body, b"running", "the running state's own object stays");
}

#[tokio::test]
async fn every_merge_strategy_holds_unit_by_unit() {
    let (running, bundle) = two_sides().await;
    let a = state_of(&running).await;
    let b = state_of(&bundle).await;
    cryopod::testing::check_merges(&a, &b);
}

// ---------------------------------------------------------------------------------------
// The golden bundle of state version 1: written once by an earlier build and committed, so
// every later build proves it still loads S3 bundles and data of that version. A new state
// version adds its own golden file beside it; this one is never regenerated.

fn golden_v1() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/s3-v1.cryopod")
}

async fn golden_source() -> Runtime {
    let rt = fresh_runtime();
    for s in scopes() {
        populate(&rt, &s, "c").await;
    }
    rt
}

#[tokio::test]
#[ignore = "writes tests/fixtures/s3-v1.cryopod; run only to create a version's golden file"]
async fn regenerate_s3_v1_golden_bundle() {
    let rt = golden_source().await;
    cryopod::testing::write_golden(&rt, SERVICE, &golden_v1())
        .await
        .expect("golden bundle written");
}

#[tokio::test]
async fn golden_v1_bundle_loads_to_the_expected_state() {
    use cryopod::ServiceState;

    let rt = fresh_runtime();
    cryopod::testing::load_golden(&rt, SERVICE, 1, &golden_v1())
        .await
        .expect("the v1 golden bundle loads");
    let loaded = state_of(&rt).await;
    let today = state_of(&golden_source().await).await;
    // The same buckets and keys in the same scopes, and the same bodies (blob digests are
    // the sha256 of the bytes, so equal sets mean equal contents).
    assert_eq!(layout(&loaded), layout(&today));
    assert!(
        !loaded.blobs().is_empty(),
        "the bundle carries object bodies"
    );
    assert_eq!(loaded.blobs(), today.blobs());
    for d in loaded.blobs() {
        assert!(rt.blobs().read(&d).is_ok(), "blob {d} was imported");
    }
    assert_eq!(layout(&loaded).len(), layout(&today).len());
    assert_eq!(loaded.scopes().len(), 4, "two accounts x two regions");
}
