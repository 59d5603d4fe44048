//! `bastion._native`: the Python-facing API of the native data plane.

use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::router::{Routed, Why};
use crate::routes::RouteTable;

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

/// A loaded route table (`bastion.gateway.compile.compile_table`'s JSON).
#[pyclass(module = "bastion._native", name = "RouteTable", frozen)]
struct PyRouteTable {
    table: Arc<RouteTable>,
}

#[pymethods]
impl PyRouteTable {
    /// Load the table; raises `ValueError` for another version or a bad table.
    #[new]
    fn new(json: &str) -> PyResult<Self> {
        let table =
            RouteTable::from_json(json).map_err(|err| PyValueError::new_err(err.to_string()))?;
        Ok(Self {
            table: Arc::new(table),
        })
    }

    /// `(route index, upstream path and query)` when the native core would
    /// serve the request itself; `None` when it defers it to Python.
    #[pyo3(signature = (host, method, target))]
    fn route(&self, host: Option<&str>, method: &str, target: &str) -> Option<(usize, String)> {
        let method = http::Method::from_bytes(method.as_bytes()).ok()?;
        match self.table.route(host, &method, target) {
            Routed::Native {
                route,
                upstream_path_and_query,
            } => Some((route.index, upstream_path_and_query)),
            Routed::Defer(_) => None,
        }
    }

    /// Why the native core defers the request (`None` when it serves it).
    #[pyo3(signature = (host, method, target))]
    fn defer_reason(&self, host: Option<&str>, method: &str, target: &str) -> Option<&'static str> {
        let Ok(method) = http::Method::from_bytes(method.as_bytes()) else {
            return Some(Why::Method.label());
        };
        match self.table.route(host, &method, target) {
            Routed::Native { .. } => None,
            Routed::Defer(why) => Some(why.label()),
        }
    }

    fn __len__(&self) -> usize {
        self.table.routes().len()
    }
}

/// Put the route table `json` in force for every request from now on
/// (`routes reload`: one swap). Raises `ValueError` for another version or an
/// invalid table; the table in force then stays.
#[pyfunction]
fn routes_load(json: &str) -> PyResult<()> {
    let table =
        RouteTable::from_json(json).map_err(|err| PyValueError::new_err(err.to_string()))?;
    crate::plane::plane().routes.replace(Arc::new(table));
    Ok(())
}

/// `RouteTable.route` on the table in force (what the listener decides).
#[pyfunction]
#[pyo3(signature = (host, method, target))]
fn routes_route(host: Option<&str>, method: &str, target: &str) -> Option<(usize, String)> {
    let method = http::Method::from_bytes(method.as_bytes()).ok()?;
    let table = crate::plane::plane().routes.current();
    match table.route(host, &method, target) {
        Routed::Native {
            route,
            upstream_path_and_query,
        } => Some((route.index, upstream_path_and_query)),
        Routed::Defer(_) => None,
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(version, m)?)?;
    m.add_function(wrap_pyfunction!(risk_flag, m)?)?;
    m.add_function(wrap_pyfunction!(risk_clear, m)?)?;
    m.add_function(wrap_pyfunction!(risk_flagged, m)?)?;
    m.add_class::<PyRouteTable>()?;
    m.add_function(wrap_pyfunction!(routes_load, m)?)?;
    m.add_function(wrap_pyfunction!(routes_route, m)?)?;
    Ok(())
}
