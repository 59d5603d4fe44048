//! Rate limits, audit events and metrics: the GCRA store shared with Python, the audit queue's drain, native counters.

use std::collections::HashMap;
use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::audit::{self, AuditEvent, Door};
use crate::limit::{self, Bucket, Store};
use crate::metrics;

// -- rate limits --------------------------------------------------------------

/// A GCRA store of TATs (µs); `install()` makes it the one the native front
/// decides on (the runtime's gateway limiter does), so both share one budget.
#[pyclass(frozen, name = "LimitStore", module = "bastion._native")]
struct LimitStore {
    inner: Arc<Store>,
}

#[pymethods]
impl LimitStore {
    #[new]
    fn new() -> Self {
        LimitStore {
            inner: Arc::new(Store::new()),
        }
    }

    /// Make this the store the native front decides on.
    fn install(&self) {
        Store::install(Arc::clone(&self.inner));
    }

    /// Whether this is the store the native front decides on.
    fn installed(&self) -> bool {
        Arc::ptr_eq(&Store::current(), &self.inner)
    }

    /// Admit a request costing `cost` on every bucket or on none; returns
    /// `(admitted, now, tats_before)` (TATs `None` for unknown buckets).
    #[pyo3(signature = (keys, intervals, tolerances, cost, now = None))]
    fn take(
        &self,
        keys: Vec<String>,
        intervals: Vec<i64>,
        tolerances: Vec<i64>,
        cost: i64,
        now: Option<i64>,
    ) -> PyResult<(bool, i64, Vec<Option<i64>>)> {
        if keys.len() != intervals.len() || keys.len() != tolerances.len() || cost < 0 {
            return Err(PyValueError::new_err(
                "keys, intervals and tolerances must have one entry per bucket, cost >= 0",
            ));
        }
        let now = now.unwrap_or_else(limit::now_us);
        let buckets: Vec<Bucket<'_>> = keys
            .iter()
            .zip(intervals.iter().zip(&tolerances))
            .map(|(key, (&interval_us, &tolerance_us))| Bucket {
                key,
                interval_us,
                tolerance_us,
            })
            .collect();
        let take = self.inner.take(&buckets, cost, now);
        Ok((take.admitted, now, take.tats))
    }

    /// `take` for one bucket at cost 1 (the common request): `(admitted, now, tat_before)`.
    #[pyo3(signature = (key, interval, tolerance, now = None))]
    fn take_one(
        &self,
        key: &str,
        interval: i64,
        tolerance: i64,
        now: Option<i64>,
    ) -> (bool, i64, Option<i64>) {
        let now = now.unwrap_or_else(limit::now_us);
        let bucket = Bucket {
            key,
            interval_us: interval,
            tolerance_us: tolerance,
        };
        let take = self.inner.take(&[bucket], 1, now);
        (take.admitted, now, take.tats.first().copied().flatten())
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }
}

/// The native monotonic clock (µs) the shared store decides on.
#[pyfunction]
fn limit_now() -> i64 {
    limit::now_us()
}

fn parse_limits(json: &str) -> PyResult<Vec<limit::Limit>> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| PyValueError::new_err(e.to_string()))?;
    limit::parse_key_limits(&value).map_err(|e| PyValueError::new_err(e.0))
}

/// Set (`limits_json`: `[{"rate", "burst"}]`) or remove (`None`) a key's override.
#[pyfunction]
#[pyo3(signature = (key_id, limits_json))]
fn key_limit_override_set(key_id: &str, limits_json: Option<&str>) -> PyResult<()> {
    let limits = limits_json.map(parse_limits).transpose()?;
    limit::overrides().set(key_id, limits);
    Ok(())
}

/// Replace every override: `{"<key id>": [{"rate", "burst"}], ...}`.
#[pyfunction]
fn key_limit_overrides_replace(overrides_json: &str) -> PyResult<()> {
    let value: HashMap<String, serde_json::Value> =
        serde_json::from_str(overrides_json).map_err(|e| PyValueError::new_err(e.to_string()))?;
    let mut all = HashMap::with_capacity(value.len());
    for (key_id, entries) in value {
        let limits = limit::parse_key_limits(&entries).map_err(|e| PyValueError::new_err(e.0))?;
        all.insert(key_id, limits);
    }
    limit::overrides().replace_all(all);
    Ok(())
}

/// `(allowed, headers, retry_after)`.
type CheckRow = (bool, Vec<(String, String)>, Option<u64>);

fn check_row(decision: &limit::LimitDecision) -> CheckRow {
    let headers = decision
        .headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_owned()))
        .collect();
    (decision.allowed, headers, decision.retry_after)
}

/// What the parity bindings take: the section, the identity, the key's
/// effective limits and the client address.
fn parse_check_input(
    section_json: &str,
    key_id: Option<String>,
    subject: Option<String>,
    client_id: Option<String>,
    client_ip: Option<&str>,
    key_limits_json: Option<&str>,
) -> PyResult<(
    limit::RouteLimits,
    crate::http::Identity,
    Vec<limit::Limit>,
    Option<std::net::IpAddr>,
)> {
    let section: serde_json::Value =
        serde_json::from_str(section_json).map_err(|e| PyValueError::new_err(e.to_string()))?;
    let limits = limit::RouteLimits::from_section(&section)
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    let own = key_limits_json
        .map(parse_limits)
        .transpose()?
        .unwrap_or_default();
    let effective = match key_id.as_deref() {
        Some(key_id) => limit::effective_key_limits(key_id, &own).to_vec(),
        None => Vec::new(),
    };
    let identity = crate::http::Identity {
        method: "api_key",
        subject,
        client_id,
        key_id,
        ..crate::http::Identity::default()
    };
    let ip = client_ip
        .map(|text| text.parse::<std::net::IpAddr>())
        .transpose()
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok((limits, identity, effective, ip))
}

/// The native limit step on the installed store (parity tests against the
/// Python step): `(allowed, headers, retry_after)` for one request.
#[pyfunction]
#[pyo3(signature = (
    section_json, route, *, key_id = None, subject = None, client_id = None,
    client_ip = None, key_limits_json = None, now = None
))]
#[allow(clippy::too_many_arguments)]
fn limit_check(
    section_json: &str,
    route: &str,
    key_id: Option<String>,
    subject: Option<String>,
    client_id: Option<String>,
    client_ip: Option<&str>,
    key_limits_json: Option<&str>,
    now: Option<i64>,
) -> PyResult<CheckRow> {
    let (limits, identity, effective, ip) = parse_check_input(
        section_json,
        key_id,
        subject,
        client_id,
        client_ip,
        key_limits_json,
    )?;
    let decision = limit::check(
        &Store::current(),
        &limits,
        &identity,
        &effective,
        ip,
        route,
        now.unwrap_or_else(limit::now_us),
    );
    Ok(check_row(&decision))
}

/// Install (`config_json`: `storage.shared.resp.native_config`) or remove
/// (`None`) the Redis limiter the native path decides on.
#[pyfunction]
fn redis_limiter_configure(config_json: Option<&str>) -> PyResult<()> {
    let config = config_json
        .map(serde_json::from_str::<limit::redis::RedisConfig>)
        .transpose()
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    limit::redis::configure(config);
    Ok(())
}

/// The GCRA script the native Redis limiter runs (Python's, byte for byte).
#[pyfunction]
fn redis_gcra_script() -> &'static str {
    limit::redis::GCRA_SCRIPT
}

fn tool_runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))?;
    Ok(RUNTIME.get_or_init(|| rt))
}

/// The native limit step on the configured Redis (parity tests against the
/// Python limiter): `(allowed, headers, retry_after)`. Raises RuntimeError
/// when Redis did not decide (the native path would defer to Python).
#[pyfunction]
#[pyo3(signature = (
    section_json, route, *, key_id = None, subject = None, client_id = None,
    client_ip = None, key_limits_json = None
))]
#[allow(clippy::too_many_arguments)]
fn redis_limit_check(
    py: Python<'_>,
    section_json: &str,
    route: &str,
    key_id: Option<String>,
    subject: Option<String>,
    client_id: Option<String>,
    client_ip: Option<&str>,
    key_limits_json: Option<&str>,
) -> PyResult<CheckRow> {
    let (limits, identity, effective, ip) = parse_check_input(
        section_json,
        key_id,
        subject,
        client_id,
        client_ip,
        key_limits_json,
    )?;
    let limiter = limit::redis::current()
        .ok_or_else(|| PyValueError::new_err("no Redis limiter configured"))?;
    let rt = tool_runtime()?;
    let decision = py
        .detach(|| {
            rt.block_on(limit::redis::check(
                &limiter, &limits, &identity, &effective, ip, route,
            ))
        })
        .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))?;
    Ok(check_row(&decision))
}

// -- audit -------------------------------------------------------------------

type MinuteRow = (i64, String, &'static str, Option<String>, u64);

fn denial_dict<'py>(py: Python<'py>, event: &AuditEvent) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("status", event.status)?;
    dict.set_item("reason", event.reason.as_deref())?;
    dict.set_item("step", event.step)?;
    dict.set_item("door", event.door.as_str())?;
    dict.set_item("route", event.route.as_deref())?;
    dict.set_item("method", event.method.as_str())?;
    dict.set_item("path", event.path.as_str())?;
    dict.set_item("subject", event.subject.as_deref())?;
    dict.set_item("client_id", event.client_id.as_deref())?;
    dict.set_item("key_id", event.key_id.as_deref())?;
    dict.set_item("ip", event.ip.as_deref())?;
    dict.set_item("user_agent", event.user_agent.as_deref())?;
    dict.set_item("request_id", event.request_id.as_deref())?;
    dict.set_item("latency_us", event.latency_us)?;
    dict.set_item("timestamp", event.timestamp)?;
    Ok(dict)
}

/// Take up to `max` queued decisions: `(denials, allow_counts)`; denials as
/// dicts (oldest first), allows counted per `(minute, route, principal,
/// principal_id, count)` as `gateway.audit.count_allowed` keys them.
#[pyfunction]
fn audit_drain<'py>(
    py: Python<'py>,
    max: usize,
) -> PyResult<(Vec<Bound<'py, PyDict>>, Vec<MinuteRow>)> {
    let drained = audit::queue().drain(max);
    let denials = drained
        .denials
        .iter()
        .map(|e| denial_dict(py, e))
        .collect::<PyResult<Vec<_>>>()?;
    let allows = drained
        .allows
        .into_iter()
        .map(|c| (c.minute, c.route, c.principal, c.principal_id, c.count))
        .collect();
    Ok((denials, allows))
}

/// Events dropped because the queue was full: `(allows, denials)`.
#[pyfunction]
fn audit_dropped() -> (u64, u64) {
    audit::queue().dropped()
}

/// Events waiting to be drained.
#[pyfunction]
fn audit_pending() -> usize {
    audit::queue().len()
}

/// Bound the queue (settings `audit.max_queue`).
#[pyfunction]
fn audit_set_capacity(capacity: usize) {
    audit::queue().set_capacity(capacity);
}

/// Queue one decision as the native front does (tests, and doors served in Python).
#[pyfunction]
#[pyo3(signature = (
    allowed, status, route, method, path, *, reason = None, step = None, door = "gateway",
    subject = None, client_id = None, key_id = None, ip = None, user_agent = None,
    request_id = None, latency_us = 0, timestamp = None
))]
#[allow(clippy::too_many_arguments)]
fn audit_record(
    allowed: bool,
    status: u16,
    route: Option<String>,
    method: String,
    path: String,
    reason: Option<String>,
    step: Option<&str>,
    door: &str,
    subject: Option<String>,
    client_id: Option<String>,
    key_id: Option<String>,
    ip: Option<String>,
    user_agent: Option<String>,
    request_id: Option<String>,
    latency_us: u64,
    timestamp: Option<f64>,
) -> PyResult<()> {
    let door = match door {
        "gateway" => Door::Gateway,
        "websocket" => Door::WebSocket,
        "forward_auth" => Door::ForwardAuth,
        other => return Err(PyValueError::new_err(format!("unknown door {other:?}"))),
    };
    let step = match step {
        None => None,
        Some("limit") => Some("limit"),
        Some("proxy") => Some("proxy"),
        Some("body") => Some("body"),
        Some(other) => return Err(PyValueError::new_err(format!("unknown step {other:?}"))),
    };
    audit::queue().push(AuditEvent {
        allowed,
        status,
        reason,
        step,
        door,
        route,
        method,
        path,
        subject,
        client_id,
        key_id,
        ip,
        user_agent,
        request_id,
        latency_us,
        timestamp: timestamp.unwrap_or_else(audit::unix_now),
    });
    Ok(())
}

// -- metrics -----------------------------------------------------------------

type RouteRow = (
    String,
    Vec<(&'static str, u64)>,
    Vec<(&'static str, u64)>,
    Vec<u64>,
    f64,
);

/// Every route's native counters: `(route, outcomes, upstream_errors,
/// buckets (non-cumulative, +Inf last), sum_seconds)`.
#[pyfunction]
fn metrics_snapshot() -> Vec<RouteRow> {
    metrics::global()
        .snapshot()
        .into_iter()
        .map(|s| {
            (
                s.route,
                s.outcomes,
                s.upstream_errors,
                s.buckets,
                s.sum_seconds,
            )
        })
        .collect()
}

/// Count one request as the native front does (tests).
#[pyfunction]
#[pyo3(signature = (route, code, seconds))]
fn metrics_record(route: Option<&str>, code: Option<&str>, seconds: f64) {
    metrics::global().record(route, code, seconds);
}

/// The latency histogram's bounds (Python's `GATEWAY_BUCKETS`).
#[pyfunction]
fn metrics_buckets() -> Vec<f64> {
    metrics::BUCKETS.to_vec()
}

/// Up to `max` log lines of the native path: `[(level, logger, message)]`.
#[pyfunction]
fn log_drain(max: usize) -> Vec<(u8, &'static str, String)> {
    crate::log::drain(max)
}

/// The native upstream pools: `[(scheme://host:port, idle connections, connections opened)]`.
#[pyfunction]
fn upstream_pools() -> Vec<(String, usize, u64)> {
    crate::upstream::Target::all()
        .iter()
        .map(|t| {
            let name = t.key().split('|').next().unwrap_or_default().to_owned();
            (name, t.idle_connections(), t.connections_opened())
        })
        .collect()
}

/// The shared limiter is down (`True`) or up again (`False`), as Python's
/// `BackendHealth` saw it: the native path reports its own transitions
/// against this flag (`limiter_drain`), so an outage is reported once.
#[pyfunction]
fn limiter_down(down: bool) {
    crate::limit::outage::outage().set_down(down);
}

/// Whether the shared limiter is currently taken to be down.
#[pyfunction]
fn limiter_is_down() -> bool {
    crate::limit::outage::outage().is_down()
}

/// The shared limiter's transitions the native path saw since the last call, in
/// order — `("down", error, fail_closed)` or `("up", "", False)` — and how many
/// of its calls failed meanwhile (`limit::outage`).
#[pyfunction]
fn limiter_drain() -> (Vec<(&'static str, String, bool)>, u64) {
    let (transitions, errors) = limit::outage::outage().drain();
    let rows = transitions
        .into_iter()
        .map(|t| match t {
            limit::outage::Transition::Down { error, fail_closed } => ("down", error, fail_closed),
            limit::outage::Transition::Up => ("up", String::new(), false),
        })
        .collect();
    (rows, errors)
}

/// The live node count of Python's heartbeat (`NodeCount`): a fail-open limit
/// is divided by it while Redis is unreachable.
#[pyfunction]
fn limiter_nodes(nodes: u64) {
    limit::outage::outage().set_nodes(nodes);
}

/// Add this part's functions and classes to the module.
pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(log_drain, m)?)?;
    m.add_function(wrap_pyfunction!(limiter_down, m)?)?;
    m.add_function(wrap_pyfunction!(limiter_is_down, m)?)?;
    m.add_function(wrap_pyfunction!(limiter_drain, m)?)?;
    m.add_function(wrap_pyfunction!(limiter_nodes, m)?)?;
    m.add_function(wrap_pyfunction!(upstream_pools, m)?)?;
    m.add_class::<LimitStore>()?;
    m.add_function(wrap_pyfunction!(limit_now, m)?)?;
    m.add_function(wrap_pyfunction!(key_limit_override_set, m)?)?;
    m.add_function(wrap_pyfunction!(key_limit_overrides_replace, m)?)?;
    m.add_function(wrap_pyfunction!(limit_check, m)?)?;
    m.add_function(wrap_pyfunction!(redis_limiter_configure, m)?)?;
    m.add_function(wrap_pyfunction!(redis_gcra_script, m)?)?;
    m.add_function(wrap_pyfunction!(redis_limit_check, m)?)?;
    m.add_function(wrap_pyfunction!(audit_drain, m)?)?;
    m.add_function(wrap_pyfunction!(audit_dropped, m)?)?;
    m.add_function(wrap_pyfunction!(audit_pending, m)?)?;
    m.add_function(wrap_pyfunction!(audit_set_capacity, m)?)?;
    m.add_function(wrap_pyfunction!(audit_record, m)?)?;
    m.add_function(wrap_pyfunction!(metrics_snapshot, m)?)?;
    m.add_function(wrap_pyfunction!(metrics_record, m)?)?;
    m.add_function(wrap_pyfunction!(metrics_buckets, m)?)?;
    Ok(())
}
