//! `bastion._native`: the Python-facing API of the native data plane.

use std::os::fd::FromRawFd;
use std::sync::Mutex;
use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use crate::server::{self, FrontConfig, FrontError};

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

fn front_error(error: FrontError) -> PyErr {
    match error {
        FrontError::Io(e) => PyOSError::new_err(e.to_string()),
        FrontError::Stopped => PyRuntimeError::new_err(error.to_string()),
        other => PyValueError::new_err(other.to_string()),
    }
}

/// The native public listener (see `native/src/server.rs`).
///
/// `Front(config_json)`, then `start(fd)` with a bound, listening TCP socket
/// whose ownership passes to the front (`socket.detach()`), `reload_tls()`,
/// and `stop(graceful_timeout)` (blocking: call it via `asyncio.to_thread`).
#[pyclass(module = "bastion._native")]
struct Front {
    config: FrontConfig,
    running: Mutex<Option<server::Front>>,
}

#[pymethods]
impl Front {
    #[new]
    fn new(config_json: &str) -> PyResult<Self> {
        let config: FrontConfig = serde_json::from_str(config_json)
            .map_err(|e| PyValueError::new_err(format!("native front configuration: {e}")))?;
        Ok(Front {
            config,
            running: Mutex::new(None),
        })
    }

    /// Serve the listening socket `fd` (its ownership passes to the front);
    /// returns once connections are accepted.
    fn start(&self, py: Python<'_>, fd: i32) -> PyResult<()> {
        let mut running = self
            .running
            .lock()
            .map_err(|_| PyRuntimeError::new_err("native front state poisoned"))?;
        if running.is_some() {
            return Err(PyRuntimeError::new_err(
                "the native front is already running",
            ));
        }
        if fd < 0 {
            return Err(PyValueError::new_err(
                "start() needs a listening socket's fd",
            ));
        }
        // SAFETY: the caller hands over a bound, listening TCP socket it no
        // longer owns (Python's `socket.detach()`); nothing else closes `fd`.
        let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
        let config = self.config.clone();
        let front = py
            .detach(|| server::Front::start(config, listener))
            .map_err(front_error)?;
        *running = Some(front);
        Ok(())
    }

    /// Re-read the TLS certificate and key files; raises `ValueError` (the
    /// previous pair stays in service) when the new pair is unusable.
    fn reload_tls(&self) -> PyResult<()> {
        let running = self
            .running
            .lock()
            .map_err(|_| PyRuntimeError::new_err("native front state poisoned"))?;
        match running.as_ref() {
            Some(front) => front
                .reload_tls()
                .map_err(|e| PyValueError::new_err(e.to_string())),
            None => Err(PyRuntimeError::new_err("the native front is not running")),
        }
    }

    /// Stop accepting, let in-flight requests finish for up to
    /// `graceful_timeout` seconds, stop the runtime. True when all finished.
    fn stop(&self, py: Python<'_>, graceful_timeout: f64) -> PyResult<bool> {
        let front = self
            .running
            .lock()
            .map_err(|_| PyRuntimeError::new_err("native front state poisoned"))?
            .take();
        let Some(mut front) = front else {
            return Ok(true);
        };
        let graceful = Duration::from_secs_f64(graceful_timeout.clamp(0.0, 86_400.0));
        Ok(py.detach(move || front.stop(graceful)))
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(version, m)?)?;
    m.add_function(wrap_pyfunction!(risk_flag, m)?)?;
    m.add_function(wrap_pyfunction!(risk_clear, m)?)?;
    m.add_function(wrap_pyfunction!(risk_flagged, m)?)?;
    m.add_class::<Front>()?;
    Ok(())
}
