//! The running STS service: reads the query request, finds the caller, runs the operation,
//! stores issued sessions through the state cell.

use std::any::Any;

use async_trait::async_trait;
use cryopod::plugin::CellProvider;
use cryopod::protocol::query::{self, QueryRequest};
use cryopod::{AwsError, AwsRequest, Body, Service, ServiceContext, StateCell};

use crate::api::{self, Caller};
use crate::state::StsState;

/// Largest request accepted: a SAML assertion (100,000 characters) form-encoded.
const MAX_REQUEST_BYTES: usize = 512 * 1024;

/// The STS service; all state is in one [`StateCell`].
pub struct StsService {
    state: StateCell<StsState>,
}

impl StsService {
    /// Built by the runtime from the registration in `lib.rs`.
    pub fn new(ctx: ServiceContext) -> Self {
        Self {
            state: StateCell::new(ctx),
        }
    }

    async fn dispatch(&self, mut req: AwsRequest) -> Result<http::Response<Body>, AwsError> {
        let q = QueryRequest::read(&mut req, MAX_REQUEST_BYTES).await?;
        if api::UNSUPPORTED.contains(&q.action.as_str()) {
            return Err(query::unsupported("STS", &q.action));
        }
        if !api::OPERATIONS.contains(&q.action.as_str()) {
            return Err(query::invalid_action(&q.action));
        }
        let key = req.access_key_id.clone();
        let account = req.scope.account.clone();
        let iam_user = match &key {
            Some(k) if k.starts_with("AKIA") => self.iam_user(&account, k).await,
            _ => None,
        };
        let caller = Caller {
            account,
            key,
            iam_user,
            now: query::now(),
        };
        if let Some(out) = self.state.read(|s| api::answer_read(s, &caller, &q)) {
            let result = out?;
            return Ok(query::response(&q.action, api::XMLNS, result.as_ref()));
        }
        let issued = self.state.read(|s| api::issue(s, &caller, &q))?;
        let api::Issued {
            scope,
            key,
            session,
            result,
        } = issued;
        self.state
            .write(&scope, |s| {
                s.scopes.get_mut(&scope).sessions.insert(key, session);
                Ok::<_, AwsError>(())
            })
            .await?;
        Ok(query::response(&q.action, api::XMLNS, Some(&result)))
    }

    /// The IAM user owning a long-term key, asked of the IAM service through its own API
    /// (`GetAccessKeyLastUsed`, then `GetUser`) when it runs: plugins never depend on each
    /// other's crates. `None` when IAM does not run or does not know the key.
    async fn iam_user(&self, account: &str, key: &str) -> Option<(String, String)> {
        let iam = self.state.context().service("iam")?;
        let ask = |form: String| {
            let request = http::Request::builder()
                .method("POST")
                .uri("/")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(form))
                .ok()?;
            Some(AwsRequest {
                scope: Caller::home(account),
                access_key_id: Some(key.to_string()),
                endpoint: "http://localhost".into(),
                request,
            })
        };
        let form = |pairs: &[(&str, &str)]| {
            let mut s = String::new();
            for (k, v) in pairs {
                if !s.is_empty() {
                    s.push('&');
                }
                s.push_str(k);
                s.push('=');
                s.extend(form_escape(v));
            }
            s
        };
        let first = collect(
            iam.handle(ask(form(&[
                ("Action", "GetAccessKeyLastUsed"),
                ("AccessKeyId", key),
            ]))?)
            .await,
        )
        .await?;
        let name = element(&first, "UserName")?;
        let user = collect(
            iam.handle(ask(form(&[("Action", "GetUser"), ("UserName", &name)]))?)
                .await,
        )
        .await?;
        Some((element(&user, "Arn")?, element(&user, "UserId")?))
    }
}

/// Percent-encodes a form value (unreserved characters stay).
fn form_escape(v: &str) -> impl Iterator<Item = String> + '_ {
    v.bytes().map(|b| {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            char::from(b).to_string()
        } else {
            format!("%{b:02X}")
        }
    })
}

/// The text of the first `<name>` element of a small XML answer from this emulator's IAM,
/// whose values need no unescaping (ARNs and ids).
fn element(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find("</")? + start;
    Some(xml[start..end].to_string())
}

/// The body of a successful in-process answer, as text; `None` unless it is a success.
/// Bounded: IAM's answers read here are small.
async fn collect(resp: http::Response<Body>) -> Option<String> {
    use http_body_util::BodyExt;
    if !resp.status().is_success() {
        return None;
    }
    let bytes = http_body_util::Limited::new(resp.into_body(), 64 * 1024)
        .collect()
        .await
        .ok()?
        .to_bytes();
    String::from_utf8(bytes.to_vec()).ok()
}

/// The whole [`cryopod::StateProvider`]: sessions have nothing derived at run time.
impl CellProvider for StsService {
    type State = StsState;
    fn cell(&self) -> &StateCell<StsState> {
        &self.state
    }
}

#[async_trait]
impl Service for StsService {
    async fn handle(&self, req: AwsRequest) -> http::Response<Body> {
        match self.dispatch(req).await {
            Ok(resp) => resp,
            Err(e) => query::error_response(&e),
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
