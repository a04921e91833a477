//! A test seam: a `Table` that stops "the worker" right after its n-th write (the write happens, then
//! the caller gets an error, as if the process died before its next step), and counts the requests
//! made through it (to check what an access pattern costs) and the round trips they took
//! ([`RoundTrips`]). Used by tests; never in production wiring.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;

use super::table::{Add, Condition, Item, Page, Put, Table, WakeEntry, WriteError};
use crate::{Error, Result};

/// Round trips: the longest chain of requests in which each started after the one before it answered
/// (requests made in parallel count once). One is shared by a [`FaultyTable`] and a
/// [`crate::queue::fault::FaultyQueue`] to count a whole trigger's.
#[derive(Debug, Default)]
pub struct RoundTrips {
    finished: AtomicUsize,
}

impl RoundTrips {
    pub fn reset(&self) {
        self.finished.store(0, Ordering::SeqCst);
    }

    /// Round trips since the last [`RoundTrips::reset`].
    pub fn count(&self) -> usize {
        self.finished.load(Ordering::SeqCst)
    }

    /// Makes a request, one round trip after the longest chain that had answered when it started.
    pub async fn around<T>(&self, request: impl std::future::Future<Output = T>) -> T {
        let depth = self.finished.load(Ordering::SeqCst) + 1;
        // Let requests made in parallel with this one start before it answers (the in-memory table
        // answers without waiting).
        tokio::task::yield_now().await;
        let answer = request.await;
        self.finished.fetch_max(depth, Ordering::SeqCst);
        answer
    }
}

pub struct FaultyTable {
    inner: Arc<dyn Table>,
    round_trips: Arc<RoundTrips>,
    writes: AtomicUsize,
    requests: AtomicUsize,
    reads: AtomicUsize,
    /// Fail right after this write (counted from 1); 0 never.
    crash_after: AtomicUsize,
}

impl FaultyTable {
    pub fn new(inner: Arc<dyn Table>) -> Self {
        FaultyTable {
            inner,
            round_trips: Arc::new(RoundTrips::default()),
            writes: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            reads: AtomicUsize::new(0),
            crash_after: AtomicUsize::new(0),
        }
    }

    /// The round trips of the requests made through this table.
    pub fn round_trips(&self) -> Arc<RoundTrips> {
        self.round_trips.clone()
    }

    /// Writes done so far (successful or not).
    pub fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }

    /// Requests of any kind (reads, queries, writes) made so far; each is one DynamoDB request.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Read requests (`GetItem`, `BatchGetItem`, `Query`) made so far.
    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }

    fn read(&self) {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.count();
    }

    /// Stop right after write number `n` (see [`FaultyTable::writes`]); once.
    pub fn crash_after_write(&self, n: usize) {
        self.crash_after.store(n, Ordering::SeqCst);
    }

    fn count(&self) {
        self.requests.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl Table for FaultyTable {
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>> {
        self.read();
        self.round_trips.around(self.inner.get(pk, sk)).await
    }

    async fn write_counted(&self, puts: Vec<Put>, adds: Vec<Add>) -> Result<(), WriteError> {
        self.count();
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        let result = self.round_trips.around(self.inner.write_counted(puts, adds)).await;
        if result.is_ok()
            && self.crash_after.compare_exchange(n, 0, Ordering::SeqCst, Ordering::SeqCst).is_ok()
        {
            return Err(WriteError::Other(Error::Internal(format!("injected stop after write {n}"))));
        }
        result
    }

    async fn get_counters(
        &self,
        keys: &[(String, String)],
    ) -> Result<Vec<std::collections::BTreeMap<String, i64>>> {
        self.read();
        self.round_trips.around(self.inner.get_counters(keys)).await
    }

    async fn query_page(
        &self,
        pk: &str,
        descending: bool,
        limit: usize,
        after: Option<&str>,
    ) -> Result<Page> {
        self.read();
        self.round_trips.around(self.inner.query_page(pk, descending, limit, after)).await
    }

    async fn delete(&self, pk: &str, sk: &str, condition: Condition) -> Result<(), WriteError> {
        self.count();
        self.round_trips.around(self.inner.delete(pk, sk, condition)).await
    }

    async fn query(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Item>> {
        self.read();
        self.round_trips.around(self.inner.query(pk, sk_prefix)).await
    }

    async fn query_index(&self, index_pk: &str) -> Result<Vec<Item>> {
        self.read();
        self.round_trips.around(self.inner.query_index(index_pk)).await
    }

    async fn query_wake(&self, wake_pk: &str, until: &str, limit: usize) -> Result<Vec<WakeEntry>> {
        self.read();
        self.round_trips.around(self.inner.query_wake(wake_pk, until, limit)).await
    }

    async fn move_wake(&self, pk: &str, sk: &str, seen: &str, next: &str) -> Result<(), WriteError> {
        self.count();
        self.round_trips.around(self.inner.move_wake(pk, sk, seen, next)).await
    }
}
