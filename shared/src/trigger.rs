//! Starting a run, for every trigger of both dialects: write the run and its block runs (`initial`) in
//! one transaction, then send one queue message. Nothing executes here.
//!
//! If the queue send fails after the write, the trigger still answers with the run: the scheduler tick
//! re-queues runs left `initial`, so an answered trigger is never lost.

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::clock::{block_run_id, new_run_id};
use crate::domain::run::RunDetail;
use crate::domain::run_config::RunConfig;
use crate::domain::{BlockRun, BlockRunStatus, Build, Run, RunStatus};
use crate::queue::Message;
use crate::{App, Result};

/// What a trigger adds to the build and the run configuration.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub schedule_id: Option<i64>,
    pub variables: Option<Value>,
    pub event_variables: Option<Value>,
    /// Default: now.
    pub execution_date: Option<DateTime<Utc>>,
}

fn renumber(run: &mut Run, blocks: &mut [BlockRun], id: i64) {
    run.id = id;
    for (i, b) in blocks.iter_mut().enumerate() {
        b.id = block_run_id(id, i);
        b.run_id = id;
    }
}

/// Writes a new run of `build` and queues it.
pub async fn start_run(
    app: &App,
    build: &Build,
    config: RunConfig,
    opts: RunOptions,
) -> Result<RunDetail> {
    let now = app.clock.now();
    let uuid = Uuid::new_v4();
    let mut run = Run {
        uuid,
        id: 0,
        name: config.run_name(&build.pipeline_name, now),
        build_id: build.id,
        pipeline_id: build.pipeline_id,
        pipeline_name: build.pipeline_name.clone(),
        pipeline_version: build.pipeline_version.clone(),
        schedule_id: opts.schedule_id,
        backfill_id: None,
        status: RunStatus::Initial,
        execution_date: opts.execution_date.unwrap_or(now),
        variables: opts.variables,
        event_variables: opts.event_variables,
        config: config.raw,
        passed_sla: false,
        metrics: None,
        started_at: None,
        completed_at: None,
        created: now,
        updated: now,
    };
    let mut blocks: Vec<BlockRun> = build
        .blocks
        .iter()
        .map(|b| BlockRun {
            id: 0,
            run_id: 0,
            run_uuid: uuid,
            block_uuid: b.name.clone(),
            status: BlockRunStatus::Initial,
            attempts: 0,
            parameters: config.parameters.get(&b.name).cloned().unwrap_or_default(),
            metrics: None,
            started_at: None,
            completed_at: None,
            created: now,
            updated: now,
        })
        .collect();
    renumber(&mut run, &mut blocks, new_run_id(now));
    app.store
        .create_run(&mut run, &mut blocks, |r, b| {
            renumber(r, b, new_run_id(now))
        })
        .await?;
    tracing::info!(run_uuid = %run.uuid, run_id = run.id, build_id = %build.id, "run created");
    if let Err(e) = app
        .queue
        .send(&Message::StartRun { run_uuid: run.uuid })
        .await
    {
        tracing::error!(run_uuid = %run.uuid, error = %e, "queue send failed; the scheduler will re-queue the run");
    }
    Ok(RunDetail { run, blocks })
}
