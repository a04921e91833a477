//! Ending a run from outside the worker, in one conditional transaction of the run and the blocks that
//! change:
//! - **cancel**, for both dialects (ZenML `POST /runs/{id}/stop`, Mage `PUT /pipeline_runs/{id}` with
//!   `status: cancelled`): the run becomes `cancelled` and its blocks not yet started do too. A running
//!   block keeps running; its result is recorded but changes nothing.
//! - **time-out**, by the scheduler tick's sweep (SPEC §6): a run past its `timeout` ends with its
//!   `timeout_status`, its blocks not yet started and its running blocks `cancelled`.
//!
//! A debounced run still waiting for its window's end closes the window in the same transaction.

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use crate::domain::run::{RunDetail, Slot};
use crate::domain::{BlockRunStatus, RunStatus};
use crate::store::Versioned;
use crate::{App, Error, Result};

/// Cancels an unfinished run; 409 if it has finished, 404 if there is none.
pub async fn cancel_run(app: &App, uuid: Uuid) -> Result<RunDetail> {
    match end_run(app, uuid, None).await? {
        Ended::Now(detail) => {
            tracing::info!(run_uuid = %uuid, "run cancelled");
            Ok(detail)
        }
        Ended::Before(status) => {
            Err(Error::Conflict(format!("the run is {} and cannot be cancelled", status.as_mage())))
        }
    }
}

/// Ends a run that is past its `timeout` (as of `now`) with its `timeout_status`; `false` if it had
/// finished, has gone, or is not past its time-out after all.
pub async fn time_out(app: &App, uuid: Uuid, now: DateTime<Utc>) -> Result<bool> {
    let ended = end_run(app, uuid, Some(now)).await?;
    if let Ended::Now(d) = &ended {
        tracing::warn!(run_uuid = %uuid, status = d.run.status.as_mage(), "run timed out");
    }
    Ok(matches!(ended, Ended::Now(_)))
}

enum Ended {
    Now(RunDetail),
    Before(RunStatus),
}

/// Cancels the run (`timeout: None`), or times it out if it is past its time-out at `timeout`.
async fn end_run(app: &App, uuid: Uuid, timeout: Option<DateTime<Utc>>) -> Result<Ended> {
    for _ in 0..5 {
        let current = app
            .store
            .get_run(uuid)
            .await?
            .ok_or_else(|| Error::NotFound(format!("No run with id {uuid}")))?;
        let (version, RunDetail { mut run, blocks }) = (current.version, current.value);
        let status = run.status;
        if status.is_finished() {
            return Ok(Ended::Before(status));
        }
        let now = app.clock.now();
        let owed_from = run.notifications.len();
        let mut ending = vec![BlockRunStatus::Initial, BlockRunStatus::Queued];
        if let Some(at) = timeout {
            let Some(deadline) = run.timeout_deadline().filter(|d| *d <= at) else {
                return Ok(Ended::Before(status));
            };
            ending.push(BlockRunStatus::Running);
            let timeout_s = (deadline - run.started_at.unwrap_or(deadline)).num_seconds();
            run.metrics = Some(json!({ "error": format!("the run timed out after {timeout_s}s") }));
            run.finish(run.deadlines.timeout_status.unwrap_or(RunStatus::Failed), now);
        } else {
            run.status = RunStatus::Cancelled;
            run.updated = now;
            run.ended(now);
        }
        let mut all = blocks;
        for b in all.iter_mut().filter(|b| ending.contains(&b.status)) {
            b.status = BlockRunStatus::Cancelled;
            b.lease_until = None;
            b.callback_hash = None;
            b.callback_deadline = None;
            b.updated = now;
        }
        // A debounced run whose window is open closes it in the same write (`flow::timing`), so that
        // the key's next trigger opens a new window rather than merging into an ended run.
        let mut close = Vec::new();
        if run.debounce_open {
            if let Some((key, w)) = app.store.open_window_of(&run).await? {
                close.push(crate::store::Store::window_close_put(&key, &w)?);
            }
            run.debounce_open = false;
        }
        // Out of the wake index, unless its slot under the schedule's run limits is to be handed over.
        run.wake_at = crate::worker::plan::wake_at(None, &run, &all, now);
        let hand_over = run.slot.is_some_and(|s| s != Slot::Released);
        let owed = crate::worker::plan::notifications(&run, owed_from, now);
        let record = Versioned { value: RunDetail { run, blocks: all }, version };
        if app.store.update_run_with(&record, status, close).await? {
            // The notifications it owes now; if this send is lost, the run's wake time brings the sweep.
            if let Err(e) = crate::worker::send_all(app.queue.as_ref(), owed).await {
                tracing::warn!(run_uuid = %uuid, error = %e, "notification send failed; the sweep will retry it");
            }
            if hand_over {
                if let Err(e) = crate::admission::release(app, uuid).await {
                    tracing::warn!(run_uuid = %uuid, error = %e, "hand-over failed; the sweep will retry it");
                }
            }
            return Ok(Ended::Now(record.value));
        }
    }
    Err(Error::Conflict("the run is changing; try again".into()))
}
