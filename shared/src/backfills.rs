//! Starting and cancelling backfills, and the status they show (SPEC §6; routes in
//! `http::mage::backfills`).
//!
//! Starting writes one run per interval date, oldest first, each as a trigger writes a run (its build:
//! the pinned one of the backfill's schedule, else the pipeline's newest), with `backfill_id`, that
//! `execution_date`, the backfill's variables over the schedule's, and the schedule's settings and run
//! limits if it has a schedule. The backfill is marked `running` first; then its dates are written in
//! pages of [`PAGE`]: the start writes the first page itself and queues a `StartBackfill` message for
//! the next, which the worker writes and queues the one after — so a long backfill is never written in
//! one function call.
//!
//! Each date is claimed once: its run is written with an idempotency record keyed by the backfill and
//! the date (scope `backfill:<id>`, in the run's own transaction), so two overlapping starts, or a page
//! delivered twice, never make a date's run twice; a date whose run is already in the backfill's run
//! view is skipped without a write. Crash points: a start that dies before it answered is retried by
//! its caller and finds what was written; a page that dies is delivered again by the queue; one that
//! dies after writing its dates but before queueing the next is delivered again too and, finding its
//! dates made, queues the next. Cancelling marks it `cancelled` (pages still in flight stop) and cancels
//! each unfinished run.

use serde_json::Value;

use crate::domain::backfill::{Backfill, BackfillStatus};
use crate::domain::run_config::RunConfig;
use crate::queue::Message;
use crate::store::{RunView, Versioned};
use crate::trigger::{build_for_schedule, newest_build, start_run, Idempotency, RunOptions};
use crate::{App, Error, Result};

/// Dates one call writes: a page takes a few seconds of a function's time.
pub const PAGE: usize = 100;

/// The backfill with the status its runs give it (one `Query` of its run view once started).
pub async fn with_status(app: &App, mut b: Backfill) -> Result<(Backfill, usize)> {
    if b.status == BackfillStatus::Initial {
        return Ok((b, 0));
    }
    let entries = app.store.run_entries(&RunView::Backfill(b.id)).await?;
    let statuses: Vec<_> = entries.iter().map(|e| e.status).collect();
    b.status = b.status_from(&statuses);
    Ok((b, entries.len()))
}

/// Starts (or finishes starting) a backfill: marks it running, writes its first page of runs and
/// queues the rest.
pub async fn start(app: &App, current: Versioned<Backfill>) -> Result<Backfill> {
    let mut b = current.value.clone();
    if matches!(b.status, BackfillStatus::Cancelled) {
        return Err(Error::Conflict("the backfill was cancelled".into()));
    }
    if b.status == BackfillStatus::Initial {
        b.status = BackfillStatus::Running;
        b.started_at = Some(app.clock.now());
        b.updated = app.clock.now();
        if !app.store.update_backfill(&b, current.version).await? {
            return Err(Error::Conflict("the backfill changed meanwhile; read it and try again".into()));
        }
    }
    write_page(app, &b, 0).await?;
    tracing::info!(backfill_id = b.id, "backfill started");
    Ok(b)
}

/// A `StartBackfill` message: the page of a running backfill's dates from `from` (a backfill deleted,
/// cancelled or not started meanwhile makes nothing).
pub async fn page(app: &App, backfill_id: i64, from: usize) -> Result<()> {
    let Some(current) = app.store.get_backfill(backfill_id).await? else { return Ok(()) };
    if current.value.status != BackfillStatus::Running {
        return Ok(());
    }
    write_page(app, &current.value, from).await
}

/// Writes the runs of dates `from..from + PAGE` that are not made yet, then queues the next page.
async fn write_page(app: &App, b: &Backfill, from: usize) -> Result<()> {
    let schedule = match b.pipeline_schedule_id {
        Some(id) => Some(
            app.store
                .get_schedule(id)
                .await?
                .ok_or_else(|| {
                    Error::Conflict(format!("the backfill's pipeline schedule {id} no longer exists"))
                })?
                .value,
        ),
        None => None,
    };
    let build = match &schedule {
        Some(s) => build_for_schedule(app, s).await?,
        None => newest_build(app, &b.pipeline_uuid).await?,
    };
    let dates = b.dates()?;
    let made: std::collections::HashSet<_> = app
        .store
        .run_entries(&RunView::Backfill(b.id))
        .await?
        .into_iter()
        .map(|e| e.execution_date)
        .collect();
    let end = from.saturating_add(PAGE).min(dates.len());
    for date in dates.get(from..end).unwrap_or_default().iter().filter(|d| !made.contains(*d)) {
        let base = match &schedule {
            Some(s) => RunOptions::of_schedule(s)?,
            None => RunOptions::default(),
        };
        let mut variables = match base.variables.clone() {
            Some(Value::Object(v)) => v,
            _ => serde_json::Map::new(),
        };
        variables.extend(b.variables.clone());
        let claim = Idempotency::for_delivery(format!("backfill:{}", b.id), &date.to_rfc3339());
        let opts = RunOptions {
            variables: Some(Value::Object(variables)),
            execution_date: Some(*date),
            backfill_id: Some(b.id),
            idempotency: Some(claim),
            ..base
        };
        start_run(app, &build, RunConfig::parse(serde_json::Map::new(), &build)?, opts).await?;
    }
    if end < dates.len() {
        app.queue.send(&Message::StartBackfill { backfill_id: b.id, from: end }).await?;
    }
    Ok(())
}

/// Cancels a backfill and its unfinished runs.
pub async fn cancel(app: &App, current: Versioned<Backfill>) -> Result<Backfill> {
    let mut b = current.value.clone();
    if b.status != BackfillStatus::Cancelled {
        b.status = BackfillStatus::Cancelled;
        b.updated = app.clock.now();
        if !app.store.update_backfill(&b, current.version).await? {
            return Err(Error::Conflict("the backfill changed meanwhile; read it and try again".into()));
        }
    }
    for e in app.store.run_entries(&RunView::Backfill(b.id)).await? {
        if !e.status.is_finished() {
            match crate::cancel::cancel_run(app, e.uuid).await {
                Ok(_) | Err(Error::Conflict(_)) => {} // finished meanwhile
                Err(err) => return Err(err),
            }
        }
    }
    tracing::info!(backfill_id = b.id, "backfill cancelled");
    Ok(b)
}
