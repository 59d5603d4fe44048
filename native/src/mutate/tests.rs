//! `forward_headers` against the vectors recorded from the Python gateway
//! (`tests/vectors/upstream_forward_headers.json`, checked by
//! `tests/gateway/compile/test_upstream_section.py` through a real echo upstream).

use std::net::SocketAddr;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use super::*;

const VECTORS: &str = include_str!("../../../tests/vectors/upstream_forward_headers.json");

#[derive(Deserialize)]
struct Case {
    name: String,
    peer: String,
    tls: bool,
    trusted_peer: bool,
    request_id: Option<String>,
    identity: Option<IdentityCase>,
    consumed: Vec<String>,
    mutate: serde_json::Value,
    headers: Vec<(String, String)>,
    expected: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct IdentityCase {
    subject: Option<String>,
    client_id: Option<String>,
    scopes: Vec<String>,
    key_id: Option<String>,
}

fn map(pairs: &[(String, String)]) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in pairs {
        let name = HeaderName::from_bytes(name.as_bytes()).expect("vector header name");
        let value = HeaderValue::from_bytes(value.as_bytes()).expect("vector header value");
        out.append(name, value);
    }
    out
}

fn conn(peer: &str, tls: bool) -> ConnInfo {
    let ip: std::net::IpAddr = peer.parse().expect("vector peer");
    ConnInfo {
        peer: SocketAddr::new(ip, 40000),
        tls,
        client_certs: Vec::new(),
    }
}

#[test]
fn python_vectors() {
    let cases: Vec<Case> = serde_json::from_str(VECTORS).expect("vectors parse");
    assert!(cases.len() >= 10, "the vector file lost its cases");
    for case in cases {
        let config = MutateConfig::from_section(&case.mutate).expect("mutate section");
        let identity = case.identity.map(|i| Identity {
            method: "jwt",
            subject: i.subject,
            client_id: i.client_id,
            scopes: i.scopes,
            key_id: i.key_id,
            routes: None,
            person: None,
        });
        let consumed: Vec<HeaderName> = case
            .consumed
            .iter()
            .map(|n| HeaderName::from_bytes(n.as_bytes()).expect("consumed name"))
            .collect();
        let info = conn(&case.peer, case.tls);
        let ctx = ForwardContext {
            conn: &info,
            trusted_peer: case.trusted_peer,
            request_id: case.request_id.as_deref(),
            consumed: &consumed,
            authority: None,
            assertion: None,
            identity_headers: None,
        };
        let got = forward_headers(&map(&case.headers), identity.as_ref(), &ctx, &config);
        assert_eq!(got, map(&case.expected), "case {}", case.name);
        // The same headers from values encoded once with a cache entry.
        let memo = IdentityHeadersMemo::default();
        let encoded = identity.as_ref().map(|i| memo.get(i));
        let ctx = ForwardContext {
            identity_headers: encoded.as_deref(),
            ..ctx
        };
        let got = forward_headers(&map(&case.headers), identity.as_ref(), &ctx, &config);
        assert_eq!(got, map(&case.expected), "case {} (pre-encoded)", case.name);
    }
}

fn default_config() -> MutateConfig {
    let section = serde_json::json!({
        "headers": {
            "subject": "x-bastion-subject",
            "client": "x-bastion-client",
            "scopes": "x-bastion-scopes",
            "key_id": "x-bastion-key-id",
            "request_id": "x-bastion-request-id",
        },
        "strip": ["x-user-id"],
    });
    MutateConfig::from_section(&section).expect("config")
}

#[test]
fn encode_matches_python_quote() {
    assert_eq!(encode("user:alice"), "user:alice");
    assert_eq!(encode("a b"), "a b");
    assert_eq!(encode("50%"), "50%25");
    assert_eq!(encode("zoë"), "zo%C3%AB");
    assert_eq!(encode("a\r\nb"), "a%0D%0Ab");
    assert_eq!(encode("tab\there"), "tab%09here");
}

#[test]
fn ipv4_mapped_peer_is_written_as_ipv4_and_ipv6_without_brackets() {
    let config = default_config();
    for (peer, want) in [
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("2001:db8::1", "2001:db8::1"),
    ] {
        let info = conn(peer, false);
        let ctx = ForwardContext {
            conn: &info,
            trusted_peer: false,
            request_id: None,
            consumed: &[],
            authority: None,
            assertion: None,
            identity_headers: None,
        };
        let got = forward_headers(&HeaderMap::new(), None, &ctx, &config);
        assert_eq!(
            got.get("x-forwarded-for").map(|v| v.as_bytes()),
            Some(want.as_bytes())
        );
    }
}

#[test]
fn http2_authority_stands_in_for_a_missing_host() {
    let config = default_config();
    let info = conn("192.0.2.9", true);
    let ctx = ForwardContext {
        conn: &info,
        trusted_peer: false,
        request_id: Some("rid-1"),
        consumed: &[],
        authority: Some("gw.example:8443"),
        assertion: None,
        identity_headers: None,
    };
    let got = forward_headers(&HeaderMap::new(), None, &ctx, &config);
    let want = map(&[
        ("x-bastion-request-id".into(), "rid-1".into()),
        ("x-forwarded-for".into(), "192.0.2.9".into()),
        ("x-forwarded-proto".into(), "https".into()),
        ("x-forwarded-host".into(), "gw.example:8443".into()),
    ]);
    assert_eq!(got, want);
}

#[test]
fn bad_section_names_the_field() {
    let section = serde_json::json!({
        "headers": {"subject": "bad name", "client": "a", "scopes": "b", "key_id": "c", "request_id": "d"},
        "strip": [],
    });
    let err = MutateConfig::from_section(&section).expect_err("refused");
    assert_eq!(
        err,
        "mutate.headers.subject: \"bad name\" is not a header name"
    );
    let err = MutateConfig::from_section(&serde_json::json!({"strip": []})).expect_err("refused");
    assert!(err.starts_with("mutate: missing field `headers`"), "{err}");
}

mod props {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever the client sends, no header bastion owns reaches the upstream
        /// unless bastion set it, and the result is always a valid header map.
        #[test]
        fn client_identity_headers_never_pass(
            names in proptest::collection::vec("[a-zA-Z_-]{1,20}", 0..12),
            value in "[ -~]{0,20}",
        ) {
            let config = default_config();
            let mut incoming = HeaderMap::new();
            for name in &names {
                let lower = name.to_ascii_lowercase();
                if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(lower.as_bytes()), HeaderValue::from_str(&value)) {
                    incoming.append(n, v);
                }
            }
            let info = conn("203.0.113.7", false);
            let ctx = ForwardContext { conn: &info, trusted_peer: false, request_id: None, consumed: &[], authority: None, assertion: None, identity_headers: None };
            let got = forward_headers(&incoming, None, &ctx, &config);
            for name in got.keys() {
                let folded = fold(name.as_str());
                prop_assert!(!folded.starts_with("x-bastion-"), "{name}");
                prop_assert!(folded != "x-user-id" && folded != "connection" && folded != "host");
            }
            prop_assert_eq!(got.get_all("x-forwarded-for").iter().count(), 1);
        }
    }
}

#[test]
fn the_assertion_replaces_the_clients_and_follows_the_request_id() {
    let section = serde_json::json!({
        "headers": {
            "subject": "x-bastion-subject",
            "client": "x-bastion-client",
            "scopes": "x-bastion-scopes",
            "key_id": "x-bastion-key-id",
            "request_id": "x-bastion-request-id",
        },
        "strip": ["id-jwt"],
        "assertion": {"header": "Id-Jwt", "issuer": "i", "audience": "a", "ttl": 5},
    });
    let config = MutateConfig::from_section(&section).expect("config");
    assert_eq!(config.assertion().expect("on").header.as_str(), "id-jwt");
    let incoming = map(&[
        ("id-jwt".into(), "forged".into()),
        ("id_jwt".into(), "forged".into()),
    ]);
    let info = conn("203.0.113.7", false);
    let ctx = ForwardContext {
        conn: &info,
        trusted_peer: false,
        request_id: Some("rid"),
        consumed: &[],
        authority: None,
        assertion: Some("h.c.s"),
        identity_headers: None,
    };
    let got = forward_headers(&incoming, None, &ctx, &config);
    let names: Vec<&str> = got.keys().map(HeaderName::as_str).collect();
    assert_eq!(names[..2], ["x-bastion-request-id", "id-jwt"]);
    let values: Vec<&HeaderValue> = got.get_all("id-jwt").iter().collect();
    assert_eq!(values, [&HeaderValue::from_static("h.c.s")]);
    assert!(got.get("id_jwt").is_none());
    // Without a token (an anonymous request) nothing is added.
    let none = ForwardContext {
        assertion: None,
        ..ctx
    };
    assert!(forward_headers(&incoming, None, &none, &config)
        .get("id-jwt")
        .is_none());
    let bad = serde_json::json!({"headers": section["headers"], "strip": [], "assertion": {"header": "x"}});
    assert!(MutateConfig::from_section(&bad)
        .expect_err("incomplete")
        .starts_with("mutate.assertion:"));
}

/// Not a test: the cost of `forward_headers` for a typical browser-ish request
/// (`cargo nextest run --release --run-ignored only bench_ --no-capture`).
#[test]
#[ignore]
fn bench_forward_headers() {
    let config = default_config();
    let incoming = map(&[
        ("host".into(), "api.example.com".into()),
        (
            "user-agent".into(),
            "Mozilla/5.0 (X11; Linux x86_64)".into(),
        ),
        ("accept".into(), "application/json".into()),
        ("accept-encoding".into(), "gzip, br".into()),
        ("accept-language".into(), "en-GB,en;q=0.9".into()),
        ("authorization".into(), "Bearer bst_live_abcdef".into()),
        ("x-request-id".into(), "abc-123".into()),
        ("cookie".into(), "a=1; b=2".into()),
        ("connection".into(), "keep-alive".into()),
        ("x-bastion-subject".into(), "forged".into()),
    ]);
    let identity = Identity {
        method: "api_key",
        subject: Some("key:k1".into()),
        client_id: None,
        scopes: vec!["orders:read".into(), "orders:write".into()],
        key_id: Some("k1".into()),
        routes: None,
        person: None,
    };
    let consumed = [http::header::AUTHORIZATION];
    let info = conn("203.0.113.7", true);
    let ctx = ForwardContext {
        conn: &info,
        trusted_peer: false,
        request_id: Some("abc-123"),
        consumed: &consumed,
        authority: None,
        assertion: None,
        identity_headers: None,
    };
    const N: u32 = 200_000;
    let start = std::time::Instant::now();
    let mut kept = 0;
    for _ in 0..N {
        kept += forward_headers(&incoming, Some(&identity), &ctx, &config).len();
    }
    let per = start.elapsed().as_secs_f64() * 1e9 / f64::from(N);
    println!(
        "forward_headers {per:.0} ns/request ({} headers out)",
        kept / N as usize
    );
    let start = std::time::Instant::now();
    for _ in 0..N {
        kept += forward_headers(&incoming, None, &ctx, &config).len();
    }
    let per = start.elapsed().as_secs_f64() * 1e9 / f64::from(N);
    println!("forward_headers without identity {per:.0} ns/request");
    let start = std::time::Instant::now();
    for _ in 0..N {
        let mut out = HeaderMap::with_capacity(incoming.len() + 8);
        for (n, v) in &incoming {
            out.append(n.clone(), v.clone());
        }
        kept += out.len();
    }
    let per = start.elapsed().as_secs_f64() * 1e9 / f64::from(N);
    println!("a bare copy of the header map {per:.0} ns/request ({kept})");
}

#[test]
fn class_is_the_lists() {
    for (list, flag) in [
        (&PROXY_OWNED[..], OWNED),
        (&HOP_BY_HOP[..], HOP),
        (&ALWAYS_STRIPPED[..], ALWAYS),
        (&UNTRUSTED_STRIPPED[..], UNTRUSTED),
        (&METHOD_OVERRIDES[..], OVERRIDE),
    ] {
        for name in list {
            assert_eq!(class(name), flag, "{name}");
        }
    }
    assert_eq!(class("x-forwarded-prefix"), 0);
    assert_eq!(class("accept"), 0);
}

#[test]
fn fold_lower_is_fold_of_a_lower_case_name() {
    for name in [
        "x-user-id",
        "x_user_id",
        "x-bastion_subject",
        "_",
        "host",
        "a__b-",
        "",
    ] {
        assert_eq!(fold_lower(name), fold(name), "{name}");
    }
}
