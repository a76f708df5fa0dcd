//! Parameter Store checked with the official AWS SDK for Rust over real HTTP: the happy
//! paths, AWS's refusals with their error codes, and a state that survives export → fresh
//! emulator → import with the same answers to every read (SecureStrings decrypted).

use std::io::Cursor;

use aws_sdk_ssm::Client;
use aws_sdk_ssm::config::{Credentials, Region};
use aws_sdk_ssm::error::ProvideErrorMetadata;
use aws_sdk_ssm::types::{
    ParameterStringFilter, ParameterTier, ParameterType, ResourceTypeForTagging, Tag,
};
use cryopod::bundle::WriteOptions;
use cryopod::server::TestServer;
use cryopod::{MergeStrategy, ScopeFilter};
use cryopod_ssm::{SERVICE, SsmService};

const ACCOUNT: &str = "123456789012";

fn client(server: &TestServer) -> Client {
    let conf = aws_sdk_ssm::Config::builder()
        .behavior_version_latest()
        .region(Region::new("eu-west-1"))
        .endpoint_url(&server.endpoint)
        .credentials_provider(Credentials::new(ACCOUNT, "secret", None, None, "t"))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    Client::from_conf(conf)
}

fn code<E: ProvideErrorMetadata, R>(e: &aws_sdk_ssm::error::SdkError<E, R>) -> String {
    e.as_service_error()
        .and_then(|e| e.code())
        .unwrap_or("<no code>")
        .to_string()
}

async fn put(c: &Client, name: &str, value: &str, kind: ParameterType, overwrite: bool) -> i64 {
    c.put_parameter()
        .name(name)
        .value(value)
        .r#type(kind)
        .overwrite(overwrite)
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {name}: {e:?}"))
        .version
}

/// Everything a reader sees: every parameter's value at every version and label
/// (decrypted), the history, the listings, the tags.
async fn every_read(c: &Client) -> Vec<String> {
    let mut out = Vec::new();
    let names = [
        "/app/db/password",
        "/app/db/host",
        "/app/features",
        "/app/api/key",
        "plain",
    ];
    for n in names {
        for sel in ["", ":1", ":2", ":3", ":prod", ":canary"] {
            let r = c
                .get_parameter()
                .name(format!("{n}{sel}"))
                .with_decryption(true)
                .send()
                .await;
            out.push(match r {
                Ok(r) => {
                    let p = r.parameter.expect("parameter");
                    format!("{n}{sel} = {:?} v{} {:?}", p.value, p.version, p.r#type)
                }
                Err(e) => format!("{n}{sel} ! {}", code(&e)),
            });
        }
        let h = c
            .get_parameter_history()
            .name(n)
            .with_decryption(true)
            .send()
            .await
            .expect("history");
        for v in h.parameters() {
            out.push(format!(
                "history {n} v{} {:?} labels {:?} key {:?} tier {:?}",
                v.version,
                v.value,
                v.labels(),
                v.key_id,
                v.tier
            ));
        }
        let tags = c
            .list_tags_for_resource()
            .resource_type(ResourceTypeForTagging::Parameter)
            .resource_id(n)
            .send()
            .await
            .expect("tags");
        out.push(format!("tags {n} {:?}", tags.tag_list()));
    }
    let by_path = c
        .get_parameters_by_path()
        .path("/app")
        .recursive(true)
        .with_decryption(true)
        .send()
        .await
        .expect("by path");
    for p in by_path.parameters() {
        out.push(format!("path {:?} {:?}", p.name, p.value));
    }
    let described = c.describe_parameters().send().await.expect("describe");
    for p in described.parameters() {
        out.push(format!(
            "describe {:?} {:?} v{} {:?} {:?}",
            p.name, p.r#type, p.version, p.key_id, p.description
        ));
    }
    out
}

async fn populate(c: &Client) {
    put(
        c,
        "/app/db/password",
        "first",
        ParameterType::SecureString,
        false,
    )
    .await;
    put(
        c,
        "/app/db/password",
        "second",
        ParameterType::SecureString,
        true,
    )
    .await;
    assert_eq!(
        put(
            c,
            "/app/db/password",
            "third ✓",
            ParameterType::SecureString,
            true
        )
        .await,
        3
    );
    c.put_parameter()
        .name("/app/api/key")
        .value("k-123")
        .r#type(ParameterType::SecureString)
        .key_id("alias/custom")
        .description("the api key")
        .tags(
            Tag::builder()
                .key("team")
                .value("core")
                .build()
                .expect("tag"),
        )
        .send()
        .await
        .expect("custom key");
    put(c, "/app/db/host", "db.local", ParameterType::String, false).await;
    put(
        c,
        "/app/features",
        "a,b,c",
        ParameterType::StringList,
        false,
    )
    .await;
    put(c, "plain", "top level", ParameterType::String, false).await;
    c.label_parameter_version()
        .name("/app/db/password")
        .parameter_version(2)
        .labels("prod")
        .labels("canary")
        .send()
        .await
        .expect("label");
    c.label_parameter_version()
        .name("/app/db/password")
        .labels("canary")
        .send()
        .await
        .expect("move label to latest");
}

#[tokio::test]
async fn parameter_store_answers_like_aws_and_survives_export_and_import() {
    let s = TestServer::start(&[SERVICE]).await;
    let c = client(&s);
    populate(&c).await;

    // SecureStrings: ciphertext unless decryption is asked for.
    let hidden = c
        .get_parameter()
        .name("/app/db/password")
        .send()
        .await
        .expect("get");
    let hidden = hidden.parameter.expect("p");
    assert_ne!(hidden.value.as_deref(), Some("third ✓"));
    assert_eq!(hidden.version, 3);
    let shown = c
        .get_parameter()
        .name("/app/db/password:prod")
        .with_decryption(true)
        .send()
        .await
        .expect("get label");
    let shown = shown.parameter.expect("p");
    assert_eq!(shown.value.as_deref(), Some("second"));
    assert_eq!(shown.selector.as_deref(), Some(":prod"));
    assert_eq!(
        shown.arn.as_deref(),
        Some("arn:aws:ssm:eu-west-1:123456789012:parameter/app/db/password")
    );

    // GetParameters reports the missing ones.
    let many = c
        .get_parameters()
        .names("/app/db/host")
        .names("/nope")
        .names("/app/db/password:9")
        .send()
        .await
        .expect("get parameters");
    assert_eq!(many.parameters().len(), 1);
    assert_eq!(many.invalid_parameters(), ["/nope", "/app/db/password:9"]);

    // Paths: one level or recursive, paginated.
    let one = c
        .get_parameters_by_path()
        .path("/app")
        .send()
        .await
        .expect("one level");
    let one: Vec<_> = one
        .parameters()
        .iter()
        .filter_map(|p| p.name.clone())
        .collect();
    assert_eq!(one, ["/app/features"]);
    let mut pages = 0;
    let mut names = Vec::new();
    let mut token = None;
    loop {
        let page = c
            .get_parameters_by_path()
            .path("/app/")
            .recursive(true)
            .max_results(2)
            .set_next_token(token)
            .send()
            .await
            .expect("page");
        pages += 1;
        names.extend(page.parameters().iter().filter_map(|p| p.name.clone()));
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages, 2);
    assert_eq!(
        names,
        [
            "/app/api/key",
            "/app/db/host",
            "/app/db/password",
            "/app/features"
        ]
    );
    let secure = c
        .get_parameters_by_path()
        .path("/app")
        .recursive(true)
        .parameter_filters(
            ParameterStringFilter::builder()
                .key("Type")
                .values("SecureString")
                .build()
                .expect("filter"),
        )
        .send()
        .await
        .expect("filtered");
    assert_eq!(secure.parameters().len(), 2);

    // DescribeParameters with filters.
    let d = c
        .describe_parameters()
        .parameter_filters(
            ParameterStringFilter::builder()
                .key("Name")
                .option("BeginsWith")
                .values("/app/db")
                .build()
                .expect("filter"),
        )
        .send()
        .await
        .expect("describe");
    assert_eq!(d.parameters().len(), 2);
    let tagged = c
        .describe_parameters()
        .parameter_filters(
            ParameterStringFilter::builder()
                .key("tag:team")
                .values("core")
                .build()
                .expect("filter"),
        )
        .send()
        .await
        .expect("describe by tag");
    assert_eq!(tagged.parameters().len(), 1);
    assert_eq!(
        tagged.parameters()[0].key_id.as_deref(),
        Some("alias/custom")
    );

    // History with labels.
    let h = c
        .get_parameter_history()
        .name("/app/db/password")
        .send()
        .await
        .expect("history");
    assert_eq!(h.parameters().len(), 3);
    assert_eq!(h.parameters()[1].labels(), ["prod"]);
    assert_eq!(h.parameters()[2].labels(), ["canary"]);
    assert_eq!(h.parameters()[0].key_id.as_deref(), Some("alias/aws/ssm"));

    // Tags.
    c.add_tags_to_resource()
        .resource_type(ResourceTypeForTagging::Parameter)
        .resource_id("/app/db/host")
        .tags(Tag::builder().key("env").value("dev").build().expect("tag"))
        .send()
        .await
        .expect("tag");
    c.remove_tags_from_resource()
        .resource_type(ResourceTypeForTagging::Parameter)
        .resource_id("/app/api/key")
        .tag_keys("team")
        .send()
        .await
        .expect("untag");

    // Advanced tier with a policy.
    let adv = c
        .put_parameter()
        .name("/app/big")
        .value("x".repeat(5000))
        .r#type(ParameterType::String)
        .policies(r#"[{"Type":"Expiration","Version":"1.0","Attributes":{"Timestamp":"2030-01-01T00:00:00.000Z"}}]"#)
        .send()
        .await
        .expect("advanced");
    assert_eq!(adv.tier, Some(ParameterTier::Advanced));
    c.delete_parameter()
        .name("/app/big")
        .send()
        .await
        .expect("delete");

    // Export → fresh emulator → import: every read answers the same.
    let before = every_read(&c).await;
    let (bundle, _) = s
        .runtime
        .export(
            None,
            &ScopeFilter::all(),
            Vec::new(),
            WriteOptions::default(),
        )
        .await
        .expect("export");
    let fresh = TestServer::start(&[SERVICE]).await;
    fresh
        .runtime
        .import(Cursor::new(bundle), None, MergeStrategy::Overwrite)
        .await
        .expect("import");
    let after = every_read(&client(&fresh)).await;
    assert_eq!(before, after);
    assert!(
        before.iter().any(|l| l.contains("\"third ✓\"")),
        "{before:#?}"
    );
    assert!(
        before.iter().any(|l| l.contains("\"k-123\"")),
        "{before:#?}"
    );

    // The summary holds counts, and the state's debug output no values.
    let svc = fresh
        .runtime
        .service(SERVICE)
        .and_then(|s| s.as_any().downcast_ref::<SsmService>().map(|_| ()))
        .is_some();
    assert!(svc);
    let summary = fresh.runtime.summary(None).await.expect("summary");
    let text = format!("{summary:?}");
    assert!(!text.contains("third") && !text.contains("k-123"), "{text}");
    let debug = fresh
        .runtime
        .service(SERVICE)
        .and_then(|s| {
            s.as_any()
                .downcast_ref::<SsmService>()
                .map(|s| s.read(|st| format!("{st:?}")))
        })
        .expect("state");
    assert!(
        !debug.contains("db.local") && !debug.contains("top level"),
        "{debug}"
    );
}

#[tokio::test]
async fn misuses_get_aws_error_codes() {
    let s = TestServer::start(&[SERVICE]).await;
    let c = client(&s);
    put(&c, "/x/a", "1", ParameterType::String, false).await;

    let e = c
        .put_parameter()
        .name("/x/a")
        .value("2")
        .r#type(ParameterType::String)
        .send()
        .await
        .expect_err("exists");
    assert_eq!(code(&e), "ParameterAlreadyExists");

    let e = c
        .get_parameter()
        .name("/x/none")
        .send()
        .await
        .expect_err("missing");
    assert_eq!(code(&e), "ParameterNotFound");
    let e = c
        .get_parameter()
        .name("/x/a:7")
        .send()
        .await
        .expect_err("version");
    assert_eq!(code(&e), "ParameterVersionNotFound");
    let e = c
        .delete_parameter()
        .name("/x/none")
        .send()
        .await
        .expect_err("delete");
    assert_eq!(code(&e), "ParameterNotFound");

    for bad in ["a/b", "/aws/reserved", "/with space", "ssm-thing"] {
        let e = c
            .put_parameter()
            .name(bad)
            .value("v")
            .r#type(ParameterType::String)
            .send()
            .await
            .expect_err(bad);
        assert_eq!(code(&e), "ValidationException", "{bad}");
    }
    let deep = "/l".repeat(16);
    let e = c
        .put_parameter()
        .name(deep)
        .value("v")
        .r#type(ParameterType::String)
        .send()
        .await
        .expect_err("deep");
    assert_eq!(code(&e), "HierarchyLevelLimitExceededException");

    let e = c
        .put_parameter()
        .name("/x/big")
        .value("x".repeat(4097))
        .r#type(ParameterType::String)
        .tier(ParameterTier::Standard)
        .send()
        .await
        .expect_err("too big");
    assert_eq!(code(&e), "ValidationException");

    let e = c
        .put_parameter()
        .name("/x/a")
        .value("v")
        .overwrite(true)
        .tags(Tag::builder().key("k").value("v").build().expect("tag"))
        .send()
        .await
        .expect_err("tags and overwrite");
    assert_eq!(code(&e), "ValidationException");

    let e = c
        .put_parameter()
        .name("/x/pattern")
        .value("abc")
        .r#type(ParameterType::String)
        .allowed_pattern("^[0-9]+$")
        .send()
        .await
        .expect_err("pattern");
    assert_eq!(code(&e), "ParameterPatternMismatchException");

    let e = c
        .put_parameter()
        .name("/x/notype")
        .value("abc")
        .send()
        .await
        .expect_err("type");
    assert_eq!(code(&e), "ValidationException");

    let e = c
        .label_parameter_version()
        .name("/x/a")
        .parameter_version(5)
        .labels("l")
        .send()
        .await
        .expect_err("label version");
    assert_eq!(code(&e), "ParameterVersionNotFound");
    let bad = c
        .label_parameter_version()
        .name("/x/a")
        .labels("1starts-with-digit")
        .labels("fine")
        .send()
        .await
        .expect("label");
    assert_eq!(bad.invalid_labels(), ["1starts-with-digit"]);

    let e = c
        .get_parameters_by_path()
        .path("/x")
        .parameter_filters(
            ParameterStringFilter::builder()
                .key("Path")
                .values("/x")
                .build()
                .expect("filter"),
        )
        .send()
        .await
        .expect_err("path filter");
    assert_eq!(code(&e), "InvalidFilterKey");
    let e = c
        .describe_parameters()
        .next_token("not-a-token")
        .send()
        .await
        .expect_err("token");
    assert_eq!(code(&e), "InvalidNextToken");

    let e = c
        .list_tags_for_resource()
        .resource_type(ResourceTypeForTagging::Parameter)
        .resource_id("/x/none")
        .send()
        .await
        .expect_err("tags of nothing");
    assert_eq!(code(&e), "InvalidResourceId");

    // The rest of SSM is answered, with a clear refusal, never a 501.
    let e = c
        .describe_instance_information()
        .send()
        .await
        .expect_err("not parameter store");
    assert_eq!(code(&e), "ValidationException");
    assert!(
        e.as_service_error()
            .and_then(|e| e.message())
            .is_some_and(|m| m.contains("Parameter Store only")),
        "{e:?}"
    );
}

#[tokio::test]
async fn the_oldest_of_a_hundred_versions_goes_unless_labelled() {
    let s = TestServer::start(&[SERVICE]).await;
    let c = client(&s);
    put(&c, "/v", "0", ParameterType::String, false).await;
    c.label_parameter_version()
        .name("/v")
        .parameter_version(1)
        .labels("keep")
        .send()
        .await
        .expect("label");
    for i in 1..100 {
        put(&c, "/v", &i.to_string(), ParameterType::String, true).await;
    }
    let e = c
        .put_parameter()
        .name("/v")
        .value("101")
        .overwrite(true)
        .send()
        .await
        .expect_err("labelled oldest");
    assert_eq!(code(&e), "ParameterMaxVersionLimitExceeded");
    c.unlabel_parameter_version()
        .name("/v")
        .parameter_version(1)
        .labels("keep")
        .send()
        .await
        .expect("unlabel");
    assert_eq!(put(&c, "/v", "101", ParameterType::String, true).await, 101);
    let e = c
        .get_parameter()
        .name("/v:1")
        .send()
        .await
        .expect_err("gone");
    assert_eq!(code(&e), "ParameterVersionNotFound");
}
