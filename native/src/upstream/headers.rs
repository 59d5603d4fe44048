//! Response headers from the upstream (`proxy._response_headers`): hop-by-hop
//! headers (RFC 9110 §7.6.1), `proxy-*`, and every header a non-trivial
//! `Connection` names are removed; everything else passes unchanged.

use http::header::{HeaderMap, HeaderName};

/// Remove the hop-by-hop headers of an upstream response in place.
pub fn strip_response(headers: &mut HeaderMap) {
    let mut named: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(http::header::CONNECTION) {
        let bytes = value.as_bytes();
        // "keep-alive" and "close" (nearly every response) name no header.
        if bytes.eq_ignore_ascii_case(b"keep-alive") || bytes.eq_ignore_ascii_case(b"close") {
            continue;
        }
        for token in bytes.split(|b| *b == b',') {
            let token = token.trim_ascii();
            if let Ok(name) = HeaderName::from_bytes(&token.to_ascii_lowercase()) {
                named.push(name);
            }
        }
    }
    // One `match` per name (a length switch) instead of six string comparisons; the
    // names to drop are gathered only when there is one (nearly every response has
    // its `Connection`).
    let hop = |name: &HeaderName| hop_by_hop(name.as_str());
    if named.is_empty() && !headers.keys().any(hop) {
        return;
    }
    let mut drop: Vec<HeaderName> = headers.keys().filter(|n| hop(n)).cloned().collect();
    drop.extend(named);
    for name in drop {
        headers.remove(&name);
    }
}

/// Whether a lower-case name is hop-by-hop (`mutate::HOP_BY_HOP`, or `proxy-*`).
fn hop_by_hop(name: &str) -> bool {
    match name {
        "connection" | "keep-alive" | "te" | "trailer" | "transfer-encoding" | "upgrade" => true,
        _ => name.starts_with("proxy-"),
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;
    use crate::mutate::HOP_BY_HOP;

    #[test]
    fn hop_by_hop_is_the_list() {
        for name in HOP_BY_HOP {
            assert!(hop_by_hop(name), "{name}");
        }
        assert!(hop_by_hop("proxy-authenticate"));
        for name in [
            "content-type",
            "tee",
            "connections",
            "x-proxy-thing",
            "upgrades",
        ] {
            assert!(!hop_by_hop(name), "{name}");
        }
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut out = HeaderMap::new();
        for (n, v) in pairs {
            out.append(
                HeaderName::from_bytes(n.to_ascii_lowercase().as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        out
    }

    /// `tests/gateway/test_proxy.py::test_response_hop_by_hop_headers_are_stripped`.
    #[test]
    fn as_python() {
        let mut headers = map(&[
            ("Content-Type", "text/plain"),
            ("Connection", "keep-alive, X-Internal"),
            ("Keep-Alive", "timeout=5"),
            ("Transfer-Encoding", "chunked"),
            ("X-Internal", "secret"),
            ("Proxy-Authenticate", "Basic"),
            ("Upgrade", "h2c"),
            ("Trailer", "x"),
            ("Set-Cookie", "a=1"),
            ("Set-Cookie", "b=2"),
        ]);
        strip_response(&mut headers);
        assert_eq!(
            headers,
            map(&[
                ("content-type", "text/plain"),
                ("set-cookie", "a=1"),
                ("set-cookie", "b=2")
            ])
        );
    }

    #[test]
    fn plain_connection_values_name_nothing() {
        let mut headers = map(&[("Connection", "Close"), ("close", "x"), ("server", "up/1")]);
        strip_response(&mut headers);
        assert_eq!(headers, map(&[("close", "x"), ("server", "up/1")]));
    }
}
