//! Access tokens of trusted external issuers (`trusted_issuers`), verified
//! natively: the twin of `bastion.gateway.authn.external_jwt.TrustedIssuer`.
//!
//! Python keeps owning each issuer's JWKS (`jwks_cache.JwksCache`: discovery,
//! refresh policy, rate limit on unknown kids, TLS); after every successful
//! fetch it pushes the verified public keys here ([`IssuerKeys::set`]) with
//! the time Python itself would consider the set stale. What a route accepts
//! from each issuer (audiences, `typ`, algorithms, leeway, required claims) is
//! compiled into its `auth.jwt.issuers` section ([`IssuerPolicy`]).
//!
//! On a verified-token cache miss, a token whose (unverified) `iss` names one
//! of the route's issuers is verified with that issuer's pushed keys exactly
//! as `JWTVerifier` does for it: no `none`, no `jku`/`x5u`/`jwk`/`x5c`/`b64`/
//! `enc`/`crit`, `kid` required and looked up only in that issuer's set, `alg`
//! equal to the key's one algorithm (and among the issuer's algorithms), the
//! signature (high-S ES256 accepted, as `allow_high_s=True`), then the
//! required claims, `exp`/`nbf`/`iat` with leeway, `iss` exact and `typ`.
//! `aud` is checked per route on every use ([`IssuerPolicy::audience_ok`]).
//!
//! A token bound to a client certificate (RFC 8705 `cnf.x5t#S256`) is cached
//! with its binding, and admitted only over a connection presenting that
//! certificate. Anything else — an unknown `kid` (Python may refetch the
//! JWKS, then push), no or a stale key set, any refusal, a revoked `jti`,
//! another binding — is not admitted here (`refusal` renders Python's 401
//! where it is certain).
//! Misses are verified only while [`Caches::misses_verifiable`] (the native
//! deny-list hears every revocation, as for bastion's own tokens).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use serde::Deserialize;
use serde_json::{Map, Value};

use super::cache::{CachedToken, Caches, MISS_TTL};
use super::json;
use super::jwt::{self, Alg, JwtError, KeySet, MAX_TOKEN_SIZE};
use super::miss::{self, Inflight};
use crate::http::Identity;

/// Most issuers whose keys are held (a settings file lists a handful).
const MAX_ISSUERS: usize = 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IssuerSection {
    issuer: String,
    audiences: Vec<String>,
    typ: Option<String>,
    algorithms: Vec<String>,
    leeway: f64,
    required_claims: Vec<String>,
}

/// What a route accepts from one trusted issuer (compiled by `compile/auth.py`).
#[derive(Debug, Clone, PartialEq)]
pub struct IssuerPolicy {
    /// The issuer URL, exactly as `iss` must carry it.
    pub issuer: Arc<str>,
    /// The `aud` values accepted on this route: the route's `jwt.audience`,
    /// else the issuer's `audiences`.
    pub audiences: Vec<String>,
    /// The expected header `typ`, normalised; `None` accepts any.
    pub typ: Option<String>,
    pub algorithms: Vec<Alg>,
    pub leeway: f64,
    pub required_claims: Vec<String>,
}

fn alg_named(name: &str) -> Option<Alg> {
    [Alg::Es256, Alg::Rs256, Alg::Ps256, Alg::EdDsa]
        .into_iter()
        .find(|alg| alg.name() == name)
}

impl IssuerPolicy {
    pub(super) fn from_section(section: IssuerSection) -> Result<IssuerPolicy, String> {
        let IssuerSection {
            issuer,
            audiences,
            typ,
            algorithms,
            leeway,
            required_claims,
        } = section;
        if issuer.is_empty() || audiences.is_empty() || audiences.iter().any(String::is_empty) {
            return Err("auth section: a jwt issuer needs an issuer and audiences".into());
        }
        if !(leeway.is_finite() && leeway >= 0.0) {
            return Err(format!("auth section: issuer {issuer:?}: bad leeway"));
        }
        let mut algs = Vec::new();
        for name in &algorithms {
            // Only asymmetric algorithms ever reach here (settings refuse none/HS*).
            let alg = alg_named(name)
                .ok_or_else(|| format!("auth section: issuer {issuer:?}: algorithm {name:?}"))?;
            algs.push(alg);
        }
        if algs.is_empty() {
            return Err(format!("auth section: issuer {issuer:?} has no algorithm"));
        }
        if typ.as_deref() == Some("") {
            return Err(format!("auth section: issuer {issuer:?}: empty typ"));
        }
        Ok(IssuerPolicy {
            issuer: Arc::from(issuer),
            audiences,
            typ: typ.as_deref().map(jwt::normalise_typ),
            algorithms: algs,
            leeway,
            required_claims,
        })
    }

    /// Whether `aud` names one of the route's audiences for this issuer
    /// (`JWTVerifier._check_audience` with a set of audiences).
    pub fn audience_ok(&self, aud: Option<&Value>) -> bool {
        self.audiences
            .iter()
            .any(|audience| jwt::audience_matches(aud, audience))
    }
}

/// The route's policy for the issuer `issuer`, if it accepts it.
pub fn policy_for<'p>(policies: &'p [IssuerPolicy], issuer: &str) -> Option<&'p IssuerPolicy> {
    policies.iter().find(|p| &*p.issuer == issuer)
}

struct IssuerKeySet {
    keys: Arc<KeySet>,
    /// Unix seconds after which Python would refetch the set (its `cache_ttl`).
    until: f64,
    /// Unix seconds before which Python would not try a fetch again (its
    /// `min_refresh_interval` since the last attempt, pushed after a lookup;
    /// 0: unknown, so a set Python would refetch is looked up).
    retry_at: f64,
}

/// The pushed key sets of trusted issuers, by issuer URL.
#[derive(Default)]
pub struct IssuerKeys {
    sets: RwLock<HashMap<String, IssuerKeySet>>,
}

impl IssuerKeys {
    /// Replace `issuer`'s keys with the JWKS document Python verified, usable
    /// until `until` (Unix seconds). Returns how many keys were taken.
    pub fn set(&self, issuer: &str, jwks: &str, until: f64) -> Result<usize, String> {
        let (keys, _skipped) = KeySet::from_jwks(jwks)?;
        let count = keys.len();
        let mut sets = self.sets.write().unwrap_or_else(|p| p.into_inner());
        if sets.len() >= MAX_ISSUERS && !sets.contains_key(issuer) {
            sets.clear();
        }
        let retry_at = sets.get(issuer).map_or(0.0, |set| set.retry_at);
        sets.insert(
            issuer.to_owned(),
            IssuerKeySet {
                keys: Arc::new(keys),
                until,
                retry_at,
            },
        );
        Ok(count)
    }

    /// Python will not try to fetch `issuer`'s set again before `retry_at`
    /// (Unix seconds): until then its set — stale, or lacking a token's `kid` —
    /// is the one it verifies with (`JwksCache._may_fetch`).
    pub fn retry_at(&self, issuer: &str, retry_at: f64) {
        let mut sets = self.sets.write().unwrap_or_else(|p| p.into_inner());
        if let Some(set) = sets.get_mut(issuer) {
            set.retry_at = retry_at;
        }
    }

    /// `issuer`'s keys, unless none were pushed or they are stale at `now`.
    pub fn get(&self, issuer: &str, now: f64) -> Option<Arc<KeySet>> {
        let sets = self.sets.read().unwrap_or_else(|p| p.into_inner());
        let set = sets.get(issuer)?;
        (now < set.until).then(|| set.keys.clone())
    }

    /// The keys Python verifies a token naming `kid` with at `now`, when it
    /// would not fetch first (`TrustedIssuer.verify`: a stale set, or a string
    /// `kid` the set lacks, is refetched unless the last attempt is younger
    /// than `min_refresh_interval`); `None`: Python would fetch (or has no set)
    /// — a lookup ([`miss`]).
    pub fn usable(&self, issuer: &str, kid: Option<&str>, now: f64) -> Option<Arc<KeySet>> {
        let sets = self.sets.read().unwrap_or_else(|p| p.into_inner());
        let set = sets.get(issuer)?;
        let refetch = now >= set.until || kid.is_some_and(|kid| set.keys.get(kid).is_none());
        (!refetch || now < set.retry_at).then(|| set.keys.clone())
    }

    /// Whether `issuer`'s current set holds `kid` (stale or not).
    pub fn known(&self, issuer: &str, kid: &str) -> bool {
        let sets = self.sets.read().unwrap_or_else(|p| p.into_inner());
        sets.get(issuer)
            .is_some_and(|set| set.keys.get(kid).is_some())
    }

    pub fn clear(&self) {
        self.sets.write().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// A compact JWS split and decoded, before any signature work.
pub struct Parsed<'t> {
    signing_input: &'t str,
    signature: &'t str,
    header: Map<String, Value>,
    claims: Map<String, Value>,
}

/// Split `token` into a strict compact JWS (three base64url parts, header and
/// payload JSON objects without duplicate members), or `None`.
pub fn parse(token: &str) -> Option<Parsed<'_>> {
    if token.len() > MAX_TOKEN_SIZE || !token.is_ascii() {
        return None;
    }
    let mut parts = token.split('.');
    let (head, body, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || head.is_empty() || body.is_empty() {
        return None;
    }
    if ![head, body, signature].iter().all(|p| jwt::is_b64url(p)) {
        return None;
    }
    let header = json::object(&jwt::decode(head).ok()?)?;
    let claims = json::object(&jwt::decode(body).ok()?)?;
    Some(Parsed {
        signing_input: &token[..head.len() + 1 + body.len()],
        signature,
        header,
        claims,
    })
}

impl Parsed<'_> {
    /// The unverified `iss` (only to pick the key set; checked again after).
    pub fn issuer(&self) -> Option<&str> {
        self.claims.get("iss").and_then(Value::as_str)
    }

    /// The (unverified until [`verify`] passed) claims.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// The header's `kid`, when it is a string (the only kind Python refetches for).
    pub fn kid(&self) -> Option<&str> {
        self.header.get("kid").and_then(Value::as_str)
    }
}

fn inflight() -> &'static Arc<Inflight> {
    static INFLIGHT: OnceLock<Arc<Inflight>> = OnceLock::new();
    INFLIGHT.get_or_init(Arc::default)
}

/// A refetch of `issuer`'s keys Python would make before judging a token:
/// lead its lookup (`crate::lookup`, kind `jwks`), or wait for the one in
/// flight — every request needing one issuer's keys shares one lookup.
pub fn miss(issuer: &str) -> miss::Miss {
    inflight().miss(super::cache::token_digest(issuer.as_bytes()))
}

/// The issuer (and the token's `kid`, when a string) whose keys Python would
/// fetch before judging the bearer token `tokens` on `route`: a token not
/// cached, of one of the route's external issuers, whose pushed set is
/// missing, or stale or lacking the `kid` while Python may fetch again.
pub fn refetch(
    caches: &Caches,
    policies: &[IssuerPolicy],
    tokens: &[&[u8]],
    now: f64,
) -> Option<(Arc<str>, Option<String>)> {
    let [token] = tokens else {
        return None;
    };
    let text = std::str::from_utf8(token).ok()?;
    if policies.is_empty()
        || caches
            .token_get(&super::cache::token_digest(token), now)
            .is_some()
    {
        return None;
    }
    let parsed = parse(text)?;
    let policy = policy_for(policies, parsed.issuer()?)?;
    let kid = parsed.kid();
    if caches
        .issuer_keys()
        .usable(&policy.issuer, kid, now)
        .is_some()
    {
        return None;
    }
    Some((policy.issuer.clone(), kid.map(str::to_owned)))
}

/// Verify a parsed token of `policy`'s issuer with `keys` at Unix time `now`.
pub fn verify(
    parsed: &Parsed<'_>,
    keys: &KeySet,
    policy: &IssuerPolicy,
    now: f64,
) -> Result<(), JwtError> {
    let key = jwt::header_key(&parsed.header, keys)?;
    if !policy.algorithms.contains(&key.alg) {
        return Err(JwtError::AlgNotAllowed);
    }
    let signature = jwt::decode(parsed.signature)?;
    key.verify_signature_with(parsed.signing_input.as_bytes(), &signature, true)?;
    let claims = &parsed.claims;
    if policy
        .required_claims
        .iter()
        .any(|name| !claims.contains_key(name))
    {
        return Err(JwtError::MissingClaim);
    }
    jwt::check_times(claims, now, policy.leeway)?;
    match claims.get("iss") {
        None => return Err(JwtError::MissingClaim),
        Some(Value::String(iss)) if **iss == *policy.issuer => {}
        Some(_) => return Err(JwtError::WrongIssuer),
    }
    if let Some(expected) = &policy.typ {
        match parsed.header.get("typ").and_then(Value::as_str) {
            Some(typ) if jwt::normalise_typ(typ) == *expected => {}
            _ => return Err(JwtError::WrongTyp),
        }
    }
    Ok(())
}

/// The cache entry of a verified external token (`identity_of_claims` and
/// `JwtAuthenticator._remember`), or `None` where Python must answer.
fn entry(claims: Map<String, Value>, issuer: &Arc<str>, now: f64) -> Option<CachedToken> {
    // Bound to a client certificate: admitted only over a connection presenting
    // it; any other binding is refused (`refusal`), never cached.
    let bound = super::cache::certificate_binding(claims.get("cnf")).ok()?;
    let subject = match claims.get("sub") {
        Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
        _ => return None,
    };
    let mut scopes: Vec<String> = match claims.get("scope") {
        None => Vec::new(),
        Some(Value::String(scope)) => scope.split_whitespace().map(str::to_owned).collect(),
        Some(_) => return None,
    };
    scopes.sort();
    scopes.dedup();
    // A non-string jti is never looked up in the deny-list (nor revocable): Python's rule.
    let jti = match claims.get("jti") {
        Some(Value::String(jti)) => jti.clone(),
        _ => String::new(),
    };
    let exp = claims.get("exp").and_then(Value::as_f64)?;
    // At or before `now` for a token valid within the leeway only: served, never cached.
    let until = exp.min(now + MISS_TTL);
    let client_id = match claims.get("client_id") {
        Some(Value::String(id)) => Some(id.clone()),
        _ => None,
    };
    Some(CachedToken {
        identity: Identity {
            method: "jwt",
            subject: Some(subject),
            client_id: client_id.clone(),
            scopes,
            key_id: None,
            routes: None,
            person: None,
        },
        headers: crate::mutate::IdentityHeadersMemo::default(),
        claims,
        jti,
        client_id,
        until,
        bound,
        issuer: Some(issuer.clone()),
        key_limits: Arc::from([]),
    })
}

/// What a verified-token cache miss is, on a route accepting external issuers.
pub enum Miss {
    /// The token names none of the route's external issuers: bastion's own path.
    NotExternal,
    /// An external token verified and cached now (`None`: Python answers).
    External(Option<Arc<CachedToken>>),
}

/// Verify an uncached `token` of one of `policies`' issuers natively and cache it.
/// (No policy names bastion's own issuer: `compile/auth.py` leaves such a route
/// to Python, whose dispatch never sends its own `iss` to an external issuer.)
pub fn verify_miss(caches: &Caches, policies: &[IssuerPolicy], token: &str, now: f64) -> Miss {
    let Some(parsed) = parse(token) else {
        return Miss::NotExternal;
    };
    let Some(iss) = parsed.issuer() else {
        return Miss::NotExternal;
    };
    let Some(policy) = policy_for(policies, iss) else {
        return Miss::NotExternal;
    };
    Miss::External(verified(caches, &parsed, policy, token, now))
}

fn verified(
    caches: &Caches,
    parsed: &Parsed<'_>,
    policy: &IssuerPolicy,
    token: &str,
    now: f64,
) -> Option<Arc<CachedToken>> {
    if !caches.misses_verifiable() {
        return None;
    }
    let keys = caches
        .issuer_keys()
        .usable(&policy.issuer, parsed.kid(), now)?;
    verify(parsed, &keys, policy, now).ok()?;
    let entry = entry(parsed.claims.clone(), &policy.issuer, now)?;
    if !entry.jti.is_empty() && caches.token_revoked(&entry.jti, now) {
        return None;
    }
    let entry = Arc::new(entry);
    // Python's `_remember` keeps nothing that has ended (valid within the leeway only).
    if entry.until > now {
        caches.insert_token(token, entry.clone(), now);
    }
    Some(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(value: Value) -> Result<IssuerPolicy, String> {
        let section: IssuerSection = serde_json::from_value(value).map_err(|e| e.to_string())?;
        IssuerPolicy::from_section(section)
    }

    #[test]
    fn issuers_policy_sections_are_checked() {
        let ok = section(serde_json::json!({
            "issuer": "https://idp.example", "audiences": ["a", "b"], "typ": "application/AT+JWT",
            "algorithms": ["ES256", "RS256"], "leeway": 30.0, "required_claims": ["exp", "sub"]
        }))
        .expect("valid");
        assert_eq!(ok.typ.as_deref(), Some("at+jwt"));
        assert_eq!(ok.algorithms, vec![Alg::Es256, Alg::Rs256]);
        assert!(ok.audience_ok(Some(&Value::from("b"))));
        assert!(ok.audience_ok(Some(&serde_json::json!(["x", "a"]))));
        assert!(!ok.audience_ok(Some(&serde_json::json!(["x", 1, "a"]))));
        assert!(!ok.audience_ok(None));
        for bad in [
            serde_json::json!({"issuer": "i", "audiences": [], "typ": null, "algorithms": ["ES256"],
                               "leeway": 0.0, "required_claims": []}),
            serde_json::json!({"issuer": "i", "audiences": ["a"], "typ": null, "algorithms": ["HS256"],
                               "leeway": 0.0, "required_claims": []}),
            serde_json::json!({"issuer": "i", "audiences": ["a"], "typ": null, "algorithms": ["none"],
                               "leeway": 0.0, "required_claims": []}),
            serde_json::json!({"issuer": "i", "audiences": ["a"], "typ": null, "algorithms": [],
                               "leeway": 0.0, "required_claims": []}),
            serde_json::json!({"issuer": "i", "audiences": ["a"], "typ": null, "algorithms": ["ES256"],
                               "leeway": -1.0, "required_claims": []}),
        ] {
            assert!(section(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn issuers_key_sets_go_stale_when_python_would_refetch() {
        let keys = IssuerKeys::default();
        let jwks = r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "alg": "EdDSA"}]}"#;
        assert_eq!(keys.set("https://idp", jwks, 100.0), Ok(1));
        assert!(keys.get("https://idp", 99.0).is_some());
        assert!(keys.get("https://idp", 100.0).is_none());
        assert!(keys.get("https://other", 0.0).is_none());
        assert!(keys.known("https://idp", "k1"));
        assert!(!keys.known("https://idp", "k2"));
        keys.clear();
        assert!(!keys.known("https://idp", "k1"));
    }

    #[test]
    fn issuers_sets_are_used_as_python_would_until_it_may_fetch_again() {
        let keys = IssuerKeys::default();
        let jwks = r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "alg": "EdDSA"}]}"#;
        // Nothing pushed: Python fetches (a lookup).
        assert!(keys.usable("https://idp", Some("k1"), 0.0).is_none());
        assert_eq!(keys.set("https://idp", jwks, 100.0), Ok(1));
        // Fresh, the kid known or none named: used as is.
        assert!(keys.usable("https://idp", Some("k1"), 50.0).is_some());
        assert!(keys.usable("https://idp", None, 50.0).is_some());
        // An unknown kid, or a stale set: Python would refetch first (never tried yet).
        assert!(keys.usable("https://idp", Some("k2"), 50.0).is_none());
        assert!(keys.usable("https://idp", Some("k1"), 100.0).is_none());
        // Within min_refresh_interval of its last attempt, Python verifies with what
        // it holds: the unknown kid is then refused, the stale set used.
        keys.retry_at("https://idp", 80.0);
        assert!(keys.usable("https://idp", Some("k2"), 79.0).is_some());
        assert!(keys.usable("https://idp", Some("k2"), 80.0).is_none());
        keys.set("https://idp", jwks, 60.0).expect("pushed again");
        assert!(
            keys.usable("https://idp", Some("k1"), 70.0).is_some(),
            "a new push keeps when Python may fetch again"
        );
        assert!(keys.usable("https://idp", Some("k1"), 80.0).is_none());
        // Only a pushed issuer takes a retry time.
        keys.retry_at("https://other", 1e12);
        assert!(keys.usable("https://other", None, 0.0).is_none());
    }

    #[test]
    fn issuers_misses_of_one_issuer_share_one_lookup() {
        let miss::Miss::Lead(lead) = miss("https://shared.example") else {
            panic!("the first miss leads");
        };
        assert!(matches!(
            miss("https://shared.example"),
            miss::Miss::Wait(_)
        ));
        assert!(matches!(
            miss("https://another.example"),
            miss::Miss::Lead(_)
        ));
        drop(lead);
        assert!(matches!(
            miss("https://shared.example"),
            miss::Miss::Lead(_)
        ));
    }

    #[test]
    fn issuers_parse_is_strict() {
        assert!(parse("a.b").is_none());
        assert!(parse("e30.e30.").is_some());
        assert!(parse("e30.e30.x.y").is_none());
        assert!(parse("e30=.e30.x").is_none());
        assert!(parse(".e30.x").is_none());
        // {"a":1,"a":2}
        assert!(parse("e30.eyJhIjoxLCJhIjoyfQ.x").is_none());
    }

    // -- the vectors of bastion's own tokens, trusted as an external issuer's --

    use crate::authn::tests::{vector as token, vectors as doc};
    use crate::authn::{authenticate, RouteAuth, Verdict};
    use http::header::{HeaderMap, HeaderValue, AUTHORIZATION};

    const IDP: &str = "https://issuer.example";

    fn ext_route(audience: &str, own: bool, typ: Value) -> RouteAuth {
        RouteAuth::from_section(&serde_json::json!({
            "public": false, "methods": ["jwt"],
            "scopes": {"by_method": {}, "default": []},
            "jwt": {"audience": "https://bastion.test", "self": own, "issuers": [{
                "issuer": IDP, "audiences": [audience], "typ": typ,
                "algorithms": ["ES256", "RS256", "PS256", "EdDSA"], "leeway": 30.0,
                "required_claims": ["exp", "sub"]}]}
        }))
        .expect("section")
    }

    /// Caches whose own issuer is another one, with the vectors' keys pushed
    /// as the external issuer's; misses verifiable.
    fn setup() -> (Caches, Value, f64) {
        let doc = doc();
        let caches = Caches::new();
        caches.configure(
            jwt::Policy {
                issuer: "https://bastion.test".into(),
                leeway: 30.0,
                max_lifetime: Some(3600.0),
            },
            None,
        );
        let now = doc["now"].as_f64().expect("now");
        let taken = caches
            .issuer_keys()
            .set(IDP, &doc["jwks"].to_string(), now + 600.0)
            .expect("jwks");
        assert_eq!(taken, 4);
        caches.set_verify_misses(true);
        caches.set_following(true);
        (caches, doc, now)
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
        );
        headers
    }

    fn served(caches: &Caches, route: &RouteAuth, token: &str, now: f64) -> bool {
        matches!(
            authenticate(caches, route, &bearer(token), now),
            Verdict::Allow(_)
        )
    }

    #[test]
    fn issuers_valid_external_tokens_are_served_per_the_issuers_policy() {
        let (caches, doc, now) = setup();
        let route = ext_route(IDP, false, Value::from("at+jwt"));
        // Valid for an external issuer too: its policy requires only exp and sub,
        // sets no maximum lifetime and accepts the high-S twin (allow_high_s).
        for name in [
            "valid ES256",
            "valid RS256",
            "valid PS256",
            "valid EdDSA",
            "typ application/at+jwt",
            "aud list",
            "missing jti",
            "empty jti",
            "missing client_id",
            "lifetime too long",
            "ES256 high-S twin",
        ] {
            let token = token(&doc, name);
            let Verdict::Allow(identity) = authenticate(&caches, &route, &bearer(&token), now)
            else {
                panic!("{name}: deferred");
            };
            assert_eq!(identity.method, "jwt");
            assert_eq!(identity.subject.as_deref(), Some("user-1"), "{name}");
            assert!(caches.token_cached(&token), "{name}");
        }
    }

    #[test]
    fn issuers_forged_or_refused_tokens_defer() {
        let (caches, doc, now) = setup();
        let route = ext_route(IDP, false, Value::from("at+jwt"));
        for name in [
            "alg none",
            "alg None",
            "alg confusion RS key as HS256 secret",
            "alg PS256 on an RS256 key",
            "alg ES256 on an EdDSA key",
            "unknown kid",
            "no kid",
            "tampered payload",
            "signature of another token",
            "ES256 DER signature",
            "empty signature",
            "b64 header",
            "enc header",
            "kid not a string",
            "duplicate claim",
            "expired",
            "not yet valid",
            "issued in the future",
            "missing exp",
            "exp as a string",
            "exp as a boolean",
            "wrong iss",
            "missing iss",
            "wrong typ",
            "missing typ",
            "crit header",
            "jku header",
            "x5u header",
            "embedded jwk",
            "duplicate header member",
            "JWE",
            "padded",
            "two parts",
        ] {
            let token = token(&doc, name);
            assert!(!served(&caches, &route, &token, now), "{name}");
            assert!(!caches.token_cached(&token), "{name}");
        }
    }

    #[test]
    fn issuers_a_token_valid_within_the_leeway_only_is_served_never_cached() {
        let (caches, doc, now) = setup();
        let route = ext_route(IDP, false, Value::from("at+jwt"));
        let late = token(&doc, "expired within leeway");
        // Python verifies it and caches nothing: verified again on every request.
        assert!(served(&caches, &route, &late, now));
        assert!(!caches.token_cached(&late));
        assert!(served(&caches, &route, &late, now));
    }

    #[test]
    fn issuers_typ_null_accepts_any_typ() {
        let (caches, doc, now) = setup();
        let route = ext_route(IDP, false, Value::Null);
        assert!(served(&caches, &route, &token(&doc, "wrong typ"), now));
        assert!(served(&caches, &route, &token(&doc, "missing typ"), now));
    }

    #[test]
    fn issuers_audience_and_issuer_are_checked_per_route() {
        let (caches, doc, now) = setup();
        let token = token(&doc, "valid ES256");
        assert!(served(
            &caches,
            &ext_route(IDP, false, Value::from("at+jwt")),
            &token,
            now
        ));
        // Cached now; another route with another audience still refuses it (Python's 401).
        assert!(!served(
            &caches,
            &ext_route("https://other", false, Value::from("at+jwt")),
            &token,
            now
        ));
        // A route trusting only bastion's own tokens never serves an external one.
        let own_only = RouteAuth::from_section(&serde_json::json!({
            "public": false, "methods": ["jwt"],
            "scopes": {"by_method": {}, "default": []},
            "jwt": {"audience": IDP}
        }))
        .expect("section");
        assert!(!served(&caches, &own_only, &token, now));
    }

    #[test]
    fn issuers_unknown_kids_stale_sets_and_revocations_defer() {
        let (caches, doc, now) = setup();
        let route = ext_route(IDP, false, Value::from("at+jwt"));
        let es = token(&doc, "valid ES256");
        let rs = token(&doc, "valid RS256");
        // A rotated set without the ES256 key: its tokens defer (Python refetches).
        let mut jwks = doc["jwks"].clone();
        let keys = jwks["keys"].as_array_mut().expect("keys");
        keys.retain(|k| k["kty"] != "EC");
        caches
            .issuer_keys()
            .set(IDP, &jwks.to_string(), now + 600.0)
            .expect("jwks");
        assert!(!served(&caches, &route, &es, now));
        assert!(served(&caches, &route, &rs, now));
        // A stale set (past Python's cache_ttl): misses defer, hits still serve.
        caches
            .issuer_keys()
            .set(IDP, &doc["jwks"].to_string(), now)
            .expect("jwks");
        assert!(!served(&caches, &route, &es, now));
        assert!(served(&caches, &route, &rs, now));
        caches
            .issuer_keys()
            .set(IDP, &doc["jwks"].to_string(), now + 600.0)
            .expect("jwks");
        // Without verify_misses (or while not following), nothing uncached is verified.
        caches.set_verify_misses(false);
        let ed = token(&doc, "valid EdDSA");
        assert!(!served(&caches, &route, &ed, now));
        caches.set_verify_misses(true);
        caches.set_following(false);
        assert!(!served(&caches, &route, &ed, now));
        caches.set_following(true);
        assert!(served(&caches, &route, &ed, now));
        // A revoked jti (every vector carries the same one): the cached entries go,
        // and the misses defer.
        let jti = parse(&es).expect("parsed").claims["jti"]
            .as_str()
            .expect("jti")
            .to_owned();
        assert!(served(&caches, &route, &es, now));
        caches.token_revoke(&jti, now + 300.0, now);
        assert!(!served(&caches, &route, &es, now));
        assert!(!served(&caches, &route, &ed, now));
        // A new configuration forgets every issuer's keys.
        caches.configure(
            jwt::Policy {
                issuer: "https://bastion.test".into(),
                leeway: 30.0,
                max_lifetime: None,
            },
            None,
        );
        caches.set_following(true);
        assert!(!served(&caches, &route, &ed, now));
    }
}
