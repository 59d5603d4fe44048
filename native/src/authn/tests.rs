//! The native `authenticate` step against the Python specification: JWT
//! vectors whose expected outcome is what bastion's Python verifier said
//! (`tests/vectors/make_jwt_vectors.py`), and the API key / token cache flows.

use http::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use serde_json::{json, Value};

use super::api_key::ApiKeyRecord;
use super::cache::{Caches, TokenPutError};
use super::jwt::{self, JwtError, KeySet, Policy};
use super::*;
use crate::authz;

const VECTORS: &str = include_str!("../../../tests/vectors/jwt_access_tokens.json");

/// The JWT vectors (shared with the `issuers` and `refusal` tests).
pub(super) fn vectors() -> Value {
    serde_json::from_str(VECTORS).expect("vector file")
}

fn policy(doc: &Value) -> Policy {
    Policy {
        issuer: doc["issuer"].as_str().expect("issuer").to_owned(),
        leeway: doc["leeway"].as_f64().expect("leeway"),
        max_lifetime: doc["max_lifetime"].as_f64(),
    }
}

/// The token of the vector `name`.
pub(super) fn vector(doc: &Value, name: &str) -> String {
    doc["vectors"]
        .as_array()
        .expect("vectors")
        .iter()
        .find(|v| v["name"] == name)
        .and_then(|v| v["token"].as_str())
        .unwrap_or_else(|| panic!("no vector {name}"))
        .to_owned()
}

/// Caches following the vectors' issuer and keys, with the vectors and their `now`.
pub(super) fn configured() -> (Caches, Value, f64) {
    let doc = vectors();
    let caches = Caches::new();
    caches.configure(policy(&doc), None);
    let taken = caches
        .signing_keys_set(&doc["jwks"].to_string())
        .expect("jwks");
    assert_eq!(taken, 4);
    caches.set_following(true);
    let now = doc["now"].as_f64().expect("now");
    (caches, doc, now)
}

#[test]
fn every_vector_agrees_with_the_python_verifier() {
    let doc = vectors();
    let (keys, skipped) = KeySet::from_jwks(&doc["jwks"].to_string()).expect("jwks");
    assert!(skipped.is_empty(), "{skipped:?}");
    let policy = policy(&doc);
    let now = doc["now"].as_f64().expect("now");
    let list = doc["vectors"].as_array().expect("vectors");
    assert!(list.len() >= 40);
    for vector in list {
        let name = vector["name"].as_str().expect("name");
        let expected = vector["expected"].as_str().expect("expected");
        let got = match jwt::verify(
            vector["token"].as_str().expect("token"),
            &keys,
            &policy,
            now,
        ) {
            Ok(_) => "ok",
            Err(error) => error.reason(),
        };
        assert_eq!(got, expected, "vector {name:?}");
    }
}

#[test]
fn valid_vectors_exist_for_every_algorithm() {
    let doc = vectors();
    for name in ["valid ES256", "valid RS256", "valid PS256", "valid EdDSA"] {
        let found = doc["vectors"]
            .as_array()
            .expect("vectors")
            .iter()
            .any(|v| v["name"] == name && v["expected"] == "ok");
        assert!(found, "{name}");
    }
}

fn route(section: Value) -> RouteAuth {
    RouteAuth::from_section(&section).expect("section")
}

fn jwt_route() -> RouteAuth {
    route(json!({
        "public": false, "methods": ["jwt"],
        "scopes": {"by_method": {}, "default": []},
        "jwt": {"audience": "https://issuer.example"}
    }))
}

fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
    );
    headers
}

fn allowed(verdict: Verdict) -> Identity {
    match verdict {
        Verdict::Allow(identity) => identity,
        Verdict::Defer => panic!("deferred"),
    }
}

fn deferred(verdict: Verdict) -> bool {
    matches!(verdict, Verdict::Defer)
}

#[test]
fn a_pushed_token_is_served_natively() {
    let (caches, doc, now) = configured();
    let token = vector(&doc, "valid EdDSA");
    let route = jwt_route();
    assert!(deferred(authenticate(
        &caches,
        &route,
        &bearer(&token),
        now
    )));
    caches.token_put(&token, now, 60.0).expect("put");
    let identity = allowed(authenticate(&caches, &route, &bearer(&token), now));
    assert_eq!(identity.method, "jwt");
    assert_eq!(identity.subject.as_deref(), Some("user-1"));
    assert_eq!(identity.client_id.as_deref(), Some("client-1"));
    assert_eq!(identity.scopes, vec!["orders:read", "orders:write"]);
    assert_eq!(identity.key_id, None);
    // the scheme is case-insensitive, surrounding spaces are ignored
    let mut headers = HeaderMap::new();
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("bEaReR  {token} ")).expect("h"),
    );
    assert!(!deferred(authenticate(&caches, &route, &headers, now)));
    // until min(exp, now + ttl)
    assert!(deferred(authenticate(
        &caches,
        &route,
        &bearer(&token),
        now + 60.0
    )));
}

#[test]
fn refused_tokens_are_never_cached() {
    let (caches, doc, now) = configured();
    for (name, reason) in [
        ("alg none", "alg_not_allowed"),
        ("tampered payload", "bad_signature"),
        ("ES256 high-S twin", "non_canonical_signature"),
        ("expired", "expired"),
        ("wrong typ", "wrong_typ"),
        ("wrong iss", "wrong_issuer"),
        ("unknown kid", "unknown_kid"),
    ] {
        let token = vector(&doc, name);
        let error = caches.token_put(&token, now, 60.0).expect_err(name);
        assert_eq!(error.reason(), reason, "{name}");
        assert!(!caches.token_cached(&token));
        assert!(deferred(authenticate(
            &caches,
            &jwt_route(),
            &bearer(&token),
            now
        )));
    }
    // valid within the leeway, but its cache life (until exp) is over
    let late = vector(&doc, "expired within leeway");
    assert_eq!(
        caches.token_put(&late, now, 60.0),
        Err(TokenPutError::NotNative("ended"))
    );
}

#[test]
fn the_route_audience_is_checked_on_every_hit() {
    let (caches, doc, now) = configured();
    let token = vector(&doc, "valid ES256");
    caches.token_put(&token, now, 60.0).expect("put");
    let other = route(json!({
        "public": false, "methods": ["jwt"], "jwt": {"audience": "https://orders.example"}
    }));
    assert!(deferred(authenticate(
        &caches,
        &other,
        &bearer(&token),
        now
    )));
    let list = vector(&doc, "aud list");
    caches.token_put(&list, now, 60.0).expect("put");
    assert!(!deferred(authenticate(
        &caches,
        &jwt_route(),
        &bearer(&list),
        now
    )));
}

#[test]
fn revocation_client_and_key_changes_drop_tokens_at_once() {
    let (caches, doc, now) = configured();
    let token = vector(&doc, "valid RS256");
    let route = jwt_route();
    caches.token_put(&token, now, 60.0).expect("put");
    caches.token_revoke("jti-1", now + 600.0, now);
    assert!(deferred(authenticate(
        &caches,
        &route,
        &bearer(&token),
        now
    )));
    // a revoked jti is not cached again while the deny-list holds it
    assert_eq!(
        caches.token_put(&token, now, 60.0),
        Err(TokenPutError::NotNative("revoked"))
    );

    let (caches, doc, now) = configured();
    let token = vector(&doc, "valid PS256");
    caches.token_put(&token, now, 60.0).expect("put");
    caches.tokens_forget_client("other");
    assert!(!deferred(authenticate(
        &caches,
        &route,
        &bearer(&token),
        now
    )));
    caches.tokens_forget_client("client-1");
    assert!(deferred(authenticate(
        &caches,
        &route,
        &bearer(&token),
        now
    )));

    caches.token_put(&token, now, 60.0).expect("put");
    caches
        .signing_keys_set(&doc["jwks"].to_string())
        .expect("jwks");
    assert!(deferred(authenticate(
        &caches,
        &route,
        &bearer(&token),
        now
    )));

    caches.token_put(&token, now, 60.0).expect("put");
    caches.set_following(false);
    assert!(deferred(authenticate(
        &caches,
        &route,
        &bearer(&token),
        now
    )));
    assert_eq!(caches.tokens_len(), 0);
}

#[test]
fn tokens_need_configuration_and_keys() {
    let doc = vectors();
    let caches = Caches::new();
    let token = vector(&doc, "valid ES256");
    assert_eq!(
        caches.token_put(&token, 0.0, 60.0),
        Err(TokenPutError::NotConfigured)
    );
    caches.configure(policy(&doc), None);
    assert_eq!(
        caches.token_put(&token, doc["now"].as_f64().expect("now"), 60.0),
        Err(TokenPutError::Invalid(JwtError::UnknownKid))
    );
}

#[test]
fn two_tokens_or_a_key_on_a_jwt_route_defer() {
    let (caches, doc, now) = configured();
    let a = vector(&doc, "valid ES256");
    let b = vector(&doc, "valid EdDSA");
    caches.token_put(&a, now, 60.0).expect("put");
    caches.token_put(&b, now, 60.0).expect("put");
    let mut headers = bearer(&a);
    headers.append(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {b}")).expect("h"),
    );
    assert!(deferred(authenticate(&caches, &jwt_route(), &headers, now)));
    assert!(deferred(authenticate(
        &caches,
        &jwt_route(),
        &bearer("bst_x.y"),
        now
    )));
    assert!(deferred(authenticate(
        &caches,
        &jwt_route(),
        &HeaderMap::new(),
        now
    )));
}

#[test]
fn claims_and_roles_rules() {
    let (caches, doc, now) = configured();
    let token = vector(&doc, "valid ES256");
    caches.token_put(&token, now, 60.0).expect("put");
    let with = |claims: Value, roles: Value| {
        route(json!({
            "public": false, "methods": ["jwt"], "jwt": {"audience": "https://issuer.example"},
            "claims": claims, "roles": roles, "roles_claim": "realm.roles"
        }))
    };
    let ok = with(json!({"client_id": "client-1"}), json!([]));
    assert!(!deferred(authenticate(&caches, &ok, &bearer(&token), now)));
    let wrong = with(json!({"client_id": "client-2"}), json!([]));
    assert!(deferred(authenticate(
        &caches,
        &wrong,
        &bearer(&token),
        now
    )));
    let roles = with(json!({}), json!(["admin"]));
    assert!(deferred(authenticate(
        &caches,
        &roles,
        &bearer(&token),
        now
    )));
}

#[test]
fn claims_hold_like_python() {
    let rules = route(json!({
        "public": false, "methods": ["jwt"], "jwt": {"audience": "a"},
        "claims": [["tier", "gold"], ["n", 1], ["flag", true], ["groups", ["a", "b"]]],
        "roles": ["r1", "r2"], "roles_claim": "realm.roles"
    }));
    let claims = |v: Value| v.as_object().expect("object").clone();
    let good = claims(json!({
        "tier": ["silver", "gold"], "n": 1, "flag": true, "groups": ["b", "c", "a"],
        "realm": {"roles": "r2 r1"}
    }));
    assert!(authz::claims_hold(&rules, &good));
    for bad in [
        json!({"tier": "gold", "n": 1.0, "flag": true, "groups": ["a", "b"], "realm": {"roles": ["r1", "r2"]}}),
        json!({"tier": "gold", "n": 1, "flag": 1, "groups": ["a", "b"], "realm": {"roles": ["r1", "r2"]}}),
        json!({"tier": "gold", "n": 1, "flag": true, "groups": "a", "realm": {"roles": ["r1", "r2"]}}),
        json!({"tier": "gold", "n": 1, "flag": true, "groups": ["a", "b"], "realm": {"roles": ["r1"]}}),
        json!({"tier": "gold", "n": 1, "flag": true, "groups": ["a", "b"], "roles": ["r1", "r2"]}),
    ] {
        assert!(!authz::claims_hold(&rules, &claims(bad.clone())), "{bad}");
    }
}

// -- API keys -----------------------------------------------------------------

const KEY: &str = "bst_live_mn331tcZdoxuNggtbmf2rsB2WBerjUTK1GQlaB";

fn key_record(extra: Value) -> ApiKeyRecord {
    let mut base = json!({
        "id": "key-1", "subject": "client:c1",
        "scopes": ["orders:read"], "routes": [], "expires_at": null, "grace_until": null,
        "revoked": false, "disabled": false, "ip_allow": [], "key_limits": []
    });
    if let (Some(base), Some(extra)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            base.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(base).expect("record")
}

fn key_route() -> RouteAuth {
    route(json!({
        "public": false, "methods": ["api_key", "jwt"], "api_key_header": "X-API-Key",
        "scopes": {"by_method": {"GET": ["orders:read"], "POST": ["orders:write"]}, "default": null},
        "jwt": {"audience": "https://issuer.example"}
    }))
}

fn with_key(caches: &Caches, extra: Value, now: f64) {
    caches.api_key_put(
        caches.api_key_digest(KEY.as_bytes()),
        key_record(extra),
        now,
        30.0,
    );
}

#[test]
fn a_pushed_key_is_served_natively_from_either_header() {
    let caches = Caches::new();
    let route = key_route();
    assert!(deferred(authenticate(&caches, &route, &bearer(KEY), 100.0)));
    with_key(&caches, json!({}), 100.0);
    let identity = allowed(authenticate(&caches, &route, &bearer(KEY), 100.0));
    assert_eq!(identity.method, "api_key");
    assert_eq!(identity.subject.as_deref(), Some("client:c1"));
    assert_eq!(identity.key_id.as_deref(), Some("key-1"));
    assert_eq!(identity.scopes, vec!["orders:read"]);
    assert_eq!(
        credential_headers(&route, &identity, &bearer(KEY)),
        vec![AUTHORIZATION]
    );
    let mut headers = HeaderMap::new();
    headers.insert("x-api-key", HeaderValue::from_static(KEY));
    let identity = allowed(authenticate(&caches, &route, &headers, 100.0));
    assert_eq!(
        credential_headers(&route, &identity, &headers),
        vec![HeaderName::from_static("x-api-key")]
    );
    // the same key twice is one key
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {KEY}")).expect("h"),
    );
    assert!(!deferred(authenticate(&caches, &route, &headers, 100.0)));
    // the positive TTL ends
    assert!(deferred(authenticate(&caches, &route, &bearer(KEY), 130.0)));
}

#[test]
fn keys_python_would_refuse_defer() {
    let route = key_route();
    for (extra, at) in [
        (json!({"revoked": true}), 100.0),
        (json!({"disabled": true}), 100.0),
        (json!({"expires_at": 100.0}), 100.0),
        (json!({"grace_until": 99.0}), 100.0),
        (json!({"ip_allow": ["10.0.0.0/8"]}), 100.0),
    ] {
        let caches = Caches::new();
        with_key(&caches, extra.clone(), 100.0);
        assert!(
            deferred(authenticate(&caches, &route, &bearer(KEY), at)),
            "{extra}"
        );
    }
    let caches = Caches::new();
    with_key(&caches, json!({}), 100.0);
    // two different keys
    let mut headers = bearer(KEY);
    headers.insert("x-api-key", HeaderValue::from_static("bst_other"));
    assert!(deferred(authenticate(&caches, &route, &headers, 100.0)));
    // a key in the query string (raw or %-encoded)
    let q = format!("key={KEY}");
    assert!(deferred(authenticate_request(
        &caches,
        &route,
        Some(&q),
        &bearer(KEY),
        None,
        100.0
    )));
    assert!(!deferred(authenticate_request(
        &caches,
        &route,
        Some("page=2"),
        &bearer(KEY),
        None,
        100.0
    )));
    // dropped by id, or all
    caches.api_key_drop("key-2");
    assert!(!deferred(authenticate(
        &caches,
        &route,
        &bearer(KEY),
        100.0
    )));
    caches.api_key_drop("key-1");
    assert!(deferred(authenticate(&caches, &route, &bearer(KEY), 100.0)));
    with_key(&caches, json!({}), 100.0);
    caches.api_keys_clear();
    assert!(deferred(authenticate(&caches, &route, &bearer(KEY), 100.0)));
}

#[test]
fn the_pepper_changes_the_digest() {
    let doc = vectors();
    let caches = Caches::new();
    with_key(&caches, json!({}), 100.0);
    caches.configure(policy(&doc), Some(b"pepper"));
    assert_eq!(caches.api_keys_len(), 0);
    with_key(&caches, json!({}), 100.0);
    assert!(!deferred(authenticate(
        &caches,
        &key_route(),
        &bearer(KEY),
        100.0
    )));
    let plain = Caches::new();
    assert_ne!(
        caches.api_key_digest(KEY.as_bytes()),
        plain.api_key_digest(KEY.as_bytes())
    );
}

#[test]
fn the_extra_header_counts_only_for_api_key_routes_and_method_order_holds() {
    let caches = Caches::new();
    with_key(&caches, json!({}), 100.0);
    let jwt_first = route(json!({
        "public": false, "methods": ["jwt", "api_key"], "api_key_header": "x-api-key",
        "jwt": {"audience": "a"}
    }));
    // a JWT is presented too: jwt is tried first and is responsible (not cached: defer)
    let mut headers = bearer("a.b.c");
    headers.insert("x-api-key", HeaderValue::from_static(KEY));
    assert!(deferred(authenticate(&caches, &jwt_first, &headers, 100.0)));
    // without it, api_key vouches
    let mut headers = HeaderMap::new();
    headers.insert("x-api-key", HeaderValue::from_static(KEY));
    assert!(!deferred(authenticate(
        &caches, &jwt_first, &headers, 100.0
    )));
    // a jwt-only route ignores keys altogether
    assert!(deferred(authenticate(
        &caches,
        &jwt_route(),
        &bearer(KEY),
        100.0
    )));
}

#[test]
fn public_routes_are_anonymous() {
    let caches = Caches::new();
    let public = route(json!({"public": true}));
    let identity = allowed(authenticate(&caches, &public, &HeaderMap::new(), 0.0));
    assert_eq!(identity.method, "public");
    assert_eq!(identity.subject, None);
    assert!(authz::authorize(
        &public,
        &identity,
        &http::Method::DELETE,
        "x"
    ));
}

#[test]
fn authorize_scopes_and_route_lists() {
    let route = key_route();
    let caches = Caches::new();
    with_key(&caches, json!({"routes": ["orders"]}), 100.0);
    let identity = allowed(authenticate(&caches, &route, &bearer(KEY), 100.0));
    assert!(authz::authorize(
        &route,
        &identity,
        &http::Method::GET,
        "orders"
    ));
    assert!(authz::authorize(
        &route,
        &identity,
        &http::Method::HEAD,
        "orders"
    ));
    assert!(!authz::authorize(
        &route,
        &identity,
        &http::Method::GET,
        "billing"
    ));
    assert!(!authz::authorize(
        &route,
        &identity,
        &http::Method::POST,
        "orders"
    ));
    // not covered by the mapping: denied
    assert!(!authz::authorize(
        &route,
        &identity,
        &http::Method::DELETE,
        "orders"
    ));
    let star = RouteAuth::from_section(&json!({
        "public": false, "methods": ["api_key"],
        "scopes": {"by_method": {"POST": ["orders:write"]}, "default": ["orders:read"]}
    }))
    .expect("section");
    assert!(authz::authorize(
        &star,
        &identity,
        &http::Method::DELETE,
        "orders"
    ));
    assert!(!authz::authorize(
        &star,
        &identity,
        &http::Method::POST,
        "orders"
    ));
}

#[test]
fn sections_are_validated() {
    for bad in [
        json!({"public": true, "methods": ["api_key"]}),
        json!({"public": false, "methods": []}),
        json!({"public": false, "methods": ["cookie"]}),
        json!({"public": false, "methods": ["session", "session"]}),
        json!({"public": false, "methods": ["jwt"]}),
        json!({"public": false, "methods": ["api_key", "api_key"]}),
        json!({"public": false, "methods": ["api_key"], "api_key_header": "bad header"}),
        json!({"public": false, "methods": ["api_key"], "surprise": 1}),
        json!({"public": false, "methods": ["api_key"], "scopes": {"by_method": {"get": []}}}),
    ] {
        assert!(RouteAuth::from_section(&bad).is_err(), "{bad}");
    }
}

#[test]
fn a_jwks_with_a_shared_kid_is_refused() {
    let doc = vectors();
    let mut jwks = doc["jwks"].clone();
    let first = jwks["keys"][0].clone();
    jwks["keys"].as_array_mut().expect("keys").push(first);
    assert!(KeySet::from_jwks(&jwks.to_string()).is_err());
}

#[test]
fn native_uses_are_drained_for_python_even_after_a_drop() {
    let caches = Caches::new();
    let route = key_route();
    with_key(&caches, json!({}), 100.0);
    assert!(caches.api_keys_used().is_empty());
    assert!(!deferred(authenticate(
        &caches,
        &route,
        &bearer(KEY),
        101.0
    )));
    assert!(!deferred(authenticate(
        &caches,
        &route,
        &bearer(KEY),
        102.5
    )));
    assert_eq!(caches.api_keys_used(), vec![("key-1".to_string(), 102.5)]);
    assert!(caches.api_keys_used().is_empty());
    assert!(!deferred(authenticate(
        &caches,
        &route,
        &bearer(KEY),
        103.0
    )));
    caches.api_key_drop("key-1");
    assert_eq!(caches.api_keys_used(), vec![("key-1".to_string(), 103.0)]);
    // a refused key is not a use
    with_key(&caches, json!({"disabled": true}), 100.0);
    assert!(deferred(authenticate(&caches, &route, &bearer(KEY), 104.0)));
    assert!(caches.api_keys_used().is_empty());
}

/// Per-request costs of the native step, printed (not asserted): run with
/// `cargo test --release authn_costs -- --ignored --nocapture`.
#[test]
#[ignore]
fn authn_costs() {
    use std::time::Instant;
    let (caches, doc, now) = configured();
    let keys = KeySet::from_jwks(&doc["jwks"].to_string()).expect("jwks").0;
    let policy = policy(&doc);
    let rounds = 20_000u32;
    let time = |label: &str, rounds: u32, f: &mut dyn FnMut()| {
        let start = Instant::now();
        for _ in 0..rounds {
            f();
        }
        let each = start.elapsed() / rounds;
        println!("{label:<40} {:>8.2} µs", each.as_nanos() as f64 / 1000.0);
    };
    with_key(&caches, json!({}), now);
    let route = key_route();
    let headers = bearer(KEY);
    time("api key hit (authenticate+authorize)", rounds, &mut || {
        let Verdict::Allow(identity) = authenticate(&caches, &route, &headers, now) else {
            panic!("deferred")
        };
        assert!(authz::authorize(
            &route,
            &identity,
            &http::Method::GET,
            "orders"
        ));
    });
    let token = vector(&doc, "valid ES256");
    caches.token_put(&token, now, 60.0).expect("put");
    let jwt = jwt_route();
    let headers = bearer(&token);
    time(
        "cached jwt hit (authenticate+authorize)",
        rounds,
        &mut || {
            let Verdict::Allow(identity) = authenticate(&caches, &jwt, &headers, now) else {
                panic!("deferred")
            };
            assert!(authz::authorize(
                &jwt,
                &identity,
                &http::Method::GET,
                "orders"
            ));
        },
    );
    for name in ["valid ES256", "valid RS256", "valid PS256", "valid EdDSA"] {
        let token = vector(&doc, name);
        time(&format!("full verify {name}"), 2_000, &mut || {
            assert!(jwt::verify(&token, &keys, &policy, now).is_ok());
        });
    }
}

#[test]
fn admit_combines_the_steps() {
    let caches = Caches::new();
    with_key(&caches, json!({}), 100.0);
    let route = key_route();
    let get = http::Method::GET;
    let uri: http::Uri = "/orders/1?page=2".parse().expect("uri");
    let admitted = admit(
        &caches,
        &route,
        "orders",
        &get,
        &uri,
        &bearer(KEY),
        None,
        100.0,
    )
    .expect("admit");
    assert_eq!(admitted.identity.key_id.as_deref(), Some("key-1"));
    assert_eq!(admitted.credential_headers, vec![AUTHORIZATION]);
    let post = http::Method::POST;
    assert!(admit(
        &caches,
        &route,
        "orders",
        &post,
        &uri,
        &bearer(KEY),
        None,
        100.0
    )
    .is_none());
    let leaky: http::Uri = format!("/orders?api_key={KEY}").parse().expect("uri");
    assert!(admit(
        &caches,
        &route,
        "orders",
        &get,
        &leaky,
        &bearer(KEY),
        None,
        100.0
    )
    .is_none());
    assert!(unix_now() > 1.7e9);
}

mod fuzz {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn verify_never_panics_and_refuses_garbage(token in "[A-Za-z0-9_.=-]{0,300}") {
            let doc = vectors();
            let keys = KeySet::from_jwks(&doc["jwks"].to_string()).expect("jwks").0;
            prop_assert!(jwt::verify(&token, &keys, &policy(&doc), 0.0).is_err());
        }

        #[test]
        fn strict_json_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = json::object(&data);
        }

        #[test]
        fn tampering_any_byte_of_a_valid_token_is_refused(at in 0usize..400, to in "[A-Za-z0-9_-]") {
            let doc = vectors();
            let keys = KeySet::from_jwks(&doc["jwks"].to_string()).expect("jwks").0;
            let token = vector(&doc, "valid EdDSA");
            let at = at % token.len();
            let mut bytes = token.clone().into_bytes();
            prop_assume!(bytes[at] != b'.' && bytes[at] != to.as_bytes()[0]);
            bytes[at] = to.as_bytes()[0];
            let forged = String::from_utf8(bytes).expect("ascii");
            let now = doc["now"].as_f64().expect("now");
            prop_assert!(jwt::verify(&forged, &keys, &policy(&doc), now).is_err());
        }

        #[test]
        fn any_headers_never_panic(
            values in proptest::collection::vec("[ -~]{0,80}", 0..4),
            key_header in "[ -~]{0,60}",
        ) {
            let caches = Caches::new();
            let route = key_route();
            let mut headers = HeaderMap::new();
            for value in &values {
                if let Ok(value) = HeaderValue::from_str(value) {
                    headers.append(AUTHORIZATION, value);
                }
            }
            if let Ok(value) = HeaderValue::from_str(&key_header) {
                headers.insert("x-api-key", value);
            }
            prop_assert!(matches!(authenticate(&caches, &route, &headers, 0.0), Verdict::Defer));
        }
    }
}

#[test]
fn misses_are_verified_natively_only_when_allowed_and_the_client_is_known_active() {
    let (caches, doc, now) = configured();
    let route = jwt_route();
    let token = vector(&doc, "valid ES256");
    let decides =
        |token: &str, at: f64| !deferred(authenticate(&caches, &route, &bearer(token), at));
    // off by default
    caches.client_active("client-1", now, 60.0);
    assert!(!decides(&token, now));
    caches.set_verify_misses(true);
    assert!(decides(&token, now));
    assert!(caches.token_cached(&token));
    // a client change drops its status and tokens: back to Python
    caches.tokens_forget_client("client-1");
    assert!(!decides(&token, now));
    // Python checked the client and says so
    caches.client_active("client-1", now, 60.0);
    assert!(decides(&token, now));
    // the client status expires
    caches.tokens_clear();
    caches.client_active("client-1", now, 10.0);
    assert!(!decides(&token, now + 10.0));
    // not following: never
    let other = vector(&doc, "valid EdDSA");
    caches.set_following(false);
    caches.client_active("client-1", now, 60.0);
    assert!(!decides(&other, now));
    caches.set_following(true);
    caches.client_active("client-1", now, 60.0);
    assert!(decides(&other, now));
    // forged tokens, and a revoked jti (every vector shares it): never
    caches.tokens_clear();
    caches.client_active("client-1", now, 60.0);
    for name in [
        "tampered payload",
        "alg none",
        "ES256 high-S twin",
        "expired",
        "wrong typ",
    ] {
        assert!(!decides(&vector(&doc, name), now), "{name}");
    }
    caches.token_revoke("jti-1", now + 600.0, now);
    assert!(!decides(&token, now));
}

#[test]
fn a_key_with_an_ip_allow_list_is_served_for_its_addresses_only() {
    let caches = Caches::new();
    with_key(&caches, json!({"ip_allow": ["203.0.113.0/24"]}), 100.0);
    let route = key_route();
    let ip = |s: &str| Some(s.parse::<std::net::IpAddr>().expect("ip"));
    let verdict = |client| authenticate_request(&caches, &route, None, &bearer(KEY), client, 100.0);
    assert!(!deferred(verdict(ip("203.0.113.7"))));
    assert!(!deferred(verdict(ip("::ffff:203.0.113.7"))));
    assert!(deferred(verdict(ip("198.51.100.1"))));
    assert!(deferred(verdict(None)));
}

#[test]
fn key_limits_are_served_only_once_the_native_limiter_takes_them() {
    let caches = Caches::new();
    let limit = json!({"rate": 5, "period": 1.0, "burst": 10, "name": "5/second"});
    with_key(&caches, json!({"key_limits": [limit]}), 100.0);
    let route = key_route();
    let get = http::Method::GET;
    let uri: http::Uri = "/orders".parse().expect("uri");
    let admit_now = || {
        admit(
            &caches,
            &route,
            "orders",
            &get,
            &uri,
            &bearer(KEY),
            None,
            100.0,
        )
    };
    let admitted = admit_now().expect("admit");
    assert_eq!(
        admitted.key_limits.as_ref(),
        &[KeyLimit {
            rate: 5,
            period: 1.0,
            burst: 10,
            name: "5/second".into()
        }]
    );
}

// -- refused keys and misses ----------------------------------------------------

fn digest_of_key(caches: &Caches) -> [u8; 32] {
    caches.api_key_digest(KEY.as_bytes())
}

#[test]
fn an_uncached_key_is_a_miss_of_its_digest() {
    let caches = Caches::new();
    let keyed = key_route();
    assert_eq!(
        unadmitted(&caches, &keyed, None, &bearer(KEY), 100.0),
        Unadmitted::Miss(digest_of_key(&caches))
    );
    // Python's own answers, whatever the cache: a key in the query (400, rendered
    // natively), two keys, a JWT first in the route's order, no credential (401,
    // rendered natively), a public route.
    assert_eq!(
        unadmitted(
            &caches,
            &keyed,
            Some("k=bst_0123456789abcdefghij"),
            &bearer(KEY),
            100.0
        ),
        Unadmitted::KeyInQuery
    );
    // Two different keys, an overlong or a non-ASCII one: Python's 401 `malformed`
    // before any lookup, rendered natively.
    let mut two = bearer(KEY);
    two.insert("x-api-key", HeaderValue::from_static("bst_other"));
    assert_eq!(
        unadmitted(&caches, &keyed, None, &two, 100.0),
        Unadmitted::Refused
    );
    let overlong = format!("{KEY}{}", "a".repeat(api_key::MAX_API_KEY_LENGTH));
    assert_eq!(
        unadmitted(&caches, &keyed, None, &bearer(&overlong), 100.0),
        Unadmitted::Refused
    );
    let mut non_ascii = HeaderMap::new();
    let value = HeaderValue::from_bytes("Bearer bst_caf\u{e9}".as_bytes()).expect("opaque bytes");
    non_ascii.insert(AUTHORIZATION, value);
    assert_eq!(
        unadmitted(&caches, &keyed, None, &non_ascii, 100.0),
        Unadmitted::Refused
    );
    assert_eq!(
        unadmitted(&caches, &keyed, None, &HeaderMap::new(), 100.0),
        Unadmitted::Unauthenticated
    );
    let jwt_first = route_with_methods(&["jwt", "api_key"]);
    let mut both = bearer("a.b.c");
    both.insert("x-api-key", HeaderValue::from_static(KEY));
    // (No token is trusted while Python follows no invalidation channel: a 503.)
    assert_eq!(
        unadmitted(&caches, &jwt_first, None, &both, 100.0),
        Unadmitted::TokensUnfollowed
    );
    // A public route admits anyone: classified only when the table changed meanwhile.
    let public = route(json!({"public": true}));
    assert_eq!(
        unadmitted(&caches, &public, None, &bearer(KEY), 100.0),
        Unadmitted::Again
    );
}

fn route_with_methods(methods: &[&str]) -> RouteAuth {
    route(json!({
        "public": false, "methods": methods, "api_key_header": "X-API-Key",
        "scopes": {"by_method": {}, "default": []},
        "jwt": {"audience": "https://issuer.example"}
    }))
}

#[test]
fn a_key_that_is_not_well_formed_is_refused_without_a_lookup() {
    let caches = Caches::new();
    let keyed = key_route();
    // Wrong checksum, unknown shape: refused, never a miss (no digest asked of Python).
    for key in [
        "bst_live_mn331tcZdoxuNggtbmf2rsB2WBerjUTK1GQlaC",
        "bst_nope",
    ] {
        assert_eq!(
            unadmitted(&caches, &keyed, None, &bearer(key), 100.0),
            Unadmitted::Refused,
            "{key}"
        );
    }
    // A well-formed unknown key is still Python's to look up.
    assert!(matches!(
        unadmitted(&caches, &keyed, None, &bearer(KEY), 100.0),
        Unadmitted::Miss(_)
    ));
}

#[test]
fn a_refused_digest_is_refused_until_its_ttl_or_any_key_change() {
    let caches = Caches::new();
    let keyed = key_route();
    let digest = digest_of_key(&caches);
    caches.api_key_refuse(digest, 100.0, 5.0);
    assert!(deferred(authenticate(&caches, &keyed, &bearer(KEY), 101.0)));
    assert_eq!(
        unadmitted(&caches, &keyed, None, &bearer(KEY), 104.9),
        Unadmitted::Refused
    );
    // From the route's own header too.
    let mut headers = HeaderMap::new();
    headers.insert("x-api-key", HeaderValue::from_static(KEY));
    assert_eq!(
        unadmitted(&caches, &keyed, None, &headers, 101.0),
        Unadmitted::Refused
    );
    assert_eq!(
        unadmitted(&caches, &keyed, None, &bearer(KEY), 105.0),
        Unadmitted::Miss(digest)
    );
    // Any api-keys change (any key id) drops every refusal.
    caches.api_key_refuse(digest, 100.0, 5.0);
    caches.api_key_drop("some-other-key");
    assert_eq!(
        unadmitted(&caches, &keyed, None, &bearer(KEY), 101.0),
        Unadmitted::Miss(digest)
    );
    caches.api_key_refuse(digest, 100.0, 5.0);
    caches.api_keys_clear();
    assert_eq!(caches.api_keys_refused_len(), 0);
    // A record pushed for the digest replaces its refusal.
    caches.api_key_refuse(digest, 100.0, 5.0);
    with_key(&caches, json!({}), 100.0);
    assert!(!caches.api_key_refused(&digest, 101.0));
    assert!(allowed(authenticate(&caches, &keyed, &bearer(KEY), 101.0))
        .key_id
        .is_some());
}

#[test]
fn a_cached_key_python_refuses_is_refused_in_python_s_order() {
    let keyed = key_route();
    for (extra, at) in [
        (json!({"revoked": true}), 101.0),
        (json!({"disabled": true}), 101.0),
        (json!({"expires_at": 101.0}), 101.0),
        (json!({"grace_until": 100.5}), 101.0),
        // Refused before the IP allow-list (Python's 403) is looked at.
        (json!({"revoked": true, "ip_allow": ["10.0.0.0/8"]}), 101.0),
    ] {
        let caches = Caches::new();
        with_key(&caches, extra.clone(), 100.0);
        assert_eq!(
            unadmitted(&caches, &keyed, None, &bearer(KEY), at),
            Unadmitted::Refused,
            "{extra}"
        );
        // Past Python's positive TTL the record is not trusted: a miss again.
        assert_eq!(
            unadmitted(&caches, &keyed, None, &bearer(KEY), 130.0),
            Unadmitted::Miss(digest_of_key(&caches)),
            "{extra}"
        );
    }
    // Usable, but not from this address: Python's 403 `api_key_ip_not_allowed`
    // (rendered natively; unknown without the client's address).
    let caches = Caches::new();
    with_key(&caches, json!({"ip_allow": ["10.0.0.0/8"]}), 100.0);
    // No address: Python's `_ip_allowed(…, None)` refuses it too.
    assert_eq!(
        unadmitted(&caches, &keyed, None, &bearer(KEY), 101.0),
        Unadmitted::KeyIpNotAllowed
    );
    let from = |ip: &str| {
        let ip: IpAddr = ip.parse().expect("ip");
        unadmitted_from(&caches, &keyed, None, &bearer(KEY), Some(ip), None, 101.0)
    };
    assert_eq!(from("192.0.2.1"), Unadmitted::KeyIpNotAllowed);
    assert_eq!(from("::ffff:192.0.2.1"), Unadmitted::KeyIpNotAllowed);
    // From an allowed address the key is admitted (classified only when its entry
    // was replaced meanwhile: decide again).
    assert_eq!(from("10.1.2.3"), Unadmitted::Again);
    let caches = Caches::new();
    with_key(&caches, json!({"expires_at": 200.0}), 100.0);
    assert_eq!(
        unadmitted(&caches, &keyed, None, &bearer(KEY), 101.0),
        Unadmitted::Again
    );
    // A stored allow-list that does not parse admits no address: Python's 403.
    let caches = Caches::new();
    with_key(&caches, json!({"ip_allow": ["10.0.0.0/33"]}), 100.0);
    let ip: IpAddr = "10.1.2.3".parse().expect("ip");
    assert_eq!(
        unadmitted_from(&caches, &keyed, None, &bearer(KEY), Some(ip), None, 101.0),
        Unadmitted::KeyIpNotAllowed
    );
}

#[tokio::test]
async fn concurrent_misses_wait_for_the_first_one_s_push() {
    use super::miss::Miss;
    use std::time::Duration;
    let caches = std::sync::Arc::new(Caches::new());
    let digest = digest_of_key(&caches);
    let Miss::Lead(lead) = caches.api_key_miss(digest) else {
        panic!("the first miss leads");
    };
    let Miss::Wait(waiter) = caches.api_key_miss(digest) else {
        panic!("the second waits");
    };
    let pusher = caches.clone();
    let push = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        pusher.api_key_refuse(digest, 100.0, 5.0);
    });
    let started = std::time::Instant::now();
    waiter.wait(Duration::from_secs(10)).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    push.await.expect("joined");
    assert!(caches.api_key_refused(&digest, 101.0));
    drop(lead);
    // Settled: the next miss (after the refusal ends) leads its own lookup.
    assert!(matches!(caches.api_key_miss(digest), Miss::Lead(_)));
}

// -- introspection ------------------------------------------------------------

fn introspection_route(methods: Value, extra: Value) -> RouteAuth {
    let mut section = json!({
        "public": false, "methods": methods,
        "scopes": {"by_method": {"GET": ["orders:read"]}, "default": null},
        "jwt": {"audience": "https://issuer.example"}
    });
    if let (Some(section), Some(extra)) = (section.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            section.insert(k.clone(), v.clone());
        }
    }
    route(section)
}

fn introspected(token: &str, claims: Value, until: f64) {
    let record = json!({
        "subject": claims.get("sub").or(claims.get("client_id")).cloned().unwrap_or_default(),
        "scopes": claims["scope"].as_str().unwrap_or("").split(' ').filter(|s| !s.is_empty()).collect::<Vec<_>>(),
        "claims": claims,
    });
    let answer = introspection::Answer::from_push(&record.to_string()).expect("answer");
    introspection::cache().put(cache::token_digest(token.as_bytes()), answer, until, 0.0);
}

fn admit_get(
    caches: &Caches,
    route: &RouteAuth,
    headers: &HeaderMap,
    now: f64,
) -> Option<Admitted> {
    let uri: http::Uri = "/orders".parse().expect("uri");
    admit(
        caches,
        route,
        "orders",
        &http::Method::GET,
        &uri,
        headers,
        None,
        now,
    )
}

#[test]
fn introspection_answers_are_served_natively_in_method_order() {
    introspection::cache().clear();
    let caches = Caches::new();
    let now = 1_000.0;
    let claims = json!({"sub": "alice", "client_id": "app", "scope": "orders:read"});
    introspected("opaque-1", claims.clone(), now + 60.0);
    introspected("dotted.token.x", claims, now + 60.0);

    // jwt first: an opaque token is introspection's, a dotted one jwt's.
    let jwt_first = introspection_route(json!(["jwt", "introspection"]), json!({}));
    let admitted = admit_get(&caches, &jwt_first, &bearer("opaque-1"), now).expect("admitted");
    assert_eq!(admitted.identity.method, "introspection");
    assert_eq!(admitted.identity.subject.as_deref(), Some("alice"));
    assert_eq!(admitted.identity.client_id.as_deref(), Some("app"));
    assert_eq!(admitted.identity.scopes, vec!["orders:read".to_owned()]);
    assert_eq!(admitted.credential_headers, vec![AUTHORIZATION]);
    assert!(admit_get(&caches, &jwt_first, &bearer("dotted.token.x"), now).is_none());
    assert_eq!(
        unadmitted(&caches, &jwt_first, None, &bearer("dotted.token.x"), now),
        Unadmitted::TokensUnfollowed,
        "jwt is responsible for a dotted token"
    );

    // introspection first: it takes dotted tokens too.
    let intro_first = introspection_route(json!(["introspection", "jwt"]), json!({}));
    let admitted = admit_get(&caches, &intro_first, &bearer("dotted.token.x"), now);
    assert_eq!(admitted.expect("admitted").identity.method, "introspection");

    // Until is honoured; past it, a miss.
    assert!(admit_get(&caches, &jwt_first, &bearer("opaque-1"), now + 60.0).is_none());
    assert_eq!(
        unadmitted(&caches, &jwt_first, None, &bearer("opaque-1"), now + 60.0),
        Unadmitted::TokenMiss(cache::token_digest(b"opaque-1"))
    );
}

#[test]
fn introspection_inactive_misses_and_python_refusals() {
    introspection::cache().clear();
    let caches = Caches::new();
    let now = 1_000.0;
    let route = introspection_route(json!(["api_key", "introspection"]), json!({}));
    introspection::cache().put(
        cache::token_digest(b"dead"),
        introspection::Answer::Inactive,
        now + 5.0,
        now,
    );
    assert!(admit_get(&caches, &route, &bearer("dead"), now).is_none());
    assert_eq!(
        unadmitted(&caches, &route, None, &bearer("dead"), now),
        Unadmitted::InactiveToken
    );
    assert_eq!(
        unadmitted(&caches, &route, None, &bearer("dead"), now + 5.0),
        Unadmitted::TokenMiss(cache::token_digest(b"dead")),
        "the negative answer ends"
    );
    assert_eq!(
        unadmitted(&caches, &route, None, &bearer("never-seen"), now),
        Unadmitted::TokenMiss(cache::token_digest(b"never-seen"))
    );
    // Two different tokens, an overlong or a non-ASCII one: Python's own 401
    // `invalid_token`, before any lookup (rendered natively).
    let mut two = bearer("dead");
    two.append(AUTHORIZATION, HeaderValue::from_static("Bearer other"));
    assert_eq!(
        unadmitted(&caches, &route, None, &two, now),
        Unadmitted::InvalidToken("malformed")
    );
    let long = "a".repeat(introspection::MAX_TOKEN_BYTES + 1);
    assert_eq!(
        unadmitted(&caches, &route, None, &bearer(&long), now),
        Unadmitted::InvalidToken("too_large")
    );
    let mut non_ascii = HeaderMap::new();
    let value = HeaderValue::from_bytes("Bearer caf\u{e9}".as_bytes()).expect("opaque bytes");
    non_ascii.insert(AUTHORIZATION, value);
    assert_eq!(
        unadmitted(&caches, &route, None, &non_ascii, now),
        Unadmitted::InvalidToken("malformed")
    );
    // An API key is never introspection's: api_key is responsible (a made-up key).
    assert_eq!(
        unadmitted(&caches, &route, None, &bearer("bst_nope"), now),
        Unadmitted::Refused
    );
    // A route without the method never reads introspection answers: no method
    // reads an opaque token there, Python's 401 unauthenticated.
    let jwt_only = jwt_route();
    assert_eq!(
        unadmitted(&caches, &jwt_only, None, &bearer("dead"), now),
        Unadmitted::Unauthenticated
    );
}

#[test]
fn introspection_answers_meet_scopes_claims_and_binding() {
    introspection::cache().clear();
    let caches = Caches::new();
    let now = 1_000.0;
    introspected(
        "no-scope",
        json!({"sub": "bob", "scope": "other"}),
        now + 60.0,
    );
    introspected(
        "bound",
        json!({"sub": "carol", "scope": "orders:read", "cnf": {"x5t#S256": "abc"}}),
        now + 60.0,
    );
    introspected(
        "admin",
        json!({"sub": "dave", "scope": "orders:read", "roles": ["admin"]}),
        now + 60.0,
    );
    let plain = introspection_route(json!(["introspection"]), json!({}));
    // Scopes refuse: `authorize`'s 403 (the admission is Forbidden; classified
    // after it, only a cache change could explain it: decide again).
    assert!(admit_get(&caches, &plain, &bearer("no-scope"), now).is_none());
    assert_eq!(
        unadmitted(&caches, &plain, None, &bearer("no-scope"), now),
        Unadmitted::Again
    );
    // A certificate-bound answer: Python's check_binding — refused without its
    // certificate (401 cnf_mismatch), admitted over a connection presenting it.
    assert!(admit_get(&caches, &plain, &bearer("bound"), now).is_none());
    assert_eq!(
        unadmitted(&caches, &plain, None, &bearer("bound"), now),
        Unadmitted::InvalidToken("cnf_mismatch")
    );
    let cert: mtls::Thumbprint = [3; 32];
    let x5t = {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(cert)
    };
    introspected(
        "bound-here",
        json!({"sub": "carol", "scope": "orders:read", "cnf": {"x5t#S256": x5t}}),
        now + 60.0,
    );
    let uri: http::Uri = "/x".parse().expect("uri");
    let admitted = |token: &str, cert: Option<&mtls::Thumbprint>| {
        crate::authn::admit_with_cert(
            &caches,
            &plain,
            "r",
            &http::Method::GET,
            &uri,
            &bearer(token),
            None,
            cert,
            now,
        )
        .map(|a| a.identity.subject)
    };
    assert_eq!(
        admitted("bound-here", Some(&cert)),
        Some(Some("carol".into()))
    );
    assert_eq!(admitted("bound-here", Some(&[4; 32])), None);
    assert_eq!(
        unadmitted_with_cert(
            &caches,
            &plain,
            None,
            &bearer("bound-here"),
            Some(&[4; 32]),
            now
        ),
        Unadmitted::InvalidToken("cnf_mismatch")
    );
    // DPoP-bound (RFC 9449 `cnf.jkt`): never a bearer token here (401 cnf_unsupported).
    introspected(
        "dpop",
        json!({"sub": "carol", "scope": "orders:read", "cnf": {"jkt": "abc"}}),
        now + 60.0,
    );
    assert_eq!(admitted("dpop", Some(&cert)), None);
    assert_eq!(
        unadmitted_with_cert(&caches, &plain, None, &bearer("dpop"), Some(&cert), now),
        Unadmitted::InvalidToken("cnf_unsupported")
    );
    // Roles read the answer's claims.
    let admins = introspection_route(json!(["introspection"]), json!({"roles": ["admin"]}));
    assert!(admit_get(&caches, &admins, &bearer("admin"), now).is_some());
    introspected(
        "user",
        json!({"sub": "erin", "scope": "orders:read"}),
        now + 60.0,
    );
    assert!(admit_get(&caches, &admins, &bearer("user"), now).is_none());
}

/// Tokens exchanged from an API key (RFC 8693): looked up, then cached as the key's.
mod exchanged {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    use super::*;
    use crate::authn::refusal;

    const NOW: f64 = 1_800_000_000.0;
    const ISSUER: &str = "https://issuer.example";

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn setup() -> (Caches, Ed25519KeyPair, RouteAuth) {
        let key = Ed25519KeyPair::from_seed_unchecked(&[9u8; 32]).expect("a key");
        let caches = Caches::new();
        let policy = Policy {
            issuer: ISSUER.into(),
            leeway: 30.0,
            max_lifetime: Some(3600.0),
        };
        caches.configure(policy, None);
        let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "t",
            "alg": "EdDSA", "x": b64(key.public_key().as_ref())}]});
        caches.signing_keys_set(&jwks.to_string()).expect("jwks");
        caches.set_following(true);
        let route = RouteAuth::from_section(&json!({
            "public": false, "methods": ["jwt"], "scopes": {"by_method": {}, "default": []},
            "jwt": {"audience": ISSUER}}))
        .expect("a section");
        (caches, key, route)
    }

    fn token(key: &Ed25519KeyPair, client: &str) -> String {
        let claims = json!({"iss": ISSUER, "sub": "apikey:k1", "aud": ISSUER,
            "client_id": client, "scope": "orders:read", "jti": client,
            "iat": NOW - 10.0, "exp": NOW + 600.0});
        let head = b64(br#"{"alg":"EdDSA","kid":"t","typ":"at+jwt"}"#);
        let input = format!("{head}.{}", b64(claims.to_string().as_bytes()));
        format!("{input}.{}", b64(key.sign(input.as_bytes()).as_ref()))
    }

    #[test]
    fn an_exchanged_token_is_a_lookup_then_the_key_s() {
        let (caches, key, route) = setup();
        let exchanged = token(&key, "apikey:k1");
        let tokens = [exchanged.as_bytes()];
        assert!(refusal::exchanged(&caches, &route, &tokens, NOW));
        assert_eq!(
            refusal::jwt_refusal(&caches, &route, &tokens, None, NOW),
            None
        );
        // An ordinary client's token is not one.
        let plain = token(&key, "client-1");
        assert!(!refusal::exchanged(
            &caches,
            &route,
            &[plain.as_bytes()],
            NOW
        ));
        // Python accepted it as key k1: cached with the key's id, routes and limits.
        let record = r#"{"key_id": "k1", "routes": ["orders"],
            "key_limits": [{"rate": 5, "period": 60.0, "burst": 5, "name": "5/minute"}]}"#;
        caches
            .token_put_exchanged(&exchanged, record, NOW, 60.0)
            .expect("cached");
        assert!(!refusal::exchanged(&caches, &route, &tokens, NOW));
        let entry = caches
            .token_get(&cache::token_digest(exchanged.as_bytes()), NOW)
            .expect("cached");
        assert_eq!(entry.identity.key_id.as_deref(), Some("k1"));
        assert_eq!(entry.identity.routes, Some(vec!["orders".to_owned()]));
        assert_eq!(entry.key_limits.len(), 1);
        // The key's change drops it (the api-keys channel: `apikey:<id>`).
        caches.tokens_forget_client("apikey:k1");
        assert!(refusal::exchanged(&caches, &route, &tokens, NOW));
        // Another key's record, or a plain token, is never cached as a key's.
        let other = r#"{"key_id": "k2", "routes": null, "key_limits": []}"#;
        assert!(caches
            .token_put_exchanged(&exchanged, other, NOW, 60.0)
            .is_err());
        assert!(caches
            .token_put_exchanged(&plain, record, NOW, 60.0)
            .is_err());
    }
}

/// Cases the native core once deferred to Python, now decided with Python's answer.
mod once_deferred {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    use super::*;
    use crate::authn::refusal;

    const NOW: f64 = 1_800_000_000.0;
    const ISSUER: &str = "https://issuer.example";

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn setup() -> (Caches, Ed25519KeyPair, RouteAuth) {
        let key = Ed25519KeyPair::from_seed_unchecked(&[7u8; 32]).expect("a key");
        let caches = Caches::new();
        let policy = Policy {
            issuer: ISSUER.into(),
            leeway: 30.0,
            max_lifetime: Some(3600.0),
        };
        caches.configure(policy, None);
        let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "t",
            "alg": "EdDSA", "x": b64(key.public_key().as_ref())}]});
        caches.signing_keys_set(&jwks.to_string()).expect("jwks");
        caches.set_following(true);
        caches.set_verify_misses(true);
        let route = RouteAuth::from_section(&json!({
            "public": false, "methods": ["jwt"], "scopes": {"by_method": {}, "default": []},
            "jwt": {"audience": ISSUER}}))
        .expect("a section");
        (caches, key, route)
    }

    fn claims() -> Value {
        json!({"iss": ISSUER, "sub": "user-1", "aud": ISSUER, "client_id": "client-1",
            "scope": "orders:read", "jti": "j1", "iat": NOW - 100.0, "exp": NOW + 600.0})
    }

    fn signed(key: &Ed25519KeyPair, header: &str, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        format!("{input}.{}", b64(key.sign(input.as_bytes()).as_ref()))
    }

    fn token(key: &Ed25519KeyPair, claims: &Value) -> String {
        signed(key, r#"{"alg":"EdDSA","kid":"t","typ":"at+jwt"}"#, claims)
    }

    fn classify(caches: &Caches, route: &RouteAuth, token: &str) -> Unadmitted {
        unadmitted(caches, route, None, &bearer(token), NOW)
    }

    #[test]
    fn an_own_token_naming_no_kid_is_refused_as_python_s_unknown_kid() {
        let (caches, key, route) = setup();
        for header in [
            r#"{"alg":"EdDSA","typ":"at+jwt"}"#,
            r#"{"alg":"EdDSA","kid":null,"typ":"at+jwt"}"#,
        ] {
            let token = signed(&key, header, &claims());
            // One key pushed: Python's own verifier still requires the kid.
            assert_eq!(
                classify(&caches, &route, &token),
                Unadmitted::InvalidToken("unknown_kid"),
                "{header}"
            );
            assert!(deferred(authenticate(
                &caches,
                &route,
                &bearer(&token),
                NOW
            )));
        }
        // A kid the pushed keys lack stays a lookup (Python's may be newer).
        let unknown = signed(
            &key,
            r#"{"alg":"EdDSA","kid":"u","typ":"at+jwt"}"#,
            &claims(),
        );
        assert_eq!(
            classify(&caches, &route, &unknown),
            Unadmitted::SigningKeyMiss("u".into())
        );
    }

    #[test]
    fn a_token_valid_within_the_leeway_only_is_served_and_never_cached() {
        let (caches, key, route) = setup();
        let mut late = claims();
        late["exp"] = json!(NOW - 10.0);
        let token = token(&key, &late);
        // The client's status first: a lookup, as for any uncached token.
        assert_eq!(
            classify(&caches, &route, &token),
            Unadmitted::ClientMiss("client-1".into())
        );
        caches.client_active("client-1", NOW, 60.0);
        let identity = allowed(authenticate(&caches, &route, &bearer(&token), NOW));
        assert_eq!(identity.subject.as_deref(), Some("user-1"));
        assert!(!caches.token_cached(&token));
        // Past the leeway: Python's `expired`.
        let at = NOW + 25.0;
        assert!(deferred(authenticate(&caches, &route, &bearer(&token), at)));
        assert_eq!(
            unadmitted(&caches, &route, None, &bearer(&token), at),
            Unadmitted::InvalidToken("expired")
        );
        // A disabled client: Python's `client_disabled`.
        caches.client_inactive("client-1", NOW, 60.0);
        assert_eq!(
            classify(&caches, &route, &token),
            Unadmitted::InvalidToken("client_disabled")
        );
        // Python pushes such a token and the cache refuses it (it has ended).
        assert_eq!(
            caches.token_put(&token, NOW, 60.0),
            Err(TokenPutError::NotNative("ended"))
        );
    }

    #[test]
    fn claims_of_a_shape_python_refuses_are_refused() {
        let (caches, key, route) = setup();
        caches.client_active("client-1", NOW, 60.0);
        for (name, value, reason) in [
            ("client_id", json!(7), "client_disabled"),
            ("client_id", Value::Null, "client_disabled"),
            ("client_id", json!(["client-1"]), "client_disabled"),
            ("sub", json!(""), "invalid_claim"),
            ("sub", json!(1), "invalid_claim"),
            ("scope", json!(["orders:read"]), "invalid_claim"),
        ] {
            let mut odd = claims();
            odd[name] = value.clone();
            let token = token(&key, &odd);
            assert!(deferred(authenticate(
                &caches,
                &route,
                &bearer(&token),
                NOW
            )));
            assert_eq!(
                refusal::jwt_refusal(&caches, &route, &[token.as_bytes()], None, NOW),
                Some(reason),
                "{name}: {value}"
            );
            assert_eq!(
                classify(&caches, &route, &token),
                Unadmitted::InvalidToken(reason),
                "{name}: {value}"
            );
        }
    }

    #[test]
    fn key_claims_rules_read_the_key_s_id_and_prefix() {
        let caches = Caches::new();
        let mut record = key_record(json!({}));
        record.prefix = "bst_live_mn331tcZ".into();
        caches.api_key_put(caches.api_key_digest(KEY.as_bytes()), record, 100.0, 30.0);
        let keyed = |rules: Value| {
            let mut section = json!({
                "public": false, "methods": ["api_key"],
                "scopes": {"by_method": {}, "default": []}
            });
            for (k, v) in rules.as_object().expect("rules") {
                section[k] = v.clone();
            }
            route(section)
        };
        let uri: http::Uri = "/orders".parse().expect("uri");
        let decide = |route: &RouteAuth| {
            admission_with_cert(
                &caches,
                route,
                "orders",
                &http::Method::GET,
                &uri,
                &bearer(KEY),
                None,
                None,
                101.0,
            )
        };
        let admitted = |route: &RouteAuth| matches!(decide(route), Admission::Admitted(_));
        assert!(admitted(&keyed(json!({"claims": [["key_id", "key-1"]]}))));
        assert!(admitted(&keyed(
            json!({"claims": [["key_prefix", "bst_live_mn331tcZ"]]})
        )));
        match decide(&keyed(json!({"claims": [["key_id", "key-2"]]}))) {
            Admission::Forbidden { refusal, .. } => {
                assert_eq!(refusal, authz::Refusal::ClaimMismatch("key_id".into()));
            }
            other => panic!("{other:?}"),
        }
        // `roles_claim: key_id`: the id split on whitespace is the one role held.
        assert!(admitted(&keyed(
            json!({"roles": ["key-1"], "roles_claim": "key_id"})
        )));
        assert!(matches!(
            decide(&keyed(json!({"roles": ["admin"], "roles_claim": "key_id"}))),
            Admission::Forbidden { .. }
        ));
        // Any other claim: a key identity carries none.
        assert!(matches!(
            decide(&keyed(json!({"claims": [["tenant", "a"]]}))),
            Admission::Forbidden { .. }
        ));
    }
}
