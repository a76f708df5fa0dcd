//! The STS operations, on query-protocol input and XML output.
//!
//! Every operation of the botocore model is answered: the nine below are implemented, the
//! rest ([`UNSUPPORTED`]) answer `UnsupportedOperation` naming themselves.

use base64::Engine;
use cryopod::aws::{KeyKind, issue_access_key_id, issue_secret_access_key, random_chars};
use cryopod::protocol::query::{self, QueryError, QueryRequest, Text, Xml};
use cryopod::{AwsError, Scope};
use http::StatusCode;

use crate::state::{Session, SessionKind, StsState};

/// The XML namespace of STS responses.
pub const XMLNS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// The operations this emulator implements.
pub const OPERATIONS: &[&str] = &[
    "AssumeRole",
    "AssumeRoleWithSAML",
    "AssumeRoleWithWebIdentity",
    "AssumeRoot",
    "DecodeAuthorizationMessage",
    "GetAccessKeyInfo",
    "GetCallerIdentity",
    "GetFederationToken",
    "GetSessionToken",
];

/// Operations of the STS API that this emulator answers with `UnsupportedOperation`.
pub const UNSUPPORTED: &[&str] = &[
    "GetCertificate",
    "GetDelegatedAccessToken",
    "GetScopedCredentials",
    "GetTrustBundles",
    "GetWebIdentityToken",
    "IssueWorkloadIdentityContext",
];

/// Every STS action, implemented or not: what unsigned query requests are routed by.
pub const ACTIONS: &[&str] = &[
    "AssumeRole",
    "AssumeRoleWithSAML",
    "AssumeRoleWithWebIdentity",
    "AssumeRoot",
    "DecodeAuthorizationMessage",
    "GetAccessKeyInfo",
    "GetCallerIdentity",
    "GetFederationToken",
    "GetSessionToken",
    "GetCertificate",
    "GetDelegatedAccessToken",
    "GetScopedCredentials",
    "GetTrustBundles",
    "GetWebIdentityToken",
    "IssueWorkloadIdentityContext",
];

/// The region every session is kept in: STS identities are global.
pub const HOME_REGION: &str = "us-east-1";

/// STS's errors, each with AWS's code and status.
#[derive(Debug, thiserror::Error)]
pub enum StsError {
    /// A parameter is missing or breaks its shape.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// A parameter has the right shape but a wrong value (`ValidationError`).
    #[error("{0}")]
    Invalid(String),
    /// A session policy that is not a JSON policy document.
    #[error("{0}")]
    MalformedPolicy(String),
    /// A session policy above the packed size limit.
    #[error(
        "Packed policy consumes {0}% of allotted space, please use smaller policy for session."
    )]
    PackedPolicyTooLarge(u64),
    /// A web identity token that is not a JWT.
    #[error("{0}")]
    InvalidIdentityToken(String),
    /// The caller's temporary credentials have expired.
    #[error("The security token included in the request is expired")]
    ExpiredToken,
    /// An operation that long-term credentials must call.
    #[error("{0}")]
    AccessDenied(String),
    /// `DecodeAuthorizationMessage`: the emulator never encodes one.
    #[error(
        "This emulator enforces no policies, so it never issues encoded authorization messages; the message cannot be decoded"
    )]
    InvalidAuthorizationMessage,
}

impl From<StsError> for AwsError {
    fn from(e: StsError) -> Self {
        let (status, code) = match &e {
            StsError::Query(q) => return q.clone().into(),
            StsError::Invalid(_) => (StatusCode::BAD_REQUEST, "ValidationError"),
            StsError::MalformedPolicy(_) => (StatusCode::BAD_REQUEST, "MalformedPolicyDocument"),
            StsError::PackedPolicyTooLarge(_) => (StatusCode::BAD_REQUEST, "PackedPolicyTooLarge"),
            StsError::InvalidIdentityToken(_) => (StatusCode::BAD_REQUEST, "InvalidIdentityToken"),
            StsError::ExpiredToken => (StatusCode::BAD_REQUEST, "ExpiredTokenException"),
            StsError::AccessDenied(_) => (StatusCode::FORBIDDEN, "AccessDenied"),
            StsError::InvalidAuthorizationMessage => (
                StatusCode::BAD_REQUEST,
                "InvalidAuthorizationMessageException",
            ),
        };
        AwsError::new(status, code, e.to_string())
    }
}

/// Result of an STS operation.
pub type StsResult<T> = Result<T, StsError>;

/// Who is calling: the account the gateway derived and the key id signed with.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The caller's account.
    pub account: String,
    /// The access key id, if the request was signed.
    pub key: Option<String>,
    /// The identity of a long-term key as IAM knows it (`arn`, `user id`), looked up by
    /// the provider before the operation runs.
    pub iam_user: Option<(String, String)>,
    /// Now, seconds since the Unix epoch.
    pub now: i64,
}

impl Caller {
    /// The scope sessions of `account` live in.
    pub fn home(account: &str) -> Scope {
        Scope::new(account, HOME_REGION)
    }

    /// The caller's session, if its key is temporary credentials this STS issued.
    fn session<'a>(&self, state: &'a StsState) -> Option<&'a Session> {
        let key = self.key.as_deref()?;
        state
            .scopes
            .get(&Self::home(&self.account))?
            .sessions
            .get(key)
    }

    /// `(Arn, UserId)` of the caller; an expired session is refused.
    fn identity(&self, state: &StsState) -> StsResult<(String, String)> {
        if let Some(s) = self.session(state) {
            if s.expiration <= self.now {
                return Err(StsError::ExpiredToken);
            }
            return Ok((s.arn.clone(), s.user_id.clone()));
        }
        if let Some(user) = &self.iam_user {
            return Ok(user.clone());
        }
        Ok((
            format!("arn:aws:iam::{}:root", self.account),
            self.account.clone(),
        ))
    }
}

const ROLE_SESSION_NAME: Text = Text::name(2, 64);
const ARN: Text = Text::len(20, 2048);
const SESSION_POLICY: Text = Text::len(1, 2048);
const FEDERATED_NAME: Text = Text::name(2, 32);
const SOURCE_IDENTITY: Text = Text::name(2, 256);
const EXTERNAL_ID: Text = Text::len(2, 1224);
const WEB_TOKEN: Text = Text::len(4, 20_000);
const SAML_ASSERTION: Text = Text::len(4, 100_000);
const ACCESS_KEY_ID: Text = Text::len(16, 128);
const ENCODED_MESSAGE: Text = Text::len(1, 10_240);

/// Most session tags one request may pass (AWS's limit).
const MAX_SESSION_TAGS: usize = 50;

/// Runs a read-only operation (`GetCallerIdentity`, `GetAccessKeyInfo`,
/// `DecodeAuthorizationMessage`); `None` for an operation that writes.
pub fn answer_read(
    state: &StsState,
    caller: &Caller,
    q: &QueryRequest,
) -> Option<StsResult<Option<Xml>>> {
    let out = match q.action.as_str() {
        "GetCallerIdentity" => caller.identity(state).map(|(arn, user_id)| {
            let mut x = Xml::new();
            x.leaf("UserId", &user_id)
                .leaf("Account", &caller.account)
                .leaf("Arn", &arn);
            Some(x)
        }),
        "GetAccessKeyInfo" => (|| {
            let key = q.required_text("AccessKeyId", &ACCESS_KEY_ID)?;
            let mut x = Xml::new();
            x.leaf("Account", &cryopod::aws::account_from_access_key(Some(key)));
            Ok(Some(x))
        })(),
        "DecodeAuthorizationMessage" => match q.required_text("EncodedMessage", &ENCODED_MESSAGE) {
            Ok(_) => Err(StsError::InvalidAuthorizationMessage),
            Err(e) => Err(e.into()),
        },
        _ => return None,
    };
    Some(out)
}

/// What a write operation issues: the session to store (in the scope of its account) and
/// the response.
pub struct Issued {
    /// The scope the session is stored in.
    pub scope: Scope,
    /// The new access key id.
    pub key: String,
    /// The session.
    pub session: Session,
    /// The result element's content.
    pub result: Xml,
}

/// Runs an operation that issues credentials. Validation happens here, before any state is
/// touched; the caller stores [`Issued::session`] through the state cell.
pub fn issue(state: &StsState, caller: &Caller, q: &QueryRequest) -> StsResult<Issued> {
    match q.action.as_str() {
        "AssumeRole" => {
            let role = RoleArn::parse(q.required_text("RoleArn", &ARN)?)?;
            let name = q.required_text("RoleSessionName", &ROLE_SESSION_NAME)?;
            let duration = q.int("DurationSeconds", 900, 43_200)?.unwrap_or(3600);
            q.text("ExternalId", &EXTERNAL_ID)?;
            let source = q.text("SourceIdentity", &SOURCE_IDENTITY)?;
            let packed = packed_policy_size(q)?;
            let tags = session_tags(q)?;
            let mut issued = role.session(caller, name, duration, source, tags);
            issued.result.leaf("PackedPolicySize", &packed.to_string());
            if let Some(s) = source {
                issued.result.leaf("SourceIdentity", s);
            }
            Ok(issued)
        }
        "AssumeRoleWithWebIdentity" => {
            let role = RoleArn::parse(q.required_text("RoleArn", &ARN)?)?;
            let name = q.required_text("RoleSessionName", &ROLE_SESSION_NAME)?;
            let token = q.required_text("WebIdentityToken", &WEB_TOKEN)?;
            let duration = q.int("DurationSeconds", 900, 43_200)?.unwrap_or(3600);
            let claims = jwt_claims(token)?;
            let packed = packed_policy_size(q)?;
            let claim = |k: &str| match claims.get(k) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Array(a)) => a
                    .first()
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string(),
                _ => String::new(),
            };
            let provider = q
                .get("ProviderId")
                .map(str::to_string)
                .unwrap_or_else(|| claim("iss"));
            let mut issued = role.session(caller, name, duration, None, Vec::new());
            issued
                .result
                .leaf("SubjectFromWebIdentityToken", &claim("sub"))
                .leaf("PackedPolicySize", &packed.to_string())
                .leaf("Provider", &provider)
                .leaf("Audience", &claim("aud"));
            Ok(issued)
        }
        "AssumeRoleWithSAML" => {
            let role = RoleArn::parse(q.required_text("RoleArn", &ARN)?)?;
            q.required_text("PrincipalArn", &ARN)?;
            let assertion = q.required_text("SAMLAssertion", &SAML_ASSERTION)?;
            let duration = q.int("DurationSeconds", 900, 43_200)?.unwrap_or(3600);
            let packed = packed_policy_size(q)?;
            let saml = SamlFacts::read(assertion);
            let mut issued = role.session(caller, &saml.session_name, duration, None, Vec::new());
            issued
                .result
                .leaf("PackedPolicySize", &packed.to_string())
                .leaf("Subject", &saml.subject)
                .leaf("SubjectType", "persistent")
                .leaf("Issuer", &saml.issuer)
                .leaf("Audience", "https://signin.aws.amazon.com/saml");
            Ok(issued)
        }
        "AssumeRoot" => {
            let target = q.required_text("TargetPrincipal", &Text::len(12, 2048))?;
            if !is_account(target) {
                return Err(StsError::Invalid(format!(
                    "TargetPrincipal {target} is not a 12-digit account id"
                )));
            }
            q.required_text("TaskPolicyArn.arn", &ARN)?;
            let duration = q.int("DurationSeconds", 0, 900)?.unwrap_or(900);
            let session = new_session(
                SessionKind::Root,
                format!("arn:aws:iam::{target}:root"),
                target.to_string(),
                caller.now,
                duration,
            );
            Ok(credentials_only(target, session))
        }
        "GetSessionToken" => {
            refuse_temporary(state, caller, "GetSessionToken")?;
            let duration = q.int("DurationSeconds", 900, 129_600)?.unwrap_or(43_200);
            let (arn, user_id) = caller.identity(state)?;
            let session = new_session(
                SessionKind::SessionToken,
                arn,
                user_id,
                caller.now,
                duration,
            );
            Ok(credentials_only(&caller.account, session))
        }
        "GetFederationToken" => {
            refuse_temporary(state, caller, "GetFederationToken")?;
            let name = q.required_text("Name", &FEDERATED_NAME)?;
            let duration = q.int("DurationSeconds", 900, 129_600)?.unwrap_or(43_200);
            let packed = packed_policy_size(q)?;
            let tags = session_tags(q)?;
            let account = &caller.account;
            let arn = format!("arn:aws:sts::{account}:federated-user/{name}");
            let user_id = format!("{account}:{name}");
            let mut session = new_session(
                SessionKind::FederatedUser,
                arn.clone(),
                user_id.clone(),
                caller.now,
                duration,
            );
            session.tags = tags;
            let mut issued = credentials_only(account, session);
            issued
                .result
                .elem("FederatedUser", |x| {
                    x.leaf("FederatedUserId", &user_id).leaf("Arn", &arn);
                })
                .leaf("PackedPolicySize", &packed.to_string());
            Ok(issued)
        }
        other => Err(StsError::Invalid(format!("{other} issues no credentials"))),
    }
}

fn is_account(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// A role ARN: `arn:<partition>:iam::<account>:role/<path/>name`.
struct RoleArn {
    account: String,
    name: String,
    arn: String,
}

impl RoleArn {
    fn parse(arn: &str) -> StsResult<RoleArn> {
        let bad = || {
            StsError::Invalid(format!(
                "{arn} is not the ARN of an IAM role (arn:aws:iam::<account>:role/<name>)"
            ))
        };
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let [arn_word, partition, service, region, account, resource] = parts[..] else {
            return Err(bad());
        };
        let name = resource
            .strip_prefix("role/")
            .and_then(|r| r.rsplit('/').next())
            .filter(|n| !n.is_empty())
            .ok_or_else(bad)?;
        if arn_word != "arn"
            || partition.is_empty()
            || service != "iam"
            || !region.is_empty()
            || !is_account(account)
        {
            return Err(bad());
        }
        Ok(RoleArn {
            account: account.to_string(),
            name: name.to_string(),
            arn: arn.to_string(),
        })
    }

    /// The assumed-role session and its response (credentials and `AssumedRoleUser`).
    fn session(
        &self,
        caller: &Caller,
        session_name: &str,
        duration: i64,
        source: Option<&str>,
        tags: Vec<(String, String)>,
    ) -> Issued {
        let role_id = format!("AROA{}", random_chars(17, cryopod::aws::KEY_ALPHABET));
        let user_id = format!("{role_id}:{session_name}");
        let arn = format!(
            "arn:aws:sts::{}:assumed-role/{}/{session_name}",
            self.account, self.name
        );
        let mut session = new_session(
            SessionKind::AssumedRole,
            arn.clone(),
            user_id.clone(),
            caller.now,
            duration,
        );
        session.role_arn = Some(self.arn.clone());
        session.source_identity = source.map(str::to_string);
        session.tags = tags;
        let mut issued = credentials_only(&self.account, session);
        issued.result.elem("AssumedRoleUser", |x| {
            x.leaf("AssumedRoleId", &user_id).leaf("Arn", &arn);
        });
        issued
    }
}

fn new_session(
    kind: SessionKind,
    arn: String,
    user_id: String,
    now: i64,
    duration: i64,
) -> Session {
    Session {
        kind,
        arn,
        user_id,
        secret_access_key: issue_secret_access_key(),
        session_token: format!(
            "IQoJb3JpZ2luX2VjE{}",
            random_chars(
                280,
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
            )
        ),
        issued: now,
        expiration: now + duration,
        role_arn: None,
        source_identity: None,
        tags: Vec::new(),
    }
}

/// The session's key id (embedding `account`) and the `<Credentials>` element.
fn credentials_only(account: &str, session: Session) -> Issued {
    let key = issue_access_key_id(KeyKind::Temporary, account);
    let mut result = Xml::new();
    result.elem("Credentials", |x| {
        x.leaf("AccessKeyId", &key)
            .leaf("SecretAccessKey", &session.secret_access_key)
            .leaf("SessionToken", &session.session_token)
            .leaf("Expiration", &query::timestamp(session.expiration));
    });
    Issued {
        scope: Caller::home(account),
        key,
        session,
        result,
    }
}

/// AWS refuses `GetSessionToken` and `GetFederationToken` with temporary credentials.
fn refuse_temporary(state: &StsState, caller: &Caller, op: &str) -> StsResult<()> {
    if caller.session(state).is_some() {
        return Err(StsError::AccessDenied(format!(
            "Cannot call {op} with session credentials"
        )));
    }
    Ok(())
}

/// Validates the session `Policy` (JSON object) and returns its packed size in percent of
/// the allowance, as AWS reports it (`PackedPolicySize`); session policy ARNs count too.
fn packed_policy_size(q: &QueryRequest) -> StsResult<u64> {
    let mut bytes = 0usize;
    if let Some(p) = q.text("Policy", &SESSION_POLICY)? {
        match serde_json::from_str::<serde_json::Value>(p) {
            Ok(serde_json::Value::Object(_)) => {}
            _ => {
                return Err(StsError::MalformedPolicy(
                    "The session policy is not a JSON policy document".into(),
                ));
            }
        }
        bytes += p.len();
    }
    let arns = q.structs("PolicyArns")?;
    if arns.len() > 10 {
        return Err(StsError::Invalid(
            "PolicyArns holds at most 10 managed policy ARNs".into(),
        ));
    }
    bytes += arns
        .iter()
        .filter_map(|m| m.get("arn"))
        .map(String::len)
        .sum::<usize>();
    let percent = (bytes as u64 * 100).div_ceil(2048);
    if percent > 100 {
        return Err(StsError::PackedPolicyTooLarge(percent));
    }
    Ok(percent)
}

fn session_tags(q: &QueryRequest) -> StsResult<Vec<(String, String)>> {
    let tags = q.tags("Tags")?;
    if tags.len() > MAX_SESSION_TAGS {
        return Err(StsError::Invalid(format!(
            "1 validation error detected: Value at 'tags' failed to satisfy constraint: Member must have length less than or equal to {MAX_SESSION_TAGS}"
        )));
    }
    for (k, v) in &tags {
        Text::len(1, 128).check("Tags.member.Key", k)?;
        Text::len(0, 256).check("Tags.member.Value", v)?;
    }
    Ok(tags)
}

/// The claims of a JWT, without checking its signature (nothing is verified here).
fn jwt_claims(token: &str) -> StsResult<serde_json::Map<String, serde_json::Value>> {
    let bad = || StsError::InvalidIdentityToken("The web identity token is not a JWT".into());
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| bad())?;
    match serde_json::from_slice(&bytes) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        _ => Err(bad()),
    }
}

/// What a SAML assertion says that the response repeats; read by plain text search (the
/// emulator verifies no signature, so no XML model is built).
struct SamlFacts {
    session_name: String,
    subject: String,
    issuer: String,
}

impl SamlFacts {
    fn read(assertion: &str) -> SamlFacts {
        let text = base64::engine::general_purpose::STANDARD
            .decode(assertion.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default();
        let element = |local: &str| -> Option<String> {
            let start = text
                .find(&format!(":{local}"))
                .or_else(|| text.find(&format!("<{local}")))?;
            let open_end = text[start..].find('>')? + start + 1;
            let close = text[open_end..].find("</")? + open_end;
            Some(text[open_end..close].trim().to_string())
        };
        let session_name = text
            .find("https://aws.amazon.com/SAML/Attributes/RoleSessionName")
            .and_then(|at| {
                let rest = &text[at..];
                let v = rest.find("AttributeValue")?;
                let open_end = rest[v..].find('>')? + v + 1;
                let close = rest[open_end..].find("</")? + open_end;
                Some(rest[open_end..close].trim().to_string())
            })
            .filter(|n| ROLE_SESSION_NAME.check("RoleSessionName", n).is_ok())
            .unwrap_or_else(|| "saml-session".to_string());
        SamlFacts {
            session_name,
            subject: element("NameID").unwrap_or_default(),
            issuer: element("Issuer").unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns_are_parsed_strictly() {
        let r = RoleArn::parse("arn:aws:iam::123456789012:role/path/Deploy").expect("arn");
        assert_eq!(
            (r.account.as_str(), r.name.as_str()),
            ("123456789012", "Deploy")
        );
        for bad in [
            "arn:aws:iam::12345678901:role/x",
            "arn:aws:iam::123456789012:user/x",
            "arn:aws:s3:::123456789012:role/x",
            "arn:aws:iam::123456789012:role/",
            "not an arn at all, long enough",
        ] {
            assert!(RoleArn::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn jwt_claims_are_read_and_non_jwts_refused() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"sub":"alice","aud":["app"],"iss":"https://idp"}"#);
        let c = jwt_claims(&format!("h.{payload}.s")).expect("claims");
        assert_eq!(c["sub"], "alice");
        assert!(matches!(
            jwt_claims("plain-token"),
            Err(StsError::InvalidIdentityToken(_))
        ));
    }
}
