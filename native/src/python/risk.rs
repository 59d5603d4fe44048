//! Risk flags mirrored from `bastion.ratelimit.risk`.

use pyo3::prelude::*;

/// Mirror a risk flag (`bastion.ratelimit.risk.RiskRegistry.flag`): until
/// `until` (Unix seconds) the native limit step divides this requester's
/// limits by `factor`. `value` is canonical (an address as its bucket); `now`
/// is the registry's clock (a flag expired by then is replaced, not merged).
/// Raises ValueError for an unknown kind or a factor below 2.
#[pyfunction]
#[pyo3(signature = (kind, value, until, factor, now))]
fn risk_flag(kind: &str, value: String, until: f64, factor: u64, now: f64) -> PyResult<()> {
    let kind = crate::risk::RiskKind::parse(kind).ok_or_else(|| {
        pyo3::exceptions::PyValueError::new_err(format!("unknown risk kind {kind:?}"))
    })?;
    if factor < 2 {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "factor must be a whole number >= 2, not {factor}"
        )));
    }
    crate::plane::plane()
        .risk
        .flag(kind, value, factor, until, now);
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

/// Whether a requester flagged as `kind`/`value` has its limits tightened at `now`.
#[pyfunction]
fn risk_flagged(kind: &str, value: &str, now: f64) -> PyResult<bool> {
    let kind = crate::risk::RiskKind::parse(kind).ok_or_else(|| {
        pyo3::exceptions::PyValueError::new_err(format!("unknown risk kind {kind:?}"))
    })?;
    Ok(crate::plane::plane()
        .risk
        .any_flagged(now, &[(kind, Some(value))]))
}

/// The divisor of a requester flagged as `kind`/`value` at `now` (1: not flagged).
#[pyfunction]
fn risk_factor(kind: &str, value: &str, now: f64) -> PyResult<u64> {
    let kind = crate::risk::RiskKind::parse(kind).ok_or_else(|| {
        pyo3::exceptions::PyValueError::new_err(format!("unknown risk kind {kind:?}"))
    })?;
    Ok(crate::plane::plane()
        .risk
        .factor(now, &[(kind, Some(value))]))
}

/// Add this part's functions and classes to the module.
pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(risk_flag, m)?)?;
    m.add_function(wrap_pyfunction!(risk_clear, m)?)?;
    m.add_function(wrap_pyfunction!(risk_flagged, m)?)?;
    m.add_function(wrap_pyfunction!(risk_factor, m)?)?;
    Ok(())
}
