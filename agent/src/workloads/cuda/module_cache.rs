//! The compiled kernels of one device, keyed by source, least recently
//! used evicted first.
//!
//! NVRTC takes tens of milliseconds a kernel, so each source is compiled
//! once per device. The bound keeps a stream of distinct user kernels from
//! growing the agent's host and GPU memory without limit; the built-in
//! kernels, used all the time, stay.

use std::collections::HashMap;

/// How many modules a device keeps.
pub const CAPACITY: usize = 64;

/// A bounded map from kernel source to its loaded module.
pub struct ModuleCache<T> {
    entries: HashMap<String, (T, u64)>,
    clock: u64,
    capacity: usize,
}

impl<T: Clone> ModuleCache<T> {
    pub fn new(capacity: usize) -> ModuleCache<T> {
        ModuleCache {
            entries: HashMap::new(),
            clock: 0,
            capacity: capacity.max(1),
        }
    }

    /// The module for `source`, marked as just used.
    pub fn get(&mut self, source: &str) -> Option<T> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.get_mut(source).map(|(module, used)| {
            *used = clock;
            module.clone()
        })
    }

    /// Keeps `module` for `source`, evicting the least recently used entry
    /// when full. A module still in use by a running job lives on until
    /// that job drops it.
    pub fn insert(&mut self, source: String, module: T) {
        self.clock += 1;
        if !self.entries.contains_key(&source) && self.entries.len() >= self.capacity {
            if let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
            {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(source, (module, self.clock));
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_least_recently_used_source_when_full() {
        let mut cache = ModuleCache::new(2);
        cache.insert("a".into(), 1);
        cache.insert("b".into(), 2);
        assert_eq!(cache.get("a"), Some(1)); // "b" is now the oldest
        cache.insert("c".into(), 3);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get("b"), None);
        assert_eq!(cache.get("a"), Some(1));
        assert_eq!(cache.get("c"), Some(3));
    }

    #[test]
    fn replacing_a_source_evicts_nothing() {
        let mut cache = ModuleCache::new(2);
        cache.insert("a".into(), 1);
        cache.insert("b".into(), 2);
        cache.insert("a".into(), 10);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get("a"), Some(10));
        assert_eq!(cache.get("b"), Some(2));
    }

    #[test]
    fn many_distinct_sources_stay_within_the_bound() {
        let mut cache = ModuleCache::new(CAPACITY);
        for i in 0..10 * CAPACITY {
            cache.insert(format!("kernel {i}"), i);
        }
        assert_eq!(cache.len(), CAPACITY);
        assert_eq!(
            cache.get(&format!("kernel {}", 10 * CAPACITY - 1)),
            Some(10 * CAPACITY - 1)
        );
    }
}
