//! What the native path does with an API key it has no usable record of.
//!
//! - [`Refused`]: digests Python looked up and refused (no such key, a key
//!   whose format or checksum can never be valid), for Python's own negative
//!   TTL, bounded, oldest evicted first. A hit is answered natively with
//!   Python's `401 invalid_api_key`, so a flood of made-up keys never reaches
//!   Python (nor its database) after the first request of each.
//! - [`Inflight`]: concurrent misses of one digest coalesce. The first leads
//!   the lookup: it asks Python for the record (`crate::lookup`: the key, the
//!   certificate or the token, never the request), which pushes a record or a
//!   refusal; the others wait, a bounded number for a bounded time, until that
//!   push or the lookup's end, then read the cache again: one key costs one
//!   lookup. A lookup that fails (the store or the endpoint is down:
//!   [`Unavailable`]) answers its own leader and waiters only: nothing of it
//!   is cached; so does a lost one (no hook, no answer in time:
//!   `crate::lookup::lost`, the kind's 503). The same coalescing serves a
//!   trusted issuer's keys, an OAuth client's status, an exchanged token and
//!   a signing key (each its own [`Inflight`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::bounded::Bounded;

/// Most refused digests held (Python's `NEGATIVE_CACHE_MAX`).
pub const REFUSED_CACHE_MAX: usize = 10_000;
/// Most requests waiting for one digest's lookup; more get a lost lookup's 503 at once.
/// A waiter is a request task parked on a `Notify` until the lookup ends, so the
/// bound is set by connections, not memory: a burst of a new key's first requests
/// (a client's connection pool warming up) all wait for its one lookup.
pub const MAX_WAITERS: usize = 4096;
/// Longest a request waits for a lookup — its own, or another's it coalesced behind —
/// before answering it as lost; a lookup older than this is presumed lost and the next
/// miss leads anew. A backstop only: Python answers every lookup within its own bound
/// (`bastion.gateway.lookups`: a store read 10 s, an endpoint its configured timeout,
/// never more than 60 s), so this is reached only by an event loop that no longer runs.
/// It was 1 s, which a loaded machine's store read or an endpoint slower than a second
/// but within its timeout exceeded: a good credential's first request got a 503.
pub const LOOKUP_WAIT: Duration = Duration::from_secs(65);
/// Most digests being looked up at once (tracked for coalescing); beyond,
/// misses get a lost lookup's 503 ([`Miss::Busy`]).
pub const MAX_INFLIGHT: usize = 4096;

type Digest = [u8; 32];

/// Refused digests, until when (Unix seconds); the oldest evicted first beyond
/// [`REFUSED_CACHE_MAX`].
pub struct Refused {
    map: Bounded<Digest, f64>,
}

impl Default for Refused {
    fn default() -> Self {
        Self {
            map: Bounded::new(REFUSED_CACHE_MAX),
        }
    }
}

impl Refused {
    /// Remember `digest` as refused until `until`, evicting the oldest entries
    /// beyond [`REFUSED_CACHE_MAX`].
    pub fn insert(&mut self, digest: Digest, until: f64) {
        self.map.insert(digest, until);
    }

    /// Forget `digest` (Python found a record for it).
    pub fn remove(&mut self, digest: &Digest) {
        self.map.remove(digest);
    }

    /// Whether `digest` is refused at `now`.
    pub fn contains(&self, digest: &Digest, now: f64) -> bool {
        self.map.get(digest).is_some_and(|until| *until > now)
    }

    pub fn clear(&mut self) {
        self.map.clear();
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Why a lookup could not be answered (Python's `ServiceUnavailableError`
/// subclass: its code, title and detail), for the requests waiting for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    pub code: &'static str,
    pub title: &'static str,
    pub detail: String,
}

/// One digest's lookup in progress: who waits for it.
struct Pending {
    notify: Notify,
    waiters: AtomicUsize,
    since: Instant,
    /// Set (once) when the lookup failed, before the waiters are woken.
    unavailable: OnceLock<Arc<Unavailable>>,
}

impl Pending {
    fn new(since: Instant) -> Self {
        Pending {
            notify: Notify::new(),
            waiters: AtomicUsize::new(0),
            since,
            unavailable: OnceLock::new(),
        }
    }
}

/// The digests whose lookup a deferred request is making (see the module docs).
#[derive(Default)]
pub struct Inflight {
    map: Mutex<HashMap<Digest, Arc<Pending>>>,
}

/// What a miss should do.
pub enum Miss {
    /// Lead the lookup; waiters wake when the [`Lead`] is dropped.
    Lead(Lead),
    /// Wait for the leading request's lookup ([`Waiter::wait`]), then read the cache again.
    Wait(Waiter),
    /// No room to wait (too many waiters on the key, too many lookups in
    /// flight): answered at once as a lost lookup (`decide`'s 503).
    Busy,
}

/// The request making a digest's lookup; dropping it wakes the waiters.
pub struct Lead {
    inflight: Arc<Inflight>,
    digest: Digest,
    pending: Arc<Pending>,
}

/// A request waiting for another's lookup of the same digest.
pub struct Waiter {
    inflight: Arc<Inflight>,
    digest: Digest,
    pending: Arc<Pending>,
}

impl Inflight {
    fn lock(&self) -> MutexGuard<'_, HashMap<Digest, Arc<Pending>>> {
        // Entries are whole values; a panic elsewhere cannot leave one half-made.
        self.map
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A native miss of `digest`: lead its lookup, or wait for the one in flight.
    pub fn miss(self: &Arc<Self>, digest: Digest) -> Miss {
        let mut map = self.lock();
        if let Some(pending) = map.get(&digest) {
            if pending.since.elapsed() < LOOKUP_WAIT {
                if pending.waiters.fetch_add(1, Ordering::AcqRel) >= MAX_WAITERS {
                    pending.waiters.fetch_sub(1, Ordering::AcqRel);
                    return Miss::Busy;
                }
                return Miss::Wait(Waiter {
                    inflight: self.clone(),
                    digest,
                    pending: pending.clone(),
                });
            }
            // That lookup is presumed lost (Python never answered in time): lead anew.
        } else if map.len() >= MAX_INFLIGHT {
            map.retain(|_, pending| pending.since.elapsed() < LOOKUP_WAIT);
            if map.len() >= MAX_INFLIGHT {
                return Miss::Busy;
            }
        }
        let pending = Arc::new(Pending::new(Instant::now()));
        if let Some(lost) = map.insert(digest, pending.clone()) {
            lost.notify.notify_waiters();
        }
        Miss::Lead(Lead {
            inflight: self.clone(),
            digest,
            pending,
        })
    }

    /// Python pushed an answer for `digest`: wake whoever waits for it.
    pub fn settled(&self, digest: &Digest) {
        if let Some(pending) = self.lock().remove(digest) {
            pending.notify.notify_waiters();
        }
    }

    /// Wake every waiter (a cache clear: their answer will not come as a push).
    pub fn settle_all(&self) {
        for (_, pending) in self.lock().drain() {
            pending.notify.notify_waiters();
        }
    }

    fn is_current(&self, digest: &Digest, pending: &Arc<Pending>) -> bool {
        self.lock()
            .get(digest)
            .is_some_and(|current| Arc::ptr_eq(current, pending))
    }

    /// Lookups in flight (tests).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

impl Lead {
    /// The lookup failed: the requests waiting for it answer `why` (nothing is
    /// cached); they are woken when this lead is dropped.
    pub fn unavailable(&self, why: Arc<Unavailable>) {
        let _ = self.pending.unavailable.set(why);
    }
}

impl Drop for Lead {
    fn drop(&mut self) {
        let mut map = self.inflight.lock();
        if map
            .get(&self.digest)
            .is_some_and(|current| Arc::ptr_eq(current, &self.pending))
        {
            map.remove(&self.digest);
        }
        drop(map);
        self.pending.notify.notify_waiters();
    }
}

impl Waiter {
    /// Wait until the lookup is settled (pushed, or its lead ended) or
    /// `limit` has passed, whichever is first; then whether the lookup failed
    /// ([`Lead::unavailable`]).
    pub async fn wait(self, limit: Duration) -> Option<Arc<Unavailable>> {
        let notified = self.pending.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        // Settled between `miss` and `enable`: nothing will notify any more.
        if self.inflight.is_current(&self.digest, &self.pending) {
            let _ = tokio::time::timeout(limit, notified).await;
        }
        self.pending.unavailable.get().cloned()
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.pending.waiters.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u32) -> Digest {
        let mut out = [0u8; 32];
        out[..4].copy_from_slice(&n.to_be_bytes());
        out
    }

    #[test]
    fn refused_entries_end_at_their_deadline() {
        let mut refused = Refused::default();
        refused.insert(d(1), 10.0);
        assert!(refused.contains(&d(1), 9.9));
        assert!(!refused.contains(&d(1), 10.0));
        assert!(!refused.contains(&d(2), 0.0));
        refused.clear();
        assert!(!refused.contains(&d(1), 0.0));
        assert!(refused.is_empty());
    }

    #[test]
    fn refused_is_bounded_and_evicts_the_oldest() {
        let mut refused = Refused::default();
        for n in 0..(REFUSED_CACHE_MAX as u32 + 10) {
            refused.insert(d(n), 100.0);
        }
        assert_eq!(refused.len(), REFUSED_CACHE_MAX);
        assert!(!refused.contains(&d(0), 0.0));
        assert!(!refused.contains(&d(9), 0.0));
        assert!(refused.contains(&d(10), 0.0));
        assert!(refused.contains(&d(REFUSED_CACHE_MAX as u32 + 9), 0.0));
    }

    #[test]
    fn a_refreshed_entry_is_evicted_by_its_latest_insertion() {
        let mut refused = Refused::default();
        refused.insert(d(0), 100.0);
        for n in 1..(REFUSED_CACHE_MAX as u32) {
            refused.insert(d(n), 100.0);
        }
        refused.insert(d(0), 200.0); // now the newest
        refused.insert(d(u32::MAX), 100.0);
        assert!(refused.contains(&d(0), 150.0));
        assert!(!refused.contains(&d(1), 0.0));
        // Many refreshes of one digest keep the order queue bounded.
        for _ in 0..(3 * REFUSED_CACHE_MAX) {
            refused.insert(d(0), 300.0);
        }
        assert!(refused.map.queued() <= 2 * REFUSED_CACHE_MAX);
        assert_eq!(refused.len(), REFUSED_CACHE_MAX);
    }

    #[test]
    fn the_first_miss_leads_and_the_others_wait_up_to_the_bound() {
        let inflight = Arc::new(Inflight::default());
        let lead = inflight.miss(d(1));
        assert!(matches!(lead, Miss::Lead(_)));
        let mut waiters = Vec::new();
        for _ in 0..MAX_WAITERS {
            match inflight.miss(d(1)) {
                Miss::Wait(w) => waiters.push(w),
                _ => panic!("should wait"),
            }
        }
        assert!(matches!(inflight.miss(d(1)), Miss::Busy));
        // Another digest leads its own lookup.
        assert!(matches!(inflight.miss(d(2)), Miss::Lead(_)));
        // A waiter gone frees its place.
        waiters.pop();
        assert!(matches!(inflight.miss(d(1)), Miss::Wait(_)));
        drop(lead);
        assert!(matches!(inflight.miss(d(1)), Miss::Lead(_)));
    }

    #[tokio::test]
    async fn a_push_wakes_the_waiters() {
        let inflight = Arc::new(Inflight::default());
        let _lead = inflight.miss(d(1));
        let Miss::Wait(waiter) = inflight.miss(d(1)) else {
            panic!("should wait");
        };
        let other = inflight.clone();
        let started = Instant::now();
        let task = tokio::spawn(waiter.wait(Duration::from_secs(10)));
        tokio::time::sleep(Duration::from_millis(20)).await;
        other.settled(&d(1));
        task.await.expect("joined");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(inflight.is_empty());
    }

    #[tokio::test]
    async fn the_end_of_the_leading_request_wakes_the_waiters() {
        let inflight = Arc::new(Inflight::default());
        let lead = inflight.miss(d(1));
        let Miss::Wait(waiter) = inflight.miss(d(1)) else {
            panic!("should wait");
        };
        let started = Instant::now();
        let task = tokio::spawn(waiter.wait(Duration::from_secs(10)));
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(lead);
        task.await.expect("joined");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_waiter_gives_up_after_its_limit() {
        let inflight = Arc::new(Inflight::default());
        let _lead = inflight.miss(d(1));
        let Miss::Wait(waiter) = inflight.miss(d(1)) else {
            panic!("should wait");
        };
        let started = Instant::now();
        waiter.wait(Duration::from_millis(50)).await;
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(50) && waited < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_waiter_settled_before_it_waits_returns_at_once() {
        let inflight = Arc::new(Inflight::default());
        let _lead = inflight.miss(d(1));
        let Miss::Wait(waiter) = inflight.miss(d(1)) else {
            panic!("should wait");
        };
        inflight.settled(&d(1));
        let started = Instant::now();
        waiter.wait(Duration::from_secs(10)).await;
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_failed_lookup_answers_its_waiters_only() {
        let inflight = Arc::new(Inflight::default());
        let Miss::Lead(lead) = inflight.miss(d(1)) else {
            panic!("should lead");
        };
        let Miss::Wait(waiter) = inflight.miss(d(1)) else {
            panic!("should wait");
        };
        let task = tokio::spawn(waiter.wait(Duration::from_secs(10)));
        tokio::time::sleep(Duration::from_millis(20)).await;
        let why = Arc::new(Unavailable {
            code: "database_unavailable",
            title: "Database unavailable",
            detail: "down".into(),
        });
        lead.unavailable(why.clone());
        drop(lead);
        assert_eq!(task.await.expect("joined"), Some(why));
        // The next miss leads a new lookup, with no failure remembered.
        let Miss::Lead(_next) = inflight.miss(d(1)) else {
            panic!("should lead");
        };
        let Miss::Wait(waiter) = inflight.miss(d(1)) else {
            panic!("should wait");
        };
        assert_eq!(waiter.wait(Duration::from_millis(10)).await, None);
    }

    #[test]
    fn a_lost_lookup_is_taken_over_after_the_wait() {
        let inflight = Arc::new(Inflight::default());
        let old = inflight.miss(d(1));
        // Pretend the lead started long ago.
        if let Some(pending) = inflight.lock().get_mut(&d(1)) {
            *pending = Arc::new(Pending::new(Instant::now() - LOOKUP_WAIT));
        }
        assert!(matches!(inflight.miss(d(1)), Miss::Lead(_)));
        drop(old);
    }
}
