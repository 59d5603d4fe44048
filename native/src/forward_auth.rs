//! The forward-auth door: `/auth/verify` decided by the native decision path,
//! the twin of `bastion.http.endpoints.forward_auth`.
//!
//! A proxy that is not bastion (nginx `auth_request`, Caddy `forward_auth`,
//! Traefik `forwardAuth`) asks whether to let a request through. The original
//! request is read from the one header family of `forward_auth.headers`
//! (`nginx`: `X-Original-Method` / `X-Original-URI`; `forwarded`:
//! `X-Forwarded-Method` / `X-Forwarded-Uri`), its host from `X-Forwarded-Host`
//! (else `Host`), and judged by [`crate::decide::decide`] with
//! `Door::ForwardAuth` (Python's `decision_steps`: no `cors`, `body`, `mutate`
//! or `proxy`). The answer: 200 with bastion's identity headers and the
//! `RateLimit` headers, or the native refusal (401 `invalid_api_key`, 403
//! `ip_not_allowed`, 429), each audited with `data.door = "forward_auth"`.
//!
//! The door's own refusals (Python's `forward_auth` step, before any route:
//! audited with no route, metered under `(none)`) are rendered here too: a
//! caller that is not a trusted proxy (403 `forward_auth_untrusted`), headers
//! that are ambiguous (the other family, a judged header twice: 400
//! `forward_auth_ambiguous`, naming the header Python meets first), missing
//! or unreadable (400 `forward_auth_bad_request`).
//!
//! Python answers (the request is deferred unchanged) an HTTP/2 decision
//! request, one with a body or a head the gateway door would defer (a
//! method-override header: Python's twin of each native answer), a judged header repeated where the order of
//! the fields decides which one Python names (the header map keeps each
//! name's fields together), a URI Python reads and the URI type does not (a
//! fragment, …), and anything the gateway door defers.

use std::net::IpAddr;
use std::time::Instant;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_LENGTH, HOST};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use serde::Deserialize;

use crate::audit::Door;
use crate::client_ip::client_ip;
use crate::decide::{self, Allowed, Decided};
use crate::http::{full, Body, ConnInfo, Identity, Outcome};
use crate::plane::plane;
use crate::problem::Problem;
use crate::respond;
use crate::table::Table;
use crate::tracing::DecisionSpan;
use crate::verdict::{self, DeniedHead, Head};

/// `bastion.http.endpoints.forward_auth.FORWARD_AUTH_PATH`.
pub const FORWARD_AUTH_PATH: &str = "/auth/verify";

/// `forward_auth.headers`: the header family the original request is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Nginx,
    Forwarded,
}

/// The table's `forward_auth` section (`null`: Python answers every decision).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardAuth {
    pub headers: Family,
}

const ORIGINAL_METHOD: &str = "x-original-method";
const ORIGINAL_URI: &str = "x-original-uri";
const FORWARDED_METHOD: &str = "x-forwarded-method";
const FORWARDED_URI: &str = "x-forwarded-uri";
const FORWARDED_HOST: &str = "x-forwarded-host";
/// Python's `_MAX_URI`.
const MAX_URI: usize = 8192;

/// How Python spells a header in its details (`_SPELLED`).
fn spelled(name: &str) -> &'static str {
    match name {
        ORIGINAL_METHOD => "X-Original-Method",
        ORIGINAL_URI => "X-Original-URI",
        FORWARDED_METHOD => "X-Forwarded-Method",
        _ => "X-Forwarded-Uri",
    }
}

/// Python's `str.title()` of a judged header's lower-case name.
fn titled(name: &str) -> &'static str {
    match name {
        ORIGINAL_METHOD => "X-Original-Method",
        ORIGINAL_URI => "X-Original-Uri",
        FORWARDED_METHOD => "X-Forwarded-Method",
        FORWARDED_URI => "X-Forwarded-Uri",
        FORWARDED_HOST => "X-Forwarded-Host",
        _ => "Host",
    }
}

impl Family {
    /// `forward_auth.headers` as the settings spell it.
    fn as_str(self) -> &'static str {
        match self {
            Family::Nginx => "nginx",
            Family::Forwarded => "forwarded",
        }
    }

    /// This family's (method, URI) header names; then the other family's.
    fn names(self) -> ([&'static str; 2], [&'static str; 2]) {
        let nginx = [ORIGINAL_METHOD, ORIGINAL_URI];
        let forwarded = [FORWARDED_METHOD, FORWARDED_URI];
        match self {
            Family::Nginx => (nginx, forwarded),
            Family::Forwarded => (forwarded, nginx),
        }
    }
}

/// Whether `req` is a forward-auth decision request (any method, as Starlette's route).
pub fn asks(req: &Request<Body>) -> bool {
    req.uri().path() == FORWARD_AUTH_PATH
}

/// Answer one decision request, or defer it to Python unchanged.
pub async fn verify(req: Request<Body>, conn: &ConnInfo, table: &Table) -> Outcome {
    let Some(config) = table.forward_auth else {
        return Outcome::Defer(req);
    };
    // HTTP/1.x only (an HTTP/2 host is its :authority), and no body to leave unread.
    if !matches!(req.version(), Version::HTTP_11 | Version::HTTP_10) || !req.body().is_end_stream()
    {
        return Outcome::Defer(req);
    }
    // A head the gateway door would defer (a method-override header, odd framing,
    // over the header limits): Python's, refusals included.
    if !crate::hygiene::takes_head(req.version(), req.headers(), true, table.head, u64::MAX) {
        return Outcome::Defer(req);
    }
    let Some(ip) = client_ip(conn.peer.ip(), req.headers(), &table.trusted) else {
        return Outcome::Defer(req);
    };
    // Only a trusted proxy may name the request to judge.
    if table.trusted.is_empty() || !table.trusted.contains(conn.peer.ip()) {
        let detail = "Only a proxy listed in trusted_proxies may ask for forward-auth decisions.";
        let problem = refusal(StatusCode::FORBIDDEN, UNTRUSTED, detail.to_owned());
        return refuse(&req, ip, conn.tls, problem, table);
    }
    let judged = match original(req.headers(), config.headers) {
        Ok(judged) => judged,
        Err(Unread::Refused(problem)) => return refuse(&req, ip, conn.tls, problem, table),
        Err(Unread::Defer) => return Outcome::Defer(req),
    };
    let head = Head {
        method: &judged.method,
        uri: &judged.uri,
        version: req.version(),
        headers: &judged.headers,
        body_empty: true,
    };
    let mut response = match decide::decide(head, conn, table, Door::ForwardAuth).await {
        Decided::Allow(allowed) => answer(*allowed, conn.tls),
        Decided::Respond(response) => response,
        Decided::Defer(lead) => return decide::defer(req, lead),
    };
    if table.tracing.is_some() {
        // The span names the judged request (matched: a native answer is never
        // `match`'s refusal on this door), its path already in normal form.
        let target = judged.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let routed = crate::cors::route(table, head.host(), &judged.method, target, head.headers);
        let route = match routed.0 {
            crate::router::Routed::Native { route, .. } => Some(route.name.clone()),
            _ => None,
        };
        response.extensions_mut().insert(DecisionSpan {
            route,
            method: Some(judged.method.as_str().to_owned()),
            path: judged.uri.path().to_owned(),
        });
    }
    Outcome::Respond(response)
}

/// `ForwardAuthUntrustedError` (403).
const UNTRUSTED: (&str, &str) = ("forward_auth_untrusted", "Forbidden");
/// `ForwardAuthBadRequestError` (400).
const BAD_REQUEST: (&str, &str) = ("forward_auth_bad_request", "Bad forward-auth request");
/// `ForwardAuthAmbiguousError` (400).
const AMBIGUOUS: (&str, &str) = ("forward_auth_ambiguous", "Ambiguous forward-auth request");

fn refusal(
    status: StatusCode,
    (code, title): (&'static str, &'static str),
    detail: String,
) -> Problem {
    Problem {
        status,
        code,
        title,
        detail,
        www_authenticate: None,
        retry_after: None,
        headers: Vec::new(),
    }
}

/// A refusal of Python's `forward_auth` step: before any route (audited with
/// none, metered under `(none)`), nobody's, the decision request's method and
/// path, `data.door = "forward_auth"`.
fn refuse(
    req: &Request<Body>,
    ip: IpAddr,
    https: bool,
    problem: Problem,
    table: &Table,
) -> Outcome {
    let started = Instant::now();
    let request_id = plane().request_ids.assign(req.headers());
    let rid = request_id.to_str().unwrap_or("-");
    let nobody = Identity::default();
    DeniedHead::of(req).through(Door::ForwardAuth).denied_as(
        None,
        &nobody,
        ip,
        rid,
        &problem,
        "forward_auth",
        started,
    );
    let mut response = problem.into_response(rid);
    respond::decorate(response.headers_mut(), https, &request_id);
    if table.tracing.is_some() {
        // Python's span: no route, no path, the decision request's method.
        response.extensions_mut().insert(DecisionSpan::default());
    }
    Outcome::Respond(response)
}

/// Why [`original`] read no request: Python's refusal, or Python reads it.
#[derive(Debug)]
pub(crate) enum Unread {
    Refused(Problem),
    Defer,
}

/// The head of the request a proxy asks about.
pub(crate) struct Judged {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
}

/// The request the proxy asks about (Python's `original_scope`): Python's
/// 400 where it refuses the headers, `Defer` where it reads what the native
/// path does not.
pub(crate) fn original(headers: &HeaderMap, family: Family) -> Result<Judged, Unread> {
    let ([method_name, uri_name], other) = family.names();
    let mut method = None;
    let mut uri = None;
    let mut forwarded_host = None;
    let mut host = None;
    // Python meets the fields in order and refuses at the first of the other
    // family or the first repeat of a judged one. The map keeps each name's
    // fields together, in the order names first appear: the other family is
    // named exactly when it comes before every repeated name; one repeated
    // name alone is named exactly; anything else is Python's to tell.
    let mut other_seen: Option<&'static str> = None;
    let mut repeated: Vec<&'static str> = Vec::new();
    for (name, value) in headers {
        let name = name.as_str();
        let (slot, judged) = if name == method_name {
            (&mut method, method_name)
        } else if name == uri_name {
            (&mut uri, uri_name)
        } else if name == FORWARDED_HOST {
            (&mut forwarded_host, FORWARDED_HOST)
        } else if name == HOST.as_str() {
            (&mut host, "host")
        } else if let Some(theirs) = other.iter().find(|n| **n == name) {
            if other_seen.is_none() && repeated.is_empty() {
                other_seen = Some(theirs);
            } else if other_seen.is_none() {
                return Err(Unread::Defer); // a repeat came first, or not: unknown
            }
            continue;
        } else {
            continue;
        };
        if slot.is_some() {
            if !repeated.contains(&judged) {
                repeated.push(judged);
            }
            continue;
        }
        *slot = Some(value.as_bytes().trim_ascii());
    }
    if let Some(theirs) = other_seen {
        let [own_method, own_uri] = family.names().0.map(spelled);
        let detail = format!(
            "The request carries {}, but forward_auth.headers is {}: bastion reads the \
             original request only from {own_method} and {own_uri}, and refuses a request \
             that carries the other family too (a client may have sent it). Set \
             forward_auth.headers to match your proxy (nginx: nginx; Caddy, Traefik: \
             forwarded).",
            spelled(theirs),
            family.as_str(),
        );
        return Err(Unread::Refused(refusal(
            StatusCode::BAD_REQUEST,
            AMBIGUOUS,
            detail,
        )));
    }
    match repeated.as_slice() {
        [] => {}
        [one] => {
            let detail = format!("The request carries more than one {} header.", titled(one));
            return Err(Unread::Refused(refusal(
                StatusCode::BAD_REQUEST,
                AMBIGUOUS,
                detail,
            )));
        }
        _ => return Err(Unread::Defer),
    }
    let bad = |detail: String| {
        Err(Unread::Refused(refusal(
            StatusCode::BAD_REQUEST,
            BAD_REQUEST,
            detail,
        )))
    };
    let (Some(method), Some(uri)) = (
        method.filter(|m| !m.is_empty()),
        uri.filter(|u| !u.is_empty()),
    ) else {
        return bad(format!(
            "Say which request to judge: send {} and {} (forward_auth.headers is {}).",
            spelled(method_name),
            spelled(uri_name),
            family.as_str()
        ));
    };
    if method.len() > 16 || !method.iter().all(u8::is_ascii_uppercase) {
        return bad("The original method is not an upper-case HTTP method.".to_owned());
    }
    if uri.len() > MAX_URI || uri[0] != b'/' || uri.iter().any(|&c| c <= 32 || c == 127) {
        return bad("The original URI is not an origin-form path.".to_owned());
    }
    // A fragment, or bytes the URI type does not take: Python reads those.
    if uri.contains(&b'#') {
        return Err(Unread::Defer);
    }
    let uri = Uri::from_maybe_shared(Bytes::copy_from_slice(uri)).map_err(|_| Unread::Defer)?;
    if uri.scheme().is_some() || uri.authority().is_some() {
        return Err(Unread::Defer);
    }
    let method = Method::from_bytes(method).map_err(|_| Unread::Defer)?;
    let mut judged = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let lower = name.as_str();
        if lower == HOST.as_str()
            || lower == ORIGINAL_METHOD
            || lower == ORIGINAL_URI
            || lower == FORWARDED_METHOD
            || lower == FORWARDED_URI
        {
            continue;
        }
        judged.append(name.clone(), value.clone());
    }
    let host = forwarded_host
        .filter(|h| !h.is_empty())
        .or(host)
        .unwrap_or_default();
    if !host.is_empty() {
        let host = HeaderValue::from_bytes(host).map_err(|_| Unread::Defer)?;
        judged.append(HOST, host);
    }
    Ok(Judged {
        method,
        uri,
        headers: judged,
    })
}

/// The 200 of an allowed decision, as `ForwardAuthEndpoint` answers it:
/// bastion's identity headers and request id, `Cache-Control: no-store`, an
/// empty body, the rate-limit state; metered and counted as an allow.
fn answer(allowed: Allowed<'_>, https: bool) -> Response<Body> {
    let Allowed {
        route,
        native,
        identity,
        decision,
        started,
        request_id,
        ..
    } = allowed;
    let rid = request_id.to_str().unwrap_or("-");
    let mut headers = HeaderMap::with_capacity(12);
    let who = identity.subject.is_some().then_some(&identity);
    native
        .upstream
        .mutate()
        .identity_headers(who, rid, &mut headers);
    headers.append(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.append(CONTENT_LENGTH, HeaderValue::from_static("0"));
    for (name, value) in &decision.headers {
        headers.append::<HeaderName>(name.clone(), value.clone());
    }
    respond::decorate(&mut headers, https, &request_id);
    verdict::allowed(&route.name, &identity, started);
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = StatusCode::OK;
    *response.headers_mut() = headers;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn judge(pairs: &[(&str, &str)], family: Family) -> Option<Judged> {
        original(&headers(pairs), family).ok()
    }

    /// Python's refusal of these headers: `Some((code, detail))`; `None`: Python reads them.
    fn refused(pairs: &[(&str, &str)], family: Family) -> Option<(&'static str, String)> {
        match original(&headers(pairs), family) {
            Err(Unread::Refused(p)) => Some((p.code, p.detail)),
            _ => None,
        }
    }

    #[test]
    fn forward_auth_reads_the_nginx_family() {
        let req = judge(
            &[
                ("host", "bastion:8443"),
                ("x-original-method", " POST "),
                ("x-original-uri", "/api/orders?x=1"),
                ("x-forwarded-host", "shop.example"),
                ("authorization", "Bearer t"),
            ],
            Family::Nginx,
        )
        .unwrap();
        assert_eq!(req.method, Method::POST);
        assert_eq!(req.uri.path(), "/api/orders");
        assert_eq!(req.uri.query(), Some("x=1"));
        let host: Vec<_> = req.headers.get_all(HOST).iter().collect();
        assert_eq!(host, ["shop.example"]);
        assert!(req.headers.get("x-original-uri").is_none());
        assert_eq!(req.headers["authorization"], "Bearer t");
    }

    #[test]
    fn forward_auth_reads_the_forwarded_family_and_falls_back_to_host() {
        let req = judge(
            &[
                ("host", "api.example"),
                ("x-forwarded-method", "GET"),
                ("x-forwarded-uri", "/a"),
                ("x-forwarded-host", ""),
            ],
            Family::Forwarded,
        )
        .unwrap();
        assert_eq!(req.headers[HOST], "api.example");
        assert!(req.headers.get("x-forwarded-method").is_none());
    }

    #[test]
    fn forward_auth_refuses_the_other_family_and_repeats() {
        let base = [
            ("host", "h"),
            ("x-original-method", "GET"),
            ("x-original-uri", "/a"),
        ];
        assert!(judge(&base, Family::Nginx).is_some());
        for extra in [
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/admin"),
            ("x-original-method", "GET"),
            ("x-original-uri", "/a"),
            ("host", "h"),
        ] {
            let mut pairs = base.to_vec();
            pairs.push(extra);
            assert!(judge(&pairs, Family::Nginx).is_none(), "{extra:?}");
        }
        let repeated = [("x-forwarded-host", "a"), ("x-forwarded-host", "b")];
        let mut pairs = base.to_vec();
        pairs.extend(repeated);
        assert!(judge(&pairs, Family::Nginx).is_none());
        // The nginx family under `forwarded` is what a client would forge.
        let forwarded = [
            ("host", "h"),
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/a"),
        ];
        let mut pairs = forwarded.to_vec();
        pairs.push(("x-original-uri", "/admin"));
        assert!(judge(&pairs, Family::Forwarded).is_none());
    }

    #[test]
    fn forward_auth_refusals_say_what_python_says() {
        let ambiguous = |detail: &str| Some(("forward_auth_ambiguous", detail.to_owned()));
        let other = "The request carries X-Forwarded-Uri, but forward_auth.headers is nginx: \
                     bastion reads the original request only from X-Original-Method and \
                     X-Original-URI, and refuses a request that carries the other family too \
                     (a client may have sent it). Set forward_auth.headers to match your proxy \
                     (nginx: nginx; Caddy, Traefik: forwarded).";
        let base = [("x-original-method", "GET"), ("x-original-uri", "/a")];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut pairs = base.to_vec();
            pairs.extend_from_slice(extra);
            pairs
        };
        assert_eq!(
            refused(&with(&[("x-forwarded-uri", "/b")]), Family::Nginx),
            ambiguous(other)
        );
        // The other family before any repeated name: named, whatever follows.
        let first = [("x-forwarded-uri", "/b"), ("host", "a"), ("host", "b")];
        assert_eq!(refused(&first, Family::Nginx), ambiguous(other));
        assert_eq!(
            refused(
                &with(&[("x-forwarded-host", "a"), ("x-forwarded-host", "b")]),
                Family::Nginx
            ),
            ambiguous("The request carries more than one X-Forwarded-Host header.")
        );
        assert_eq!(
            refused(&with(&[("x-original-uri", "/c")]), Family::Nginx),
            ambiguous("The request carries more than one X-Original-Uri header.")
        );
        // A repeat before the other family, or two repeated names: which one Python
        // meets first depends on the fields' order, which the map does not keep.
        let unknown = [
            ("x-original-method", "GET"),
            ("x-original-uri", "/a"),
            ("x-original-method", "GET"),
            ("x-forwarded-method", "GET"),
        ];
        assert!(refused(&unknown, Family::Nginx).is_none());
        assert!(original(&headers(&unknown), Family::Nginx).is_err());
        let two = with(&[("host", "a"), ("host", "b"), ("x-original-uri", "/c")]);
        assert!(matches!(
            original(&headers(&two), Family::Nginx),
            Err(Unread::Defer)
        ));
        let say = "Say which request to judge: send X-Forwarded-Method and X-Forwarded-Uri \
                   (forward_auth.headers is forwarded).";
        for pairs in [
            vec![("x-forwarded-method", "GET")],
            vec![("x-forwarded-method", " "), ("x-forwarded-uri", "/a")],
            vec![],
        ] {
            assert_eq!(
                refused(&pairs, Family::Forwarded),
                Some(("forward_auth_bad_request", say.to_owned()))
            );
        }
        let method = "The original method is not an upper-case HTTP method.";
        let uri = "The original URI is not an origin-form path.";
        for (m, u, detail) in [
            ("get", "/a", method),
            ("GET", "a", uri),
            ("GET", "/a b", uri),
        ] {
            let pairs = [("x-original-method", m), ("x-original-uri", u)];
            assert_eq!(
                refused(&pairs, Family::Nginx),
                Some(("forward_auth_bad_request", detail.to_owned()))
            );
        }
        // Python reads a fragment (and keeps it in the query): its answer.
        let fragment = [("x-original-method", "GET"), ("x-original-uri", "/a?x#f")];
        assert!(matches!(
            original(&headers(&fragment), Family::Nginx),
            Err(Unread::Defer)
        ));
    }

    #[test]
    fn forward_auth_refuses_bad_methods_and_uris() {
        for (method, uri) in [
            ("", "/a"),
            ("GET", ""),
            ("get", "/a"),
            ("GETGETGETGETGETGE", "/a"),
            ("GET", "a"),
            ("GET", "http://x/a"),
            ("GET", "/a#f"),
            ("GET", "/a\tb"),
        ] {
            let pairs = [
                ("host", "h"),
                ("x-original-method", method),
                ("x-original-uri", uri),
            ];
            assert!(judge(&pairs, Family::Nginx).is_none(), "{method:?} {uri:?}");
        }
        let long = format!("/{}", "a".repeat(MAX_URI));
        let pairs = [
            ("host", "h"),
            ("x-original-method", "GET"),
            ("x-original-uri", &long),
        ];
        assert!(judge(&pairs, Family::Nginx).is_none());
    }
}
