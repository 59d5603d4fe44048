//! A map bounded to a fixed number of entries, the oldest insertion evicted
//! first (re-inserting a key makes it the newest). One shape for the native
//! caches Python fills: refused API-key digests (`miss::Refused`),
//! introspection answers (`introspection::Introspected`) and client-certificate
//! identities (`mtls::CertIdentities`); [`Shared`] is one behind a lock, for the
//! caches read by every request thread.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Entries by key, at most `cap`, in insertion order for eviction.
pub struct Bounded<K, V> {
    cap: usize,
    /// key → (value, the sequence number of its latest insertion).
    map: HashMap<K, (V, u64)>,
    /// (key, sequence) in insertion order; pairs a later insertion or a
    /// removal made stale are skipped (and pruned once they pile up).
    order: VecDeque<(K, u64)>,
    seq: u64,
}

impl<K: Eq + Hash + Copy, V> Bounded<K, V> {
    /// An empty map holding at most `cap` entries.
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            map: HashMap::new(),
            order: VecDeque::new(),
            seq: 0,
        }
    }

    /// Hold `value` for `key` as the newest entry, evicting the oldest beyond the cap.
    pub fn insert(&mut self, key: K, value: V) {
        self.seq += 1;
        self.map.insert(key, (value, self.seq));
        self.order.push_back((key, self.seq));
        while self.map.len() > self.cap {
            let Some((oldest, seq)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&oldest).is_some_and(|entry| entry.1 == seq) {
                self.map.remove(&oldest);
            }
        }
        // Re-inserted and removed keys leave stale pairs behind: keep the queue bounded too.
        if self.order.len() > 2 * self.cap.max(1) {
            let map = &self.map;
            self.order
                .retain(|(key, seq)| map.get(key).is_some_and(|entry| entry.1 == *seq));
        }
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key).map(|entry| &entry.0)
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        self.map.remove(key).map(|entry| entry.0)
    }

    pub fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
    }

    /// Keep only the entries `keep` accepts (their queue pairs go stale).
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &V) -> bool) {
        self.map.retain(|key, entry| keep(key, &entry.0));
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Pairs held for eviction, stale ones included (tests: the queue stays bounded).
    pub fn queued(&self) -> usize {
        self.order.len()
    }
}

/// A [`Bounded`] shared between threads. Its lock outlives a panic elsewhere:
/// entries are whole values, so a poisoned lock never guards a half-made one.
pub struct Shared<K, V>(RwLock<Bounded<K, V>>);

impl<K: Eq + Hash + Copy, V> Shared<K, V> {
    /// An empty map holding at most `cap` entries.
    pub fn new(cap: usize) -> Self {
        Self(RwLock::new(Bounded::new(cap)))
    }

    pub fn read(&self) -> RwLockReadGuard<'_, Bounded<K, V>> {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, Bounded<K, V>> {
        self.0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A copy of the value for `key` (an `Arc` in the caches: cheap to clone).
    pub fn get(&self, key: &K) -> Option<V>
    where
        V: Clone,
    {
        self.read().get(key).cloned()
    }

    /// Hold `value` for `key` as the newest entry, evicting the oldest beyond the cap.
    pub fn put(&self, key: K, value: impl Into<V>) {
        self.write().insert(key, value.into());
    }

    pub fn clear(&self) {
        self.write().clear();
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::{Bounded, Shared};

    #[test]
    fn the_oldest_insertion_goes_first() {
        let mut map = Bounded::new(2);
        map.insert(1, "a");
        map.insert(2, "b");
        map.insert(1, "a2"); // now the newest
        map.insert(3, "c");
        assert_eq!(map.get(&2), None);
        assert_eq!(map.get(&1), Some(&"a2"));
        assert_eq!(map.get(&3), Some(&"c"));
        assert_eq!(map.len(), 2);
    }

    #[test]
    fn removal_and_reinsertion_keep_the_queue_bounded() {
        let mut map = Bounded::new(3);
        for round in 0..1_000 {
            map.insert(round % 2, round);
            map.remove(&0);
        }
        assert!(map.len() <= 3);
        assert!(map.queued() <= 6);
        map.clear();
        assert!(map.is_empty() && map.queued() == 0);
    }

    #[test]
    fn a_removed_key_is_not_evicted_in_its_later_life() {
        let mut map = Bounded::new(2);
        map.insert(1, 1);
        map.remove(&1);
        map.insert(2, 2);
        map.insert(1, 1); // a stale (1, seq 1) pair is still queued first
        map.insert(3, 3);
        // The stale pair is skipped; 2 is the oldest live entry.
        assert_eq!(map.get(&2), None);
        assert_eq!((map.get(&1), map.get(&3)), (Some(&1), Some(&3)));
    }

    #[test]
    fn shared_puts_gets_and_evicts_like_bounded() {
        let shared: Shared<u8, std::sync::Arc<&str>> = Shared::new(2);
        assert!(shared.is_empty());
        shared.put(1, "one");
        shared.put(2, std::sync::Arc::new("two"));
        shared.put(3, "three");
        assert_eq!(shared.len(), 2);
        assert_eq!(shared.get(&1), None);
        assert_eq!(shared.get(&3).as_deref(), Some(&"three"));
        shared.clear();
        assert!(shared.is_empty() && shared.read().queued() == 0);
    }
}
