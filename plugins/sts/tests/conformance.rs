//! Conformance of the STS provider: issued sessions survive capture → bundle → fresh runtime
//! → apply for every merge strategy, and merges combine overlapping states session by session.

use cryopod::protocol::query::{QueryRequest, Xml};
use cryopod::testing::{call, check_operations, check_registration, runtime_with};
use cryopod::{Body, Runtime, Scope, ScopedState, ServiceState};
use cryopod_sts::SERVICE;
use cryopod_sts::state::{Session, SessionKind, StsState};

fn form(body: String) -> http::Request<Body> {
    http::Request::builder()
        .method("POST")
        .uri("/")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .expect("request")
}

async fn ok(rt: &Runtime, scope: &Scope, body: &str) -> String {
    let a = call(rt, SERVICE, scope, form(body.to_string())).await;
    let text = String::from_utf8_lossy(&a.body).to_string();
    assert!(a.status.is_success(), "{body}: {text}");
    text
}

/// Sessions of every kind in two accounts.
async fn populate(rt: &Runtime) {
    for account in ["111111111111", "222222222222"] {
        let s = Scope::new(account, "eu-west-1");
        ok(rt, &s, &format!(
            "Action=AssumeRole&RoleArn=arn:aws:iam::{account}:role/app&RoleSessionName=one&SourceIdentity=me&Tags.member.1.Key=team&Tags.member.1.Value=core"
        ))
        .await;
        ok(rt, &s, "Action=GetSessionToken&DurationSeconds=1800").await;
        ok(rt, &s, "Action=GetFederationToken&Name=fed").await;
        ok(rt, &s, &format!("Action=AssumeRoot&TargetPrincipal={account}&TaskPolicyArn.arn=arn:aws:iam::aws:policy/root-task/IAMAuditRootUserCredentials")).await;
    }
}

fn rt() -> Runtime {
    runtime_with(&[SERVICE])
}

#[tokio::test]
async fn registration_and_operations_are_consistent() {
    check_registration(SERVICE);
    let r = rt();
    check_operations(&r, SERVICE, |op| form(format!("Action={op}"))).await;
}

#[tokio::test]
async fn a_rich_state_survives_every_strategy() {
    let r = rt();
    populate(&r).await;
    let summary = r.summary(None).await.expect("summary");
    assert_eq!(
        summary[SERVICE].len(),
        2,
        "two accounts, sessions kept in us-east-1"
    );
    cryopod::testing::check_provider(SERVICE, &r, rt)
        .await
        .expect("conformance");
}

fn session(arn: &str) -> Session {
    Session {
        kind: SessionKind::AssumedRole,
        arn: arn.into(),
        user_id: "AROAEXAMPLE:s".into(),
        secret_access_key: "secret".into(),
        session_token: "token".into(),
        issued: 1,
        expiration: 3601,
        role_arn: Some("arn:aws:iam::111111111111:role/r".into()),
        source_identity: None,
        tags: vec![],
    }
}

#[test]
fn merges_combine_sessions_one_by_one() {
    let s = Scope::new("111111111111", "us-east-1");
    let other = Scope::new("222222222222", "us-east-1");
    let mut a = StsState::default();
    let mut b = StsState::default();
    let sa = a.scoped_mut().get_mut(&s);
    sa.sessions
        .insert("ASIA111111111111AAAA".into(), session("a-only"));
    sa.sessions
        .insert("ASIA111111111111CCCC".into(), session("running"));
    let sb = b.scoped_mut().get_mut(&s);
    sb.sessions
        .insert("ASIA111111111111BBBB".into(), session("b-only"));
    sb.sessions
        .insert("ASIA111111111111CCCC".into(), session("bundle"));
    a.scoped_mut()
        .get_mut(&other)
        .sessions
        .insert("ASIA222222222222AAAA".into(), session("elsewhere"));
    cryopod::testing::check_merges(&a, &b);
    assert_eq!(a.service(), SERVICE);
    // Parsing stays in the framework: the plugin's requests are plain query forms.
    assert!(QueryRequest::parse(Some("Action=GetCallerIdentity"), b"").is_ok());
    assert!(Xml::new().as_str().is_empty());
}
