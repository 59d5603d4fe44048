//! The `cors` step: per-route CORS with exact origin allow-lists — the native
//! twin of `bastion.gateway.cors` (its docstring is the contract).
//!
//! - an origin is allowed only if it equals, byte for byte, one of the route's
//!   origins, and only if the request carries exactly one `Origin`;
//! - a preflight (`OPTIONS` with one `Access-Control-Request-Method` and an
//!   `Origin`) is matched by the method it asks for; for a CORS route it is
//!   answered here (204, the same head as Python's), before authentication,
//!   and never proxied;
//! - an actual request from another origin is refused (403
//!   `cors_origin_not_allowed`, with `Vary: Origin`), a preflight too;
//! - an allowed request's responses — the upstream's and the native
//!   refusals' (401, 429, 502/503/504) — carry `Access-Control-Allow-Origin`,
//!   `Access-Control-Allow-Credentials` and `Access-Control-Expose-Headers` as
//!   configured and `Vary: Origin`; the upstream's own `Access-Control-*`
//!   headers are dropped.
//!
//! Deferred to Python, which renders and audits them: a preflight refused for
//! its method or a request header (their details quote the value with Python's
//! `repr`), a preflight whose method or header list is anything but plain
//! tokens, a preflight to a route without CORS (an ordinary `OPTIONS`), and
//! any head `hygiene` does not take.

use std::net::IpAddr;
use std::time::Instant;

use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH, ORIGIN, VARY};
use http::{Method, Request, StatusCode};
use serde::Deserialize;

use crate::client_ip::client_ip;
use crate::http::{full, Body, ConnInfo, Identity, Outcome};
use crate::hygiene;
use crate::plane::plane;
use crate::problem::Problem;
use crate::respond;
use crate::router::{is_method_token, Routed};
use crate::table::Table;
use crate::verdict::{host_of, DeniedHead};

static ACAO: HeaderName = HeaderName::from_static("access-control-allow-origin");
static ACAC: HeaderName = HeaderName::from_static("access-control-allow-credentials");
static ACEH: HeaderName = HeaderName::from_static("access-control-expose-headers");
static ACAM: HeaderName = HeaderName::from_static("access-control-allow-methods");
static ACAH: HeaderName = HeaderName::from_static("access-control-allow-headers");
static ACMA: HeaderName = HeaderName::from_static("access-control-max-age");
static ACRM: HeaderName = HeaderName::from_static("access-control-request-method");
static ACRH: HeaderName = HeaderName::from_static("access-control-request-headers");

const VARY_ORIGIN: HeaderValue = HeaderValue::from_static("Origin");
const PREFLIGHT_VARY: HeaderValue = HeaderValue::from_static(
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
);
const TRUE: HeaderValue = HeaderValue::from_static("true");
/// CORS-safelisted request headers (Fetch §2.2.2): never need permission.
const SAFELISTED: [&str; 5] = [
    "accept",
    "accept-language",
    "content-language",
    "content-type",
    "range",
];
/// `CorsOriginNotAllowedError`'s detail.
const ORIGIN_DETAIL: &str = "This origin may not call this route from a browser.";

/// The `edge.cors` section (`bastion.gateway.compile.cors`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsSection {
    origins: Vec<String>,
    methods: Vec<String>,
    headers: Vec<String>,
    allow_methods: String,
    allow_headers: String,
    expose_headers: String,
    credentials: bool,
    max_age: String,
}

/// A route's CORS policy, header values built once at table load.
#[derive(Debug)]
pub struct CorsPolicy {
    origins: Vec<Box<[u8]>>,
    /// Upper-case; HEAD where GET is.
    methods: Vec<Box<str>>,
    /// Lower-case request header names a page may send.
    headers: Vec<Box<str>>,
    allow_methods: HeaderValue,
    /// `None` when empty (Python then sends no such header).
    allow_headers: Option<HeaderValue>,
    expose_headers: Option<HeaderValue>,
    credentials: bool,
    max_age: HeaderValue,
}

fn value(field: &str, text: &str) -> Result<HeaderValue, String> {
    HeaderValue::from_str(text).map_err(|_| format!("cors.{field} {text:?} is not a header value"))
}

fn optional(field: &str, text: &str) -> Result<Option<HeaderValue>, String> {
    if text.is_empty() {
        Ok(None)
    } else {
        value(field, text).map(Some)
    }
}

impl CorsPolicy {
    /// Parse the section; refuses values that cannot be sent as header values.
    pub fn from_section(section: CorsSection) -> Result<Self, String> {
        if section.origins.is_empty() {
            return Err("cors.origins is empty".into());
        }
        if !section.methods.iter().all(|m| is_method_token(m)) {
            return Err(format!(
                "cors.methods {:?} are not upper-case methods",
                section.methods
            ));
        }
        Ok(CorsPolicy {
            origins: section
                .origins
                .into_iter()
                .map(|o| o.into_bytes().into_boxed_slice())
                .collect(),
            methods: section.methods.into_iter().map(Into::into).collect(),
            headers: section
                .headers
                .into_iter()
                .map(|h| h.to_ascii_lowercase().into())
                .collect(),
            allow_methods: value("allow_methods", &section.allow_methods)?,
            allow_headers: optional("allow_headers", &section.allow_headers)?,
            expose_headers: optional("expose_headers", &section.expose_headers)?,
            credentials: section.credentials,
            max_age: value("max_age", &section.max_age)?,
        })
    }

    /// The request's origin when it carries exactly one and it is allowed.
    fn origin<'r>(&self, headers: &'r HeaderMap) -> Option<&'r HeaderValue> {
        let mut origins = headers.get_all(ORIGIN).iter();
        let (Some(origin), None) = (origins.next(), origins.next()) else {
            return None;
        };
        self.origins
            .iter()
            .any(|allowed| **allowed == *origin.as_bytes())
            .then_some(origin)
    }
}

/// The CORS headers of an allowed request's responses: the upstream's and
/// bastion's own refusals (Python's `Exchange.edge_headers`).
#[derive(Debug, Clone)]
pub struct CorsHeaders {
    /// The request's (allowed) origin; `None` without an `Origin` header.
    origin: Option<HeaderValue>,
    credentials: bool,
    expose: Option<HeaderValue>,
}

impl CorsHeaders {
    /// In Python's order: `Access-Control-Allow-Origin`, `Vary`, then
    /// credentials and expose headers when configured; only `Vary` without an origin.
    fn each(&self, mut f: impl FnMut(HeaderName, HeaderValue)) {
        let Some(origin) = &self.origin else {
            f(VARY, VARY_ORIGIN);
            return;
        };
        f(ACAO.clone(), origin.clone());
        f(VARY, VARY_ORIGIN);
        if self.credentials {
            f(ACAC.clone(), TRUE);
        }
        if let Some(expose) = &self.expose {
            f(ACEH.clone(), expose.clone());
        }
    }

    /// Add to a native refusal's own headers (after them, as Python does).
    pub fn add_to(&self, headers: &mut Vec<(HeaderName, HeaderValue)>) {
        self.each(|name, value| headers.push((name, value)));
    }

    /// The upstream response's head: its `Access-Control-*` headers dropped
    /// (bastion owns CORS on the route), then the route's added.
    pub fn apply_upstream(&self, headers: &mut HeaderMap) {
        let theirs = headers
            .keys()
            .any(|name| name.as_str().starts_with("access-control-"));
        if theirs {
            // Rebuilt rather than removed one by one: removal reorders the map.
            let old = std::mem::take(headers);
            headers.reserve(old.len());
            let mut current: Option<HeaderName> = None;
            // `into_iter` yields a name with its first value, then `None` with its others.
            for (name, value) in old {
                if let Some(name) = name {
                    current = (!name.as_str().starts_with("access-control-")).then_some(name);
                }
                if let Some(name) = &current {
                    headers.append(name.clone(), value);
                }
            }
        }
        self.each(|name, value| {
            headers.append(name, value);
        });
    }
}

/// The `cors` step for a request that is not a preflight: `Ok(None)` for a
/// route without CORS, `Ok(Some(headers))` when allowed, `Err(())` for an
/// origin the route does not allow (refuse with [`refuse`]).
#[allow(clippy::result_unit_err)]
pub fn actual(policy: Option<&CorsPolicy>, headers: &HeaderMap) -> Result<Option<CorsHeaders>, ()> {
    let Some(policy) = policy else {
        return Ok(None);
    };
    if !headers.contains_key(ORIGIN) {
        return Ok(Some(CorsHeaders {
            origin: None,
            credentials: false,
            expose: None,
        }));
    }
    let origin = policy.origin(headers).ok_or(())?;
    Ok(Some(CorsHeaders {
        origin: Some(origin.clone()),
        credentials: policy.credentials,
        expose: policy.expose_headers.clone(),
    }))
}

/// 403 `cors_origin_not_allowed` (`CorsOriginNotAllowedError`), audited and
/// metered as Python's `cors` step does (no identity yet).
pub fn refuse(req: &Request<Body>, route: &str, ip: IpAddr, https: bool) -> Outcome {
    let started = Instant::now();
    let request_id = plane().request_ids.assign(req.headers());
    let rid = request_id.to_str().unwrap_or("-");
    let problem = origin_not_allowed();
    let nobody = Identity::default();
    DeniedHead::of(req).denied(route, &nobody, ip, rid, &problem, "cors", started);
    let mut response = problem.into_response(rid);
    respond::decorate(response.headers_mut(), https, &request_id);
    Outcome::Respond(response)
}

pub(crate) fn origin_not_allowed() -> Problem {
    Problem {
        status: StatusCode::FORBIDDEN,
        code: "cors_origin_not_allowed",
        title: "Cross-origin request refused",
        detail: ORIGIN_DETAIL.to_owned(),
        www_authenticate: None,
        retry_after: None,
        headers: vec![(VARY, VARY_ORIGIN)],
    }
}

/// The method a preflight asks for (`cors.preflight_method`), when it is a
/// plain method token: one `Access-Control-Request-Method`, some `Origin`.
pub(crate) fn requested_method(headers: &HeaderMap) -> Option<Method> {
    let mut asked = headers.get_all(&ACRM).iter();
    let (Some(asked), None) = (asked.next(), asked.next()) else {
        return None;
    };
    if !headers.contains_key(ORIGIN) {
        return None;
    }
    let method = std::str::from_utf8(trim(asked.as_bytes())).ok()?;
    if !is_method_token(method) {
        return None; // Python's `str.strip` and matcher decide anything else
    }
    Method::from_bytes(method.as_bytes()).ok()
}

fn trim(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// Whether every header a preflight asks for is allowed: `Some(true)`;
/// `Some(false)` for one that is not; `None` for a list that is not plain
/// comma-separated tokens (Python reads it: its `strip` and `lower` are Unicode).
fn headers_allowed(policy: &CorsPolicy, headers: &HeaderMap) -> Option<bool> {
    for value in headers.get_all(&ACRH) {
        for token in value.as_bytes().split(|&b| b == b',') {
            let name = trim(token);
            if name.is_empty() {
                continue;
            }
            if !name.iter().all(|&b| is_tchar(b)) {
                return None;
            }
            let allowed = |known: &str| known.as_bytes().eq_ignore_ascii_case(name);
            if !policy.headers.iter().any(|h| allowed(h)) && !SAFELISTED.iter().any(|h| allowed(h))
            {
                return Some(false);
            }
        }
    }
    Some(true)
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// An `OPTIONS` request while some route has CORS (`match` then `cors` of
/// Python's pipeline): a preflight for a native CORS route is answered or
/// refused here; anything else is deferred.
pub fn preflight(req: Request<Body>, conn: &ConnInfo, table: &Table) -> Outcome {
    let Some(method) = requested_method(req.headers()) else {
        return Outcome::Defer(req);
    };
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let Routed::Native { route, .. } = table.routes.route(host_of(&req), &method, target) else {
        return Outcome::Defer(req);
    };
    let Some(Some(native)) = table.native.get(route.index) else {
        return Outcome::Defer(req);
    };
    let Some(policy) = native.cors.as_ref() else {
        return Outcome::Defer(req); // an ordinary OPTIONS for this route
    };
    if !hygiene::takes_head(
        req.version(),
        req.headers(),
        http_body::Body::is_end_stream(req.body()),
        table.head,
        native.max_body,
    ) {
        return Outcome::Defer(req);
    }
    let Some(ip) = client_ip(conn.peer.ip(), req.headers(), &table.trusted) else {
        return Outcome::Defer(req);
    };
    // Python's `ip` step runs first: its 403 for a preflight is Python's to render.
    if native.ip.as_ref().is_some_and(|rules| !rules.admits(ip)) {
        return Outcome::Defer(req);
    }
    let Some(origin) = policy.origin(req.headers()) else {
        return refuse(&req, &route.name, ip, conn.tls);
    };
    if !policy.methods.iter().any(|m| **m == *method.as_str()) {
        return Outcome::Defer(req); // 403 cors_method_not_allowed, rendered by Python
    }
    if headers_allowed(policy, req.headers()) != Some(true) {
        return Outcome::Defer(req); // 403 cors_header_not_allowed, or Python reads the list
    }
    let started = Instant::now();
    let request_id = plane().request_ids.assign(req.headers());
    let mut response = http::Response::new(full(bytes::Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.append(ACAO.clone(), origin.clone());
    headers.append(ACAM.clone(), policy.allow_methods.clone());
    headers.append(ACMA.clone(), policy.max_age.clone());
    headers.append(VARY, PREFLIGHT_VARY);
    headers.append(CONTENT_LENGTH, HeaderValue::from_static("0"));
    if let Some(allow) = &policy.allow_headers {
        headers.append(ACAH.clone(), allow.clone());
    }
    if policy.credentials {
        headers.append(ACAC.clone(), TRUE);
    }
    respond::decorate(headers, conn.tls, &request_id);
    // Metered like Python's (the route, no error); an answered preflight is no audit event.
    crate::metrics::global().record(Some(&route.name), None, started.elapsed().as_secs_f64());
    Outcome::Respond(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(credentials: bool, expose: &str) -> CorsPolicy {
        let section: CorsSection = serde_json::from_value(serde_json::json!({
            "origins": ["https://app.example.com", "http://localhost:3000"],
            "methods": ["GET", "HEAD", "POST"],
            "headers": ["authorization", "content-type", "x-api-key"],
            "allow_methods": "GET, HEAD, POST",
            "allow_headers": "authorization, content-type, x-api-key",
            "expose_headers": expose,
            "credentials": credentials,
            "max_age": "600",
        }))
        .expect("section");
        CorsPolicy::from_section(section).expect("policy")
    }

    fn head(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_bytes(v.as_bytes()).unwrap(),
            );
        }
        h
    }

    #[test]
    fn cors_origins_match_byte_for_byte_only() {
        let p = policy(true, "");
        for allowed in ["https://app.example.com", "http://localhost:3000"] {
            assert!(
                p.origin(&head(&[("origin", allowed)])).is_some(),
                "{allowed}"
            );
        }
        for refused in [
            "https://app.example.com.evil.com",
            "https://evilapp.example.com",
            "https://evil.com/https://app.example.com",
            "http://app.example.com",
            "https://app.example.com:8443",
            "https://app.example.com:443",
            "https://app.example.com.",
            "https://APP.example.com",
            "HTTPS://app.example.com",
            "https://app.example.com/",
            "null",
            "*",
            "",
            " https://app.example.com",
            "https://app.example.co",
        ] {
            assert!(
                p.origin(&head(&[("origin", refused)])).is_none(),
                "{refused:?}"
            );
            let refused_actual = actual(Some(&p), &head(&[("origin", refused)]));
            assert!(refused_actual.is_err(), "{refused:?}");
        }
        let twice = head(&[
            ("origin", "https://app.example.com"),
            ("origin", "https://app.example.com"),
        ]);
        assert!(p.origin(&twice).is_none());
        assert!(actual(Some(&p), &twice).is_err());
    }

    #[test]
    fn cors_actual_headers_in_pythons_order() {
        let p = policy(true, "RateLimit, X-Total");
        let allowed = actual(Some(&p), &head(&[("origin", "http://localhost:3000")]))
            .expect("allowed")
            .expect("cors route");
        let mut out = Vec::new();
        allowed.add_to(&mut out);
        let pairs: Vec<_> = out
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("access-control-allow-origin", "http://localhost:3000"),
                ("vary", "Origin"),
                ("access-control-allow-credentials", "true"),
                ("access-control-expose-headers", "RateLimit, X-Total"),
            ]
        );
        let bare = actual(Some(&p), &head(&[]))
            .expect("no origin")
            .expect("cors");
        let mut out = Vec::new();
        bare.add_to(&mut out);
        assert_eq!(out, [(VARY, VARY_ORIGIN)]);
        assert!(matches!(
            actual(None, &head(&[("origin", "null")])),
            Ok(None)
        ));
    }

    #[test]
    fn cors_upstream_access_control_headers_are_replaced_in_order() {
        let p = policy(false, "");
        let cors = actual(Some(&p), &head(&[("origin", "https://app.example.com")]))
            .unwrap()
            .unwrap();
        let mut upstream = head(&[
            ("content-type", "text/plain"),
            ("access-control-allow-origin", "*"),
            ("x-a", "1"),
            ("x-a", "2"),
            ("access-control-allow-credentials", "true"),
            ("access-control-expose-headers", "a"),
            ("access-control-expose-headers", "b"),
            ("etag", "\"e\""),
        ]);
        cors.apply_upstream(&mut upstream);
        let pairs: Vec<_> = upstream
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("content-type", "text/plain"),
                ("x-a", "1"),
                ("x-a", "2"),
                ("etag", "\"e\""),
                ("access-control-allow-origin", "https://app.example.com"),
                ("vary", "Origin"),
            ]
        );
    }

    #[test]
    fn cors_preflight_method_and_headers() {
        let asked = |pairs: &[(&str, &str)]| requested_method(&head(pairs));
        let o = ("origin", "https://app.example.com");
        assert_eq!(
            asked(&[o, ("access-control-request-method", "POST")]),
            Some(Method::POST)
        );
        assert_eq!(
            asked(&[o, ("access-control-request-method", " PUT\t")]),
            Some(Method::PUT)
        );
        assert_eq!(asked(&[("access-control-request-method", "POST")]), None);
        assert_eq!(asked(&[o, ("access-control-request-method", "post")]), None);
        assert_eq!(asked(&[o, ("access-control-request-method", "")]), None);
        assert_eq!(
            asked(&[
                o,
                ("access-control-request-method", "GET"),
                ("access-control-request-method", "GET")
            ]),
            None
        );
        let p = policy(false, "");
        let allowed =
            |value: &str| headers_allowed(&p, &head(&[("access-control-request-headers", value)]));
        assert_eq!(allowed("Content-Type, authorization"), Some(true));
        assert_eq!(allowed("X-API-Key,accept, range ,"), Some(true));
        assert_eq!(allowed(""), Some(true));
        assert_eq!(allowed("x-secret, accept"), Some(false));
        assert_eq!(allowed("x api key"), None);
        assert_eq!(headers_allowed(&p, &head(&[])), Some(true));
    }

    #[test]
    fn cors_refusal_is_pythons_problem() {
        let problem = origin_not_allowed();
        let body = problem.body("rid-1");
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            "{\"type\":\"urn:bastion:problem:cors_origin_not_allowed\",\
             \"title\":\"Cross-origin request refused\",\"status\":403,\
             \"detail\":\"This origin may not call this route from a browser.\",\
             \"reason\":\"cors_origin_not_allowed\",\"request_id\":\"rid-1\"}"
        );
        let names: Vec<_> = problem
            .headers(body.len())
            .into_iter()
            .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap()))
            .collect();
        assert_eq!(
            names,
            [
                "content-type: application/problem+json",
                "cache-control: no-store",
                format!("content-length: {}", body.len()).as_str(),
                "vary: Origin",
            ]
        );
    }
}
