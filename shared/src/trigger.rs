//! Starting a run, for every trigger of both dialects: write the run and its block runs (`initial`) in
//! one transaction, then send one queue message. Nothing executes here.
//!
//! The write is the commit point (SPEC §5): the run goes into the wake index in that same write, due a
//! grace period after its creation, so a run whose `StartRun` is never sent — the send fails, or the
//! process dies first — is found by the scheduler tick's sweep and queued then. So the trigger answers
//! 2xx once the write succeeded, whatever became of the send (a failed send is logged).
//!
//! `Idempotency-Key` (SPEC §4): the key is remembered for 24 hours with the SHA-256 of the request's
//! canonical JSON, in the same transaction as the run. A repeat with the same body answers the same run
//! and writes nothing; with another body it is a 422. Concurrent repeats race on that conditional write,
//! so exactly one run is made.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::admission::{self, Admission, Limits, Waiter};
use crate::clock::{block_run_id, new_int_ids};
use crate::domain::notify::NotifyTarget;
use crate::domain::run::Deadlines;
use crate::domain::run::RunDetail;
use crate::domain::run::Slot;
use crate::domain::run_config::RunConfig;
use crate::domain::{BlockRun, BlockRunStatus, Build, Run, RunStatus, Schedule};
use crate::flow::timing::{self, DebounceStep, Timing, Turn, Window};
use crate::queue::Message;
use crate::remembered::Remembered;
use crate::store::{CreateOutcome, CreateWith, IdempotencyRecord, Store, Versioned};
use crate::{App, Error, Result};

/// An `Idempotency-Key` with what it is scoped to and the request it came with.
#[derive(Debug, Clone)]
pub struct Idempotency {
    pub scope: String,
    pub key: String,
    pub request_hash: String,
}

impl Idempotency {
    /// Checks the header's value (1–255 printable ASCII characters) and fingerprints the body.
    pub fn new(
        header: Option<&str>,
        scope: String,
        body: &Map<String, Value>,
    ) -> Result<Option<Idempotency>> {
        let Some(key) = header else { return Ok(None) };
        if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(Error::BadRequest(
                "Idempotency-Key must be 1 to 255 printable ASCII characters".into(),
            ));
        }
        // serde_json's maps are sorted, so this text is canonical: key order and spacing do not matter.
        let canonical = Value::Object(body.clone()).to_string();
        Ok(Some(Idempotency {
            scope,
            key: key.to_string(),
            request_hash: hex::encode(Sha256::digest(canonical.as_bytes())),
        }))
    }
}

impl Idempotency {
    /// A webhook delivery's id as its key: every delivery with this id answers the first one's run,
    /// whatever its body. An id that is no valid key (too long, not printable ASCII) is keyed by its
    /// SHA-256.
    pub fn for_delivery(scope: String, delivery_id: &str) -> Idempotency {
        let valid = !delivery_id.is_empty()
            && delivery_id.len() <= 255
            && delivery_id.bytes().all(|b| (0x20..0x7f).contains(&b));
        let key =
            if valid { delivery_id.to_string() } else { hex::encode(Sha256::digest(delivery_id.as_bytes())) };
        Idempotency { scope, key, request_hash: "delivery".into() }
    }
}

/// What a trigger adds to the build and the run configuration.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub schedule_id: Option<i64>,
    pub variables: Option<Value>,
    pub event_variables: Option<Value>,
    /// Default: now.
    pub execution_date: Option<DateTime<Utc>>,
    pub idempotency: Option<Idempotency>,
    /// From the schedule's settings.
    pub allow_blocks_to_fail: bool,
    /// From the schedule: `sla` and the `timeout` settings.
    pub deadlines: Deadlines,
    pub backfill_id: Option<i64>,
    /// The schedule's run limits (`admission`).
    pub limits: Option<Limits>,
    /// Its flow control's debounce or throttle, for the trigger's key (`flow::timing`).
    pub timing: Option<Timing>,
    /// The schedule's notification targets (the build adds its pipeline version's).
    pub notify: Vec<NotifyTarget>,
    /// A time schedule's fire (SPEC §6): the schedule moved past this run's execution date and the
    /// version it was read at, written in the run's transaction with the claim of that fire time.
    pub fire: Option<(Schedule, u64)>,
    /// A replay: the run it replays.
    pub replay_of: Option<Uuid>,
    /// A replay's blocks that are not run again: each named block starts `completed` with this block
    /// run's metrics and times (attempts 0: nothing is called).
    pub reuse: Vec<BlockRun>,
}

impl RunOptions {
    /// What a run of `schedule` takes from it: its id, variables, `allow_blocks_to_fail`, `sla` and
    /// `timeout`.
    pub fn of_schedule(schedule: &Schedule) -> Result<RunOptions> {
        let settings = &schedule.settings;
        Ok(RunOptions {
            schedule_id: Some(schedule.id),
            variables: Some(Value::Object(schedule.variables.clone())),
            allow_blocks_to_fail: settings.allow_blocks_to_fail.unwrap_or(false),
            deadlines: Deadlines {
                sla_s: schedule.sla,
                timeout_s: settings.timeout,
                timeout_status: settings.timeout.map(|_| settings.timeout_status()).transpose()?,
            },
            limits: Limits::of(schedule, None),
            notify: settings.notifications.clone().unwrap_or_default(),
            ..RunOptions::default()
        })
    }
}

/// Sets a new run's state from its admission under the schedule's run limits: waiting (no wake time:
/// nothing polls it), skipped (created `cancelled`, its blocks too), or free to start.
/// A replay's reused blocks start `completed` (`RunOptions::reuse`).
fn apply_admission(
    run: &mut Run,
    blocks: &mut [BlockRun],
    admission: Option<&Admission>,
    reuse: &[BlockRun],
    now: DateTime<Utc>,
) {
    run.status = RunStatus::Initial;
    run.completed_at = None;
    run.slot = admission.and_then(Admission::slot);
    for b in blocks.iter_mut() {
        b.status = BlockRunStatus::Initial;
        if let Some(done) = reuse.iter().find(|r| r.block_uuid == b.block_uuid) {
            b.status = BlockRunStatus::Completed;
            b.metrics = done.metrics.clone();
            b.started_at = done.started_at;
            b.completed_at = done.completed_at;
        }
    }
    if admission == Some(&Admission::Skipped) {
        run.finish(RunStatus::Cancelled, now);
        for b in blocks.iter_mut() {
            b.status = BlockRunStatus::Cancelled;
        }
    }
    run.wake_at = crate::worker::plan::wake_at(None, run, blocks, now);
}

/// Gives a new run (and its block runs) fresh ids drawn at `now`.
fn renumber(run: &mut Run, blocks: &mut [BlockRun], now: DateTime<Utc>) {
    let id = new_int_ids(now, 1 + blocks.len());
    run.id = id;
    for (i, b) in blocks.iter_mut().enumerate() {
        b.id = block_run_id(id, i);
        b.run_id = id;
    }
}

/// What a trigger made.
#[derive(Debug, Clone)]
pub enum Started {
    /// A run: new, or the earlier one of an idempotent repeat.
    Run(RunDetail),
    /// Merged into the pending run of its key's debounce window (nothing but the window was written):
    /// that run as it stands with this trigger's payload, which it starts with unless another follows.
    Merged(RunDetail),
    /// Nothing was written: flow control decided so (`on_limit: skip`), for this reason.
    Skipped(String),
}

impl Started {
    /// The run, for callers without flow control (only `on_limit: skip` skips).
    pub fn into_run(self) -> Result<RunDetail> {
        match self {
            Started::Run(detail) | Started::Merged(detail) => Ok(detail),
            Started::Skipped(why) => {
                Err(Error::Internal(format!("a run was skipped without flow control: {why}")))
            }
        }
    }
}

/// How often a trigger decides its admission again when a concurrent trigger wrote the slots item first.
const ADMISSION_TRIES: u32 = 32;

/// A random pause of up to 5 ms times the attempt (at most 160 ms).
fn backoff(attempt: u32) -> std::time::Duration {
    let jitter = getrandom::u32().unwrap_or(0) % 5_000;
    std::time::Duration::from_micros(u64::from(jitter) * u64::from(attempt))
}

/// Writes a new run of `build` and queues it.
pub async fn start_run(app: &App, build: &Build, config: RunConfig, opts: RunOptions) -> Result<RunDetail> {
    start_or_skip(app, build, config, opts).await?.into_run()
}

/// Writes a new run of `build` and queues it — or, under flow control's `on_limit: skip`, writes
/// nothing. A run that supersedes others (`cancel_running`) cancels them once it is written.
pub async fn start_or_skip(app: &App, build: &Build, config: RunConfig, opts: RunOptions) -> Result<Started> {
    let now = app.clock.now();
    let uuid = Uuid::new_v4();
    let name = config.run_name(&build.pipeline_name, now)?;
    let mut run = Run {
        schedule_id: opts.schedule_id,
        backfill_id: opts.backfill_id,
        variables: opts.variables,
        event_variables: opts.event_variables,
        config: config.raw,
        allow_blocks_to_fail: opts.allow_blocks_to_fail,
        deadlines: opts.deadlines,
        notify: build.notifications.iter().chain(&opts.notify).cloned().collect(),
        replay_of: opts.replay_of,
        flow_key: (opts.limits.as_ref().map(|l| &l.slots))
            .or(opts.timing.as_ref().map(Timing::key))
            .and_then(|k| k.flow_key.clone()),
        ..Run::new(build, uuid, 0, name, opts.execution_date.unwrap_or(now), now)
    };
    let mut blocks: Vec<BlockRun> = build
        .blocks
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let parameters = config.parameters.get(&b.name).cloned().unwrap_or_default();
            BlockRun::new(uuid, 0, i, &b.name, parameters, now)
        })
        .collect();
    renumber(&mut run, &mut blocks, now);
    let record = opts.idempotency.map(|i| IdempotencyRecord {
        scope: i.scope,
        key: i.key,
        request_hash: i.request_hash,
        run_uuid: uuid,
        created: now,
    });
    let fire = opts.fire.as_ref().map(|(s, v)| (s, *v));
    let mut outcome = CreateOutcome::Conflict;
    let mut superseded = Vec::new();
    // Admission reads the schedule's slots item; a concurrent trigger or hand-over that wrote it first
    // makes the write fail, and admission is decided again (a fire's caller re-reads its schedule),
    // after a short random pause so that triggers racing for one slots item spread out.
    for attempt in 0..ADMISSION_TRIES {
        if attempt > 0 && (opts.limits.is_some() || opts.timing.is_some()) {
            tokio::time::sleep(backoff(attempt)).await;
        }
        let admission = match &opts.limits {
            Some(limits) => {
                let waiter = Waiter { uuid, execution_date: run.execution_date, id: run.id };
                Some(admission::admit(app, limits, waiter).await?)
            }
            None => None,
        };
        if admission == Some(Admission::Refused) {
            if let Some(earlier) = earlier_of(app, record.as_ref(), now).await? {
                outcome = CreateOutcome::Replayed(earlier);
                break;
            }
            tracing::info!(schedule_id = ?opts.schedule_id, flow_key = ?run.flow_key, "flow control: the key's slots are taken; skipped");
            return Ok(Started::Skipped(
                "flow_control: every slot of this key is taken (on_limit: skip)".into(),
            ));
        }
        run.not_before = None;
        run.debounce_open = false;
        let flow = match &opts.timing {
            None => None,
            Some(Timing::Debounce(key, d)) => {
                let current = app.store.window(key).await?;
                let read = current.as_ref().map(|v| (&v.value, v.version));
                match timing::debounce_step(read, d, run.event_variables.as_ref(), now) {
                    DebounceStep::Open { version, condition, start_at } => {
                        run.not_before = Some(start_at);
                        run.debounce_open = true;
                        Some(Store::window_put(
                            key,
                            &timing::opened(&run, start_at, now),
                            version,
                            condition,
                        )?)
                    }
                    DebounceStep::Merge { window, version, condition } => {
                        if app
                            .store
                            .merge_window(Store::window_put(key, &window, version, condition)?)
                            .await?
                        {
                            tracing::info!(run_uuid = %window.run_uuid, flow_key = ?run.flow_key, start_at = %window.start_at, "flow control: merged into the key's pending run");
                            return Ok(Started::Merged(merged(run, blocks, &window)));
                        }
                        continue; // the window closed meanwhile: the next one is this trigger's
                    }
                }
            }
            Some(Timing::Throttle(key, t)) => {
                let current = app.store.pace(key).await?;
                match timing::turn(current.as_ref().map(|v| &v.value), t, now) {
                    Turn::At { start, pace } => {
                        run.not_before = (start > now).then_some(start);
                        Some(Store::pace_put(key, &pace, current.map(|c| c.version))?)
                    }
                    Turn::Over { retry_after_s } => {
                        if let Some(earlier) = earlier_of(app, record.as_ref(), now).await? {
                            outcome = CreateOutcome::Replayed(earlier);
                            break;
                        }
                        return Err(Error::RateLimited(
                            format!("flow_control.throttle: this key's next turn is over max_delay_s away; try again in {retry_after_s} s"),
                            retry_after_s,
                        ));
                    }
                }
            }
        };
        if let Some(Admission::Supersedes(_, _, cancel)) = &admission {
            superseded.clone_from(cancel);
        }
        apply_admission(&mut run, &mut blocks, admission.as_ref(), &opts.reuse, now);
        let slots = match (&opts.limits, admission.as_ref().and_then(Admission::write)) {
            (Some(l), Some((slots, version))) => Some((&l.slots, slots, version)),
            _ => None,
        };
        let with = CreateWith { idempotency: record.as_ref(), fire, slots, flow };
        outcome = app.store.create_run_with(&mut run, &mut blocks, &with, |r, b| renumber(r, b, now)).await?;
        if outcome != CreateOutcome::Conflict || fire.is_some() {
            break;
        }
        // The slots item changed, or the run's id was taken: decide again, with a new id.
        renumber(&mut run, &mut blocks, app.clock.now());
    }
    if outcome == CreateOutcome::Conflict {
        return Err(Error::Conflict("the schedule changed meanwhile; nothing was written".into()));
    }
    if let CreateOutcome::Replayed(earlier) = outcome {
        let Some(record) = record else {
            return Err(Error::Internal("a replay without an idempotency key".into()));
        };
        if earlier.request_hash != record.request_hash {
            return Err(Error::Unprocessable(
                "Idempotency-Key was already used with a different request body".into(),
            ));
        }
        let existing = app.store.get_run(earlier.run_uuid).await?.ok_or_else(|| {
            Error::Internal(format!("idempotency record names missing run {}", earlier.run_uuid))
        })?;
        tracing::info!(run_uuid = %earlier.run_uuid, "idempotent repeat answered with the earlier run");
        return Ok(Started::Run(existing.value));
    }
    tracing::info!(run_uuid = %run.uuid, run_id = run.id, build_id = %build.id, status = run.status.as_mage(), slot = ?run.slot, "run created");
    // `cancel_running`: the runs of the key this one supersedes. Each cancel hands its slot over, which
    // admits this run; if this process dies first, this run waits for them to finish on their own.
    for uuid in superseded {
        match crate::cancel::cancel_run(app, uuid).await {
            Ok(_) => {
                tracing::info!(run_uuid = %uuid, by = %run.uuid, "flow control: run cancelled by a newer one of its key")
            }
            Err(e) => {
                tracing::info!(run_uuid = %uuid, error = %e, "flow control: a superseded run was not cancelled")
            }
        }
    }
    if run.status != RunStatus::Initial || run.slot == Some(Slot::Waiting) {
        // A run created finished (skipped under the schedule's limits) owes its `cancelled`
        // notifications now; if this send fails, its wake time brings the sweep.
        let owed = crate::worker::plan::notifications(&run, 0, now);
        if let Err(e) = crate::worker::send_all(app.queue.as_ref(), owed).await {
            tracing::warn!(run_uuid = %run.uuid, error = %e, "notification send failed; the sweep will retry it");
        }
        return Ok(Started::Run(RunDetail { run, blocks }));
    }
    // A run whose turn is later (throttle, debounce) is sent for then (SQS delays up to 15 minutes; a
    // later turn comes back early and is sent on by the worker).
    let delay =
        std::time::Duration::from_secs(run.not_before.map_or(0, |t| crate::worker::plan::secs_until(t, now)));
    let start = Message::StartRun { run_uuid: run.uuid };
    if let Err(e) = app.queue.send_delayed(&start, delay.min(crate::queue::MAX_DELAY)).await {
        tracing::error!(run_uuid = %run.uuid, error = %e, "queue send failed; the scheduler's sweep will queue the run");
    }
    Ok(Started::Run(RunDetail { run, blocks }))
}

/// The earlier trigger's record of a repeat that flow control refuses (a skip or a 429): a repeat of a
/// trigger whose run was made answers that run instead.
async fn earlier_of(
    app: &App,
    record: Option<&IdempotencyRecord>,
    now: DateTime<Utc>,
) -> Result<Option<IdempotencyRecord>> {
    match record {
        Some(r) => app.store.idempotency_record(&r.scope, &r.key, now).await,
        None => Ok(None),
    }
}

/// The pending run of a debounce window, as a trigger merged into it sees it: the run this trigger
/// would have made, under the window's run's ids, names and times, with this trigger's payload.
fn merged(mut run: Run, mut blocks: Vec<BlockRun>, w: &Window) -> RunDetail {
    run.uuid = w.run_uuid;
    run.id = w.run_id;
    run.name.clone_from(&w.name);
    run.created = w.created;
    run.updated = w.created;
    run.execution_date = w.execution_date;
    run.not_before = Some(w.start_at);
    run.debounce_open = true;
    run.status = RunStatus::Initial;
    for (i, b) in blocks.iter_mut().enumerate() {
        b.run_uuid = w.run_uuid;
        b.run_id = w.run_id;
        b.id = block_run_id(w.run_id, i);
        b.created = w.created;
        b.updated = w.created;
    }
    RunDetail { run, blocks }
}

/// Writes a new run of a schedule (its build, its settings, `opts` over them) and queues it.
pub async fn start_schedule_run(app: &App, schedule: &Schedule, opts: RunOptions) -> Result<RunDetail> {
    start_schedule_run_or_skip(app, schedule, None, opts).await?.into_run()
}

/// [`start_schedule_run`] under the schedule's flow control (the run, or nothing: [`Started`]), with the
/// build [`read_schedule`] read beside the schedule, used if it is the one the schedule runs.
pub async fn start_schedule_run_or_skip(
    app: &App,
    schedule: &Schedule,
    prefetched: Option<Prefetched>,
    opts: RunOptions,
) -> Result<Started> {
    let build = match prefetched.filter(|p| p.is_for(schedule)) {
        Some(p) => p.build,
        None => build_for_schedule(app, schedule).await?,
    };
    remember(schedule);
    let config = RunConfig::parse(Map::new(), &build)?;
    start_or_skip(app, &build, config, opts).await
}

/// The build a schedule runs: its pinned build, else the newest build of the pipeline's newest version.
pub async fn build_for_schedule(app: &App, schedule: &Schedule) -> Result<Build> {
    if let Some(id) = schedule.build_id {
        return app
            .store
            .get_build(id)
            .await?
            .ok_or_else(|| Error::Conflict(format!("the schedule's pinned build {id} no longer exists")));
    }
    newest_build(app, &schedule.pipeline_uuid).await
}

/// A build read beside its schedule, on this process's guess of which build the schedule runs.
pub struct Prefetched {
    /// The pinned build guessed (`None`: the pipeline's newest build).
    pinned: Option<Uuid>,
    build: Build,
}

impl Prefetched {
    /// Whether this is the build `schedule` runs now: the same pin, and the head of its pipeline.
    fn is_for(&self, schedule: &Schedule) -> bool {
        self.pinned == schedule.build_id
            && (self.pinned.is_some() || self.build.pipeline_name == schedule.pipeline_uuid)
    }
}

/// Of each schedule this process has started a run of: its pipeline (fixed when the schedule is made)
/// and its pinned build (changed only by an update, after which one trigger reads the build again).
static SCHEDULE_BUILDS: Remembered<i64, (String, Option<Uuid>)> = Remembered::new(10_000);

fn remember(schedule: &Schedule) {
    SCHEDULE_BUILDS.insert(schedule.id, (schedule.pipeline_uuid.clone(), schedule.build_id));
}

/// Reads schedule `id` — and, in parallel, the build it ran last time this process started one of its
/// runs (the pipeline's head item or the pinned build), so that a warm token trigger makes its two reads
/// in one round trip (SPEC §11: at most 3 round trips). The build is only a guess until
/// [`start_schedule_run_or_skip`] checks it against the schedule.
pub async fn read_schedule(app: &App, id: i64) -> Result<Option<(Versioned<Schedule>, Option<Prefetched>)>> {
    let guess = SCHEDULE_BUILDS.get(&id);
    let Some((pipeline, pinned)) = guess else {
        return Ok(app.store.get_schedule(id).await?.map(|s| (s, None)));
    };
    let build = async {
        match pinned {
            Some(build_id) => app.store.get_build(build_id).await,
            None => app.store.pipeline_head(&pipeline).await,
        }
    };
    let (schedule, build) = tokio::join!(app.store.get_schedule(id), build);
    // A failed guess is not an error: the trigger reads the right build itself.
    let prefetched = build.ok().flatten().map(|build| Prefetched { pinned, build });
    Ok(schedule?.map(|s| (s, prefetched)))
}

/// The newest build of a pipeline's newest version (one `GetItem` on the name's head item).
pub async fn newest_build(app: &App, pipeline_name: &str) -> Result<Build> {
    app.store
        .pipeline_head(pipeline_name)
        .await?
        .ok_or_else(|| Error::Conflict(format!("pipeline {pipeline_name:?} no longer exists")))
}
