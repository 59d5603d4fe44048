//! Which request heads the native path takes — the conservative twin of
//! `bastion.gateway.hygiene` (`framing` and `body`).
//!
//! Python refuses odd heads with its own problem documents (invalid method,
//! several Host fields, conflicting framing, too many header bytes, a body
//! over the route's limit) and drops method-override headers. The native
//! path never renders those refusals but the last (a declared length over
//! `max_body`: the gateway's 413, `crate::refusal`): any head that is not
//! plainly fine is deferred, and Python answers exactly as it always has.

use http::{HeaderMap, Method, Version};

/// The request head limits (`request_limits`).
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    pub max_headers: usize,
    pub max_header_bytes: usize,
}

const METHOD_OVERRIDE: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Whether the native path may take this head, for a route taking bodies up
/// to `max_body` bytes. `body_empty` is the body's end-of-stream flag as the
/// server knows it before reading (an HTTP/2 request that ended with its head).
pub fn takes(
    method: &Method,
    version: Version,
    headers: &HeaderMap,
    body_empty: bool,
    limits: HeadLimits,
    max_body: u64,
) -> bool {
    if !matches!(
        *method,
        Method::GET | Method::HEAD | Method::POST | Method::PUT | Method::DELETE | Method::PATCH
    ) {
        // OPTIONS may be a CORS preflight (`cors::preflight`); the rest are rare: Python decides.
        return false;
    }
    takes_head(version, headers, body_empty, limits, max_body)
}

/// Whether the native path may take this head with a body of unknown length,
/// counted as it streams (`crate::body_limit`): one `Transfer-Encoding` field
/// of exactly `chunked` (any case, HTTP/1.1) or an HTTP/2 body without
/// `Content-Length`, no `Content-Length` beside it, and the rest of the head
/// as [`takes`] wants it. Python's `framing` takes these (`body_length = -1`);
/// several fields, other codings, HTTP/1.0 and `Content-Length` with
/// `Transfer-Encoding` stay deferred (Python's 400s and hyper's).
pub fn takes_streamed(
    method: &Method,
    version: Version,
    headers: &HeaderMap,
    body_empty: bool,
    limits: HeadLimits,
) -> bool {
    if !matches!(
        *method,
        Method::GET | Method::HEAD | Method::POST | Method::PUT | Method::DELETE | Method::PATCH
    ) || headers.contains_key(http::header::CONTENT_LENGTH)
    {
        return false;
    }
    let mut codings = headers.get_all(http::header::TRANSFER_ENCODING).iter();
    let streamed = match (version, codings.next(), codings.next()) {
        (Version::HTTP_11, Some(coding), None) => coding
            .as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"chunked"),
        (Version::HTTP_2, None, None) => !body_empty,
        _ => false,
    };
    streamed && head_is_plain(version, headers, body_empty, limits, 0, Framing::Streamed)
}

/// [`takes_head`] for a WebSocket handshake (`crate::websocket::handshake`
/// checked it): its `Upgrade` field is the point, and it has no body.
pub fn takes_websocket(headers: &HeaderMap, body_empty: bool, limits: HeadLimits) -> bool {
    head_is_plain(
        Version::HTTP_11,
        headers,
        body_empty,
        limits,
        0,
        Framing::Upgrade,
    )
}

/// [`takes`] without the method: the head (a preflight's, whose method is `OPTIONS`).
pub fn takes_head(
    version: Version,
    headers: &HeaderMap,
    body_empty: bool,
    limits: HeadLimits,
    max_body: u64,
) -> bool {
    head_is_plain(
        version,
        headers,
        body_empty,
        limits,
        max_body,
        Framing::Plain,
    )
}

/// What a head may carry besides the plain fields.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body, or one `Content-Length`.
    Plain,
    /// A WebSocket handshake's `Upgrade`.
    Upgrade,
    /// A body of unknown length ([`takes_streamed`] checked its framing).
    Streamed,
}

fn head_is_plain(
    version: Version,
    headers: &HeaderMap,
    body_empty: bool,
    limits: HeadLimits,
    max_body: u64,
    framing: Framing,
) -> bool {
    let upgrade = framing == Framing::Upgrade;
    if headers.len() > limits.max_headers {
        return false;
    }
    let mut bytes = 0usize;
    for (name, value) in headers {
        bytes += name.as_str().len() + value.len();
    }
    if bytes > limits.max_header_bytes {
        return false;
    }
    if METHOD_OVERRIDE.iter().any(|h| headers.contains_key(*h)) {
        return false;
    }
    // A protocol upgrade (WebSocket) is judged by Python's WebSocket door.
    if !upgrade && headers.contains_key(http::header::UPGRADE) {
        return false;
    }
    let hosts = headers.get_all(http::header::HOST).iter().count();
    match version {
        Version::HTTP_11 | Version::HTTP_10 => {
            if hosts != 1
                || headers
                    .get(http::header::HOST)
                    .is_some_and(|h| h.is_empty())
            {
                return false;
            }
        }
        // HTTP/2: the authority is the pseudo-header; a Host field besides it is odd.
        _ => {
            if hosts != 0 {
                return false;
            }
        }
    }
    if framing == Framing::Streamed {
        return true; // counted as it streams (`crate::body_limit`)
    }
    if headers.contains_key(http::header::TRANSFER_ENCODING) {
        return false; // chunked bodies are `takes_streamed`'s
    }
    let mut lengths = headers.get_all(http::header::CONTENT_LENGTH).iter();
    match (lengths.next(), lengths.next()) {
        (None, _) => {
            // HTTP/1.x without framing headers has no body; HTTP/2 may stream one.
            matches!(version, Version::HTTP_11 | Version::HTTP_10) || body_empty
        }
        (Some(value), None) => {
            let raw = value.as_bytes();
            !raw.is_empty()
                && raw.len() <= 18
                && raw.iter().all(u8::is_ascii_digit)
                && std::str::from_utf8(raw)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .is_some_and(|n| n <= max_body)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const LIMITS: HeadLimits = HeadLimits {
        max_headers: 5,
        max_header_bytes: 200,
    };

    fn head(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ok(method: Method, version: Version, pairs: &[(&'static str, &str)], empty: bool) -> bool {
        takes(&method, version, &head(pairs), empty, LIMITS, 100)
    }

    #[test]
    fn a_plain_get_is_taken() {
        assert!(ok(Method::GET, Version::HTTP_11, &[("host", "a")], false));
        assert!(ok(
            Method::POST,
            Version::HTTP_11,
            &[("host", "a"), ("content-length", "100")],
            false
        ));
        assert!(ok(Method::GET, Version::HTTP_2, &[], true));
        assert!(ok(
            Method::POST,
            Version::HTTP_2,
            &[("content-length", "3")],
            false
        ));
    }

    #[test]
    fn bodies_of_unknown_length_are_taken_streamed_only_when_plain() {
        let streamed = |version, pairs: &[(&'static str, &str)], empty| {
            takes_streamed(&Method::POST, version, &head(pairs), empty, LIMITS)
        };
        let v = Version::HTTP_11;
        assert!(streamed(
            v,
            &[("host", "a"), ("transfer-encoding", "chunked")],
            false
        ));
        assert!(streamed(
            v,
            &[("host", "a"), ("transfer-encoding", " Chunked")],
            false
        ));
        assert!(streamed(Version::HTTP_2, &[], false));
        assert!(!streamed(Version::HTTP_2, &[], true), "no body at all");
        assert!(!streamed(v, &[("host", "a")], false), "no framing: no body");
        for odd in [
            &[("host", "a"), ("transfer-encoding", "gzip, chunked")][..],
            &[("host", "a"), ("transfer-encoding", "chunked, chunked")],
            &[
                ("host", "a"),
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked"),
            ],
            &[
                ("host", "a"),
                ("transfer-encoding", "chunked"),
                ("content-length", "3"),
            ],
            &[
                ("host", "a"),
                ("transfer-encoding", "chunked"),
                ("x-http-method-override", "PUT"),
            ],
            &[("transfer-encoding", "chunked")],
        ] {
            assert!(!streamed(v, odd, false), "{odd:?}");
        }
        assert!(!streamed(
            Version::HTTP_10,
            &[("host", "a"), ("transfer-encoding", "chunked")],
            false
        ));
        assert!(!streamed(
            Version::HTTP_2,
            &[("content-length", "3")],
            false
        ));
        assert!(!takes_streamed(
            &Method::OPTIONS,
            v,
            &head(&[("host", "a"), ("transfer-encoding", "chunked")]),
            false,
            LIMITS
        ));
    }

    #[test]
    fn everything_odd_is_deferred() {
        let v = Version::HTTP_11;
        assert!(!ok(Method::OPTIONS, v, &[("host", "a")], false));
        assert!(!ok(
            Method::from_bytes(b"get").unwrap(),
            v,
            &[("host", "a")],
            false
        ));
        assert!(!ok(Method::GET, v, &[], false), "no host");
        assert!(!ok(Method::GET, v, &[("host", "")], false), "empty host");
        assert!(!ok(Method::GET, v, &[("host", "a"), ("host", "b")], false));
        assert!(!ok(Method::GET, Version::HTTP_2, &[("host", "a")], true));
        assert!(
            !ok(Method::POST, Version::HTTP_2, &[], false),
            "h2 body without length"
        );
        assert!(!ok(
            Method::POST,
            v,
            &[("host", "a"), ("transfer-encoding", "chunked")],
            false
        ));
        assert!(!ok(
            Method::POST,
            v,
            &[("host", "a"), ("content-length", "101")],
            false
        ));
        assert!(!ok(
            Method::POST,
            v,
            &[("host", "a"), ("content-length", "+1")],
            false
        ));
        assert!(!ok(
            Method::POST,
            v,
            &[
                ("host", "a"),
                ("content-length", "1"),
                ("content-length", "1")
            ],
            false
        ));
        assert!(!ok(
            Method::POST,
            v,
            &[("host", "a"), ("x-http-method-override", "DELETE")],
            false
        ));
        let many = [
            ("host", "a"),
            ("a", "1"),
            ("b", "1"),
            ("c", "1"),
            ("d", "1"),
            ("e", "1"),
        ];
        assert!(!ok(Method::GET, v, &many, false));
        let big = "x".repeat(200);
        assert!(!ok(
            Method::GET,
            v,
            &[("host", "a"), ("x-big", &big)],
            false
        ));
    }

    use proptest::prelude::*;

    fn arb_name() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "host",
            "content-length",
            "transfer-encoding",
            "x-http-method-override",
            "x-method-override",
            "x-http-method",
            "authorization",
            "accept",
            "x-other",
        ])
    }

    proptest! {
        // Any head: no panic, and what is taken has exactly the properties Python checks.
        #[test]
        fn taken_heads_are_plainly_fine(
            headers in prop::collection::vec((arb_name(), "[ -~]{0,24}"), 0..8),
            method in prop::sample::select(vec!["GET", "POST", "OPTIONS", "get", "PROPFIND", "DELETE"]),
            h2 in any::<bool>(),
            empty in any::<bool>(),
            max_body in 0u64..1000,
        ) {
            let mut map = HeaderMap::new();
            for (name, value) in &headers {
                if let Ok(value) = HeaderValue::from_str(value) {
                    map.append(*name, value);
                }
            }
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            let version = if h2 { Version::HTTP_2 } else { Version::HTTP_11 };
            let limits = HeadLimits { max_headers: 6, max_header_bytes: 120 };
            if takes(&method, version, &map, empty, limits, max_body) {
                prop_assert!(map.len() <= 6);
                prop_assert!(!map.contains_key("transfer-encoding"));
                prop_assert!(!map.contains_key("x-http-method-override"));
                prop_assert!(method != Method::OPTIONS);
                prop_assert!(method.as_str().bytes().all(|b| b.is_ascii_uppercase()));
                let hosts = map.get_all("host").iter().count();
                prop_assert_eq!(hosts, if h2 { 0 } else { 1 });
                let lengths: Vec<_> = map.get_all("content-length").iter().collect();
                prop_assert!(lengths.len() <= 1);
                if let Some(length) = lengths.first() {
                    let n: u64 = length.to_str().unwrap().parse().unwrap();
                    prop_assert!(n <= max_body);
                } else if h2 {
                    prop_assert!(empty);
                }
            }
        }
    }
}
