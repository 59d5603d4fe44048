//! The signed identity assertion the `mutate` step sends upstream: the native
//! twin of `bastion.gateway.assertion.AssertionSigner`.
//!
//! A compact JWS (RFC 7515) with the JOSE header `{"alg","kid","typ"}`
//! (`typ: bastion-assertion+jwt`, RFC 8725 §3.11) and the claims `iss`,
//! `aud`, `sub`, `iat`, `exp` (`iat + ttl`), `jti` (a UUID4 in hex), `route`,
//! `auth_method`, `scope` (sorted, space-separated), then `client_id`,
//! `key_id` and `request_id` when known — members in Python's order, JSON in
//! orjson's compact form.
//!
//! The control plane pushes bastion's CURRENT signing key (PKCS#8 DER) into
//! [`set_current`] whenever the active key changes (`native_push.assertion_key`);
//! a route with the assertion on answers `503 assertion_unavailable` while no
//! key is held (`decide`).
//! Algorithms: ES256 (low-S, raw `r || s`), RS256, PS256 (salt = 32 bytes)
//! and EdDSA (Ed25519), as `bastion.crypto.keys.SigningKeyPair.sign`.
//! The private key never leaves the ring key pair: no `Debug`, no accessor.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::header::HeaderName;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{
    EcdsaKeyPair, Ed25519KeyPair, RsaEncoding, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
    RSA_PKCS1_SHA256, RSA_PSS_SHA256,
};
use serde::{Deserialize, Serialize};

use crate::http::Identity;

/// The assertion's `typ` (`bastion.gateway.assertion.ASSERTION_TYP`).
pub const ASSERTION_TYP: &str = "bastion-assertion+jwt";

/// A route's assertion settings (`upstream.mutate.assertion`), compiled by
/// `compile/upstream.py` from `identity_headers.assertion` and the route.
#[derive(Debug, Clone)]
pub struct AssertionConfig {
    /// The header carrying it (lower-case).
    pub header: HeaderName,
    issuer: String,
    audience: String,
    /// Seconds from `iat` to `exp` (Python's `int(ttl)`).
    ttl: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    header: String,
    issuer: String,
    audience: String,
    ttl: u64,
}

impl AssertionConfig {
    /// Build from the `assertion` member of the mutate section; an error names the field.
    pub fn from_section(section: &serde_json::Value) -> Result<Self, String> {
        let raw = Section::deserialize(section).map_err(|e| format!("assertion: {e}"))?;
        let header = HeaderName::from_bytes(raw.header.to_ascii_lowercase().as_bytes())
            .map_err(|_| format!("assertion.header: {:?} is not a header name", raw.header))?;
        if !(1..=60).contains(&raw.ttl) {
            return Err(format!("assertion.ttl: {} is not 1 to 60 seconds", raw.ttl));
        }
        Ok(Self {
            header,
            issuer: raw.issuer,
            audience: raw.audience,
            ttl: raw.ttl,
        })
    }
}

enum Signer {
    Es256(EcdsaKeyPair),
    Rsa(RsaKeyPair, &'static dyn RsaEncoding),
    EdDsa(Ed25519KeyPair),
}

/// bastion's current signing key, ready to sign (the private half stays in ring).
pub struct SigningKey {
    kid: String,
    alg: &'static str,
    signer: Signer,
    /// The encoded JOSE header and its `.`: every assertion's first segment.
    header: String,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey(kid={:?}, alg={:?})", self.kid, self.alg)
    }
}

#[derive(Serialize)]
struct JoseHeader<'a> {
    alg: &'a str,
    kid: &'a str,
    typ: &'a str,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    iat: i64,
    exp: i64,
    jti: &'a str,
    route: &'a str,
    auth_method: &'a str,
    scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
}

/// The order of P-256 and half of it (canonical low-S, as Python signs).
const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];
const P256_HALF_N: [u8; 32] = [
    0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xde, 0x73, 0x7d, 0x56, 0xd3, 0x8b, 0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8,
];

/// `s := n - s` when `s > n/2` (big-endian, 32 bytes).
fn low_s(s: &mut [u8]) {
    if *s <= P256_HALF_N[..] {
        return;
    }
    let mut borrow = 0u16;
    for i in (0..32).rev() {
        let diff = u16::from(P256_N[i])
            .wrapping_sub(u16::from(s[i]))
            .wrapping_sub(borrow);
        s[i] = (diff & 0xff) as u8;
        borrow = (diff >> 8) & 1;
    }
}

impl SigningKey {
    /// Load `pkcs8` (DER) as the key `kid` of algorithm `alg`. The error names
    /// what was refused, never the key.
    pub fn new(kid: &str, alg: &str, pkcs8: &[u8]) -> Result<Self, String> {
        let rng = SystemRandom::new();
        let refused = |e: ring::error::KeyRejected| format!("signing key {kid:?} ({alg}): {e}");
        let (alg, signer): (&'static str, Signer) = match alg {
            "ES256" => (
                "ES256",
                Signer::Es256(
                    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
                        .map_err(refused)?,
                ),
            ),
            "RS256" => (
                "RS256",
                Signer::Rsa(
                    RsaKeyPair::from_pkcs8(pkcs8).map_err(refused)?,
                    &RSA_PKCS1_SHA256,
                ),
            ),
            "PS256" => (
                "PS256",
                Signer::Rsa(
                    RsaKeyPair::from_pkcs8(pkcs8).map_err(refused)?,
                    &RSA_PSS_SHA256,
                ),
            ),
            "EdDSA" => (
                "EdDSA",
                Signer::EdDsa(Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8).map_err(refused)?),
            ),
            other => {
                return Err(format!(
                    "signing key {kid:?}: algorithm {other:?} is not supported"
                ))
            }
        };
        let jose = serde_json::to_vec(&JoseHeader {
            alg,
            kid,
            typ: ASSERTION_TYP,
        })
        .map_err(|e| e.to_string())?;
        let mut header = URL_SAFE_NO_PAD.encode(jose);
        header.push('.');
        Ok(Self {
            kid: kid.to_owned(),
            alg,
            signer,
            header,
        })
    }

    /// The key's id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The key's algorithm.
    pub fn alg(&self) -> &'static str {
        self.alg
    }

    /// The JWS signature of `input` (ES256: raw low-S `r || s`); `None` when the
    /// system's random source failed.
    fn sign(&self, input: &[u8], rng: &SystemRandom) -> Option<Vec<u8>> {
        match &self.signer {
            Signer::Es256(pair) => {
                let signature = pair.sign(rng, input).ok()?;
                let mut raw = signature.as_ref().to_vec();
                if raw.len() != 64 {
                    return None;
                }
                low_s(&mut raw[32..]);
                Some(raw)
            }
            Signer::Rsa(pair, padding) => {
                let mut out = vec![0; pair.public().modulus_len()];
                pair.sign(*padding, rng, input, &mut out).ok()?;
                Some(out)
            }
            Signer::EdDsa(pair) => Some(pair.sign(input).as_ref().to_vec()),
        }
    }

    /// The compact JWS of the assertion for `identity` on `route` at `now`
    /// (seconds since the epoch); `None` when the random source failed.
    pub fn assertion(
        &self,
        config: &AssertionConfig,
        identity: &Identity,
        route: &str,
        request_id: Option<&str>,
        now: f64,
    ) -> Option<String> {
        let rng = SystemRandom::new();
        let mut uuid = [0u8; 16];
        rng.fill(&mut uuid).ok()?;
        uuid[6] = (uuid[6] & 0x0f) | 0x40; // version 4
        uuid[8] = (uuid[8] & 0x3f) | 0x80; // RFC 4122 variant
        let jti = hex(&uuid);
        let iat = now.floor() as i64;
        let mut scopes: Vec<&str> = identity.scopes.iter().map(String::as_str).collect();
        scopes.sort_unstable();
        let claims = Claims {
            iss: &config.issuer,
            aud: &config.audience,
            sub: identity.subject.as_deref()?,
            iat,
            exp: iat + config.ttl as i64,
            jti: &jti,
            route,
            auth_method: identity.method,
            scope: scopes.join(" "),
            client_id: identity.client_id.as_deref().filter(|c| !c.is_empty()),
            key_id: identity.key_id.as_deref().filter(|k| !k.is_empty()),
            request_id: request_id.filter(|r| !r.is_empty()),
        };
        let payload = serde_json::to_vec(&claims).ok()?;
        let mut token = String::with_capacity(self.header.len() + payload.len() * 2 + 400);
        token.push_str(&self.header);
        URL_SAFE_NO_PAD.encode_string(payload, &mut token);
        let signature = self.sign(token.as_bytes(), &rng)?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        Some(token)
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

static CURRENT: ArcSwapOption<SigningKey> = ArcSwapOption::const_empty();

/// Make `pkcs8` (DER) the current signing key; on an error the held key is
/// dropped too (routes with the assertion answer 503 until the next push).
pub fn set_current(kid: &str, alg: &str, pkcs8: &[u8]) -> Result<(), String> {
    match SigningKey::new(kid, alg, pkcs8) {
        Ok(key) => {
            CURRENT.store(Some(Arc::new(key)));
            Ok(())
        }
        Err(error) => {
            CURRENT.store(None);
            Err(error)
        }
    }
}

/// Forget the current signing key (routes with the assertion answer 503).
pub fn clear_current() {
    CURRENT.store(None);
}

/// The current signing key, if the control plane pushed one.
pub fn current() -> Option<Arc<SigningKey>> {
    CURRENT.load_full()
}

/// What a request on a route with `config` needs to carry an assertion: `Ok(None)`
/// when it carries none (no assertion, or an anonymous identity), `Err(())`
/// when it needs one but no key is held (`decide`'s 503 `assertion_unavailable`).
#[allow(clippy::result_unit_err)]
pub fn signer_for(
    config: Option<&AssertionConfig>,
    identity: &Identity,
) -> Result<Option<Arc<SigningKey>>, ()> {
    match config {
        Some(_) if identity.subject.is_some() => current().map(Some).ok_or(()),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests;
