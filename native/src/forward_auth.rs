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
//! `forward_auth_ambiguous`, naming the field Python meets first), missing
//! or unreadable (400 `forward_auth_bad_request`); then Python's `framing`
//! and `match` of the judged request (its 400s and 431, its 404 and 405), the
//! URI judged in its normal form (`crate::paths::normalize`), as Python's
//! `match` judges and audits it.
//!
//! A decision request over HTTP/2 or with a body is judged as any other (the
//! body is never read, as Python's endpoint never reads it). A method-override
//! header (`X-HTTP-Method-Override`, …) is not believed: the original method
//! is judged, as the gateway door judges a request's own method (`mutate`
//! drops these headers there), and the request is not deferred for it. Python
//! answers (the request is deferred unchanged) only what `decide` defers after
//! `match` (`Decided::Defer`: a refusal of the judged target the router cannot
//! tell exactly).

use std::net::IpAddr;
use std::time::Instant;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_LENGTH, HOST};
use http::{Method, Request, Response, StatusCode, Uri, Version};

use crate::audit::Door;
use crate::client_ip::client_ip;
use crate::decide::{self, Allowed, Decided};
use crate::forward_family::{
    Family, FORWARDED_HOST, FORWARDED_METHOD, FORWARDED_URI, ORIGINAL_METHOD, ORIGINAL_URI,
};
use crate::http::{full, Body, ConnInfo, Identity, Outcome};
use crate::plane::plane;
use crate::problem::Problem;
use crate::respond;
use crate::table::Table;
use crate::tracing::DecisionSpan;
use crate::verdict::{self, DeniedHead, Head};

/// `bastion.http.endpoints.forward_auth.FORWARD_AUTH_PATH`.
pub const FORWARD_AUTH_PATH: &str = "/auth/verify";

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

/// Whether `req` is a forward-auth decision request (any method, as Starlette's route).
pub fn asks(req: &Request<Body>) -> bool {
    req.uri().path() == FORWARD_AUTH_PATH
}

/// Answer one decision request.
pub async fn verify(req: Request<Body>, conn: &ConnInfo, table: &Table) -> Outcome {
    let config = table.forward_auth;
    // A body is never read: Python's endpoint did not read it either.
    let Some(ip) = client_ip(conn.peer.ip(), req.headers(), &table.trusted) else {
        // A trusted proxy's hop that is no address: bastion's 400, as at the gateway
        // door (audited under the proxy's own address).
        let refused = crate::hygiene::Refused::ForwardedFor;
        let problem = crate::refusal::framing(refused, table.head).problem;
        return refuse(&req, conn.peer.ip(), conn.tls, problem, table);
    };
    // Only a trusted proxy may name the request to judge.
    if table.trusted.is_empty() || !table.trusted.contains(conn.peer.ip()) {
        let detail = "Only a proxy listed in trusted_proxies may ask for forward-auth decisions.";
        let problem = refusal(StatusCode::FORBIDDEN, UNTRUSTED, detail.to_owned());
        return refuse(&req, ip, conn.tls, problem, table);
    }
    // HTTP/2 has no Host field: the hop to Python sets it from `:authority`.
    let authority = req.uri().authority().map(|a| a.as_str().as_bytes());
    let judged = match original(req.headers(), config.headers, authority) {
        Ok(judged) => judged,
        Err(problem) => return refuse(&req, ip, conn.tls, problem, table),
    };
    // Python's scope `path` (percent-decoded), which its audit row and span keep
    // until `match` has the normal form.
    let sent = Uri::from_static("/");
    let judged_head = Head {
        method: &judged.method,
        uri: &sent,
        version: req.version(),
        headers: &judged.headers,
        body_empty: true,
    };
    // `framing`, the first of Python's decision steps, on the judged head. Python
    // requires a Host of HTTP/1.1 only, and reads an HTTP/2 head as an HTTP/1.0 one.
    let version = match req.version() {
        Version::HTTP_11 => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    if let Some(refused) = crate::hygiene::refused(
        &judged.method,
        version,
        &judged.headers,
        None,
        true,
        table.head,
    ) {
        let refusal = crate::refusal::framing(refused, table.head);
        let decoded = judged.decoded_path();
        return refuse_judged(
            judged_head,
            decoded,
            ip,
            conn.tls,
            refusal,
            "framing",
            table,
        );
    }
    // `match`: the path in its normal form, or Python's 400 `invalid_path`.
    let uri = match judged.normal_uri() {
        Ok(uri) => uri,
        Err(detail) => {
            let refusal = crate::refusal::invalid_path(detail);
            let decoded = judged.decoded_path();
            return refuse_judged(judged_head, decoded, ip, conn.tls, refusal, "match", table);
        }
    };
    let head = Head {
        uri: &uri,
        ..judged_head
    };
    let mut response = match decide::decide(head, conn, table, Door::ForwardAuth).await {
        Decided::Allow(allowed) => answer(*allowed, conn.tls),
        Decided::Respond(response) => response,
        Decided::Defer => return Outcome::Defer(req),
    };
    if table.tracing.is_some() {
        // The span names the judged request, its path in normal form (Python's
        // `ex.path`: set by `match`, whose refusals are rendered natively too).
        let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
        let routed = crate::preflight::route(
            table,
            head.host(),
            &judged.method,
            target,
            head.headers,
            true,
        );
        let route = match routed.0 {
            crate::router::Routed::Native { route, .. } => Some(route.name.clone()),
            _ => None,
        };
        response.extensions_mut().insert(DecisionSpan {
            route,
            method: Some(judged.method.as_str().to_owned()),
            path: uri.path().to_owned(),
        });
    }
    Outcome::Respond(response)
}

/// A refusal of the judged request before its route (Python's `framing`, or
/// `match`'s 400 `invalid_path`): audited with no route, the judged method and
/// Python's scope `path` (percent-decoded), `data.door = "forward_auth"`.
fn refuse_judged(
    head: Head<'_>,
    path: String,
    ip: IpAddr,
    https: bool,
    refusal: crate::refusal::Refusal,
    step: &'static str,
    table: &Table,
) -> Outcome {
    let started = Instant::now();
    let request_id = plane().request_ids.assign(head.headers);
    let rid = request_id.to_str().unwrap_or("-");
    let nobody = Identity::default();
    DeniedHead::from(head)
        .through(Door::ForwardAuth)
        .with_path(path)
        .denied_as(None, &nobody, ip, rid, &refusal.problem, step, started);
    let mut response = refusal.problem.into_response_with(rid, &refusal.members);
    respond::decorate(response.headers_mut(), https, &request_id);
    if table.tracing.is_some() {
        // Python's span: no route, no path yet, the judged method.
        response.extensions_mut().insert(DecisionSpan {
            route: None,
            method: Some(head.method.as_str().to_owned()),
            path: String::new(),
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
    Problem::plain(status, code, title, detail)
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

/// The head of the request a proxy asks about, as Python's `original_scope`
/// builds it: the URI still as sent.
pub(crate) struct Judged {
    pub method: Method,
    /// The URI's path (before `?`, without a fragment), as sent.
    pub raw_path: Bytes,
    /// The URI's query (after the first `?`, a `#` in it kept, as Python keeps it).
    pub query: Bytes,
    pub headers: HeaderMap,
}

impl Judged {
    /// Python's scope `path`: the raw path percent-decoded, read as UTF-8
    /// (`unquote_to_bytes(raw_path).decode("utf-8", "replace")`).
    pub(crate) fn decoded_path(&self) -> String {
        String::from_utf8_lossy(&crate::paths::unquote_to_bytes(&self.raw_path)).into_owned()
    }

    /// The judged target in `match`'s normal form (`crate::paths::normalize`,
    /// Python's `normalize_path`), or the detail of its 400 `invalid_path`.
    /// The query's bytes a URI cannot hold are percent-encoded: only the
    /// `api_key` method reads it (a key-shaped value), which they cannot be part of.
    pub(crate) fn normal_uri(&self) -> Result<Uri, &'static str> {
        let path = crate::paths::normalize(&self.raw_path)?;
        let mut target = String::with_capacity(path.len() + self.query.len() + 1);
        target.push_str(&path);
        if !self.query.is_empty() {
            target.push('?');
            for &byte in self.query.iter() {
                if byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&byte) {
                    target.push(char::from(byte));
                } else {
                    target.push_str(&format!("%{byte:02X}"));
                }
            }
        }
        // A normal path and that query are always a valid origin-form target.
        Uri::try_from(target).map_err(|_| crate::paths::refused::BAD_ESCAPE)
    }
}

/// The request the proxy asks about (Python's `original_scope`), or Python's
/// 400. The fields are met in the order the header map yields them, which is
/// the order the hop to Python writes them in: the same field is named.
/// `authority` (HTTP/2's `:authority`) stands in for a missing `Host`.
pub(crate) fn original(
    headers: &HeaderMap,
    family: Family,
    authority: Option<&[u8]>,
) -> Result<Judged, Problem> {
    let ([method_name, uri_name], other) = family.names();
    let mut method: Option<&[u8]> = None;
    let mut uri: Option<&[u8]> = None;
    let mut forwarded_host: Option<&[u8]> = None;
    let mut host: Option<&[u8]> = None;
    for (name, value) in headers {
        let name = name.as_str();
        if let Some(theirs) = other.iter().find(|n| **n == name) {
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
            return Err(refusal(StatusCode::BAD_REQUEST, AMBIGUOUS, detail));
        }
        let slot = if name == method_name {
            &mut method
        } else if name == uri_name {
            &mut uri
        } else if name == FORWARDED_HOST {
            &mut forwarded_host
        } else if name == HOST.as_str() {
            &mut host
        } else {
            continue;
        };
        if slot.is_some() {
            let detail = format!("The request carries more than one {} header.", titled(name));
            return Err(refusal(StatusCode::BAD_REQUEST, AMBIGUOUS, detail));
        }
        *slot = Some(value.as_bytes().trim_ascii());
    }
    let host = host.or(authority.map(<[u8]>::trim_ascii));
    let bad = |detail: String| Err(refusal(StatusCode::BAD_REQUEST, BAD_REQUEST, detail));
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
    let (raw_path, query) = match uri.iter().position(|&c| c == b'?') {
        Some(at) => (&uri[..at], &uri[at + 1..]),
        None => (uri, &b""[..]),
    };
    let raw_path = match raw_path.iter().position(|&c| c == b'#') {
        Some(at) => &raw_path[..at],
        None => raw_path,
    };
    // Upper-case letters only: always a method token.
    let method = Method::from_bytes(method).unwrap_or(Method::GET);
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
        // A trimmed field value (or an authority) is a valid value.
        if let Ok(host) = HeaderValue::from_bytes(host) {
            judged.append(HOST, host);
        }
    }
    Ok(Judged {
        method,
        raw_path: Bytes::copy_from_slice(raw_path),
        query: Bytes::copy_from_slice(query),
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
                HeaderValue::from_bytes(value.as_bytes()).unwrap(),
            );
        }
        map
    }

    fn judge(pairs: &[(&str, &str)], family: Family) -> Option<Judged> {
        original(&headers(pairs), family, None).ok()
    }

    /// Python's refusal of these headers: `Some((code, detail))`; `None`: read.
    fn refused(pairs: &[(&str, &str)], family: Family) -> Option<(&'static str, String)> {
        original(&headers(pairs), family, None)
            .err()
            .map(|p| (p.code, p.detail))
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
        let uri = req.normal_uri().unwrap();
        assert_eq!(uri.path(), "/api/orders");
        assert_eq!(uri.query(), Some("x=1"));
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
        // HTTP/2: the authority stands in for the Host field.
        let pairs = [("x-forwarded-method", "GET"), ("x-forwarded-uri", "/a")];
        let h2 = original(
            &headers(&pairs),
            Family::Forwarded,
            Some(b"api.example:443"),
        );
        assert_eq!(h2.unwrap().headers[HOST], "api.example:443");
    }

    #[test]
    fn forward_auth_judges_the_normal_form_as_python_matches_it() {
        let uri = |sent: &str| {
            let pairs = [("x-original-method", "GET"), ("x-original-uri", sent)];
            let judged = judge(&pairs, Family::Nginx).unwrap();
            (judged.normal_uri(), judged.decoded_path())
        };
        // A fragment of the path is dropped; one in the query stays in it (encoded).
        let (normal, decoded) = uri("/api//./v1/../orders#frag");
        assert_eq!(normal.unwrap().path(), "/api/orders");
        assert_eq!(decoded, "/api//./v1/../orders");
        let (normal, _) = uri("/a?x=1#f");
        assert_eq!(normal.unwrap().query(), Some("x=1%23f"));
        let (normal, _) = uri("/%61pi/%7Eme?q=\"\u{e9}");
        let normal = normal.unwrap();
        assert_eq!(normal.path(), "/api/~me");
        assert_eq!(normal.query(), Some("q=%22%C3%A9"));
        // `normalize_path`'s refusals; the row keeps the decoded path.
        let (normal, decoded) = uri("/a/%2Fb");
        assert_eq!(normal.unwrap_err(), crate::paths::refused::ENCODED_SLASH);
        assert_eq!(decoded, "/a//b");
        let (normal, decoded) = uri("/../x");
        assert!(normal.is_err());
        assert_eq!(decoded, "/../x");
        let (_, decoded) = uri("/%e9%zz%");
        assert_eq!(decoded, "/\u{fffd}%zz%");
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
        // Met in the map's order (each name's fields together, names in order of
        // first appearance), which is the order the hop to Python writes them.
        let repeat_first = [
            ("x-original-method", "GET"),
            ("x-original-uri", "/a"),
            ("x-original-method", "GET"),
            ("x-forwarded-method", "GET"),
        ];
        assert_eq!(
            refused(&repeat_first, Family::Nginx),
            ambiguous("The request carries more than one X-Original-Method header.")
        );
        let two = with(&[("host", "a"), ("host", "b"), ("x-original-uri", "/c")]);
        assert_eq!(
            refused(&two, Family::Nginx),
            ambiguous("The request carries more than one X-Original-Uri header.")
        );
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
            ("GETGETGETGETGETGE", "/a", method),
            ("GET", "a", uri),
            ("GET", "http://x/a", uri),
            ("GET", "/a b", uri),
            ("GET", "/a\tb", uri),
        ] {
            let pairs = [("x-original-method", m), ("x-original-uri", u)];
            assert_eq!(
                refused(&pairs, Family::Nginx),
                Some(("forward_auth_bad_request", detail.to_owned()))
            );
        }
        let long = format!("/{}", "a".repeat(MAX_URI));
        let pairs = [("x-original-method", "GET"), ("x-original-uri", &long)];
        assert_eq!(
            refused(&pairs, Family::Nginx),
            Some(("forward_auth_bad_request", uri.to_owned()))
        );
    }
}
