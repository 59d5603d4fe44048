//! Introspection answers (pushed by `bastion.gateway.native_push.introspected`).

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::authn::api_key::parse_hex_digest;
use crate::authn::introspection::{cache, settle_all, settled, Answer};
use crate::authn::unix_now;

fn digest_of(hex: &str) -> PyResult<[u8; 32]> {
    parse_hex_digest(hex).ok_or_else(|| PyValueError::new_err("digest must be 64 hex characters"))
}

/// Cache what the endpoint said about the token whose SHA-256 is `digest`
/// (hex) until `until` (Unix seconds): the active answer
/// `{"subject": …, "scopes": [...], "claims": {…}}`, or `None` for inactive.
#[pyfunction]
#[pyo3(signature = (digest, answer_json, until))]
fn introspection_put(digest: &str, answer_json: Option<&str>, until: f64) -> PyResult<()> {
    let digest = digest_of(digest)?;
    let answer = match answer_json {
        None => Answer::Inactive,
        Some(json) => Answer::from_push(json).map_err(PyValueError::new_err)?,
    };
    cache().put(digest, answer, until, unix_now());
    settled(&digest);
    Ok(())
}

/// What is cached for the token `digest` now: `"active"`, `"inactive"` or `None`.
#[pyfunction]
fn introspection_cached(digest: &str) -> PyResult<Option<&'static str>> {
    let digest = digest_of(digest)?;
    Ok(cache()
        .get(&digest, unix_now())
        .map(|answer| match *answer {
            Answer::Active { .. } => "active",
            Answer::Inactive => "inactive",
        }))
}

/// How many introspection answers are held (ended ones included until replaced).
#[pyfunction]
fn introspection_len() -> usize {
    cache().len()
}

/// Forget every introspection answer.
#[pyfunction]
fn introspection_clear() {
    cache().clear();
    settle_all();
}

/// Add this part's functions to the module.
pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(introspection_put, m)?)?;
    m.add_function(wrap_pyfunction!(introspection_cached, m)?)?;
    m.add_function(wrap_pyfunction!(introspection_len, m)?)?;
    m.add_function(wrap_pyfunction!(introspection_clear, m)?)?;
    Ok(())
}
