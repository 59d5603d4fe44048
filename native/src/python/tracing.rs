//! The native path's span records (`crate::tracing`), for
//! `bastion.audit.native_drain` to export through the OpenTelemetry SDK.

use pyo3::prelude::*;

use crate::tracing;

/// `(trace_id, span_id, parent, tracestate, start_ns, end_ns, route, method,
/// path, outcome, status, door)`; `parent` is `(span_id, trace_flags)` or
/// `None`, `door` `None` (the gateway's) or `"forward_auth"`.
type SpanRow = (
    u128,
    u64,
    Option<(u64, u8)>,
    Option<String>,
    u64,
    u64,
    Option<String>,
    String,
    String,
    &'static str,
    u16,
    Option<&'static str>,
);

/// Take up to `max` span records of sampled native requests, oldest first.
#[pyfunction]
fn trace_drain(max: usize) -> Vec<SpanRow> {
    tracing::spans()
        .drain(max)
        .into_iter()
        .map(|r| {
            (
                r.trace_id, r.span_id, r.parent, r.state, r.start, r.end, r.route, r.method,
                r.path, r.outcome, r.status, r.door,
            )
        })
        .collect()
}

/// Span records dropped because the queue was full.
#[pyfunction]
fn trace_dropped() -> u64 {
    tracing::spans().dropped()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(trace_drain, m)?)?;
    m.add_function(wrap_pyfunction!(trace_dropped, m)?)?;
    Ok(())
}
