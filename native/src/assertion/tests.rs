use ring::rand::SystemRandom;
use ring::signature::{
    self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use serde_json::{json, Value};

use super::*;

/// A 2048-bit RSA key (`openssl genpkey -algorithm RSA`, PKCS#8 DER), for tests only.
const RSA_PKCS8: &[u8] = include_bytes!("rsa2048.pk8.der");

fn config() -> AssertionConfig {
    AssertionConfig::from_section(&json!({
        "header": "X-Bastion-Assertion",
        "issuer": "https://auth.example",
        "audience": "http://orders.internal:9000",
        "ttl": 20,
    }))
    .expect("config")
}

fn identity() -> Identity {
    Identity {
        method: "api_key",
        subject: Some("client:c1".into()),
        client_id: Some("c1".into()),
        scopes: vec!["orders:write".into(), "orders:read".into()],
        key_id: Some("k1".into()),
        routes: None,
        person: None,
    }
}

fn segments(token: &str) -> (Value, Value, Vec<u8>, String) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let decode = |s: &str| URL_SAFE_NO_PAD.decode(s).expect("base64url");
    let header = serde_json::from_slice(&decode(parts[0])).expect("header");
    let claims = serde_json::from_slice(&decode(parts[1])).expect("claims");
    (
        header,
        claims,
        decode(parts[2]),
        format!("{}.{}", parts[0], parts[1]),
    )
}

#[test]
fn es256_assertion_has_pythons_header_and_claims_and_verifies() {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let key = SigningKey::new("kid-1", "ES256", pkcs8.as_ref()).expect("loads");
    let token = key
        .assertion(
            &config(),
            &identity(),
            "orders",
            Some("rid-1"),
            1_700_000_000.9,
        )
        .expect("signed");
    let (header, claims, sig, input) = segments(&token);
    // Members in Python's order (orjson keeps insertion order): compare the raw JSON.
    let raw_header = URL_SAFE_NO_PAD
        .decode(token.split('.').next().unwrap())
        .unwrap();
    assert_eq!(
        std::str::from_utf8(&raw_header).unwrap(),
        r#"{"alg":"ES256","kid":"kid-1","typ":"bastion-assertion+jwt"}"#
    );
    assert_eq!(header["typ"], "bastion-assertion+jwt");
    let jti = claims["jti"].as_str().expect("jti").to_owned();
    assert_eq!(jti.len(), 32);
    assert!(jti
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert_eq!(&jti[12..13], "4", "a UUID4");
    let raw_claims = URL_SAFE_NO_PAD
        .decode(token.split('.').nth(1).unwrap())
        .unwrap();
    assert_eq!(
        std::str::from_utf8(&raw_claims).unwrap(),
        format!(
            "{{\"iss\":\"https://auth.example\",\"aud\":\"http://orders.internal:9000\",\
             \"sub\":\"client:c1\",\"iat\":1700000000,\"exp\":1700000020,\"jti\":\"{jti}\",\
             \"route\":\"orders\",\"auth_method\":\"api_key\",\
             \"scope\":\"orders:read orders:write\",\"client_id\":\"c1\",\"key_id\":\"k1\",\
             \"request_id\":\"rid-1\"}}"
        )
    );
    assert_eq!(sig.len(), 64);
    assert!(sig[32..] <= P256_HALF_N[..], "low S");
    signature::UnparsedPublicKey::new(
        &signature::ECDSA_P256_SHA256_FIXED,
        pair.public_key().as_ref(),
    )
    .verify(input.as_bytes(), &sig)
    .expect("verifies");
}

#[test]
fn optional_claims_are_left_out_and_jti_is_unique() {
    let rng = SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("key");
    let key = SigningKey::new("ed", "EdDSA", pkcs8.as_ref()).expect("loads");
    let who = Identity {
        method: "jwt",
        subject: Some("u1".into()),
        client_id: Some(String::new()),
        ..Identity::default()
    };
    let one = key.assertion(&config(), &who, "r", None, 5.0).unwrap();
    let two = key.assertion(&config(), &who, "r", Some(""), 5.0).unwrap();
    let (_, a, _, _) = segments(&one);
    let (_, b, _, _) = segments(&two);
    assert_ne!(a["jti"], b["jti"]);
    let raw = URL_SAFE_NO_PAD
        .decode(one.split('.').nth(1).unwrap())
        .unwrap();
    let raw = String::from_utf8(raw).unwrap();
    assert!(
        raw.ends_with(",\"route\":\"r\",\"auth_method\":\"jwt\",\"scope\":\"\"}"),
        "{raw}"
    );
    assert_eq!(a.as_object().unwrap().len(), 9, "{raw}");
    assert_eq!(a["scope"], "");
    // An anonymous identity gets no assertion.
    assert!(key
        .assertion(&config(), &Identity::default(), "r", None, 5.0)
        .is_none());
}

#[test]
fn eddsa_and_rsa_signatures_verify() {
    let rng = SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("key");
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let key = SigningKey::new("ed", "EdDSA", pkcs8.as_ref()).unwrap();
    let (h, _, sig, input) = segments(
        &key.assertion(&config(), &identity(), "r", None, 1.0)
            .unwrap(),
    );
    assert_eq!(h["alg"], "EdDSA");
    signature::UnparsedPublicKey::new(&signature::ED25519, pair.public_key().as_ref())
        .verify(input.as_bytes(), &sig)
        .expect("EdDSA verifies");

    let rsa = RsaKeyPair::from_pkcs8(RSA_PKCS8).unwrap();
    let public = rsa.public_key().as_ref().to_vec();
    for (alg, verify) in [
        ("RS256", &signature::RSA_PKCS1_2048_8192_SHA256),
        ("PS256", &signature::RSA_PSS_2048_8192_SHA256),
    ] {
        let key = SigningKey::new("rsa", alg, RSA_PKCS8).unwrap();
        let (h, _, sig, input) = segments(
            &key.assertion(&config(), &identity(), "r", None, 1.0)
                .unwrap(),
        );
        assert_eq!(h["alg"], alg);
        assert_eq!(sig.len(), 256);
        signature::UnparsedPublicKey::new(verify, &public)
            .verify(input.as_bytes(), &sig)
            .unwrap_or_else(|_| panic!("{alg} verifies"));
    }
}

#[test]
fn a_bad_key_is_refused_without_showing_it_and_drops_the_current_one() {
    let rng = SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("key");
    set_current("good", "EdDSA", pkcs8.as_ref()).expect("loads");
    assert_eq!(current().expect("held").kid(), "good");
    assert_eq!(
        format!("{:?}", current().unwrap()),
        "SigningKey(kid=\"good\", alg=\"EdDSA\")"
    );
    let err = set_current("bad", "ES256", pkcs8.as_ref()).expect_err("an Ed25519 key is no P-256");
    assert!(err.starts_with("signing key \"bad\" (ES256): "), "{err}");
    assert!(current().is_none());
    assert!(SigningKey::new("x", "HS256", pkcs8.as_ref())
        .expect_err("no HMAC")
        .contains("not supported"));
    set_current("good", "EdDSA", pkcs8.as_ref()).unwrap();
    clear_current();
    assert!(current().is_none());
}

#[test]
fn signer_for_defers_only_when_a_key_is_needed() {
    let cfg = config();
    assert!(signer_for(None, &identity())
        .expect("no assertion")
        .is_none());
    assert!(signer_for(Some(&cfg), &Identity::default())
        .expect("anonymous")
        .is_none());
}

#[test]
fn low_s_folds_the_upper_half() {
    let mut s = P256_N;
    s[31] -= 1; // n - 1 -> 1
    low_s(&mut s);
    let mut one = [0u8; 32];
    one[31] = 1;
    assert_eq!(s, one);
    let mut half = P256_HALF_N;
    low_s(&mut half);
    assert_eq!(half, P256_HALF_N, "n/2 stays");
}

#[test]
fn config_refuses_bad_values() {
    let bad = |v: Value| AssertionConfig::from_section(&v).expect_err("refused");
    assert!(
        bad(json!({"header": "a b", "issuer": "i", "audience": "a", "ttl": 5}))
            .starts_with("assertion.header")
    );
    assert!(
        bad(json!({"header": "x-a", "issuer": "i", "audience": "a", "ttl": 61}))
            .starts_with("assertion.ttl")
    );
    assert!(
        bad(json!({"header": "x-a", "issuer": "i", "audience": "a", "ttl": 5, "x": 1}))
            .starts_with("assertion:")
    );
}
