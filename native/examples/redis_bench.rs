//! Throughput of the native limit step on Redis (one pipelined connection):
//! `cargo run --release --example redis_bench [host] [port] [in-flight]`; not a test.

use std::sync::Arc;
use std::time::Instant;

use _native::http::Identity;
use _native::limit::redis::{self, RedisConfig};
use _native::limit::RouteLimits;
use serde_json::json;

fn main() {
    let mut args = std::env::args().skip(1);
    let host = args.next().unwrap_or_else(|| "127.0.0.1".into());
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or(6379);
    let in_flight: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(64);
    redis::configure(Some(RedisConfig {
        host: Some(host),
        port,
        path: None,
        db: 0,
        username: None,
        password: None,
        key_prefix: "bench:".into(),
        connect_timeout: 1.0,
        timeout: 1.0,
        tls: None,
    }));
    let limits = Arc::new(
        RouteLimits::from_section(&json!({"rules": [
            {"per": "key", "prefix": "r:key:", "rate": 1_000_000, "period": 1.0, "burst": 1_000_000},
        ], "store": "redis"}))
        .expect("valid section"),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let total = 50_000;
    rt.block_on(async move {
        let limiter = redis::current().expect("configured");
        let start = Instant::now();
        let tasks: Vec<_> = (0..in_flight)
            .map(|t| {
                let limiter = Arc::clone(&limiter);
                let limits = Arc::clone(&limits);
                tokio::spawn(async move {
                    let identity = Identity {
                        method: "api_key",
                        subject: Some("u".into()),
                        key_id: Some(format!("k{t}")),
                        ..Identity::default()
                    };
                    let mut failed = 0;
                    for _ in 0..total / in_flight {
                        if redis::check(&limiter, &limits, &identity, &[], None, "r").await.is_err() {
                            failed += 1;
                        }
                    }
                    failed
                })
            })
            .collect();
        let mut failed = 0;
        for task in tasks {
            failed += task.await.unwrap_or(0);
        }
        let elapsed = start.elapsed();
        println!(
            "{} checks, {in_flight} in flight, one thread: {:.0} checks/s ({:.1} µs each), {failed} failed",
            total,
            total as f64 / elapsed.as_secs_f64(),
            elapsed.as_micros() as f64 / total as f64
        );
    });
}
