//! `bastion._native`: the Python-facing API of the native data plane.

use pyo3::prelude::*;

/// The version of the native core (the crate's version).
#[pyfunction]
fn version() -> &'static str {
    crate::VERSION
}

/// Mirror a risk flag (`bastion.ratelimit.risk.RiskRegistry.flag`): until
/// `until` (Unix seconds) the native path defers this requester's requests.
/// `value` is canonical (an address as its bucket). Raises ValueError for an
/// unknown kind.
#[pyfunction]
fn risk_flag(kind: &str, value: String, until: f64) -> PyResult<()> {
    let kind = crate::risk::RiskKind::parse(kind).ok_or_else(|| {
        pyo3::exceptions::PyValueError::new_err(format!("unknown risk kind {kind:?}"))
    })?;
    crate::plane::plane().risk.flag(kind, value, until);
    Ok(())
}

/// Lift a mirrored risk flag early.
#[pyfunction]
fn risk_clear(kind: &str, value: &str) -> PyResult<()> {
    let kind = crate::risk::RiskKind::parse(kind).ok_or_else(|| {
        pyo3::exceptions::PyValueError::new_err(format!("unknown risk kind {kind:?}"))
    })?;
    crate::plane::plane().risk.clear(kind, value);
    Ok(())
}

/// Whether the native path would defer a requester flagged as `kind`/`value` at `now`.
#[pyfunction]
fn risk_flagged(kind: &str, value: &str, now: f64) -> PyResult<bool> {
    let kind = crate::risk::RiskKind::parse(kind).ok_or_else(|| {
        pyo3::exceptions::PyValueError::new_err(format!("unknown risk kind {kind:?}"))
    })?;
    Ok(crate::plane::plane()
        .risk
        .any_flagged(now, &[(kind, Some(value))]))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(version, m)?)?;
    m.add_function(wrap_pyfunction!(risk_flag, m)?)?;
    m.add_function(wrap_pyfunction!(risk_clear, m)?)?;
    m.add_function(wrap_pyfunction!(risk_flagged, m)?)?;
    Ok(())
}
