//! IAM through the official AWS SDK for Rust over real HTTP: CRUD, AWS's refusals, access
//! keys the gateway maps to the user's account, and export → fresh emulator → import.

use std::io::Cursor;

use aws_sdk_iam::Client;
use aws_sdk_iam::config::{Credentials, Region};
use aws_sdk_iam::error::ProvideErrorMetadata;
use cryopod::bundle::WriteOptions;
use cryopod::server::TestServer;
use cryopod::{MergeStrategy, ScopeFilter};

const ACCOUNT: &str = "123456789012";
const TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
const POLICY: &str = r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}"#;

fn conf(server: &TestServer, key: &str, region: &str) -> aws_types::SdkConfig {
    aws_types::SdkConfig::builder()
        .behavior_version(aws_sdk_iam::config::BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .endpoint_url(&server.endpoint)
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(
                key, "secret", None, None, "t",
            )),
        )
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build()
}

fn iam(server: &TestServer, key: &str) -> Client {
    Client::new(&conf(server, key, "eu-central-1"))
}

async fn server() -> TestServer {
    assert_eq!(cryopod_iam::SERVICE, "iam");
    assert_eq!(cryopod_sts::SERVICE, "sts");
    TestServer::start(&["iam", "sts"]).await
}

fn decode(doc: &str) -> String {
    let mut out = Vec::new();
    let b = doc.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let h = u8::from_str_radix(&doc[i + 1..i + 3], 16).expect("hex");
            out.push(h);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("utf8")
}

/// A role with a trust policy, an inline and a managed policy, and a user with an access key.
async fn populate(c: &Client) -> String {
    c.create_role()
        .role_name("app")
        .path("/svc/")
        .assume_role_policy_document(TRUST)
        .description("the app")
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key("team")
                .value("core")
                .build()
                .expect("tag"),
        )
        .send()
        .await
        .expect("create role");
    let p = c
        .create_policy()
        .policy_name("s3-all")
        .policy_document(POLICY)
        .send()
        .await
        .expect("create policy");
    let arn = p.policy().and_then(|p| p.arn()).expect("arn").to_string();
    c.attach_role_policy()
        .role_name("app")
        .policy_arn(&arn)
        .send()
        .await
        .expect("attach");
    c.put_role_policy()
        .role_name("app")
        .policy_name("inline")
        .policy_document(POLICY)
        .send()
        .await
        .expect("inline");
    c.create_user()
        .user_name("alice")
        .send()
        .await
        .expect("user");
    c.create_group()
        .group_name("devs")
        .send()
        .await
        .expect("group");
    c.add_user_to_group()
        .group_name("devs")
        .user_name("alice")
        .send()
        .await
        .expect("member");
    let key = c
        .create_access_key()
        .user_name("alice")
        .send()
        .await
        .expect("key");
    let key = key.access_key().expect("access key");
    assert!(key.access_key_id().starts_with(&format!("AKIA{ACCOUNT}")));
    assert_eq!(key.secret_access_key().len(), 40);
    c.create_instance_profile()
        .instance_profile_name("web")
        .send()
        .await
        .expect("profile");
    c.add_role_to_instance_profile()
        .instance_profile_name("web")
        .role_name("app")
        .send()
        .await
        .expect("add role");
    key.access_key_id().to_string()
}

/// Every read the test cares about, as comparable text.
async fn reads(c: &Client) -> Vec<String> {
    let role = c
        .get_role()
        .role_name("app")
        .send()
        .await
        .expect("get role");
    let role = role.role().expect("role");
    let users = c.list_users().send().await.expect("users");
    let keys = c
        .list_access_keys()
        .user_name("alice")
        .send()
        .await
        .expect("keys");
    let attached = c
        .list_attached_role_policies()
        .role_name("app")
        .send()
        .await
        .expect("attached");
    let inline = c
        .get_role_policy()
        .role_name("app")
        .policy_name("inline")
        .send()
        .await
        .expect("inline");
    let groups = c
        .list_groups_for_user()
        .user_name("alice")
        .send()
        .await
        .expect("groups");
    let profile = c
        .get_instance_profile()
        .instance_profile_name("web")
        .send()
        .await
        .expect("ip");
    vec![
        format!(
            "{:?}",
            (
                role.arn(),
                role.role_id(),
                role.path(),
                role.description(),
                role.tags()
            )
        ),
        decode(role.assume_role_policy_document().unwrap_or_default()),
        format!(
            "{:?}",
            users
                .users()
                .iter()
                .map(|u| (u.user_name(), u.user_id(), u.arn()))
                .collect::<Vec<_>>()
        ),
        format!(
            "{:?}",
            keys.access_key_metadata()
                .iter()
                .map(|k| (k.access_key_id(), k.status()))
                .collect::<Vec<_>>()
        ),
        format!("{:?}", attached.attached_policies()),
        decode(inline.policy_document()),
        format!(
            "{:?}",
            groups
                .groups()
                .iter()
                .map(|g| g.group_name())
                .collect::<Vec<_>>()
        ),
        format!(
            "{:?}",
            profile.instance_profile().map(|p| p
                .roles()
                .iter()
                .map(|r| r.role_name())
                .collect::<Vec<_>>())
        ),
    ]
}

#[tokio::test]
async fn crud_documents_and_keys_behave_as_in_aws() {
    let s = server().await;
    let c = iam(&s, ACCOUNT);
    let key = populate(&c).await;
    let r = reads(&c).await;
    assert_eq!(
        r[1], TRUST,
        "trust policy returned exactly (URL-encoded on the wire)"
    );
    assert_eq!(r[5], POLICY);
    assert!(
        r[0].contains("arn:aws:iam::123456789012:role/svc/app"),
        "{}",
        r[0]
    );

    // The new key is accepted and acts in the user's account, as the user.
    let sts = aws_sdk_sts::Client::new(&conf(&s, &key, "us-west-2"));
    let id = sts.get_caller_identity().send().await.expect("identity");
    assert_eq!(id.account(), Some(ACCOUNT));
    assert_eq!(id.arn(), Some("arn:aws:iam::123456789012:user/alice"));
    let as_alice = iam(&s, &key);
    let me = as_alice.get_user().send().await.expect("get user as alice");
    assert_eq!(me.user().map(|u| u.user_name()), Some("alice"));

    // IAM is global: another region sees the same resources.
    let other = Client::new(&conf(&s, ACCOUNT, "ap-south-1"));
    assert_eq!(
        other
            .list_roles()
            .send()
            .await
            .expect("roles")
            .roles()
            .len(),
        1
    );
    // Another account sees none.
    assert!(
        iam(&s, "999999999999")
            .list_roles()
            .send()
            .await
            .expect("roles")
            .roles()
            .is_empty()
    );

    let summary = c.get_account_summary().send().await.expect("summary");
    let map = summary.summary_map().expect("map");
    assert_eq!(
        map.get(&aws_sdk_iam::types::SummaryKeyType::Users),
        Some(&1)
    );
}

#[tokio::test]
async fn misuses_get_aws_error_codes() {
    let s = server().await;
    let c = iam(&s, ACCOUNT);
    populate(&c).await;
    let code = |e: &dyn ProvideErrorMetadata| e.code().map(str::to_string);
    let e = c
        .get_role()
        .role_name("nope")
        .send()
        .await
        .expect_err("missing");
    assert_eq!(code(&e).as_deref(), Some("NoSuchEntity"));
    assert!(e.into_service_error().is_no_such_entity_exception());
    let e = c
        .create_user()
        .user_name("alice")
        .send()
        .await
        .expect_err("dup");
    assert!(e.into_service_error().is_entity_already_exists_exception());
    let e = c
        .create_role()
        .role_name("bad")
        .assume_role_policy_document("{not json")
        .send()
        .await
        .expect_err("malformed");
    assert!(
        e.into_service_error()
            .is_malformed_policy_document_exception()
    );
    let e = c
        .create_policy()
        .policy_name("nostatement")
        .policy_document(r#"{"Version":"2012-10-17"}"#)
        .send()
        .await
        .expect_err("no statement");
    assert_eq!(code(&e).as_deref(), Some("MalformedPolicyDocument"));
    let e = c
        .delete_role()
        .role_name("app")
        .send()
        .await
        .expect_err("has policies");
    assert!(e.into_service_error().is_delete_conflict_exception());
    let e = c
        .delete_user()
        .user_name("alice")
        .send()
        .await
        .expect_err("has keys");
    assert_eq!(code(&e).as_deref(), Some("DeleteConflict"));
    c.create_access_key()
        .user_name("alice")
        .send()
        .await
        .expect("second key");
    let e = c
        .create_access_key()
        .user_name("alice")
        .send()
        .await
        .expect_err("third key");
    assert!(e.into_service_error().is_limit_exceeded_exception());
    let e = c
        .create_user()
        .user_name("bad name!")
        .send()
        .await
        .expect_err("pattern");
    assert_eq!(code(&e).as_deref(), Some("ValidationError"));
    let e = c
        .create_role()
        .role_name("x".repeat(65))
        .assume_role_policy_document(TRUST)
        .send()
        .await
        .expect_err("long");
    assert_eq!(code(&e).as_deref(), Some("ValidationError"));
    let e = c
        .create_account_alias()
        .account_alias("ok-alias")
        .send()
        .await;
    assert!(e.is_ok());
    let e = c
        .create_account_alias()
        .account_alias("second")
        .send()
        .await
        .expect_err("one alias");
    assert_eq!(code(&e).as_deref(), Some("LimitExceeded"));
    // An operation outside the documented scope is named, never a 501.
    let e = c
        .list_open_id_connect_providers()
        .send()
        .await
        .expect_err("unsupported");
    assert_eq!(code(&e).as_deref(), Some("UnsupportedOperation"));
    assert!(
        e.message()
            .unwrap_or_default()
            .contains("ListOpenIDConnectProviders")
    );
}

#[tokio::test]
async fn policy_versions_and_trust_updates() {
    let s = server().await;
    let c = iam(&s, ACCOUNT);
    populate(&c).await;
    let arn = format!("arn:aws:iam::{ACCOUNT}:policy/s3-all");
    for _ in 0..4 {
        c.create_policy_version()
            .policy_arn(&arn)
            .policy_document(POLICY)
            .send()
            .await
            .expect("version");
    }
    let e = c
        .create_policy_version()
        .policy_arn(&arn)
        .policy_document(POLICY)
        .send()
        .await
        .expect_err("six");
    assert!(e.into_service_error().is_limit_exceeded_exception());
    c.set_default_policy_version()
        .policy_arn(&arn)
        .version_id("v3")
        .send()
        .await
        .expect("default");
    let p = c
        .get_policy()
        .policy_arn(&arn)
        .send()
        .await
        .expect("get policy");
    assert_eq!(p.policy().and_then(|p| p.default_version_id()), Some("v3"));
    assert_eq!(p.policy().and_then(|p| p.attachment_count()), Some(1));
    let e = c
        .delete_policy_version()
        .policy_arn(&arn)
        .version_id("v3")
        .send()
        .await
        .expect_err("default");
    assert!(e.into_service_error().is_delete_conflict_exception());
    let versions = c
        .list_policy_versions()
        .policy_arn(&arn)
        .send()
        .await
        .expect("versions");
    assert_eq!(versions.versions().len(), 5);
    let ents = c
        .list_entities_for_policy()
        .policy_arn(&arn)
        .send()
        .await
        .expect("entities");
    assert_eq!(ents.policy_roles().len(), 1);
    let new_trust = r#"{"Version":"2012-10-17","Statement":[]}"#;
    c.update_assume_role_policy()
        .role_name("app")
        .policy_document(new_trust)
        .send()
        .await
        .expect("trust");
    let role = c.get_role().role_name("app").send().await.expect("role");
    assert_eq!(
        decode(
            role.role()
                .and_then(|r| r.assume_role_policy_document())
                .unwrap_or_default()
        ),
        new_trust
    );
}

#[tokio::test]
async fn export_then_import_into_a_fresh_emulator_gives_the_same_answers() {
    let a = server().await;
    let key = populate(&iam(&a, ACCOUNT)).await;
    let before = reads(&iam(&a, ACCOUNT)).await;
    let (bundle, _) = a
        .runtime
        .export(
            None,
            &ScopeFilter::all(),
            Vec::new(),
            WriteOptions::default(),
        )
        .await
        .expect("export");
    let b = server().await;
    b.runtime
        .import(Cursor::new(bundle), None, MergeStrategy::AccountRegionMerge)
        .await
        .expect("import");
    assert_eq!(reads(&iam(&b, ACCOUNT)).await, before);
    let sts = aws_sdk_sts::Client::new(&conf(&b, &key, "us-east-1"));
    let id = sts
        .get_caller_identity()
        .send()
        .await
        .expect("identity with the imported key");
    assert_eq!(id.arn(), Some("arn:aws:iam::123456789012:user/alice"));
    let me = iam(&b, &key)
        .get_user()
        .send()
        .await
        .expect("the imported key is accepted");
    assert_eq!(me.user().map(|u| u.user_name()), Some("alice"));
}
