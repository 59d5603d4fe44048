//! Which request heads the native path takes, and which it refuses — the
//! twin of `bastion.gateway.hygiene` (`framing` and `body`).
//!
//! Python refuses odd heads with its own problem documents, in this order
//! ([`refused`]): a method that is not an upper-case token (400
//! `invalid_method`), more header fields or bytes than `request_limits`
//! (431 `headers_too_large`), several `Host` fields or none in HTTP/1.1 (400
//! `invalid_host`), conflicting or malformed body framing (400
//! `bad_request_framing`); the native path renders the same refusals
//! (`crate::refusal::framing`) where the app hands the path to its gateway.
//! Method-override headers are not believed: the method judged is the
//! request's own, and `mutate` drops them before the upstream (as Python did).

use http::{HeaderMap, HeaderValue, Method, Version};

/// The request head limits (`request_limits`).
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    pub max_headers: usize,
    pub max_header_bytes: usize,
}

/// Whether this head is plainly one the gateway door takes, for a route taking
/// bodies up to `max_body` bytes: a proxied method, the limits, one Host, no
/// upgrade, no body or one `Content-Length` (`target::app_refusal` renders the
/// app's own 400 only for such a head). The gateway's doors take whatever
/// head [`refused`] passes. `body_empty` is the body's end-of-stream flag as
/// the server knows it before reading (an HTTP/2 request that ended with its head).
pub fn takes(
    method: &Method,
    version: Version,
    headers: &HeaderMap,
    body_empty: bool,
    limits: HeadLimits,
    max_body: u64,
) -> bool {
    if !proxied_method(method) {
        return false;
    }
    takes_head(version, headers, body_empty, limits, max_body)
}

/// A method Python's `framing` passes and its proxy forwards as it is: any
/// upper-case token (`PROPFIND`, `QUERY`, an `OPTIONS` that is no preflight of a
/// CORS route: `gateway::serve` asks `preflight::preflight` first), but `CONNECT`
/// (a tunnel: the HTTP/1 loop hands it to hyper, and Python's).
fn proxied_method(method: &Method) -> bool {
    *method != Method::CONNECT && crate::router::is_method_token(method.as_str())
}

/// Whether Python's server reads the head as a WebSocket opening handshake:
/// uvicorn hands a request to `websockets` when its last `Connection` field
/// lists `upgrade` and its last `Upgrade` field is `websocket` (any case).
/// Any other `Upgrade` (`h2c`, `websocket, h2c`, without `Connection:
/// upgrade`) is a plain request to it, whose `Upgrade` the proxy drops as
/// hop-by-hop.
pub fn python_upgrades(headers: &HeaderMap) -> bool {
    let Some(connection) = headers.get_all(http::header::CONNECTION).iter().next_back() else {
        return false;
    };
    let upgrade = connection
        .as_bytes()
        .split(|&b| b == b',')
        .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"upgrade"));
    upgrade
        && headers
            .get_all(http::header::UPGRADE)
            .iter()
            .next_back()
            .is_some_and(|value| {
                value
                    .as_bytes()
                    .trim_ascii()
                    .eq_ignore_ascii_case(b"websocket")
            })
}

/// In a request's extensions: the HTTP/1 loop did not read this request's
/// body, whose framing it refused ([`unframed`]), and closes the connection
/// after the answer. Such a request must be answered by the front itself
/// (`decide::framing_refusal`), never forwarded: its body's end is unknown.
#[derive(Debug, Clone, Copy)]
pub struct Unreadable(pub Unframed);

/// In a request's extensions: the HTTP/1 loop could not read the head's
/// fields (`h1::malformed_field`); the request carries nothing else (method
/// `GET`, target `/`, no fields). The front answers it (`decide::malformed`)
/// and closes the connection.
#[derive(Debug, Clone, Copy)]
pub struct Malformed;

/// Why Python's `framing` step refuses a head, in the order it checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not an upper-case HTTP token: 400 `invalid_method`.
    Method,
    /// More fields than `request_limits.max_headers`: 431 `headers_too_large`.
    Fields,
    /// More bytes (names + values) than `max_header_bytes`: 431.
    Bytes,
    /// Several `Host` fields: 400 `invalid_host`.
    Hosts,
    /// No `Host`, or an empty one, in HTTP/1.1: 400 `invalid_host`.
    NoHost,
    /// Body framing Python (or RFC 9112) refuses: 400 `bad_request_framing`.
    Framing(Unframed),
    /// bastion's own, not Python's: a trusted proxy's `X-Forwarded-For` names a
    /// hop that is not an IP address (`client_ip` finds no address), 400
    /// `invalid_forwarded_for`. Python took the hop's text for the client's
    /// address: its per-address limits then counted each spelling apart (a
    /// proxy appending `:port` made each connection a new client), and its IP
    /// rules and key allow-lists could only refuse it.
    ForwardedFor,
    /// bastion's own: `CONNECT` (a tunnel) is never served, 400 `invalid_method`.
    /// Python's pipeline matched it as any method and proxied it as a plain
    /// request; a gateway in front of APIs has no tunnel to open, and a probe
    /// for an open proxy gets a plain refusal.
    Connect,
}

/// Body framing that cannot be read one way only (RFC 9112 §6.1, §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unframed {
    /// `Content-Length` with `Transfer-Encoding`.
    Both,
    /// A transfer coding list other than exactly `chunked`, in one field or several.
    Coding,
    /// Several `Content-Length` fields, or one that is not 1 to 18 digits.
    Length,
    /// `Transfer-Encoding` in HTTP/1.0 (Python never sees one: its servers refuse it).
    Http10,
}

/// Python's `framing` refusal of this head (`bastion.gateway.hygiene.framing`),
/// `None` when it passes. An HTTP/2 head is judged as Python's app reads it
/// (`h2_refused`); `authority` and `body_empty` matter there only.
pub fn refused(
    method: &Method,
    version: Version,
    headers: &HeaderMap,
    authority: Option<&str>,
    body_empty: bool,
    limits: HeadLimits,
) -> Option<Refused> {
    if !crate::router::is_method_token(method.as_str()) {
        return Some(Refused::Method);
    }
    if !matches!(version, Version::HTTP_11 | Version::HTTP_10) {
        return h2_refused(headers, authority, body_empty, limits);
    }
    if headers.len() > limits.max_headers {
        return Some(Refused::Fields);
    }
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if bytes > limits.max_header_bytes {
        return Some(Refused::Bytes);
    }
    let mut hosts = headers.get_all(http::header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => return Some(Refused::Hosts),
        (None, _) if version == Version::HTTP_11 => return Some(Refused::NoHost),
        (Some(host), None) if host.is_empty() && version == Version::HTTP_11 => {
            return Some(Refused::NoHost)
        }
        _ => {}
    }
    if let Some(unframed) = unframed(version, headers) {
        return Some(Refused::Framing(unframed));
    }
    (*method == Method::CONNECT).then_some(Refused::Connect)
}

/// `framing` of an HTTP/2 head as Python's app receives it: the hop to Python
/// (`forward::downgrade`) sends it as HTTP/1.1 with a `Host` from the
/// `:authority` when it has no `Host` field, its `cookie` fields joined in
/// one (`; `), and `transfer-encoding: chunked` for a body of unknown length.
/// So Python counts those fields and bytes, refuses several `Host` fields, or
/// none (no `:authority` either) or an empty one as an HTTP/1.1 request's.
/// The body framing is hyper's (its h2 codec refuses `Transfer-Encoding` and
/// a bad `Content-Length`): not judged here.
fn h2_refused(
    headers: &HeaderMap,
    authority: Option<&str>,
    body_empty: bool,
    limits: HeadLimits,
) -> Option<Refused> {
    let mut cookies = 0usize;
    let mut bytes = 0usize;
    for (name, value) in headers {
        cookies += usize::from(name == http::header::COOKIE);
        bytes += name.as_str().len() + value.len();
    }
    let joined = cookies.saturating_sub(1);
    // "cookie" named once, and "; " between the values.
    bytes -= joined * ("cookie".len() - "; ".len());
    let mut fields = headers.len() - joined;
    let hosts = headers.get_all(http::header::HOST).iter().count();
    let authority = authority.filter(|_| hosts == 0);
    if let Some(authority) = authority {
        fields += 1;
        bytes += "host".len() + authority.len();
    }
    let framed = headers.contains_key(http::header::CONTENT_LENGTH)
        || headers.contains_key(http::header::TRANSFER_ENCODING);
    if !body_empty && !framed {
        fields += 1;
        bytes += "transfer-encoding".len() + "chunked".len();
    }
    if fields > limits.max_headers {
        return Some(Refused::Fields);
    }
    if bytes > limits.max_header_bytes {
        return Some(Refused::Bytes);
    }
    match (hosts, authority) {
        (0, None) => Some(Refused::NoHost),
        (1, _)
            if headers
                .get(http::header::HOST)
                .is_some_and(HeaderValue::is_empty) =>
        {
            Some(Refused::NoHost)
        }
        (0 | 1, _) => None,
        _ => Some(Refused::Hosts),
    }
}

/// The body framing of this HTTP/1.x head refused, as Python's `framing`
/// refuses it (its order), and `Transfer-Encoding` in HTTP/1.0 (RFC 9112
/// §6.1: faulty framing); `None` for no body, one `Content-Length` of 1 to
/// 18 digits, or one `Transfer-Encoding: chunked` alone.
pub fn unframed(version: Version, headers: &HeaderMap) -> Option<Unframed> {
    let codings = headers.get_all(http::header::TRANSFER_ENCODING);
    let mut lengths = headers.get_all(http::header::CONTENT_LENGTH).iter();
    if codings.iter().next().is_some() {
        if lengths.next().is_some() {
            return Some(Unframed::Both);
        }
        let mut tokens = codings
            .iter()
            .flat_map(|value| value.as_bytes().split(|&b| b == b','))
            .map(<[u8]>::trim_ascii);
        let chunked = tokens
            .next()
            .is_some_and(|token| token.eq_ignore_ascii_case(b"chunked"))
            && tokens.next().is_none();
        if !chunked {
            return Some(Unframed::Coding);
        }
        if version == Version::HTTP_10 {
            return Some(Unframed::Http10);
        }
        return None;
    }
    match (lengths.next(), lengths.next()) {
        (None, _) => None,
        (Some(value), None) => {
            let raw = value.as_bytes().trim_ascii();
            let plain = !raw.is_empty() && raw.len() <= 18 && raw.iter().all(u8::is_ascii_digit);
            (!plain).then_some(Unframed::Length)
        }
        _ => Some(Unframed::Length),
    }
}

/// [`takes`] without the method.
fn takes_head(
    version: Version,
    headers: &HeaderMap,
    body_empty: bool,
    limits: HeadLimits,
    max_body: u64,
) -> bool {
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
    // A head Python's server reads as a WebSocket handshake is the WebSocket
    // door's; any other `Upgrade` is a hop-by-hop field of a plain request.
    if python_upgrades(headers) {
        return false;
    }
    let hosts = headers.get_all(http::header::HOST).iter().count();
    let empty = headers
        .get(http::header::HOST)
        .is_some_and(HeaderValue::is_empty);
    let hosted = match version {
        Version::HTTP_11 => hosts == 1 && !empty,
        // Python serves an HTTP/1.0 request without Host (or with an empty one):
        // the router reads it as the host of no route, as Python's matcher does.
        Version::HTTP_10 => hosts <= 1,
        // HTTP/2: the `:authority`, or one `Host` field, which Python reads (the
        // hop keeps it): the router reads it first too (`verdict::host_of`).
        _ => hosts == 0 || (hosts == 1 && !empty),
    };
    if !hosted {
        return false;
    }
    if headers.contains_key(http::header::TRANSFER_ENCODING) {
        return false; // a body of unknown length
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
    fn every_upper_case_token_is_proxied_but_connect() {
        let v = Version::HTTP_11;
        for method in ["OPTIONS", "PROPFIND", "QUERY", "TRACE", "M-SEARCH"] {
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            assert!(ok(method.clone(), v, &[("host", "a")], false), "{method}");
            let host = head(&[("host", "a")]);
            assert_eq!(refused(&method, v, &host, None, false, LIMITS), None);
        }
        assert!(!ok(Method::CONNECT, v, &[("host", "a")], false));
    }

    fn refusal(method: &str, version: Version, pairs: &[(&'static str, &str)]) -> Option<Refused> {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        refused(&method, version, &head(pairs), None, true, LIMITS)
    }

    #[test]
    fn pythons_framing_refusals_in_its_order() {
        let v = Version::HTTP_11;
        let host = ("host", "a");
        assert_eq!(refusal("GET", v, &[host]), None);
        assert_eq!(refusal("delete", v, &[host]), Some(Refused::Method));
        assert_eq!(refusal("GET", v, &[]), Some(Refused::NoHost));
        assert_eq!(refusal("GET", v, &[("host", "")]), Some(Refused::NoHost));
        assert_eq!(refusal("GET", v, &[host, host]), Some(Refused::Hosts));
        // HTTP/1.0 needs no Host (an empty one passes too); several are still refused.
        assert_eq!(refusal("GET", Version::HTTP_10, &[]), None);
        assert_eq!(refusal("GET", Version::HTTP_10, &[("host", "")]), None);
        assert_eq!(
            refusal("GET", Version::HTTP_10, &[host, host]),
            Some(Refused::Hosts)
        );
        // The method first, then the limits, then Host, then the body framing.
        assert_eq!(refusal("get", v, &[]), Some(Refused::Method));
        let six = [
            host,
            ("a", "1"),
            ("b", "1"),
            ("c", "1"),
            ("d", "1"),
            ("e", "1"),
        ];
        assert_eq!(refusal("GET", v, &six), Some(Refused::Fields));
        assert_eq!(refusal("GET", v, &six[1..]), Some(Refused::NoHost));
        let big = "x".repeat(200);
        assert_eq!(refusal("GET", v, &[("x", &big)]), Some(Refused::Bytes));
        assert_eq!(
            refusal("GET", v, &[("x", &big[..195])]),
            Some(Refused::NoHost)
        );
        let framing = |pairs: &[(&'static str, &str)]| {
            let mut all = vec![host];
            all.extend_from_slice(pairs);
            refusal("POST", v, &all)
        };
        let cl = |n| ("content-length", n);
        let te = |c| ("transfer-encoding", c);
        assert_eq!(framing(&[cl("3")]), None);
        assert_eq!(framing(&[cl(" 3 ")]), None);
        assert_eq!(framing(&[te("chunked")]), None);
        assert_eq!(framing(&[te(" Chunked ")]), None);
        use Unframed::*;
        for (pairs, why) in [
            (&[cl("3"), te("chunked")][..], Both),
            (&[te("chunked"), cl("3")], Both),
            (&[te("gzip")], Coding),
            (&[te("gzip, chunked")], Coding),
            (&[te("chunked, chunked")], Coding),
            (&[te("chunked,")], Coding),
            (&[te("chunked"), te("chunked")], Coding),
            (&[te("")], Coding),
            (&[cl("3"), cl("3")], Length),
            (&[cl("+3")], Length),
            (&[cl("3,3")], Length),
            (&[cl("")], Length),
            (&[cl("1234567890123456789")], Length),
        ] {
            assert_eq!(framing(pairs), Some(Refused::Framing(why)), "{pairs:?}");
            assert_eq!(unframed(v, &head(pairs)), Some(why), "{pairs:?}");
        }
        let http10 = refusal("POST", Version::HTTP_10, &[te("chunked")]);
        assert_eq!(http10, Some(Refused::Framing(Http10)));
        assert_eq!(refusal("get", Version::HTTP_2, &[]), Some(Refused::Method));
    }

    #[test]
    fn only_a_websocket_handshake_python_reads_is_not_plain() {
        let v = Version::HTTP_11;
        let ws = [
            ("host", "a"),
            ("connection", "upgrade"),
            ("upgrade", "websocket"),
        ];
        assert!(!ok(Method::GET, v, &ws, false), "the WebSocket door's");
        // Python's server reads these as plain requests (the proxy drops `Upgrade`).
        let h2c = [
            ("host", "a"),
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
        ];
        assert!(ok(Method::GET, v, &h2c, false));
        assert!(ok(
            Method::GET,
            v,
            &[("host", "a"), ("upgrade", "websocket")],
            false
        ));
    }

    #[test]
    fn an_http2_head_is_judged_as_python_receives_it() {
        let h2 = |pairs: &[(&'static str, &str)], authority: Option<&str>, empty: bool| {
            refused(
                &Method::GET,
                Version::HTTP_2,
                &head(pairs),
                authority,
                empty,
                LIMITS,
            )
        };
        let five = [("a", "1"), ("b", "1"), ("c", "1"), ("d", "1"), ("e", "1")];
        // The hop adds `host` from the authority: five fields become six.
        assert_eq!(h2(&five[..4], Some("gw.test"), true), None);
        assert_eq!(h2(&five, Some("gw.test"), true), Some(Refused::Fields));
        assert_eq!(
            h2(
                &[("host", "gw.test"), five[0], five[1], five[2], five[3]],
                Some("x"),
                true
            ),
            None
        );
        // ... and `transfer-encoding: chunked` for a body of unknown length.
        assert_eq!(
            h2(&five[..4], Some("gw.test"), false),
            Some(Refused::Fields)
        );
        assert_eq!(
            h2(
                &[five[0], five[1], five[2], ("content-length", "1")],
                Some("a"),
                false
            ),
            None
        );
        // Cookie fields become one.
        let cookies = [
            ("cookie", "a=1"),
            ("cookie", "b=2"),
            ("cookie", "c=3"),
            five[0],
            five[1],
        ];
        assert_eq!(h2(&cookies, Some("gw.test"), true), None);
        // Bytes: the joined cookie ("cookie" once, "; " between), "host" + authority.
        let value = "x".repeat(190);
        let exact = |authority: &str| h2(&[("v", &value)], Some(authority), true);
        assert_eq!(exact("abcde"), None); // 1 + 190 + 4 + 5 = 200
        assert_eq!(exact("abcdef"), Some(Refused::Bytes));
        let two = [("cookie", &value[..90]), ("cookie", &value[..90])];
        assert_eq!(h2(&two, Some("abcdefgh"), true), None); // 6 + 180 + 2 + 12 = 200
        assert_eq!(h2(&two, Some("abcdefghi"), true), Some(Refused::Bytes));
        // Host: none and no authority, an empty one: an HTTP/1.1 request's 400; several.
        assert_eq!(h2(&[], None, true), Some(Refused::NoHost));
        assert_eq!(
            h2(&[("host", "")], Some("gw.test"), true),
            Some(Refused::NoHost)
        );
        assert_eq!(
            h2(&[("host", "a"), ("host", "a")], None, true),
            Some(Refused::Hosts)
        );
        assert_eq!(h2(&[("host", "a")], None, true), None);
        assert_eq!(h2(&[], Some("gw.test"), true), None);
    }

    #[test]
    fn everything_odd_is_deferred() {
        let v = Version::HTTP_11;
        assert!(!ok(
            Method::from_bytes(b"get").unwrap(),
            v,
            &[("host", "a")],
            false
        ));
        assert!(!ok(Method::GET, v, &[], false), "no host");
        assert!(!ok(Method::GET, v, &[("host", "")], false), "empty host");
        assert!(!ok(Method::GET, v, &[("host", "a"), ("host", "b")], false));
        // HTTP/2: one Host field is read (Python reads it); several or an empty one are not.
        assert!(ok(Method::GET, Version::HTTP_2, &[("host", "a")], true));
        assert!(!ok(Method::GET, Version::HTTP_2, &[("host", "")], true));
        assert!(!ok(
            Method::GET,
            Version::HTTP_2,
            &[("host", "a"), ("host", "a")],
            true
        ));
        // HTTP/1.0: no Host, or an empty one, is served (Python serves it).
        assert!(ok(Method::GET, Version::HTTP_10, &[], true));
        assert!(ok(Method::GET, Version::HTTP_10, &[("host", "")], true));
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
        // A method-override header changes nothing: the request's own method is judged.
        assert!(ok(
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
            method in prop::sample::select(vec!["GET", "POST", "OPTIONS", "get", "PROPFIND", "DELETE", "CONNECT"]),
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
                prop_assert!(method != Method::CONNECT);
                prop_assert!(method.as_str().bytes().all(|b| b.is_ascii_uppercase()));
                // Nothing Python's `framing` refuses is taken.
                // (An h2 head's count also holds what the hop to Python adds: the
                // gateway door asks `refused` first.)
                if !h2 {
                    prop_assert_eq!(refused(&method, version, &map, None, empty, limits), None);
                }
                let hosts = map.get_all("host").iter().count();
                prop_assert!(hosts == 1 || (h2 && hosts == 0));
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
