//! Client-certificate identities (pushed by `bastion.gateway.native_push.cert_identity`).

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::authn::mtls::{cert_settled, certs, CertIdentity};

/// Cache the identity Python derived for the certificate whose `x5t#S256`
/// (base64url) is `x5t`: `{"subject": …, "claims": {…}}`.
#[pyfunction]
fn cert_identity_put(x5t: &str, identity_json: &str) -> PyResult<()> {
    let (thumb, entry) =
        CertIdentity::from_push(x5t, identity_json).map_err(PyValueError::new_err)?;
    certs().put(thumb, entry);
    cert_settled(&thumb);
    Ok(())
}

/// Whether the certificate `x5t` has a cached identity.
#[pyfunction]
fn cert_identity_cached(x5t: &str) -> bool {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(x5t)
        .ok()
        .and_then(|raw| <[u8; 32]>::try_from(raw).ok())
        .is_some_and(|thumb| certs().get(&thumb).is_some())
}

/// How many certificate identities are cached.
#[pyfunction]
fn cert_identities_len() -> usize {
    certs().len()
}

/// Forget every certificate identity.
#[pyfunction]
fn cert_identities_clear() {
    certs().clear();
}

/// Add this part's functions to the module.
pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(cert_identity_put, m)?)?;
    m.add_function(wrap_pyfunction!(cert_identity_cached, m)?)?;
    m.add_function(wrap_pyfunction!(cert_identities_len, m)?)?;
    m.add_function(wrap_pyfunction!(cert_identities_clear, m)?)?;
    Ok(())
}
