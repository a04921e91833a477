//! The scheduler tick (SPEC §5, §6): what the `scheduler` function does each minute when EventBridge
//! invokes it, and what the embedded server does in-process on the same interval.
//!
//! Today the tick is the **sweep** of SPEC §5, the backstop of the worker's invariant — *every unfinished
//! run always has a queue message on its way that will advance it, or the sweep will find it*. Every
//! unfinished run is in the wake index (`store::wake`) under a time by which a message should have looked
//! at it (`worker::plan::wake_at`; never later than the state needs, sometimes earlier, to spare index
//! writes). The sweep takes what is due from one shard of the index (one `Query`) and reads each run
//! found: if the state shows that nothing it waited for is overdue (`worker::plan::needed_wake` is still
//! ahead: a long call's lease holds, a callback's deadline has not come), it moves the run's wake time
//! there and sends nothing. Otherwise the run is stuck — an `initial` run whose `StartRun` was never sent,
//! an attempt whose lease ran out with no re-check arriving, an accepted block whose callback deadline
//! passed unchecked, a backoff wait that was due — and the sweep claims it by moving its wake time
//! [`RESWEEP_S`] on with a conditional write (so overlapping ticks queue it once) and sends it a
//! `StartRun`, which looks at the whole run (`worker::plan::reconcile`) and writes its next wake time. If
//! that message is lost too, the run is due again after [`RESWEEP_S`].
//!
//! Shards are swept in turn, one per tick (`tick_time / interval mod 8`), so a sweep that finds nothing
//! costs one `Query`, and a stuck run is found at most 8 ticks after it became due.

pub mod lambda;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::queue::Message;
use crate::store::{DueRun, WAKE_SHARDS};
use crate::worker::plan;
use crate::{App, Error, Result};

/// How long a run the sweep queued waits before the sweep may queue it again.
pub const RESWEEP_S: i64 = 300;
/// EventBridge's interval: the `scheduler` function runs every minute.
pub const LAMBDA_INTERVAL_S: i64 = 60;
/// Runs taken from the index per query.
const PAGE: usize = 500;
/// Queries per sweep at most; what is left waits for the shard's next turn.
const MAX_PAGES: usize = 20;
/// Claims and sends in flight at once.
const PARALLEL: usize = 32;

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TickReport {
    /// The wake shard swept.
    pub shard: u8,
    /// Runs found due in the index.
    pub due: usize,
    /// Of those, runs that were not stuck (a message is still to come): their wake time was moved.
    pub rescheduled: usize,
    /// Stuck runs this tick claimed and queued (others were claimed by an overlapping tick, or moved on).
    pub queued: usize,
}

/// The shard a tick at `tick_time` sweeps when ticks come every `interval_s` seconds.
pub fn shard_of_tick(tick_time: DateTime<Utc>, interval_s: i64) -> u8 {
    let n = tick_time.timestamp().div_euclid(interval_s.max(1));
    u8::try_from(n.rem_euclid(i64::from(WAKE_SHARDS))).unwrap_or(0)
}

/// One tick at `tick_time` (the scheduled time EventBridge reports, or the embedded server's clock).
pub async fn tick(app: &App, tick_time: DateTime<Utc>, interval_s: i64) -> Result<TickReport> {
    sweep(app, shard_of_tick(tick_time, interval_s)).await
}

/// Queues the runs of one wake shard that are due now, each once however many sweeps overlap.
pub async fn sweep(app: &App, shard: u8) -> Result<TickReport> {
    let mut report = TickReport { shard, ..TickReport::default() };
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
}

/// Reads one due run and queues it if it is stuck (see the module's docs).
async fn look(app: &App, due: &DueRun, now: DateTime<Utc>) -> Result<Look> {
    let Some((run, blocks)) = app.store.run_state(due.uuid).await? else { return Ok(Look::Passed) };
    let blocks: Vec<_> = blocks.into_iter().map(|(_, b)| b.value).collect();
    let Some(needed) = plan::needed_wake(&run.value, &blocks) else { return Ok(Look::Passed) };
    if needed > now {
        let moved = app.store.claim_due_run(due, needed).await?;
        return Ok(if moved { Look::Rescheduled } else { Look::Passed });
    }
    if !app.store.claim_due_run(due, now + Duration::seconds(RESWEEP_S)).await? {
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
        if let Err(e) = tick(&app, at, interval).await {
            tracing::error!(error = %e, "scheduler tick failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_sweep_the_shards_in_turn() {
        let t0 = DateTime::<Utc>::from_timestamp(1_700_000_000 / 60 * 60, 0).unwrap();
        let shards: Vec<u8> = (0..16).map(|m| shard_of_tick(t0 + Duration::minutes(m), 60)).collect();
        let mut first: Vec<u8> = shards[..8].to_vec();
        first.sort();
        assert_eq!(first, (0..8).collect::<Vec<u8>>(), "8 ticks visit every shard");
        assert_eq!(shards[..8], shards[8..], "then again in the same order");
        assert_eq!(shard_of_tick(t0 + Duration::seconds(59), 60), shards[0], "a late tick keeps its minute");
        assert_eq!(shard_of_tick(t0 + Duration::seconds(3), 1), shard_of_tick(t0 + Duration::seconds(11), 1));
    }
}
