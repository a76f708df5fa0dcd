//! The registration is consistent (one statement of service, state and version, checked
//! against the built provider), and every operation it lists, which the README's service
//! table shows, is dispatched to an implementation rather than answered `NotImplemented`.

use cryopod::Body;

const TAGS: &str = "<Tagging><TagSet><Tag><Key>a</Key><Value>1</Value></Tag></TagSet></Tagging>";
const CORS: &str = "<CORSConfiguration><CORSRule><AllowedMethod>GET</AllowedMethod>\
                    <AllowedOrigin>*</AllowedOrigin></CORSRule></CORSConfiguration>";

/// `(method, uri, extra header, body)` of each operation, path-style on bucket `test-bucket`.
fn request(
    op: &str,
) -> (
    &'static str,
    &'static str,
    Option<(&'static str, &'static str)>,
    &'static str,
) {
    let copy = Some(("x-amz-copy-source", "/test-bucket/src"));
    match op {
        "AbortMultipartUpload" => ("DELETE", "/test-bucket/k?uploadId=u", None, ""),
        "CompleteMultipartUpload" => (
            "POST",
            "/test-bucket/k?uploadId=u",
            None,
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"e\"</ETag></Part></CompleteMultipartUpload>",
        ),
        "CopyObject" => ("PUT", "/test-bucket/k", copy, ""),
        "CreateBucket" => ("PUT", "/test-bucket", None, ""),
        "CreateMultipartUpload" => ("POST", "/test-bucket/k?uploads", None, ""),
        "DeleteBucket" => ("DELETE", "/test-bucket", None, ""),
        "DeleteBucketCors" => ("DELETE", "/test-bucket?cors", None, ""),
        "DeleteBucketPolicy" => ("DELETE", "/test-bucket?policy", None, ""),
        "DeleteBucketTagging" => ("DELETE", "/test-bucket?tagging", None, ""),
        "DeleteObject" => ("DELETE", "/test-bucket/k", None, ""),
        "DeleteObjectTagging" => ("DELETE", "/test-bucket/k?tagging", None, ""),
        "DeleteObjects" => (
            "POST",
            "/test-bucket?delete",
            None,
            "<Delete><Object><Key>k</Key></Object></Delete>",
        ),
        "GetBucketCors" => ("GET", "/test-bucket?cors", None, ""),
        "GetBucketLocation" => ("GET", "/test-bucket?location", None, ""),
        "GetBucketPolicy" => ("GET", "/test-bucket?policy", None, ""),
        "GetBucketTagging" => ("GET", "/test-bucket?tagging", None, ""),
        "GetBucketVersioning" => ("GET", "/test-bucket?versioning", None, ""),
        "GetObject" => ("GET", "/test-bucket/k", None, ""),
        "GetObjectAttributes" => (
            "GET",
            "/test-bucket/k?attributes",
            Some(("x-amz-object-attributes", "ETag")),
            "",
        ),
        "GetObjectTagging" => ("GET", "/test-bucket/k?tagging", None, ""),
        "HeadBucket" => ("HEAD", "/test-bucket", None, ""),
        "HeadObject" => ("HEAD", "/test-bucket/k", None, ""),
        "ListBuckets" => ("GET", "/", None, ""),
        "ListMultipartUploads" => ("GET", "/test-bucket?uploads", None, ""),
        "ListObjectVersions" => ("GET", "/test-bucket?versions", None, ""),
        "ListObjects" => ("GET", "/test-bucket", None, ""),
        "ListObjectsV2" => ("GET", "/test-bucket?list-type=2", None, ""),
        "ListParts" => ("GET", "/test-bucket/k?uploadId=u", None, ""),
        "PutBucketCors" => ("PUT", "/test-bucket?cors", None, CORS),
        "PutBucketPolicy" => (
            "PUT",
            "/test-bucket?policy",
            None,
            "{\"Version\":\"2012-10-17\",\"Statement\":[]}",
        ),
        "PutBucketTagging" => ("PUT", "/test-bucket?tagging", None, TAGS),
        "PutBucketVersioning" => (
            "PUT",
            "/test-bucket?versioning",
            None,
            "<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>",
        ),
        "PutObject" => ("PUT", "/test-bucket/k", None, "body"),
        "PutObjectTagging" => ("PUT", "/test-bucket/k?tagging", None, TAGS),
        "UploadPart" => (
            "PUT",
            "/test-bucket/k?partNumber=1&uploadId=u",
            None,
            "part",
        ),
        "UploadPartCopy" => ("PUT", "/test-bucket/k?partNumber=1&uploadId=u", copy, ""),
        // Anything else: an operation S3 has and this emulator does not (GetBucketAcl).
        _ => ("GET", "/test-bucket?acl", None, ""),
    }
}

#[tokio::test]
async fn registration_is_consistent() {
    cryopod::testing::check_registration(cryopod_s3::SERVICE);
}

#[tokio::test]
async fn every_listed_operation_is_dispatched() {
    let rt = cryopod::testing::runtime_with(&[cryopod_s3::SERVICE]);
    cryopod::testing::check_operations(&rt, cryopod_s3::SERVICE, |op| {
        let (method, uri, header, body) = request(op);
        let mut b = http::Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "127.0.0.1:4566");
        if let Some((k, v)) = header {
            b = b.header(k, v);
        }
        b.body(Body::from(body)).expect("a literal request builds")
    })
    .await;
}
