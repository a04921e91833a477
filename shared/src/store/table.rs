//! The `Table` adapter port: the few DynamoDB operations the `Store` is written in, with one
//! definition of the table (keys, index, TTL attribute) that the DynamoDB adapter, the tests' table set-up
//! and `infra/template.yaml` agree on (a test checks the template).
//!
//! Every item has a partition key `PK`, a sort key `SK`, optionally an index key pair `GSI1PK`/`GSI1SK`
//! (index `GSI1`, all attributes projected), optionally a wake key pair `GSI2PK`/`GSI2SK` (index
//! `GSI2`, keys only: the sweep's index of unfinished runs by the time they must be looked at), a
//! version number `ver` used for optimistic conditional writes, and the entity as a JSON document `doc`.

use async_trait::async_trait;

use crate::Result;

pub const PARTITION_KEY: &str = "PK";
pub const SORT_KEY: &str = "SK";
pub const INDEX_NAME: &str = "GSI1";
pub const INDEX_PARTITION_KEY: &str = "GSI1PK";
pub const INDEX_SORT_KEY: &str = "GSI1SK";
/// The wake index: unfinished runs by the time the sweep must look at them (keys only).
pub const WAKE_INDEX_NAME: &str = "GSI2";
pub const WAKE_PARTITION_KEY: &str = "GSI2PK";
pub const WAKE_SORT_KEY: &str = "GSI2SK";
pub const VERSION_ATTRIBUTE: &str = "ver";
pub const DOC_ATTRIBUTE: &str = "doc";
/// Epoch seconds after which DynamoDB may delete the item (idempotency records).
pub const TTL_ATTRIBUTE: &str = "expires_at";

#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub pk: String,
    pub sk: String,
    /// `(GSI1PK, GSI1SK)` when the item is in the index.
    pub index: Option<(String, String)>,
    /// `(GSI2PK, GSI2SK)` when the item is in the wake index.
    pub wake: Option<(String, String)>,
    /// Incremented by every write; conditions compare it.
    pub version: u64,
    pub doc: String,
    pub expires_at: Option<i64>,
}

/// When a put may happen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Condition {
    Always,
    /// Only if no item has this key.
    Absent,
    /// Only if the stored item has this version.
    Version(u64),
    /// Only if no item has this key, or its `expires_at` is before this epoch second (DynamoDB's TTL
    /// deletes expired items late, so an expired item must count as absent).
    AbsentOrExpired(i64),
    /// Only if the stored item's version is within `lo..=hi` (a debounce window's merges, which do not
    /// conflict with each other but do with the window's close: `flow::timing`).
    VersionBetween(u64, u64),
}

#[derive(Debug, Clone)]
pub struct Put {
    pub item: Item,
    pub condition: Condition,
}

/// Why a write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A condition did not hold; nothing was written.
    #[error("a condition of the write did not hold")]
    ConditionFailed,
    #[error(transparent)]
    Other(#[from] crate::Error),
}

/// DynamoDB's largest item: 400 KB, attribute names and values counted (SPEC §11).
pub const MAX_ITEM_BYTES: usize = 400 * 1024;
/// DynamoDB's largest transaction: 100 items of at most 4 MB together.
pub const MAX_TRANSACTION_ITEMS: usize = 100;
pub const MAX_TRANSACTION_BYTES: usize = 4 * 1024 * 1024;

impl Item {
    /// The item's size as DynamoDB counts it: each attribute's name and value in UTF-8 bytes, numbers
    /// at their largest (21 bytes), so that a write this accepts DynamoDB accepts too.
    pub fn size(&self) -> usize {
        let s = |name: &str, value: &str| name.len() + value.len();
        let mut n = s(PARTITION_KEY, &self.pk) + s(SORT_KEY, &self.sk) + s(DOC_ATTRIBUTE, &self.doc);
        n += VERSION_ATTRIBUTE.len() + 21;
        if let Some((p, k)) = &self.index {
            n += s(INDEX_PARTITION_KEY, p) + s(INDEX_SORT_KEY, k);
        }
        if let Some((p, k)) = &self.wake {
            n += s(WAKE_PARTITION_KEY, p) + s(WAKE_SORT_KEY, k);
        }
        if self.expires_at.is_some() {
            n += TTL_ATTRIBUTE.len() + 21;
        }
        n
    }
}

/// Refuses a write DynamoDB would refuse for its size — an item over 400 KB, a transaction of more
/// than 100 items or over 4 MB — before anything is written, in both adapters alike, as
/// [`crate::Error::PayloadTooLarge`] (a 413 that says which limit), never a 500 or a stuck write.
pub fn check_write_limits(puts: &[Put], adds: &[Add]) -> Result<(), WriteError> {
    let too_large = |m: String| Err(WriteError::Other(crate::Error::PayloadTooLarge(m)));
    let count = puts.len() + adds.len();
    if count > MAX_TRANSACTION_ITEMS {
        return too_large(format!(
            "the write is {count} items; DynamoDB takes at most {MAX_TRANSACTION_ITEMS}"
        ));
    }
    let mut total = 0;
    for put in puts {
        let size = put.item.size();
        if size > MAX_ITEM_BYTES {
            return too_large(format!(
                "what would be stored is {size} bytes, over DynamoDB's item limit of {MAX_ITEM_BYTES} bytes: \
                 send smaller variables, parameters or results"
            ));
        }
        total += size;
    }
    if total > MAX_TRANSACTION_BYTES {
        return too_large(format!(
            "the write is {total} bytes, over DynamoDB's transaction limit of {MAX_TRANSACTION_BYTES} bytes"
        ));
    }
    Ok(())
}

/// Counters kept on an item (as number attributes `n_<name>`): a write adds to them, creating the item
/// and any counter it lacks at 0 (DynamoDB's `ADD`). Used for the run list views' exact counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Add {
    pub pk: String,
    pub sk: String,
    /// `(counter name, amount)`; names are lower-case ASCII words.
    pub counts: Vec<(String, i64)>,
}

/// Prefix of the number attributes that hold an item's counters.
pub const COUNTER_PREFIX: &str = "n_";

/// One page of a partition read in sort key order ([`Table::query_page`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub items: Vec<Item>,
    /// The sort key to start after for the next page; `None` when the partition has no more.
    pub last: Option<String>,
}

/// An entry of the wake index: the item's keys and its wake sort key.
#[derive(Debug, Clone, PartialEq)]
pub struct WakeEntry {
    pub pk: String,
    pub sk: String,
    pub wake: String,
}

#[async_trait]
pub trait Table: Send + Sync {
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>>;
    /// Writes all puts or none (one conditional put, or a transaction of up to 100).
    async fn write(&self, puts: Vec<Put>) -> Result<(), WriteError> {
        self.write_counted(puts, Vec::new()).await
    }
    /// Writes all puts and counter additions or none: one request (a single put or addition, else a
    /// transaction of up to 100 items).
    async fn write_counted(&self, puts: Vec<Put>, adds: Vec<Add>) -> Result<(), WriteError>;
    /// The counters of each of these items (empty for an item that has none), in one request
    /// (DynamoDB: `BatchGetItem`, at most 100 keys, strongly consistent).
    async fn get_counters(
        &self,
        keys: &[(String, String)],
    ) -> Result<Vec<std::collections::BTreeMap<String, i64>>>;
    /// Up to `limit` items of one partition in sort key order (descending if `descending`), starting
    /// after sort key `after`: one request (DynamoDB: one strongly consistent `Query` with `Limit`).
    async fn query_page(&self, pk: &str, descending: bool, limit: usize, after: Option<&str>)
        -> Result<Page>;
    /// Deletes one item if the condition holds (`Condition::Version` or `Always`).
    async fn delete(&self, pk: &str, sk: &str, condition: Condition) -> Result<(), WriteError>;
    /// The items of one partition whose sort key starts with `sk_prefix`, in sort key order.
    async fn query(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Item>>;
    /// The items of one index partition, in index sort key order.
    async fn query_index(&self, index_pk: &str) -> Result<Vec<Item>>;
    /// [`Table::query_index`] with an owned key (for futures that outlive the caller's borrow).
    async fn query_index_owned(&self, index_pk: String) -> Result<Vec<Item>> {
        self.query_index(&index_pk).await
    }
    /// Up to `limit` entries of wake index partition `wake_pk` whose wake sort key is at most `until`,
    /// in order: one request (DynamoDB: one `Query` with `Limit`).
    async fn query_wake(&self, wake_pk: &str, until: &str, limit: usize) -> Result<Vec<WakeEntry>>;
    /// Sets an item's wake sort key to `next` if it is still `seen` (nothing else of the item changes,
    /// its version neither); `ConditionFailed` if it is not.
    async fn move_wake(&self, pk: &str, sk: &str, seen: &str, next: &str) -> Result<(), WriteError>;
}
