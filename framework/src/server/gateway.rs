//! The gateway: routes each AWS request to the plugin that claims it.
//!
//! The order follows how AWS protocols identify a service, most specific first:
//! `X-Amz-Target` (JSON protocols), the SigV4 credential scope's service name, the query
//! protocol's `Action` (unsigned requests), REST path prefixes, and finally the fallback
//! (S3, which AWS itself serves for any other path). The gateway names no service: plugins
//! declare their [`Route`]s.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;

use crate::aws::{AwsError, AwsRequest, Body, account_from_access_key, sigv4_credential};
use crate::scope::{DEFAULT_REGION, Scope};
use crate::service::Route;

use super::App;

/// Largest form body read to find a query-protocol `Action` in an unsigned request.
const MAX_FORM_PEEK: usize = 1024 * 1024;

/// Answers one AWS request.
pub(crate) async fn dispatch(app: Arc<App>, req: Request<Body>) -> Response<Body> {
    let cred = sigv4_credential(&req);
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (req, service) = match route(
        &app,
        req,
        target.as_deref(),
        cred.as_ref().map(|c| c.service.as_str()),
    )
    .await
    {
        Ok(found) => found,
        Err((shape, err)) => return shape.render(&err),
    };
    let Some(service_name) = service else {
        let asked = cred
            .as_ref()
            .map(|c| c.service.clone())
            .or_else(|| {
                target
                    .as_deref()
                    .and_then(|t| t.split('.').next())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "unknown".into());
        let err = AwsError::new(
            StatusCode::NOT_IMPLEMENTED,
            "ServiceNotEnabled",
            format!(
                "no running service handles this request (service `{asked}`); this emulator runs: {}",
                app.runtime.service_names().join(", ")
            ),
        );
        return ErrorShape::guess(target.is_some(), &req).render(&err);
    };
    if let Some(hooks) = &app.hooks
        && let Err(e) = hooks.before_request(service_name).await
    {
        return ErrorShape::guess(target.is_some(), &req).render(&e);
    }
    let Some(service) = app.runtime.service(service_name).cloned() else {
        return ErrorShape::Json.render(&AwsError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalFailure",
            "routed to a service that is not running",
        ));
    };
    // A request a web page made the browser send: answered as AWS would (see `guard`).
    match super::guard::aws_gate(&app, &req, service.as_ref()) {
        super::guard::Gate::Pass => {}
        super::guard::Gate::Refuse(e) => {
            return ErrorShape::guess(target.is_some(), &req).render(&e);
        }
        super::guard::Gate::Answer(resp) => return resp,
    }
    let access_key_id = cred.as_ref().map(|c| c.access_key_id.clone());
    let scope = Scope::new(
        account_from_access_key(access_key_id.as_deref()),
        cred.as_ref()
            .map(|c| c.region.clone())
            .unwrap_or_else(|| DEFAULT_REGION.to_string()),
    );
    let endpoint = format!(
        "http://{}",
        req.headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or(&app.listen)
    );
    // The request's own newest change, not the global generation: see `track_changes`.
    let (resp, changed) = crate::service::track_changes(service.handle(AwsRequest {
        scope,
        access_key_id,
        endpoint,
        request: req,
    }))
    .await;
    if let Some(hooks) = &app.hooks
        && let Some(generation) = changed
        && let Err(e) = hooks.after_change(service_name, generation).await
    {
        tracing::error!(service = service_name, error = %e, "the change could not be made durable and was undone");
        return ErrorShape::guess(target.is_some(), &http::Request::new(Body::empty())).render(&e);
    }
    resp
}

type Routed = (Request<Body>, Option<&'static str>);

async fn route(
    app: &App,
    req: Request<Body>,
    target: Option<&str>,
    signing: Option<&str>,
) -> Result<Routed, (ErrorShape, AwsError)> {
    let routes = app.runtime.routes();
    if let Some(t) = target
        && let Some(s) = routes.iter().find_map(|(r, s)| match r {
            Route::JsonTarget(p) if t.starts_with(p) => Some(*s),
            _ => None,
        })
    {
        return Ok((req, Some(s)));
    }
    if let Some(sig) = signing
        && let Some(s) = routes.iter().find_map(|(r, s)| match r {
            Route::SigningName(n) if *n == sig => Some(*s),
            _ => None,
        })
    {
        return Ok((req, Some(s)));
    }
    let path = req.uri().path().to_string();
    // Query protocol without a signature: find the Action in the query string or form body.
    let has_query_routes = routes
        .iter()
        .any(|(r, _)| matches!(r, Route::QueryAction(_)));
    let mut req = req;
    if has_query_routes && signing.is_none() {
        let (action, rebuilt) = peek_action(req).await?;
        req = rebuilt;
        if let Some(action) = action
            && let Some(s) = routes.iter().find_map(|(r, s)| match r {
                Route::QueryAction(actions) if actions.contains(&action.as_str()) => Some(*s),
                _ => None,
            })
        {
            return Ok((req, Some(s)));
        }
    }
    if let Some(s) = routes.iter().find_map(|(r, s)| match r {
        Route::PathPrefix(p) if path.starts_with(p) => Some(*s),
        _ => None,
    }) {
        return Ok((req, Some(s)));
    }
    // A signed request for a service that is not running must not fall through to S3.
    if signing.is_some() || target.is_some() {
        return Ok((req, None));
    }
    let fallback = routes.iter().find_map(|(r, s)| match r {
        Route::Fallback => Some(*s),
        _ => None,
    });
    Ok((req, fallback))
}

/// Finds the query protocol's `Action` in the query string or the form body; the body, if
/// read, is put back so the service sees the request unchanged.
async fn peek_action(
    req: Request<Body>,
) -> Result<(Option<String>, Request<Body>), (ErrorShape, AwsError)> {
    if let Some(q) = req.uri().query()
        && let Some((_, v)) = form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "Action")
    {
        let v = v.into_owned();
        return Ok((Some(v), req));
    }
    let is_form = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if !is_form || req.method() != http::Method::POST {
        return Ok((None, req));
    }
    let (parts, body) = req.into_parts();
    let bytes: Bytes = match http_body_util::Limited::new(body, MAX_FORM_PEEK)
        .collect()
        .await
    {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            return Err((
                ErrorShape::QueryXml,
                AwsError::bad_request("InvalidRequest", format!("cannot read the form body: {e}")),
            ));
        }
    };
    let action = form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == "Action")
        .map(|(_, v)| v.into_owned());
    Ok((action, Request::from_parts(parts, Body::from(bytes))))
}

/// Which protocol's error shape to answer in when no plugin could.
#[derive(Clone, Copy, Debug)]
enum ErrorShape {
    Json,
    QueryXml,
    RestXml,
}

impl ErrorShape {
    fn guess(has_target: bool, req: &Request<Body>) -> Self {
        if has_target {
            return ErrorShape::Json;
        }
        let form = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
        if form || req.uri().query().is_some_and(|q| q.contains("Action=")) {
            ErrorShape::QueryXml
        } else {
            ErrorShape::RestXml
        }
    }

    fn render(self, err: &AwsError) -> Response<Body> {
        match self {
            ErrorShape::Json => err.to_json_response(),
            ErrorShape::QueryXml => err.to_query_xml_response(),
            ErrorShape::RestXml => err.to_rest_xml_response(),
        }
    }
}
