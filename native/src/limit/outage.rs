//! The shared limiter's outage policy, applied natively: the twin of
//! `bastion.gateway.limit._decide` (each limit's `fail`) and the transitions
//! `bastion.ratelimit.outage.BackendHealth` records.
//!
//! Every limited request asks Redis, down or not (as Python's limit step
//! does), so recovery is noticed by the first call that succeeds, here as in
//! Python. When a call fails:
//!
//! - a request one of whose applicable limits fails closed (a route limit with
//!   `fail: closed`, or the key's own limits with `ratelimit.key_limits_fail:
//!   closed`) gets Python's 503 `rate_limiter_unavailable` (`Retry-After: 1`);
//! - otherwise its limits are decided in this process alone, each divided by
//!   the live node count Python's heartbeat pushes (`_native.limiter_nodes`),
//!   in the in-process store Python's fallback limiter uses too
//!   (`Store::current()`, installed by the runtime on Redis deployments).
//!
//! Only the transitions are reported (`drain`): the first failure and the
//! first success after it, which Python's `BackendHealth` turns into its one
//! log line, audit event and gauge flip, as for its own calls; every failed
//! call is counted (`bastion_ratelimit_backend_errors_total`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// A transition of the shared limiter's health, for Python's `BackendHealth`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// The first failed call: its error and whether that request failed closed.
    Down { error: String, fail_closed: bool },
    /// The first successful call after a failure.
    Up,
}

/// Whether the limiter is taken to be down, the transitions not yet drained,
/// the failed calls, the node count.
pub struct Outage {
    /// The shared (Redis) limiter is taken to be down (a call failed, natively
    /// or in Python): the next success is reported as the recovery.
    down: AtomicBool,
    transitions: Mutex<Vec<Transition>>,
    errors: AtomicU64,
    nodes: AtomicU64,
}

/// The process's outage state.
pub fn outage() -> &'static Outage {
    static OUTAGE: Outage = Outage {
        down: AtomicBool::new(false),
        transitions: Mutex::new(Vec::new()),
        errors: AtomicU64::new(0),
        nodes: AtomicU64::new(1),
    };
    &OUTAGE
}

/// At most this many undrained transitions are kept (a flapping Redis with no
/// drain running: the oldest are dropped, the flag itself stays exact).
const MAX_PENDING: usize = 64;

impl Outage {
    /// A call to the shared limiter failed; the first failure of an outage is
    /// a `Down` transition.
    pub fn failed(&self, error: &str, fail_closed: bool) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if !self.down.swap(true, Ordering::AcqRel) {
            self.push(Transition::Down {
                error: error.chars().take(200).collect(),
                fail_closed,
            });
        }
    }

    /// A call to the shared limiter succeeded: after a failure, an `Up` transition.
    pub fn succeeded(&self) {
        let down = &self.down;
        if down.load(Ordering::Acquire) && down.swap(false, Ordering::AcqRel) {
            self.push(Transition::Up);
        }
    }

    /// Python's `BackendHealth` saw the limiter go down (`true`) or up again:
    /// the native path reports its own transitions against this flag, so an
    /// outage is reported once.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::Release);
    }

    /// Whether the shared limiter is taken to be down.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    fn push(&self, transition: Transition) {
        let mut pending = self.transitions.lock().unwrap_or_else(|e| e.into_inner());
        if pending.len() >= MAX_PENDING {
            pending.remove(0);
        }
        pending.push(transition);
    }

    /// The transitions since the last drain, in order, and the failed calls
    /// counted since then.
    pub fn drain(&self) -> (Vec<Transition>, u64) {
        let taken =
            std::mem::take(&mut *self.transitions.lock().unwrap_or_else(|e| e.into_inner()));
        (taken, self.errors.swap(0, Ordering::Relaxed))
    }

    /// The live node count sharing the limiter (at least 1).
    pub fn nodes(&self) -> u64 {
        self.nodes.load(Ordering::Relaxed).max(1)
    }

    /// Python's heartbeat counted `nodes` live nodes.
    pub fn set_nodes(&self, nodes: u64) {
        self.nodes.store(nodes.max(1), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transitions_are_reported_and_every_failure_counted() {
        let o = outage();
        let _ = o.drain();
        o.succeeded(); // up and staying up: nothing
        o.failed("redis: connection refused", true);
        o.failed("redis: connection refused", false);
        o.succeeded();
        o.succeeded();
        let (transitions, errors) = o.drain();
        assert_eq!(
            transitions,
            vec![
                Transition::Down {
                    error: "redis: connection refused".into(),
                    fail_closed: true
                },
                Transition::Up
            ]
        );
        assert_eq!(errors, 2);
        assert_eq!(o.drain(), (Vec::new(), 0));
        o.set_nodes(0);
        assert_eq!(o.nodes(), 1);
        o.set_nodes(3);
        assert_eq!(o.nodes(), 3);
        o.set_nodes(1);
    }
}
