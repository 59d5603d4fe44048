//! Decision events of the native path, queued for the Python audit writer.
//!
//! One bounded multi-producer queue; Python's drainer
//! (`bastion.audit.native_drain`) takes batches: denials become
//! `gateway.denied` rows exactly as the Python pipeline records them, allows
//! are counted in the per-minute traffic aggregates ([`aggregate_allows`]).
//! When the queue is full, denials are kept before allows: an incoming denial
//! evicts the oldest queued allow; only when no allow is left is the denial
//! itself dropped. Every drop is counted ([`Queue::dropped`]) for `/metrics`
//! (`bastion_native_audit_dropped_total`) and the drop alert.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// The default capacity (events held between two drains).
pub const DEFAULT_CAPACITY: usize = 65_536;

/// Which door a request came through (`data.door` when not "gateway").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    Gateway,
    WebSocket,
    ForwardAuth,
}

impl Door {
    pub fn as_str(self) -> &'static str {
        match self {
            Door::Gateway => "gateway",
            Door::WebSocket => "websocket",
            Door::ForwardAuth => "forward_auth",
        }
    }
}

/// One decision of the native path.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// Allowed (counted in the aggregates) or denied (one audit row).
    pub allowed: bool,
    /// The HTTP status answered (429, 502 …; the upstream's for an allow).
    pub status: u16,
    /// The denial's reason code (`rate_limited`, `upstream_timeout` …).
    pub reason: Option<String>,
    /// The step that denied (`limit`, `proxy`).
    pub step: Option<&'static str>,
    pub door: Door,
    pub route: Option<String>,
    pub method: String,
    /// The normalised path (cut to 256 characters when drained).
    pub path: String,
    pub subject: Option<String>,
    pub client_id: Option<String>,
    pub key_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub latency_us: u64,
    /// Unix seconds when the decision was made.
    pub timestamp: f64,
}

/// Unix seconds now (the events' timestamps).
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[derive(Default)]
struct Held {
    denials: VecDeque<AuditEvent>,
    allows: VecDeque<AuditEvent>,
}

/// The bounded queue.
pub struct Queue {
    held: Mutex<Held>,
    capacity: AtomicUsize,
    dropped_allows: AtomicU64,
    dropped_denials: AtomicU64,
}

/// What a drain returns: denials and allows, each oldest first.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Drained {
    pub denials: Vec<AuditEvent>,
    pub allows: Vec<AuditEvent>,
}

impl Queue {
    pub fn new(capacity: usize) -> Self {
        Queue {
            held: Mutex::new(Held::default()),
            capacity: AtomicUsize::new(capacity.max(1)),
            dropped_allows: AtomicU64::new(0),
            dropped_denials: AtomicU64::new(0),
        }
    }

    /// Change the capacity (settings `audit.max_queue`); held events stay.
    pub fn set_capacity(&self, capacity: usize) {
        self.capacity.store(capacity.max(1), Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue `event`; never blocks on I/O, never fails (a full queue drops, counted).
    pub fn push(&self, event: AuditEvent) {
        let capacity = self.capacity.load(Ordering::Relaxed);
        let mut held = self.lock();
        if held.denials.len() + held.allows.len() >= capacity {
            if event.allowed {
                self.dropped_allows.fetch_add(1, Ordering::Relaxed);
                return;
            }
            if held.allows.pop_front().is_some() {
                self.dropped_allows.fetch_add(1, Ordering::Relaxed);
            } else {
                self.dropped_denials.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        if event.allowed {
            held.allows.push_back(event);
        } else {
            held.denials.push_back(event);
        }
    }

    /// Take up to `max` events, denials first.
    pub fn drain(&self, max: usize) -> Drained {
        let mut held = self.lock();
        let denials = held.denials.len().min(max);
        let allows = held.allows.len().min(max - denials);
        Drained {
            denials: held.denials.drain(..denials).collect(),
            allows: held.allows.drain(..allows).collect(),
        }
    }

    /// Events held now.
    pub fn len(&self) -> usize {
        let held = self.lock();
        held.denials.len() + held.allows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Events dropped so far: (allows, denials).
    pub fn dropped(&self) -> (u64, u64) {
        (
            self.dropped_allows.load(Ordering::Relaxed),
            self.dropped_denials.load(Ordering::Relaxed),
        )
    }
}

/// The process-wide queue the native front records into.
pub fn queue() -> &'static Queue {
    static QUEUE: OnceLock<Queue> = OnceLock::new();
    QUEUE.get_or_init(|| Queue::new(DEFAULT_CAPACITY))
}

/// One per-minute traffic count: Python's `TrafficCounter` key and its count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinuteCount {
    /// Minutes since the epoch.
    pub minute: i64,
    pub route: String,
    /// `anonymous`, `key`, `client` or `subject` (as `gateway.audit.count_allowed`).
    pub principal: &'static str,
    pub principal_id: Option<String>,
    pub count: u64,
}

/// Count allows per (minute, route, principal), in first-seen order.
/// Allows without a route are not counted (Python's `count_allowed`).
pub fn aggregate_allows(allows: &[AuditEvent]) -> Vec<MinuteCount> {
    let mut index: HashMap<(i64, &str, &'static str, Option<&str>), usize> = HashMap::new();
    let mut out: Vec<MinuteCount> = Vec::new();
    for event in allows {
        let Some(route) = event.route.as_deref() else {
            continue;
        };
        let (principal, id) = match (&event.subject, &event.key_id, &event.client_id) {
            (None, _, _) => ("anonymous", None),
            (Some(_), Some(key), _) => ("key", Some(key.as_str())),
            (Some(_), None, Some(client)) => ("client", Some(client.as_str())),
            (Some(subject), None, None) => ("subject", Some(subject.as_str())),
        };
        let minute = (event.timestamp / 60.0).floor() as i64;
        let key = (minute, route, principal, id);
        match index.get(&key) {
            Some(&at) => out[at].count += 1,
            None => {
                index.insert(key, out.len());
                out.push(MinuteCount {
                    minute,
                    route: route.to_owned(),
                    principal,
                    principal_id: id.map(str::to_owned),
                    count: 1,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(allowed: bool, n: u64) -> AuditEvent {
        AuditEvent {
            allowed,
            status: if allowed { 200 } else { 429 },
            reason: (!allowed).then(|| "rate_limited".to_owned()),
            step: (!allowed).then_some("limit"),
            door: Door::Gateway,
            route: Some("orders".into()),
            method: "GET".into(),
            path: "/api/orders".into(),
            subject: Some("user".into()),
            client_id: None,
            key_id: Some("k1".into()),
            ip: Some("192.0.2.1".into()),
            user_agent: None,
            request_id: Some(format!("r{n}")),
            latency_us: n,
            timestamp: 120.0 + n as f64,
        }
    }

    #[test]
    fn denials_are_kept_before_allows() {
        let queue = Queue::new(3);
        queue.push(event(true, 1));
        queue.push(event(true, 2));
        queue.push(event(false, 3));
        queue.push(event(false, 4)); // evicts allow 1
        queue.push(event(true, 5)); // dropped
        queue.push(event(false, 6)); // evicts allow 2
        queue.push(event(false, 7)); // no allow left: dropped
        assert_eq!(queue.dropped(), (3, 1));
        let drained = queue.drain(10);
        let ids: Vec<u64> = drained.denials.iter().map(|e| e.latency_us).collect();
        assert_eq!(ids, vec![3, 4, 6]);
        assert!(drained.allows.is_empty());
        assert!(queue.is_empty());
    }

    #[test]
    fn drain_takes_at_most_max_denials_first() {
        let queue = Queue::new(100);
        for n in 0..5 {
            queue.push(event(n % 2 == 0, n));
        }
        let first = queue.drain(3);
        assert_eq!(first.denials.len(), 2);
        assert_eq!(first.allows.len(), 1);
        assert_eq!(queue.len(), 2);
    }

    #[test]
    fn allows_aggregate_by_minute_and_principal() {
        let mut anonymous = event(true, 0);
        anonymous.subject = None;
        let mut client = event(true, 1);
        client.key_id = None;
        client.client_id = Some("svc".into());
        let mut late = event(true, 70); // 190 s: minute 3
        late.timestamp = 190.0;
        let counts = aggregate_allows(&[event(true, 2), anonymous, event(true, 3), client, late]);
        let flat: Vec<(i64, &str, Option<&str>, u64)> = counts
            .iter()
            .map(|c| (c.minute, c.principal, c.principal_id.as_deref(), c.count))
            .collect();
        assert_eq!(
            flat,
            vec![
                (2, "key", Some("k1"), 2),
                (2, "anonymous", None, 1),
                (2, "client", Some("svc"), 1),
                (3, "key", Some("k1"), 1),
            ]
        );
    }
}
