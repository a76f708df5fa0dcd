//! STS through the official AWS SDK for Rust over real HTTP: the caller's account comes from
//! the access key id as the gateway maps it, and assumed-role credentials act in the role's
//! account.

use aws_sdk_sts::Client;
use aws_sdk_sts::config::{Credentials, Region};
use cryopod::server::TestServer;

fn client(server: &TestServer, key: &str, secret: &str, token: Option<String>) -> Client {
    let conf = aws_sdk_sts::Config::builder()
        .behavior_version_latest()
        .region(Region::new("eu-west-1"))
        .endpoint_url(&server.endpoint)
        .credentials_provider(Credentials::new(key, secret, token, None, "t"))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    Client::from_conf(conf)
}

async fn server() -> TestServer {
    assert_eq!(cryopod_sts::SERVICE, "sts");
    TestServer::start(&["sts"]).await
}

#[tokio::test]
async fn get_caller_identity_answers_the_account_of_the_key() {
    let s = server().await;
    let id = client(&s, "123456789012", "x", None)
        .get_caller_identity()
        .send()
        .await
        .expect("identity");
    assert_eq!(id.account(), Some("123456789012"));
    assert_eq!(id.arn(), Some("arn:aws:iam::123456789012:root"));
    let id = client(&s, "test", "test", None)
        .get_caller_identity()
        .send()
        .await
        .expect("identity");
    assert_eq!(id.account(), Some("000000000000"));
}

#[tokio::test]
async fn assumed_role_credentials_act_in_the_roles_account() {
    let s = server().await;
    let c = client(&s, "test", "test", None);
    let out = c
        .assume_role()
        .role_arn("arn:aws:iam::210987654321:role/deploy/Deployer")
        .role_session_name("ci-run")
        .duration_seconds(900)
        .send()
        .await
        .expect("assume role");
    let creds = out.credentials().expect("credentials");
    assert!(creds.access_key_id().starts_with("ASIA210987654321"));
    let user = out.assumed_role_user().expect("assumed role user");
    assert_eq!(
        user.arn(),
        "arn:aws:sts::210987654321:assumed-role/Deployer/ci-run"
    );
    assert!(user.assumed_role_id().ends_with(":ci-run"));
    let as_role = client(
        &s,
        creds.access_key_id(),
        creds.secret_access_key(),
        Some(creds.session_token().to_string()),
    );
    let id = as_role
        .get_caller_identity()
        .send()
        .await
        .expect("identity");
    assert_eq!(id.account(), Some("210987654321"));
    assert_eq!(
        id.arn(),
        Some("arn:aws:sts::210987654321:assumed-role/Deployer/ci-run")
    );
    // Session credentials cannot get a session token, as in AWS.
    let err = as_role
        .get_session_token()
        .send()
        .await
        .expect_err("refused");
    assert_eq!(
        err.as_service_error().and_then(|e| e.meta().code()),
        Some("AccessDenied")
    );
    let info = c
        .get_access_key_info()
        .access_key_id(creds.access_key_id())
        .send()
        .await
        .expect("key info");
    assert_eq!(info.account(), Some("210987654321"));
}

#[tokio::test]
async fn web_identity_session_and_federation_tokens_are_issued() {
    use base64::Engine;
    let s = server().await;
    let c = client(&s, "111122223333", "x", None);
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
        br#"{"sub":"repo:org/app","aud":"sts.amazonaws.com","iss":"https://token.actions"}"#,
    );
    let out = c
        .assume_role_with_web_identity()
        .role_arn("arn:aws:iam::111122223333:role/gha")
        .role_session_name("gha")
        .web_identity_token(format!("e30.{payload}.sig"))
        .send()
        .await
        .expect("web identity");
    assert_eq!(out.subject_from_web_identity_token(), Some("repo:org/app"));
    assert_eq!(out.audience(), Some("sts.amazonaws.com"));
    let err = c
        .assume_role_with_web_identity()
        .role_arn("arn:aws:iam::111122223333:role/gha")
        .role_session_name("gha")
        .web_identity_token("not-a-jwt")
        .send()
        .await
        .expect_err("refused");
    assert!(
        err.into_service_error()
            .is_invalid_identity_token_exception()
    );

    let t = c.get_session_token().send().await.expect("session token");
    let key = t.credentials().expect("creds").access_key_id().to_string();
    assert!(key.starts_with("ASIA111122223333"));
    let f = c
        .get_federation_token()
        .name("bob")
        .policy(r#"{"Version":"2012-10-17","Statement":[]}"#)
        .send()
        .await
        .expect("federation");
    assert_eq!(
        f.federated_user().map(|u| u.arn()),
        Some("arn:aws:sts::111122223333:federated-user/bob")
    );
    let err = c
        .get_federation_token()
        .name("bob")
        .policy("{not json")
        .send()
        .await
        .expect_err("malformed");
    assert!(
        err.into_service_error()
            .is_malformed_policy_document_exception()
    );
}

#[tokio::test]
async fn misuses_get_aws_error_codes() {
    let s = server().await;
    let c = client(&s, "test", "test", None);
    let code = |e: &aws_sdk_sts::error::SdkError<_, _>| -> Option<String> {
        use aws_sdk_sts::error::ProvideErrorMetadata;
        match e {
            aws_sdk_sts::error::SdkError::ServiceError(se) => {
                let e: &aws_sdk_sts::operation::assume_role::AssumeRoleError = se.err();
                e.code().map(str::to_string)
            }
            _ => None,
        }
    };
    let e = c
        .assume_role()
        .role_arn("arn:aws:iam::123456789012:user/alice")
        .role_session_name("s")
        .send()
        .await
        .expect_err("not a role");
    // A user ARN is not a role ARN.
    assert_eq!(code(&e).as_deref(), Some("ValidationError"));
    let e = c
        .assume_role()
        .role_arn("arn:aws:iam::123456789012:role/r")
        .role_session_name("ok-name")
        .duration_seconds(60)
        .send()
        .await
        .expect_err("too short");
    assert_eq!(code(&e).as_deref(), Some("ValidationError"));
    let e = c
        .decode_authorization_message()
        .encoded_message("abc")
        .send()
        .await
        .expect_err("nothing to decode");
    assert!(
        e.into_service_error()
            .is_invalid_authorization_message_exception()
    );
}

#[tokio::test]
async fn unsigned_query_requests_route_by_action_and_unknown_ones_are_named() {
    let s = server().await;
    let http = |body: &'static str| {
        let endpoint = s.endpoint.clone();
        async move {
            let resp = reqwest::Client::new()
                .post(&endpoint)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .expect("post");
            (resp.status().as_u16(), resp.text().await.expect("text"))
        }
    };
    let (status, text) = http("Action=GetCallerIdentity&Version=2011-06-15").await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("<Account>000000000000</Account>"), "{text}");
    assert!(text.contains("<GetCallerIdentityResult>"), "{text}");
    let (status, text) = http("Action=GetTrustBundles&Version=2011-06-15").await;
    assert_eq!(status, 400);
    assert!(
        text.contains("UnsupportedOperation") && text.contains("GetTrustBundles"),
        "{text}"
    );
}
