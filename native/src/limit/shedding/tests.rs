//! The AIMD rules of `bastion.gateway.shedding.AdaptiveConcurrency` (and its
//! tests in `tests/ratelimit/`), the slot's lifetime, and the 503 document.

use http_body_util::BodyExt as _;
use serde_json::json;

use super::*;

fn config(initial: u32, minimum: u32, maximum: u32) -> SheddingConfig {
    SheddingConfig {
        initial,
        minimum,
        maximum,
        target_latency: 0.5,
        backoff: 0.5,
    }
}

#[test]
fn sheds_beyond_the_limit_and_counts() {
    let limiter = Arc::new(Adaptive::new(config(2, 1, 10)));
    let a = limiter.try_acquire().expect("first");
    let b = limiter.try_acquire().expect("second");
    assert!(limiter.try_acquire().is_none(), "third is shed");
    assert_eq!(limiter.snapshot(), (2.0, 2, 2, 1));
    a.finish(false);
    let c = limiter.try_acquire().expect("a slot came back");
    drop((b, c));
}

#[test]
fn a_slow_or_failed_exchange_cuts_once_per_target_latency() {
    let limiter = Arc::new(Adaptive::new(config(8, 1, 10)));
    let now = Instant::now();
    limiter.lock().inflight = 2;
    limiter.release(Duration::from_secs(1), false, now);
    assert_eq!(limiter.snapshot().0, 4.0, "x backoff");
    limiter.release(Duration::ZERO, true, now + Duration::from_millis(100));
    assert_eq!(limiter.snapshot().0, 4.0, "not again within target_latency");
    limiter.lock().inflight = 1;
    limiter.release(Duration::ZERO, true, now + Duration::from_millis(500));
    assert_eq!(limiter.snapshot().0, 2.0);
    for step in 1..10 {
        limiter.lock().inflight = 1;
        limiter.release(Duration::ZERO, true, now + Duration::from_secs(step));
    }
    assert_eq!(limiter.snapshot().0, 1.0, "never below minimum");
}

#[test]
fn a_fast_exchange_grows_only_while_the_limit_is_used() {
    let limiter = Arc::new(Adaptive::new(config(4, 1, 5)));
    let now = Instant::now();
    // inflight after release 0: 0 * 2 >= 4 is false, no growth.
    limiter.lock().inflight = 1;
    limiter.release(Duration::ZERO, false, now);
    assert_eq!(limiter.snapshot().0, 4.0);
    // inflight after release 2: 4 >= 4, + 1/limit.
    limiter.lock().inflight = 3;
    limiter.release(Duration::ZERO, false, now);
    assert_eq!(limiter.snapshot().0, 4.25);
    for _ in 0..100 {
        limiter.lock().inflight = 5;
        limiter.release(Duration::ZERO, false, now);
    }
    assert_eq!(limiter.snapshot().0, 5.0, "never above maximum");
}

#[tokio::test]
async fn the_slot_rides_the_body_until_it_ends() {
    let limiter = Arc::new(Adaptive::new(config(1, 1, 10)));
    let slot = limiter.try_acquire().expect("slot");
    let body = SlotBody::wrap(crate::http::full("ok"), slot);
    assert!(
        limiter.try_acquire().is_none(),
        "held while the body streams"
    );
    let bytes = body.collect().await.expect("body").to_bytes();
    assert_eq!(&bytes[..], b"ok");
    assert_eq!(limiter.snapshot().1, 0, "released at the end");
    assert_eq!(limiter.snapshot().0, 1.0, "idle: no growth, no cut");

    // Dropped unfinished: a failure (the limit is cut, to the minimum here).
    let limiter = Arc::new(Adaptive::new(config(4, 1, 10)));
    let slot = limiter.try_acquire().expect("slot");
    drop(SlotBody::wrap(crate::http::full("unread"), slot));
    assert_eq!(limiter.snapshot().0, 2.0);
    assert_eq!(limiter.snapshot().1, 0);
    // An empty body is never polled: its drop is a success.
    let slot = limiter.try_acquire().expect("slot");
    drop(SlotBody::wrap(crate::http::full(""), slot));
    assert_eq!(limiter.snapshot(), (2.0, 0, 1, 0));
}

#[test]
fn the_section_is_checked_and_the_registry_keeps_a_route() {
    let ok = json!({"initial": 20, "minimum": 1, "maximum": 1000, "target_latency": 0.5, "backoff": 0.9});
    let parsed = SheddingConfig::from_section(&ok).expect("valid");
    assert_eq!(parsed.initial, 20);
    for bad in [
        json!({"initial": 0, "minimum": 1, "maximum": 2, "target_latency": 0.5, "backoff": 0.9}),
        json!({"initial": 2, "minimum": 1, "maximum": 2, "target_latency": 0.0, "backoff": 0.9}),
        json!({"initial": 2, "minimum": 1, "maximum": 2, "target_latency": 0.5, "backoff": 1.0}),
        json!({"initial": 2, "minimum": 1, "maximum": 2, "target_latency": 0.5, "backoff": 0.5, "x": 1}),
    ] {
        assert!(SheddingConfig::from_section(&bad).is_err(), "{bad}");
    }
    let one = for_route("shedding-test-route", parsed);
    let again = for_route("shedding-test-route", config(3, 1, 3));
    assert!(Arc::ptr_eq(&one, &again), "kept across reloads");
    assert!(Arc::ptr_eq(
        &one,
        &get("shedding-test-route").expect("held")
    ));
}

#[test]
fn overloaded_is_pythons_problem() {
    let problem = overloaded();
    assert_eq!(problem.status.as_u16(), 503);
    assert_eq!(problem.retry_after, Some(1));
    let body = problem.body("rid");
    assert_eq!(
        std::str::from_utf8(&body).unwrap(),
        "{\"type\":\"urn:bastion:problem:overloaded\",\"title\":\"Service unavailable\",\
         \"status\":503,\"detail\":\"The upstream is overloaded; retry shortly.\",\
         \"reason\":\"overloaded\",\"request_id\":\"rid\"}"
    );
}
