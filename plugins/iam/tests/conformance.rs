//! Conformance of the IAM provider: a rich state survives capture → bundle → fresh runtime
//! → apply for every merge strategy; merges combine overlapping states unit by unit (users,
//! groups, roles, policies, policy versions, access keys, instance profiles).

use cryopod::testing::{call, check_operations, check_registration, runtime_with};
use cryopod::{Body, Runtime, Scope, ScopedState};
use cryopod_iam::SERVICE;
use cryopod_iam::state::IamState;

fn form(body: &str) -> http::Request<Body> {
    http::Request::builder()
        .method("POST")
        .uri("/")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(body.to_string()))
        .expect("request")
}

const DOC: &str = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%5D%7D";

async fn ok(rt: &Runtime, scope: &Scope, body: &str) {
    let a = call(rt, SERVICE, scope, form(body)).await;
    assert!(
        a.status.is_success(),
        "{body}: {}",
        String::from_utf8_lossy(&a.body)
    );
}

/// Every resource type and setting, in `account`.
async fn populate(rt: &Runtime, account: &str, extra: &str) {
    let s = Scope::new(account, "eu-west-1");
    for body in [
        "Action=CreateUser&UserName=alice&Path=/people/&Tags.member.1.Key=k&Tags.member.1.Value=v&PermissionsBoundary=arn:aws:iam::aws:policy/PowerUserAccess".to_string(),
        format!("Action=CreateUser&UserName={extra}"),
        "Action=CreateGroup&GroupName=devs".into(),
        "Action=AddUserToGroup&GroupName=devs&UserName=alice".into(),
        format!("Action=CreateRole&RoleName=app&AssumeRolePolicyDocument={DOC}&Description=d&MaxSessionDuration=7200&Tags.member.1.Key=t&Tags.member.1.Value=1"),
        format!("Action=CreatePolicy&PolicyName=p&PolicyDocument={DOC}&Description=pd"),
        format!("Action=CreatePolicyVersion&PolicyArn=arn:aws:iam::{account}:policy/p&PolicyDocument={DOC}&SetAsDefault=true"),
        format!("Action=AttachRolePolicy&RoleName=app&PolicyArn=arn:aws:iam::{account}:policy/p"),
        "Action=AttachUserPolicy&UserName=alice&PolicyArn=arn:aws:iam::aws:policy/ReadOnlyAccess".into(),
        format!("Action=PutUserPolicy&UserName=alice&PolicyName=i&PolicyDocument={DOC}"),
        format!("Action=PutGroupPolicy&GroupName=devs&PolicyName=g&PolicyDocument={DOC}"),
        format!("Action=PutRolePolicy&RoleName=app&PolicyName=r&PolicyDocument={DOC}"),
        "Action=CreateAccessKey&UserName=alice".into(),
        "Action=CreateLoginProfile&UserName=alice&Password=pw&PasswordResetRequired=true".into(),
        "Action=CreateInstanceProfile&InstanceProfileName=web&Tags.member.1.Key=a&Tags.member.1.Value=b".into(),
        "Action=AddRoleToInstanceProfile&InstanceProfileName=web&RoleName=app".into(),
        "Action=CreateAccountAlias&AccountAlias=my-alias".into(),
    ] {
        ok(rt, &s, &body).await;
    }
}

fn rt() -> Runtime {
    runtime_with(&[SERVICE])
}

#[tokio::test]
async fn registration_and_operations_are_consistent() {
    check_registration(SERVICE);
    let r = rt();
    check_operations(&r, SERVICE, |op| form(&format!("Action={op}"))).await;
}

#[tokio::test]
async fn a_rich_state_survives_every_strategy() {
    let r = rt();
    populate(&r, "111111111111", "bob").await;
    populate(&r, "222222222222", "carol").await;
    let summary = r.summary(None).await.expect("summary");
    assert_eq!(summary[SERVICE].len(), 2, "global: one scope per account");
    cryopod::testing::check_provider(SERVICE, &r, rt)
        .await
        .expect("conformance");
}

async fn state_of(r: &Runtime) -> IamState {
    let cap = r
        .capture(Some(&[SERVICE.to_string()]), &cryopod::ScopeFilter::all())
        .await
        .expect("capture");
    cap.services[SERVICE]
        .clone()
        .downcast::<IamState>(SERVICE)
        .expect("iam state")
}

#[tokio::test]
async fn merges_combine_overlapping_states_unit_by_unit() {
    let (ra, rb) = (rt(), rt());
    // Both hold alice, devs, app, p (created separately: other ids), each has its own extra
    // user, and only the running side has a second account.
    populate(&ra, "111111111111", "bob").await;
    populate(&ra, "222222222222", "dave").await;
    populate(&rb, "111111111111", "carol").await;
    let a = state_of(&ra).await;
    let mut b = state_of(&rb).await;
    // A policy version only the incoming state has.
    let s = Scope::new("111111111111", "us-east-1");
    if let Some(p) = b
        .scoped_mut()
        .get_mut(&s)
        .policies
        .get_mut("arn:aws:iam::111111111111:policy/p")
    {
        let v = p.versions["v1"].clone();
        p.versions.insert("v3".into(), v);
    }
    cryopod::testing::check_merges(&a, &b);
}
