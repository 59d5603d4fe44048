//! Risk flags mirrored from the control plane (`bastion.ratelimit.risk`).
//!
//! A detector flags a key, address bucket, subject or client, and Python
//! divides that requester's limits for a while. The native path does not
//! tighten limits itself: a request whose key, address, subject or client is
//! flagged is deferred to Python, which applies the tightened limit against
//! the same shared rate-limit store. Flags are rare, so this costs nothing on
//! the common path (one atomic load when none is set).

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

/// The flagged values and until when (Unix seconds) each flag holds.
#[derive(Default)]
pub struct RiskFlags {
    count: AtomicUsize,
    flags: RwLock<HashMap<(RiskKind, String), f64>>,
}

impl RiskFlags {
    /// Flag `value` (already canonical: an address as its bucket) until `until`.
    pub fn flag(&self, kind: RiskKind, value: String, until: f64) {
        let mut flags = self.flags.write().unwrap_or_else(|e| e.into_inner());
        let entry = flags.entry((kind, value)).or_insert(until);
        if *entry < until {
            *entry = until;
        }
        self.count.store(flags.len(), Ordering::Release);
    }

    /// Lift one flag early.
    pub fn clear(&self, kind: RiskKind, value: &str) {
        let mut flags = self.flags.write().unwrap_or_else(|e| e.into_inner());
        flags.remove(&(kind, value.to_owned()));
        self.count.store(flags.len(), Ordering::Release);
    }

    /// Whether any of the request's identifiers is flagged at `now`.
    pub fn any_flagged(&self, now: f64, items: &[(RiskKind, Option<&str>)]) -> bool {
        if self.count.load(Ordering::Acquire) == 0 {
            return false;
        }
        let flags = self.flags.read().unwrap_or_else(|e| e.into_inner());
        items.iter().any(|(kind, value)| {
            value.is_some_and(|v| {
                flags
                    .get(&(*kind, v.to_owned()))
                    .is_some_and(|until| *until > now)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_hold_until_they_expire_or_are_cleared() {
        let r = RiskFlags::default();
        assert!(!r.any_flagged(0.0, &[(RiskKind::Key, Some("k1"))]));
        r.flag(RiskKind::Key, "k1".into(), 100.0);
        r.flag(RiskKind::Ip, "192.0.2.1".into(), 50.0);
        assert!(r.any_flagged(10.0, &[(RiskKind::Key, Some("k1"))]));
        assert!(!r.any_flagged(10.0, &[(RiskKind::Subject, Some("k1"))]));
        assert!(!r.any_flagged(10.0, &[(RiskKind::Key, None)]));
        assert!(r.any_flagged(
            10.0,
            &[(RiskKind::Key, None), (RiskKind::Ip, Some("192.0.2.1"))]
        ));
        assert!(!r.any_flagged(60.0, &[(RiskKind::Ip, Some("192.0.2.1"))]));
        r.flag(RiskKind::Key, "k1".into(), 20.0); // a shorter flag does not shorten
        assert!(r.any_flagged(99.0, &[(RiskKind::Key, Some("k1"))]));
        r.clear(RiskKind::Key, "k1");
        assert!(!r.any_flagged(10.0, &[(RiskKind::Key, Some("k1"))]));
        assert_eq!(RiskKind::parse("client"), Some(RiskKind::Client));
        assert_eq!(RiskKind::parse("route"), None);
    }
}
