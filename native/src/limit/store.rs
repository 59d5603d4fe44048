//! The in-process GCRA store: one TAT per bucket key, shared by every thread
//! of the native front and by Python's `MemoryLimiter` (one budget per node).
//!
//! A sharded mutex map: a request's buckets are locked together (shards in
//! ascending order, so two requests never deadlock), read, decided and written
//! all or nothing — the same contract as the Redis script. Buckets whose TAT
//! has passed hold no information and are swept, amortised like Python's
//! memory backend (after at least max(1024, keys) checks).

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use arc_swap::ArcSwap;

use super::gcra::Limit;

const SHARDS: usize = 64;
const SWEEP_MIN_OPS: usize = 1024;

/// Microseconds on the native monotonic clock (the shared store's default clock).
///
/// Starts at one day so no TAT is ever near zero.
pub fn now_us() -> i64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let elapsed = EPOCH.get_or_init(Instant::now).elapsed().as_micros();
    86_400_000_000 + i64::try_from(elapsed).unwrap_or(i64::MAX / 2)
}

fn current_slot() -> &'static ArcSwap<Store> {
    static CURRENT: OnceLock<ArcSwap<Store>> = OnceLock::new();
    CURRENT.get_or_init(|| ArcSwap::from_pointee(Store::new()))
}

/// One bucket of a check: its key, emission interval and tolerance (µs).
#[derive(Debug, Clone, Copy)]
pub struct Bucket<'a> {
    pub key: &'a str,
    pub interval_us: i64,
    pub tolerance_us: i64,
}

/// The outcome of [`Store::take`]: admitted or not, and every bucket's TAT
/// as it was before (`None`: never seen or forgotten).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Take {
    pub admitted: bool,
    pub tats: Vec<Option<i64>>,
}

/// The sharded TAT map.
pub struct Store {
    shards: Vec<Mutex<HashMap<String, i64>>>,
    ops: AtomicUsize,
    keys: AtomicUsize,
    sweeping: AtomicBool,
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    pub fn new() -> Self {
        Store {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            ops: AtomicUsize::new(0),
            keys: AtomicUsize::new(0),
            sweeping: AtomicBool::new(false),
        }
    }

    /// The store the native front decides on: the one Python's gateway
    /// limiter installed (so deferred and native requests share one budget).
    pub fn current() -> Arc<Store> {
        current_slot().load_full()
    }

    /// Make `store` the one [`Store::current`] returns (the runtime does, at start).
    pub fn install(store: Arc<Store>) {
        current_slot().store(store);
    }

    /// How many buckets are held (an estimate between sweeps is exact here:
    /// it is counted on insert and on sweep).
    pub fn len(&self) -> usize {
        self.keys.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard_of(key: &str) -> usize {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        (hasher.finish() as usize) % SHARDS
    }

    fn lock(&self, index: usize) -> MutexGuard<'_, HashMap<String, i64>> {
        // A poisoned shard only means a panic elsewhere mid-insert of an i64: the map is intact.
        match self.shards[index].lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Admit a request costing `cost` at `now` only if every bucket admits it;
    /// a refused request consumes nothing (GCRA, all or nothing).
    ///
    /// The caller guarantees distinct keys (Python validates them).
    pub fn take(&self, buckets: &[Bucket<'_>], cost: i64, now: i64) -> Take {
        self.maybe_sweep(now);
        if let [one] = buckets {
            return self.take_one(one, cost, now);
        }
        let indices: Vec<usize> = buckets.iter().map(|b| Self::shard_of(b.key)).collect();
        let mut order = indices.clone();
        order.sort_unstable();
        order.dedup();
        let mut guards: Vec<(usize, MutexGuard<'_, HashMap<String, i64>>)> =
            order.iter().map(|&i| (i, self.lock(i))).collect();
        let slot = |i: usize| order.binary_search(&i).unwrap_or(0);
        let tats: Vec<Option<i64>> = buckets
            .iter()
            .zip(&indices)
            .map(|(b, &i)| guards[slot(i)].1.get(b.key).copied())
            .collect();
        let admitted = buckets
            .iter()
            .zip(&tats)
            .all(|(b, tat)| admits(*tat, now, b, cost));
        if admitted && cost > 0 {
            let mut added = 0;
            for ((b, &i), tat) in buckets.iter().zip(&indices).zip(&tats) {
                let base = tat.map_or(now, |t| t.max(now));
                let map = &mut guards[slot(i)].1;
                if map
                    .insert(b.key.to_owned(), base + cost * b.interval_us)
                    .is_none()
                {
                    added += 1;
                }
            }
            self.keys.fetch_add(added, Ordering::Relaxed);
        }
        Take { admitted, tats }
    }

    fn take_one(&self, b: &Bucket<'_>, cost: i64, now: i64) -> Take {
        let mut map = self.lock(Self::shard_of(b.key));
        let tat = map.get(b.key).copied();
        let admitted = admits(tat, now, b, cost);
        if admitted && cost > 0 {
            let base = tat.map_or(now, |t| t.max(now));
            let new = base + cost * b.interval_us;
            match map.get_mut(b.key) {
                Some(slot) => *slot = new,
                None => {
                    map.insert(b.key.to_owned(), new);
                    self.keys.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Take {
            admitted,
            tats: vec![tat],
        }
    }

    /// Check `limits` (key, limit) together: [`Store::take`] with the limits' parameters.
    pub fn take_limits(&self, checks: &[(String, &Limit)], cost: i64, now: i64) -> Take {
        let buckets: Vec<Bucket<'_>> = checks
            .iter()
            .map(|(key, limit)| Bucket {
                key,
                interval_us: limit.interval_us,
                tolerance_us: limit.tolerance_us,
            })
            .collect();
        self.take(&buckets, cost, now)
    }

    fn maybe_sweep(&self, now: i64) {
        let ops = self.ops.fetch_add(1, Ordering::Relaxed) + 1;
        if ops < SWEEP_MIN_OPS.max(self.len()) {
            return;
        }
        if self.sweeping.swap(true, Ordering::Acquire) {
            return; // another thread sweeps
        }
        self.ops.store(0, Ordering::Relaxed);
        let mut removed = 0;
        for index in 0..SHARDS {
            let mut map = self.lock(index);
            let before = map.len();
            map.retain(|_, tat| *tat > now);
            removed += before - map.len();
        }
        self.keys.fetch_sub(removed, Ordering::Relaxed);
        self.sweeping.store(false, Ordering::Release);
    }
}

fn admits(tat: Option<i64>, now: i64, b: &Bucket<'_>, cost: i64) -> bool {
    let base = tat.map_or(now, |t| t.max(now));
    base + cost * b.interval_us - b.tolerance_us <= now
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::decide;

    fn bucket(key: &str, limit: &Limit) -> Bucket<'static> {
        Bucket {
            key: Box::leak(key.to_owned().into_boxed_str()),
            interval_us: limit.interval_us,
            tolerance_us: limit.tolerance_us,
        }
    }

    #[test]
    fn refused_consumes_nothing() {
        let store = Store::new();
        let tight = Limit::parse("2/minute", None, "key").expect("valid");
        let loose = Limit::parse("10/minute", None, "ip").expect("valid");
        let both = [bucket("key:a", &tight), bucket("ip:1", &loose)];
        let now = 5_000_000;
        assert!(store.take(&both, 1, now).admitted);
        assert!(store.take(&both, 1, now).admitted);
        let refused = store.take(&both, 1, now);
        assert!(!refused.admitted);
        assert_eq!(
            refused.tats,
            vec![Some(now + 60_000_000), Some(now + 12_000_000)]
        );
        let alone = [bucket("ip:1", &loose)];
        let admitted = (0..9)
            .filter(|_| store.take(&alone, 1, now).admitted)
            .count();
        assert_eq!(admitted, 8);
    }

    #[test]
    fn threads_admit_exactly_n() {
        let store = Arc::new(Store::new());
        let limit = Limit::parse("1000/hour", None, "").expect("valid");
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let store = Arc::clone(&store);
                let limit = limit.clone();
                std::thread::spawn(move || {
                    let b = [bucket("hot", &limit), bucket("other", &limit)];
                    (0..500)
                        .filter(|_| store.take(&b, 1, 1_000).admitted)
                        .count()
                })
            })
            .collect();
        let total: usize = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
        assert_eq!(total, 1000);
    }

    proptest::proptest! {
        /// The sharded store decides exactly like GCRA applied to a plain map, all or nothing.
        #[test]
        fn store_matches_a_sequential_model(
            ops in proptest::collection::vec((0usize..4, 0usize..4, 0i64..3, 0i64..20_000_000), 1..80)
        ) {
            let limits = [
                Limit::parse("3/minute", None, "").expect("valid"),
                Limit::parse("10/second", Some(4), "").expect("valid"),
            ];
            let keys = ["a", "b", "c", "d"];
            let store = Store::new();
            let mut model: std::collections::HashMap<&str, i64> = Default::default();
            let mut now = 1_000_000_000;
            for (first, second, cost, step) in ops {
                now += step;
                let mut picked = vec![(keys[first], &limits[0])];
                if second != first {
                    picked.push((keys[second], &limits[1]));
                }
                let buckets: Vec<Bucket<'_>> = picked
                    .iter()
                    .map(|(key, l)| Bucket { key, interval_us: l.interval_us, tolerance_us: l.tolerance_us })
                    .collect();
                let take = store.take(&buckets, cost, now);
                let decisions: Vec<_> = picked
                    .iter()
                    .map(|(key, l)| decide(model.get(key).copied(), now, l, cost))
                    .collect();
                let admitted = decisions.iter().all(|d| d.allowed);
                proptest::prop_assert_eq!(take.admitted, admitted);
                let before: Vec<Option<i64>> = picked.iter().map(|(k, _)| model.get(k).copied()).collect();
                proptest::prop_assert_eq!(take.tats, before);
                if admitted && cost > 0 {
                    for ((key, _), d) in picked.iter().zip(&decisions) {
                        model.insert(key, d.new_tat);
                    }
                }
            }
        }
    }

    #[test]
    fn installed_store_is_current() {
        let store = Arc::new(Store::new());
        Store::install(Arc::clone(&store));
        assert!(Arc::ptr_eq(&Store::current(), &store));
    }

    #[test]
    fn expired_keys_are_swept() {
        let store = Store::new();
        let limit = Limit::parse("1/second", None, "").expect("valid");
        let now = 1_000_000_000;
        for i in 0..5000 {
            store.take(&[bucket(&format!("ip:{i}"), &limit)], 1, now);
        }
        assert_eq!(store.len(), 5000);
        for _ in 0..5000 {
            store.take(&[bucket("ip:live", &limit)], 1, now + 2_000_000);
        }
        assert_eq!(store.len(), 1);
    }
}
