//! Browser sessions (pushed by `bastion.gateway.native_push.session_found` and friends).

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::authn::api_key::parse_hex_digest;
use crate::authn::session::{self, sessions, Record};
use crate::authn::unix_now;

fn digest_of(hex: &str) -> PyResult<[u8; 32]> {
    parse_hex_digest(hex).ok_or_else(|| PyValueError::new_err("digest must be 64 hex characters"))
}

/// Hold the live session whose id has the SHA-256 `digest` (hex): the record
/// `{"user_id", "username", "email", "roles", "expires_at", "last_seen_at",
/// "idle_timeout"}` (Unix seconds); wakes the requests waiting for it. Returns
/// false when it was not held: dropped while its lookup ran (they look it up again).
#[pyfunction]
fn session_put(digest: &str, record_json: &str) -> PyResult<bool> {
    let digest = digest_of(digest)?;
    let (record, last_seen) = Record::from_push(record_json).map_err(PyValueError::new_err)?;
    let held = sessions().put(digest, record, last_seen);
    session::settled(&digest);
    Ok(held)
}

/// Python found no live session for `digest`: refused natively for `ttl` seconds.
#[pyfunction]
fn session_refuse(digest: &str, ttl: f64) -> PyResult<()> {
    let digest = digest_of(digest)?;
    sessions().refuse(digest, unix_now() + ttl.max(0.0));
    session::settled(&digest);
    Ok(())
}

/// The session `digest` started or ended (the feed's `sessions` channel): forget it.
#[pyfunction]
fn session_drop(digest: &str) -> PyResult<()> {
    sessions().drop_digest(&digest_of(digest)?);
    Ok(())
}

/// The user `user_id` changed: forget their sessions (looked up again on use).
#[pyfunction]
fn sessions_drop_user(user_id: &str) {
    sessions().drop_user(user_id);
}

/// Forget every session and refusal.
#[pyfunction]
fn sessions_clear() {
    sessions().clear();
    session::settle_all();
}

/// The sessions used natively since the last call: `[(hex digest, unix time)]`.
#[pyfunction]
fn sessions_used() -> Vec<(String, f64)> {
    sessions()
        .take_used()
        .into_iter()
        .map(|(digest, at)| (session::hex(&digest), at))
        .collect()
}

/// What is held for `digest` now: `"live"`, `"refused"` or `None`.
#[pyfunction]
fn session_cached(digest: &str) -> PyResult<Option<&'static str>> {
    let digest = digest_of(digest)?;
    let now = unix_now();
    Ok(if sessions().get(&digest, now).is_some() {
        Some("live")
    } else if sessions().refused(&digest, now) {
        Some("refused")
    } else {
        None
    })
}

/// How many sessions are held.
#[pyfunction]
fn sessions_len() -> usize {
    sessions().len()
}

/// Add this part's functions to the module.
pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(session_put, m)?)?;
    m.add_function(wrap_pyfunction!(session_refuse, m)?)?;
    m.add_function(wrap_pyfunction!(session_drop, m)?)?;
    m.add_function(wrap_pyfunction!(sessions_drop_user, m)?)?;
    m.add_function(wrap_pyfunction!(sessions_clear, m)?)?;
    m.add_function(wrap_pyfunction!(sessions_used, m)?)?;
    m.add_function(wrap_pyfunction!(session_cached, m)?)?;
    m.add_function(wrap_pyfunction!(sessions_len, m)?)?;
    Ok(())
}
