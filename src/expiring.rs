//! [`ExpiringSet`]: the exact, bounded, expiring set behind the security sets (one-time
//! values). Unlike a cache it never drops a live entry to make room: a new
//! key that does not fit is refused, and the caller fails closed.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

/// What [`ExpiringSet::insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inserted {
    /// The key was not in the set (or its entry had expired): it is now.
    New,
    /// The key is in the set and has not expired: nothing changed.
    Present,
    /// The key is not in the set and the set is full of live entries: nothing changed.
    Full,
}

/// Keys, each with a value, until their own expiry; at most `capacity` of them.
///
/// Expired entries are purged before every insert, so the capacity frees itself as entries
/// expire. There is no admission policy and no eviction of live entries.
pub(crate) struct ExpiringSet<V> {
    capacity: usize,
    inner: RwLock<Inner<V>>,
}

struct Inner<V> {
    entries: HashMap<Arc<str>, (Instant, V)>,
    /// Every entry's expiry, soonest first (the same keys as `entries`).
    by_expiry: BinaryHeap<Reverse<(Instant, Arc<str>)>>,
}

impl<V> ExpiringSet<V> {
    /// An empty set holding at most `capacity` entries.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: RwLock::new(Inner {
                entries: HashMap::new(),
                by_expiry: BinaryHeap::new(),
            }),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Entries held, expired ones not yet purged included.
    pub(crate) fn len(&self) -> usize {
        self.read().entries.len()
    }

    /// Whether `key` is in the set and has not expired.
    pub(crate) fn contains(&self, key: &str) -> bool {
        let now = Instant::now();
        self.read()
            .entries
            .get(key)
            .is_some_and(|(expires, _)| *expires > now)
    }

    /// Adds `key` for `ttl` unless it is there already; refuses it when the set is full of
    /// live entries.
    pub(crate) fn insert(&self, key: &str, ttl: Duration, value: V) -> Inserted {
        let now = Instant::now();
        let mut inner = self.write();
        inner.purge(now);
        if inner.entries.contains_key(key) {
            return Inserted::Present;
        }
        if inner.entries.len() >= self.capacity {
            return Inserted::Full;
        }
        // A TTL too long for the clock stays for as long as the clock can say.
        let expires = now
            .checked_add(ttl)
            .unwrap_or_else(|| now + Duration::from_secs(u32::MAX.into()));
        let key: Arc<str> = Arc::from(key);
        inner.by_expiry.push(Reverse((expires, key.clone())));
        inner.entries.insert(key, (expires, value));
        Inserted::New
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner<V>> {
        // Nothing panics while holding the lock; a poisoned one still holds a whole set.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner<V>> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl<V> Inner<V> {
    /// Drops every entry expired at `now`.
    fn purge(&mut self, now: Instant) {
        while let Some(Reverse((expires, _))) = self.by_expiry.peek() {
            if *expires > now {
                break;
            }
            let Some(Reverse((expires, key))) = self.by_expiry.pop() else {
                break;
            };
            if self.entries.get(&key).is_some_and(|(e, _)| *e == expires) {
                self.entries.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(3600);

    #[test]
    fn full_set_refuses_new_keys_and_keeps_every_live_one() {
        let set = ExpiringSet::new(3);
        for key in ["a", "b", "c"] {
            assert_eq!(set.insert(key, LONG, ()), Inserted::New);
        }
        assert_eq!(set.insert("d", LONG, ()), Inserted::Full);
        assert!(!set.contains("d"));
        for key in ["a", "b", "c"] {
            assert_eq!(set.insert(key, LONG, ()), Inserted::Present);
            assert!(set.contains(key));
        }
        assert_eq!(set.len(), 3);
    }

    #[test]
    fn expired_entries_free_their_room() {
        let set = ExpiringSet::new(2);
        assert_eq!(
            set.insert("short", Duration::from_millis(50), ()),
            Inserted::New
        );
        assert_eq!(set.insert("long", LONG, ()), Inserted::New);
        assert_eq!(set.insert("next", LONG, ()), Inserted::Full);
        std::thread::sleep(Duration::from_millis(80));
        assert!(!set.contains("short"));
        assert_eq!(set.insert("next", LONG, ()), Inserted::New);
        assert_eq!(set.len(), 2);
        // An expired key may be used again.
        assert_eq!(set.insert("short", LONG, ()), Inserted::Full);
        assert!(set.contains("long") && set.contains("next"));
    }

    #[test]
    fn a_huge_ttl_does_not_overflow_the_clock() {
        let set = ExpiringSet::new(1);
        assert_eq!(set.insert("a", Duration::MAX, ()), Inserted::New);
        assert!(set.contains("a"));
    }
}
