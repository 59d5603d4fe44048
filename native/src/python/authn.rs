//! Authentication caches: API keys, signing keys, verified tokens, revocations (pushed by `bastion.gateway.native_push`).

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::authn::api_key::{parse_hex_digest, ApiKeyRecord};
use crate::authn::jwt::Policy;
use crate::authn::{self, RouteAuth, Verdict};
use crate::plane::caches;

fn now() -> f64 {
    authn::unix_now()
}

fn digest_of(hex: &str) -> PyResult<[u8; 32]> {
    parse_hex_digest(hex).ok_or_else(|| PyValueError::new_err("digest must be 64 hex characters"))
}

// -- authn: configuration ----------------------------------------------------

/// Set bastion's issuer, clock leeway, maximum access-token lifetime and API key
/// pepper; drops every cached key and token.
#[pyfunction]
#[pyo3(signature = (issuer, leeway, max_lifetime, pepper))]
fn authn_configure(issuer: &str, leeway: f64, max_lifetime: Option<f64>, pepper: Option<&[u8]>) {
    let policy = Policy {
        issuer: issuer.to_owned(),
        leeway,
        max_lifetime,
    };
    caches().configure(policy, pepper);
}

// -- authn: API keys -----------------------------------------------------------

/// Cache a key record (JSON, see `native_push.api_key_record`) under its stored
/// hex digest for `ttl` seconds.
#[pyfunction]
fn api_key_put(digest: &str, record_json: &str, ttl: f64) -> PyResult<()> {
    let digest = digest_of(digest)?;
    let record: ApiKeyRecord = serde_json::from_str(record_json)
        .map_err(|e| PyValueError::new_err(format!("API key record: {e}")))?;
    caches().api_key_put(digest, record, now(), ttl);
    Ok(())
}

/// Remember for `ttl` seconds that Python refused the key with this stored hex
/// digest (no such key, or a format that can never be valid): the native path
/// answers its 401 itself meanwhile. Any `api-keys` change forgets these.
#[pyfunction]
fn api_key_refuse(digest: &str, ttl: f64) -> PyResult<()> {
    caches().api_key_refuse(digest_of(digest)?, now(), ttl);
    Ok(())
}

/// Whether the key with this stored hex digest is refused natively now.
#[pyfunction]
fn api_key_refused(digest: &str) -> PyResult<bool> {
    Ok(caches().api_key_refused(&digest_of(digest)?, now()))
}

/// How many key records are held.
#[pyfunction]
fn api_keys_len() -> usize {
    caches().api_keys_len()
}

/// How many refused digests are held.
#[pyfunction]
fn api_keys_refused_len() -> usize {
    caches().api_keys_refused_len()
}

/// Forget the key `key_id` (and tokens exchanged from it).
#[pyfunction]
fn api_key_drop(key_id: &str) {
    caches().api_key_drop(key_id);
}

/// Forget every cached key.
#[pyfunction]
fn api_keys_clear() {
    caches().api_keys_clear();
}

/// The keys used natively since the last call: ``[(key_id, unix_time)]`` (latest use each).
#[pyfunction]
fn api_keys_used() -> Vec<(String, f64)> {
    caches().api_keys_used()
}

/// Whether a key with this hex digest is cached (any state).
#[pyfunction]
fn api_key_cached(digest: &str) -> PyResult<bool> {
    Ok(caches().api_key_get(&digest_of(digest)?).is_some())
}

// -- authn: signing keys and tokens ----------------------------------------------

/// Replace bastion's signing keys (a public JWKS document); drops every cached
/// token. Returns how many keys were taken.
#[pyfunction]
fn signing_keys_set(jwks_json: &str) -> PyResult<usize> {
    caches()
        .signing_keys_set(jwks_json)
        .map_err(PyValueError::new_err)
}

/// Replace the keys of the trusted external issuer `issuer` (a public JWKS
/// document Python fetched and verified), usable for `ttl` seconds (until
/// Python would refetch it). Returns how many keys were taken.
#[pyfunction]
fn issuer_keys_set(issuer: &str, jwks_json: &str, ttl: f64) -> PyResult<usize> {
    caches()
        .issuer_keys()
        .set(issuer, jwks_json, now() + ttl.max(0.0))
        .map_err(PyValueError::new_err)
}

/// Python will not try to fetch `issuer`'s keys again for `seconds` (its
/// `min_refresh_interval` since the last attempt): until then the pushed set is
/// the one it verifies with, stale or lacking a token's `kid`.
#[pyfunction]
fn issuer_retry_in(issuer: &str, seconds: f64) {
    caches()
        .issuer_keys()
        .retry_at(issuer, now() + seconds.max(0.0));
}

/// Whether the native core holds the key `kid` of the trusted issuer `issuer`.
#[pyfunction]
fn issuer_key_known(issuer: &str, kid: &str) -> bool {
    caches().issuer_keys().known(issuer, kid)
}

/// Whether the native core holds the signing key `kid`.
#[pyfunction]
fn signing_key_known(kid: &str) -> bool {
    caches().signing_key_known(kid)
}

/// Verify `token` natively and cache it for at most `ttl` seconds (until its
/// `exp`). Returns ``None`` when cached, else why not (a reason code).
#[pyfunction]
fn token_put(token: &str, ttl: f64) -> Option<&'static str> {
    caches()
        .token_put(token, now(), ttl)
        .err()
        .map(|e| e.reason())
}

/// Remember for `ttl` seconds that Python found the OAuth client `client_id` active.
#[pyfunction]
fn client_active(client_id: &str, ttl: f64) {
    caches().client_active(client_id, now(), ttl);
}

/// Cache `token`, exchanged from the API key `key` (JSON: `key_id`, `routes`,
/// `key_limits`) and accepted by Python as that key, for at most `ttl` seconds;
/// `None` when cached, else why not.
#[pyfunction]
fn token_put_exchanged(token: &str, key: &str, ttl: f64) -> Option<&'static str> {
    caches()
        .token_put_exchanged(token, key, now(), ttl)
        .err()
        .map(|error| error.reason())
}

/// Python found the OAuth client `client_id` disabled or deleted: its tokens are
/// refused natively for `ttl` seconds, or until the client changes.
#[pyfunction]
fn client_inactive(client_id: &str, ttl: f64) {
    caches().client_inactive(client_id, now(), ttl);
}

/// Let the native core verify uncached tokens of clients known active (only
/// where every revocation reaches its deny-list: `native_push.verify_misses`).
#[pyfunction]
fn tokens_verify_misses(on: bool) {
    caches().set_verify_misses(on);
}

/// Whether `token` is in the verified-token cache.
#[pyfunction]
fn token_cached(token: &str) -> bool {
    caches().token_cached(token)
}

/// Deny-list the token `jti` until `exp` (+ leeway); its cached entries go at once.
#[pyfunction]
fn token_revoke(jti: &str, exp: f64) {
    caches().token_revoke(jti, exp, now());
}

/// Forget the cached tokens of the OAuth client `client_id`.
#[pyfunction]
fn tokens_forget_client(client_id: &str) {
    caches().tokens_forget_client(client_id);
}

/// Forget every cached token (the deny-list stays).
#[pyfunction]
fn tokens_clear() {
    caches().tokens_clear();
}

/// Whether Python follows every invalidation channel: cached tokens are served
/// natively only meanwhile (false also drops them).
#[pyfunction]
fn tokens_following(following: bool) {
    caches().set_following(following);
}

/// Run the native `authenticate` + `authorize` steps on a request described
/// from Python (tests and `bastion routes explain`): the identity as a dict
/// when the native path would allow it, ``None`` when it would defer.
#[pyfunction]
#[pyo3(signature = (section_json, route_name, method, headers, query=None, client=None))]
fn authn_decide<'py>(
    py: Python<'py>,
    section_json: &str,
    route_name: &str,
    method: &str,
    headers: Vec<(String, String)>,
    query: Option<&str>,
    client: Option<&str>,
) -> PyResult<Option<Bound<'py, PyDict>>> {
    let client = match client {
        None => None,
        Some(ip) => Some(
            ip.parse::<std::net::IpAddr>()
                .map_err(|e| PyValueError::new_err(e.to_string()))?,
        ),
    };
    let section: serde_json::Value =
        serde_json::from_str(section_json).map_err(|e| PyValueError::new_err(e.to_string()))?;
    let route = RouteAuth::from_section(&section).map_err(PyValueError::new_err)?;
    let mut map = http::HeaderMap::new();
    for (name, value) in headers {
        let name = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        let value = http::HeaderValue::from_str(&value)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        map.append(name, value);
    }
    let method = http::Method::from_bytes(method.as_bytes())
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    let Verdict::Allow(identity) =
        authn::authenticate_request(caches(), &route, query, &map, client, now())
    else {
        return Ok(None);
    };
    if !crate::authz::authorize(&route, &identity, &method, route_name) {
        return Ok(None);
    }
    let out = PyDict::new(py);
    out.set_item("method", identity.method)?;
    out.set_item("subject", identity.subject)?;
    out.set_item("client_id", identity.client_id)?;
    out.set_item("scopes", identity.scopes)?;
    out.set_item("key_id", identity.key_id)?;
    out.set_item("routes", identity.routes)?;
    Ok(Some(out))
}

/// Add this part's functions and classes to the module.
pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(authn_configure, m)?)?;
    m.add_function(wrap_pyfunction!(api_key_put, m)?)?;
    m.add_function(wrap_pyfunction!(api_key_drop, m)?)?;
    m.add_function(wrap_pyfunction!(api_key_refuse, m)?)?;
    m.add_function(wrap_pyfunction!(api_key_refused, m)?)?;
    m.add_function(wrap_pyfunction!(api_keys_refused_len, m)?)?;
    m.add_function(wrap_pyfunction!(api_keys_len, m)?)?;
    m.add_function(wrap_pyfunction!(api_keys_clear, m)?)?;
    m.add_function(wrap_pyfunction!(api_key_cached, m)?)?;
    m.add_function(wrap_pyfunction!(api_keys_used, m)?)?;
    m.add_function(wrap_pyfunction!(signing_keys_set, m)?)?;
    m.add_function(wrap_pyfunction!(signing_key_known, m)?)?;
    m.add_function(wrap_pyfunction!(issuer_keys_set, m)?)?;
    m.add_function(wrap_pyfunction!(issuer_retry_in, m)?)?;
    m.add_function(wrap_pyfunction!(issuer_key_known, m)?)?;
    m.add_function(wrap_pyfunction!(token_put, m)?)?;
    m.add_function(wrap_pyfunction!(token_cached, m)?)?;
    m.add_function(wrap_pyfunction!(client_active, m)?)?;
    m.add_function(wrap_pyfunction!(client_inactive, m)?)?;
    m.add_function(wrap_pyfunction!(token_put_exchanged, m)?)?;
    m.add_function(wrap_pyfunction!(tokens_verify_misses, m)?)?;
    m.add_function(wrap_pyfunction!(token_revoke, m)?)?;
    m.add_function(wrap_pyfunction!(tokens_forget_client, m)?)?;
    m.add_function(wrap_pyfunction!(tokens_clear, m)?)?;
    m.add_function(wrap_pyfunction!(tokens_following, m)?)?;
    m.add_function(wrap_pyfunction!(authn_decide, m)?)?;
    Ok(())
}
