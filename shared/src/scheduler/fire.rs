//! Firing time schedules on the tick (SPEC §6).
//!
//! An active `time` schedule keeps its next fire time in the fire index (`store::schedules`): each tick
//! queries the index's 8 shards for schedules due by now (one `Query` each) and fires them, up to
//! [`PARALLEL`] schedules at once. Firing fire time `T` of a schedule is **one transaction**: the run
//! (execution date `T`, its block runs, list entries), the claim `(schedule, T)` that can exist once,
//! and the schedule moved to its next fire time — conditioned on the version the tick read. So
//! overlapping ticks, a retried tick or a tick that dies half-way make exactly one run for `T`: a loser
//! writes nothing and reads the schedule again; a tick that died leaves the schedule due, and the next
//! tick fires it. Then the run's `StartRun` is sent (a lost send is the sweep's, as for every trigger).
//!
//! Rules:
//! - **Catch-up.** A tick that comes late fires every fire time it missed, oldest first, each once with
//!   its own execution date — but at most the last [`MAX_CATCH_UP`] of them; older ones are skipped
//!   (logged). A tick 7 minutes late for an every-minute cron makes the 7 runs it missed; a daily
//!   schedule after a 3-hour outage makes its one run.
//! - **Re-enabling** recomputes the next fire time from now (`Schedule::apply`): the intervals missed
//!   while inactive are not replayed, unless `create_initial_pipeline_run`, which fires the one interval
//!   under way at once.
//! - **`@once`** fires at `start_time` (or at once, if that has passed or is not set) and goes
//!   `inactive` in the same transaction.
//! - A schedule whose pipeline is gone is moved past the fire time without a run (logged), so it never
//!   blocks the index.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::domain::timetable::Timetable;
use crate::domain::{ScheduleStatus, ScheduleType};
use crate::store::WAKE_SHARDS;
use serde_json::Map;

use crate::domain::run_config::RunConfig;
use crate::trigger::{build_for_schedule, start_run, RunOptions};
use crate::{App, Error, Result};

/// The most missed fire times one schedule catches up on at once.
pub const MAX_CATCH_UP: usize = 10;
/// Schedules taken from one index shard per query.
const PAGE: usize = 500;
/// Queries per shard per tick at most (what is left is due at the next tick).
const MAX_PAGES: usize = 40;
/// Schedules fired at once.
pub const PARALLEL: usize = 64;

/// What firing did on one tick.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FireReport {
    /// Schedules found due in the index.
    pub due: usize,
    /// Runs this tick made (others were made by an overlapping tick).
    pub runs: usize,
    /// Missed fire times skipped by the catch-up rule.
    pub skipped: usize,
}

/// Fires every schedule due by `now`.
pub async fn fire_due(app: &App, now: DateTime<Utc>) -> Result<FireReport> {
    let limit = Arc::new(Semaphore::new(PARALLEL));
    let mut shards = JoinSet::new();
    for shard in 0..WAKE_SHARDS {
        let (app, limit) = (app.clone(), limit.clone());
        shards.spawn(async move { fire_shard(&app, shard, now, limit).await });
    }
    let mut report = FireReport::default();
    while let Some(done) = shards.join_next().await {
        let r = done.map_err(Error::internal)??;
        report.due += r.due;
        report.runs += r.runs;
        report.skipped += r.skipped;
    }
    if report.due > 0 {
        let FireReport { due, runs, skipped } = report;
        tracing::info!(due, runs, skipped, "time schedules fired");
    }
    Ok(report)
}

async fn fire_shard(app: &App, shard: u8, now: DateTime<Utc>, limit: Arc<Semaphore>) -> Result<FireReport> {
    let mut report = FireReport::default();
    for _ in 0..MAX_PAGES {
        let due = app.store.due_schedules(shard, now, PAGE).await?;
        let found = due.len();
        report.due += found;
        let mut tasks = JoinSet::new();
        for id in due {
            let (app, limit) = (app.clone(), limit.clone());
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await.map_err(Error::internal)?;
                fire_schedule(&app, id, now).await
            });
        }
        let mut progressed = false;
        while let Some(done) = tasks.join_next().await {
            match done.map_err(Error::internal)? {
                Ok((runs, skipped)) => {
                    progressed = true;
                    report.runs += runs;
                    report.skipped += skipped;
                }
                Err(e) => tracing::error!(error = %e, "a schedule could not be fired; it stays due"),
            }
        }
        if found < PAGE || !progressed {
            break;
        }
    }
    Ok(report)
}

/// Fires every fire time of schedule `id` that is due by `now` (catch-up rule in the module's docs):
/// the runs made and the fire times skipped.
pub async fn fire_schedule(app: &App, id: i64, now: DateTime<Utc>) -> Result<(usize, usize)> {
    let (mut runs, mut skipped) = (0, 0);
    // Each round fires one time or loses one race; bounded so that a schedule changing under us
    // cannot hold the tick.
    for _ in 0..MAX_CATCH_UP * 2 + 4 {
        let Some(current) = app.store.get_schedule(id).await? else { return Ok((runs, skipped)) };
        let schedule = &current.value;
        let Some(mut at) = schedule.next_run_at.filter(|at| *at <= now) else { return Ok((runs, skipped)) };
        if schedule.status != ScheduleStatus::Active || schedule.schedule_type != ScheduleType::Time {
            return Ok((runs, skipped));
        }
        let Some(timetable) = schedule.timetable()? else { return Ok((runs, skipped)) };
        let (resume, skip) = catch_up(&timetable, at, now);
        if skip > 0 {
            tracing::warn!(schedule_id = id, skipped = skip, "late tick: older missed fire times skipped");
            skipped += skip;
            at = resume;
        }
        let mut advanced = schedule.clone();
        advanced.fired(at, app.clock.now())?;
        let opts = RunOptions {
            execution_date: Some(at),
            fire: Some((advanced.clone(), current.version)),
            ..RunOptions::of_schedule(schedule)?
        };
        let build = match build_for_schedule(app, schedule).await {
            Ok(build) => build,
            Err(Error::Conflict(why)) => {
                tracing::error!(schedule_id = id, error = %why, execution_date = %at, "schedule cannot fire; moved past this fire time");
                app.store.update_schedule(&advanced, current.version).await?;
                continue;
            }
            Err(e) => return Err(e),
        };
        match start_run(app, &build, RunConfig::parse(Map::new(), &build)?, opts).await {
            Ok(detail) => {
                runs += 1;
                tracing::info!(schedule_id = id, run_id = detail.run.id, execution_date = %at, "schedule fired");
            }
            Err(Error::Conflict(_)) => {
                // Lost a race: the next round reads the schedule again. If the fire time has its run
                // already (a re-enabled schedule's initial run, say), move the schedule past it.
                if app.store.fired_run(id, at).await?.is_some() {
                    app.store.update_schedule(&advanced, current.version).await?;
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok((runs, skipped))
}

/// Where a schedule whose next fire time `first` has passed resumes: `first` itself, or, when more than
/// [`MAX_CATCH_UP`] fire times lie between `first` and `now`, the oldest of the last `MAX_CATCH_UP` —
/// with the number of fire times skipped before it.
fn catch_up(timetable: &Timetable, first: DateTime<Utc>, now: DateTime<Utc>) -> (DateTime<Utc>, usize) {
    let mut oldest = now;
    for i in 0..MAX_CATCH_UP {
        match timetable.previous(oldest, i == 0) {
            Some(p) if p > first => oldest = p,
            _ => return (first, 0),
        }
    }
    // MAX_CATCH_UP fire times after `first`: those in [first, oldest) are skipped (counted, bounded).
    let (mut skipped, mut t) = (0, Some(first));
    while let Some(at) = t.filter(|at| *at < oldest && skipped < 1_000_000) {
        skipped += 1;
        t = timetable.next(at, false);
    }
    (oldest, skipped)
}
