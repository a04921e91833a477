//! A `Table` that meters what DynamoDB would bill for each request made through it, by AWS's documented
//! sizing rules, per partition key (table and index partitions): for the benchmark, never in production
//! wiring. (DynamoDB Local's `ReturnConsumedCapacity` does not follow the rules for transactions.)
//!
//! Rules applied: an item's size is the sum of its attribute names' and values' lengths (numbers
//! counted as 21 bytes at most); a write costs 1 write unit per started KB of the item, twice inside a
//! transaction, plus 1 per started KB of each index copy the item carries (`GSI1`: the whole item;
//! `GSI2`: keys only); a counter `ADD` is a write of its small item. A strongly consistent read costs 1
//! read unit per started 4 KB — a `Query` or `BatchGetItem` item by item summed, then rounded up per
//! request — and an index query (eventually consistent) half that.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::table::*;
use crate::Result;

/// What one partition key received.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Units {
    pub write_units: f64,
    pub read_units: f64,
}

/// Totals of a metered stretch of work.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metered {
    /// Requests by operation (`GetItem`, `PutItem`, `TransactWriteItems`, …).
    pub requests: BTreeMap<&'static str, u64>,
    pub write_units: f64,
    pub read_units: f64,
    /// Units by partition key (`<key>` for the table, `GSI1:<key>` / `GSI2:<key>` for the indexes).
    pub by_key: HashMap<String, Units>,
}

impl Metered {
    pub fn request_count(&self) -> u64 {
        self.requests.values().sum()
    }

    /// The key with the most write units, and its units.
    pub fn hottest_write(&self) -> Option<(&str, Units)> {
        self.by_key
            .iter()
            .max_by(|a, b| a.1.write_units.total_cmp(&b.1.write_units))
            .map(|(k, u)| (k.as_str(), *u))
    }

    /// The key with the most read units, and its units.
    pub fn hottest_read(&self) -> Option<(&str, Units)> {
        self.by_key
            .iter()
            .max_by(|a, b| a.1.read_units.total_cmp(&b.1.read_units))
            .map(|(k, u)| (k.as_str(), *u))
    }
}

pub struct MeteredTable {
    inner: Arc<dyn Table>,
    metered: Mutex<Metered>,
}

fn kb(bytes: usize) -> f64 {
    bytes.div_ceil(1024).max(1) as f64
}

fn four_kb(bytes: usize) -> f64 {
    bytes.div_ceil(4096).max(1) as f64
}

fn keys_size(item: &Item) -> usize {
    let wake = item.wake.as_ref().map_or(0, |(p, k)| p.len() + k.len() + 12);
    item.pk.len() + item.sk.len() + 4 + wake
}

impl MeteredTable {
    pub fn new(inner: Arc<dyn Table>) -> Self {
        MeteredTable { inner, metered: Mutex::new(Metered::default()) }
    }

    /// What was metered since the last `take`, and starts afresh.
    pub fn take(&self) -> Metered {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Metered> {
        self.metered.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn request(&self, op: &'static str) {
        *self.lock().requests.entry(op).or_default() += 1;
    }

    fn write_units(&self, key: String, units: f64) {
        let mut m = self.lock();
        m.write_units += units;
        m.by_key.entry(key).or_default().write_units += units;
    }

    fn read_units(&self, key: String, units: f64) {
        let mut m = self.lock();
        m.read_units += units;
        m.by_key.entry(key).or_default().read_units += units;
    }

    fn meter_put(&self, item: &Item, factor: f64) {
        self.write_units(item.pk.clone(), kb(item.size()) * factor);
        if let Some((p, _)) = &item.index {
            self.write_units(format!("GSI1:{p}"), kb(item.size()));
        }
        if let Some((p, _)) = &item.wake {
            self.write_units(format!("GSI2:{p}"), kb(keys_size(item)));
        }
    }
}

#[async_trait]
impl Table for MeteredTable {
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>> {
        self.request("GetItem");
        let found = self.inner.get(pk, sk).await?;
        self.read_units(pk.to_string(), four_kb(found.as_ref().map_or(0, Item::size)));
        Ok(found)
    }

    async fn write_counted(&self, puts: Vec<Put>, adds: Vec<Add>) -> Result<(), WriteError> {
        let single = puts.len() + adds.len() == 1;
        self.request(match (single, puts.is_empty()) {
            (true, false) => "PutItem",
            (true, true) => "UpdateItem",
            _ => "TransactWriteItems",
        });
        let factor = if single { 1.0 } else { 2.0 };
        for p in &puts {
            self.meter_put(&p.item, factor);
        }
        for a in &adds {
            let size = a.pk.len() + a.sk.len() + 4 + a.counts.len() * 30;
            self.write_units(a.pk.clone(), kb(size) * factor);
        }
        self.inner.write_counted(puts, adds).await
    }

    async fn get_counters(&self, keys: &[(String, String)]) -> Result<Vec<BTreeMap<String, i64>>> {
        self.request("BatchGetItem");
        for (pk, _) in keys {
            self.read_units(pk.clone(), 1.0);
        }
        self.inner.get_counters(keys).await
    }

    async fn query_page(
        &self,
        pk: &str,
        descending: bool,
        limit: usize,
        after: Option<&str>,
    ) -> Result<Page> {
        self.request("Query");
        let page = self.inner.query_page(pk, descending, limit, after).await?;
        self.read_units(pk.to_string(), four_kb(page.items.iter().map(Item::size).sum()));
        Ok(page)
    }

    async fn delete(&self, pk: &str, sk: &str, condition: Condition) -> Result<(), WriteError> {
        self.request("DeleteItem");
        self.write_units(pk.to_string(), 1.0);
        self.inner.delete(pk, sk, condition).await
    }

    async fn query(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Item>> {
        self.request("Query");
        let items = self.inner.query(pk, sk_prefix).await?;
        self.read_units(pk.to_string(), four_kb(items.iter().map(Item::size).sum()));
        Ok(items)
    }

    async fn query_index(&self, index_pk: &str) -> Result<Vec<Item>> {
        self.request("Query");
        let items = self.inner.query_index(index_pk).await?;
        self.read_units(format!("GSI1:{index_pk}"), four_kb(items.iter().map(Item::size).sum()) / 2.0);
        Ok(items)
    }

    async fn query_wake(&self, wake_pk: &str, until: &str, limit: usize) -> Result<Vec<WakeEntry>> {
        self.request("Query");
        let found = self.inner.query_wake(wake_pk, until, limit).await?;
        let size: usize = found.iter().map(|e| e.pk.len() + e.sk.len() + e.wake.len() + 30).sum();
        self.read_units(format!("GSI2:{wake_pk}"), four_kb(size) / 2.0);
        Ok(found)
    }

    async fn move_wake(&self, pk: &str, sk: &str, seen: &str, next: &str) -> Result<(), WriteError> {
        self.request("UpdateItem");
        self.write_units(pk.to_string(), 1.0);
        self.write_units("GSI2:WAKE#<shard>".to_string(), 2.0);
        self.inner.move_wake(pk, sk, seen, next).await
    }
}
