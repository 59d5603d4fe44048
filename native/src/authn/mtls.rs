//! The `mtls` authentication method (`bastion.gateway.authn.mtls.MtlsAuthenticator`):
//! the identity of a verified client certificate, from a native cache the
//! Python control plane fills.
//!
//! The listener verifies a presented chain against `tls.client_ca` during the
//! handshake and keeps it (`ConnInfo::client_certs`, leaf first); this module
//! never verifies a chain. Reading the identity out of the leaf (the first
//! URI / DNS / e-mail SAN, else the RFC 4514 subject) needs an X.509 parser,
//! which this crate does not carry: Python derives it. The cache maps the
//! leaf's SHA-256 thumbprint (RFC 8705 `x5t#S256`, computed here with ring)
//! to the identity and claims Python derived (`sub`, `cert_subject`,
//! `cert_sans`, `cnf`). A miss is a lookup (`crate::lookup`, the leaf's DER):
//! Python's authenticator derives the identity and pushes it
//! (`certs().put`), and the request goes on natively, as every
//! later one with that certificate. A certificate Python cannot read is
//! remembered as refused ([`cert_refuse`]): its 401 `invalid_token`, natively.
//!
//! Nothing here ever goes stale: the identity is a function of the
//! certificate's bytes alone, and whether a certificate may be used at all is
//! decided by the TLS handshake (a `client_ca` change applies there). The
//! cache is bounded ([`CERT_CACHE_MAX`], Python's own bound), the oldest entry
//! evicted first. Concurrent misses of one certificate coalesce as API key
//! misses do ([`cert_miss`], `miss::Inflight`): the first leads the lookup,
//! the others wait for its push, so a certificate costs one derivation.

use std::sync::{Arc, Mutex, OnceLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::digest;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::bounded::Shared;
use super::miss::{Inflight, Miss, Refused};
use crate::http::Identity;

/// Most certificate identities held (`MtlsAuthenticator.cache_size`).
pub const CERT_CACHE_MAX: usize = 10_000;

/// A leaf certificate's SHA-256 thumbprint (the raw bytes of `x5t#S256`).
pub type Thumbprint = [u8; 32];

/// SHA-256 of a certificate's DER.
pub fn thumbprint(der: &[u8]) -> Thumbprint {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, der).as_ref());
    out
}

/// The thumbprint of the connection's verified leaf certificate, if any.
pub fn leaf_thumbprint(client_certs: &[Vec<u8>]) -> Option<Thumbprint> {
    client_certs.first().map(|der| thumbprint(der))
}

/// The identity one certificate vouches for.
#[derive(Debug, Clone)]
pub struct CertIdentity {
    pub identity: Identity,
    /// `sub`, `cert_subject`, `cert_sans`, `cnf` (the route's `claims` /
    /// `roles` rules read them).
    pub claims: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Pushed {
    subject: String,
    claims: Map<String, Value>,
}

impl CertIdentity {
    /// Read what Python pushed for the certificate whose `x5t#S256` is
    /// `x5t` (base64url): `{"subject": …, "claims": {…}}`. Refuses a record
    /// whose `sub` or `cnf` does not agree with the subject and thumbprint.
    pub fn from_push(x5t: &str, json: &str) -> Result<(Thumbprint, CertIdentity), String> {
        let raw = URL_SAFE_NO_PAD
            .decode(x5t)
            .map_err(|_| "the thumbprint is not base64url".to_owned())?;
        let thumb: Thumbprint = raw
            .try_into()
            .map_err(|_| "the thumbprint is not 32 bytes".to_owned())?;
        let pushed: Pushed =
            serde_json::from_str(json).map_err(|e| format!("certificate identity: {e}"))?;
        if pushed.claims.get("sub").and_then(Value::as_str) != Some(pushed.subject.as_str()) {
            return Err("certificate identity: claims.sub is not the subject".into());
        }
        let bound = pushed
            .claims
            .get("cnf")
            .and_then(|cnf| cnf.get("x5t#S256"))
            .and_then(Value::as_str);
        if bound != Some(x5t) {
            return Err("certificate identity: claims.cnf is not this certificate".into());
        }
        let identity = Identity {
            method: "mtls",
            subject: Some(pushed.subject),
            ..Identity::default()
        };
        Ok((
            thumb,
            CertIdentity {
                identity,
                claims: pushed.claims,
            },
        ))
    }
}

/// Certificate identities by thumbprint (one per process: [`certs`]), at most
/// [`CERT_CACHE_MAX`], the oldest evicted first; Python pushes them
/// (`certs().put`), requests read them (`certs().get`).
pub type CertIdentities = Shared<Thumbprint, Arc<CertIdentity>>;

/// The process-wide certificate identities.
pub fn certs() -> &'static CertIdentities {
    static CERTS: OnceLock<CertIdentities> = OnceLock::new();
    CERTS.get_or_init(|| CertIdentities::new(CERT_CACHE_MAX))
}

fn inflight() -> &'static Arc<Inflight> {
    static INFLIGHT: OnceLock<Arc<Inflight>> = OnceLock::new();
    INFLIGHT.get_or_init(Arc::default)
}

/// A native miss of the certificate `thumb`: lead its derivation (a lookup,
/// `crate::lookup`; when lost, defer holding the `Lead` until Python
/// answered), or wait for the one in flight.
pub fn cert_miss(thumb: Thumbprint) -> Miss {
    inflight().miss(thumb)
}

/// Python pushed the identity of `thumb` ([`certs`]): wake whoever waits for it.
pub fn cert_settled(thumb: &Thumbprint) {
    inflight().settled(thumb);
}

fn refused_certs() -> &'static Mutex<Refused> {
    static REFUSED: OnceLock<Mutex<Refused>> = OnceLock::new();
    REFUSED.get_or_init(Mutex::default)
}

/// Python's `mtls` authenticator refused the certificate `thumb` (it could not
/// read it: 401 `invalid_token`): a function of the certificate's bytes, so
/// never invalidated; bounded like the refused keys, oldest evicted first.
pub fn cert_refuse(thumb: Thumbprint) {
    refused_certs()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(thumb, f64::INFINITY);
}

/// Whether Python refused the certificate `thumb` ([`cert_refuse`]).
pub fn cert_refused(thumb: &Thumbprint) -> bool {
    refused_certs()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains(thumb, 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_certificate_stays_refused() {
        let thumb = thumbprint(b"unreadable certificate");
        assert!(!cert_refused(&thumb));
        cert_refuse(thumb);
        assert!(cert_refused(&thumb));
        assert!(!cert_refused(&thumbprint(b"another")));
    }

    fn x5t(der: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(thumbprint(der))
    }

    fn push(der: &[u8], subject: &str) -> String {
        serde_json::json!({
            "subject": subject,
            "claims": {"sub": subject, "cert_subject": "CN=svc", "cert_sans": [subject],
                       "cnf": {"x5t#S256": x5t(der)}},
        })
        .to_string()
    }

    #[test]
    fn mtls_push_and_get() {
        let cache = CertIdentities::new(CERT_CACHE_MAX);
        let der = b"a certificate";
        let (thumb, entry) =
            CertIdentity::from_push(&x5t(der), &push(der, "spiffe://x/svc")).expect("valid");
        assert_eq!(thumb, thumbprint(der));
        assert_eq!(leaf_thumbprint(&[der.to_vec()]), Some(thumb));
        assert_eq!(leaf_thumbprint(&[]), None);
        cache.put(thumb, entry);
        let got = cache.get(&thumb).expect("cached");
        assert_eq!(got.identity.method, "mtls");
        assert_eq!(got.identity.subject.as_deref(), Some("spiffe://x/svc"));
        assert!(got.identity.scopes.is_empty() && got.identity.key_id.is_none());
        assert_eq!(got.claims["cert_subject"], "CN=svc");
        assert!(cache.get(&thumbprint(b"another")).is_none());
    }

    #[test]
    fn mtls_push_must_agree_with_itself() {
        let der = b"cert";
        let other = x5t(b"other");
        // cnf of another certificate.
        assert!(CertIdentity::from_push(&other, &push(der, "s")).is_err());
        // sub not the subject.
        let json = push(der, "s").replace("\"subject\":\"s\"", "\"subject\":\"t\"");
        assert!(CertIdentity::from_push(&x5t(der), &json).is_err());
        // Not a thumbprint.
        assert!(CertIdentity::from_push("abc", &push(der, "s")).is_err());
        assert!(CertIdentity::from_push("!!", &push(der, "s")).is_err());
        // Unknown members.
        let json = push(der, "s").replacen('{', "{\"scopes\":[\"admin\"],", 1);
        assert!(CertIdentity::from_push(&x5t(der), &json).is_err());
    }

    #[test]
    fn mtls_cache_is_bounded_oldest_first() {
        let cache = CertIdentities::new(CERT_CACHE_MAX);
        let entry = |n: usize| {
            let der = n.to_be_bytes();
            CertIdentity::from_push(&x5t(&der), &push(&der, &format!("s{n}"))).expect("valid")
        };
        for n in 0..=CERT_CACHE_MAX {
            let (thumb, e) = entry(n);
            cache.put(thumb, e);
        }
        assert_eq!(cache.len(), CERT_CACHE_MAX);
        assert!(cache.get(&thumbprint(&0usize.to_be_bytes())).is_none());
        assert!(cache.get(&thumbprint(&1usize.to_be_bytes())).is_some());
        // Pushing a cached certificate again does not grow the order queue.
        let (thumb, e) = entry(5);
        cache.put(thumb, e);
        assert_eq!(cache.len(), CERT_CACHE_MAX);
        cache.clear();
        assert!(cache.is_empty());
    }

    /// The `authenticate` step with a certificate (`admit_with_cert`, `unadmitted_with_cert`).
    mod step {
        use super::*;
        use crate::authn::{admit_with_cert, unadmitted_with_cert, Caches, RouteAuth, Unadmitted};
        use http::header::AUTHORIZATION;
        use http::{HeaderMap, HeaderValue, Method, Uri};

        const KEY: &str = "bst_live_mn331tcZdoxuNggtbmf2rsB2WBerjUTK1GQlaB";

        fn route(methods: &[&str], extra: Value) -> RouteAuth {
            let mut section = serde_json::json!({
                "public": false, "methods": methods,
                "scopes": {"by_method": {}, "default": []},
            });
            if let (Some(s), Some(e)) = (section.as_object_mut(), extra.as_object()) {
                s.extend(e.clone());
            }
            RouteAuth::from_section(&section).expect("a valid section")
        }

        fn cached(der: &[u8], subject: &str) -> Thumbprint {
            let (thumb, entry) =
                CertIdentity::from_push(&x5t(der), &push(der, subject)).expect("valid");
            certs().put(thumb, entry);
            thumb
        }

        fn keyed() -> HeaderMap {
            let mut h = HeaderMap::new();
            h.insert(
                AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {KEY}")).expect("a header"),
            );
            h
        }

        fn admit(
            route: &RouteAuth,
            headers: &HeaderMap,
            cert: Option<&Thumbprint>,
        ) -> Option<String> {
            let uri: Uri = "/orders".parse().expect("a uri");
            admit_with_cert(
                &Caches::new(),
                route,
                "orders",
                &Method::GET,
                &uri,
                headers,
                None,
                cert,
                100.0,
            )
            .map(|a| {
                assert!(
                    a.credential_headers.is_empty(),
                    "a certificate consumes no header"
                );
                format!(
                    "{}:{}",
                    a.identity.method,
                    a.identity.subject.unwrap_or_default()
                )
            })
        }

        #[test]
        fn mtls_a_cached_certificate_is_admitted() {
            let thumb = cached(b"step-1", "spiffe://x/a");
            let r = route(&["mtls", "api_key"], serde_json::json!({}));
            assert_eq!(
                admit(&r, &HeaderMap::new(), Some(&thumb)).as_deref(),
                Some("mtls:spiffe://x/a")
            );
            // mtls first: the certificate vouches, the key is not read (nor stripped).
            assert_eq!(
                admit(&r, &keyed(), Some(&thumb)).as_deref(),
                Some("mtls:spiffe://x/a")
            );
        }

        #[test]
        fn mtls_no_or_uncached_certificate_defers() {
            let r = route(&["mtls"], serde_json::json!({}));
            assert_eq!(admit(&r, &HeaderMap::new(), None), None);
            let unknown = thumbprint(b"step-unknown");
            assert_eq!(admit(&r, &HeaderMap::new(), Some(&unknown)), None);
            let caches = Caches::new();
            assert_eq!(
                unadmitted_with_cert(&caches, &r, None, &HeaderMap::new(), Some(&unknown), 100.0),
                Unadmitted::CertMiss(unknown)
            );
            // No certificate: not responsible, and nothing else is: Python's 401
            // unauthenticated, rendered natively.
            assert_eq!(
                unadmitted_with_cert(&caches, &r, None, &HeaderMap::new(), None, 100.0),
                Unadmitted::Unauthenticated
            );
        }

        #[test]
        fn mtls_first_never_refuses_a_key_natively() {
            let caches = Caches::new();
            let unknown = thumbprint(b"step-uncached");
            let mtls_first = route(&["mtls", "api_key"], serde_json::json!({}));
            // With a certificate, Python derives its identity; the key is moot.
            assert_eq!(
                unadmitted_with_cert(&caches, &mtls_first, None, &keyed(), Some(&unknown), 100.0),
                Unadmitted::CertMiss(unknown)
            );
            // Without one, the key is responsible: a miss of its digest.
            assert!(matches!(
                unadmitted_with_cert(&caches, &mtls_first, None, &keyed(), None, 100.0),
                Unadmitted::Miss(_)
            ));
            // The key's method first: it is responsible whatever the certificate.
            let key_first = route(&["api_key", "mtls"], serde_json::json!({}));
            assert!(matches!(
                unadmitted_with_cert(&caches, &key_first, None, &keyed(), Some(&unknown), 100.0),
                Unadmitted::Miss(_)
            ));
            let thumb = cached(b"step-2", "svc-b");
            assert_eq!(admit(&key_first, &keyed(), Some(&thumb)), None);
            assert_eq!(
                admit(&key_first, &HeaderMap::new(), Some(&thumb)).as_deref(),
                Some("mtls:svc-b")
            );
        }

        #[test]
        fn mtls_claims_and_scopes_are_the_routes() {
            let thumb = cached(b"step-3", "svc-c");
            let holds = route(
                &["mtls"],
                serde_json::json!({"claims": {"cert_subject": "CN=svc"}}),
            );
            assert_eq!(
                admit(&holds, &HeaderMap::new(), Some(&thumb)).as_deref(),
                Some("mtls:svc-c")
            );
            let other = route(
                &["mtls"],
                serde_json::json!({"claims": {"cert_subject": "CN=x"}}),
            );
            assert_eq!(admit(&other, &HeaderMap::new(), Some(&thumb)), None);
            // Cached but refused by the route: Python's 403 (the admission says so),
            // never a miss; classified after it, only a cache change could explain it.
            let caches = Caches::new();
            let headers = HeaderMap::new();
            let uri: http::Uri = "/x".parse().expect("uri");
            let admission = crate::authn::admission_with_cert(
                &caches,
                &other,
                "r",
                &http::Method::GET,
                &uri,
                &headers,
                None,
                Some(&thumb),
                100.0,
            );
            assert!(matches!(
                admission,
                crate::authn::Admission::Forbidden { .. }
            ));
            assert_eq!(
                unadmitted_with_cert(&caches, &other, None, &headers, Some(&thumb), 100.0),
                Unadmitted::Again
            );
            // A certificate grants no scopes: a route that needs one is Python's 403.
            let scoped = route(
                &["mtls"],
                serde_json::json!({"scopes": {"by_method": {}, "default": ["orders:read"]}}),
            );
            assert_eq!(admit(&scoped, &HeaderMap::new(), Some(&thumb)), None);
        }
    }

    #[test]
    fn mtls_concurrent_misses_coalesce() {
        let thumb = thumbprint(b"coalesced");
        let Miss::Lead(lead) = cert_miss(thumb) else {
            panic!("the first miss leads");
        };
        assert!(matches!(cert_miss(thumb), Miss::Wait(_)));
        // Another certificate is its own lookup.
        assert!(matches!(cert_miss(thumbprint(b"other")), Miss::Lead(_)));
        cert_settled(&thumb);
        // Settled: the next miss (say, the entry was evicted) leads anew.
        assert!(matches!(cert_miss(thumb), Miss::Lead(_)));
        drop(lead);
    }

    /// RFC 8705 certificate-bound tokens of bastion's own (`cnf.x5t#S256`).
    mod bound {
        use super::*;
        use crate::authn::cache::TokenPutError;
        use crate::authn::jwt::Policy;
        use crate::authn::{admit_with_cert, Caches, RouteAuth};
        use http::header::AUTHORIZATION;
        use http::{HeaderMap, HeaderValue, Method, Uri};
        use ring::signature::{Ed25519KeyPair, KeyPair};

        const NOW: f64 = 1_800_000_000.0;
        const ISSUER: &str = "https://issuer.example";

        fn b64(bytes: &[u8]) -> String {
            URL_SAFE_NO_PAD.encode(bytes)
        }

        fn setup() -> (Caches, Ed25519KeyPair) {
            let key = Ed25519KeyPair::from_seed_unchecked(&[7u8; 32]).expect("a key");
            let caches = Caches::new();
            let policy = Policy {
                issuer: ISSUER.into(),
                leeway: 30.0,
                max_lifetime: Some(3600.0),
            };
            caches.configure(policy, None);
            let jwks = serde_json::json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "t",
                "alg": "EdDSA", "x": b64(key.public_key().as_ref())}]});
            caches.signing_keys_set(&jwks.to_string()).expect("jwks");
            caches.set_following(true);
            (caches, key)
        }

        fn token(key: &Ed25519KeyPair, cnf: Option<Value>) -> String {
            let mut claims = serde_json::json!({"iss": ISSUER, "sub": "user-1", "aud": ISSUER,
                "client_id": "client-1", "scope": "", "jti": format!("{cnf:?}"),
                "iat": NOW - 10.0, "exp": NOW + 600.0});
            if let (Some(claims), Some(cnf)) = (claims.as_object_mut(), cnf) {
                claims.insert("cnf".into(), cnf);
            }
            let head = b64(br#"{"alg":"EdDSA","kid":"t","typ":"at+jwt"}"#);
            let input = format!("{head}.{}", b64(claims.to_string().as_bytes()));
            format!("{input}.{}", b64(key.sign(input.as_bytes()).as_ref()))
        }

        fn admitted(caches: &Caches, token: &str, cert: Option<&Thumbprint>) -> bool {
            let route = RouteAuth::from_section(&serde_json::json!({
                "public": false, "methods": ["jwt"], "scopes": {"by_method": {}, "default": []},
                "jwt": {"audience": ISSUER}}))
            .expect("a section");
            let mut headers = HeaderMap::new();
            let value = HeaderValue::from_str(&format!("Bearer {token}")).expect("a header");
            headers.insert(AUTHORIZATION, value);
            let uri: Uri = "/orders".parse().expect("a uri");
            let found = admit_with_cert(
                caches,
                &route,
                "orders",
                &Method::GET,
                &uri,
                &headers,
                None,
                cert,
                NOW,
            );
            found.is_some()
        }

        #[test]
        fn mtls_bound_token_only_with_its_certificate() {
            let (caches, key) = setup();
            let cert = thumbprint(b"the client certificate");
            let other = thumbprint(b"another certificate");
            let bound = token(&key, Some(serde_json::json!({"x5t#S256": b64(&cert)})));
            caches.token_put(&bound, NOW, 60.0).expect("cached");
            assert!(admitted(&caches, &bound, Some(&cert)));
            // Python's 401 cnf_mismatch otherwise: deferred.
            assert!(!admitted(&caches, &bound, None));
            assert!(!admitted(&caches, &bound, Some(&other)));
            // An unbound token works with or without a certificate; so does `cnf: {}`.
            for cnf in [None, Some(serde_json::json!({}))] {
                let plain = token(&key, cnf);
                caches.token_put(&plain, NOW, 60.0).expect("cached");
                assert!(admitted(&caches, &plain, None));
                assert!(admitted(&caches, &plain, Some(&cert)));
            }
        }

        #[test]
        fn mtls_other_bindings_are_not_cached() {
            let (caches, key) = setup();
            let cert = thumbprint(b"c");
            let padded = format!("{}=", b64(&cert));
            for cnf in [
                serde_json::json!({"jkt": "abc"}),
                serde_json::json!({"x5t#S256": b64(&cert), "jkt": "abc"}),
                serde_json::json!({"x5t#S256": padded}),
                serde_json::json!({"x5t#S256": b64(&cert[..31])}),
                serde_json::json!({"x5t#S256": 5}),
                serde_json::json!("x5t"),
            ] {
                let t = token(&key, Some(cnf.clone()));
                assert_eq!(
                    caches.token_put(&t, NOW, 60.0),
                    Err(TokenPutError::NotNative("sender_constrained")),
                    "{cnf}"
                );
                assert!(!admitted(&caches, &t, Some(&cert)), "{cnf}");
            }
        }
    }
}
