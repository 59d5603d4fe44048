//! Strict verification of bastion's own JWT access tokens (RFC 7515 compact
//! JWS, RFC 7519, RFC 8725 best practices, RFC 9068 profile), the native twin
//! of `bastion.crypto.jwt.JWTVerifier` + `bastion.oauth.tokens.AccessTokenVerifier`.
//!
//! Cheap checks refuse before any signature work: size, three strict
//! base64url parts (five = JWE, refused), a header object without duplicate
//! members, `alg` never `none`, no `jku`/`x5u`/`jwk`/`x5c`/`b64`/`enc`/`crit`,
//! `kid` naming a pushed key and `alg` EQUAL to that key's one algorithm (the
//! key fixes the algorithm, never the token). Then the signature (`ring`:
//! ES256 raw `r || s` with canonical low S, RS256/PS256 exactly modulus-sized,
//! EdDSA/Ed25519), then the claims: `exp`/`nbf`/`iat` with leeway, maximum
//! lifetime, `iss`, `typ` `at+jwt`, and the claims every access token carries.
//! `aud` is checked per route by the caller ([`audience_matches`]).

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::{Map, Value};

use super::json;

/// The one `typ` bastion's access tokens carry (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
/// The longest token looked at (as `JWTVerifier(max_size=8192)`).
pub const MAX_TOKEN_SIZE: usize = 8192;
const MAX_KID_LENGTH: usize = 256;
const MIN_RSA_BITS: usize = 2048;
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];
const FORBIDDEN_HEADERS: [&str; 5] = ["jku", "x5u", "jwk", "x5c", "b64"];
const REQUIRED_CLAIMS: [&str; 5] = ["exp", "iat", "jti", "client_id", "sub"];
/// floor(n / 2) of the P-256 group order: an S above it is the high-S twin.
const P256_HALF_N: [u8; 32] = [
    0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xde, 0x73, 0x7d, 0x56, 0xd3, 0x8b, 0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8,
];

/// Why a token was refused (the audit reason of `InvalidTokenError`). The
/// native path never renders it: any refusal defers to Python.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtError {
    Malformed,
    TooLarge,
    JweNotAccepted,
    AlgNotAllowed,
    UnknownKid,
    ForbiddenHeader,
    CritNotSupported,
    BadSignature,
    NonCanonicalSignature,
    Expired,
    NotYetValid,
    IssuedInFuture,
    LifetimeTooLong,
    WrongIssuer,
    WrongTyp,
    MissingClaim,
    InvalidClaim,
}

impl JwtError {
    /// The reason code, as Python's `InvalidTokenError.reason` spells it.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::TooLarge => "too_large",
            Self::JweNotAccepted => "jwe_not_accepted",
            Self::AlgNotAllowed => "alg_not_allowed",
            Self::UnknownKid => "unknown_kid",
            Self::ForbiddenHeader => "forbidden_header",
            Self::CritNotSupported => "crit_not_supported",
            Self::BadSignature => "bad_signature",
            Self::NonCanonicalSignature => "non_canonical_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::IssuedInFuture => "issued_in_future",
            Self::LifetimeTooLong => "lifetime_too_long",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongTyp => "wrong_typ",
            Self::MissingClaim => "missing_claim",
            Self::InvalidClaim => "invalid_claim",
        }
    }
}

/// A signature algorithm; each key has exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Es256,
    Rs256,
    Ps256,
    EdDsa,
}

impl Alg {
    pub fn name(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
            Self::Ps256 => "PS256",
            Self::EdDsa => "EdDSA",
        }
    }
}

#[derive(Debug, Clone)]
enum Material {
    /// The uncompressed SEC1 point `04 || x || y`.
    P256(Vec<u8>),
    /// Modulus and exponent, big-endian without leading zeros.
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    Ed25519(Vec<u8>),
}

/// One trusted verification key: its kid, its one algorithm, its material.
#[derive(Debug, Clone)]
pub struct VerifyKey {
    pub kid: String,
    pub alg: Alg,
    material: Material,
}

/// Why a JWK was not taken (the key is left out; tokens it signed defer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwkError(pub String);

fn member<'a>(jwk: &'a Map<String, Value>, name: &str, kid: &str) -> Result<&'a str, JwkError> {
    jwk.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| JwkError(format!("JWK {kid:?}: member {name:?} is missing")))
}

fn b64_member(jwk: &Map<String, Value>, name: &str, kid: &str) -> Result<Vec<u8>, JwkError> {
    URL_SAFE_NO_PAD
        .decode(member(jwk, name, kid)?)
        .map_err(|_| JwkError(format!("JWK {kid:?}: member {name:?} is not base64url")))
}

fn strip_zeros(bytes: &[u8]) -> Vec<u8> {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes[start..].to_vec()
}

impl VerifyKey {
    /// A verification key from a public JWK, as `PublicKey.from_jwk` accepts it.
    pub fn from_jwk(jwk: &Map<String, Value>) -> Result<VerifyKey, JwkError> {
        let kid = match jwk.get("kid").and_then(Value::as_str) {
            Some(kid) if !kid.is_empty() && kid.chars().count() <= MAX_KID_LENGTH => kid,
            _ => return Err(JwkError("every JWK needs a 'kid'".into())),
        };
        if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
            return Err(JwkError(format!("JWK {kid:?} holds private key members")));
        }
        match jwk.get("use") {
            None | Some(Value::Null) => {}
            Some(Value::String(u)) if u == "sig" => {}
            Some(_) => return Err(JwkError(format!("JWK {kid:?}: use is not 'sig'"))),
        }
        match jwk.get("key_ops") {
            None | Some(Value::Null) => {}
            Some(Value::Array(ops)) if ops.iter().any(|op| op == "verify") => {}
            Some(_) => return Err(JwkError(format!("JWK {kid:?}: key_ops lacks 'verify'"))),
        }
        let alg = match jwk.get("alg") {
            None | Some(Value::Null) => None,
            Some(Value::String(alg)) => Some(alg.as_str()),
            Some(_) => return Err(JwkError(format!("JWK {kid:?}: 'alg' must be a string"))),
        };
        let crv = jwk.get("crv").and_then(Value::as_str);
        let (alg, material) = match jwk.get("kty").and_then(Value::as_str) {
            Some("EC") if crv == Some("P-256") && matches!(alg, None | Some("ES256")) => {
                let x = b64_member(jwk, "x", kid)?;
                let y = b64_member(jwk, "y", kid)?;
                if x.len() != 32 || y.len() != 32 {
                    return Err(JwkError(format!("JWK {kid:?}: P-256 coordinates")));
                }
                let mut point = Vec::with_capacity(65);
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                (Alg::Es256, Material::P256(point))
            }
            Some("RSA") if matches!(alg, Some("RS256") | Some("PS256")) => {
                let n = strip_zeros(&b64_member(jwk, "n", kid)?);
                let e = strip_zeros(&b64_member(jwk, "e", kid)?);
                let bits = n.first().map_or(0, |top| {
                    (n.len() - 1) * 8 + (8 - top.leading_zeros() as usize)
                });
                if bits < MIN_RSA_BITS || e.is_empty() {
                    return Err(JwkError(format!("JWK {kid:?}: RSA key under 2048 bits")));
                }
                let alg = if alg == Some("PS256") {
                    Alg::Ps256
                } else {
                    Alg::Rs256
                };
                (alg, Material::Rsa { n, e })
            }
            Some("OKP")
                if crv == Some("Ed25519")
                    && matches!(alg, None | Some("EdDSA") | Some("Ed25519")) =>
            {
                let x = b64_member(jwk, "x", kid)?;
                if x.len() != 32 {
                    return Err(JwkError(format!("JWK {kid:?}: Ed25519 key size")));
                }
                (Alg::EdDsa, Material::Ed25519(x))
            }
            _ => return Err(JwkError(format!("JWK {kid:?}: unsupported key"))),
        };
        Ok(VerifyKey {
            kid: kid.to_owned(),
            alg,
            material,
        })
    }

    fn verify_signature(&self, signing_input: &[u8], sig: &[u8]) -> Result<(), JwtError> {
        self.verify_signature_with(signing_input, sig, false)
    }

    /// Verify `sig` over `signing_input`; `allow_high_s` accepts the high-S
    /// twin of an ES256 signature (external signers need not normalise S, as
    /// `JWTVerifier(allow_high_s=True)`).
    pub(super) fn verify_signature_with(
        &self,
        signing_input: &[u8],
        sig: &[u8],
        allow_high_s: bool,
    ) -> Result<(), JwtError> {
        let verified = match &self.material {
            Material::P256(point) => {
                // RFC 7518 §3.4: exactly r || s; the high-S twin is refused so a token
                // has one valid encoding (ring checks 0 < r, s < n).
                if sig.len() != 64 {
                    return Err(JwtError::BadSignature);
                }
                if !allow_high_s && sig[32..] > P256_HALF_N[..] {
                    return Err(JwtError::NonCanonicalSignature);
                }
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(signing_input, sig)
            }
            Material::Rsa { n, e } => {
                if sig.len() != n.len() {
                    return Err(JwtError::BadSignature);
                }
                let params = match self.alg {
                    Alg::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
                    _ => &signature::RSA_PKCS1_2048_8192_SHA256,
                };
                RsaPublicKeyComponents { n, e }.verify(params, signing_input, sig)
            }
            Material::Ed25519(x) => {
                if sig.len() != 64 {
                    return Err(JwtError::BadSignature);
                }
                UnparsedPublicKey::new(&signature::ED25519, x).verify(signing_input, sig)
            }
        };
        verified.map_err(|_| JwtError::BadSignature)
    }
}

/// The keys bastion's own tokens may be signed with, by kid.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, VerifyKey>,
}

impl KeySet {
    /// The usable keys of a JWKS document (`{"keys": [...]}`); unusable ones are
    /// left out with their reason.
    pub fn from_jwks(text: &str) -> Result<(KeySet, Vec<JwkError>), String> {
        let doc: Value = serde_json::from_str(text).map_err(|e| format!("JWKS: {e}"))?;
        let Some(list) = doc.get("keys").and_then(Value::as_array) else {
            return Err("JWKS: no 'keys' array".into());
        };
        let mut keys = HashMap::new();
        let mut skipped = Vec::new();
        for jwk in list {
            let Some(jwk) = jwk.as_object() else {
                skipped.push(JwkError("a JWK must be an object".into()));
                continue;
            };
            match VerifyKey::from_jwk(jwk) {
                Ok(key) => {
                    let kid = key.kid.clone();
                    if keys.insert(kid.clone(), key).is_some() {
                        return Err(format!("JWKS: two keys share the kid {kid:?}"));
                    }
                }
                Err(error) => skipped.push(error),
            }
        }
        Ok((KeySet { keys }, skipped))
    }

    pub fn get(&self, kid: &str) -> Option<&VerifyKey> {
        self.keys.get(kid)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// What bastion's own access tokens must satisfy beside the signature.
#[derive(Debug, Clone)]
pub struct Policy {
    /// bastion's issuer URL (`iss`).
    pub issuer: String,
    /// Seconds of clock leeway (`tokens.leeway`).
    pub leeway: f64,
    /// `tokens.max_access_token_ttl`, if any.
    pub max_lifetime: Option<f64>,
}

pub(super) fn decode(segment: &str) -> Result<Vec<u8>, JwtError> {
    // The engine refuses padding and non-zero unused bits: one encoding per value.
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| JwtError::Malformed)
}

pub(super) fn is_b64url(segment: &str) -> bool {
    segment
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub(super) fn normalise_typ(value: &str) -> String {
    let lowered = value.to_ascii_lowercase();
    match lowered.strip_prefix("application/") {
        Some(rest) => rest.to_owned(),
        None => lowered,
    }
}

pub(super) fn number(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(v) if v.is_finite() => Ok(Some(v)),
            _ => Err(JwtError::InvalidClaim),
        },
        Some(_) => Err(JwtError::InvalidClaim),
    }
}

/// Verify `token` against `keys` and `policy` at Unix time `now`; the claims.
pub fn verify(
    token: &str,
    keys: &KeySet,
    policy: &Policy,
    now: f64,
) -> Result<Map<String, Value>, JwtError> {
    if token.len() > MAX_TOKEN_SIZE {
        return Err(JwtError::TooLarge);
    }
    if !token.is_ascii() {
        return Err(JwtError::Malformed);
    }
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() == 5 {
        return Err(JwtError::JweNotAccepted);
    }
    let [head, body, sig] = parts[..] else {
        return Err(JwtError::Malformed);
    };
    if head.is_empty() || body.is_empty() || !parts.iter().all(|p| is_b64url(p)) {
        return Err(JwtError::Malformed);
    }
    let header = json::object(&decode(head)?).ok_or(JwtError::Malformed)?;
    let key = header_key(&header, keys)?;
    let signature = decode(sig)?;
    let signing_input = &token[..head.len() + 1 + body.len()];
    key.verify_signature(signing_input.as_bytes(), &signature)?;
    let claims = json::object(&decode(body)?).ok_or(JwtError::Malformed)?;
    check_claims(&header, &claims, policy, now)?;
    Ok(claims)
}

pub(super) fn header_key<'k>(
    header: &Map<String, Value>,
    keys: &'k KeySet,
) -> Result<&'k VerifyKey, JwtError> {
    let Some(alg) = header.get("alg").and_then(Value::as_str) else {
        return Err(JwtError::Malformed);
    };
    if alg.eq_ignore_ascii_case("none") {
        return Err(JwtError::AlgNotAllowed);
    }
    if header.contains_key("enc") {
        return Err(JwtError::JweNotAccepted);
    }
    if FORBIDDEN_HEADERS
        .iter()
        .any(|name| header.contains_key(*name))
    {
        return Err(JwtError::ForbiddenHeader);
    }
    if header.contains_key("crit") {
        return Err(JwtError::CritNotSupported);
    }
    // No `kid` (or `null`: Python's `header.get`): `require_kid`, no key is tried.
    let kid = match header.get("kid") {
        None | Some(Value::Null) => return Err(JwtError::UnknownKid),
        Some(Value::String(kid)) => kid,
        Some(_) => return Err(JwtError::Malformed),
    };
    let key = keys.get(kid).ok_or(JwtError::UnknownKid)?;
    // The key fixes the algorithm; the header may only repeat it (RFC 8725 §3.1).
    if alg != key.alg.name() {
        return Err(JwtError::AlgNotAllowed);
    }
    Ok(key)
}

/// The `exp`, `nbf` and `iat` checks at `now`, each with `leeway` seconds (PyJWT's
/// order: a malformed one first): the token's `(exp, iat)` when it is within its lifetime.
/// bastion's own tokens and a trusted issuer's are held to the same clock rules.
pub(super) fn check_times(
    claims: &Map<String, Value>,
    now: f64,
    leeway: f64,
) -> Result<(Option<f64>, Option<f64>), JwtError> {
    let exp = number(claims, "exp")?;
    let nbf = number(claims, "nbf")?;
    let iat = number(claims, "iat")?;
    if exp.is_some_and(|exp| now >= exp + leeway) {
        return Err(JwtError::Expired);
    }
    if nbf.is_some_and(|nbf| now + leeway < nbf) {
        return Err(JwtError::NotYetValid);
    }
    if iat.is_some_and(|iat| iat > now + leeway) {
        return Err(JwtError::IssuedInFuture);
    }
    Ok((exp, iat))
}

fn check_claims(
    header: &Map<String, Value>,
    claims: &Map<String, Value>,
    policy: &Policy,
    now: f64,
) -> Result<(), JwtError> {
    if REQUIRED_CLAIMS
        .iter()
        .any(|name| !claims.contains_key(*name))
    {
        return Err(JwtError::MissingClaim);
    }
    let leeway = policy.leeway;
    let (exp, iat) = check_times(claims, now, leeway)?;
    if let (Some(limit), Some(exp)) = (policy.max_lifetime, exp) {
        if iat.is_some_and(|iat| exp - iat > limit) || exp - now > limit + leeway {
            return Err(JwtError::LifetimeTooLong);
        }
    }
    match claims.get("iss") {
        None => return Err(JwtError::MissingClaim),
        Some(Value::String(iss)) if *iss == policy.issuer => {}
        Some(_) => return Err(JwtError::WrongIssuer),
    }
    match header.get("typ").and_then(Value::as_str) {
        Some(typ) if normalise_typ(typ) == ACCESS_TOKEN_TYP => {}
        _ => return Err(JwtError::WrongTyp),
    }
    // AccessTokenVerifier: a usable jti.
    match claims.get("jti") {
        Some(Value::String(jti)) if !jti.is_empty() => Ok(()),
        _ => Err(JwtError::MissingClaim),
    }
}

/// Whether the `aud` claim names `audience` (`JWTVerifier._check_audience`):
/// a string equal to it, or an array of strings containing it.
pub fn audience_matches(aud: Option<&Value>, audience: &str) -> bool {
    match aud {
        Some(Value::String(aud)) => aud == audience,
        Some(Value::Array(items)) => {
            items.iter().all(Value::is_string) && items.iter().any(|item| item == audience)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typ_is_normalised() {
        assert_eq!(normalise_typ("Application/AT+JWT"), "at+jwt");
        assert_eq!(normalise_typ("at+jwt"), "at+jwt");
        assert_eq!(normalise_typ("JWT"), "jwt");
    }

    #[test]
    fn audience_rules() {
        let a = Value::from("https://api");
        assert!(audience_matches(Some(&a), "https://api"));
        assert!(!audience_matches(Some(&a), "https://other"));
        let list = serde_json::json!(["x", "https://api"]);
        assert!(audience_matches(Some(&list), "https://api"));
        let mixed = serde_json::json!([1, "https://api"]);
        assert!(!audience_matches(Some(&mixed), "https://api"));
        assert!(!audience_matches(None, "https://api"));
        assert!(!audience_matches(Some(&Value::from(1)), "https://api"));
    }

    #[test]
    fn structure_is_checked_before_keys() {
        let keys = KeySet::default();
        let policy = Policy {
            issuer: "https://issuer".into(),
            leeway: 30.0,
            max_lifetime: None,
        };
        assert_eq!(verify("a.b", &keys, &policy, 0.0), Err(JwtError::Malformed));
        assert_eq!(
            verify("a.b.c.d.e", &keys, &policy, 0.0),
            Err(JwtError::JweNotAccepted)
        );
        assert_eq!(
            verify(".b.c", &keys, &policy, 0.0),
            Err(JwtError::Malformed)
        );
        assert_eq!(
            verify("a=.b.c", &keys, &policy, 0.0),
            Err(JwtError::Malformed)
        );
        let big = "a".repeat(MAX_TOKEN_SIZE + 1);
        assert_eq!(verify(&big, &keys, &policy, 0.0), Err(JwtError::TooLarge));
        // {"alg":"none"}
        let none = format!("{}.e30.", URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#));
        assert_eq!(
            verify(&none, &keys, &policy, 0.0),
            Err(JwtError::AlgNotAllowed)
        );
        // non-canonical base64url: unused bits set ("e31" decodes like "e30"? it must fail)
        assert_eq!(
            verify("e31.e30.", &keys, &policy, 0.0),
            Err(JwtError::Malformed)
        );
    }

    #[test]
    fn high_s_bound_is_half_the_order() {
        // n = FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
        let n: [u8; 32] = [
            0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2,
            0xfc, 0x63, 0x25, 0x51,
        ];
        // half = n >> 1
        let mut half = [0u8; 32];
        let mut carry = 0u8;
        for (i, byte) in n.iter().enumerate() {
            half[i] = (byte >> 1) | (carry << 7);
            carry = byte & 1;
        }
        assert_eq!(half, P256_HALF_N);
    }
}
