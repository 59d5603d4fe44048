//! The signing key of the identity assertion (pushed by `bastion.gateway.native_push`).
//! The private key goes in and never comes out: only its kid and algorithm are readable.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// Make `pkcs8` (DER) the current signing key `kid` of `alg` (ES256, RS256,
/// PS256, EdDSA). Raises `ValueError` (naming the kid, never the key) for a key
/// ring refuses; the previously held key is dropped then too.
#[pyfunction]
fn assertion_key_set(kid: &str, alg: &str, pkcs8: &[u8]) -> PyResult<()> {
    crate::assertion::set_current(kid, alg, pkcs8).map_err(PyValueError::new_err)
}

/// Forget the current signing key: routes with the assertion defer to Python.
#[pyfunction]
fn assertion_key_clear() {
    crate::assertion::clear_current();
}

/// `(kid, alg)` of the signing key held, or `None`.
#[pyfunction]
fn assertion_key() -> Option<(String, &'static str)> {
    crate::assertion::current().map(|key| (key.kid().to_owned(), key.alg()))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(assertion_key_set, m)?)?;
    m.add_function(wrap_pyfunction!(assertion_key_clear, m)?)?;
    m.add_function(wrap_pyfunction!(assertion_key, m)?)?;
    Ok(())
}
