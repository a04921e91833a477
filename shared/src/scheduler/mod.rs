//! The scheduler tick (SPEC §5, §6): what the `scheduler` function does each minute when EventBridge
//! invokes it, and what the embedded server does in-process on the same interval.
//!
//! Each tick first **fires the time schedules** that are due ([`fire`]), then runs the **sweep** of
//! SPEC §5 over every shard of the wake index, the backstop of the worker's invariant — *every unfinished
//! run always has a queue message on its way that will advance it, or the sweep will find it*. Every
//! unfinished run is in the wake index (`store::wake`) under a time by which a message should have looked
//! at it (`worker::plan::wake_at`; never later than the state needs, sometimes earlier, to spare index
//! writes). The sweep takes what is due from each shard of the index (one `Query` each) and reads each run
//! found: if the state shows that nothing it waited for is overdue (`worker::plan::needed_wake` is still
//! ahead: a long call's lease holds, a callback's deadline has not come), it moves the run's wake time
//! there and sends nothing. Otherwise the run is stuck — an `initial` run whose `StartRun` was never sent,
//! an attempt whose lease ran out with no re-check arriving, an accepted block whose callback deadline
//! passed unchecked, a backoff wait that was due — and the sweep claims it by moving its wake time
//! [`RESWEEP_S`] on with a conditional write (so overlapping ticks queue it once) and sends it a
//! `StartRun`, which looks at the whole run (`worker::plan::reconcile`) and writes its next wake time. If
//! that message is lost too, the run is due again after [`RESWEEP_S`].
//!
//! The same look ends runs past their `timeout` and marks runs past their SLA (`deadline`): their wake
//! time is never later than those deadlines.
//!
//! The 8 wake shards are swept in parallel on every tick, so a sweep that finds nothing costs one
//! `Query` per shard (8 a minute, about 0.5 read units each), and a stuck run or a deadline is acted on
//! within a minute of coming due.

pub mod fire;
pub mod lambda;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::domain::run::{RunDetail, Slot};
use crate::queue::Message;
use crate::store::{DueRun, Versioned, WAKE_SHARDS};
use crate::worker::plan;
use crate::{App, Error, Result};

/// How long a run the sweep queued waits before the sweep may queue it again.
pub const RESWEEP_S: i64 = 300;
/// EventBridge's interval: the `scheduler` function runs every minute.
pub const LAMBDA_INTERVAL_S: i64 = 60;

/// The tick interval of a local run (the embedded server, the local stack's feed): EventBridge's minute,
/// or `KICKOFF_TICK_INTERVAL_S` seconds; an error says what is wrong with the variable.
pub fn local_interval_s() -> std::result::Result<i64, String> {
    match std::env::var("KICKOFF_TICK_INTERVAL_S").ok().filter(|v| !v.is_empty()) {
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| format!("KICKOFF_TICK_INTERVAL_S: {v:?} is not a positive number of seconds")),
        None => Ok(LAMBDA_INTERVAL_S),
    }
}
/// Runs taken from the index per query.
const PAGE: usize = 500;
/// Queries per sweep at most; what is left waits for the shard's next turn.
const MAX_PAGES: usize = 20;
/// Claims and sends in flight at once.
const PARALLEL: usize = 32;

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TickReport {
    pub fire: fire::FireReport,
    /// The sweep of every wake shard, added up.
    pub sweep: SweepReport,
}

/// What the sweep of one wake shard did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SweepReport {
    /// The wake shard swept.
    pub shard: u8,
    /// Runs found due in the index.
    pub due: usize,
    /// Of those, runs that were not stuck (a message is still to come): their wake time was moved.
    pub rescheduled: usize,
    /// Stuck runs this tick claimed and queued (others were claimed by an overlapping tick, or moved on).
    pub queued: usize,
    /// Runs ended because they passed their `timeout`.
    pub timed_out: usize,
    /// Runs marked `passed_sla`.
    pub passed_sla: usize,
}

/// One tick. `tick_time` is the scheduled time EventBridge reports (or the embedded server's); what is
/// due is decided by the app's clock.
pub async fn tick(app: &App, tick_time: DateTime<Utc>) -> Result<TickReport> {
    tracing::debug!(%tick_time, "tick");
    let fired = fire::fire_due(app, app.clock.now()).await?;
    let mut shards = JoinSet::new();
    for shard in 0..WAKE_SHARDS {
        let app = app.clone();
        shards.spawn(async move { sweep(&app, shard).await });
    }
    let mut total = SweepReport::default();
    while let Some(done) = shards.join_next().await {
        let r = done.map_err(Error::internal)??;
        total.due += r.due;
        total.rescheduled += r.rescheduled;
        total.queued += r.queued;
        total.timed_out += r.timed_out;
        total.passed_sla += r.passed_sla;
    }
    Ok(TickReport { fire: fired, sweep: total })
}

/// Queues the runs of one wake shard that are due now, each once however many sweeps overlap.
pub async fn sweep(app: &App, shard: u8) -> Result<SweepReport> {
    let mut report = SweepReport { shard, ..SweepReport::default() };
    let limit = Arc::new(Semaphore::new(PARALLEL));
    for _ in 0..MAX_PAGES {
        let now = app.clock.now();
        let due = app.store.due_runs(shard, now, PAGE).await?;
        let found = due.len();
        report.due += found;
        let mut tasks = JoinSet::new();
        for run in due {
            let (app, limit) = (app.clone(), limit.clone());
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await.map_err(Error::internal)?;
                look(&app, &run, now).await
            });
        }
        while let Some(done) = tasks.join_next().await {
            match done.map_err(Error::internal)? {
                Ok(Look::Queued) => report.queued += 1,
                Ok(Look::Rescheduled) => report.rescheduled += 1,
                Ok(Look::TimedOut) => report.timed_out += 1,
                Ok(Look::PassedSla) => report.passed_sla += 1,
                Ok(Look::Passed) => {}
                Err(e) => tracing::error!(error = %e, "sweep: a run could not be looked at; it stays due"),
            }
        }
        if found < PAGE {
            break;
        }
    }
    if report.due > 0 {
        let (due, rescheduled, queued) = (report.due, report.rescheduled, report.queued);
        tracing::info!(shard, due, rescheduled, queued, "sweep done");
    }
    Ok(report)
}

/// What the sweep did with one run it found due.
enum Look {
    /// Stuck: claimed and sent a `StartRun`.
    Queued,
    /// A message is still to come: its wake time was moved to when one is overdue.
    Rescheduled,
    /// Another sweep, or the run's own progress, moved it first (or it has gone).
    Passed,
    /// Past its `timeout`: ended with its `timeout_status`.
    TimedOut,
    /// Past its SLA: marked `passed_sla`.
    PassedSla,
}

/// Reads one due run: ends it if past its time-out, marks it if past its SLA, and queues it if it is
/// stuck (see the module's docs).
async fn look(app: &App, due: &DueRun, now: DateTime<Utc>) -> Result<Look> {
    let Some(record) = app.store.get_run(due.uuid).await? else { return Ok(Look::Passed) };
    let (version, RunDetail { run: value, blocks }) = (record.version, record.value);
    let run = Versioned { value, version };
    if run.value.status.is_finished() {
        // Finished with its slot under the schedule's run limits not handed over (its worker died).
        if run.value.slot.is_some_and(|s| s != Slot::Released) {
            crate::admission::release(app, due.uuid).await?;
        }
        // Finished with a notification owed and no message looking at it: a StartRun sends it.
        if let Some(due_at) = run.value.notifications.iter().filter_map(|n| n.due()).min() {
            let resweep = now + Duration::seconds(RESWEEP_S);
            if crate::domain::bounds::plus_secs(due_at, plan::GRACE_S) > now {
                let needed = plan::message_due(&run.value, &[]).unwrap_or(resweep);
                app.store.claim_due_run(due, needed).await?;
                return Ok(Look::Rescheduled);
            }
            if app.store.claim_due_run(due, resweep).await? {
                tracing::warn!(run_uuid = %due.uuid, "sweep: a notification no message looked at in time; queueing the run");
                app.queue.send(&Message::StartRun { run_uuid: due.uuid }).await?;
            }
        }
        return Ok(Look::Queued);
    }
    if run.value.timeout_deadline().is_some_and(|t| t <= now) && !run.value.status.is_finished() {
        let ended = crate::cancel::time_out(app, due.uuid, now).await?;
        return Ok(if ended { Look::TimedOut } else { Look::Passed });
    }
    if run.value.sla_deadline().is_some_and(|t| t <= now) && !run.value.status.is_finished() {
        // The write moves the run's wake time too (to what the state needs next).
        let mut marked = run.value.clone();
        marked.mark_sla_missed(now);
        marked.wake_at = plan::wake_at(None, &marked, &blocks, now);
        let owed = plan::notifications(&marked, run.value.notifications.len(), now);
        let marked = Versioned { value: RunDetail { run: marked, blocks }, version };
        let done = app.store.update_run(&marked, run.value.status).await?;
        if done {
            // Its sla_missed notifications; a lost send leaves them to the next sweep (their wake time).
            crate::worker::send_all(app.queue.as_ref(), owed).await?;
        }
        return Ok(if done { Look::PassedSla } else { Look::Passed });
    }
    let Some(message) = plan::message_due(&run.value, &blocks) else { return Ok(Look::Passed) };
    let needed = plan::needed_wake(&run.value, &blocks).unwrap_or(message);
    if message > now {
        let moved = app.store.claim_due_run(due, needed).await?;
        return Ok(if moved { Look::Rescheduled } else { Look::Passed });
    }
    // Looked at again after RESWEEP_S if that StartRun is lost too, or at its next deadline if sooner.
    let resweep = now + Duration::seconds(RESWEEP_S);
    let again = run.value.next_deadline().map_or(resweep, |d| d.min(resweep));
    if !app.store.claim_due_run(due, again).await? {
        return Ok(Look::Passed);
    }
    tracing::warn!(run_uuid = %due.uuid, wake = %due.wake, "sweep: no message looked at the run in time; queueing it");
    app.queue.send(&Message::StartRun { run_uuid: due.uuid }).await?;
    Ok(Look::Queued)
}

/// The embedded server's tick: every `interval_s` seconds, on the multiples of the interval, until
/// the task is dropped.
pub async fn run_in_process(app: App, interval_s: i64) {
    let interval = interval_s.max(1);
    loop {
        let now = app.clock.now();
        let next = (now.timestamp().div_euclid(interval) + 1) * interval;
        let wait_ms = (next * 1000 - now.timestamp_millis()).max(0) as u64;
        tokio::time::sleep(std::time::Duration::from_millis(wait_ms)).await;
        let at = DateTime::<Utc>::from_timestamp(next, 0).unwrap_or_else(|| app.clock.now());
        if let Err(e) = tick(&app, at).await {
            tracing::error!(error = %e, "scheduler tick failed");
        }
    }
}
