//! API keys on the native path: what Python pushes about a key, the stored
//! digest (`bastion.crypto.apikeys.api_key_digest`: SHA-256 hex, or
//! HMAC-SHA256 under the server pepper), and the key-in-query screen.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use ring::{digest, hmac};
use serde::Deserialize;

use crate::client_ip::TrustedProxies;
use crate::http::Identity;

/// The longest key the format allows (`MAX_API_KEY_LENGTH`: prefix + 10-character
/// tag + `_` + 32 random + 6 checksum characters).
pub const MAX_API_KEY_LENGTH: usize = 4 + 11 + 32 + 6;
/// What every key starts with.
pub const KEY_PREFIX: &[u8] = b"bst_";

/// A key's record as Python pushes it (`native_push.api_key_record`).
#[derive(Debug, Clone, Deserialize)]
pub struct ApiKeyRecord {
    pub id: String,
    /// The key's non-secret prefix (`ApiKey.prefix`), its `key_prefix` claim.
    #[serde(default)]
    pub prefix: String,
    /// The identity's subject, as Python derives it (`apikeys.state.api_key_subject`,
    /// the rule's one home): pushed, never derived here.
    pub subject: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub routes: Vec<String>,
    /// Unix seconds; `None`: never.
    #[serde(default)]
    pub expires_at: Option<f64>,
    /// End of a rotation grace period, Unix seconds; `None`: not rotated.
    #[serde(default)]
    pub grace_until: Option<f64>,
    pub revoked: bool,
    pub disabled: bool,
    /// CIDRs the client address must be in (empty: any address).
    #[serde(default)]
    pub ip_allow: Vec<String>,
    /// The key's own limits as Python compiled them (`compile_key_limits`;
    /// empty where they do not compile, as Python then applies none).
    #[serde(default)]
    pub key_limits: Vec<KeyLimit>,
}

/// One of a key's own rate limits (`bastion.ratelimit.gcra.Limit`): `rate`
/// requests per `period` seconds with a bucket of `burst`; `name` labels it in
/// `RateLimit` headers.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct KeyLimit {
    pub rate: u64,
    pub period: f64,
    pub burst: u64,
    pub name: String,
}

/// A cached key: its record, precomputed, and until when it may be trusted.
#[derive(Debug)]
pub struct CachedKey {
    pub id: String,
    pub identity: Identity,
    /// `identity`'s headers, encoded at the entry's first use.
    pub headers: crate::mutate::IdentityHeadersMemo,
    deadline: f64,
    grace_until: f64,
    revoked: bool,
    disabled: bool,
    /// The key's IP allow-list (`None`: any address; empty: none, a list that
    /// does not parse).
    networks: Option<TrustedProxies>,
    /// The key's own limits (the `limit` step applies them with the route's).
    pub limits: std::sync::Arc<[KeyLimit]>,
    /// The claims of its identity (`key_id`, `key_prefix`: Python's
    /// `identity_of_key`), which a route's `claims` / `roles` rules read.
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// Unix seconds until which the entry is fresh (Python's positive TTL).
    pub fresh_until: f64,
    /// The latest native use (f64 bits; 0: none since the last drain), for
    /// Python's batched last-used writes.
    last_used: AtomicU64,
}

impl CachedKey {
    /// The cache entry of `record`, fresh until `fresh_until`.
    pub fn new(record: ApiKeyRecord, fresh_until: f64) -> CachedKey {
        // Python's `ip_network(…, strict=False)` of each stored network; a list
        // that does not parse even so admits no address (fail closed: Python's
        // 403 `api_key_ip_not_allowed`), never any.
        let networks = if record.ip_allow.is_empty() {
            None
        } else {
            let unscoped: Vec<String> = record
                .ip_allow
                .iter()
                .map(String::as_str)
                .map(unscoped)
                .collect();
            Some(TrustedProxies::parse(&unscoped).unwrap_or_default())
        };
        let mut scopes = record.scopes;
        scopes.sort();
        scopes.dedup();
        let routes = if record.routes.is_empty() {
            None
        } else {
            let mut routes = record.routes;
            routes.sort();
            routes.dedup();
            Some(routes)
        };
        let mut claims = serde_json::Map::new();
        claims.insert("key_id".into(), record.id.clone().into());
        claims.insert("key_prefix".into(), record.prefix.into());
        CachedKey {
            claims,
            id: record.id.clone(),
            identity: Identity {
                method: "api_key",
                subject: Some(record.subject),
                client_id: None,
                scopes,
                key_id: Some(record.id),
                routes,
                person: None,
            },
            headers: crate::mutate::IdentityHeadersMemo::default(),
            deadline: record.expires_at.unwrap_or(f64::INFINITY),
            grace_until: record.grace_until.unwrap_or(f64::INFINITY),
            revoked: record.revoked,
            disabled: record.disabled,
            limits: record.key_limits.into(),
            networks,
            fresh_until,
            last_used: AtomicU64::new(0),
        }
    }

    /// Remember a native use at `now` (Unix seconds, positive: its bits order like it).
    pub fn touch(&self, now: f64) {
        if now > 0.0 {
            self.last_used.fetch_max(now.to_bits(), Ordering::Relaxed);
        }
    }

    /// The latest use since the last call, if any.
    pub fn take_last_used(&self) -> Option<f64> {
        match self.last_used.swap(0, Ordering::Relaxed) {
            0 => None,
            bits => Some(f64::from_bits(bits)),
        }
    }

    /// Whether the key may be used at `now` from `client` exactly as
    /// `ApiKeyService.verify` would allow it (state, deadlines and the IP
    /// allow-list checked on every call).
    /// Why Python's `verify` refuses this key at `now` whatever the request
    /// (its 401 `invalid_api_key`), in Python's order; `None`: not refused.
    pub fn refusal(&self, now: f64) -> Option<&'static str> {
        if self.revoked {
            Some("revoked")
        } else if self.disabled {
            Some("disabled")
        } else if self.deadline <= now {
            Some("expired")
        } else if self.grace_until <= now {
            Some("grace_ended")
        } else {
            None
        }
    }

    /// Whether the key's IP allow-list (if any) admits `client` (Python's
    /// `_ip_allowed`; no address: refused).
    pub fn admits(&self, client: Option<IpAddr>) -> bool {
        self.networks
            .as_ref()
            .map_or(true, |nets| ip_allowed(nets, client))
    }

    pub fn usable(&self, now: f64, client: Option<IpAddr>) -> bool {
        now < self.fresh_until
            && !self.revoked
            && !self.disabled
            && now < self.deadline
            && now < self.grace_until
            && self.admits(client)
    }
}

/// A stored network as `ipaddress.ip_network` reads it: an IPv6 address may
/// carry a scope id (`fe80::%eth0/64`, kept by `str()`), which changes nothing
/// its `in` holds (it compares the integers), so it is dropped here.
fn unscoped(network: &str) -> String {
    let (address, prefix) = match network.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (network, None),
    };
    let address = match address.split_once('%') {
        Some((bare, _scope)) if bare.contains(':') => bare,
        _ => address,
    };
    match prefix {
        Some(prefix) => format!("{address}/{prefix}"),
        None => address.to_owned(),
    }
}

/// `_ip_allowed`: no address is refused; an IPv4-mapped IPv6 address counts as IPv4.
fn ip_allowed(networks: &TrustedProxies, client: Option<IpAddr>) -> bool {
    let Some(ip) = client else {
        return false;
    };
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    networks.contains(ip)
}

/// Characters of randomness and of the checksum after the prefix (and tag).
const RANDOM_LENGTH: usize = 32;
const CHECKSUM_LENGTH: usize = 6;
/// `_ALPHABET`: digits, then upper case, then lower case.
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `bastion.crypto.apikeys.parse_api_key` succeeds: `key` has the format
/// (`bst_`, an optional `[a-z][a-z0-9]{0,9}_` tag, 32 random and 6 checksum
/// base62 characters) and its checksum (base62 CRC-32 of everything before it)
/// is right. A key that fails can never be stored, so Python refuses it
/// (`malformed` / `bad_checksum`) without a lookup; the native path refuses it
/// the same way instead of sending every made-up key across to Python.
///
/// The checksum is not a secret (anyone can compute it from the key), so a
/// plain comparison leaks nothing.
pub fn well_formed(key: &[u8]) -> bool {
    if key.len() > MAX_API_KEY_LENGTH {
        return false;
    }
    let Some(rest) = key.strip_prefix(KEY_PREFIX) else {
        return false;
    };
    let body = match rest.iter().position(|&b| b == b'_') {
        None => rest,
        Some(at) => {
            let (tag, after) = (&rest[..at], &rest[at + 1..]);
            let tag_ok = (1..=10).contains(&tag.len())
                && tag[0].is_ascii_lowercase()
                && tag
                    .iter()
                    .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit());
            if !tag_ok {
                return false;
            }
            after
        }
    };
    if body.len() != RANDOM_LENGTH + CHECKSUM_LENGTH || !body.iter().all(u8::is_ascii_alphanumeric)
    {
        return false;
    }
    let (signed, checksum) = key.split_at(key.len() - CHECKSUM_LENGTH);
    base62_checksum(crc32(signed)) == *checksum
}

/// `_base62(value, 6)`: most significant digit first, zero-padded.
fn base62_checksum(mut value: u32) -> [u8; CHECKSUM_LENGTH] {
    let mut out = [b'0'; CHECKSUM_LENGTH];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(value % 62) as usize];
        value /= 62;
    }
    out
}

/// CRC-32 (IEEE 802.3, reflected, as `zlib.crc32`). Hand-written: 40 bytes a
/// key do not justify a crate, and the table is built at compile time.
fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    !data.iter().fold(!0u32, |c, &b| {
        TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8)
    })
}

/// How keys are stored: SHA-256, or HMAC-SHA256 under the pepper.
#[derive(Clone)]
pub enum Digester {
    Plain,
    Peppered(hmac::Key),
}

impl Digester {
    pub fn new(pepper: Option<&[u8]>) -> Digester {
        match pepper {
            Some(p) if !p.is_empty() => Digester::Peppered(hmac::Key::new(hmac::HMAC_SHA256, p)),
            _ => Digester::Plain,
        }
    }

    /// The raw 32-byte digest of `key` (Python stores its hex).
    pub fn digest(&self, key: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        match self {
            Digester::Plain => out.copy_from_slice(digest::digest(&digest::SHA256, key).as_ref()),
            Digester::Peppered(k) => out.copy_from_slice(hmac::sign(k, key).as_ref()),
        }
        out
    }
}

/// Decode a 64-character hex digest.
pub fn parse_hex_digest(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

fn key_shaped_at(text: &[u8], at: usize) -> bool {
    if at > 0 && text[at - 1].is_ascii_alphanumeric() {
        return false;
    }
    if !text[at..].starts_with(KEY_PREFIX) {
        return false;
    }
    text[at + KEY_PREFIX.len()..]
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
        .count()
        >= 16
}

fn key_shaped(text: &[u8]) -> bool {
    (0..text.len()).any(|at| key_shaped_at(text, at))
}

/// Whether a query string carries something shaped like a bastion key, raw or
/// %-encoded (`bastion.gateway.authn.api_key.key_in_query`): Python refuses such
/// a request with 400 `api_key_in_query`, so the native path must defer it.
pub fn key_in_query(query: &[u8]) -> bool {
    key_shaped(query)
        || (query.contains(&b'%') && key_shaped(&crate::paths::unquote_to_bytes(query)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record() -> ApiKeyRecord {
        serde_json::from_str(
            r#"{"id":"k1","subject":"user:u1","scopes":["b","a","a"],
                "routes":[],"expires_at":null,"grace_until":null,"revoked":false,
                "disabled":false,"ip_allow":[],"key_limits":[]}"#,
        )
        .expect("record")
    }

    #[test]
    fn identity_of_an_owned_key() {
        let key = CachedKey::new(record(), 100.0);
        assert_eq!(key.identity.method, "api_key");
        assert_eq!(key.identity.subject.as_deref(), Some("user:u1"));
        assert_eq!(key.identity.scopes, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(key.identity.key_id.as_deref(), Some("k1"));
        assert_eq!(key.identity.routes, None);
    }

    #[test]
    fn identity_of_a_key_with_routes_has_the_pushed_subject() {
        let mut r = record();
        r.subject = "apikey:k1".into();
        r.routes = vec!["orders".into()];
        let key = CachedKey::new(r, 100.0);
        assert_eq!(key.identity.subject.as_deref(), Some("apikey:k1"));
        assert_eq!(key.identity.routes, Some(vec!["orders".to_string()]));
    }

    #[test]
    fn a_record_without_its_subject_is_refused() {
        // The subject is Python's to derive: no record may leave it to a default here.
        let unowned = r#"{"id":"k1","owner_type":"user","owner_id":"u1","revoked":false,
                          "disabled":false}"#;
        assert!(serde_json::from_str::<ApiKeyRecord>(unowned).is_err());
    }

    #[test]
    fn usable_checks_state_deadlines_and_freshness() {
        assert!(CachedKey::new(record(), 100.0).usable(50.0, None));
        assert!(!CachedKey::new(record(), 100.0).usable(100.0, None));
        let mut r = record();
        r.revoked = true;
        assert!(!CachedKey::new(r, 100.0).usable(50.0, None));
        let mut r = record();
        r.disabled = true;
        assert!(!CachedKey::new(r, 100.0).usable(50.0, None));
        let mut r = record();
        r.expires_at = Some(50.0);
        assert!(!CachedKey::new(r.clone(), 100.0).usable(50.0, None));
        assert!(CachedKey::new(r, 100.0).usable(49.9, None));
        let mut r = record();
        r.grace_until = Some(10.0);
        assert!(!CachedKey::new(r, 100.0).usable(10.0, None));
        let mut r = record();
        r.ip_allow = vec!["10.0.0.0/8".into(), "2001:db8::/32".into()];
        let key = CachedKey::new(r, 100.0);
        assert!(!key.usable(50.0, None));
        let ip = |s: &str| Some(s.parse::<IpAddr>().expect("ip"));
        assert!(key.usable(50.0, ip("10.1.2.3")));
        assert!(key.usable(50.0, ip("::ffff:10.1.2.3")));
        assert!(key.usable(50.0, ip("2001:db8::1")));
        assert!(!key.usable(50.0, ip("11.0.0.1")));
        assert!(!key.usable(50.0, ip("2001:db9::1")));
        // A list that does not parse admits no address (never any).
        let mut r = record();
        r.ip_allow = vec!["not a network".into()];
        let key = CachedKey::new(r, 100.0);
        assert!(!key.usable(50.0, ip("10.1.2.3")));
        assert!(!key.admits(ip("10.1.2.3")));
        assert!(
            key.refusal(50.0).is_none(),
            "usable but from nowhere: Python's 403"
        );
        // A scope id (Python's `str(ip_network("fe80::%eth0/64"))`) changes nothing held.
        let mut r = record();
        r.ip_allow = vec!["fe80::%eth0/64".into(), "fe80:1::%2".into()];
        let key = CachedKey::new(r, 100.0);
        assert!(key.admits(ip("fe80::1")));
        assert!(key.admits(ip("fe80:1::")));
        assert!(!key.admits(ip("fe80:1::1")));
        assert!(!key.admits(ip("10.1.2.3")));
        let mut r = record();
        r.key_limits = vec![KeyLimit {
            rate: 1,
            period: 1.0,
            burst: 1,
            name: "1/second".into(),
        }];
        let key = CachedKey::new(r, 100.0);
        assert!(key.usable(50.0, None));
        assert_eq!(key.limits.len(), 1);
    }

    #[test]
    fn digests_match_python() {
        // hashlib.sha256(b"bst_x").hexdigest(), hmac.new(b"pep", b"bst_x", sha256).hexdigest()
        let plain = Digester::new(None).digest(b"bst_x");
        assert_eq!(
            plain,
            parse_hex_digest("0a56945d972b1bb8b70455c230b9486005f2843a464cc3360fc9de36d31374f7")
                .expect("hex")
        );
        let peppered = Digester::new(Some(b"pep")).digest(b"bst_x");
        assert_eq!(
            peppered,
            parse_hex_digest("2252da8989ed77d8490045a5c1ddf5f878f306aaa2b19c8436b30f231b96d961")
                .expect("hex")
        );
    }

    #[test]
    fn crc32_is_zlibs() {
        assert_eq!(crc32(b"123456789"), 3_421_780_262);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn well_formed_is_parse_api_key() {
        // Generated by `bastion.crypto.apikeys.generate_api_key`.
        let good: [&[u8]; 3] = [
            b"bst_F6PZDhDPmYdPHThZAmxrqsUC711btxpd1eAJY3",
            b"bst_live_mn331tcZdoxuNggtbmf2rsB2WBerjUTK1GQlaB",
            b"bst_a1234567z9_RFUVrm3JuZH01oWIGA3hsUzzYNUFeXb31vCc9t",
        ];
        for key in good {
            assert!(well_formed(key), "{}", String::from_utf8_lossy(key));
        }
        let bad: [&[u8]; 12] = [
            b"",
            b"bst_",
            // a checksum character changed, and the body changed under its checksum
            b"bst_F6PZDhDPmYdPHThZAmxrqsUC711btxpd1eAJY4",
            b"bst_G6PZDhDPmYdPHThZAmxrqsUC711btxpd1eAJY3",
            // the tag changed (it is under the checksum too)
            b"bst_livf_mn331tcZdoxuNggtbmf2rsB2WBerjUTK1GQlaB",
            // tags: upper case, leading digit, 11 characters, empty
            b"bst_Live_mn331tcZdoxuNggtbmf2rsB2WBerjUTK1GQlaB",
            b"bst_1ive_mn331tcZdoxuNggtbmf2rsB2WBerjUTK1GQlaB",
            b"bst_a1234567z9x_RFUVrm3JuZH01oWIGA3hsUzzYNUFeXb31vCc9t",
            b"bst__F6PZDhDPmYdPHThZAmxrqsUC711btxpd1eAJY3",
            // one character short or long, another prefix, a non-base62 byte
            b"bst_F6PZDhDPmYdPHThZAmxrqsUC711btxpd1eAJY",
            b"BST_F6PZDhDPmYdPHThZAmxrqsUC711btxpd1eAJY3",
            b"bst_F6PZDhDPmYdPHThZAmxrqsUC711btxpd1eA-Y3",
        ];
        for key in bad {
            assert!(!well_formed(key), "{}", String::from_utf8_lossy(key));
        }
        assert!(!well_formed(&[b'a'; MAX_API_KEY_LENGTH + 1]));
    }

    #[test]
    fn hex_digest_parsing() {
        assert_eq!(parse_hex_digest("00"), None);
        assert_eq!(parse_hex_digest(&"g".repeat(64)), None);
        assert_eq!(parse_hex_digest(&"ff".repeat(32)), Some([0xff; 32]));
    }

    #[test]
    fn query_screen() {
        assert!(key_in_query(b"key=bst_0123456789abcdef"));
        assert!(key_in_query(b"bst_0123456789abcdef"));
        assert!(!key_in_query(b"key=bst_0123456789abcde"));
        assert!(!key_in_query(b"subst_0123456789abcdefgh"));
        assert!(key_in_query(b"key=%62st_0123456789abcdef"));
        assert!(key_in_query(b"key=bst%5F0123456789abcdef"));
        assert!(!key_in_query(b"a=1&b=2"));
        assert!(!key_in_query(b"%"));
        assert!(!key_in_query(b"%6"));
    }

    proptest! {
        #[test]
        fn query_screen_never_panics(query in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = key_in_query(&query);
        }
    }
}
