//! The `cors` policy: per-route CORS with exact origin allow-lists — the
//! native twin of `bastion.gateway.cors` (its docstring is the contract). The
//! door that applies it to a request is `preflight` (a preflight's answer, and
//! the match of an `OPTIONS` by the method it asks for).
//!
//! - an origin is allowed only if it equals, byte for byte, one of the route's
//!   origins, and only if the request carries exactly one `Origin`;
//! - a preflight (`OPTIONS` with one `Access-Control-Request-Method` and an
//!   `Origin`, [`requested`]) of a CORS route gets a 204 with the same head as
//!   Python's ([`preflight_head`]), before authentication, never proxied;
//! - an actual request from another origin is refused (403
//!   `cors_origin_not_allowed`, with `Vary: Origin`), a preflight too;
//! - an allowed request's responses — the upstream's and the native
//!   refusals' (401, 429, 502/503/504) — carry `Access-Control-Allow-Origin`,
//!   `Access-Control-Allow-Credentials` and `Access-Control-Expose-Headers` as
//!   configured and `Vary: Origin`; the upstream's own `Access-Control-*`
//!   headers are dropped.
//!
//! - a preflight refused for its method (403 `cors_method_not_allowed`) or a
//!   request header (403 `cors_header_not_allowed`, [`preflight_allowed`]), the
//!   value quoted as Python's `repr` writes it ([`py_repr`]) after Python's
//!   latin-1 decoding, Unicode `strip` and `lower`, whatever bytes it holds.

use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH, ORIGIN, VARY};
use http::{Method, StatusCode};
use serde::Deserialize;

use crate::problem::Problem;
use crate::router::is_method_token;

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
/// Routes a preflight whose method is not a method token (`post`, `GET X`,
/// empty): Python's matcher matches such a string only on routes without a
/// `methods` list, as it does this token, which no route lists (settings
/// allow GET, HEAD, POST, PUT, PATCH, DELETE and OPTIONS only).
const UNLISTED: &str = "BASTION-UNLISTED-METHOD";

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

/// A `CorsError` (403, `Vary: Origin`) with `code` and `detail`.
fn cors_error(code: &'static str, detail: String) -> Problem {
    Problem {
        status: StatusCode::FORBIDDEN,
        code,
        title: "Cross-origin request refused",
        detail,
        www_authenticate: None,
        retry_after: None,
        headers: vec![(VARY, VARY_ORIGIN)],
    }
}

pub(crate) fn origin_not_allowed() -> Problem {
    cors_error("cors_origin_not_allowed", ORIGIN_DETAIL.to_owned())
}

/// Python's `cors` step for a preflight of a CORS route, once its `ip` step
/// passed: the request's allowed origin, or the refusal — 403
/// `cors_origin_not_allowed`, `cors_method_not_allowed` (`OPTIONS` itself is
/// never among the methods: `compile_cors` drops it), `cors_header_not_allowed`.
pub(crate) fn preflight_allowed<'r>(
    policy: &CorsPolicy,
    asked: &Asked,
    headers: &'r HeaderMap,
) -> Result<&'r HeaderValue, Problem> {
    let Some(origin) = policy.origin(headers) else {
        return Err(origin_not_allowed());
    };
    if !policy.methods.iter().any(|m| **m == *asked.text) {
        return Err(method_not_allowed(&asked.text));
    }
    if let Some(name) = header_refused(policy, headers) {
        return Err(header_not_allowed(&name));
    }
    Ok(origin)
}

/// The CORS head of a preflight's `204` for the allowed `origin`, in Python's order.
pub(crate) fn preflight_head(policy: &CorsPolicy, origin: &HeaderValue, headers: &mut HeaderMap) {
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
}

/// `CorsMethodNotAllowedError(f"{method[:32]!r} is not allowed from this origin.")`.
fn method_not_allowed(method: &str) -> Problem {
    let quoted = py_repr(&method.chars().take(32).collect::<String>());
    let detail = format!("{quoted} is not allowed from this origin.");
    cors_error("cors_method_not_allowed", detail)
}

/// `CorsHeaderNotAllowedError(f"Request header {name[:64]!r} is not allowed from this origin.")`.
fn header_not_allowed(name: &str) -> Problem {
    let quoted = py_repr(&name.chars().take(64).collect::<String>());
    let detail = format!("Request header {quoted} is not allowed from this origin.");
    cors_error("cors_header_not_allowed", detail)
}

/// What a preflight asks for (`cors.preflight_method`): one
/// `Access-Control-Request-Method`, some `Origin`.
pub(crate) struct Asked {
    /// Python's string: the value decoded as latin-1, Unicode-stripped.
    pub text: String,
    /// The method it is routed by: itself when it is a method token, else
    /// [`UNLISTED`], which routes alike.
    pub method: Method,
}

/// The method a preflight asks for, `None` when the request is no preflight.
pub(crate) fn requested(headers: &HeaderMap) -> Option<Asked> {
    let mut asked = headers.get_all(&ACRM).iter();
    let (Some(asked), None) = (asked.next(), asked.next()) else {
        return None;
    };
    if !headers.contains_key(ORIGIN) {
        return None;
    }
    let text = py_strip(&latin1(asked.as_bytes())).to_owned();
    let routed = if is_method_token(&text) {
        &text
    } else {
        UNLISTED
    };
    let method = Method::from_bytes(routed.as_bytes()).ok()?;
    Some(Asked { text, method })
}

/// Python's `bytes.decode("latin-1")`: one char per byte.
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// Python's `str.isspace` within latin-1 (what `str.strip()` removes there).
fn py_space(c: char) -> bool {
    matches!(c, '\t'..='\r' | '\u{1c}'..='\u{20}' | '\u{85}' | '\u{a0}')
}

/// Python's `str.strip()` of a latin-1 decoded string.
fn py_strip(text: &str) -> &str {
    text.trim_matches(py_space)
}

/// Python's `str.lower()` within latin-1: `A`-`Z` and `À`-`Þ` but `×`.
fn py_lower(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            'A'..='Z' | '\u{c0}'..='\u{d6}' | '\u{d8}'..='\u{de}' => {
                char::from_u32(c as u32 + 0x20).unwrap_or(c)
            }
            c => c,
        })
        .collect()
}

/// Python's `repr()` of a str: single quotes unless it holds `'` and no `"`;
/// the quote and `\` escaped, `\t \n \r`, other non-printables as `\xNN`
/// (`\uNNNN`, `\UNNNNNNNN` above latin-1, where `isprintable` is Unicode's:
/// approximated there by Rust's control and whitespace classes).
pub(crate) fn py_repr(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for c in text.chars() {
        match c {
            c if c == quote || c == '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            ' '..='~' => out.push(c),
            c if !py_printable(c) => {
                let n = c as u32;
                let escaped = if n <= 0xff {
                    format!("\\x{n:02x}")
                } else if n <= 0xffff {
                    format!("\\u{n:04x}")
                } else {
                    format!("\\U{n:08x}")
                };
                out.push_str(&escaped);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python's `str.isprintable` for one non-ASCII char: exact within latin-1
/// (`U+0080`-`U+00A0` and the soft hyphen are not), Rust's classes beyond.
fn py_printable(c: char) -> bool {
    match c as u32 {
        0x80..=0xa0 | 0xad => false,
        0xa1..=0xff => true,
        _ => {
            !c.is_control()
                && !c.is_whitespace()
                && !matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}')
        }
    }
}

/// The first header a preflight asks for that the policy does not allow, as
/// Python reads it (each field decoded as latin-1, split on `,`, each name
/// Unicode-stripped and lower-cased); `None` when every one is allowed.
fn header_refused(policy: &CorsPolicy, headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all(&ACRH) {
        for token in latin1(value.as_bytes()).split(',') {
            let name = py_lower(py_strip(token));
            if name.is_empty() {
                continue;
            }
            let allowed = |known: &str| known == name;
            if !policy.headers.iter().any(|h| allowed(h)) && !SAFELISTED.iter().any(|h| allowed(h))
            {
                return Some(name);
            }
        }
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
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

    /// A header map of `pairs`, in order (`preflight`'s tests too).
    pub(crate) fn head(pairs: &[(&str, &str)]) -> HeaderMap {
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
        let asked = |pairs: &[(&str, &str)]| requested(&head(pairs)).map(|a| (a.method, a.text));
        let o = ("origin", "https://app.example.com");
        let acrm = "access-control-request-method";
        assert_eq!(
            asked(&[o, (acrm, "POST")]),
            Some((Method::POST, "POST".into()))
        );
        assert_eq!(
            asked(&[o, (acrm, " PUT\t")]),
            Some((Method::PUT, "PUT".into()))
        );
        assert_eq!(asked(&[(acrm, "POST")]), None);
        assert_eq!(asked(&[o, (acrm, "GET"), (acrm, "GET")]), None);
        // Not a method token: routed as a method no route lists, quoted as Python reads it.
        let unlisted = Method::from_bytes(UNLISTED.as_bytes()).unwrap();
        assert_eq!(
            asked(&[o, (acrm, "post")]),
            Some((unlisted.clone(), "post".into()))
        );
        assert_eq!(asked(&[o, (acrm, "")]), Some((unlisted.clone(), "".into())));
        let mut odd = head(&[o]);
        odd.append(&ACRM, HeaderValue::from_bytes(b"\xa0G\xe9T\x85").unwrap());
        let got = requested(&odd).unwrap();
        assert_eq!((got.method, got.text.as_str()), (unlisted, "G\u{e9}T"));

        let p = policy(false, "");
        let refused = |value: &[u8]| {
            let mut h = HeaderMap::new();
            h.append(&ACRH, HeaderValue::from_bytes(value).unwrap());
            header_refused(&p, &h)
        };
        assert_eq!(refused(b"Content-Type, authorization"), None);
        assert_eq!(refused(b"X-API-Key,accept, range ,"), None);
        assert_eq!(refused(b""), None);
        assert_eq!(refused(b"x-secret, accept"), Some("x-secret".into()));
        assert_eq!(refused(b"accept, X API Key"), Some("x api key".into()));
        // Latin-1, Unicode strip (NBSP, NEL) and lower (`\xc9` is É, `\xd7` is not a letter).
        assert_eq!(
            refused(b"\xa0X-\xc9\xd7\x85, accept"),
            Some("x-\u{e9}\u{d7}".into())
        );
        assert_eq!(refused(b"\xa0Authorization\x85"), None);
        assert_eq!(header_refused(&p, &head(&[])), None);
    }

    #[test]
    fn cors_details_quote_as_pythons_repr() {
        // Each expected value is Python's `repr` of the same str.
        for (text, repr) in [
            ("DELETE", "'DELETE'"),
            ("", "''"),
            ("it's", "\"it's\""),
            ("it's \"q\"", "'it\\'s \"q\"'"),
            ("a\\b", "'a\\\\b'"),
            ("\t\n\r\u{1}\u{7f}", "'\\t\\n\\r\\x01\\x7f'"),
            (
                "\u{85}\u{a0}\u{ad}\u{a1}\u{e9}\u{ff}",
                "'\\x85\\xa0\\xad\u{a1}\u{e9}\u{ff}'",
            ),
            ("\u{2028}\u{3b1}", "'\\u2028\u{3b1}'"),
        ] {
            assert_eq!(py_repr(text), repr, "{text:?}");
        }
        let long = "A".repeat(40);
        assert_eq!(
            method_not_allowed(&long).detail,
            format!("'{}' is not allowed from this origin.", "A".repeat(32))
        );
        let name = "x".repeat(70);
        assert_eq!(
            header_not_allowed(&name).detail,
            format!(
                "Request header '{}' is not allowed from this origin.",
                "x".repeat(64)
            )
        );
        let body = method_not_allowed("DELETE").body("rid-1");
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            "{\"type\":\"urn:bastion:problem:cors_method_not_allowed\",\
             \"title\":\"Cross-origin request refused\",\"status\":403,\
             \"detail\":\"'DELETE' is not allowed from this origin.\",\
             \"reason\":\"cors_method_not_allowed\",\"request_id\":\"rid-1\"}"
        );
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
