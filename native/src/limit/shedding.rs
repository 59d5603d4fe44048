//! Load shedding: an adaptive (AIMD) concurrency limit per route upstream, the
//! native twin of `bastion.gateway.shedding.AdaptiveConcurrency`.
//!
//! A route's upstream takes at most `limit` requests in flight. An exchange
//! answered within `target_latency` raises the limit by `1 / limit` while at
//! least half of it is in use; a slower one, or a failure, multiplies it by
//! `backoff` (at most once per `target_latency`), never below `minimum` nor
//! above `maximum`. A request arriving while `inflight >= int(limit)` is shed:
//! 503 `overloaded` with `Retry-After: 1`, before it reaches the upstream.
//!
//! The slot spans the whole upstream exchange, response body included (the
//! Python proxy step holds it around `client.forward`, which streams the body):
//! [`Slot`] rides in the response body ([`SlotBody`]) and is released when the
//! body ends (success), fails or is dropped unfinished (a failure, as the
//! exception Python sees then).
//!
//! One [`Adaptive`] per route name for the process ([`for_route`]), kept across
//! route reloads as Python's `LoadShedder` keeps its per-route limiters.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use http_body::{Body as HttpBody, Frame, SizeHint};
use serde::Deserialize;

use crate::http::{Body, BoxError};
use crate::problem::Problem;

/// `ratelimit.shedding` as compiled into the route's `limits.shedding`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SheddingConfig {
    pub initial: u32,
    pub minimum: u32,
    pub maximum: u32,
    /// Seconds.
    pub target_latency: f64,
    pub backoff: f64,
}

impl SheddingConfig {
    /// Parse and check the section (`AdaptiveConcurrency.__init__`'s checks).
    pub fn from_section(section: &serde_json::Value) -> Result<Self, String> {
        let config = Self::deserialize(section).map_err(|e| format!("shedding: {e}"))?;
        if !(1 <= config.minimum
            && config.minimum <= config.initial
            && config.initial <= config.maximum)
        {
            return Err(format!(
                "shedding: need 1 <= minimum <= initial <= maximum, not {}/{}/{}",
                config.minimum, config.initial, config.maximum
            ));
        }
        if !(config.backoff > 0.0 && config.backoff < 1.0) {
            return Err(format!(
                "shedding: backoff must be between 0 and 1, not {}",
                config.backoff
            ));
        }
        if !(config.target_latency > 0.0 && config.target_latency.is_finite()) {
            return Err(format!(
                "shedding: target_latency must be > 0 seconds, not {}",
                config.target_latency
            ));
        }
        Ok(config)
    }
}

#[derive(Debug)]
struct State {
    limit: f64,
    inflight: u64,
    max_inflight: u64,
    shed: u64,
    last_cut: Option<Instant>,
}

/// One route upstream's AIMD concurrency limit and its requests in flight.
#[derive(Debug)]
pub struct Adaptive {
    config: SheddingConfig,
    target: Duration,
    state: Mutex<State>,
}

impl Adaptive {
    /// A limiter starting at `config.initial`.
    pub fn new(config: SheddingConfig) -> Self {
        Self {
            config,
            target: Duration::from_secs_f64(config.target_latency),
            state: Mutex::new(State {
                limit: f64::from(config.initial),
                inflight: 0,
                max_inflight: 0,
                shed: 0,
                last_cut: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding it cannot leave the numbers half-updated.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Take a slot if one is free, else count a shed request (`None`).
    pub fn try_acquire(self: &Arc<Self>) -> Option<Slot> {
        let mut state = self.lock();
        if state.inflight >= state.limit as u64 {
            state.shed += 1;
            return None;
        }
        state.inflight += 1;
        state.max_inflight = state.max_inflight.max(state.inflight);
        drop(state);
        Some(Slot {
            owner: Some(Arc::clone(self)),
            started: Instant::now(),
        })
    }

    /// Give a slot back and adapt the limit to how the exchange went.
    fn release(&self, latency: Duration, failed: bool, now: Instant) {
        let mut state = self.lock();
        state.inflight = state.inflight.saturating_sub(1);
        if failed || latency > self.target {
            let due = state.last_cut.map_or(true, |cut| {
                now.saturating_duration_since(cut) >= self.target
            });
            if due {
                state.last_cut = Some(now);
                state.limit = f64::from(self.config.minimum).max(state.limit * self.config.backoff);
            }
        } else if state.inflight * 2 >= state.limit as u64 {
            // Only grow while the limit is actually used: an idle upstream says nothing.
            state.limit = f64::from(self.config.maximum).min(state.limit + 1.0 / state.limit);
        }
    }

    /// `(limit, inflight, max_inflight, shed)` now.
    pub fn snapshot(&self) -> (f64, u64, u64, u64) {
        let state = self.lock();
        (state.limit, state.inflight, state.max_inflight, state.shed)
    }
}

/// A held slot; released as a failure if dropped without [`Slot::finish`].
#[derive(Debug)]
pub struct Slot {
    owner: Option<Arc<Adaptive>>,
    started: Instant,
}

impl Slot {
    /// Release the slot: `failed` cuts the limit, a fast success may raise it.
    pub fn finish(mut self, failed: bool) {
        self.release(failed);
    }

    fn release(&mut self, failed: bool) {
        if let Some(owner) = self.owner.take() {
            let now = Instant::now();
            owner.release(now.saturating_duration_since(self.started), failed, now);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.release(true);
    }
}

/// A response body holding its exchange's slot until it ends.
pub struct SlotBody {
    inner: Body,
    slot: Option<Slot>,
}

impl SlotBody {
    /// `inner`, releasing `slot` when it ends, fails or is dropped.
    pub fn wrap(inner: Body, slot: Slot) -> Body {
        use http_body_util::BodyExt as _;
        SlotBody {
            inner,
            slot: Some(slot),
        }
        .boxed_unsync()
    }
}

impl HttpBody for SlotBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => {
                if let Some(slot) = this.slot.take() {
                    slot.finish(false);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(slot) = this.slot.take() {
                    slot.finish(true);
                }
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for SlotBody {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            // An empty body (HEAD, 204, 304) is never polled: it ended well.
            let failed = !self.inner.is_end_stream();
            slot.finish(failed);
        }
    }
}

/// Python's `OverloadedError`: 503 `overloaded`, `Retry-After: 1`.
pub fn overloaded() -> Problem {
    Problem {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "overloaded",
        title: "Service unavailable",
        detail: "The upstream is overloaded; retry shortly.".to_owned(),
        www_authenticate: None,
        retry_after: Some(1),
        headers: Vec::new(),
    }
}

fn registry() -> std::sync::MutexGuard<'static, HashMap<String, Arc<Adaptive>>> {
    static ROUTES: OnceLock<Mutex<HashMap<String, Arc<Adaptive>>>> = OnceLock::new();
    ROUTES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// The process's limiter of route `name` (created with `config` on first
/// use; kept across reloads, as Python's `LoadShedder.for_route`).
pub fn for_route(name: &str, config: SheddingConfig) -> Arc<Adaptive> {
    registry()
        .entry(name.to_owned())
        .or_insert_with(|| Arc::new(Adaptive::new(config)))
        .clone()
}

/// The limiter of route `name`, if one was created.
pub fn get(name: &str) -> Option<Arc<Adaptive>> {
    registry().get(name).cloned()
}

#[cfg(test)]
mod tests;
