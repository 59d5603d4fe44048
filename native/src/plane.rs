//! The process-wide state of the native data plane: what the control plane
//! pushes in (caches, flags, the route table) and what the front reads.
//!
//! One per process, like the Python control plane it mirrors: every PyO3
//! function and every listener thread sees the same `Plane`.

use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwapOption;

use crate::authn::Caches;
use crate::respond::RequestIds;
use crate::risk::RiskFlags;
use crate::table::Table;
use crate::upstream::FailureLog;

/// Everything the native path reads per request besides the request itself.
#[derive(Default)]
pub struct Plane {
    /// Flagged keys / addresses / subjects / clients (their requests defer).
    pub risk: RiskFlags,
    /// The route table in force; `None` until the control plane loads one
    /// (every request defers meanwhile).
    pub table: ArcSwapOption<Table>,
    /// The request ids of native responses.
    pub request_ids: RequestIds,
    /// Which upstream failures get a log line (one per target and cause per interval).
    pub failures: FailureLog,
    /// API keys, verified tokens, signing keys, the jti deny-list.
    pub authn: Caches,
}

/// The process's plane.
pub fn plane() -> &'static Plane {
    static PLANE: OnceLock<Plane> = OnceLock::new();
    PLANE.get_or_init(Plane::default)
}

/// The process's authentication caches (what `bastion.gateway.native_push` fills).
pub fn caches() -> &'static Caches {
    &plane().authn
}

/// Put a new table in force (`routes_load`): requests in flight finish on the old one.
pub fn load_table(json: &str) -> Result<(), String> {
    let table = Table::from_json(json)?;
    plane().table.store(Some(Arc::new(table)));
    Ok(())
}
