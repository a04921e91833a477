//! Runs, block runs, run list views and idempotency records in the table (keys in `store`'s module
//! docs).

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::table::{Add, Condition, Item, Put, WriteError, MAX_ITEM_BYTES};
use super::{decode, decode_all, encode, item, wake, Store, Versioned};
use crate::domain::run::RunDetail;
use crate::domain::{BlockRun, Run, RunStatus, Schedule};
use crate::{Error, Result};

/// How long an `Idempotency-Key` is remembered.
pub const IDEMPOTENCY_WINDOW_HOURS: i64 = 24;

/// What [`Store::scan_view`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewScan {
    pub entries: Vec<RunEntry>,
    /// Whether the view holds more matching entries after these.
    pub more: bool,
    /// How many entries the filter keeps in all, when the counters know (a filter by status alone).
    pub total: Option<i64>,
}

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
    /// The pipeline version and build the run is of, and when it was created (the ZenML list's
    /// filters: [`EntryFilter`]).
    #[serde(default)]
    pub pipeline_id: Option<Uuid>,
    #[serde(default)]
    pub build_id: Option<Uuid>,
    #[serde(default)]
    pub created: Option<DateTime<Utc>>,
}

/// Which entries of a view a scan keeps ([`Store::scan_view`]), and from which end it reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EntryFilter {
    pub status: Option<RunStatus>,
    pub pipeline_id: Option<Uuid>,
    pub build_id: Option<Uuid>,
    /// Creation time bounds. A scan also stops at the first entry whose execution date is past the
    /// bound it moves towards (and, newest first, starts at the upper bound): a run's execution date is
    /// its creation time unless a schedule's fire time, a backfill's date or a Mage trigger set it.
    pub created_after: Option<TimeBound>,
    pub created_before: Option<TimeBound>,
    /// Oldest first (execution date ascending, ties by id) instead of newest first.
    pub oldest_first: bool,
    /// Start after this entry ([`RunEntry::position`]): the continuation of an earlier scan.
    pub after: Option<String>,
}

/// One end of a time range: the time, and whether the time itself is in the range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeBound {
    pub at: DateTime<Utc>,
    pub inclusive: bool,
}

impl EntryFilter {
    /// Whether the filter keeps `e`; never for an entry from before the fields it tests were written.
    pub fn keeps(&self, e: &RunEntry) -> bool {
        let after = |b: &TimeBound, t: DateTime<Utc>| if b.inclusive { t >= b.at } else { t > b.at };
        let before = |b: &TimeBound, t: DateTime<Utc>| if b.inclusive { t <= b.at } else { t < b.at };
        self.status.is_none_or(|s| e.status == s)
            && self.pipeline_id.is_none_or(|p| e.pipeline_id == Some(p))
            && self.build_id.is_none_or(|b| e.build_id == Some(b))
            && self.created_after.as_ref().is_none_or(|b| e.created.is_some_and(|t| after(b, t)))
            && self.created_before.as_ref().is_none_or(|b| e.created.is_some_and(|t| before(b, t)))
    }

    /// Whether the filter tests nothing but the status, from the view's end (what the view's counters
    /// count).
    fn by_status_only(&self) -> bool {
        self.pipeline_id.is_none()
            && self.build_id.is_none()
            && self.created_after.is_none()
            && self.created_before.is_none()
            && self.after.is_none()
    }

    /// Whether an entry at execution date `t` is past the end of the range the scan moves towards (so
    /// no later entry of its shard can match).
    fn past_range(&self, t: DateTime<Utc>) -> bool {
        if self.oldest_first {
            self.created_before.as_ref().is_some_and(|b| if b.inclusive { t > b.at } else { t >= b.at })
        } else {
            self.created_after.as_ref().is_some_and(|b| if b.inclusive { t < b.at } else { t <= b.at })
        }
    }

    /// Where a scan starts: after [`EntryFilter::after`] if given, else, newest first, after the
    /// position just past the upper bound.
    fn start(&self) -> Option<String> {
        if self.after.is_some() || self.oldest_first {
            return self.after.clone();
        }
        self.created_before.map(|b| {
            let at = if b.inclusive { b.at + Duration::microseconds(1) } else { b.at };
            entry_key(at, 0)
        })
    }
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

    /// Whether the view keeps counters. A backfill's view does not: it is read whole (at most 1,000
    /// runs) and its counts taken from its entries, so counters there would be writes nothing reads.
    fn counted(&self) -> bool {
        !matches!(self, RunView::Backfill(_))
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

impl RunEntry {
    /// Where the entry lies in its view (what [`EntryFilter::after`] takes).
    pub fn position(&self) -> String {
        entry_position(self)
    }
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

/// How a run item's document is written: `{"run": {…}, "blocks": [{…}, …]}`, the block runs in order —
/// compact, since every item write is billed by the started KB and the run item is written with every
/// change of the run: empty fields are left out, and of each block run the fields its run gives (the
/// serde attributes of `Run` and `BlockRun`; [`RunDocIn::into_parts`] puts them back).
///
/// The run is nested, not flattened, so that a function from before 2026-12-07 — whose run document
/// was the run's fields alone, its block runs items of their own — fails to read a run written since
/// rather than rewrite it without its block runs: while a stack update replaces the functions one by
/// one, an old function that meets a new run answers an error (its message comes back, its caller
/// retries) and writes nothing.
#[derive(Serialize)]
struct RunDocOut<'a> {
    run: &'a Run,
    blocks: &'a [BlockRun],
}

/// How a run item's document is read ([`RunDocOut`]).
#[derive(Deserialize)]
struct RunDocIn {
    run: Run,
    blocks: Vec<BlockRun>,
}

impl RunDocIn {
    fn into_parts(self) -> (Run, Vec<BlockRun>) {
        let RunDocIn { run, mut blocks } = self;
        for (index, b) in blocks.iter_mut().enumerate() {
            (b.id, b.run_id, b.run_uuid) = (crate::clock::block_run_id(run.id, index), run.id, run.uuid);
            b.created = run.created;
        }
        (run, blocks)
    }
}

/// The run and its block runs from a run item's document. The block runs are `None` for a run written
/// before they moved into the run item (2026-12-07), whose document is the run's fields alone: its
/// block runs are items of their own, `BLOCK#<index, 3 digits>` in the run's partition, read with it
/// until the run's next write moves them in.
fn run_from_doc(doc: &str, pk: &str) -> Result<(Run, Option<Vec<BlockRun>>)> {
    match serde_json::from_str::<RunDocIn>(doc) {
        Ok(current) => {
            let (run, blocks) = current.into_parts();
            Ok((run, Some(blocks)))
        }
        Err(e) => match serde_json::from_str::<Run>(doc) {
            Ok(legacy) => Ok((legacy, None)),
            Err(_) => Err(Error::Internal(format!("corrupt run item {pk}: {e}"))),
        },
    }
}

/// The most a run item's document may take: DynamoDB's 400 KB item limit, less room for the item's
/// keys and other attributes.
pub const RUN_DOC_BUDGET: usize = MAX_ITEM_BYTES - 2 * 1024;

/// The run item's document. A run's own fields are bounded where they are parsed, and each block
/// run's metrics to 64 KB (`worker::executor::MAX_METRICS_BYTES`), but a run of many blocks could
/// still outgrow DynamoDB's item: then the largest block metrics give way, one by one, to a note of
/// their size until the document fits [`RUN_DOC_BUDGET`] (a write still over it is refused as too
/// large by `table::check_write_limits`, a 413, never a stuck write).
fn run_doc(run: &Run, blocks: &[BlockRun]) -> Result<String> {
    let doc = encode(&RunDocOut { run, blocks })?;
    let Some(mut excess) = doc.len().checked_sub(RUN_DOC_BUDGET).filter(|e| *e > 0) else {
        return Ok(doc);
    };
    let mut sizes: Vec<(usize, usize)> = blocks
        .iter()
        .enumerate()
        .filter_map(|(i, b)| b.metrics.as_ref().map(|m| (encode(m).map_or(0, |j| j.len()), i)))
        .collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    let mut blocks = blocks.to_vec();
    for (size, i) in sizes {
        let note = serde_json::json!({ "kickoff_note": format!(
            "the metrics were {size} bytes of JSON and are not kept: a run's record, its block runs \
             with it, is kept within DynamoDB's 400 KB item"
        ) });
        excess = excess.saturating_sub(size.saturating_sub(encode(&note)?.len()));
        blocks[i].metrics = Some(note);
        if excess == 0 {
            break;
        }
    }
    encode(&RunDocOut { run, blocks: &blocks })
}

impl Store {
    /// The run item: the run with its block runs in its document ([`run_doc`]), so that any change of
    /// a run — of the run or of any of its block runs — is one write of one item.
    pub(super) fn run_item(run: &Run, blocks: &[BlockRun], version: u64) -> Result<Item> {
        // Not in `GSI1`: an index copy of the whole item would be rewritten with each of the run's
        // writes; the run lists read the views.
        let mut it = item(format!("RUN#{}", run.uuid), "RUN", None, run_doc(run, blocks)?);
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
            pipeline_id: Some(run.pipeline_id),
            build_id: Some(run.build_id),
            created: Some(run.created),
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
            .filter(|v| v.counted())
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
                Put { item: Self::run_item(run, blocks, 1)?, condition: Condition::Absent },
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

    /// Every run, oldest first (by creation, ties by UUID): every entry of the view of all runs, then
    /// each run. O(history): for tests.
    pub async fn list_runs(&self) -> Result<Vec<Run>> {
        let entries = self.run_entries(&RunView::All).await?;
        let mut runs: Vec<Run> = self.runs_of(&entries).await?.into_iter().map(|d| d.run).collect();
        runs.sort_by_key(|r| (r.created, r.uuid));
        Ok(runs)
    }

    /// The runs (with their block runs) of these entries, in their order, 64 reads at a time; a run
    /// gone since its entry was read is left out.
    pub async fn runs_of(&self, entries: &[RunEntry]) -> Result<Vec<RunDetail>> {
        let mut runs = Vec::with_capacity(entries.len());
        for chunk in entries.chunks(64) {
            let found =
                futures_util::future::try_join_all(chunk.iter().map(|e| self.get_run(e.uuid))).await?;
            runs.extend(found.into_iter().flatten().map(|v| v.value));
        }
        Ok(runs)
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
        if !view.counted() {
            return Err(Error::Internal(format!("view {} keeps no counters: read it whole", view.name())));
        }
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
    /// Cost: the counters (one request), then [`Store::first_merged`]'s reads for `offset + limit`
    /// entries: about `(offset + limit) / 8` per shard plus a page, whatever the view's size, more when
    /// a status is rare among recent runs (see the module docs).
    pub async fn run_page(
        &self,
        view: &RunView,
        status: Option<RunStatus>,
        offset: usize,
        limit: usize,
    ) -> Result<RunPage> {
        let per_shard = self.shard_counts(view, status).await?;
        let filter = EntryFilter { status, ..EntryFilter::default() };
        let wanted = offset.saturating_add(limit);
        let entries = self.first_merged(view, &filter, Some(&per_shard), wanted, None).await?;
        let entries: Vec<RunEntry> = entries.into_iter().skip(offset).take(limit).collect();
        Ok(RunPage::of(entries, per_shard.iter().sum(), limit))
    }

    /// [`Store::run_page`] for the page that starts after `cursor` (a [`RunPage::cursor`]): the first
    /// `limit` entries older than the cursor — so a deep page costs what the first does, whatever its
    /// depth.
    pub async fn run_page_after(
        &self,
        view: &RunView,
        status: Option<RunStatus>,
        cursor: &str,
        limit: usize,
    ) -> Result<RunPage> {
        let per_shard = self.shard_counts(view, status).await?;
        let filter = EntryFilter { status, ..EntryFilter::default() };
        let mut entries = self.first_merged(view, &filter, Some(&per_shard), limit, Some(cursor)).await?;
        entries.truncate(limit);
        Ok(RunPage::of(entries, per_shard.iter().sum(), limit))
    }

    /// The first `take` entries of `view` that `filter` keeps, in its order (newest first unless
    /// `oldest_first`: execution date, then id), whether the view holds more after them, and — when the
    /// filter tests nothing but the status — how many it keeps in all (exact, from the view's counters).
    ///
    /// Cost: the counters when the filter is by status alone (one request), then
    /// [`Store::first_merged`]'s reads for `take + 1` entries; never the entries outside a `created`
    /// range's execution dates.
    pub async fn scan_view(&self, view: &RunView, filter: &EntryFilter, take: usize) -> Result<ViewScan> {
        let per_shard =
            if filter.by_status_only() { Some(self.shard_counts(view, filter.status).await?) } else { None };
        let start = filter.start();
        let mut entries = self
            .first_merged(view, filter, per_shard.as_deref(), take.saturating_add(1), start.as_deref())
            .await?;
        let more = entries.len() > take;
        entries.truncate(take);
        Ok(ViewScan { entries, more, total: per_shard.map(|n| n.iter().sum()) })
    }

    /// The first `want` entries of `view` that `filter` keeps, in its order, from after `start` if
    /// given; `held`: how many matching entries each shard holds, when the counters say.
    ///
    /// Runs are spread evenly over the 8 shards, so each shard is asked first for its share
    /// (`want / 8` and two more), all in parallel; then only the shards whose last entry read still lies
    /// before the `want`-th entry of the merge are read further, with twice the ask each round. So a
    /// page costs about `want / 8` entries per shard, not `want` — whatever the view's size — and a
    /// filter costs more the sparser its matches lie (a shard the counters say holds none is not read).
    async fn first_merged(
        &self,
        view: &RunView,
        filter: &EntryFilter,
        held: Option<&[i64]>,
        want: usize,
        start: Option<&str>,
    ) -> Result<Vec<RunEntry>> {
        let shards = VIEW_SHARDS as usize;
        let order = |a: &RunEntry, b: &RunEntry| {
            let o = entry_order(a).cmp(&entry_order(b));
            if filter.oldest_first {
                o
            } else {
                o.reverse()
            }
        };
        let before = |a: &RunEntry, b: &RunEntry| order(a, b) == std::cmp::Ordering::Less;
        let mut got: Vec<Vec<RunEntry>> = vec![Vec::new(); shards];
        let mut resume: Vec<Option<String>> = vec![start.map(str::to_string); shards];
        let mut done: Vec<bool> = (0..shards)
            .map(|s| held.is_some_and(|h| h.get(s).copied().unwrap_or(0) <= 0) || want == 0)
            .collect();
        let mut ask = want.div_ceil(shards) + 2;
        loop {
            let mut merged: Vec<&RunEntry> = got.iter().flatten().collect();
            merged.sort_by(|a, b| order(a, b));
            let boundary = merged.get(want.saturating_sub(1)).copied().filter(|_| merged.len() >= want);
            let needed: Vec<usize> = (0..shards)
                .filter(|&s| !done[s])
                .filter(|&s| match (boundary, got[s].last()) {
                    (Some(b), Some(last)) => before(last, b),
                    _ => true,
                })
                .collect();
            if needed.is_empty() {
                break;
            }
            let reads = needed.iter().map(|&s| {
                let room = held.map_or(usize::MAX, |h| {
                    usize::try_from(h.get(s).copied().unwrap_or(0)).unwrap_or(0).saturating_sub(got[s].len())
                });
                self.shard_entries(view.pk(s as i64), filter, ask.min(room), resume[s].clone())
            });
            let read = futures_util::future::try_join_all(reads).await?;
            for (&s, (entries, next)) in needed.iter().zip(read) {
                done[s] = next.is_none()
                    || held.is_some_and(|h| {
                        got[s].len() + entries.len()
                            >= usize::try_from(h.get(s).copied().unwrap_or(0)).unwrap_or(0)
                    });
                resume[s] = next;
                got[s].extend(entries);
            }
            ask = ask.saturating_mul(2);
        }
        let mut merged: Vec<RunEntry> = got.into_iter().flatten().collect();
        merged.sort_by(|a, b| order(a, b));
        merged.truncate(want);
        Ok(merged)
    }

    /// The first `take` entries of one shard that `filter` keeps, from its end (after `start` if
    /// given), and where to resume after them (`None`: the shard has no more).
    async fn shard_entries(
        &self,
        pk: String,
        filter: &EntryFilter,
        take: usize,
        start: Option<String>,
    ) -> Result<(Vec<RunEntry>, Option<String>)> {
        let mut found = Vec::with_capacity(take);
        let mut after: Option<String> = start;
        // A page of what is still wanted, doubled while the filter keeps few (at most 1,000 entries).
        let mut ask = take;
        while found.len() < take {
            let page = self.table.query_page(&pk, !filter.oldest_first, ask, after.as_deref()).await?;
            for e in decode_all::<RunEntry>(&page.items)? {
                if filter.past_range(e.execution_date) {
                    return Ok((found, None));
                }
                let position = entry_position(&e);
                if filter.keeps(&e) {
                    found.push(e);
                }
                after = Some(position);
                if found.len() == take {
                    return Ok((found, after));
                }
            }
            if page.last.is_none() {
                return Ok((found, None));
            }
            ask = (ask * 2).min(1000);
        }
        Ok((found, after))
    }

    /// Replaces a run and its block runs if the run item still has the version read (so every change
    /// of a run's state is serialized through its one item); `false` if someone changed it first. When
    /// the run's status differs from `previous` (its status as read), its list entries are rewritten
    /// and its views' counters moved in the same transaction; otherwise it is one conditional
    /// `PutItem`.
    pub async fn update_run(&self, record: &Versioned<RunDetail>, previous: RunStatus) -> Result<bool> {
        self.update_run_with(record, previous, Vec::new()).await
    }

    /// [`Store::update_run`] with more puts in the same transaction (a debounce window's close:
    /// `flow::timing`).
    pub async fn update_run_with(
        &self,
        record: &Versioned<RunDetail>,
        previous: RunStatus,
        extra: Vec<Put>,
    ) -> Result<bool> {
        let run = &record.value.run;
        let mut puts = vec![Put {
            item: Self::run_item(run, &record.value.blocks, record.version + 1)?,
            condition: Condition::Version(record.version),
        }];
        let adds = Self::view_counts(run, Some(previous));
        if !adds.is_empty() {
            puts.extend(Self::view_puts(run)?);
        }
        puts.extend(extra);
        match self.table.write_counted(puts, adds).await {
            Ok(()) => Ok(true),
            Err(WriteError::ConditionFailed) => Ok(false),
            Err(WriteError::Other(e)) => Err(e),
        }
    }

    /// A run with its block runs (in order), and the run item's version: one `Query` of its
    /// partition (what the worker works on).
    pub async fn get_run(&self, uuid: Uuid) -> Result<Option<Versioned<RunDetail>>> {
        let items = self.table.query(&format!("RUN#{uuid}"), "").await?;
        let Some(run_item) = items.iter().find(|i| i.sk == "RUN") else {
            return Ok(None);
        };
        let (mut value, blocks) = run_from_doc(&run_item.doc, &run_item.pk)?;
        value.wake_at = run_item.wake.as_ref().and_then(|(_, key)| wake::parse_wake_key(key));
        let blocks = match blocks {
            Some(blocks) => blocks,
            None => Self::block_items(&items)?,
        };
        Ok(Some(Versioned { value: RunDetail { run: value, blocks }, version: run_item.version }))
    }

    /// The block runs of a run written before they moved into the run item, in order.
    fn block_items(items: &[Item]) -> Result<Vec<BlockRun>> {
        let mut blocks = Vec::new();
        for (i, it) in items.iter().filter(|i| i.sk.starts_with("BLOCK#")).enumerate() {
            let index = it.sk.trim_start_matches("BLOCK#").parse::<usize>().map_err(Error::internal)?;
            if index != i {
                return Err(Error::Internal(format!("{} has a gap in its block runs", it.pk)));
            }
            blocks.push(decode(it)?);
        }
        Ok(blocks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::executor::MAX_METRICS_BYTES;

    pub(super) fn run_with_blocks(n: usize, metrics_bytes: usize) -> (Run, Vec<BlockRun>) {
        let now = Utc::now();
        let run: Run = serde_json::from_value(serde_json::json!({
            "uuid": Uuid::nil(), "id": 1, "name": "r", "build_id": Uuid::nil(), "pipeline_id": Uuid::nil(),
            "pipeline_name": "p", "pipeline_version": "1", "schedule_id": null, "backfill_id": null,
            "status": "running", "execution_date": now, "variables": null, "event_variables": null,
            "config": {}, "passed_sla": false, "metrics": null, "started_at": null, "completed_at": null,
            "created": now, "updated": now
        }))
        .expect("run");
        let blocks = (0..n)
            .map(|i| {
                let mut b = BlockRun::new(run.uuid, 1, i, &format!("b{i}"), Default::default(), now);
                // Block i's metrics grow with i, so the largest are the last.
                let size = metrics_bytes.saturating_sub(n - i);
                b.metrics = Some(serde_json::json!({ "rows": "x".repeat(size) }));
                b
            })
            .collect();
        (run, blocks)
    }

    #[test]
    fn a_run_document_within_the_budget_is_written_as_is() {
        let (run, mut blocks) = run_with_blocks(4, 1_000);
        // Every kind of field, empty and not: they all come back as they were.
        blocks[0].metrics = Some(serde_json::json!({}));
        blocks[1].metrics = None;
        blocks[1].parameters.insert("lr".into(), serde_json::json!(0));
        (blocks[2].attempts, blocks[2].failures) = (3, 2);
        blocks[2].lease_until = Some(run.created + Duration::seconds(90));
        blocks[2].callback_hash = Some("ab".repeat(32));
        blocks[3].updated = run.created + Duration::seconds(1);
        let doc = run_doc(&run, &blocks).expect("doc");
        for given in ["\"run_id\"", "\"run_uuid\"", "null"] {
            assert!(!doc.contains(given), "{given} is not stored: {doc}");
        }
        assert_eq!(doc.matches("\"created\"").count(), 1, "the run's creation time only: {doc}");
        // What a function from before the run item held its block runs read: the run's fields at the
        // top. It cannot read this document, so it cannot rewrite the run without its block runs.
        assert!(serde_json::from_str::<Run>(&doc).is_err(), "an older function fails on it: {doc}");
        let (back, back_blocks) = run_from_doc(&doc, "RUN#test").expect("read");
        assert_eq!((back, back_blocks), (run, Some(blocks)));
    }

    #[test]
    fn the_largest_block_metrics_give_way_until_the_run_fits_one_item() {
        // 90 blocks with metrics near their own 64 KB budget: about 5.8 MB, far over one item.
        let (run, blocks) = run_with_blocks(90, MAX_METRICS_BYTES - 20);
        let doc = run_doc(&run, &blocks).expect("doc");
        assert!(doc.len() <= RUN_DOC_BUDGET, "{} bytes", doc.len());
        let (_, back) = run_from_doc(&doc, "RUN#test").expect("read");
        let back = back.expect("blocks");
        let noted: Vec<usize> = (0..90)
            .filter(|&i| back[i].metrics.as_ref().is_some_and(|m| m.get("kickoff_note").is_some()))
            .collect();
        let kept = 90 - noted.len();
        assert!((5..=6).contains(&kept), "about 390 KB of metrics are kept: {kept} blocks' worth");
        assert_eq!(noted, (kept..90).collect::<Vec<_>>(), "the largest give way first");
        assert_eq!(back[0].metrics, blocks[0].metrics, "the rest are kept whole");
        let note =
            back[89].metrics.as_ref().expect("note")["kickoff_note"].as_str().expect("text").to_string();
        assert!(note.contains("400 KB"), "{note}");
    }
}
