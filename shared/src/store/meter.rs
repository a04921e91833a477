//! A `Table` that meters what DynamoDB would bill for each request made through it, by AWS's documented
//! sizing rules, per partition key (table and index partitions): for the benchmark, never in production
//! wiring. (DynamoDB Local's `ReturnConsumedCapacity` does not follow the rules for transactions.)
//!
//! Rules applied: an item's size is the sum of its attribute names' and values' lengths (numbers
//! counted as 21 bytes at most); a write costs 1 write unit per started KB of the larger of the item
//! before and after it (a new item: after; a delete: before), twice inside a transaction; a counter
//! `ADD` is a write of its small item. An index is written only when the write changes what it holds
//! (AWS's rules for global secondary indexes): an item that enters it or leaves it costs one index
//! write, one whose index key changes costs two (the old entry deleted, the new one put), and one
//! whose key stays costs one for `GSI1` (all attributes projected: the document changed) and none for
//! `GSI2` (keys only: nothing it holds changed) — each 1 unit per started KB of the index entry (the
//! whole item for `GSI1`, the keys for `GSI2`). The item before a write is read from the inner table
//! for this, unmetered, and the index writes are counted once the write succeeded. A strongly
//! consistent read costs 1 read unit per started 4 KB — a `Query` or `BatchGetItem` item by item
//! summed, then rounded up per request — and an index query (eventually consistent) half that.

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

    /// The table's write units for writing `item` over `before`.
    fn meter_put(&self, before: Option<&Item>, item: &Item, factor: f64) {
        let size = before.map_or(0, Item::size).max(item.size());
        self.write_units(item.pk.clone(), kb(size) * factor);
    }

    /// The index writes of a write that turned `before` into `after` (`None`: absent).
    fn meter_indexes(&self, before: Option<&Item>, after: Option<&Item>) {
        self.meter_index("GSI1", in_index(before), in_index(after), true);
        self.meter_index("GSI2", in_wake(before), in_wake(after), false);
    }

    /// One index's writes for an entry going from `before` to `after` (its key and started KB);
    /// `projects_doc`: the index holds the document, which every write changes.
    fn meter_index(&self, index: &str, before: Option<Entry>, after: Option<Entry>, projects_doc: bool) {
        match (before, after) {
            (Some((old, _)), Some((new, units))) if old == new => {
                if projects_doc {
                    self.write_units(format!("{index}:{}", new.0), units);
                }
            }
            (before, after) => {
                for (key, units) in before.into_iter().chain(after) {
                    self.write_units(format!("{index}:{}", key.0), units);
                }
            }
        }
    }

    /// The item as stored now, read from the inner table without metering.
    async fn stored(&self, pk: &str, sk: &str) -> Option<Item> {
        self.inner.get(pk, sk).await.ok().flatten()
    }
}

/// An index entry: its key (partition, sort) and its started KB.
type Entry = ((String, String), f64);

/// An item's `GSI1` entry: the whole item.
fn in_index(item: Option<&Item>) -> Option<Entry> {
    item.and_then(|i| i.index.clone().map(|k| (k, kb(i.size()))))
}

/// An item's wake index entry: its keys.
fn in_wake(item: Option<&Item>) -> Option<Entry> {
    item.and_then(|i| i.wake.clone().map(|k| (k, kb(keys_size(i)))))
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
        let mut before = Vec::with_capacity(puts.len());
        for p in &puts {
            let stored = self.stored(&p.item.pk, &p.item.sk).await;
            self.meter_put(stored.as_ref(), &p.item, factor);
            before.push(stored);
        }
        for a in &adds {
            let size = a.pk.len() + a.sk.len() + 4 + a.counts.len() * 30;
            self.write_units(a.pk.clone(), kb(size) * factor);
        }
        let after: Vec<Item> = puts.iter().map(|p| p.item.clone()).collect();
        self.inner.write_counted(puts, adds).await?;
        for (b, a) in before.iter().zip(&after) {
            self.meter_indexes(b.as_ref(), Some(a));
        }
        Ok(())
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
        let stored = self.stored(pk, sk).await;
        self.write_units(pk.to_string(), kb(stored.as_ref().map_or(0, Item::size)));
        self.inner.delete(pk, sk, condition).await?;
        self.meter_indexes(stored.as_ref(), None);
        Ok(())
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
        let stored = self.stored(pk, sk).await;
        self.write_units(pk.to_string(), kb(stored.as_ref().map_or(0, Item::size)));
        self.inner.move_wake(pk, sk, seen, next).await?;
        let moved = stored.clone().map(|mut i| {
            i.wake = i.wake.map(|(p, _)| (p, next.to_string()));
            i
        });
        self.meter_indexes(stored.as_ref(), moved.as_ref());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryTable;

    fn item(doc_bytes: usize, index: bool, wake: Option<&str>) -> Item {
        Item {
            pk: "RUN#1".into(),
            sk: "RUN".into(),
            index: index.then(|| ("RUNS".to_string(), "k".to_string())),
            wake: wake.map(|w| ("WAKE#1".to_string(), w.to_string())),
            version: 1,
            doc: "x".repeat(doc_bytes),
            expires_at: None,
        }
    }

    async fn put(t: &MeteredTable, it: Item) -> Metered {
        t.write(vec![Put { item: it, condition: Condition::Always }]).await.expect("write");
        t.take()
    }

    fn units(m: &Metered, key: &str) -> f64 {
        m.by_key.get(key).map_or(0.0, |u| u.write_units)
    }

    #[tokio::test]
    async fn an_index_is_billed_only_for_what_a_write_changes_in_it() {
        let t = MeteredTable::new(Arc::new(MemoryTable::new()));
        // A new item in the wake index: one index write.
        let m = put(&t, item(100, false, Some("a"))).await;
        assert_eq!((units(&m, "RUN#1"), units(&m, "GSI2:WAKE#1")), (1.0, 1.0));
        // Rewritten with the same wake key: the keys-only index holds nothing that changed.
        let m = put(&t, item(200, false, Some("a"))).await;
        assert_eq!((units(&m, "RUN#1"), units(&m, "GSI2:WAKE#1")), (1.0, 0.0));
        // Its wake key moved: the old entry deleted, the new one put.
        let m = put(&t, item(200, false, Some("b"))).await;
        assert_eq!(units(&m, "GSI2:WAKE#1"), 2.0);
        t.move_wake("RUN#1", "RUN", "b", "c").await.expect("move");
        assert_eq!(units(&t.take(), "GSI2:WAKE#1"), 2.0);
        // Out of the wake index, into the all-attributes index: one write each; a rewrite there costs
        // one more (the document changed).
        let m = put(&t, item(200, true, None)).await;
        assert_eq!((units(&m, "GSI2:WAKE#1"), units(&m, "GSI1:RUNS")), (1.0, 1.0));
        let m = put(&t, item(300, true, None)).await;
        assert_eq!(units(&m, "GSI1:RUNS"), 1.0);
        // A smaller item over a larger one is billed at the larger; twice inside a transaction.
        put(&t, item(3000, false, None)).await;
        let m = put(&t, item(100, false, None)).await;
        assert_eq!(units(&m, "RUN#1"), 3.0);
        let other = Item { pk: "RUN#2".into(), ..item(100, false, None) };
        let puts = [item(100, false, None), other].map(|item| Put { item, condition: Condition::Always });
        t.write(puts.to_vec()).await.expect("transaction");
        assert_eq!(t.take().write_units, 4.0);
        // A failed condition writes no index entry (its table write is still billed).
        let refused = Put { item: item(100, false, Some("d")), condition: Condition::Absent };
        assert!(t.write(vec![refused]).await.is_err());
        let m = t.take();
        assert_eq!((units(&m, "RUN#1"), units(&m, "GSI2:WAKE#1")), (1.0, 0.0));
    }
}
