//! Route tables (`bastion._native.RouteTable`): load, and route a request for the equivalence tests.

use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::router::{is_method_token, Routed, Target, Why};
use crate::routes::RouteTable;

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
        if !is_method_token(method) {
            return None; // the gateway door's `framing` refuses it first
        }
        let method = http::Method::from_bytes(method.as_bytes()).ok()?;
        let host = wire_host(host).ok()?;
        let (route, upstream) = self
            .table
            .route_upstream(host.as_deref(), &method, target)
            .ok()?;
        Some((route.index, upstream))
    }

    /// Why the native core defers the request (`None` when it serves it).
    #[pyo3(signature = (host, method, target))]
    fn defer_reason(&self, host: Option<&str>, method: &str, target: &str) -> Option<&'static str> {
        if !is_method_token(method) {
            return Some(Why::Method.label());
        }
        let Ok(method) = http::Method::from_bytes(method.as_bytes()) else {
            return Some(Why::Method.label());
        };
        let Ok(host) = wire_host(host) else {
            return Some(NOT_ON_THE_WIRE);
        };
        match self.table.route(host.as_deref(), &method, target) {
            Routed::Native { .. } => None,
            Routed::Defer(why) => Some(why.label()),
        }
    }

    /// The `match` refusal the native core renders for the request
    /// (`crate::refusal::unmatched`: its head passing `framing`), as
    /// `(status, reason, detail, Allow)`; `None` when it serves or defers it.
    #[pyo3(signature = (host, method, target))]
    fn refusal(
        &self,
        host: Option<&str>,
        method: &str,
        target: &str,
    ) -> Option<(u16, &'static str, String, Option<String>)> {
        let method = http::Method::from_bytes(method.as_bytes()).ok()?;
        let host = wire_host(host).ok()?;
        let Routed::Defer(why) = self.table.route(host.as_deref(), &method, target) else {
            return None;
        };
        let refusal =
            crate::refusal::unmatched(&self.table, host.as_deref(), &method, target, why)?;
        let problem = refusal.problem;
        let allow = problem
            .headers
            .iter()
            .find(|(name, _)| name == http::header::ALLOW)
            .and_then(|(_, value)| value.to_str().ok())
            .map(str::to_owned);
        Some((problem.status.as_u16(), problem.code, problem.detail, allow))
    }

    /// How the app reads `target` (`RouteTable::target`): `("gateway", normal
    /// path, query or None)`, `("refused", detail, "invalid_path" | "app_invalid_path")`
    /// (Python's 400, by the gateway's `match` step or by the app before it), or
    /// `("python", why)` (the control plane's, or not read natively).
    fn target(&self, target: &str) -> (&'static str, String, Option<String>) {
        match self.table.target(target) {
            Target::Gateway { path, query } => {
                ("gateway", path.into_owned(), query.map(str::to_owned))
            }
            Target::Refused { detail, why } => {
                ("refused", detail.to_owned(), Some(why.label().to_owned()))
            }
            Target::Python(why) => ("python", why.label().to_owned(), None),
        }
    }

    fn __len__(&self) -> usize {
        self.table.routes().len()
    }
}

/// `defer_reason` of a Host no request can carry (a character past U+00FF).
const NOT_ON_THE_WIRE: &str = "host_not_latin1";

/// The bytes of a Host value whose Python `str` is `host`: Python's servers
/// decode a header value as latin-1, so a character past U+00FF is on no wire.
fn wire_host(host: Option<&str>) -> Result<Option<Vec<u8>>, ()> {
    host.map(|host| {
        host.chars()
            .map(|c| u8::try_from(u32::from(c)).map_err(|_| ()))
            .collect()
    })
    .transpose()
}

impl PyRouteTable {
    /// The loaded table, for the listener to put in force.
    #[allow(dead_code)] // used once the coordinator wires the table into the gateway
    pub(crate) fn table(&self) -> Arc<RouteTable> {
        Arc::clone(&self.table)
    }
}

/// Put the table (`compile_table`'s JSON) in force for the native front;
/// requests in flight finish on the previous one. Raises `ValueError` (the
/// previous table stays) for a table the native core cannot load.
#[pyfunction]
fn routes_load(json: &str) -> PyResult<()> {
    crate::plane::load_table(json).map_err(PyValueError::new_err)
}

/// Take the table out of force: the native front then defers every request
/// to Python (for a process whose gateway is not compiled from routes, as in
/// the HTTP server's tests).
#[pyfunction]
fn routes_unload() {
    crate::plane::plane().table.store(None);
}

/// Route a request on the table in force (`routes_load`): `(route index,
/// upstream path and query)` when the native core serves it, else `None`.
#[pyfunction]
#[pyo3(signature = (host, method, target))]
fn routes_route(host: Option<&str>, method: &str, target: &str) -> Option<(usize, String)> {
    let table = crate::plane::plane().table.load_full()?;
    let method = http::Method::from_bytes(method.as_bytes()).ok()?;
    let host = wire_host(host).ok()?;
    let (route, upstream) = table
        .routes
        .route_upstream(host.as_deref(), &method, target)
        .ok()?;
    Some((route.index, upstream))
}

/// Add this part's functions and classes to the module.
pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyRouteTable>()?;
    m.add_function(wrap_pyfunction!(routes_load, m)?)?;
    m.add_function(wrap_pyfunction!(routes_unload, m)?)?;
    m.add_function(wrap_pyfunction!(routes_route, m)?)?;
    Ok(())
}
