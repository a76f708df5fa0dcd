//! Browser requests from other sites, answered from the bucket's CORS rules as S3 does.
//!
//! The gateway asks this (through [`cryopod::Service::cross_origin`]) only for requests a
//! browser sent cross-site, so a web app on `http://localhost:3000` whose bucket has a CORS
//! rule for that origin works as against AWS, and any other page is refused: its requests
//! reach no bucket. The preflight (`OPTIONS` with `Access-Control-Request-Method`) is
//! answered here too; s3s has no operation for it.

use cryopod::Body;
use cryopod::service::CrossOrigin;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use crate::api::Inner;
use crate::state::CorsRule;

/// How a browser request from another site is answered.
pub(crate) fn cross_origin(
    inner: &Inner,
    req: &Request<Body>,
    origin: Option<&str>,
) -> CrossOrigin {
    let Some(origin) = origin else {
        // No Origin: a cross-site navigation or `<img>`, which browsers send only as GET or
        // HEAD; AWS serves those without consulting CORS.
        return match *req.method() {
            Method::GET | Method::HEAD => CrossOrigin::Allow(HeaderMap::new()),
            _ => CrossOrigin::Refuse(
                "a cross-site browser request without an Origin can only read".into(),
            ),
        };
    };
    let Some(bucket) = bucket_of(req) else {
        return CrossOrigin::Refuse(format!(
            "CORS requests from {origin} need a bucket; a bucket's CORS rules (PutBucketCors) decide which origins may use it"
        ));
    };
    let rules = inner
        .bucket(&bucket)
        .ok()
        .and_then(|(_, b)| b.cors)
        .unwrap_or_default();
    let preflight = *req.method() == Method::OPTIONS;
    let method = if preflight {
        match text(req.headers(), "access-control-request-method") {
            Some(m) => m.to_string(),
            None => {
                return CrossOrigin::Refuse(
                    "a CORS preflight needs Access-Control-Request-Method".into(),
                );
            }
        }
    } else {
        req.method().as_str().to_string()
    };
    let asked_headers: Vec<String> = if preflight {
        text(req.headers(), "access-control-request-headers")
            .map(|h| {
                h.split(',')
                    .map(|x| x.trim().to_ascii_lowercase())
                    .filter(|x| !x.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let Some(rule) = rules
        .iter()
        .find(|r| allows(r, origin, &method, &asked_headers))
    else {
        return CrossOrigin::Refuse(format!(
            "CORSResponse: this CORS request is not allowed: no CORS rule of bucket `{bucket}` allows origin {origin} with method {method}{}; add one with PutBucketCors",
            if asked_headers.is_empty() {
                String::new()
            } else {
                format!(" and headers {}", asked_headers.join(", "))
            }
        ));
    };
    let mut grant = HeaderMap::new();
    let any_origin = rule.allowed_origins.iter().any(|o| o == "*");
    let mut put = |name: header::HeaderName, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            grant.insert(name, v);
        }
    };
    if any_origin {
        put(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*");
    } else {
        put(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        put(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true");
    }
    put(
        header::VARY,
        "Origin, Access-Control-Request-Headers, Access-Control-Request-Method",
    );
    put(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        &rule.allowed_methods.join(", "),
    );
    if !rule.expose_headers.is_empty() {
        put(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            &rule.expose_headers.join(", "),
        );
    }
    if !preflight {
        return CrossOrigin::Allow(grant);
    }
    if !asked_headers.is_empty() {
        put(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            &asked_headers.join(", "),
        );
    }
    if let Some(age) = rule.max_age_seconds {
        put(header::ACCESS_CONTROL_MAX_AGE, &age.to_string());
    }
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::OK;
    *resp.headers_mut() = grant;
    CrossOrigin::Answer(resp)
}

fn text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The bucket a request addresses: virtual-hosted (`bucket.localhost:4566`) or path-style.
fn bucket_of(req: &Request<Body>) -> Option<String> {
    if let Some(host) = text(req.headers(), "host")
        && let Some((bucket, _)) = crate::provider::virtual_host_bucket(host)
    {
        return Some(bucket.to_string());
    }
    // Bucket names hold no characters that need percent-encoding.
    let first = req.uri().path().trim_start_matches('/').split('/').next()?;
    (!first.is_empty()).then(|| first.to_string())
}

/// Whether `rule` lets `origin` use `method` with `headers` (lowercase).
fn allows(rule: &CorsRule, origin: &str, method: &str, headers: &[String]) -> bool {
    rule.allowed_origins.iter().any(|o| glob(o, origin))
        && rule.allowed_methods.iter().any(|m| m == method)
        && headers.iter().all(|h| {
            rule.allowed_headers
                .iter()
                .any(|a| glob(&a.to_ascii_lowercase(), h))
        })
}

/// S3's patterns: at most one `*`, matching any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((pre, post)) => {
            text.len() >= pre.len() + post.len() && text.starts_with(pre) && text.ends_with(post)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(origins: &[&str], methods: &[&str], headers: &[&str]) -> CorsRule {
        CorsRule {
            allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
            allowed_methods: methods.iter().map(|s| s.to_string()).collect(),
            allowed_headers: headers.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_rule_matches_its_origins_methods_and_headers_only() {
        let r = rule(
            &["http://localhost:3000", "https://*.example.com"],
            &["PUT", "GET"],
            &["x-amz-*", "Content-Type"],
        );
        assert!(allows(&r, "http://localhost:3000", "PUT", &[]));
        assert!(allows(
            &r,
            "https://app.example.com",
            "GET",
            &["content-type".into(), "x-amz-date".into()]
        ));
        assert!(!allows(&r, "http://localhost:3001", "PUT", &[]));
        assert!(!allows(&r, "http://evil.example", "PUT", &[]));
        assert!(!allows(&r, "http://localhost:3000", "DELETE", &[]));
        assert!(!allows(
            &r,
            "http://localhost:3000",
            "PUT",
            &["authorization".into()]
        ));
        assert!(allows(
            &rule(&["*"], &["GET"], &[]),
            "http://anything",
            "GET",
            &[]
        ));
    }
}
