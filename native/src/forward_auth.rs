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
//! Python answers (the request is deferred unchanged) whenever the caller is
//! not a trusted proxy (its 403 `forward_auth_untrusted`), the headers are
//! ambiguous (the other family, a judged header twice: its 400
//! `forward_auth_ambiguous`), missing or unreadable (400
//! `forward_auth_bad_request`), or anything the gateway door defers.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_LENGTH, HOST};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use serde::Deserialize;

use crate::audit::Door;
use crate::decide::{self, Allowed, Decided};
use crate::http::{full, Body, ConnInfo, Outcome};
use crate::respond;
use crate::table::Table;
use crate::verdict::{self, Head};

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

impl Family {
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
    // Only a trusted proxy may name the request to judge (else Python's 403).
    if table.trusted.is_empty() || !table.trusted.contains(conn.peer.ip()) {
        return Outcome::Defer(req);
    }
    // HTTP/1.x only (an HTTP/2 host is its :authority), and no body to leave unread.
    if !matches!(req.version(), Version::HTTP_11 | Version::HTTP_10) || !req.body().is_end_stream()
    {
        return Outcome::Defer(req);
    }
    let Some(judged) = original(req.headers(), config.headers) else {
        return Outcome::Defer(req);
    };
    let head = Head {
        method: &judged.method,
        uri: &judged.uri,
        version: req.version(),
        headers: &judged.headers,
        body_empty: true,
    };
    match decide::decide(head, conn, table, Door::ForwardAuth).await {
        Decided::Allow(allowed) => Outcome::Respond(answer(*allowed, conn.tls)),
        Decided::Respond(response) => Outcome::Respond(response),
        Decided::Defer(lead) => decide::defer(req, lead),
    }
}

/// The head of the request a proxy asks about.
pub(crate) struct Judged {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
}

/// The request the proxy asks about (Python's `original_scope`), or `None`
/// where Python refuses (400) or reads something the native path does not.
pub(crate) fn original(headers: &HeaderMap, family: Family) -> Option<Judged> {
    let ([method_name, uri_name], other) = family.names();
    let mut method = None;
    let mut uri = None;
    let mut forwarded_host = None;
    let mut host = None;
    for (name, value) in headers {
        let name = name.as_str();
        let slot = if name == method_name {
            &mut method
        } else if name == uri_name {
            &mut uri
        } else if name == FORWARDED_HOST {
            &mut forwarded_host
        } else if name == HOST.as_str() {
            &mut host
        } else if other.contains(&name) {
            return None; // the other family: 400 forward_auth_ambiguous
        } else {
            continue;
        };
        if slot.is_some() {
            return None; // a judged header twice: 400 forward_auth_ambiguous
        }
        *slot = Some(value.as_bytes().trim_ascii());
    }
    let method = method.filter(|m| !m.is_empty())?;
    let uri = uri.filter(|u| !u.is_empty())?;
    if method.len() > 16 || !method.iter().all(u8::is_ascii_uppercase) {
        return None;
    }
    if uri.len() > MAX_URI || uri[0] != b'/' || uri.iter().any(|&c| c <= 32 || c == 127) {
        return None;
    }
    // A fragment, or bytes the URI type does not take: Python reads those.
    if uri.contains(&b'#') {
        return None;
    }
    let uri = Uri::from_maybe_shared(Bytes::copy_from_slice(uri)).ok()?;
    if uri.scheme().is_some() || uri.authority().is_some() {
        return None;
    }
    let method = Method::from_bytes(method).ok()?;
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
        judged.append(HOST, HeaderValue::from_bytes(host).ok()?);
    }
    Some(Judged {
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
        original(&headers(pairs), family)
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
