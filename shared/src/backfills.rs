//! Starting and cancelling backfills, and the status they show (SPEC §6; routes in
//! `http::mage::backfills`).
//!
//! Starting writes one run per interval date, oldest first, each as a trigger writes a run (its build:
//! the pinned one of the backfill's schedule, else the pipeline's newest), with `backfill_id`, that
//! `execution_date`, the backfill's variables over the schedule's, and the schedule's settings and run
//! limits if it has a schedule. The backfill is marked `running` first; then each date whose run does
//! not exist yet (read from the backfill's run view) is made, so a start that died half-way is finished
//! by starting it again, and never makes a date twice. Cancelling marks it `cancelled` and cancels each
//! unfinished run.

use serde_json::Value;

use crate::domain::backfill::{Backfill, BackfillStatus};
use crate::domain::run_config::RunConfig;
use crate::store::{RunView, Versioned};
use crate::trigger::{build_for_schedule, newest_build, start_run, RunOptions};
use crate::{App, Error, Result};

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

/// Starts (or finishes starting) a backfill: its runs, one per date.
pub async fn start(app: &App, current: Versioned<Backfill>) -> Result<Backfill> {
    let mut b = current.value.clone();
    if matches!(b.status, BackfillStatus::Cancelled) {
        return Err(Error::Conflict("the backfill was cancelled".into()));
    }
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
    if b.status == BackfillStatus::Initial {
        b.status = BackfillStatus::Running;
        b.started_at = Some(app.clock.now());
        b.updated = app.clock.now();
        if !app.store.update_backfill(&b, current.version).await? {
            return Err(Error::Conflict("the backfill changed meanwhile; read it and try again".into()));
        }
    }
    let made: std::collections::HashSet<_> = app
        .store
        .run_entries(&RunView::Backfill(b.id))
        .await?
        .into_iter()
        .map(|e| e.execution_date)
        .collect();
    for date in b.dates()?.into_iter().filter(|d| !made.contains(d)) {
        let base = match &schedule {
            Some(s) => RunOptions::of_schedule(s)?,
            None => RunOptions::default(),
        };
        let mut variables = match base.variables.clone() {
            Some(Value::Object(v)) => v,
            _ => serde_json::Map::new(),
        };
        variables.extend(b.variables.clone());
        let opts = RunOptions {
            variables: Some(Value::Object(variables)),
            execution_date: Some(date),
            backfill_id: Some(b.id),
            ..base
        };
        start_run(app, &build, RunConfig::parse(serde_json::Map::new(), &build)?, opts).await?;
    }
    tracing::info!(backfill_id = b.id, "backfill started");
    Ok(b)
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
