//! What every response of the native path carries: the request id and
//! bastion's security headers — the native twin of
//! `bastion.http.middleware.request_id` and `security_headers` (same rules:
//! a header the upstream set is never overridden).

use std::sync::atomic::{AtomicU64, Ordering};

use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY,
    STRICT_TRANSPORT_SECURITY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};

/// `X-Request-Id`.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

// Values built at compile time: a clone of a static value is a copy of two
// words, where `HeaderValue::from_static` at run time validates every byte.
static HSTS: HeaderValue = HeaderValue::from_static("max-age=63072000; includeSubDomains");
static CSP: HeaderValue = HeaderValue::from_static(
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
);
static NOSNIFF: HeaderValue = HeaderValue::from_static("nosniff");
static NO_REFERRER: HeaderValue = HeaderValue::from_static("no-referrer");
static DENY: HeaderValue = HeaderValue::from_static("DENY");

/// Mints request ids `<12 hex digits>-<counter in hex>`: unique across nodes
/// and restarts (random prefix), one atomic increment per request.
pub struct RequestIds {
    prefix: String,
    counter: AtomicU64,
}

impl RequestIds {
    /// A minter with a random 12-hex-digit prefix.
    pub fn new() -> Self {
        let mut bytes = [0u8; 6];
        // A correlation id, not a secret: a failed read of the system RNG
        // still leaves ids unique within this process.
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
        let prefix = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Self::with_prefix(prefix)
    }

    /// A minter with a fixed prefix (tests).
    pub fn with_prefix(prefix: String) -> Self {
        Self {
            prefix,
            counter: AtomicU64::new(1),
        }
    }

    /// The client's id when well formed (`[A-Za-z0-9._:-]{1,64}`), else a new one.
    pub fn assign(&self, headers: &HeaderMap) -> HeaderValue {
        if let Some(value) = headers.get(&REQUEST_ID) {
            if valid_request_id(value.as_bytes()) {
                return value.clone();
            }
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        // "<prefix>-<counter in hex>" written on the stack: one allocation (the value's).
        let mut buf = [0u8; 64];
        let prefix = self.prefix.as_bytes();
        let len = prefix.len().min(40);
        buf[..len].copy_from_slice(&prefix[..len]);
        buf[len] = b'-';
        let mut end = len + 1;
        let digits = if n == 0 {
            1
        } else {
            (67 - n.leading_zeros() as usize) / 4
        };
        for i in (0..digits).rev() {
            let nibble = ((n >> (4 * i)) & 0xf) as u8;
            buf[end] = if nibble < 10 {
                b'0' + nibble
            } else {
                b'a' + nibble - 10
            };
            end += 1;
        }
        // Hex digits and '-': always a valid header value.
        HeaderValue::from_bytes(&buf[..end]).unwrap_or_else(|_| HeaderValue::from_static("-"))
    }
}

impl Default for RequestIds {
    fn default() -> Self {
        Self::new()
    }
}

/// An incoming id is kept only if it can be logged and forwarded unescaped.
pub fn valid_request_id(value: &[u8]) -> bool {
    (1..=64).contains(&value.len())
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Add the security headers and the request id to a response's headers,
/// keeping any the upstream set itself. HSTS only over https; the CSP and
/// `X-Frame-Options` only on `text/html`.
pub fn decorate(headers: &mut HeaderMap, https: bool, request_id: &HeaderValue) {
    put(headers, X_CONTENT_TYPE_OPTIONS, &NOSNIFF);
    put(headers, REFERRER_POLICY, &NO_REFERRER);
    if https {
        put(headers, STRICT_TRANSPORT_SECURITY, &HSTS);
    }
    let html = headers
        .get(CONTENT_TYPE)
        .map(|v| v.as_bytes().len() >= 9 && v.as_bytes()[..9].eq_ignore_ascii_case(b"text/html"))
        .unwrap_or(false);
    if html {
        put(headers, CONTENT_SECURITY_POLICY, &CSP);
        put(headers, X_FRAME_OPTIONS, &DENY);
    }
    if let http::header::Entry::Vacant(slot) = headers.entry(&REQUEST_ID) {
        slot.insert(request_id.clone());
    }
}

/// `name` (one of `http`'s constants: `HeaderName::from_static` called at run
/// time scans the table of standard names, about 900 instructions a call in
/// the profile, twice per response) set to `value` unless already present:
/// one lookup (`entry`) instead of `contains_key` then `insert`.
fn put(headers: &mut HeaderMap, name: HeaderName, value: &'static HeaderValue) {
    if let http::header::Entry::Vacant(slot) = headers.entry(name) {
        slot.insert(value.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_well_formed_client_id_and_replaces_a_bad_one() {
        let ids = RequestIds::with_prefix("abcdef012345".into());
        let mut h = HeaderMap::new();
        h.insert(&REQUEST_ID, HeaderValue::from_static("client.id:1-_"));
        assert_eq!(ids.assign(&h), "client.id:1-_");
        h.insert(&REQUEST_ID, HeaderValue::from_static("has space"));
        assert_eq!(ids.assign(&h), "abcdef012345-1");
        h.insert(&REQUEST_ID, HeaderValue::from_str(&"a".repeat(65)).unwrap());
        assert_eq!(ids.assign(&h), "abcdef012345-2");
        assert_eq!(ids.assign(&HeaderMap::new()), "abcdef012345-3");
        let big = RequestIds::with_prefix("p".into());
        big.counter.store(0xfedcba9876543210, Ordering::Relaxed);
        assert_eq!(big.assign(&HeaderMap::new()), "p-fedcba9876543210");
        big.counter.store(16, Ordering::Relaxed);
        assert_eq!(big.assign(&HeaderMap::new()), "p-10");
        big.counter.store(0, Ordering::Relaxed);
        assert_eq!(big.assign(&HeaderMap::new()), "p-0");
    }

    #[test]
    fn random_prefixes_differ() {
        let a = RequestIds::new().assign(&HeaderMap::new());
        let b = RequestIds::new().assign(&HeaderMap::new());
        assert_ne!(a, b);
        assert_eq!(a.len(), "0123456789ab-1".len());
    }

    #[test]
    fn security_headers_follow_the_python_rules() {
        let rid = HeaderValue::from_static("r-1");
        let mut plain = HeaderMap::new();
        decorate(&mut plain, false, &rid);
        assert_eq!(plain["x-content-type-options"], "nosniff");
        assert_eq!(plain["referrer-policy"], "no-referrer");
        assert_eq!(plain["x-request-id"], "r-1");
        assert!(!plain.contains_key("strict-transport-security"));
        assert!(!plain.contains_key("content-security-policy"));

        let mut html = HeaderMap::new();
        html.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("TEXT/HTML; charset=utf-8"),
        );
        html.insert("referrer-policy", HeaderValue::from_static("origin"));
        html.insert(&REQUEST_ID, HeaderValue::from_static("upstream-id"));
        decorate(&mut html, true, &rid);
        assert_eq!(html["strict-transport-security"], HSTS);
        assert_eq!(html["content-security-policy"], CSP);
        assert_eq!(html["x-frame-options"], "DENY");
        assert_eq!(html["referrer-policy"], "origin");
        assert_eq!(html["x-request-id"], "upstream-id");
    }
}
