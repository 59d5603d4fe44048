//! The native gateway's counters: requests by route and outcome and the
//! latency histogram, with the names, labels and buckets of Python's
//! `bastion.observability.metrics` (`bastion_gateway_requests_total{route,outcome}`,
//! `bastion_gateway_request_duration_seconds{route}`, `bastion_rate_limited_total`,
//! `bastion_upstream_errors_total{route,reason}`).
//!
//! Atomics only on the hot path: a route's [`RouteSlot`] is looked up once
//! (the route table can keep the `Arc`) and [`RouteSlot::record`] is a few
//! relaxed `fetch_add`s. Python's collector adds a [`Snapshot`] into its own
//! families at scrape time, so each series appears once in `/metrics`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

/// Upper bounds (seconds) of the latency histogram (Python's `GATEWAY_BUCKETS`), then +Inf.
pub const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The `route` label of requests that matched no route.
pub const NO_ROUTE: &str = "(none)";

/// The outcomes the native path produces; anything else folds into `other`
/// (Python folds unknown codes the same way).
pub const OUTCOMES: &[&str] = &[
    "allowed",
    "rate_limited",
    "upstream_error",
    "upstream_tls_error",
    "request_too_large",
    "rate_limiter_unavailable",
    "service_unavailable",
    "bad_request",
    "invalid_api_key",
    "ip_not_allowed",
    // The authenticate refusals rendered natively (`authn::Unadmitted`).
    "invalid_token",
    "unauthenticated",
    "api_key_in_query",
    // A failed control-plane lookup (`lookup`).
    "introspection_unavailable",
    "database_unavailable",
    // The refusals of `crate::refusal` (framing, match, body, authorize). Not
    // `websocket_not_allowed`: Python folds it into `other` until a WebSocket
    // upgrade it served imported `bastion.gateway.websocket` (and a minute passed).
    "invalid_method",
    "invalid_host",
    "headers_too_large",
    "bad_request_framing",
    "route_not_found",
    "method_not_allowed",
    "invalid_path",
    "body_too_large",
    // bastion's own framing refusal (`hygiene::Refused::ForwardedFor`): no Python code.
    "invalid_forwarded_for",
    "forbidden",
    "route_not_allowed",
    "insufficient_scope",
    "missing_role",
    "claim_mismatch",
    // CORS and load shedding (their error classes' codes, which Python counts by name).
    "cors_origin_not_allowed",
    "cors_method_not_allowed",
    "cors_header_not_allowed",
    "overloaded",
    // The forward-auth door's own refusals (`forward_auth`).
    "forward_auth_untrusted",
    "forward_auth_bad_request",
    "forward_auth_ambiguous",
    "cancelled",
    "other",
];
const ALLOWED: usize = 0;
const UPSTREAM_ERROR: usize = 2;
const OTHER: usize = OUTCOMES.len() - 1;

/// The codes Python counts as `upstream_error` (and by reason in `bastion_upstream_errors`).
pub const UPSTREAM_CODES: [&str; 3] = [
    "upstream_aborted",
    "upstream_timeout",
    "upstream_unavailable",
];

/// At most this many route slots (routes come from configuration).
const MAX_ROUTES: usize = 4096;

/// One route's counters.
pub struct RouteSlot {
    pub label: String,
    outcomes: [AtomicU64; OUTCOMES.len()],
    upstream: [AtomicU64; UPSTREAM_CODES.len()],
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

impl RouteSlot {
    fn new(label: &str) -> Self {
        RouteSlot {
            label: label.to_owned(),
            // Over 32 elements: no `Default` for the array.
            outcomes: std::array::from_fn(|_| AtomicU64::new(0)),
            upstream: Default::default(),
            buckets: Default::default(),
            sum_ns: AtomicU64::new(0),
        }
    }

    /// Count one request that ended with `code` (`None`: allowed) after `seconds`.
    pub fn record(&self, code: Option<&str>, seconds: f64) {
        // bisect_left: the first bound >= seconds.
        let bucket = BUCKETS.partition_point(|bound| *bound < seconds);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = if seconds.is_finite() && seconds > 0.0 {
            (seconds * 1e9) as u64
        } else {
            0
        };
        self.sum_ns.fetch_add(nanos, Ordering::Relaxed);
        let outcome = match code {
            None => ALLOWED,
            Some(code) => match UPSTREAM_CODES.iter().position(|c| *c == code) {
                Some(index) => {
                    self.upstream[index].fetch_add(1, Ordering::Relaxed);
                    UPSTREAM_ERROR
                }
                None => OUTCOMES
                    .iter()
                    .position(|o| *o == code && *o != "allowed" && *o != "upstream_error")
                    .unwrap_or(OTHER),
            },
        };
        self.outcomes[outcome].fetch_add(1, Ordering::Relaxed);
    }

    /// The non-zero outcome counts, the upstream errors by code, the
    /// non-cumulative bucket counts (+Inf last) and the sum of seconds.
    pub fn snapshot(&self) -> Snapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Snapshot {
            route: self.label.clone(),
            outcomes: OUTCOMES
                .iter()
                .zip(&self.outcomes)
                .filter_map(|(name, n)| Some((*name, load(n))).filter(|(_, n)| *n > 0))
                .collect(),
            upstream_errors: UPSTREAM_CODES
                .iter()
                .zip(&self.upstream)
                .filter_map(|(name, n)| Some((*name, load(n))).filter(|(_, n)| *n > 0))
                .collect(),
            buckets: self.buckets.iter().map(load).collect(),
            sum_seconds: load(&self.sum_ns) as f64 / 1e9,
        }
    }
}

/// What one route counted so far.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub route: String,
    pub outcomes: Vec<(&'static str, u64)>,
    pub upstream_errors: Vec<(&'static str, u64)>,
    pub buckets: Vec<u64>,
    pub sum_seconds: f64,
}

/// Every route's slot.
#[derive(Default)]
pub struct Metrics {
    routes: RwLock<HashMap<String, Arc<RouteSlot>>>,
}

impl Metrics {
    /// The slot of `route` (`None`: no route matched), created on first use.
    pub fn slot(&self, route: Option<&str>) -> Arc<RouteSlot> {
        let label = route.unwrap_or(NO_ROUTE);
        if let Some(slot) = self
            .routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(label)
        {
            return Arc::clone(slot);
        }
        let mut routes = self.routes.write().unwrap_or_else(|p| p.into_inner());
        let label = if routes.len() >= MAX_ROUTES && !routes.contains_key(label) {
            "other"
        } else {
            label
        };
        Arc::clone(
            routes
                .entry(label.to_owned())
                .or_insert_with(|| Arc::new(RouteSlot::new(label))),
        )
    }

    /// Count one request (looks the slot up; keep the slot to skip that).
    pub fn record(&self, route: Option<&str>, code: Option<&str>, seconds: f64) {
        self.slot(route).record(code, seconds);
    }

    /// Every route's counts, sorted by route.
    pub fn snapshot(&self) -> Vec<Snapshot> {
        let routes = self.routes.read().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<Snapshot> = routes.values().map(|slot| slot.snapshot()).collect();
        all.sort_by(|a, b| a.route.cmp(&b.route));
        all
    }
}

/// The process-wide native metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_buckets_and_upstream_errors() {
        let metrics = Metrics::default();
        metrics.record(Some("orders"), None, 0.0005); // le=0.0005 (bisect_left)
        metrics.record(Some("orders"), None, 0.0007);
        metrics.record(Some("orders"), Some("rate_limited"), 0.0001);
        metrics.record(Some("orders"), Some("upstream_timeout"), 30.0);
        metrics.record(Some("orders"), Some("surprise"), 0.02);
        metrics.record(None, Some("bad_request"), 0.0);
        let all = metrics.snapshot();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].route, "(none)");
        let orders = &all[1];
        assert_eq!(
            orders.outcomes,
            vec![
                ("allowed", 2),
                ("rate_limited", 1),
                ("upstream_error", 1),
                ("other", 1)
            ]
        );
        assert_eq!(orders.upstream_errors, vec![("upstream_timeout", 1)]);
        assert_eq!(
            orders.buckets,
            vec![2, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1]
        );
        assert!((orders.sum_seconds - 30.0213).abs() < 1e-6);
    }

    #[test]
    fn authenticate_refusals_are_counted_by_their_code() {
        let metrics = Metrics::default();
        for code in ["invalid_token", "unauthenticated", "api_key_in_query"] {
            metrics.record(Some("orders"), Some(code), 0.0001);
        }
        let outcomes = &metrics.snapshot()[0].outcomes;
        assert_eq!(
            outcomes,
            &vec![
                ("invalid_token", 1),
                ("unauthenticated", 1),
                ("api_key_in_query", 1)
            ]
        );
    }

    #[test]
    fn cors_and_shedding_refusals_are_counted_by_their_code() {
        // Python counts every error class's code by name: so must the native plane.
        let metrics = Metrics::default();
        let codes = [
            "cors_origin_not_allowed",
            "cors_method_not_allowed",
            "cors_header_not_allowed",
            "overloaded",
            "forward_auth_untrusted",
            "forward_auth_bad_request",
            "forward_auth_ambiguous",
        ];
        for code in codes {
            metrics.record(Some("orders"), Some(code), 0.0001);
        }
        let outcomes = &metrics.snapshot()[0].outcomes;
        let expected: Vec<_> = codes.iter().map(|code| (*code, 1)).collect();
        assert_eq!(outcomes, &expected);
    }

    #[test]
    fn threads_count_every_request() {
        let metrics = Arc::new(Metrics::default());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let metrics = Arc::clone(&metrics);
                std::thread::spawn(move || {
                    let slot = metrics.slot(Some("r"));
                    for _ in 0..10_000 {
                        slot.record(None, 0.001);
                    }
                })
            })
            .collect();
        for handle in handles {
            let _ = handle.join();
        }
        assert_eq!(metrics.snapshot()[0].outcomes, vec![("allowed", 40_000)]);
    }
}
