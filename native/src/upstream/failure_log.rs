//! One log line per upstream failure, at most one per target and cause per
//! interval (`bastion.gateway.upstreams.FailureLog`): a target that is down
//! fails every request, and a line each would bury everything else.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{UpstreamAborted, UpstreamError};

/// Seconds between two lines about the same target failing for the same cause.
pub const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(10);
const MAX_TRACKED: usize = 10_000;

/// (target, cause) -> (time of the last line, failures left out since).
type Seen = HashMap<(String, &'static str), (Instant, u64)>;

/// Decides which failures are logged and words the line (the caller writes it
/// to the `bastion.gateway.upstreams` logger at WARNING).
#[derive(Debug)]
pub struct FailureLog {
    interval: Duration,
    seen: Mutex<Seen>,
}

impl Default for FailureLog {
    fn default() -> Self {
        Self::new(FAILURE_LOG_INTERVAL)
    }
}

impl FailureLog {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// The line to log for `error` on `route` at `now`, or `None` when the same
    /// target and cause was logged within the interval (it is counted instead).
    /// Failures that are not the upstream's (a client gone) give `None`.
    pub fn failed(&self, route: &str, error: &UpstreamError, now: Instant) -> Option<String> {
        let cause = error.cause()?.as_str();
        let (status, code, _, detail) = error.problem();
        let note = if error.note().is_empty() {
            detail
        } else {
            error.note()
        };
        self.line(route, error.target(), cause, note, (status, code), now)
    }

    /// The line for a failure after the response started (the body's
    /// [`UpstreamAborted`] error), rate-limited like [`FailureLog::failed`].
    pub fn aborted(&self, route: &str, aborted: &UpstreamAborted, now: Instant) -> Option<String> {
        let (status, code, _) = aborted.problem();
        let cause = aborted.cause.as_str();
        self.line(
            route,
            &aborted.target,
            cause,
            &aborted.note,
            (status, code),
            now,
        )
    }

    fn line(
        &self,
        route: &str,
        target: &str,
        cause: &'static str,
        note: &str,
        (status, code): (u16, &str),
        now: Instant,
    ) -> Option<String> {
        let key = (target.to_owned(), cause);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let before = seen.get(&key).copied();
        if let Some((last, count)) = before {
            if now.duration_since(last) < self.interval {
                seen.insert(key, (last, count + 1));
                return None;
            }
        }
        if seen.len() >= MAX_TRACKED {
            seen.clear();
        }
        seen.insert(key, (now, 0));
        let left_out = before.map_or(0, |(_, count)| count);
        let more = if left_out > 0 {
            format!(
                " (+{left_out} more in the last {} s)",
                self.interval.as_secs_f64()
            )
        } else {
            String::new()
        };
        let target = if target.is_empty() { "-" } else { target };
        Some(format!(
            "upstream failed: route={route} target={target} cause={cause} ({note}) -> {status} {code}{more}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::Cause;
    use super::*;

    fn refused() -> UpstreamError {
        UpstreamError::Unavailable {
            cause: Cause::Refused,
            detail: "The upstream could not be reached.",
            target: "http://127.0.0.1:9".into(),
            note: "Connection refused".into(),
        }
    }

    #[test]
    fn one_line_per_target_and_cause_per_interval() {
        let log = FailureLog::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(
            log.failed("orders", &refused(), t0).as_deref(),
            Some("upstream failed: route=orders target=http://127.0.0.1:9 cause=refused (Connection refused) -> 502 upstream_unavailable")
        );
        assert_eq!(
            log.failed("orders", &refused(), t0 + Duration::from_secs(1)),
            None
        );
        assert_eq!(
            log.failed("orders", &refused(), t0 + Duration::from_secs(2)),
            None
        );
        let timeout = UpstreamError::Timeout {
            detail: "The upstream did not answer in time.",
            target: "http://127.0.0.1:9".into(),
            note: "no bytes for read_timeout (30 s)".into(),
        };
        assert!(
            log.failed("orders", &timeout, t0 + Duration::from_secs(3))
                .is_some(),
            "another cause"
        );
        assert_eq!(
            log.failed("orders", &refused(), t0 + Duration::from_secs(10)).as_deref(),
            Some("upstream failed: route=orders target=http://127.0.0.1:9 cause=refused (Connection refused) -> 502 upstream_unavailable (+2 more in the last 10 s)")
        );
        let gone = UpstreamError::ClientGone { note: "x".into() };
        assert_eq!(log.failed("orders", &gone, t0), None);
        let aborted = UpstreamAborted {
            cause: Cause::Reset,
            target: "http://127.0.0.1:9".into(),
            note: "connection reset".into(),
        };
        assert_eq!(
            log.aborted("orders", &aborted, t0).as_deref(),
            Some("upstream failed: route=orders target=http://127.0.0.1:9 cause=reset (connection reset) -> 502 upstream_aborted")
        );
    }
}
