//! The official AWS SDK for Rust against the in-process emulator over real HTTP.
//!
//! Volumes are scaled for debug builds: the 1,000 objects are ~1,000 small objects
//! plus a few large ones (a 20 MiB multipart object and a 6 MiB single PUT), so the whole
//! file runs in seconds.

use std::collections::BTreeMap;
use std::io::Cursor;

use aws_credential_types::Credentials;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CompletedMultipartUpload, CompletedPart,
    CreateBucketConfiguration, Tag, Tagging, VersioningConfiguration,
};
use aws_types::region::Region;
use cryopod::server::TestServer;
use cryopod::{MergeStrategy, ScopeFilter};
use cryopod_s3::SERVICE;
use futures::StreamExt;

const MIB: usize = 1024 * 1024;

/// An emulator whose blob store lives in memory (`/dev/shm` where available): the blob
/// store syncs every blob to disk, ~7 ms each on this machine's disk, which would make
/// ~1,000 small objects dominate the test time without testing anything more.
struct Emu {
    server: TestServer,
    _blobs: tempfile::TempDir,
}

impl std::ops::Deref for Emu {
    type Target = TestServer;
    fn deref(&self) -> &TestServer {
        &self.server
    }
}

async fn start() -> Emu {
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = tempfile::Builder::new()
        .prefix("cryopod-s3-test-")
        .tempdir_in(base)
        .expect("temp dir");
    let blobs = cryopod::BlobStore::open(dir.path()).expect("blob store");
    let rt = cryopod::Runtime::builder()
        .enable(Some(vec![SERVICE.into()]))
        .blob_store(blobs)
        .build()
        .expect("runtime");
    Emu {
        server: TestServer::start_with_runtime(rt).await,
        _blobs: dir,
    }
}
const A: &str = "111111111111";
const B: &str = "222222222222";
const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];

fn client(server: &TestServer, account: &str, region: &str) -> Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .region(Region::new(region.to_string()))
        .endpoint_url(&server.endpoint)
        .credentials_provider(Credentials::new(account, "secret", None, None, "t"))
        .force_path_style(true)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    Client::from_conf(conf)
}

async fn create_bucket(c: &Client, name: &str, region: &str) {
    let mut req = c.create_bucket().bucket(name);
    if region != "us-east-1" {
        req = req.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(region))
                .build(),
        );
    }
    req.send().await.expect("create bucket");
}

/// Deterministic pseudo-random bytes (so identical sizes do not mean identical bodies).
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn err_code<E: ProvideErrorMetadata>(e: &aws_sdk_s3::error::SdkError<E>) -> String {
    e.as_service_error()
        .and_then(|s| s.code())
        .unwrap_or("<no code>")
        .to_string()
}

fn status<E>(e: &aws_sdk_s3::error::SdkError<E>) -> u16 {
    e.raw_response().map(|r| r.status().as_u16()).unwrap_or(0)
}

struct Populated {
    /// (account, region, bucket, upload id, key) of the unfinished upload.
    unfinished: (String, String, String, String, String),
    /// The first part of the unfinished upload.
    part1: Vec<u8>,
}

/// Fills a server: buckets in 2 accounts × 2 regions with ~1,000 objects, metadata, tags,
/// large objects, a versioned bucket with a delete marker and an unfinished upload.
async fn populate(server: &TestServer) -> Populated {
    let mut seed = 0u64;
    for account in [A, B] {
        for region in REGIONS {
            let c = client(server, account, region);
            let bucket = format!("rt-{}-{region}", &account[..3]);
            create_bucket(&c, &bucket, region).await;
            c.put_bucket_tagging()
                .bucket(&bucket)
                .tagging(
                    Tagging::builder()
                        .tag_set(Tag::builder().key("owner").value(account).build().unwrap())
                        .build()
                        .unwrap(),
                )
                .send()
                .await
                .unwrap();
            // ~250 small objects per scope, sizes 0..=2,000 bytes, every 10th with metadata
            // and tags; a few share one body (stored once).
            let puts = (0..250).map(|i| {
                seed += 1;
                let c = c.clone();
                let bucket = bucket.clone();
                let body = if i % 50 == 7 {
                    b"shared body".to_vec()
                } else {
                    bytes(seed, (i * 8) % 2001)
                };
                async move {
                    let mut req = c
                        .put_object()
                        .bucket(&bucket)
                        .key(format!("dir{}/obj-{i:04}", i % 5))
                        .body(ByteStream::from(body));
                    if i % 10 == 0 {
                        req = req
                            .content_type("text/plain")
                            .metadata("index", i.to_string())
                            .tagging(format!("n={i}&kind=small"));
                    }
                    req.send().await.expect("put small object");
                }
            });
            futures::stream::iter(puts)
                .buffer_unordered(16)
                .collect::<Vec<()>>()
                .await;
        }
    }
    // Large objects in account A, us-east-1: a 20 MiB multipart object and a 6 MiB PUT.
    let c = client(server, A, "us-east-1");
    let big_bucket = "rt-big";
    create_bucket(&c, big_bucket, "us-east-1").await;
    let up = c
        .create_multipart_upload()
        .bucket(big_bucket)
        .key("big/20mib")
        .content_type("application/octet-stream")
        .send()
        .await
        .unwrap();
    let id = up.upload_id().unwrap().to_string();
    let mut parts = Vec::new();
    for n in 1..=4 {
        let r = c
            .upload_part()
            .bucket(big_bucket)
            .key("big/20mib")
            .upload_id(&id)
            .part_number(n)
            .body(ByteStream::from(bytes(1000 + n as u64, 5 * MIB)))
            .send()
            .await
            .unwrap();
        parts.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(r.e_tag().unwrap())
                .build(),
        );
    }
    c.complete_multipart_upload()
        .bucket(big_bucket)
        .key("big/20mib")
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .unwrap();
    c.put_object()
        .bucket(big_bucket)
        .key("big/6mib")
        .body(ByteStream::from(bytes(77, 6 * MIB)))
        .send()
        .await
        .unwrap();
    // A versioned bucket with versions and a delete marker (account B, eu-west-1).
    let cv = client(server, B, "eu-west-1");
    create_bucket(&cv, "rt-versioned", "eu-west-1").await;
    cv.put_bucket_versioning()
        .bucket("rt-versioned")
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    for v in ["one", "two", "three"] {
        cv.put_object()
            .bucket("rt-versioned")
            .key("doc")
            .body(ByteStream::from(v.as_bytes().to_vec()))
            .send()
            .await
            .unwrap();
    }
    cv.delete_object()
        .bucket("rt-versioned")
        .key("doc")
        .send()
        .await
        .unwrap();
    cv.put_object()
        .bucket("rt-versioned")
        .key("alive")
        .body(ByteStream::from_static(b"yes"))
        .send()
        .await
        .unwrap();
    // An unfinished multipart upload (account B, us-east-1).
    let cu = client(server, B, "us-east-1");
    create_bucket(&cu, "rt-unfinished", "us-east-1").await;
    let up = cu
        .create_multipart_upload()
        .bucket("rt-unfinished")
        .key("later")
        .send()
        .await
        .unwrap();
    let uid = up.upload_id().unwrap().to_string();
    let part1 = bytes(4242, 5 * MIB);
    cu.upload_part()
        .bucket("rt-unfinished")
        .key("later")
        .upload_id(&uid)
        .part_number(1)
        .body(ByteStream::from(part1.clone()))
        .send()
        .await
        .unwrap();
    Populated {
        unfinished: (
            B.into(),
            "us-east-1".into(),
            "rt-unfinished".into(),
            uid,
            "later".into(),
        ),
        part1,
    }
}

/// Everything a client can observe of a bucket: listing, versions, uploads, and per object
/// its bytes, ETag, metadata and tags.
async fn observe(c: &Client, bucket: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let loc = c.get_bucket_location().bucket(bucket).send().await.unwrap();
    out.insert(
        "location".into(),
        format!("{:?}", loc.location_constraint()),
    );
    let tags = c
        .get_bucket_tagging()
        .bucket(bucket)
        .send()
        .await
        .ok()
        .map(|t| format!("{:?}", t.tag_set()));
    out.insert("bucket-tags".into(), format!("{tags:?}"));
    let mut pages = c
        .list_objects_v2()
        .bucket(bucket)
        .max_keys(100)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for o in page.unwrap().contents() {
            let key = o.key().unwrap().to_string();
            let got = c
                .get_object()
                .bucket(bucket)
                .key(&key)
                .send()
                .await
                .unwrap();
            let meta = format!(
                "{:?}|{:?}|{:?}",
                got.content_type(),
                got.metadata(),
                got.e_tag()
            );
            let body = got.body.collect().await.unwrap().into_bytes();
            let digest = format!("{:x}", md5_of(&body));
            let tags = c
                .get_object_tagging()
                .bucket(bucket)
                .key(&key)
                .send()
                .await
                .unwrap();
            out.insert(
                format!("obj:{key}"),
                format!(
                    "{:?} {} {meta} md5={digest} tags={:?}",
                    o.e_tag(),
                    o.size().unwrap_or(-1),
                    tags.tag_set()
                ),
            );
        }
    }
    let versions = c
        .list_object_versions()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    out.insert(
        "versions".into(),
        format!(
            "{:?}",
            versions
                .versions()
                .iter()
                .map(|v| (v.key(), v.version_id(), v.e_tag(), v.is_latest()))
                .collect::<Vec<_>>()
        ),
    );
    out.insert(
        "delete-markers".into(),
        format!(
            "{:?}",
            versions
                .delete_markers()
                .iter()
                .map(|v| (v.key(), v.version_id(), v.is_latest()))
                .collect::<Vec<_>>()
        ),
    );
    let uploads = c
        .list_multipart_uploads()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    out.insert(
        "uploads".into(),
        format!(
            "{:?}",
            uploads
                .uploads()
                .iter()
                .map(|u| (u.key(), u.upload_id()))
                .collect::<Vec<_>>()
        ),
    );
    out
}

/// A tiny MD5 so the comparison does not keep every body in memory.
fn md5_of(b: &[u8]) -> u128 {
    use md5::Digest;
    u128::from_be_bytes(md5::Md5::digest(b).into())
}

async fn bucket_names(c: &Client) -> Vec<String> {
    c.list_buckets()
        .send()
        .await
        .unwrap()
        .buckets()
        .iter()
        .map(|b| b.name().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_state_imported_into_a_fresh_emulator_keeps_every_listing_byte_etag_and_version_and_the_unfinished_upload_completes()
 {
    let a = start().await;
    let t0 = std::time::Instant::now();
    let p = populate(&a).await;
    eprintln!("populated in {:?}", t0.elapsed());
    let (bundle, _) = a
        .runtime
        .export(None, &ScopeFilter::all(), Vec::new(), Default::default())
        .await
        .expect("export");
    let b = start().await;
    b.runtime
        .import(Cursor::new(bundle), None, MergeStrategy::Overwrite)
        .await
        .expect("import");

    eprintln!("exported and imported at {:?}", t0.elapsed());
    let mut buckets_seen = 0;
    for account in [A, B] {
        for region in REGIONS {
            let ca = client(&a, account, region);
            let cb = client(&b, account, region);
            let names = bucket_names(&ca).await;
            assert_eq!(
                names,
                bucket_names(&cb).await,
                "ListBuckets differs for {account}"
            );
            for name in names {
                // Buckets are global: observe each from its own region's client only once.
                if region != "us-east-1" {
                    continue;
                }
                buckets_seen += 1;
                let before = observe(&ca, &name).await;
                let after = observe(&cb, &name).await;
                assert_eq!(before, after, "bucket {name} differs after import");
            }
        }
    }
    assert_eq!(buckets_seen, 7);
    eprintln!("compared at {:?}", t0.elapsed());

    // The big object's ETag is the multipart form, and its bytes survived.
    let cb = client(&b, A, "us-east-1");
    let head = cb
        .head_object()
        .bucket("rt-big")
        .key("big/20mib")
        .send()
        .await
        .unwrap();
    assert!(
        head.e_tag().unwrap().ends_with("-4\""),
        "multipart ETag: {:?}",
        head.e_tag()
    );
    assert_eq!(head.content_length(), Some(20 * MIB as i64));

    // The unfinished upload completes on the new emulator.
    let (account, region, bucket, uid, key) = p.unfinished;
    let c = client(&b, &account, &region);
    let listed = c
        .list_parts()
        .bucket(&bucket)
        .key(&key)
        .upload_id(&uid)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.parts().len(), 1);
    let e1 = listed.parts()[0].e_tag().unwrap().to_string();
    let r2 = c
        .upload_part()
        .bucket(&bucket)
        .key(&key)
        .upload_id(&uid)
        .part_number(2)
        .body(ByteStream::from_static(b"the end"))
        .send()
        .await
        .unwrap();
    c.complete_multipart_upload()
        .bucket(&bucket)
        .key(&key)
        .upload_id(&uid)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .parts(CompletedPart::builder().part_number(1).e_tag(e1).build())
                .parts(
                    CompletedPart::builder()
                        .part_number(2)
                        .e_tag(r2.e_tag().unwrap())
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("the upload started before the export completes after the import");
    let got = c
        .get_object()
        .bucket(&bucket)
        .key(&key)
        .send()
        .await
        .unwrap();
    let body = got.body.collect().await.unwrap().into_bytes();
    let mut want = p.part1;
    want.extend_from_slice(b"the end");
    assert!(body.as_ref() == want.as_slice(), "completed object bytes");
}

#[tokio::test]
async fn bad_requests_get_the_aws_error_codes_and_statuses() {
    let s = start().await;
    let c = client(&s, A, "us-east-1");
    create_bucket(&c, "errors", "us-east-1").await;
    c.put_object()
        .bucket("errors")
        .key("k")
        .body(ByteStream::from_static(b"0123456789"))
        .send()
        .await
        .unwrap();

    let e = c
        .get_object()
        .bucket("missing-bucket")
        .key("k")
        .send()
        .await
        .unwrap_err();
    assert_eq!((err_code(&e).as_str(), status(&e)), ("NoSuchBucket", 404));
    let e = c
        .get_object()
        .bucket("errors")
        .key("nope")
        .send()
        .await
        .unwrap_err();
    assert_eq!((err_code(&e).as_str(), status(&e)), ("NoSuchKey", 404));
    let e = c
        .get_object()
        .bucket("errors")
        .key("k")
        .range("bytes=50-60")
        .send()
        .await
        .unwrap_err();
    assert_eq!((err_code(&e).as_str(), status(&e)), ("InvalidRange", 416));
    let got = c
        .get_object()
        .bucket("errors")
        .key("k")
        .range("bytes=2-4")
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_range(), Some("bytes 2-4/10"));
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        b"234"
    );

    let e = c
        .create_bucket()
        .bucket("Bad_Name")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        (err_code(&e).as_str(), status(&e)),
        ("InvalidBucketName", 400)
    );
    let e = c.create_bucket().bucket("errors").send().await.unwrap_err();
    assert_eq!(
        (err_code(&e).as_str(), status(&e)),
        ("BucketAlreadyOwnedByYou", 409)
    );
    let other = client(&s, B, "us-east-1");
    let e = other
        .create_bucket()
        .bucket("errors")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        (err_code(&e).as_str(), status(&e)),
        ("BucketAlreadyExists", 409)
    );
    let e = c.delete_bucket().bucket("errors").send().await.unwrap_err();
    assert_eq!((err_code(&e).as_str(), status(&e)), ("BucketNotEmpty", 409));

    // Conditional requests.
    let etag = c
        .head_object()
        .bucket("errors")
        .key("k")
        .send()
        .await
        .unwrap()
        .e_tag()
        .unwrap()
        .to_string();
    let e = c
        .get_object()
        .bucket("errors")
        .key("k")
        .if_match("\"other\"")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&e), 412);
    let e = c
        .get_object()
        .bucket("errors")
        .key("k")
        .if_none_match(&etag)
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&e), 304);
    assert!(
        c.get_object()
            .bucket("errors")
            .key("k")
            .if_match(&etag)
            .send()
            .await
            .is_ok()
    );
    let e = c
        .put_object()
        .bucket("errors")
        .key("k")
        .if_none_match("*")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        (err_code(&e).as_str(), status(&e)),
        ("PreconditionFailed", 412)
    );

    // Multipart rules.
    let up = c
        .create_multipart_upload()
        .bucket("errors")
        .key("mp")
        .send()
        .await
        .unwrap();
    let id = up.upload_id().unwrap().to_string();
    let mut tags = Vec::new();
    for (n, len) in [(1, 1024), (2, 1024)] {
        let r = c
            .upload_part()
            .bucket("errors")
            .key("mp")
            .upload_id(&id)
            .part_number(n)
            .body(ByteStream::from(vec![1u8; len]))
            .send()
            .await
            .unwrap();
        tags.push(r.e_tag().unwrap().to_string());
    }
    let complete = |order: &[i32]| {
        let mut b = CompletedMultipartUpload::builder();
        for n in order {
            b = b.parts(
                CompletedPart::builder()
                    .part_number(*n)
                    .e_tag(&tags[(*n - 1) as usize])
                    .build(),
            );
        }
        c.complete_multipart_upload()
            .bucket("errors")
            .key("mp")
            .upload_id(&id)
            .multipart_upload(b.build())
    };
    let e = complete(&[2, 1]).send().await.unwrap_err();
    assert_eq!(
        (err_code(&e).as_str(), status(&e)),
        ("InvalidPartOrder", 400)
    );
    let e = complete(&[1, 2]).send().await.unwrap_err();
    assert_eq!((err_code(&e).as_str(), status(&e)), ("EntityTooSmall", 400));
    let e = c
        .complete_multipart_upload()
        .bucket("errors")
        .key("mp")
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .parts(
                    CompletedPart::builder()
                        .part_number(1)
                        .e_tag("\"0000\"")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!((err_code(&e).as_str(), status(&e)), ("InvalidPart", 400));
    // A single small part is fine: only parts before the last have a minimum.
    complete(&[1])
        .send()
        .await
        .expect("one small last part completes");
    let e = c
        .upload_part()
        .bucket("errors")
        .key("mp")
        .upload_id(&id)
        .part_number(3)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!((err_code(&e).as_str(), status(&e)), ("NoSuchUpload", 404));
    let long_key = "k".repeat(1025);
    let e = c
        .put_object()
        .bucket("errors")
        .key(long_key)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err_code(&e), "KeyTooLongError");
}

#[tokio::test]
async fn versioned_buckets_keep_versions_and_delete_markers() {
    let s = start().await;
    let c = client(&s, A, "eu-west-1");
    create_bucket(&c, "vers", "eu-west-1").await;
    c.put_bucket_versioning()
        .bucket("vers")
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let v1 = c
        .put_object()
        .bucket("vers")
        .key("k")
        .body(ByteStream::from_static(b"1"))
        .send()
        .await
        .unwrap();
    let v1 = v1.version_id().unwrap().to_string();
    c.put_object()
        .bucket("vers")
        .key("k")
        .body(ByteStream::from_static(b"2"))
        .send()
        .await
        .unwrap();
    let del = c
        .delete_object()
        .bucket("vers")
        .key("k")
        .send()
        .await
        .unwrap();
    assert_eq!(del.delete_marker(), Some(true));
    let e = c
        .get_object()
        .bucket("vers")
        .key("k")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err_code(&e), "NoSuchKey");
    let old = c
        .get_object()
        .bucket("vers")
        .key("k")
        .version_id(&v1)
        .send()
        .await
        .unwrap();
    assert_eq!(
        old.body.collect().await.unwrap().into_bytes().as_ref(),
        b"1"
    );
    let listed = c
        .list_object_versions()
        .bucket("vers")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.versions().len(), 2);
    assert_eq!(listed.delete_markers().len(), 1);
    let e = c
        .get_object()
        .bucket("vers")
        .key("k")
        .version_id("0123456789abcdef0123456789abcdef")
        .send()
        .await
        .unwrap_err();
    assert_eq!((err_code(&e).as_str(), status(&e)), ("NoSuchVersion", 404));
    // A bucket in eu-west-1 is served to a client configured for another region.
    let us = client(&s, A, "us-east-1");
    assert!(us.head_bucket().bucket("vers").send().await.is_ok());
}

/// Sends a raw HTTP/1.1 request and returns (status, body).
async fn raw(
    endpoint: &str,
    method: &str,
    path_and_query: &str,
    host: Option<&str>,
    body: &[u8],
) -> (u16, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = endpoint.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let host = host.unwrap_or(addr);
    let head = format!(
        "{method} {path_and_query} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    let status: u16 = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body_at = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(out.len(), |i| i + 4);
    (status, out[body_at..].to_vec())
}

#[tokio::test]
async fn presigned_urls_and_virtual_hosted_addressing_work() {
    use aws_sdk_s3::presigning::PresigningConfig;
    let s = start().await;
    let c = client(&s, A, "us-east-1");
    create_bucket(&c, "presign", "us-east-1").await;
    let cfg = PresigningConfig::expires_in(std::time::Duration::from_secs(300)).unwrap();
    let put = c
        .put_object()
        .bucket("presign")
        .key("p")
        .presigned(cfg.clone())
        .await
        .unwrap();
    let pq = put.uri().trim_start_matches(&s.endpoint).to_string();
    let (st, body) = raw(&s.endpoint, "PUT", &pq, None, b"via presigned put").await;
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    let get = c
        .get_object()
        .bucket("presign")
        .key("p")
        .presigned(cfg)
        .await
        .unwrap();
    let pq = get.uri().trim_start_matches(&s.endpoint).to_string();
    let (st, body) = raw(&s.endpoint, "GET", &pq, None, b"").await;
    assert_eq!(st, 200);
    assert_eq!(body, b"via presigned put");
    // An expired URL is refused as AWS refuses it.
    let expired = pq
        .replace("X-Amz-Expires=300", "X-Amz-Expires=1")
        .replace("X-Amz-Date=20", "X-Amz-Date=19");
    let (st, body) = raw(&s.endpoint, "GET", &expired, None, b"").await;
    assert_eq!(st, 403, "{}", String::from_utf8_lossy(&body));
    // Virtual-hosted style: the bucket in the Host header.
    let (st, body) = raw(&s.endpoint, "GET", "/p", Some("presign.localhost"), b"").await;
    assert_eq!(st, 200);
    assert_eq!(body, b"via presigned put");
}

#[tokio::test]
async fn service_merge_import_keeps_both_sides_objects_in_a_bucket_on_both_sides() {
    let a = start().await;
    let ca = client(&a, A, "us-east-1");
    for b in ["clash", "from-bundle"] {
        create_bucket(&ca, b, "us-east-1").await;
        ca.put_object()
            .bucket(b)
            .key("bundle-key")
            .body(ByteStream::from_static(b"bundle"))
            .send()
            .await
            .unwrap();
    }
    let (bundle, _) = a
        .runtime
        .export(None, &ScopeFilter::all(), Vec::new(), Default::default())
        .await
        .unwrap();

    let b = start().await;
    let cb = client(&b, A, "us-east-1");
    for bk in ["clash", "running-only"] {
        create_bucket(&cb, bk, "us-east-1").await;
        cb.put_object()
            .bucket(bk)
            .key("running-key")
            .body(ByteStream::from_static(b"running"))
            .send()
            .await
            .unwrap();
    }
    b.runtime
        .import(Cursor::new(bundle), None, MergeStrategy::ServiceMerge)
        .await
        .unwrap();
    assert_eq!(
        bucket_names(&cb).await,
        ["clash", "from-bundle", "running-only"]
    );
    let keys = |bk: &'static str| {
        let cb = cb.clone();
        async move {
            cb.list_objects_v2()
                .bucket(bk)
                .send()
                .await
                .unwrap()
                .contents()
                .iter()
                .map(|o| o.key().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        keys("clash").await,
        ["bundle-key", "running-key"],
        "a bucket on both sides keeps both sides' objects"
    );
    assert_eq!(
        keys("running-only").await,
        ["running-key"],
        "running buckets the bundle lacks stay"
    );
}
