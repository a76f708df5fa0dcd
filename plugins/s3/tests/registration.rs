//! The registration is consistent (one statement of service, state and version, checked
//! against the built provider), and every operation it lists, which the README's service
//! table shows, is dispatched to an implementation rather than answered `NotImplemented`.

use cryopod::Body;

const TAGS: &str = "<Tagging><TagSet><Tag><Key>a</Key><Value>1</Value></Tag></TagSet></Tagging>";
const CORS: &str = "<CORSConfiguration><CORSRule><AllowedMethod>GET</AllowedMethod>\
                    <AllowedOrigin>*</AllowedOrigin></CORSRule></CORSConfiguration>";

/// `(method, uri, extra header, body)` of each operation, path-style on bucket `b`.
fn request(
    op: &str,
) -> (
    &'static str,
    &'static str,
    Option<(&'static str, &'static str)>,
    &'static str,
) {
    let copy = Some(("x-amz-copy-source", "/b/src"));
    match op {
        "AbortMultipartUpload" => ("DELETE", "/b/k?uploadId=u", None, ""),
        "CompleteMultipartUpload" => (
            "POST",
            "/b/k?uploadId=u",
            None,
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"e\"</ETag></Part></CompleteMultipartUpload>",
        ),
        "CopyObject" => ("PUT", "/b/k", copy, ""),
        "CreateBucket" => ("PUT", "/b", None, ""),
        "CreateMultipartUpload" => ("POST", "/b/k?uploads", None, ""),
        "DeleteBucket" => ("DELETE", "/b", None, ""),
        "DeleteBucketCors" => ("DELETE", "/b?cors", None, ""),
        "DeleteBucketPolicy" => ("DELETE", "/b?policy", None, ""),
        "DeleteBucketTagging" => ("DELETE", "/b?tagging", None, ""),
        "DeleteObject" => ("DELETE", "/b/k", None, ""),
        "DeleteObjectTagging" => ("DELETE", "/b/k?tagging", None, ""),
        "DeleteObjects" => (
            "POST",
            "/b?delete",
            None,
            "<Delete><Object><Key>k</Key></Object></Delete>",
        ),
        "GetBucketCors" => ("GET", "/b?cors", None, ""),
        "GetBucketLocation" => ("GET", "/b?location", None, ""),
        "GetBucketPolicy" => ("GET", "/b?policy", None, ""),
        "GetBucketTagging" => ("GET", "/b?tagging", None, ""),
        "GetBucketVersioning" => ("GET", "/b?versioning", None, ""),
        "GetObject" => ("GET", "/b/k", None, ""),
        "GetObjectAttributes" => (
            "GET",
            "/b/k?attributes",
            Some(("x-amz-object-attributes", "ETag")),
            "",
        ),
        "GetObjectTagging" => ("GET", "/b/k?tagging", None, ""),
        "HeadBucket" => ("HEAD", "/b", None, ""),
        "HeadObject" => ("HEAD", "/b/k", None, ""),
        "ListBuckets" => ("GET", "/", None, ""),
        "ListMultipartUploads" => ("GET", "/b?uploads", None, ""),
        "ListObjectVersions" => ("GET", "/b?versions", None, ""),
        "ListObjects" => ("GET", "/b", None, ""),
        "ListObjectsV2" => ("GET", "/b?list-type=2", None, ""),
        "ListParts" => ("GET", "/b/k?uploadId=u", None, ""),
        "PutBucketCors" => ("PUT", "/b?cors", None, CORS),
        "PutBucketPolicy" => (
            "PUT",
            "/b?policy",
            None,
            "{\"Version\":\"2012-10-17\",\"Statement\":[]}",
        ),
        "PutBucketTagging" => ("PUT", "/b?tagging", None, TAGS),
        "PutBucketVersioning" => (
            "PUT",
            "/b?versioning",
            None,
            "<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>",
        ),
        "PutObject" => ("PUT", "/b/k", None, "body"),
        "PutObjectTagging" => ("PUT", "/b/k?tagging", None, TAGS),
        "UploadPart" => ("PUT", "/b/k?partNumber=1&uploadId=u", None, "part"),
        "UploadPartCopy" => ("PUT", "/b/k?partNumber=1&uploadId=u", copy, ""),
        // Anything else: an operation S3 has and this emulator does not (GetBucketAcl).
        _ => ("GET", "/b?acl", None, ""),
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
