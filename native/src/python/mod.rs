//! `bastion._native`: the Python-facing API of the native data plane — the
//! only FFI edge of the crate. One file per part; each adds its functions
//! and classes to the module in `register`.

use pyo3::prelude::*;

mod assertion;
mod authn;
mod front;
mod introspection;
mod limits;
mod lookup;
mod mtls;
mod risk;
mod routes;
mod session;
mod shedding;
mod tracing;

/// The version of the native core (the crate's version).
#[pyfunction]
fn version() -> &'static str {
    crate::VERSION
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(version, m)?)?;
    assertion::register(m)?;
    authn::register(m)?;
    front::register(m)?;
    introspection::register(m)?;
    limits::register(m)?;
    lookup::register(m)?;
    mtls::register(m)?;
    risk::register(m)?;
    routes::register(m)?;
    session::register(m)?;
    shedding::register(m)?;
    tracing::register(m)?;
    Ok(())
}
