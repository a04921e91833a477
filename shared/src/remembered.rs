//! What a warm process remembers between requests (a function instance serves many): a bounded map,
//! emptied when it reaches its bound, so that it never grows with the traffic it has seen. Used for the
//! build a schedule's trigger ran (`trigger::read_schedule`) and the API keys found (`http::auth`).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

pub struct Remembered<K, V> {
    entries: Mutex<Option<HashMap<K, V>>>,
    bound: usize,
}

impl<K: Eq + Hash, V: Clone> Remembered<K, V> {
    /// At most `bound` entries.
    pub const fn new(bound: usize) -> Self {
        Remembered { entries: Mutex::new(None), bound }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        self.entries.lock().ok()?.as_ref()?.get(key).cloned()
    }

    pub fn insert(&self, key: K, value: V) {
        if let Ok(mut entries) = self.entries.lock() {
            let map = entries.get_or_insert_with(HashMap::new);
            if map.len() >= self.bound {
                map.clear();
            }
            map.insert(key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_forgets_everything_when_full() {
        let r: Remembered<u32, &str> = Remembered::new(2);
        r.insert(1, "a");
        r.insert(2, "b");
        assert_eq!((r.get(&1), r.get(&2)), (Some("a"), Some("b")));
        r.insert(3, "c");
        assert_eq!((r.get(&1), r.get(&2), r.get(&3)), (None, None, Some("c")));
    }
}
