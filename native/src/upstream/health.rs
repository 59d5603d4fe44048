//! Passive health of one upstream target (`bastion.gateway.upstreams`).
//!
//! A target is ejected after `failures` consecutive connection failures for
//! `cooldown`; when the cool-down is over exactly one request (the probe) may
//! try it: success restores it, failure ejects it again for twice the previous
//! cool-down, capped at `max_cooldown`. HTTP statuses never count.

use std::time::{Duration, Instant};

use serde::Deserialize;

/// When a target is ejected and for how long (`RouteSettings.health`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthPolicy {
    pub failures: u32,
    pub cooldown: Duration,
    pub max_cooldown: Duration,
}

#[derive(Deserialize)]
pub(crate) struct HealthSection {
    failures: u32,
    cooldown: f64,
    max_cooldown: f64,
}

impl HealthPolicy {
    pub(crate) fn from_section(raw: &HealthSection) -> Result<Self, String> {
        Ok(Self {
            failures: raw.failures.max(1),
            cooldown: seconds(raw.cooldown, "health.cooldown")?,
            max_cooldown: seconds(raw.max_cooldown, "health.max_cooldown")?,
        })
    }
}

/// A non-negative, finite number of seconds as a `Duration`.
pub(crate) fn seconds(value: f64, what: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value).map_err(|_| format!("{what}: {value} is not a duration"))
}

/// The health state of one target (`TargetHealth`).
#[derive(Debug, Default)]
pub struct TargetHealth {
    failures: u32,
    ejected_until: Option<Instant>,
    backoff: Duration,
    probing: bool,
}

impl TargetHealth {
    /// Whether the target has a clean record (never failed lately, not ejected).
    pub fn clean(&self) -> bool {
        self.failures == 0 && self.ejected_until.is_none()
    }

    /// Take the target for one request; false when ejected or already probed.
    pub fn claim(&mut self, now: Instant) -> bool {
        match self.ejected_until {
            None => true,
            Some(until) if now < until || self.probing => false,
            Some(_) => {
                self.probing = true; // half-open: this request is the probe
                true
            }
        }
    }

    /// A connection was established: healthy again.
    pub fn succeeded(&mut self) {
        *self = Self::default();
    }

    /// A connection attempt failed: count it, eject when the policy says so.
    pub fn failed(&mut self, now: Instant, policy: &HealthPolicy) {
        if self.probing || self.ejected_until.is_some() {
            self.probing = false;
            self.backoff = (self.backoff * 2)
                .max(policy.cooldown)
                .min(policy.max_cooldown);
            self.ejected_until = Some(now + self.backoff);
            return;
        }
        self.failures += 1;
        if self.failures >= policy.failures {
            self.failures = 0;
            self.backoff = policy.cooldown;
            self.ejected_until = Some(now + self.backoff);
        }
    }

    /// The probe ended without a verdict (the client went away): allow another.
    pub fn release(&mut self) {
        self.probing = false;
    }

    /// When the target may be probed again (`None`: not ejected).
    pub fn ejected_until(&self) -> Option<Instant> {
        self.ejected_until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: HealthPolicy = HealthPolicy {
        failures: 3,
        cooldown: Duration::from_secs(5),
        max_cooldown: Duration::from_secs(12),
    };

    #[test]
    fn ejected_after_consecutive_failures_then_probed_once() {
        let t0 = Instant::now();
        let mut h = TargetHealth::default();
        h.failed(t0, &POLICY);
        h.failed(t0, &POLICY);
        assert!(h.claim(t0));
        h.failed(t0, &POLICY);
        assert_eq!(h.ejected_until(), Some(t0 + Duration::from_secs(5)));
        assert!(!h.claim(t0 + Duration::from_secs(4)));
        let later = t0 + Duration::from_secs(5);
        assert!(h.claim(later), "the probe");
        assert!(!h.claim(later), "one probe at a time");
        h.failed(later, &POLICY);
        assert_eq!(h.ejected_until(), Some(later + Duration::from_secs(10)));
        let later = later + Duration::from_secs(10);
        assert!(h.claim(later));
        h.failed(later, &POLICY);
        assert_eq!(
            h.ejected_until(),
            Some(later + Duration::from_secs(12)),
            "capped"
        );
        let later = later + Duration::from_secs(12);
        assert!(h.claim(later));
        h.succeeded();
        assert!(h.clean());
        assert!(h.claim(later));
    }

    #[test]
    fn a_success_resets_the_count_and_release_frees_the_probe() {
        let t0 = Instant::now();
        let mut h = TargetHealth::default();
        h.failed(t0, &POLICY);
        h.failed(t0, &POLICY);
        h.succeeded();
        h.failed(t0, &POLICY);
        assert_eq!(h.ejected_until(), None);
        h.failed(t0, &POLICY);
        h.failed(t0, &POLICY);
        let later = t0 + Duration::from_secs(5);
        assert!(h.claim(later));
        h.release();
        assert!(h.claim(later), "released: another request may probe");
    }

    #[test]
    fn section_durations_are_checked() {
        let raw = HealthSection {
            failures: 0,
            cooldown: 1.5,
            max_cooldown: -1.0,
        };
        assert_eq!(
            HealthPolicy::from_section(&raw),
            Err("health.max_cooldown: -1 is not a duration".to_string())
        );
    }
}
