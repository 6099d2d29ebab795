//! The process-wide cache of generated images (base64), bounded by [`CACHE_MAX_BYTES`]: the oldest entries
//! are forgotten first, so neither the test server nor the offline model can grow it without end.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, OnceLock};

use agentd_responses::B64;

use super::Format;

type Key = (Format, u32, u32, u32, usize);

/// Base64 bytes the image cache holds at most (a 6 MB image is 8 MB of base64).
pub const CACHE_MAX_BYTES: usize = 32 * 1024 * 1024;

/// Images by key, the keys in insertion order, and their total size.
#[derive(Default)]
pub(super) struct Cache {
    pub(super) map: HashMap<Key, B64>,
    order: VecDeque<Key>,
    bytes: usize,
}

impl Cache {
    pub(super) fn insert(&mut self, key: Key, value: B64) {
        if value.len() > CACHE_MAX_BYTES || self.map.contains_key(&key) {
            return;
        }
        while self.bytes + value.len() > CACHE_MAX_BYTES {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(v) = self.map.remove(&old) {
                self.bytes -= v.len();
            }
        }
        self.bytes += value.len();
        self.order.push_back(key);
        self.map.insert(key, value);
    }
}

pub(super) fn cache() -> &'static Mutex<Cache> {
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(Cache::default()))
}

/// Base64 bytes held by the image cache now.
pub fn cached_bytes() -> usize {
    cache().lock().map(|c| c.bytes).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_entries_go_first_and_the_total_stays_under_the_cap() {
        let mut c = Cache::default();
        let big = B64::from("x".repeat(CACHE_MAX_BYTES / 3));
        for variant in 0..10 {
            c.insert((Format::Png, 1, 1, variant, 1), big.clone());
            assert!(c.bytes <= CACHE_MAX_BYTES);
        }
        assert_eq!(c.map.len(), 3);
        assert!(c.map.contains_key(&(Format::Png, 1, 1, 9, 1)));
        assert!(!c.map.contains_key(&(Format::Png, 1, 1, 6, 1)));
        c.insert(
            (Format::Png, 2, 2, 0, 0),
            B64::from("y".repeat(CACHE_MAX_BYTES + 1)),
        );
        assert_eq!(c.map.len(), 3, "an entry over the whole cap is not kept");
    }
}
