//! The in-memory `Table`: the embedded default and a test double, with DynamoDB's semantics for
//! conditions and all-or-nothing transactions.

use std::collections::BTreeMap;

use async_trait::async_trait;
use tokio::sync::RwLock;

use super::table::{check_write_limits, Add, Condition, Item, Page, Put, Table, WakeEntry, WriteError};
use crate::Result;

#[derive(Default)]
pub struct MemoryTable {
    items: RwLock<BTreeMap<(String, String), Item>>,
    /// The counters of items (`Table::write_counted`); under the same lock discipline as `items`
    /// (taken after it).
    counters: RwLock<BTreeMap<(String, String), BTreeMap<String, i64>>>,
}

impl MemoryTable {
    pub fn new() -> Self {
        Self::default()
    }
}

fn holds(condition: Condition, current: Option<&Item>) -> bool {
    match condition {
        Condition::Always => true,
        Condition::Absent => current.is_none(),
        Condition::Version(v) => current.is_some_and(|c| c.version == v),
        Condition::AbsentOrExpired(now) => current.is_none_or(|c| c.expires_at.is_some_and(|t| t < now)),
        Condition::VersionBetween(lo, hi) => current.is_some_and(|c| (lo..=hi).contains(&c.version)),
    }
}

#[async_trait]
impl Table for MemoryTable {
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>> {
        Ok(self.items.read().await.get(&(pk.to_string(), sk.to_string())).cloned())
    }

    async fn write_counted(&self, puts: Vec<Put>, adds: Vec<Add>) -> Result<(), WriteError> {
        check_write_limits(&puts, &adds)?;
        let mut items = self.items.write().await;
        for put in &puts {
            let current = items.get(&(put.item.pk.clone(), put.item.sk.clone()));
            if !holds(put.condition, current) {
                return Err(WriteError::ConditionFailed);
            }
        }
        let mut counters = self.counters.write().await;
        for put in puts {
            items.insert((put.item.pk.clone(), put.item.sk.clone()), put.item);
        }
        for add in adds {
            let item = counters.entry((add.pk, add.sk)).or_default();
            for (name, n) in add.counts {
                *item.entry(name).or_default() += n;
            }
        }
        Ok(())
    }

    async fn get_counters(&self, keys: &[(String, String)]) -> Result<Vec<BTreeMap<String, i64>>> {
        let counters = self.counters.read().await;
        Ok(keys.iter().map(|k| counters.get(k).cloned().unwrap_or_default()).collect())
    }

    async fn query_page(
        &self,
        pk: &str,
        descending: bool,
        limit: usize,
        after: Option<&str>,
    ) -> Result<Page> {
        use std::ops::Bound::{Excluded, Included};
        let items = self.items.read().await;
        let key = |sk: &str| (pk.to_string(), sk.to_string());
        // Just past the partition: the next partition key in order is `pk` followed by a NUL.
        let end = (format!("{pk}\0"), String::new());
        let range = match (descending, after) {
            (false, Some(a)) => items.range((Excluded(key(a)), Excluded(end))),
            (false, None) => items.range((Included(key("")), Excluded(end))),
            (true, Some(a)) => items.range((Included(key("")), Excluded(key(a)))),
            (true, None) => items.range((Included(key("")), Excluded(end))),
        };
        let in_partition = |((p, _), _): &(&(String, String), &Item)| p == pk;
        let found: Vec<Item> = if descending {
            range
                .rev()
                .skip_while(|e| !in_partition(e))
                .take_while(in_partition)
                .take(limit)
                .map(|(_, i)| i.clone())
                .collect()
        } else {
            range.take_while(in_partition).take(limit).map(|(_, i)| i.clone()).collect()
        };
        let last = (found.len() == limit && limit > 0).then(|| found[limit - 1].sk.clone());
        Ok(Page { items: found, last })
    }

    async fn delete(&self, pk: &str, sk: &str, condition: Condition) -> Result<(), WriteError> {
        let mut items = self.items.write().await;
        let key = (pk.to_string(), sk.to_string());
        if !holds(condition, items.get(&key)) {
            return Err(WriteError::ConditionFailed);
        }
        items.remove(&key);
        Ok(())
    }

    async fn query(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Item>> {
        let items = self.items.read().await;
        let start = (pk.to_string(), sk_prefix.to_string());
        Ok(items
            .range(start..)
            .take_while(|((p, s), _)| p == pk && s.starts_with(sk_prefix))
            .map(|(_, i)| i.clone())
            .collect())
    }

    async fn query_index(&self, index_pk: &str) -> Result<Vec<Item>> {
        let items = self.items.read().await;
        let mut found: Vec<Item> = items
            .values()
            .filter(|i| i.index.as_ref().is_some_and(|(p, _)| p == index_pk))
            .cloned()
            .collect();
        found.sort_by(|a, b| a.index.as_ref().map(|x| &x.1).cmp(&b.index.as_ref().map(|x| &x.1)));
        Ok(found)
    }

    async fn query_wake(&self, wake_pk: &str, until: &str, limit: usize) -> Result<Vec<WakeEntry>> {
        let items = self.items.read().await;
        let mut found: Vec<WakeEntry> = items
            .values()
            .filter_map(|i| match &i.wake {
                Some((p, s)) if p == wake_pk && s.as_str() <= until => {
                    Some(WakeEntry { pk: i.pk.clone(), sk: i.sk.clone(), wake: s.clone() })
                }
                _ => None,
            })
            .collect();
        found.sort_by(|a, b| a.wake.cmp(&b.wake));
        found.truncate(limit);
        Ok(found)
    }

    async fn move_wake(&self, pk: &str, sk: &str, seen: &str, next: &str) -> Result<(), WriteError> {
        let mut items = self.items.write().await;
        match items.get_mut(&(pk.to_string(), sk.to_string())).and_then(|i| i.wake.as_mut()) {
            Some((_, s)) if s == seen => {
                *s = next.to_string();
                Ok(())
            }
            _ => Err(WriteError::ConditionFailed),
        }
    }
}
