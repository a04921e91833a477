//! The `Store` port: every read and conditional write the handlers need, named by access pattern.
//!
//! `Store` is written once over the [`table::Table`] adapter, which has two implementations with the
//! same semantics: [`dynamo::DynamoTable`] (one DynamoDB table) and [`memory::MemoryTable`] (the embedded
//! default and test double). The conformance suite in [`conformance`] runs against both.
//!
//! # Key design (one table, indexes `GSI1` and `GSI2`)
//!
//! | entity | PK | SK | GSI1PK / GSI1SK |
//! |---|---|---|---|
//! | API key | `APIKEY#<sha256 of secret>` | `APIKEY` | `APIKEYS` / `<created>#<sha256>` |
//! | pipeline | `PIPELINE#<uuid>` | `PIPELINE` | `PIPELINES` / `<created>#<uuid>` |
//! | pipeline by name | `PIPELINE_NAME#<name>` | `VERSION#<version>` | — |
//! | newest build of a pipeline name (its newest version's newest build) | `PIPELINE_HEAD#<name>` | `HEAD` | — |
//! | build | `BUILD#<uuid>` | `BUILD` | `BUILDS` / `<created>#<uuid>` |
//! | build of a pipeline | `PIPELINE#<uuid>` | `BUILD#<created>#<uuid>` | — |
//! | schedule | `SCHEDULE#<id>` | `SCHEDULE` | `SCHEDULES` / `<created>#<id>`; while an active time schedule also `GSI2PK`/`GSI2SK` = `FIRE#<id mod 8>` / `<next fire time>` |
//! | fire claim | `FIRED#<schedule id>#<fire time>` | `FIRED` | — |
//! | run slots of a schedule with run limits | `SLOTS#<schedule id>` | `SLOTS` | — |
//! | run slots of one flow-control key value of a schedule (of a pipeline name, for ZenML runs: `<schedule id>` is `PIPELINE:<name>` in this and the next two rows) | `SLOTS#<schedule id>#<SHA-256 of the key, 32 hex>` | `SLOTS` | — |
//! | debounce window of one key value (version = window number · 2³² + a random merge stamp; TTL once closed) | `DEBOUNCE#<schedule id>#<SHA-256 of the key, 32 hex>` | `DEBOUNCE` | — |
//! | throttle pace of one key value (GCRA's arrival time; TTL) | `THROTTLE#<schedule id>#<SHA-256 of the key, 32 hex>` | `THROTTLE` | — |
//! | run, with its block runs in order in its document (`blocks`, compact: empty fields and what the run gives left out) | `RUN#<uuid>` | `RUN` | not in `GSI1` (the run lists read the views); while unfinished `GSI2PK`/`GSI2SK` = `WAKE#<0–7>` / `<wake time>` |
//! | block run of a run written before 2026-12-07 (read with its run until the run's next write moves it in) | `RUN#<uuid>` | `BLOCK#<index, 3 digits>` | — |
//! | run id claim | `RUNID#<integer id>` | `RUNID` | — |
//! | run list entry | `RUNVIEW#<view>#<id mod 8>`, `<view>` = `ALL`, `SCHEDULE#<id>`, `PIPELINE#<name>`, `BACKFILL#<id>` | `<execution date>#<id, 16 digits>` | — |
//! | run list counters (runs by status, number attributes `n_<status>`; every view but a backfill's, which is read whole) | `RUNCOUNT#<view>#<id mod 8>` | `COUNT` | — |
//! | backfill | `BACKFILL#<id>` | `BACKFILL` | `BACKFILLS` / `<created>#<id>` |
//! | idempotency key | `IDEMPOTENCY#<scope>#<key>` | `IDEMPOTENCY` (TTL `expires_at`) | — |
//!
//! `GSI2` is the wake index (keys only; [`wake`]): the scheduler's sweep finds there, by time, the
//! unfinished runs that no queue message looked at in time; and, under their own partition keys
//! `FIRE#<0–7>`, the active time schedules by their next fire time. A run item carries its wake keys while the
//! run is unfinished (or finished with its slot to hand over, or a notification owed — SPEC §10); a finished
//! run's item is written without them once nothing is owed, which takes it out of the index.
//!
//! Pipelines and builds are immutable, so their extra copies (by name, by pipeline) never go stale;
//! they are written in the same transaction as the entity. Run list entries are small (ids, execution
//! date, status, schedule, backfill, pipeline name, pipeline version and build ids, creation time) and rewritten in the same transaction as every change
//! of their run, so their status is always the run's.
//!
//! # Access patterns and their cost
//!
//! - API key by secret: one `GetItem` on the hash (the secret is never stored); a process then trusts a
//!   key it found for 5 s without reading it again (`http::auth`), so a revoked key is refused within 5 s.
//! - Every API key (`kickoff api-key list`, an admin command): one `Query` of `APIKEYS` on `GSI1`; keys
//!   are created by hand, so the list stays small and is never on a request's path.
//! - Create a pipeline version: one transaction of 4 puts (pipeline, name/version claim with
//!   `attribute_not_exists` — the 409 —, and its first build's 2 items).
//! - Pipeline / build / schedule by id: one `GetItem`; a run with its block runs: one `Query` on
//!   `RUN#<uuid>` (one item; two or more only for a run written before block runs moved into it).
//! - Versions of a pipeline name: one `Query` on `PIPELINE_NAME#<name>`.
//! - Builds of a pipeline: one `Query` on `PIPELINE#<uuid>`, prefix `BUILD#`.
//! - ZenML snapshots (builds under ZenML 0.98's name): by id one `GetItem` (hydrated, plus the pipeline's
//!   `GetItem`); a list by `pipeline` is that pipeline's builds `Query` (by a pipeline's name: the name's
//!   versions `Query`, then one builds `Query` per version), without it the builds list of `GSI1` as the
//!   builds route reads it; hydrated, one pipeline `GetItem` per distinct pipeline on the page. A snapshot
//!   run is the ZenML trigger above; a replay adds the original run's `Query` and its build's `GetItem`
//!   before the same transaction and send, and a replay's hydrated answer one `Query` for its original.
//! - The ZenML connect routes (`info`, `current-user`, `projects`, `stacks`) read nothing but the API key;
//!   login reads the key (`GetItem`).
//! - Run by integer id: `GetItem` on the claim, then the run's `Query`.
//! - Trigger (SPEC §11 budget: ≤ 2 reads, 1 write request, 1 send): the schedule (`GetItem`) and the
//!   pipeline name's head item (`GetItem`: the newest build, kept there by every newer build's write) —
//!   or, on the ZenML route, the API key and the build — then one transaction: the run, its id claim
//!   (`attribute_not_exists`; a collision draws a new id), its 2–4 list entries and their counter items
//!   (`ADD`; none for a backfill's view), the idempotency record if a key was sent (`attribute_not_exists` or expired — the race between
//!   repeats is decided here); then one `SendMessage`. Three sequential round
//!   trips in a warm function: a token trigger reads the schedule and the build it ran last time at once
//!   (`trigger::read_schedule`; the head's key comes from the schedule, whose pipeline never changes), the
//!   ZenML route finds its API key remembered. A process's first trigger of a schedule, or first request
//!   with a key, takes four. `tests/tests/scale.rs` counts requests and round trips in the adapters.
//! - Any change of a run or of its block runs: one conditional `PutItem` of the run item (the run and
//!   all its block runs, conditioned on the version read: optimistic concurrency), billed by its size
//!   — the demo's 3-block run's item is under 1 KB when made, compact (`runs::RunDocOut`); a run of
//!   many blocks pays more per write (a 90-block run's item grows from about 8 KB to 20 KB as its
//!   blocks finish, before metrics), and the item is kept within 400 KB by dropping the largest block
//!   metrics first (`runs::run_doc`). Only when the run's status changes is it a transaction, with
//!   its list entries and their counters (`ADD -1` old status, `+1` new).
//! - Wake index upkeep: free on the table (the keys ride on the run item, in the writes above); on
//!   `GSI2`, one ~100-byte index write (1 write unit) when a run is created and one when it finishes,
//!   plus two when its wake time moves, which `worker::plan::wake_at` allows about once per lease of a
//!   long run and never for a run that finishes within a minute. At 1,000 triggers/s that is ~2,000 index
//!   writes/s over 8 shards: ~250 per partition (DynamoDB allows 1,000).
//! - Sweep (each scheduler tick, each of the 8 shards): one `Query` of `GSI2` partition `WAKE#<shard>` with
//!   `GSI2SK <= now`, `Limit` 500 (an empty sweep is that one request, 0.5 read units); then per due run
//!   one `Query` of its partition (is it stuck, or was its wake time early?) and one conditional
//!   `UpdateItem` of its wake key (the claim that makes overlapping ticks queue it once), and for a stuck
//!   run one `SendMessage`. Cost grows with the runs found due, never with history.
//! - Notifications (SPEC §10): a run with notification targets owes its deliveries in the run item
//!   (written in the transaction that ends it: no extra item). Each delivery attempt is one `Query` of
//!   the run's partition and two run-item writes (the claim, the result) plus one `SendMessage` for the
//!   next attempt; the run stays in the wake index (its due time moving with each attempt, two index
//!   writes) until every delivery is delivered or given up. A run without targets costs nothing more.
//! - Fire time schedules (each tick): one `Query` of each of the 8 `FIRE#` shards of `GSI2` with
//!   `GSI2SK <= now` (`Limit` 500, more pages while full): an empty tick is 8 queries. Per due schedule and
//!   fire time: `GetItem` (schedule), 2 `Query` (its pipeline's versions and builds), one transaction
//!   (the run's items as a trigger writes them + the fire claim with `attribute_not_exists` + the
//!   schedule with its new next fire time, conditioned on its version; plus the slots item for a
//!   schedule with run limits), one `SendMessage`. 10,000 schedules due in one minute move 10,000 index
//!   entries over 8 partitions (~1,250 each, spread over the seconds the tick takes) — under the 1,000
//!   write units/s per partition as long as the tick runs at most 64 fires at once (~300 fires/s on AWS).
//! - Run limits (`admission`): a trigger of a schedule with `pipeline_run_limit` or
//!   `skip_if_previous_running` reads its `SLOTS#` item (`GetItem`) and writes it in the run's
//!   transaction; a finished run's hand-over is one transaction of the slots item, the finished run and
//!   the runs admitted. Only limited schedules pay this; their runs are serialized through the item, which
//!   the limit does anyway.
//! - Flow control per key (`flow`, `settings.flow_control.concurrency`): the same, on the key value's own
//!   `SLOTS#<id>#<hash>` item — one more `GetItem` and round trip on the trigger path, the item written in
//!   the run's transaction; each key value its own partition (no key hot for another). Payload rules and
//!   the key's expression cost no request; a trigger they skip reads the schedule (and its build) only and
//!   writes nothing; `cancel_running` adds, per superseded run, the cancel's `Query` and transaction and
//!   its hand-over. The rules test route: the schedule's `GetItem`, plus the key's slots, window or pace
//!   `GetItem`.
//! - Debounce (`flow::timing`, `DEBOUNCE#<id>#<hash>`): a trigger reads the key's window (`GetItem`, one
//!   more round trip); the first of a window writes it in the run's transaction (one more item); a merge
//!   is one conditional `PutItem` of the window and nothing else — no run written, no send (1 read and
//!   1 write besides the schedule's reads: a thousand merged triggers cost a thousand small puts on one
//!   item, which DynamoDB takes at up to 1,000 writes/s per key value, the key's own partition). The
//!   run's worker reads the window at each `StartRun` before the close (`GetItem`, plus a run write when a
//!   merge moved the start, plus one delayed send), then closes it in one transaction of the window and
//!   the run.
//! - Throttle (`THROTTLE#<id>#<hash>`): a trigger reads the key's pace (`GetItem`) and writes it in the
//!   run's transaction (one more item), conditioned on its version; a refused trigger (429) writes
//!   nothing. A deferred run's `StartRun` is one delayed send (a second each 15 minutes past SQS's cap).
//! - Backfills: by id one `GetItem`; the list one `Query` of `GSI1` `BACKFILLS` (few). A backfill's
//!   status is derived from its runs: one `Query` of `RUNVIEW#BACKFILL#<id>` (at most 1,000 entries).
//!   Starting one writes each date's run as a trigger does (with the run limits of its schedule, if any),
//!   plus its claim (an idempotency record per backfill and date, in the run's transaction), in pages of
//!   100 dates per call; each page also reads the view once (at most 1,000 entries) to skip dates made.
//! - Mage run history (`GET /api/pipeline_schedules/{id}/pipeline_runs`, `GET /api/pipeline_runs`):
//!   one `BatchGetItem` of the view's 8 counter items (the exact `metadata.count`, per status), then
//!   `Store::first_merged`: from each shard that holds matching runs, in parallel, its share of the
//!   newest `offset + limit` entries (`(offset + limit) / 8 + 2`, read backwards: `execution_date` desc,
//!   then `id` desc), and more — twice the ask each round — only from the shards whose last entry read
//!   still lies within the page's reach; merged; then one `Query` per run on the page (in parallel) and
//!   one `GetItem` per distinct schedule. Without a status filter that is about `(offset + limit) / 8`
//!   small entries per shard whatever the view's size (the benchmark prints each list route's requests
//!   and read units at 10, 10,000 and 1,000,000 runs). Trades, documented: deep `_offset`s cost
//!   O(offset) (DynamoDB cannot skip), so `_offset` stops at 100,000 and deeper pages go by `_cursor`
//!   (the page's last entry's sort key): each shard's query starts after it, so any page costs what the
//!   first does; a `status` filter reads each shard's entries newest first until it has its share of
//!   the page or all of that status the counters say it holds — O(page ÷ the status's share of recent
//!   runs): cheap for statuses common among recent runs, up to the shard's history for a rare status
//!   found only far back (a status the counters say no run has costs the counters' read alone). A
//!   backfill's view (at most 1,000 runs) is read whole and filtered.
//! - ZenML run list (`GET /api/v1/runs`, sorted by `created`): `Store::scan_view` over the pipeline's
//!   view (`pipeline_id`: one `GetItem` of the pipeline for its name) or all runs', the same reads as
//!   above with `pipeline_id`, `build_id`, `status` and `created` bounds tested on the entries (a
//!   `created` range starts and stops each shard's read at its execution dates), then one `Query` per
//!   run on the page; other filters are tested on the runs read (`http::zenml::run_list`). Sorted by
//!   another field it reads the newest 10,000 entries of the view of all runs and their runs
//!   (`Store::runs_of`, 64 at a time): bounded, whatever the history, and documented.
//! - Hot keys (SPEC §11: ≤ 1,000 write units/s per key at 1,000 triggers/s and 5,000 block changes/s,
//!   all on one schedule): a view's entry and counter partitions take 1/8 of its ~3 status changes per
//!   run, at 2 write units each in a transaction: ~750 units/s per key (the benchmark's hottest view
//!   shard, on a sample of runs: up to ~930). The wake index's 8 shards take an index write only when
//!   a run enters the index, leaves it or moves its wake time (AWS's rule for a keys-only index, which
//!   the benchmark's meter applies): about 2 per run, ~250 units/s per shard. The pipeline head item
//!   takes one read per trigger (1,000 read units/s at 1,000 triggers/s, under 3,000).
//! - ZenML lists of pipelines and builds: one `Query` of the entity's `GSI1` partition, all pages;
//!   filtering, sorting and paging happen in the function (ZenML's filters are free-form). Fine for
//!   pipelines, builds and schedules (few). Run items are not in `GSI1` (since 2026-12-07): a copy of
//!   the whole item there cost a write unit per run write (2 per noop run, 8 per run of 3 `http` blocks)
//!   for one list that now reads the views.

mod backfills;
pub mod conformance;
pub mod dynamo;
pub mod fault;
mod flow;
pub mod memory;
pub mod meter;
mod pipelines;
mod runs;
mod schedules;
pub mod table;
pub mod wake;

use std::sync::Arc;

use serde::{de::DeserializeOwned, Serialize};

use crate::domain::ApiKey;
use crate::{Error, Result};
use table::{Condition, Item, Put, Table, WriteError};

pub use runs::{
    valid_cursor, CreateOutcome, CreateWith, EntryFilter, IdempotencyRecord, RunEntry, RunPage, RunView,
    TimeBound, ViewScan, VIEW_SHARDS,
};
pub use schedules::fire_shard;
pub use wake::{wake_shard, DueRun, WAKE_SHARDS};

/// A value with the version its item had when read; pass it back to update conditionally.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub version: u64,
}

#[derive(Clone)]
pub struct Store {
    table: Arc<dyn Table>,
}

fn encode<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(Error::internal)
}

fn decode<T: DeserializeOwned>(item: &Item) -> Result<T> {
    serde_json::from_str(&item.doc)
        .map_err(|e| Error::Internal(format!("corrupt item {}/{}: {e}", item.pk, item.sk)))
}

fn decode_all<T: DeserializeOwned>(items: &[Item]) -> Result<Vec<T>> {
    items.iter().map(decode).collect()
}

fn item(pk: String, sk: &str, index: Option<(String, String)>, doc: String) -> Item {
    Item { pk, sk: sk.to_string(), index, wake: None, version: 1, doc, expires_at: None }
}

/// `<created, to the microsecond>#<id>`: orders an index partition by creation, ties by id.
fn index_sort_key(created: chrono::DateTime<chrono::Utc>, id: impl std::fmt::Display) -> String {
    format!("{}#{id}", created.format("%Y-%m-%dT%H:%M:%S%.6fZ"))
}

fn internal(e: WriteError) -> Error {
    match e {
        WriteError::ConditionFailed => Error::Internal("unexpected failed condition".into()),
        WriteError::Other(e) => e,
    }
}

impl Store {
    pub fn new(table: Arc<dyn Table>) -> Self {
        Self { table }
    }

    /// The table underneath (the conformance suite writes to it directly).
    pub fn table(&self) -> &dyn Table {
        self.table.as_ref()
    }

    /// A store on a fresh in-memory table.
    pub fn memory() -> Self {
        Self::new(Arc::new(memory::MemoryTable::new()))
    }

    async fn get_doc<T: DeserializeOwned>(&self, pk: String, sk: &str) -> Result<Option<Versioned<T>>> {
        match self.table.get(&pk, sk).await? {
            Some(i) => Ok(Some(Versioned { value: decode(&i)?, version: i.version })),
            None => Ok(None),
        }
    }

    // --- API keys -------------------------------------------------------------------------------

    fn api_key_item(key: &ApiKey) -> Result<table::Item> {
        let listed = Some(("APIKEYS".to_string(), index_sort_key(key.created, &key.hash)));
        Ok(item(format!("APIKEY#{}", key.hash), "APIKEY", listed, encode(key)?))
    }

    pub async fn put_api_key(&self, key: &ApiKey) -> Result<()> {
        let put = Put { item: Self::api_key_item(key)?, condition: Condition::Always };
        self.table.write(vec![put]).await.map_err(internal)
    }

    /// Every key, oldest first (the admin command's list; keys are few).
    pub async fn list_api_keys(&self) -> Result<Vec<ApiKey>> {
        decode_all(&self.table.query_index("APIKEYS").await?)
    }

    /// The key whose secret this is, if any (revoked and expired ones too: the caller decides).
    pub async fn find_api_key(&self, secret: &str) -> Result<Option<ApiKey>> {
        let hash = crate::domain::api_key::hash_secret(secret);
        let found: Option<Versioned<ApiKey>> = self.get_doc(format!("APIKEY#{hash}"), "APIKEY").await?;
        Ok(found.map(|v| v.value).filter(|k| k.matches(secret)))
    }
}
