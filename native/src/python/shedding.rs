//! Load shedding's per-route limiters (`limit::shedding`), shared with Python's
//! `LoadShedder(serve_native=True)`: deferred and native requests of a route
//! hold slots of one AIMD limit.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::limit::shedding::{self, SheddingConfig, Slot};

/// A slot of a route upstream's concurrency limit, held for one exchange.
#[pyclass(name = "ShedSlot", module = "bastion._native")]
struct ShedSlot {
    slot: Option<Slot>,
}

#[pymethods]
impl ShedSlot {
    /// Give the slot back; `failed` (an exception, an upstream failure) cuts the limit.
    fn finish(&mut self, failed: bool) {
        if let Some(slot) = self.slot.take() {
            slot.finish(failed);
        }
    }
}

/// A slot of route `route`'s limiter (created with these settings on first
/// use), or `None` when the request is to be shed.
#[pyfunction]
#[pyo3(signature = (route, initial, minimum, maximum, target_latency, backoff))]
fn shed_acquire(
    route: &str,
    initial: u32,
    minimum: u32,
    maximum: u32,
    target_latency: f64,
    backoff: f64,
) -> PyResult<Option<ShedSlot>> {
    let section = serde_json::json!({
        "initial": initial, "minimum": minimum, "maximum": maximum,
        "target_latency": target_latency, "backoff": backoff,
    });
    let config = SheddingConfig::from_section(&section).map_err(PyValueError::new_err)?;
    Ok(shedding::for_route(route, config)
        .try_acquire()
        .map(|slot| ShedSlot { slot: Some(slot) }))
}

/// `(limit, inflight, max_inflight, shed)` of route `route`'s limiter, if it has one.
#[pyfunction]
fn shed_state(route: &str) -> Option<(f64, u64, u64, u64)> {
    shedding::get(route).map(|limiter| limiter.snapshot())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<ShedSlot>()?;
    m.add_function(wrap_pyfunction!(shed_acquire, m)?)?;
    m.add_function(wrap_pyfunction!(shed_state, m)?)?;
    Ok(())
}
