//! `bastion._native`: the Python-facing API of the native data plane.

use pyo3::prelude::*;

/// The version of the native core (the crate's version).
#[pyfunction]
fn version() -> &'static str {
    crate::VERSION
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(version, m)?)?;
    Ok(())
}
