//! The `introspection` authentication method
//! (`bastion.gateway.authn.introspection.IntrospectionAuthenticator`): opaque
//! bearer tokens an RFC 7662 endpoint vouched for, served from a native cache
//! the Python control plane fills.
//!
//! Python keeps asking the endpoint (its client credentials, TLS, timeout,
//! response validation) and caches each answer by the SHA-256 of the token:
//! an active one until `min(exp, now + cache_ttl)`, an inactive or invalid one
//! for `negative_cache_ttl`. Whenever it stores (or serves) such an answer it
//! pushes it here ([`Introspected::put`]): the identity and claims, or
//! "inactive", with the same deadline. A native hit before that deadline
//! admits the token (active) or renders Python's `401 invalid_token`
//! (inactive: a replayed dead token never reaches Python nor the endpoint
//! again meanwhile). A miss is a lookup (`crate::lookup`: Python asks the
//! endpoint and pushes the answer; a failing endpoint: its 503 for the
//! requests waiting, nothing cached); concurrent misses of one token
//! coalesce as API key misses do ([`miss`], `miss::Inflight`), so a token
//! costs one question to the endpoint.
//!
//! Like Python's cache, nothing here follows a revocation: a token revoked at
//! the issuer is seen within `cache_ttl` (the module docstring of the Python
//! method says so). The cache is bounded ([`CACHE_MAX`], Python's
//! `cache_size`), the oldest entry evicted first, and cleared whenever Python
//! builds a new authenticator (a new, empty Python cache).
//!
//! An answer whose claims carry `cnf` (a sender-constrained token, RFC 8705)
//! is never admitted here: Python's `check_binding` decides it.

use std::sync::{Arc, OnceLock};

use serde::Deserialize;
use serde_json::{Map, Value};

use super::bounded::Shared;
use super::miss::{Inflight, Miss};
use crate::http::Identity;

/// Most answers held (`IntrospectionAuthenticator.cache_size`).
pub const CACHE_MAX: usize = 10_000;
/// The longest token Python introspects (`MAX_TOKEN_BYTES`); longer: its 401.
pub const MAX_TOKEN_BYTES: usize = 8192;

/// The SHA-256 of a token (Python's cache key, `sha256_hex(token)`).
pub type Digest = [u8; 32];

/// What the endpoint said about a token, as Python validated it.
#[derive(Debug)]
pub enum Answer {
    /// Active: the identity Python built, and the answer's members but `active`.
    Active {
        identity: Identity,
        claims: Map<String, Value>,
    },
    /// Inactive, or an answer Python refused (`InvalidBearerTokenError`).
    Inactive,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Pushed {
    subject: String,
    scopes: Vec<String>,
    claims: Map<String, Value>,
}

impl Answer {
    /// Read an active answer Python pushed:
    /// `{"subject": …, "scopes": [sorted], "claims": {…}}`. Refuses a record
    /// whose subject is empty or does not agree with `sub` / `client_id`.
    pub fn from_push(json: &str) -> Result<Answer, String> {
        let pushed: Pushed =
            serde_json::from_str(json).map_err(|e| format!("introspection answer: {e}"))?;
        let claim = |name: &str| pushed.claims.get(name).and_then(Value::as_str);
        // Python: `answer.get("sub") or answer.get("client_id")`.
        let expected = claim("sub")
            .filter(|s| !s.is_empty())
            .or_else(|| claim("client_id"));
        if pushed.subject.is_empty() || expected != Some(pushed.subject.as_str()) {
            return Err("introspection answer: the subject is not sub or client_id".into());
        }
        let mut scopes = pushed.scopes;
        scopes.sort();
        scopes.dedup();
        let identity = Identity {
            method: "introspection",
            subject: Some(pushed.subject),
            client_id: claim("client_id").map(str::to_owned),
            scopes,
            ..Identity::default()
        };
        Ok(Answer::Active {
            identity,
            claims: pushed.claims,
        })
    }
}

struct Entry {
    answer: Arc<Answer>,
    until: f64,
}

/// Introspection answers by token digest (one per process: [`cache`]).
pub struct Introspected {
    inner: Shared<Digest, Entry>,
}

impl Default for Introspected {
    fn default() -> Self {
        Self {
            inner: Shared::new(CACHE_MAX),
        }
    }
}

impl Introspected {
    /// The answer for `digest` while it holds (`now < until`).
    pub fn get(&self, digest: &Digest, now: f64) -> Option<Arc<Answer>> {
        let inner = self.inner.read();
        inner
            .get(digest)
            .filter(|entry| now < entry.until)
            .map(|entry| entry.answer.clone())
    }

    /// Hold `answer` for `digest` until `until` (Unix seconds), evicting the
    /// oldest beyond [`CACHE_MAX`]. An answer already ended is not held.
    pub fn put(&self, digest: Digest, answer: Answer, until: f64, now: f64) {
        let mut inner = self.inner.write();
        if until.is_nan() || until <= now {
            inner.remove(&digest);
            return;
        }
        let answer = Arc::new(answer);
        inner.insert(digest, Entry { answer, until });
    }

    /// Forget every answer (Python built a new authenticator, with an empty cache).
    pub fn clear(&self) {
        self.inner.clear();
    }

    pub fn len(&self) -> usize {
        self.inner.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

/// The process-wide introspection answers.
pub fn cache() -> &'static Introspected {
    static CACHE: OnceLock<Introspected> = OnceLock::new();
    CACHE.get_or_init(Introspected::default)
}

fn inflight() -> &'static Arc<Inflight> {
    static INFLIGHT: OnceLock<Arc<Inflight>> = OnceLock::new();
    INFLIGHT.get_or_init(Arc::default)
}

/// A native miss of the token `digest`: lead its introspection (a lookup,
/// `crate::lookup`; when lost, defer holding the `Lead` until Python
/// answered), or wait for the one in flight.
pub fn miss(digest: Digest) -> Miss {
    inflight().miss(digest)
}

/// Python pushed an answer for `digest`: wake whoever waits for it.
pub fn settled(digest: &Digest) {
    inflight().settled(digest);
}

/// Wake every waiter (the cache was cleared).
pub fn settle_all() {
    inflight().settle_all();
}

/// The one opaque token a request presents to this method, when the native
/// path may look it up: `None` for two different tokens, an overlong or
/// non-ASCII one (Python's own 401s, rendered by Python).
pub fn lookup_token<'t>(tokens: &[&'t [u8]]) -> Option<&'t [u8]> {
    let [token] = tokens else {
        return None;
    };
    (token.len() <= MAX_TOKEN_BYTES && token.is_ascii()).then_some(*token)
}

/// Why Python's `IntrospectionAuthenticator` refuses `tokens` that
/// [`lookup_token`] does not look up: two of them or a non-ASCII one
/// (`malformed`), one over [`MAX_TOKEN_BYTES`] (`too_large`, checked first).
pub fn unread_reason(tokens: &[&[u8]]) -> &'static str {
    match tokens {
        [token] if token.len() > MAX_TOKEN_BYTES => "too_large",
        _ => "malformed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn active(sub: &str) -> Answer {
        let record = json!({"subject": sub, "scopes": ["b", "a"],
                            "claims": {"sub": sub, "client_id": "c1", "scope": "a b"}});
        Answer::from_push(&record.to_string()).expect("valid")
    }

    #[test]
    fn introspection_push_reads_identity() {
        let Answer::Active { identity, claims } = active("alice") else {
            panic!("active");
        };
        assert_eq!(identity.method, "introspection");
        assert_eq!(identity.subject.as_deref(), Some("alice"));
        assert_eq!(identity.client_id.as_deref(), Some("c1"));
        assert_eq!(identity.scopes, vec!["a".to_owned(), "b".to_owned()]);
        assert_eq!(claims.get("scope"), Some(&json!("a b")));
    }

    #[test]
    fn introspection_push_subject_falls_back_to_client_id() {
        let record = json!({"subject": "svc", "scopes": [], "claims": {"client_id": "svc"}});
        assert!(Answer::from_push(&record.to_string()).is_ok());
        let empty_sub =
            json!({"subject": "svc", "scopes": [], "claims": {"sub": "", "client_id": "svc"}});
        assert!(Answer::from_push(&empty_sub.to_string()).is_ok());
    }

    #[test]
    fn introspection_push_refuses_disagreeing_subject() {
        for record in [
            json!({"subject": "mallory", "scopes": [], "claims": {"sub": "alice"}}),
            json!({"subject": "", "scopes": [], "claims": {"sub": ""}}),
            json!({"subject": "a", "scopes": [], "claims": {}}),
            json!({"subject": "a", "scopes": [], "claims": {"sub": "a"}, "extra": 1}),
        ] {
            assert!(Answer::from_push(&record.to_string()).is_err(), "{record}");
        }
    }

    #[test]
    fn introspection_cache_honours_until() {
        let cache = Introspected::default();
        cache.put([1; 32], active("alice"), 110.0, 100.0);
        cache.put([2; 32], Answer::Inactive, 105.0, 100.0);
        assert!(cache.get(&[1; 32], 109.9).is_some());
        assert!(cache.get(&[1; 32], 110.0).is_none());
        assert!(matches!(
            cache.get(&[2; 32], 104.0).as_deref(),
            Some(Answer::Inactive)
        ));
        assert!(cache.get(&[2; 32], 105.0).is_none());
        assert!(cache.get(&[3; 32], 100.0).is_none());
        // An answer already ended replaces nothing and is not held.
        cache.put([1; 32], active("alice"), 100.0, 100.0);
        assert!(cache.get(&[1; 32], 100.0).is_none());
        cache.clear();
        assert!(cache.is_empty());
    }

    #[test]
    fn introspection_cache_is_bounded_oldest_first() {
        let cache = Introspected::default();
        for i in 0..=CACHE_MAX {
            let mut digest = [0u8; 32];
            digest[..8].copy_from_slice(&(i as u64).to_le_bytes());
            cache.put(digest, Answer::Inactive, 1e12, 0.0);
        }
        assert_eq!(cache.len(), CACHE_MAX);
        assert!(cache.get(&[0; 32], 1.0).is_none(), "the oldest went first");
        let mut last = [0u8; 32];
        last[..8].copy_from_slice(&(CACHE_MAX as u64).to_le_bytes());
        assert!(cache.get(&last, 1.0).is_some());
    }

    #[test]
    fn introspection_lookup_token_screens_like_python() {
        assert_eq!(lookup_token(&[b"abc"]), Some(&b"abc"[..]));
        assert_eq!(lookup_token(&[b"abc", b"def"]), None);
        assert_eq!(lookup_token(&[]), None);
        let long = vec![b'a'; MAX_TOKEN_BYTES + 1];
        assert_eq!(lookup_token(&[&long]), None);
        let edge = vec![b'a'; MAX_TOKEN_BYTES];
        assert!(lookup_token(&[&edge]).is_some());
        assert_eq!(lookup_token(&["é".as_bytes()]), None);
    }
}
