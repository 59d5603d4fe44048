//! The native gateway: one request through match → authenticate → authorize →
//! limit → mutate → proxy, or a `Defer` to the Python control plane.
//!
//! (Stub until the steps land: everything is deferred.)

use crate::http::{Body, ConnInfo, Outcome};

/// Decide one request. Never fails: anything unexpected is a `Defer`.
pub async fn handle(req: http::Request<Body>, _conn: &ConnInfo) -> Outcome {
    Outcome::Defer(req)
}
