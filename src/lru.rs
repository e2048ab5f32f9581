//! [`Lru`]: a map bounded to a capacity that forgets its least recently used entries
//! first. The crate's one such cache (exchange subjects in `token`, minted leaf
//! certificates in `intercept`).
//!
//! It is a plain data structure: no locking (callers wrap it in their own `Mutex`), no
//! clock, no IO. Lookups, inserts and evictions are O(log n).

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

/// Entries by key, each with the tick of its last use; `by_use` orders the keys by that
/// tick, so the least recently used one is always `by_use`'s first.
pub struct Lru<K, V> {
    entries: HashMap<K, (V, u64)>,
    by_use: BTreeMap<u64, K>,
    tick: u64,
    capacity: usize,
}

impl<K: Hash + Eq + Clone, V> Lru<K, V> {
    /// An empty map that holds at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            by_use: BTreeMap::new(),
            tick: 0,
            capacity,
        }
    }

    /// The value for `key`, which becomes the most recently used entry.
    pub fn get(&mut self, key: &K) -> Option<&V> {
        self.tick += 1;
        let (value, used) = self.entries.get_mut(key)?;
        let previous = std::mem::replace(used, self.tick);
        if let Some(k) = self.by_use.remove(&previous) {
            self.by_use.insert(self.tick, k);
        }
        Some(value)
    }

    /// Stores `value` as the most recently used entry (replacing any value `key` had),
    /// then forgets the least recently used entries beyond the capacity.
    pub fn insert(&mut self, key: K, value: V) {
        self.tick += 1;
        if let Some((_, previous)) = self.entries.insert(key.clone(), (value, self.tick)) {
            self.by_use.remove(&previous);
        }
        self.by_use.insert(self.tick, key);
        self.evict();
    }

    /// Changes the capacity; a smaller one forgets the least recently used entries now.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
        self.evict();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// All values, in no particular order, without marking them used.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.values().map(|(v, _)| v)
    }

    fn evict(&mut self) {
        while self.entries.len() > self.capacity {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(lru: &Lru<&'static str, u32>) -> Vec<&'static str> {
        lru.by_use.values().copied().collect()
    }

    #[test]
    fn forgets_the_least_recently_used_first() {
        let mut lru = Lru::new(2);
        lru.insert("a", 1);
        lru.insert("b", 2);
        assert_eq!(lru.get(&"a"), Some(&1), "a is now the most recent");
        lru.insert("c", 3);
        assert_eq!(lru.get(&"b"), None, "b was the least recently used");
        assert_eq!(keys(&lru), ["a", "c"]);
        assert_eq!(lru.len(), 2);
    }

    #[test]
    fn reinserting_replaces_the_value_and_counts_as_a_use() {
        let mut lru = Lru::new(2);
        lru.insert("a", 1);
        lru.insert("b", 2);
        lru.insert("a", 10);
        lru.insert("c", 3);
        assert_eq!(lru.get(&"a"), Some(&10));
        assert_eq!(lru.get(&"b"), None);
        assert_eq!(lru.len(), 2);
        assert_eq!(lru.by_use.len(), 2, "no stale order entries");
    }

    #[test]
    fn a_smaller_capacity_evicts_at_once_and_zero_holds_nothing() {
        let mut lru = Lru::new(3);
        for (k, v) in [("a", 1), ("b", 2), ("c", 3)] {
            lru.insert(k, v);
        }
        lru.get(&"a");
        lru.set_capacity(1);
        assert_eq!(keys(&lru), ["a"]);
        lru.set_capacity(0);
        assert!(lru.is_empty());
        lru.insert("d", 4);
        assert!(lru.is_empty());
        assert_eq!(lru.values().count(), 0);
    }

    #[test]
    fn stays_bounded_under_many_keys() {
        let mut lru = Lru::new(100);
        for i in 0..10_000u32 {
            lru.insert(i, i);
            if i % 3 == 0 {
                lru.get(&(i / 2));
            }
        }
        assert_eq!(lru.len(), 100);
        assert_eq!(lru.by_use.len(), 100);
        assert_eq!(lru.get(&9_999), Some(&9_999));
    }
}
