//! Load shedding's per-route limiters (`limit::shedding`), read from Python:
//! the gateway alone acquires their slots (Python's load shedder is gone).

use pyo3::prelude::*;

use crate::limit::shedding;

/// `(limit, inflight, max_inflight, shed)` of route `route`'s limiter, if it has one.
#[pyfunction]
fn shed_state(route: &str) -> Option<(f64, u64, u64, u64)> {
    shedding::get(route).map(|limiter| limiter.snapshot())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(shed_state, m)?)?;
    Ok(())
}
