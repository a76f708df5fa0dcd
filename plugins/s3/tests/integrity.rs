//! The integrity checks the SDKs rely on (issue #18): checksums sent by the official SDK
//! are accepted, stored and returned; wrong ones, sent over raw HTTP, are refused with
//! AWS's codes and leave no object behind.

use aws_credential_types::Credentials;
use aws_sdk_s3::Client;
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart, ObjectAttributes,
};
use aws_types::region::Region;
use cryopod::server::TestServer;
use cryopod_s3::SERVICE;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BODY: &[u8] = b"hello world";

/// The checksums of [`BODY`], as the AWS SDKs compute them.
const SUMS: [(&str, &str); 5] = [
    ("crc32", "DUoRhQ=="),
    ("crc32c", "yZRlqg=="),
    ("crc64nvme", "jSnVw/bqjr4="),
    ("sha1", "Kq5sNclPz7QV2+lfQIuc6R7oRu0="),
    ("sha256", "uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek="),
];

/// Valid values (right length) of each checksum that are not [`BODY`]'s.
const WRONG: [(&str, &str); 5] = [
    ("crc32", "AAAAAA=="),
    ("crc32c", "AAAAAA=="),
    ("crc64nvme", "AAAAAAAAAAA="),
    ("sha1", "AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
    ("sha256", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
];

const SHA256_HEX: &str = "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";

fn client(server: &TestServer) -> Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .region(Region::new("us-east-1"))
        .endpoint_url(&server.endpoint)
        .credentials_provider(Credentials::new("test", "test", None, None, "t"))
        .force_path_style(true)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    Client::from_conf(conf)
}

async fn start(bucket: &str) -> (TestServer, Client) {
    let s = TestServer::start(&[SERVICE]).await;
    let c = client(&s);
    c.create_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect("bucket");
    (s, c)
}

/// An answer to a raw request.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn code(&self) -> &str {
        between(&self.body, "<Code>", "</Code>")
    }
    fn message(&self) -> &str {
        between(&self.body, "<Message>", "</Message>")
    }
}

fn between<'a>(s: &'a str, a: &str, b: &str) -> &'a str {
    s.split_once(a)
        .and_then(|(_, r)| r.split_once(b))
        .map_or("", |(m, _)| m)
}

/// Sends one HTTP/1.1 request made of `head` lines (without the request line's end) and
/// `body`, byte for byte, and reads the answer to the end.
async fn raw(server: &TestServer, request_line: &str, headers: &[String], body: &[u8]) -> Answer {
    let addr = server.endpoint.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut head = format!("{request_line} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.expect("write head");
    s.write_all(body).await.expect("write body");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read answer");
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Answer {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

/// A plain PUT of `body` with `extra` headers.
async fn put(server: &TestServer, path: &str, extra: &[&str], body: &[u8]) -> Answer {
    let mut headers = vec![format!("Content-Length: {}", body.len())];
    headers.extend(extra.iter().map(|h| h.to_string()));
    raw(server, &format!("PUT {path}"), &headers, body).await
}

/// `data` in unsigned `aws-chunked` framing, in chunks of `chunk` bytes, with `trailer`.
fn aws_chunked(data: &[u8], chunk: usize, trailer: Option<&str>) -> Vec<u8> {
    let mut out = Vec::new();
    for c in data.chunks(chunk) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n");
    if let Some(t) = trailer {
        out.extend_from_slice(t.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// An `aws-chunked` PUT as the SDKs send it with a trailing checksum.
async fn put_chunked(
    server: &TestServer,
    path: &str,
    decoded_len: usize,
    trailer_name: Option<&str>,
    framed: &[u8],
) -> Answer {
    let mut headers = vec![
        format!("Content-Length: {}", framed.len()),
        "Content-Encoding: aws-chunked".to_string(),
        "x-amz-content-sha256: STREAMING-UNSIGNED-PAYLOAD-TRAILER".to_string(),
        format!("x-amz-decoded-content-length: {decoded_len}"),
    ];
    if let Some(t) = trailer_name {
        headers.push(format!("x-amz-trailer: {t}"));
    }
    raw(server, &format!("PUT {path}"), &headers, framed).await
}

/// GET with `x-amz-checksum-mode: ENABLED` (the SDK then validates what it gets).
async fn get_checked(c: &Client, bucket: &str, key: &str) -> GetObjectOutput {
    c.get_object()
        .bucket(bucket)
        .key(key)
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e:?}"))
}

/// HEAD with `x-amz-checksum-mode: ENABLED`.
async fn head_checked(c: &Client, bucket: &str, key: &str) -> HeadObjectOutput {
    c.head_object()
        .bucket(bucket)
        .key(key)
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap_or_else(|e| panic!("head {key}: {e:?}"))
}

/// The five checksum fields of an SDK output, in [`SUMS`] order.
macro_rules! sums_of {
    ($o:expr) => {
        [
            $o.checksum_crc32(),
            $o.checksum_crc32_c(),
            $o.checksum_crc64_nvme(),
            $o.checksum_sha1(),
            $o.checksum_sha256(),
        ]
    };
}

/// Asserts that `key` does not exist and that the emulator still answers.
async fn assert_absent(c: &Client, bucket: &str, key: &str) {
    let head = c.head_object().bucket(bucket).key(key).send().await;
    let err = head.expect_err("a refused PUT left an object");
    assert_eq!(
        err.raw_response().map(|r| r.status().as_u16()),
        Some(404),
        "{err:?}"
    );
    c.list_objects_v2()
        .bucket(bucket)
        .send()
        .await
        .expect("the emulator still answers");
}

#[tokio::test]
async fn sdk_default_crc32_checksums_are_accepted_stored_and_returned() {
    let (s, c) = start("sums").await;
    // The SDK's default: a CRC32 of the body, computed and sent without being asked.
    let put = c
        .put_object()
        .bucket("sums")
        .key("default")
        .body(ByteStream::from_static(BODY))
        .send()
        .await
        .expect("put");
    assert_eq!(put.checksum_crc32(), Some(SUMS[0].1), "{put:?}");
    // Returned on GET and HEAD when asked for (the SDK then validates it), not otherwise.
    let get = get_checked(&c, "sums", "default").await;
    assert_eq!(get.checksum_crc32(), Some(SUMS[0].1));
    assert_eq!(get.body.collect().await.expect("body").to_vec(), BODY);
    let head = head_checked(&c, "sums", "default").await;
    assert_eq!(head.checksum_crc32(), Some(SUMS[0].1));
    let plain = c
        .head_object()
        .bucket("sums")
        .key("default")
        .send()
        .await
        .expect("head");
    assert_eq!(plain.checksum_crc32(), None);
    let attrs = c
        .get_object_attributes()
        .bucket("sums")
        .key("default")
        .object_attributes(ObjectAttributes::Checksum)
        .object_attributes(ObjectAttributes::ObjectSize)
        .send()
        .await
        .expect("attributes");
    assert_eq!(
        attrs.checksum().and_then(|c| c.checksum_crc32()),
        Some(SUMS[0].1)
    );
    assert_eq!(attrs.object_size(), Some(BODY.len() as i64));
    // A copy keeps the checksum of the bytes it copies.
    c.copy_object()
        .bucket("sums")
        .key("copy")
        .copy_source("sums/default")
        .send()
        .await
        .expect("copy");
    let copy = head_checked(&c, "sums", "copy").await;
    assert_eq!(copy.checksum_crc32(), Some(SUMS[0].1));
    drop(s);
}

#[tokio::test]
async fn each_algorithm_the_sdk_offers_is_verified_and_returned() {
    let (s, c) = start("algos").await;
    let algos = [
        ChecksumAlgorithm::Crc32,
        ChecksumAlgorithm::Crc32C,
        ChecksumAlgorithm::Crc64Nvme,
        ChecksumAlgorithm::Sha1,
        ChecksumAlgorithm::Sha256,
    ];
    for (algo, (name, want)) in algos.into_iter().zip(SUMS) {
        let key = format!("k-{name}");
        let put = c
            .put_object()
            .bucket("algos")
            .key(&key)
            .checksum_algorithm(algo.clone())
            .body(ByteStream::from_static(BODY))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert!(sums_of!(put).contains(&Some(want)), "{name}: {put:?}");
        let get = get_checked(&c, "algos", &key).await;
        assert!(sums_of!(get).contains(&Some(want)), "{name}: {get:?}");
    }
    // A streamed body goes as aws-chunked with the checksum in a trailer.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("body");
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &big).expect("write file");
    let put = c
        .put_object()
        .bucket("algos")
        .key("streamed")
        .checksum_algorithm(ChecksumAlgorithm::Crc32C)
        .body(ByteStream::from_path(&path).await.expect("file body"))
        .send()
        .await
        .expect("streamed put");
    assert!(put.checksum_crc32_c().is_some(), "{put:?}");
    let get = get_checked(&c, "algos", "streamed").await;
    assert_eq!(get.checksum_crc32_c(), put.checksum_crc32_c());
    assert_eq!(get.body.collect().await.expect("body").to_vec(), big);
    // Parts are verified and answered with their checksum too.
    let up = c
        .create_multipart_upload()
        .bucket("algos")
        .key("mp")
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .send()
        .await
        .expect("create upload");
    let id = up.upload_id().expect("upload id");
    let part = c
        .upload_part()
        .bucket("algos")
        .key("mp")
        .upload_id(id)
        .part_number(1)
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .body(ByteStream::from_static(BODY))
        .send()
        .await
        .expect("part");
    assert_eq!(part.checksum_sha256(), Some(SUMS[4].1));
    c.complete_multipart_upload()
        .bucket("algos")
        .key("mp")
        .upload_id(id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .parts(
                    CompletedPart::builder()
                        .part_number(1)
                        .e_tag(part.e_tag().unwrap_or_default())
                        .checksum_sha256(SUMS[4].1)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("complete");
    drop(s);
}

#[tokio::test]
async fn wrong_checksum_headers_are_refused_with_bad_digest_and_leave_nothing() {
    let (s, c) = start("wrong").await;
    for (name, value) in WRONG {
        let key = format!("w-{name}");
        let a = put(
            &s,
            &format!("/wrong/{key}"),
            &[&format!("x-amz-checksum-{name}: {value}")],
            BODY,
        )
        .await;
        assert_eq!(
            (a.status, a.code()),
            (400, "BadDigest"),
            "{name}: {}",
            a.body
        );
        let upper = name.to_ascii_uppercase();
        assert_eq!(
            a.message(),
            format!("The {upper} you specified did not match the calculated checksum.")
        );
        assert_absent(&c, "wrong", &key).await;
        // Not base64 of a digest of the right length: invalid, not a mismatch.
        let a = put(
            &s,
            &format!("/wrong/{key}"),
            &[&format!("x-amz-checksum-{name}: {value}AAAA")],
            BODY,
        )
        .await;
        assert_eq!((a.status, a.code()), (400, "InvalidRequest"), "{}", a.body);
        assert_absent(&c, "wrong", &key).await;
    }
    // The right values are accepted.
    for (name, value) in SUMS {
        let a = put(
            &s,
            &format!("/wrong/r-{name}"),
            &[&format!("x-amz-checksum-{name}: {value}")],
            BODY,
        )
        .await;
        assert_eq!(a.status, 200, "{name}: {}", a.body);
        assert!(
            a.head.contains(&format!(
                "x-amz-checksum-{name}: {}",
                value.to_ascii_lowercase()
            )),
            "{}",
            a.head
        );
    }
    // Two checksums at once are refused.
    let a = put(
        &s,
        "/wrong/two",
        &[
            &format!("x-amz-checksum-crc32: {}", SUMS[0].1),
            &format!("x-amz-checksum-sha1: {}", SUMS[3].1),
        ],
        BODY,
    )
    .await;
    assert_eq!((a.status, a.code()), (400, "InvalidRequest"), "{}", a.body);
    assert_absent(&c, "wrong", "two").await;
}

#[tokio::test]
async fn wrong_content_md5_and_content_sha256_are_refused_and_leave_nothing() {
    let (s, c) = start("digests").await;
    let a = put(
        &s,
        "/digests/md5",
        &["Content-MD5: 1B2M2Y8AsgTpgAmY7PhCfg=="],
        BODY,
    )
    .await;
    assert_eq!((a.status, a.code()), (400, "BadDigest"), "{}", a.body);
    assert_absent(&c, "digests", "md5").await;
    let a = put(&s, "/digests/md5", &["Content-MD5: not-an-md5"], BODY).await;
    assert_eq!((a.status, a.code()), (400, "InvalidDigest"), "{}", a.body);
    assert_absent(&c, "digests", "md5").await;
    let a = put(
        &s,
        "/digests/md5",
        &["Content-MD5: XrY7u+Ae7tCTyyK7j1rNww=="],
        BODY,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);

    let empty_sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let a = put(
        &s,
        "/digests/sha",
        &[&format!("x-amz-content-sha256: {empty_sha}")],
        BODY,
    )
    .await;
    assert_eq!(
        (a.status, a.code()),
        (400, "XAmzContentSHA256Mismatch"),
        "{}",
        a.body
    );
    assert_absent(&c, "digests", "sha").await;
    let a = put(&s, "/digests/sha", &["x-amz-content-sha256: abc"], BODY).await;
    assert_eq!((a.status, a.code()), (400, "InvalidArgument"), "{}", a.body);
    assert_absent(&c, "digests", "sha").await;
    let a = put(
        &s,
        "/digests/sha",
        &[&format!("x-amz-content-sha256: {SHA256_HEX}")],
        BODY,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = put(
        &s,
        "/digests/unsigned",
        &["x-amz-content-sha256: UNSIGNED-PAYLOAD"],
        BODY,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
}

#[tokio::test]
async fn aws_chunked_trailing_checksums_and_decoded_lengths_are_checked() {
    let (s, c) = start("chunked").await;
    let good = format!("x-amz-checksum-crc32:{}", SUMS[0].1);
    let framed = aws_chunked(BODY, 4, Some(&good));
    let a = put_chunked(
        &s,
        "/chunked/ok",
        BODY.len(),
        Some("x-amz-checksum-crc32"),
        &framed,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let get = get_checked(&c, "chunked", "ok").await;
    assert_eq!(get.checksum_crc32(), Some(SUMS[0].1));
    assert_eq!(get.body.collect().await.expect("body").to_vec(), BODY);

    // A wrong trailing checksum.
    let bad = format!("x-amz-checksum-crc32:{}", WRONG[0].1);
    let framed = aws_chunked(BODY, 4, Some(&bad));
    let a = put_chunked(
        &s,
        "/chunked/bad",
        BODY.len(),
        Some("x-amz-checksum-crc32"),
        &framed,
    )
    .await;
    assert_eq!((a.status, a.code()), (400, "BadDigest"), "{}", a.body);
    assert_absent(&c, "chunked", "bad").await;
    // A declared trailer that never comes.
    let framed = aws_chunked(BODY, 4, None);
    let a = put_chunked(
        &s,
        "/chunked/bad",
        BODY.len(),
        Some("x-amz-checksum-sha256"),
        &framed,
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert_absent(&c, "chunked", "bad").await;

    // Decoded lengths that disagree with the data, in both directions.
    for declared in [BODY.len() - 1, BODY.len() + 1] {
        let framed = aws_chunked(BODY, 4, None);
        let a = put_chunked(&s, "/chunked/len", declared, None, &framed).await;
        assert_eq!(
            (a.status, a.code()),
            (400, "IncompleteBody"),
            "{declared}: {}",
            a.body
        );
        assert_absent(&c, "chunked", "len").await;
    }
}

#[tokio::test]
async fn metadata_over_two_kilobytes_is_refused() {
    let (s, c) = start("meta").await;
    // 2 KB exactly (name and value, without the prefix) is accepted, one byte more is not.
    let fits = format!("x-amz-meta-k: {}", "v".repeat(2047));
    let a = put(&s, "/meta/fits", &[&fits], BODY).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let over = format!("x-amz-meta-k: {}", "v".repeat(2048));
    let a = put(&s, "/meta/over", &[&over], BODY).await;
    assert_eq!(
        (a.status, a.code()),
        (400, "MetadataTooLarge"),
        "{}",
        a.body
    );
    assert_absent(&c, "meta", "over").await;
    // Through the SDK, for multipart uploads too.
    let err = c
        .create_multipart_upload()
        .bucket("meta")
        .key("mp")
        .metadata("k", "v".repeat(2048))
        .send()
        .await
        .expect_err("oversized metadata accepted");
    assert_eq!(
        aws_sdk_s3::error::ProvideErrorMetadata::code(&err),
        Some("MetadataTooLarge")
    );
}

#[tokio::test]
async fn a_put_with_content_length_and_chunked_transfer_encoding_is_refused() {
    let (s, c) = start("tenc").await;
    let headers = [
        format!("Content-Length: {}", BODY.len()),
        "Transfer-Encoding: chunked".to_string(),
    ];
    let a = raw(&s, "PUT /tenc/both", &headers, &aws_chunked(BODY, 64, None)).await;
    assert_eq!((a.status, a.code()), (501, "NotImplemented"), "{}", a.body);
    assert_absent(&c, "tenc", "both").await;
}

#[tokio::test]
async fn a_blob_store_that_cannot_be_written_is_answered_with_its_cause() {
    let dir = tempfile::tempdir().expect("temp dir");
    let blobs = cryopod::BlobStore::open(dir.path().join("blobs")).expect("blob store");
    let rt = cryopod::Runtime::builder()
        .enable(Some(vec![SERVICE.into()]))
        .blob_store(blobs)
        .build()
        .expect("runtime");
    let s = TestServer::start_with_runtime(rt).await;
    let c = client(&s);
    c.create_bucket()
        .bucket("iofail")
        .send()
        .await
        .expect("bucket");
    // The store's directory goes away: every write fails with ENOENT.
    std::fs::remove_dir_all(dir.path().join("blobs")).expect("remove blob dir");
    let a = put(&s, "/iofail/k", &[], BODY).await;
    assert_eq!((a.status, a.code()), (500, "InternalError"), "{}", a.body);
    assert!(
        a.message()
            .contains("No such file or directory (os error 2)"),
        "{}",
        a.body
    );
    assert_absent(&c, "iofail", "k").await;
}
