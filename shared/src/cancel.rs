//! Cancelling a run, for both dialects (ZenML `POST /runs/{id}/stop`, Mage `PUT /pipeline_runs/{id}`
//! with `status: cancelled`): the run becomes `cancelled` and its blocks not yet started do too, in one
//! conditional transaction. A running block keeps running; its result is recorded but changes nothing.

use uuid::Uuid;

use crate::domain::run::RunDetail;
use crate::domain::{BlockRunStatus, RunStatus};
use crate::store::Versioned;
use crate::{App, Error, Result};

/// Cancels an unfinished run; 409 if it has finished, 404 if there is none.
pub async fn cancel_run(app: &App, uuid: Uuid) -> Result<RunDetail> {
    for _ in 0..5 {
        let (current, blocks) = app
            .store
            .run_state(uuid)
            .await?
            .ok_or_else(|| Error::NotFound(format!("No run with id {uuid}")))?;
        let status = current.value.status;
        if status.is_finished() {
            return Err(Error::Conflict(format!("the run is {} and cannot be cancelled", status.as_mage())));
        }
        let now = app.clock.now();
        let mut run = current.value;
        run.status = RunStatus::Cancelled;
        run.updated = now;
        let mut all = Vec::with_capacity(blocks.len());
        let mut changed = Vec::new();
        for (i, mut b) in blocks {
            if matches!(b.value.status, BlockRunStatus::Initial | BlockRunStatus::Queued) {
                b.value.status = BlockRunStatus::Cancelled;
                b.value.updated = now;
                changed.push((i, b.clone()));
            }
            all.push(b.value);
        }
        let run = Versioned { value: run, version: current.version };
        if app.store.update_run_and_blocks(&run, true, &changed).await? {
            tracing::info!(run_uuid = %uuid, "run cancelled");
            return Ok(RunDetail { run: run.value, blocks: all });
        }
    }
    Err(Error::Conflict("the run is changing; try again".into()))
}
