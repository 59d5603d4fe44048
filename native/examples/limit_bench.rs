//! Rough cost of the native limit step, the audit push and the metrics record
//! (`cargo run --release --example limit_bench [threads]`); not a test.

use std::sync::Arc;
use std::time::Instant;

use _native::audit;
use _native::http::Identity;
use _native::limit::{self, RouteLimits, Store};
use _native::metrics;
use serde_json::json;

fn main() {
    let threads: usize = std::env::args()
        .nth(1)
        .and_then(|t| t.parse().ok())
        .unwrap_or(1);
    let limits = RouteLimits::from_section(&json!({"rules": [
        {"per": "key", "prefix": "orders:key:", "rate": 1_000_000, "period": 1.0, "burst": 1_000_000},
    ]}))
    .expect("valid section");
    let limits = Arc::new(limits);
    let store = Store::current();
    let n = 1_000_000;
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let limits = Arc::clone(&limits);
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let identity = Identity {
                    method: "api_key",
                    subject: Some("user".into()),
                    key_id: Some(format!("key-{t}")),
                    ..Identity::default()
                };
                let slot = metrics::global().slot(Some("orders"));
                for _ in 0..n {
                    let d = limit::check(
                        &store,
                        &limits,
                        &identity,
                        &[],
                        None,
                        "orders",
                        limit::now_us(),
                    );
                    std::hint::black_box(&d);
                }
                let check = start.elapsed();
                for _ in 0..n {
                    slot.record(None, 0.0003);
                }
                let record = start.elapsed() - check;
                for i in 0..n {
                    audit::queue().allow(
                        "orders",
                        identity.subject.as_deref(),
                        identity.key_id.as_deref(),
                        None,
                        1_700_000_000.0 + (i / 1000) as f64,
                    );
                }
                audit::queue().drain(usize::MAX);
                let push = start.elapsed() - check - record;
                (check, record, push)
            })
        })
        .collect();
    for handle in handles {
        if let Ok((check, record, push)) = handle.join() {
            println!(
                "per op: limit::check {:.0} ns, metrics record {:.0} ns, audit allow {:.0} ns",
                check.as_nanos() as f64 / n as f64,
                record.as_nanos() as f64 / n as f64,
                push.as_nanos() as f64 / n as f64
            );
        }
    }
}
