//! Runs, block runs, run list views and idempotency records in the table (keys in `store`'s module
//! docs).

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::table::{Add, Condition, Item, Put, WriteError};
use super::{decode, decode_all, encode, index_sort_key, item, wake, Store, Versioned};
use crate::domain::run::RunDetail;
use crate::domain::{BlockRun, Run, RunStatus, Schedule};
use crate::{Error, Result};

/// How long an `Idempotency-Key` is remembered.
pub const IDEMPOTENCY_WINDOW_HOURS: i64 = 24;

/// One line of a run list view: what filtering and ordering need, without reading the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEntry {
    pub uuid: Uuid,
    pub id: i64,
    pub execution_date: DateTime<Utc>,
    pub status: RunStatus,
    pub schedule_id: Option<i64>,
    pub backfill_id: Option<i64>,
    pub pipeline_name: String,
}

/// The run lists kept in the table, each a partition of entries ordered by execution date and id.
#[derive(Debug, Clone, PartialEq)]
pub enum RunView {
    All,
    Schedule(i64),
    Pipeline(String),
    Backfill(i64),
}

/// How many partitions each run list view is spread over (by run id): at 1,000 triggers/s all on one
/// schedule, each of a view's entry and counter partitions takes 1/8 of its writes (SPEC §11 arithmetic in
/// the module docs of `store`).
pub const VIEW_SHARDS: i64 = 8;

/// How many `GSI1` partitions the run items' index copies (the ZenML run list) are spread over: every
/// write of a run item rewrites its copy, about 6,000 writes/s at 1,000 triggers/s of 3-block runs.
pub const RUN_INDEX_SHARDS: i64 = 32;

impl RunView {
    fn name(&self) -> String {
        match self {
            RunView::All => "ALL".into(),
            RunView::Schedule(id) => format!("SCHEDULE#{id}"),
            RunView::Pipeline(name) => format!("PIPELINE#{name}"),
            RunView::Backfill(id) => format!("BACKFILL#{id}"),
        }
    }

    /// The entry partition of shard `shard`.
    fn pk(&self, shard: i64) -> String {
        format!("RUNVIEW#{}#{shard}", self.name())
    }

    /// The counter item of shard `shard`: the view's runs in that shard by status.
    fn counter_key(&self, shard: i64) -> (String, String) {
        (format!("RUNCOUNT#{}#{shard}", self.name()), "COUNT".into())
    }

    fn of(run: &Run) -> Vec<RunView> {
        let mut views = vec![RunView::All, RunView::Pipeline(run.pipeline_name.clone())];
        views.extend(run.schedule_id.map(RunView::Schedule));
        views.extend(run.backfill_id.map(RunView::Backfill));
        views
    }
}

fn view_shard(run_id: i64) -> i64 {
    run_id.rem_euclid(VIEW_SHARDS)
}

/// One page of a run list view ([`Store::run_page`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RunPage {
    pub entries: Vec<RunEntry>,
    /// Runs in the view with the status asked for (all if none): exact, from the view's counters.
    pub count: i64,
    /// Where the next (older) page starts, when this one is full: its last entry's position, for
    /// [`Store::run_page_after`].
    pub cursor: Option<String>,
}

impl RunPage {
    fn of(entries: Vec<RunEntry>, count: i64, limit: usize) -> RunPage {
        let cursor = entries.last().filter(|_| entries.len() == limit).map(entry_position);
        RunPage { entries, count, cursor }
    }
}

/// An entry's sort key in its view: `<execution date>#<id, 16 digits>`.
fn entry_position(e: &RunEntry) -> String {
    entry_key(e.execution_date, e.id)
}

/// Whether `cursor` is a position [`RunPage::cursor`] can give (it becomes a query's start key).
pub fn valid_cursor(cursor: &str) -> bool {
    cursor.split_once('#').is_some_and(|(date, id)| {
        chrono::NaiveDateTime::parse_from_str(date, ENTRY_DATE_FORMAT).is_ok()
            && id.len() == 16
            && id.bytes().all(|b| b.is_ascii_digit())
    })
}

/// A remembered `Idempotency-Key`: which request it came with and which run it made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// What the key is scoped to (`schedule:<id>`, `build:<uuid>`).
    pub scope: String,
    pub key: String,
    /// SHA-256 of the canonical JSON of the request body.
    pub request_hash: String,
    pub run_uuid: Uuid,
    pub created: DateTime<Utc>,
}

impl IdempotencyRecord {
    fn pk(scope: &str, key: &str) -> String {
        format!("IDEMPOTENCY#{scope}#{key}")
    }

    fn expires_at(&self) -> i64 {
        (self.created + Duration::hours(IDEMPOTENCY_WINDOW_HOURS)).timestamp()
    }
}

/// What `create_run` did.
#[derive(Debug, Clone, PartialEq)]
pub enum CreateOutcome {
    Created,
    /// The idempotency key was used before (within the window); nothing was written.
    Replayed(IdempotencyRecord),
    /// A condition of the items written with the run (`CreateWith::fire`, `slots`) did not hold; nothing was
    /// written. The caller reads them again and decides.
    Conflict,
}

/// What is written in the same transaction as a new run, besides its own items.
#[derive(Debug, Clone, Default)]
pub struct CreateWith<'a> {
    /// The `Idempotency-Key` record (SPEC §4).
    pub idempotency: Option<&'a IdempotencyRecord>,
    /// A time schedule's fire (SPEC §6): the claim of `(schedule, the run's execution_date)`, which
    /// exists once, and the schedule moved past that fire time, conditioned on the version it was
    /// read at.
    pub fire: Option<(&'a Schedule, u64)>,
    /// The run's schedule's slots item (`admission`), conditioned on the version read (`None`: new).
    pub slots: Option<(&'a crate::admission::SlotsKey, &'a crate::admission::Slots, Option<u64>)>,
    /// The key value's debounce window or throttle pace (`flow::timing`), under its own condition.
    pub flow: Option<super::table::Put>,
}

/// The claim of one fire time of one schedule: `FIRED#<schedule id>#<fire time>`.
fn fire_claim_pk(schedule_id: i64, at: DateTime<Utc>) -> String {
    format!("FIRED#{schedule_id}#{}", at.format("%Y-%m-%dT%H:%M:%S%.6fZ"))
}

/// A view's order: execution date, then id.
fn entry_order(e: &RunEntry) -> (DateTime<Utc>, i64) {
    (e.execution_date, e.id)
}

fn entry_sort_key(run: &Run) -> String {
    entry_key(run.execution_date, run.id)
}

/// How a list entry's sort key writes its execution date (and a cursor must).
const ENTRY_DATE_FORMAT: &str = "%Y%m%dT%H%M%S%6f";

fn entry_key(execution_date: DateTime<Utc>, id: i64) -> String {
    format!("{}#{:016}", execution_date.format(ENTRY_DATE_FORMAT), id)
}

impl Store {
    pub(super) fn run_item(run: &Run, version: u64) -> Result<Item> {
        let mut it = item(
            format!("RUN#{}", run.uuid),
            "RUN",
            Some((
                format!("RUNS#{}", run.id.rem_euclid(RUN_INDEX_SHARDS)),
                index_sort_key(run.created, run.uuid),
            )),
            encode(run)?,
        );
        it.version = version;
        // Only unfinished runs are in the wake index, and finished ones whose slot is to be handed over
        // or that owe a notification.
        let slot_pending = run.slot.is_some_and(|s| s != crate::domain::run::Slot::Released);
        let notification_owed = run.notifications.iter().any(|n| n.due().is_some());
        it.wake = run
            .wake_at
            .filter(|_| !run.status.is_finished() || slot_pending || notification_owed)
            .map(|t| (wake::wake_pk(wake::wake_shard(run.uuid)), wake::wake_key(t)));
        Ok(it)
    }

    fn block_run_item(b: &BlockRun, index: usize, version: u64) -> Result<Item> {
        let mut it = item(format!("RUN#{}", b.run_uuid), &format!("BLOCK#{index:03}"), None, encode(b)?);
        it.version = version;
        Ok(it)
    }

    /// The run's entries in its list views; rewritten with every change of the run's status, so that their
    /// status is the run's.
    fn view_puts(run: &Run) -> Result<Vec<Put>> {
        let entry = encode(&RunEntry {
            uuid: run.uuid,
            id: run.id,
            execution_date: run.execution_date,
            status: run.status,
            schedule_id: run.schedule_id,
            backfill_id: run.backfill_id,
            pipeline_name: run.pipeline_name.clone(),
        })?;
        let shard = view_shard(run.id);
        Ok(RunView::of(run)
            .iter()
            .map(|v| Put {
                item: item(v.pk(shard), &entry_sort_key(run), None, entry.clone()),
                condition: Condition::Always,
            })
            .collect())
    }

    /// The counter changes of the run's views when its status goes from `previous` (`None`: a new run)
    /// to its current one; nothing when it stays.
    fn view_counts(run: &Run, previous: Option<RunStatus>) -> Vec<Add> {
        if previous == Some(run.status) {
            return Vec::new();
        }
        let mut counts = vec![(run.status.as_mage().to_string(), 1)];
        counts.extend(previous.map(|p| (p.as_mage().to_string(), -1)));
        let shard = view_shard(run.id);
        RunView::of(run)
            .iter()
            .map(|v| {
                let (pk, sk) = v.counter_key(shard);
                Add { pk, sk, counts: counts.clone() }
            })
            .collect()
    }

    /// Writes a new run with its block runs and list entries in one transaction, with the idempotency
    /// record if there is one. The run's integer id is claimed with a conditional write; if another run
    /// holds it, `reassign` gives the run (and its blocks) a new id and the write is tried again. If the
    /// idempotency key was used within the window, nothing is written and the earlier record returned.
    pub async fn create_run(
        &self,
        run: &mut Run,
        blocks: &mut [BlockRun],
        idempotency: Option<&IdempotencyRecord>,
        reassign: impl FnMut(&mut Run, &mut [BlockRun]),
    ) -> Result<CreateOutcome> {
        self.create_run_with(run, blocks, &CreateWith { idempotency, ..CreateWith::default() }, reassign)
            .await
    }

    /// [`Store::create_run`] with more items in the same transaction (see [`CreateWith`]). A failed
    /// condition with a `fire` is answered [`CreateOutcome::Conflict`] (after the idempotency check),
    /// not retried here: the schedule must be read again.
    pub async fn create_run_with(
        &self,
        run: &mut Run,
        blocks: &mut [BlockRun],
        with: &CreateWith<'_>,
        mut reassign: impl FnMut(&mut Run, &mut [BlockRun]),
    ) -> Result<CreateOutcome> {
        let idempotency = with.idempotency;
        for _ in 0..8 {
            let mut puts = vec![
                Put { item: Self::run_item(run, 1)?, condition: Condition::Absent },
                Put {
                    item: item(
                        format!("RUNID#{}", run.id),
                        "RUNID",
                        None,
                        encode(&serde_json::json!({ "uuid": run.uuid }))?,
                    ),
                    condition: Condition::Absent,
                },
            ];
            for (i, b) in blocks.iter().enumerate() {
                puts.push(Put { item: Self::block_run_item(b, i, 1)?, condition: Condition::Absent });
            }
            puts.extend(Self::view_puts(run)?);
            if let Some(rec) = idempotency {
                let mut it =
                    item(IdempotencyRecord::pk(&rec.scope, &rec.key), "IDEMPOTENCY", None, encode(rec)?);
                it.expires_at = Some(rec.expires_at());
                puts.push(Put { item: it, condition: Condition::AbsentOrExpired(rec.created.timestamp()) });
            }
            if let Some((key, slots, version)) = with.slots {
                puts.push(super::schedules::slots_put(key, slots, version)?);
            }
            if let Some(put) = &with.flow {
                puts.push(put.clone());
            }
            if let Some((schedule, version)) = with.fire {
                let claim = encode(&serde_json::json!({ "run_uuid": run.uuid }))?;
                let pk = fire_claim_pk(schedule.id, run.execution_date);
                puts.push(Put { item: item(pk, "FIRED", None, claim), condition: Condition::Absent });
                puts.push(super::schedules::schedule_put(
                    schedule,
                    version + 1,
                    Condition::Version(version),
                )?);
            }
            match self.table.write_counted(puts, Self::view_counts(run, None)).await {
                Ok(()) => return Ok(CreateOutcome::Created),
                Err(WriteError::ConditionFailed) => {
                    if let Some(rec) = idempotency {
                        if let Some(earlier) =
                            self.idempotency_record(&rec.scope, &rec.key, rec.created).await?
                        {
                            return Ok(CreateOutcome::Replayed(earlier));
                        }
                    }
                    if with.fire.is_some() || with.slots.is_some() || with.flow.is_some() {
                        return Ok(CreateOutcome::Conflict);
                    }
                    reassign(run, blocks);
                }
                Err(WriteError::Other(e)) => return Err(e),
            }
        }
        Err(Error::Internal("could not write the run after 8 tries".into()))
    }

    /// The run made for fire time `at` of a schedule, if one was (one `GetItem` on the claim).
    pub async fn fired_run(&self, schedule_id: i64, at: DateTime<Utc>) -> Result<Option<Uuid>> {
        let Some(claim) = self.table.get(&fire_claim_pk(schedule_id, at), "FIRED").await? else {
            return Ok(None);
        };
        let v: serde_json::Value = decode(&claim)?;
        v.get("run_uuid")
            .and_then(|u| u.as_str())
            .and_then(|u| Uuid::parse_str(u).ok())
            .map(Some)
            .ok_or_else(|| Error::Internal(format!("corrupt fire claim of schedule {schedule_id}")))
    }

    /// The record of an idempotency key, unless it has expired by `now`.
    pub async fn idempotency_record(
        &self,
        scope: &str,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<IdempotencyRecord>> {
        let found = self.table.get(&IdempotencyRecord::pk(scope, key), "IDEMPOTENCY").await?;
        match found {
            Some(it) if it.expires_at.is_none_or(|t| t >= now.timestamp()) => Ok(Some(decode(&it)?)),
            _ => Ok(None),
        }
    }

    /// A run with its block runs, and the run item's version.
    pub async fn get_run(&self, uuid: Uuid) -> Result<Option<Versioned<RunDetail>>> {
        Ok(self.run_state(uuid).await?.map(|(run, blocks)| Versioned {
            value: RunDetail { run: run.value, blocks: blocks.into_iter().map(|(_, b)| b.value).collect() },
            version: run.version,
        }))
    }

    /// The UUID of the run with this integer id (one `GetItem` on its id claim).
    pub async fn run_uuid(&self, id: i64) -> Result<Option<Uuid>> {
        let Some(claim) = self.table.get(&format!("RUNID#{id}"), "RUNID").await? else {
            return Ok(None);
        };
        let v: serde_json::Value = decode(&claim)?;
        v.get("uuid")
            .and_then(|u| u.as_str())
            .and_then(|u| Uuid::parse_str(u).ok())
            .map(Some)
            .ok_or_else(|| Error::Internal(format!("corrupt run id claim {id}")))
    }

    pub async fn get_run_by_id(&self, id: i64) -> Result<Option<Versioned<RunDetail>>> {
        match self.run_uuid(id).await? {
            Some(uuid) => self.get_run(uuid).await,
            None => Ok(None),
        }
    }

    /// Every run (the ZenML list), oldest first: one `Query` of each `GSI1` shard `RUNS#<0–31>`.
    pub async fn list_runs(&self) -> Result<Vec<Run>> {
        let shards = (0..RUN_INDEX_SHARDS).map(|s| self.table.query_index_owned(format!("RUNS#{s}")));
        let mut items: Vec<Item> =
            futures_util::future::try_join_all(shards).await?.into_iter().flatten().collect();
        items.sort_by(|a, b| a.index.as_ref().map(|i| &i.1).cmp(&b.index.as_ref().map(|i| &i.1)));
        decode_all(&items)
    }

    /// Every entry of a run list view, newest execution date first, ties by id, highest first. Reads the
    /// whole view: for views known to be small (a backfill's, at most 1,000 runs) and tests; lists page
    /// with [`Store::run_page`].
    pub async fn run_entries(&self, view: &RunView) -> Result<Vec<RunEntry>> {
        let mut entries = Vec::new();
        for shard in 0..VIEW_SHARDS {
            entries.extend(decode_all::<RunEntry>(&self.table.query(&view.pk(shard), "").await?)?);
        }
        entries.sort_by(|a, b| entry_order(b).cmp(&entry_order(a)));
        Ok(entries)
    }

    /// How many runs of the view have `status` (all statuses if `None`): one request for the view's
    /// counter items, whatever its size.
    pub async fn run_count(&self, view: &RunView, status: Option<RunStatus>) -> Result<i64> {
        Ok(self.shard_counts(view, status).await?.iter().sum())
    }

    async fn shard_counts(&self, view: &RunView, status: Option<RunStatus>) -> Result<Vec<i64>> {
        let keys: Vec<(String, String)> = (0..VIEW_SHARDS).map(|s| view.counter_key(s)).collect();
        let counters = self.table.get_counters(&keys).await?;
        Ok(counters
            .iter()
            .map(|c| match status {
                Some(s) => c.get(s.as_mage()).copied().unwrap_or(0),
                None => c.values().sum(),
            })
            .collect())
    }

    /// Entries `offset .. offset + limit` of a view (newest execution date first, ties by id, highest
    /// first), those with `status` only if one is given, and the exact count they are out of.
    ///
    /// Cost: the counters (one request), then from each of the view's 8 shards that holds matching runs,
    /// pages of its newest entries until it has given `offset + limit` matches or all it holds — in
    /// parallel. Without a status filter that is `offset + limit` entries per shard, whatever the view's
    /// size; with one, the entries read grow with how far back the matches lie (a shard with none is not
    /// read at all; see the module docs).
    pub async fn run_page(
        &self,
        view: &RunView,
        status: Option<RunStatus>,
        offset: usize,
        limit: usize,
    ) -> Result<RunPage> {
        let per_shard = self.shard_counts(view, status).await?;
        let wanted = offset.saturating_add(limit);
        let entries = self.newest_merged(view, status, &per_shard, wanted, None).await?;
        let entries: Vec<RunEntry> = entries.into_iter().skip(offset).take(limit).collect();
        Ok(RunPage::of(entries, per_shard.iter().sum(), limit))
    }

    /// [`Store::run_page`] for the page that starts after `cursor` (a [`RunPage::cursor`]): from each
    /// shard that holds matching runs, its newest `limit` entries older than the cursor — so a deep page
    /// costs what the first does, whatever its depth.
    pub async fn run_page_after(
        &self,
        view: &RunView,
        status: Option<RunStatus>,
        cursor: &str,
        limit: usize,
    ) -> Result<RunPage> {
        let per_shard = self.shard_counts(view, status).await?;
        let mut entries = self.newest_merged(view, status, &per_shard, limit, Some(cursor)).await?;
        entries.truncate(limit);
        Ok(RunPage::of(entries, per_shard.iter().sum(), limit))
    }

    /// From each shard of `view` (its matching runs counted in `per_shard`), its newest `take` entries
    /// (older than `start` if given), read in parallel, merged newest first.
    async fn newest_merged(
        &self,
        view: &RunView,
        status: Option<RunStatus>,
        per_shard: &[i64],
        take: usize,
        start: Option<&str>,
    ) -> Result<Vec<RunEntry>> {
        let reads = per_shard.iter().enumerate().map(|(shard, &n)| {
            let take = usize::try_from(n).unwrap_or(0).min(take);
            self.newest_entries(view.pk(shard as i64), status, take, start.map(str::to_string))
        });
        let mut entries: Vec<RunEntry> =
            futures_util::future::try_join_all(reads).await?.into_iter().flatten().collect();
        entries.sort_by(|a, b| entry_order(b).cmp(&entry_order(a)));
        Ok(entries)
    }

    /// The newest `take` entries of one shard with `status` (any if `None`), older than `start` if given.
    async fn newest_entries(
        &self,
        pk: String,
        status: Option<RunStatus>,
        take: usize,
        start: Option<String>,
    ) -> Result<Vec<RunEntry>> {
        let mut found = Vec::with_capacity(take);
        let mut after: Option<String> = start;
        while found.len() < take {
            let ask = if status.is_some() { 200 } else { take - found.len() };
            let page = self.table.query_page(&pk, true, ask, after.as_deref()).await?;
            for e in decode_all::<RunEntry>(&page.items)? {
                if found.len() < take && status.is_none_or(|s| e.status == s) {
                    found.push(e);
                }
            }
            match page.last {
                Some(last) => after = Some(last),
                None => break,
            }
        }
        Ok(found)
    }

    /// Replaces a run if it still has `version` (its status was `previous`); `false` if someone changed
    /// it first.
    pub async fn update_run(&self, run: &Run, version: u64, previous: RunStatus) -> Result<bool> {
        let run = Versioned { value: run.clone(), version };
        self.update_run_and_blocks(&run, previous, &[]).await
    }

    /// Replaces the run and block runs together, each conditioned on the version it was read at (so every
    /// change of a run's state is serialized through its run item). When the run's status differs from
    /// `previous` (its status as read), its list entries are rewritten and its views' counters moved.
    pub async fn update_run_and_blocks(
        &self,
        run: &Versioned<Run>,
        previous: RunStatus,
        blocks: &[(usize, Versioned<BlockRun>)],
    ) -> Result<bool> {
        self.update_run_and_blocks_with(run, previous, blocks, Vec::new()).await
    }

    /// [`Store::update_run_and_blocks`] with more puts in the same transaction (a debounce window's
    /// close: `flow::timing`).
    pub async fn update_run_and_blocks_with(
        &self,
        run: &Versioned<Run>,
        previous: RunStatus,
        blocks: &[(usize, Versioned<BlockRun>)],
        extra: Vec<Put>,
    ) -> Result<bool> {
        let mut puts = vec![Put {
            item: Self::run_item(&run.value, run.version + 1)?,
            condition: Condition::Version(run.version),
        }];
        for (i, b) in blocks {
            puts.push(Put {
                item: Self::block_run_item(&b.value, *i, b.version + 1)?,
                condition: Condition::Version(b.version),
            });
        }
        let adds = Self::view_counts(&run.value, Some(previous));
        if !adds.is_empty() {
            puts.extend(Self::view_puts(&run.value)?);
        }
        puts.extend(extra);
        match self.table.write_counted(puts, adds).await {
            Ok(()) => Ok(true),
            Err(WriteError::ConditionFailed) => Ok(false),
            Err(WriteError::Other(e)) => Err(e),
        }
    }

    /// A run and its block runs, each with its version, in one query (what the worker works on).
    pub async fn run_state(
        &self,
        uuid: Uuid,
    ) -> Result<Option<(Versioned<Run>, Vec<(usize, Versioned<BlockRun>)>)>> {
        let items = self.table.query(&format!("RUN#{uuid}"), "").await?;
        let Some(run_item) = items.iter().find(|i| i.sk == "RUN") else {
            return Ok(None);
        };
        let mut value: Run = decode(run_item)?;
        value.wake_at = run_item.wake.as_ref().and_then(|(_, key)| wake::parse_wake_key(key));
        let run = Versioned { value, version: run_item.version };
        Ok(Some((run, Self::block_items(&items)?)))
    }

    fn block_items(items: &[Item]) -> Result<Vec<(usize, Versioned<BlockRun>)>> {
        items
            .iter()
            .filter(|i| i.sk.starts_with("BLOCK#"))
            .map(|i| {
                let index = i.sk.trim_start_matches("BLOCK#").parse::<usize>().map_err(Error::internal)?;
                Ok((index, Versioned { value: decode(i)?, version: i.version }))
            })
            .collect()
    }

    /// The block runs of a run with their versions and indexes.
    pub async fn block_runs(&self, run_uuid: Uuid) -> Result<Vec<(usize, Versioned<BlockRun>)>> {
        Self::block_items(&self.table.query(&format!("RUN#{run_uuid}"), "BLOCK#").await?)
    }
}
