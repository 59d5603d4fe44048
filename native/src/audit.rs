//! Decision events of the native path, queued for the Python audit writer.
//!
//! One bounded multi-producer queue; Python's drainer
//! (`bastion.audit.native_drain`) takes batches: denials become
//! `gateway.denied` rows exactly as the Python pipeline records them; allows
//! are counted here per minute, route and principal ([`Queue::allow`]) and
//! added to Python's per-minute traffic aggregates. When the queue is full,
//! denials are kept before allows: an incoming denial evicts an allow
//! aggregate; only when none is left is the denial itself dropped. Every drop is counted ([`Queue::dropped`]) for `/metrics`
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

/// One allow aggregate: (minute, route, principal, principal id) and its count.
struct AllowCount {
    minute: i64,
    route: Box<str>,
    principal: &'static str,
    principal_id: Option<Box<str>>,
    count: u64,
}

#[derive(Default)]
struct Held {
    denials: VecDeque<AuditEvent>,
    /// Allow aggregates by the hash of their key (collisions chained).
    allows: HashMap<u64, Vec<AllowCount>>,
    /// How many aggregates `allows` holds.
    allow_keys: usize,
    /// Allows counted in the aggregates (what evicting them would lose).
    allow_total: u64,
}

/// The bounded queue: denials one by one, allows as per-minute counts.
///
/// `capacity` bounds denials plus distinct allow aggregates (route ×
/// principal × minute); counting one more allow in an existing aggregate
/// needs no room, so allows are lost only when a full queue meets a new
/// principal or a denial must make room.
pub struct Queue {
    held: Mutex<Held>,
    capacity: AtomicUsize,
    dropped_allows: AtomicU64,
    dropped_denials: AtomicU64,
}

/// What a drain returns: denials (oldest first) and every allow aggregate.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Drained {
    pub denials: Vec<AuditEvent>,
    pub allows: Vec<MinuteCount>,
}

/// The principal an allow counts for (Python's `gateway.audit.count_allowed`).
pub fn principal_of<'a>(
    subject: Option<&'a str>,
    key_id: Option<&'a str>,
    client_id: Option<&'a str>,
) -> (&'static str, Option<&'a str>) {
    match (subject, key_id, client_id) {
        (None, _, _) => ("anonymous", None),
        (Some(_), Some(key), _) => ("key", Some(key)),
        (Some(_), None, Some(client)) => ("client", Some(client)),
        (Some(subject), None, None) => ("subject", Some(subject)),
    }
}

fn allow_hash(minute: i64, route: &str, principal: &str, id: Option<&str>) -> u64 {
    // FNV-1a over the key's parts, each ended by a byte no part holds (0xff is no
    // UTF-8 byte): a few instructions a byte where `DefaultHasher` (SipHash) cost
    // ~450 a request. Not weaker against collisions chosen on purpose: both are
    // fixed functions (`DefaultHasher::new()` has fixed keys), and a collision only
    // chains (`allows` compares the whole key); the map itself still hashes with a
    // random key.
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &byte in bytes.iter().chain(&[0xff]) {
            hash = (hash ^ u64::from(byte)).wrapping_mul(PRIME);
        }
    };
    eat(&minute.to_le_bytes());
    eat(route.as_bytes());
    eat(principal.as_bytes());
    match id {
        Some(id) => eat(id.as_bytes()),
        None => eat(&[]),
    }
    hash
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

    /// Count one allowed request of `route` at `timestamp` (Unix seconds) for
    /// the principal of `subject` / `key_id` / `client_id` (the hot path:
    /// no allocation once the aggregate exists).
    pub fn allow(
        &self,
        route: &str,
        subject: Option<&str>,
        key_id: Option<&str>,
        client_id: Option<&str>,
        timestamp: f64,
    ) {
        let (principal, id) = principal_of(subject, key_id, client_id);
        let minute = (timestamp / 60.0).floor() as i64;
        let hash = allow_hash(minute, route, principal, id);
        let capacity = self.capacity.load(Ordering::Relaxed);
        let mut held = self.lock();
        if let Some(chain) = held.allows.get_mut(&hash) {
            if let Some(found) = chain.iter_mut().find(|c| {
                c.minute == minute
                    && &*c.route == route
                    && c.principal == principal
                    && c.principal_id.as_deref() == id
            }) {
                found.count += 1;
                held.allow_total += 1;
                return;
            }
        }
        if held.denials.len() + held.allow_keys >= capacity {
            self.dropped_allows.fetch_add(1, Ordering::Relaxed);
            return;
        }
        held.allows.entry(hash).or_default().push(AllowCount {
            minute,
            route: route.into(),
            principal,
            principal_id: id.map(Into::into),
            count: 1,
        });
        held.allow_keys += 1;
        held.allow_total += 1;
    }

    /// Queue `event`; never blocks on I/O, never fails (a full queue drops, counted).
    /// An allow is counted in its aggregate ([`Queue::allow`]); allows without a
    /// route are not counted (as in Python).
    pub fn push(&self, event: AuditEvent) {
        if event.allowed {
            if let Some(route) = event.route.as_deref() {
                self.allow(
                    route,
                    event.subject.as_deref(),
                    event.key_id.as_deref(),
                    event.client_id.as_deref(),
                    event.timestamp,
                );
            }
            return;
        }
        let capacity = self.capacity.load(Ordering::Relaxed);
        let mut held = self.lock();
        if held.denials.len() + held.allow_keys >= capacity {
            // Denials are kept before allows: give up one allow aggregate for it.
            let victim = held.allows.keys().next().copied();
            let Some(hash) = victim else {
                self.dropped_denials.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let mut lost = 0;
            if let Some(chain) = held.allows.get_mut(&hash) {
                if let Some(evicted) = chain.pop() {
                    lost = evicted.count;
                }
                if chain.is_empty() {
                    held.allows.remove(&hash);
                }
            }
            held.allow_keys -= 1;
            held.allow_total -= lost;
            self.dropped_allows.fetch_add(lost, Ordering::Relaxed);
        }
        held.denials.push_back(event);
    }

    /// Take up to `max` denials (oldest first) and every allow aggregate.
    pub fn drain(&self, max: usize) -> Drained {
        let mut held = self.lock();
        let denials = held.denials.len().min(max);
        let denials = held.denials.drain(..denials).collect();
        let allows = std::mem::take(&mut held.allows);
        held.allow_keys = 0;
        held.allow_total = 0;
        drop(held);
        let mut counts: Vec<MinuteCount> = allows
            .into_values()
            .flatten()
            .map(|c| MinuteCount {
                minute: c.minute,
                route: c.route.into(),
                principal: c.principal,
                principal_id: c.principal_id.map(Into::into),
                count: c.count,
            })
            .collect();
        counts.sort_by(|a, b| {
            (a.minute, &a.route, a.principal, &a.principal_id).cmp(&(
                b.minute,
                &b.route,
                b.principal,
                &b.principal_id,
            ))
        });
        Drained {
            denials,
            allows: counts,
        }
    }

    /// Denials and allow aggregates held now.
    pub fn len(&self) -> usize {
        let held = self.lock();
        held.denials.len() + held.allow_keys
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
            key_id: Some(format!("k{n}")),
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
        queue.push(event(true, 1)); // aggregate k1
        queue.push(event(true, 1)); // same aggregate: no room needed
        queue.push(event(true, 2)); // aggregate k2
        queue.push(event(false, 3));
        queue.push(event(true, 4)); // a new aggregate, queue full: dropped
        queue.push(event(true, 2)); // counted in k2
        queue.push(event(false, 5)); // evicts one aggregate (k1: 2 allows, or k2: 2)
        queue.push(event(false, 6)); // evicts the other (2 allows)
        queue.push(event(false, 7)); // nothing left to evict: dropped
        assert_eq!(queue.dropped(), (1 + 2 + 2, 1));
        let drained = queue.drain(10);
        let ids: Vec<u64> = drained.denials.iter().map(|e| e.latency_us).collect();
        assert_eq!(ids, vec![3, 5, 6]);
        assert!(drained.allows.is_empty());
        assert!(queue.is_empty());
    }

    #[test]
    fn drain_takes_at_most_max_denials_and_every_count() {
        let queue = Queue::new(100);
        for n in 0..5 {
            queue.push(event(n % 2 == 0, n));
        }
        let first = queue.drain(1);
        assert_eq!(first.denials.len(), 1);
        assert_eq!(first.allows.len(), 3);
        assert_eq!(queue.len(), 1);
    }

    #[test]
    fn allows_aggregate_by_minute_and_principal() {
        let queue = Queue::new(100);
        queue.allow("orders", Some("u"), Some("k1"), None, 130.0);
        queue.allow("orders", None, None, None, 131.0);
        queue.allow("orders", Some("u"), Some("k1"), Some("svc"), 170.0);
        queue.allow("orders", Some("u"), None, Some("svc"), 171.0);
        queue.allow("orders", Some("u"), None, None, 172.0);
        queue.allow("orders", Some("u"), Some("k1"), None, 190.0); // minute 3
        let mut anonymous_route_less = event(true, 9);
        anonymous_route_less.route = None; // not counted (Python's count_allowed)
        queue.push(anonymous_route_less);
        let flat: Vec<(i64, &str, Option<String>, u64)> = queue
            .drain(10)
            .allows
            .into_iter()
            .map(|c| (c.minute, c.principal, c.principal_id, c.count))
            .collect();
        assert_eq!(
            flat,
            vec![
                (2, "anonymous", None, 1),
                (2, "client", Some("svc".into()), 1),
                (2, "key", Some("k1".into()), 2),
                (2, "subject", Some("u".into()), 1),
                (3, "key", Some("k1".into()), 1),
            ]
        );
    }
}
