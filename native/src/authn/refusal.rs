//! The bearer-token refusals the native path renders itself: Python's
//! `401 invalid_token` (`bastion.gateway.authn.jwt.InvalidBearerTokenError`,
//! and `bastion.gateway.authn.mtls.check_binding`) for a token the `jwt`
//! method refuses whatever Python holds.
//!
//! [`jwt_refusal`] names the reason Python records on the exception (the
//! audit row carries the outward code, `invalid_token`, as Python's
//! `record_denial` does) when the refusal is certain, and `None` when Python
//! must answer. Certain means: a check that needs nothing Python could know
//! better — the token's shape, `alg` / `crit` / forbidden header members, a
//! signature or claim checked with a key the token's `kid` names in a pushed
//! set (bastion's own, or a trusted issuer's while Python would not refetch
//! it), the route's issuers and audience, the deny-list, the connection's
//! client certificate. Never a refusal: an unknown `kid` (Python's keys may
//! be newer, an issuer's set is refetched), a stale or missing issuer key set,
//! no configuration, a token exchanged from an API key (Python judges that
//! key: a lookup). A token without a `kid` is refused (`unknown_kid`: Python
//! requires one), and so is one whose `client_id`, `sub` or `scope` has a
//! shape Python refuses after its own checks.
//!
//! Python's dispatch (`JwtAuthenticator.authenticate`): a token whose `iss`
//! names a trusted issuer goes to that issuer (refused `wrong_issuer` when
//! the route does not accept it), every other one to bastion's own verifier.
//! A route that accepts no external issuer thus refuses whatever bastion's
//! verifier refuses; on a route that does, a token must name one of its
//! issuers, or bastion's own issuer, to be judged here.

use serde_json::Value;

use super::cache::{self, CachedToken, Caches, TokenPutError, MISS_TTL};
use super::issuers::{self, policy_for};
use super::jwt::{self, JwtError, MAX_TOKEN_SIZE};
use super::mtls::Thumbprint;
use super::RouteAuth;

/// Python's reason when the route's `jwt` method certainly refuses the
/// bearer tokens `tokens` (each distinct, dotted, not an API key) presented
/// over a connection with the client certificate `cert`; `None`: Python
/// answers (it may accept, refetch keys, or refuse for a reason of its own).
pub fn jwt_refusal(
    caches: &Caches,
    route: &RouteAuth,
    tokens: &[&[u8]],
    cert: Option<&Thumbprint>,
    now: f64,
) -> Option<&'static str> {
    // Which one would act? Python refuses before reading either.
    let [token] = tokens else {
        return Some("malformed");
    };
    if !token.is_ascii() {
        return Some("malformed");
    }
    let text = std::str::from_utf8(token).ok()?;
    // A token Python accepted (and pushed): only the route's own checks remain.
    if let Some(entry) = caches.token_get(&cache::token_digest(token), now) {
        return entry_refusal(route, &entry, cert);
    }
    if route.issuers.is_empty() {
        return if route.accepts_own {
            own_refusal(caches, route, text, cert, now)
        } else {
            Some("wrong_issuer")
        };
    }
    let Some(parsed) = issuers::parse(text) else {
        // `peek`'s own refusals; past them the issuer's verifier decides.
        if token.len() > MAX_TOKEN_SIZE {
            return Some("too_large");
        }
        return (text.split('.').count() != 3).then_some("malformed");
    };
    match parsed
        .issuer()
        .and_then(|iss| policy_for(&route.issuers, iss))
    {
        Some(policy) => {
            // Keys Python would refetch first (stale, or lacking the `kid`, while it may
            // fetch again) or never pushed: a lookup (`issuers::refetch`), not judged here.
            let keys = caches
                .issuer_keys()
                .usable(&policy.issuer, parsed.kid(), now)?;
            match issuers::verify(&parsed, &keys, policy, now) {
                // The set Python verifies with lacks it, and Python would not refetch.
                Err(error) => Some(error.reason()),
                Ok(()) => {
                    let claims = parsed.claims();
                    if !policy.audience_ok(claims.get("aud")) {
                        return Some("wrong_audience");
                    }
                    if let Some(Value::String(jti)) = claims.get("jti") {
                        if !jti.is_empty() && caches.token_revoked(jti, now) {
                            return Some("revoked");
                        }
                    }
                    // `identity_of_claims`, then the pipeline's `check_binding`.
                    let sub_ok =
                        matches!(claims.get("sub"), Some(Value::String(sub)) if !sub.is_empty());
                    if !sub_ok || !matches!(claims.get("scope"), None | Some(Value::String(_))) {
                        return Some("invalid_claim");
                    }
                    super::binding::check(claims.get("cnf"), cert).err()
                }
            }
        }
        // Not one of the route's issuers: bastion's own verifier (or another
        // trusted issuer, which the route does not accept: `wrong_issuer`).
        None if route.accepts_own => own_refusal(caches, route, text, cert, now),
        None => Some("wrong_issuer"),
    }
}

/// The OAuth client whose status Python must read (`client_is_active`, a
/// database read: a `client` lookup) before the native core can judge the
/// bearer token `tokens` on `route`: one of bastion's own tokens, not cached,
/// that the native verifier and the route's checks accept, of a client the
/// native core holds no status of — where uncached tokens are verified natively
/// at all ([`Caches::misses_verifiable`]).
pub fn client_unknown(
    caches: &Caches,
    route: &RouteAuth,
    tokens: &[&[u8]],
    cert: Option<&Thumbprint>,
    now: f64,
) -> Option<String> {
    let [token] = tokens else {
        return None;
    };
    if !route.accepts_own
        || !caches.misses_verifiable()
        || caches.token_get(&cache::token_digest(token), now).is_some()
    {
        return None;
    }
    let text = std::str::from_utf8(token).ok()?;
    if !route.issuers.is_empty() {
        // A token of one of the route's external issuers is theirs.
        let iss = issuers::parse(text)?.issuer().map(str::to_owned);
        if iss.is_some_and(|iss| policy_for(&route.issuers, &iss).is_some()) {
            return None;
        }
    }
    let entry = caches.verified(text, now, MISS_TTL).ok()?;
    if entry_refusal(route, &entry, cert).is_some() {
        return None;
    }
    let client = entry.client_id?;
    caches
        .client_state(&client, now)
        .is_none()
        .then_some(client)
}

/// The `kid` of the bearer token `tokens` on `route` when it is one of
/// bastion's own (the route takes them, and it names none of the route's
/// trusted issuers), not cached, and the pushed signing keys lack that `kid`
/// (a string): Python's keys may be newer (a `signing_key` lookup).
pub fn own_kid_unknown(
    caches: &Caches,
    route: &RouteAuth,
    tokens: &[&[u8]],
    now: f64,
) -> Option<String> {
    let [token] = tokens else {
        return None;
    };
    let text = std::str::from_utf8(token).ok()?;
    if !route.accepts_own || caches.token_get(&cache::token_digest(token), now).is_some() {
        return None;
    }
    let parsed = issuers::parse(text)?;
    if parsed
        .issuer()
        .is_some_and(|iss| policy_for(&route.issuers, iss).is_some())
    {
        return None;
    }
    let kid = parsed.kid()?;
    match caches.verified(text, now, MISS_TTL) {
        Err(TokenPutError::Invalid(JwtError::UnknownKid)) if !caches.signing_key_known(kid) => {
            Some(kid.to_owned())
        }
        _ => None,
    }
}

/// Whether the bearer token `tokens` on `route` is one of bastion's own, not
/// cached, that the native verifier accepts but for having been exchanged
/// from an API key (Python's `_as_key` judges that key: a lookup).
pub fn exchanged(caches: &Caches, route: &RouteAuth, tokens: &[&[u8]], now: f64) -> bool {
    let [token] = tokens else {
        return false;
    };
    let Ok(text) = std::str::from_utf8(token) else {
        return false;
    };
    if !route.accepts_own
        || !caches.following()
        || caches.token_get(&cache::token_digest(token), now).is_some()
    {
        return false;
    }
    if !route.issuers.is_empty() {
        let iss = issuers::parse(text).and_then(|p| p.issuer().map(str::to_owned));
        if iss.is_some_and(|iss| policy_for(&route.issuers, &iss).is_some()) {
            return false;
        }
    }
    matches!(
        caches.verified(text, now, MISS_TTL),
        Err(TokenPutError::NotNative("exchanged_from_api_key"))
    )
}

/// What bastion's own verifier (`AccessTokenVerifier`) and then the route
/// make of an uncached token.
fn own_refusal(
    caches: &Caches,
    route: &RouteAuth,
    token: &str,
    cert: Option<&Thumbprint>,
    now: f64,
) -> Option<&'static str> {
    match caches.verified(token, now, MISS_TTL) {
        Ok(entry) => entry_refusal(route, &entry, cert).or_else(|| {
            // A client Python found disabled or deleted (a `client` lookup): its
            // verifier's `client_disabled`, until the client changes.
            let client = entry.client_id.as_deref()?;
            (caches.client_state(client, now) == Some(false)).then_some("client_disabled")
        }),
        // Without a `kid` Python's verifier (`require_kid`) tries no key at all; a
        // `kid` the pushed keys lack: Python's keys may be newer (`own_kid_unknown`).
        Err(TokenPutError::Invalid(JwtError::UnknownKid)) => {
            (!names_kid(token)).then_some("unknown_kid")
        }
        // Verified, with a claim of a shape Python refuses after its own checks: a
        // `client_id` not a string (`client_is_active(str(...))` finds none of the
        // clients bastion makes — 22 letters and digits: `client_disabled`), a `sub`
        // or `scope` of another shape (`identity_of_claims`: `invalid_claim`).
        Err(TokenPutError::NotNative("invalid_claim")) => {
            let parsed = issuers::parse(token)?;
            match parsed.claims().get("client_id") {
                Some(Value::String(_)) => Some("invalid_claim"),
                _ => Some("client_disabled"),
            }
        }
        Err(TokenPutError::Invalid(error)) => Some(error.reason()),
        // Deny-listed: Python's deny-list holds it as long (until exp + leeway).
        Err(TokenPutError::NotNative("revoked")) => Some("revoked"),
        // A valid token with a `cnf` the native cache does not take: Python's
        // `check_binding` decides, and refuses most (never a `null` one).
        Err(TokenPutError::NotNative("sender_constrained")) => {
            let parsed = issuers::parse(token)?;
            binding_refusal(parsed.claims().get("cnf"))
        }
        Err(_) => None,
    }
}

/// Whether the header of `token` (a compact JWS whose header decoded) names a
/// `kid` (a string; `null` names none, as Python's `header.get("kid")`).
fn names_kid(token: &str) -> bool {
    let head = token.split('.').next().unwrap_or_default();
    let header = jwt::decode(head).ok().and_then(|h| super::json::object(&h));
    !matches!(
        header.as_ref().map(|h| h.get("kid")),
        Some(None | Some(Value::Null))
    )
}

/// `bastion.gateway.authn.mtls.check_binding` for a `cnf` no certificate can
/// satisfy (the native cache holds every binding a certificate can): its
/// reason, or `None` where Python accepts the token as unbound.
fn binding_refusal(cnf: Option<&Value>) -> Option<&'static str> {
    super::binding::check(cnf, None).err()
}

/// The route's checks of a verified token: its issuer accepted here, its
/// `aud` the route's, and a certificate-bound token (RFC 8705) presented
/// with its certificate.
fn entry_refusal(
    route: &RouteAuth,
    entry: &CachedToken,
    cert: Option<&Thumbprint>,
) -> Option<&'static str> {
    let aud = entry.claims.get("aud");
    match entry.issuer.as_deref() {
        None if !route.accepts_own => return Some("wrong_issuer"),
        None => {
            let audience = route.audience.as_deref()?;
            if !jwt::audience_matches(aud, audience) {
                return Some("wrong_audience");
            }
        }
        Some(iss) => match policy_for(&route.issuers, iss) {
            None => return Some("wrong_issuer"),
            Some(policy) if !policy.audience_ok(aud) => return Some("wrong_audience"),
            Some(_) => {}
        },
    }
    if entry.bound.is_some() && entry.bound.as_ref() != cert {
        return Some("cnf_mismatch");
    }
    None
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use http::header::{HeaderMap, HeaderValue, AUTHORIZATION};
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::*;
    use crate::authn::tests::{configured, vector};
    use crate::authn::{admit_with_cert, unadmitted_with_cert, Unadmitted};
    use crate::http::Identity;

    fn route(section: Value) -> RouteAuth {
        RouteAuth::from_section(&section).expect("section")
    }

    fn jwt_route(methods: &[&str], jwt: Value) -> RouteAuth {
        route(json!({
            "public": false, "methods": methods,
            "scopes": {"by_method": {}, "default": []}, "jwt": jwt
        }))
    }

    fn own() -> RouteAuth {
        jwt_route(&["jwt"], json!({"audience": "https://issuer.example"}))
    }

    fn refusal(caches: &Caches, route: &RouteAuth, token: &str, now: f64) -> Option<&'static str> {
        jwt_refusal(caches, route, &[token.as_bytes()], None, now)
    }

    fn bearer(tokens: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for token in tokens {
            let value = HeaderValue::from_str(&format!("Bearer {token}")).expect("header");
            headers.append(AUTHORIZATION, value);
        }
        headers
    }

    #[test]
    fn every_vector_python_refuses_is_refused_with_its_reason_unless_the_kid_is_unknown() {
        let (caches, doc, now) = configured();
        let route = own();
        for v in doc["vectors"].as_array().expect("vectors") {
            let name = v["name"].as_str().expect("name");
            let token = v["token"].as_str().expect("token");
            let expected = match v["expected"].as_str().expect("expected") {
                // Valid, or Python's keys may be newer: never refused here (a token
                // naming no `kid` is: Python's verifier requires one).
                "ok" => None,
                "unknown_kid" if names_kid(token) => None,
                reason => Some(reason),
            };
            assert_eq!(refusal(&caches, &route, token, now), expected, "{name}");
        }
    }

    #[test]
    fn an_own_kid_the_pushed_keys_lack_is_a_lookup() {
        let (caches, doc, now) = configured();
        let route = own();
        let unknown = vector(&doc, "unknown kid");
        let kid = issuers::parse(&unknown)
            .and_then(|p| p.kid().map(str::to_owned))
            .expect("a kid");
        assert_eq!(
            own_kid_unknown(&caches, &route, &[unknown.as_bytes()], now),
            Some(kid)
        );
        // No kid at all: nothing to look up (Python's answer stays its own).
        let no_kid = vector(&doc, "no kid");
        assert_eq!(
            own_kid_unknown(&caches, &route, &[no_kid.as_bytes()], now),
            None
        );
        // A known kid, a route without bastion's tokens: never.
        let valid = vector(&doc, "valid ES256");
        assert_eq!(
            own_kid_unknown(&caches, &route, &[valid.as_bytes()], now),
            None
        );
        let external_only = jwt_route(
            &["jwt"],
            json!({"audience": "https://issuer.example", "self": false, "issuers": [{
                "issuer": "https://idp.example", "audiences": ["a"], "typ": null,
                "algorithms": ["ES256"], "leeway": 0.0, "required_claims": []}]}),
        );
        assert_eq!(
            own_kid_unknown(&caches, &external_only, &[unknown.as_bytes()], now),
            None
        );
    }

    #[test]
    fn a_client_of_unknown_status_is_a_lookup_and_a_disabled_one_refused() {
        let (caches, doc, now) = configured();
        let route = own();
        let token = vector(&doc, "valid ES256");
        let client = caches
            .verified(&token, now, MISS_TTL)
            .expect("valid")
            .client_id
            .expect("client");
        let tokens = [token.as_bytes()];
        // Uncached tokens are not verified natively yet: Python's, no lookup.
        assert_eq!(client_unknown(&caches, &route, &tokens, None, now), None);
        caches.set_verify_misses(true);
        assert_eq!(
            client_unknown(&caches, &route, &tokens, None, now),
            Some(client.clone())
        );
        assert_eq!(refusal(&caches, &route, &token, now), None);
        // Python found it disabled: refused (`client_disabled`), no lookup.
        caches.client_inactive(&client, now, 60.0);
        assert_eq!(client_unknown(&caches, &route, &tokens, None, now), None);
        assert_eq!(
            refusal(&caches, &route, &token, now),
            Some("client_disabled")
        );
        // Until the client changes (the change feed), or the status ends.
        caches.tokens_forget_client(&client);
        assert_eq!(caches.client_state(&client, now), None);
        caches.client_inactive(&client, now, 60.0);
        assert_eq!(caches.client_state(&client, now + 60.0), None);
        // Found active: admitted natively, nothing to look up.
        caches.client_active(&client, now, 60.0);
        assert_eq!(caches.client_state(&client, now), Some(true));
        assert_eq!(client_unknown(&caches, &route, &tokens, None, now), None);
        assert!(caches.token_verify_miss(&token, now).is_some());
        // Another route's audience is a refusal, never a lookup.
        let elsewhere = jwt_route(&["jwt"], json!({"audience": "https://other.example"}));
        caches.tokens_forget_client(&client);
        assert_eq!(
            client_unknown(&caches, &elsewhere, &tokens, None, now),
            None
        );
    }

    #[test]
    fn nothing_is_refused_before_the_configuration_but_the_shape() {
        let (_, doc, now) = configured();
        let caches = Caches::new();
        assert_eq!(
            refusal(&caches, &own(), &vector(&doc, "expired"), now),
            None
        );
        let keyless = configured().0;
        keyless.signing_keys_set(r#"{"keys": []}"#).expect("jwks");
        // Every key is unknown now; `alg: none`, `crit` need none.
        assert_eq!(
            refusal(&keyless, &own(), &vector(&doc, "expired"), now),
            None
        );
        assert_eq!(
            refusal(&keyless, &own(), &vector(&doc, "alg none"), now),
            Some("alg_not_allowed")
        );
        assert_eq!(
            refusal(&keyless, &own(), &vector(&doc, "crit header"), now),
            Some("crit_not_supported")
        );
    }

    #[test]
    fn two_tokens_or_a_non_ascii_one_are_malformed() {
        let (caches, doc, now) = configured();
        let (a, b) = (vector(&doc, "valid ES256"), vector(&doc, "valid EdDSA"));
        let both = [a.as_bytes(), b.as_bytes()];
        assert_eq!(
            jwt_refusal(&caches, &own(), &both, None, now),
            Some("malformed")
        );
        let latin = [&b"a.b\xe9.c"[..]];
        assert_eq!(
            jwt_refusal(&caches, &own(), &latin, None, now),
            Some("malformed")
        );
        let big = format!("{}.e30.e30", "e".repeat(MAX_TOKEN_SIZE));
        assert_eq!(refusal(&caches, &own(), &big, now), Some("too_large"));
    }

    #[test]
    fn the_route_s_issuers_and_audience() {
        let (caches, doc, now) = configured();
        let token = vector(&doc, "valid ES256");
        let other = jwt_route(&["jwt"], json!({"audience": "https://elsewhere"}));
        assert_eq!(
            refusal(&caches, &other, &token, now),
            Some("wrong_audience")
        );
        let external_only = jwt_route(&["jwt"], json!({"audience": "a", "self": false}));
        assert_eq!(
            refusal(&caches, &external_only, &token, now),
            Some("wrong_issuer")
        );
        // Cached (Python accepted it for another route): the same answers.
        caches.token_put(&token, now, 60.0).expect("put");
        assert_eq!(
            refusal(&caches, &other, &token, now),
            Some("wrong_audience")
        );
        assert_eq!(refusal(&caches, &own(), &token, now), None);
        assert_eq!(
            refusal(&caches, &external_only, &token, now),
            Some("wrong_issuer")
        );
    }

    #[test]
    fn a_revoked_jti_is_refused_cached_or_not() {
        let (caches, doc, now) = configured();
        let token = vector(&doc, "valid EdDSA");
        caches.token_put(&token, now, 60.0).expect("put");
        let jti = {
            let body = token.split('.').nth(1).expect("payload");
            let claims: Value =
                serde_json::from_slice(&jwt::decode(body).expect("b64")).expect("json");
            claims["jti"].as_str().expect("jti").to_owned()
        };
        caches.token_revoke(&jti, now + 3600.0, now);
        assert_eq!(refusal(&caches, &own(), &token, now), Some("revoked"));
    }

    #[test]
    fn a_certificate_bound_token_needs_its_certificate() {
        let (caches, doc, now) = configured();
        let token = vector(&doc, "valid ES256");
        caches.token_put(&token, now, 60.0).expect("put");
        // Rebind the cached entry (Python pushes what it verified: the native path
        // caches a `cnf.x5t#S256` token with the thumbprint).
        let digest = cache::token_digest(token.as_bytes());
        let entry = caches.token_get(&digest, now).expect("cached");
        let bound = CachedToken {
            bound: Some([7u8; 32]),
            ..(*entry).clone()
        };
        caches.insert_token(&token, Arc::new(bound), now);
        let tokens = [token.as_bytes()];
        let route = own();
        assert_eq!(
            jwt_refusal(&caches, &route, &tokens, None, now),
            Some("cnf_mismatch")
        );
        assert_eq!(
            jwt_refusal(&caches, &route, &tokens, Some(&[8u8; 32]), now),
            Some("cnf_mismatch")
        );
        assert_eq!(
            jwt_refusal(&caches, &route, &tokens, Some(&[7u8; 32]), now),
            None
        );
    }

    #[test]
    fn bindings_no_certificate_satisfies_are_python_s_check_binding() {
        assert_eq!(binding_refusal(None), None);
        assert_eq!(binding_refusal(Some(&Value::Null)), None);
        assert_eq!(binding_refusal(Some(&json!({}))), None);
        assert_eq!(binding_refusal(Some(&json!({"x5t#S256": null}))), None);
        assert_eq!(binding_refusal(Some(&json!("x"))), Some("malformed"));
        assert_eq!(
            binding_refusal(Some(&json!({"jkt": "abc"}))),
            Some("cnf_unsupported")
        );
        assert_eq!(
            binding_refusal(Some(&json!({"x5t#S256": "abc", "jkt": "x"}))),
            Some("cnf_unsupported")
        );
        assert_eq!(
            binding_refusal(Some(&json!({"x5t#S256": 1}))),
            Some("malformed")
        );
        assert_eq!(
            binding_refusal(Some(&json!({"x5t#S256": "not-a-thumbprint"}))),
            Some("cnf_mismatch")
        );
    }

    #[test]
    fn external_issuers_are_judged_only_with_fresh_keys() {
        let (caches, doc, now) = configured();
        let route = jwt_route(
            &["jwt"],
            json!({"audience": "https://issuer.example", "issuers": [{
                "issuer": "https://idp.example", "audiences": ["https://issuer.example"],
                "typ": "at+jwt", "algorithms": ["ES256", "RS256", "PS256", "EdDSA"],
                "leeway": 30.0, "required_claims": ["exp", "sub"]}]}),
        );
        // Tokens naming bastion's issuer still go to bastion's verifier.
        assert_eq!(
            refusal(&caches, &route, &vector(&doc, "expired"), now),
            Some("expired")
        );
        assert_eq!(
            refusal(&caches, &route, &vector(&doc, "valid EdDSA"), now),
            None
        );
        // peek's own refusals; other unreadable tokens are the issuer's to judge.
        assert_eq!(refusal(&caches, &route, "a.b", now), Some("malformed"));
        assert_eq!(refusal(&caches, &route, "a=.b.c", now), None);
        // `wrong iss` names neither issuer: bastion's verifier refuses it.
        assert_eq!(
            refusal(&caches, &route, &vector(&doc, "wrong iss"), now),
            Some("wrong_issuer")
        );
    }

    #[test]
    fn unadmitted_classifies_in_python_s_method_order() {
        let (caches, doc, now) = configured();
        let bad = vector(&doc, "tampered payload");
        let unknown = vector(&doc, "unknown kid");
        let classify = |route: &RouteAuth, query: Option<&str>, headers: &HeaderMap| {
            unadmitted_with_cert(&caches, route, query, headers, None, now)
        };
        let both = jwt_route(
            &["api_key", "jwt"],
            json!({"audience": "https://issuer.example"}),
        );
        assert_eq!(
            classify(&both, None, &HeaderMap::new()),
            Unadmitted::Unauthenticated
        );
        assert_eq!(
            classify(&both, None, &bearer(&[&bad])),
            Unadmitted::InvalidToken("bad_signature")
        );
        // A kid the pushed keys lack: Python's may be newer (a lookup).
        assert!(matches!(
            classify(&both, None, &bearer(&[&unknown])),
            Unadmitted::SigningKeyMiss(_)
        ));
        // The screen comes before every method, whatever the request carries.
        let key_query = Some("a=1&k=bst_live_mn331tcZdoxuNggtbmf2rsB2WBerjUTK1GQlaB");
        assert_eq!(
            classify(&both, key_query, &bearer(&[&bad])),
            Unadmitted::KeyInQuery
        );
        // A key-shaped query on a route without api_key is nobody's business.
        assert_eq!(
            classify(&own(), key_query, &HeaderMap::new()),
            Unadmitted::Unauthenticated
        );
        // A key on a jwt-only route, another scheme, an empty bearer: no credential.
        for value in [
            "Bearer bst_x.y",
            "Basic dXNlcjpwYXNz",
            "Bearer ",
            "Bearer opaque",
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(AUTHORIZATION, HeaderValue::from_str(value).expect("h"));
            assert_eq!(
                classify(&own(), None, &headers),
                Unadmitted::Unauthenticated,
                "{value}"
            );
        }
        // jwt first: a bad token is refused even with a key behind it.
        let jwt_first = jwt_route(
            &["jwt", "api_key"],
            json!({"audience": "https://issuer.example"}),
        );
        let mut headers = bearer(&[&bad]);
        headers.append(
            AUTHORIZATION,
            HeaderValue::from_static("Bearer bst_live_mn331tcZdoxuNggtbmf2rsB2WBerjUTK1GQlaB"),
        );
        assert_eq!(
            classify(&jwt_first, None, &headers),
            Unadmitted::InvalidToken("bad_signature")
        );
        // A public route never gets here; a refusal is never a request admit allows.
        let valid = bearer(&[&vector(&doc, "valid ES256")]);
        caches
            .token_put(&vector(&doc, "valid ES256"), now, 60.0)
            .expect("put");
        let uri: http::Uri = "/x".parse().expect("uri");
        let admitted = admit_with_cert(
            &caches,
            &own(),
            "r",
            &http::Method::GET,
            &uri,
            &valid,
            None,
            None,
            now,
        );
        assert!(admitted.is_some());
        assert_eq!(classify(&own(), None, &valid), Unadmitted::Again);
        let _ = Identity::default();
    }

    proptest! {
        /// Never a native refusal of a token the native verifier accepts, and
        /// never one of a forgery naming a kid it could not place (unknown kid).
        #[test]
        fn refusals_agree_with_the_verifier(at in 0usize..400, to in "[A-Za-z0-9_.=-]") {
            let (caches, doc, now) = configured();
            let token = vector(&doc, "valid ES256");
            let at = at % token.len();
            let mut bytes = token.into_bytes();
            bytes[at] = to.as_bytes()[0];
            let forged = String::from_utf8(bytes).expect("ascii");
            let route = own();
            let verdict = caches.verified(&forged, now, MISS_TTL);
            let refused = refusal(&caches, &route, &forged, now);
            match verdict {
                Ok(_) => prop_assert_eq!(refused, None),
                // A kid the keys lack may be Python's newer key; none at all is refused.
                Err(TokenPutError::Invalid(JwtError::UnknownKid)) => {
                    let expected = (!names_kid(&forged)).then_some("unknown_kid");
                    prop_assert_eq!(refused, expected)
                }
                Err(TokenPutError::Invalid(error)) => prop_assert_eq!(refused, Some(error.reason())),
                Err(_) => {}
            }
        }
    }
}
