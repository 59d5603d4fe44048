//! Risk flags mirrored from the control plane (`bastion.ratelimit.risk`).
//!
//! A detector flags a key, address bucket, subject or client, and that
//! requester's limits are divided by the flag's factor for a while. The native
//! limit step divides them exactly as Python's does (`Limit::divided`, the
//! bucket keys unchanged), against the same store, so both planes (and nodes
//! of either version) draw the same tightened budget. Flags are rare, so this
//! costs nothing on the common path (one atomic load when none is set).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::RwLock;

/// What a flag names (Python's `RiskKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RiskKind {
    Key,
    Ip,
    Subject,
    Client,
}

impl RiskKind {
    /// From Python's spelling; `None` for anything else.
    pub fn parse(kind: &str) -> Option<Self> {
        match kind {
            "key" => Some(Self::Key),
            "ip" => Some(Self::Ip),
            "subject" => Some(Self::Subject),
            "client" => Some(Self::Client),
            _ => None,
        }
    }
}

/// One flag: the divisor of the requester's limits, and until when (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Flag {
    factor: u64,
    until: f64,
}

/// The flagged values, each with its factor and until when it holds.
#[derive(Default)]
pub struct RiskFlags {
    count: AtomicUsize,
    flags: RwLock<HashMap<(RiskKind, String), Flag>>,
}

impl RiskFlags {
    /// Flag `value` (already canonical: an address as its bucket) until `until`,
    /// its limits divided by `factor`. A flag still in force on the same value
    /// keeps the stronger factor and the later end (Python's `RiskRegistry.flag`);
    /// an expired one is replaced.
    pub fn flag(&self, kind: RiskKind, value: String, factor: u64, until: f64, now: f64) {
        let mut flags = self.flags.write().unwrap_or_else(|e| e.into_inner());
        let new = Flag { factor, until };
        let entry = flags.entry((kind, value)).or_insert(new);
        if entry.until > now {
            entry.factor = entry.factor.max(factor);
            entry.until = entry.until.max(until);
        } else {
            *entry = new;
        }
        self.count.store(flags.len(), Ordering::Release);
    }

    /// Lift one flag early.
    pub fn clear(&self, kind: RiskKind, value: &str) {
        let mut flags = self.flags.write().unwrap_or_else(|e| e.into_inner());
        flags.remove(&(kind, value.to_owned()));
        self.count.store(flags.len(), Ordering::Release);
    }

    /// Whether any flag is set at all (one atomic load: the common case).
    pub fn any_set(&self) -> bool {
        self.count.load(Ordering::Acquire) != 0
    }

    /// Whether any of the request's identifiers is flagged at `now`.
    pub fn any_flagged(&self, now: f64, items: &[(RiskKind, Option<&str>)]) -> bool {
        self.factor(now, items) > 1
    }

    /// The divisor of the request's limits at `now`: the largest factor of its
    /// flagged identifiers (Python's `max(risk.factor(...))`), 1 when none is.
    pub fn factor(&self, now: f64, items: &[(RiskKind, Option<&str>)]) -> u64 {
        if self.count.load(Ordering::Acquire) == 0 {
            return 1;
        }
        let flags = self.flags.read().unwrap_or_else(|e| e.into_inner());
        let mut factor = 1;
        for (kind, value) in items {
            let Some(value) = value else { continue };
            if let Some(flag) = flags.get(&(*kind, (*value).to_owned())) {
                if flag.until > now {
                    factor = factor.max(flag.factor);
                }
            }
        }
        factor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_hold_until_they_expire_or_are_cleared() {
        let r = RiskFlags::default();
        assert!(!r.any_flagged(0.0, &[(RiskKind::Key, Some("k1"))]));
        r.flag(RiskKind::Key, "k1".into(), 4, 100.0, 0.0);
        r.flag(RiskKind::Ip, "192.0.2.1".into(), 2, 50.0, 0.0);
        assert!(r.any_flagged(10.0, &[(RiskKind::Key, Some("k1"))]));
        assert!(!r.any_flagged(10.0, &[(RiskKind::Subject, Some("k1"))]));
        assert!(!r.any_flagged(10.0, &[(RiskKind::Key, None)]));
        assert!(r.any_flagged(
            10.0,
            &[(RiskKind::Key, None), (RiskKind::Ip, Some("192.0.2.1"))]
        ));
        assert!(!r.any_flagged(60.0, &[(RiskKind::Ip, Some("192.0.2.1"))]));
        assert_eq!(
            r.factor(
                10.0,
                &[
                    (RiskKind::Key, Some("k1")),
                    (RiskKind::Ip, Some("192.0.2.1"))
                ]
            ),
            4
        );
        assert_eq!(r.factor(60.0, &[(RiskKind::Ip, Some("192.0.2.1"))]), 1);
        // A shorter, weaker flag does not shorten or weaken one in force.
        r.flag(RiskKind::Key, "k1".into(), 2, 20.0, 10.0);
        assert!(r.any_flagged(99.0, &[(RiskKind::Key, Some("k1"))]));
        assert_eq!(r.factor(99.0, &[(RiskKind::Key, Some("k1"))]), 4);
        // An expired flag is replaced, not merged.
        r.flag(RiskKind::Ip, "192.0.2.1".into(), 3, 200.0, 60.0);
        assert_eq!(r.factor(100.0, &[(RiskKind::Ip, Some("192.0.2.1"))]), 3);
        r.clear(RiskKind::Key, "k1");
        assert!(!r.any_flagged(10.0, &[(RiskKind::Key, Some("k1"))]));
        assert_eq!(RiskKind::parse("client"), Some(RiskKind::Client));
        assert_eq!(RiskKind::parse("route"), None);
    }
}
