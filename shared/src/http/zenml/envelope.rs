//! ZenML's entity envelope, `{"id", "name", "body", "metadata", "resources"}`, for each resource.
//! `metadata` and `resources` are `null` unless hydrated. Times look like `2024-05-01T10:00:00.123456`
//! (UTC, no offset).
//!
//! Every answer validates against ZenML 0.98's own response models (`zenml.models`;
//! `tests/tests/zenml_models.rs`). Fields ZenML requires that Kickoff has no concept for get fixed values
//! (`docs/zenml.md`): one project ([`PROJECT_ID`]), no tags, builds that are neither local nor hold code,
//! no heartbeats.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::domain::run::RunDetail;
use crate::domain::{BlockRun, Build, Pipeline};

/// The one project every entity belongs to (ZenML scopes pipelines, builds and runs by project; Kickoff
/// has none): a fixed id, the same on every deployment.
pub const PROJECT_ID: uuid::Uuid = uuid::Uuid::from_u128(0x6b69636b_6f66_4000_8000_000000000001);

pub fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

fn opt_time(t: Option<DateTime<Utc>>) -> Value {
    t.map_or(Value::Null, |t| Value::String(time(t)))
}

pub fn pipeline(p: &Pipeline, hydrate: bool) -> Value {
    json!({
        "id": p.id,
        "name": p.name,
        "body": {
            "created": time(p.created),
            "updated": time(p.updated),
            "version": p.version,
            "project_id": PROJECT_ID,
        },
        "metadata": if hydrate { json!({ "spec": p.blocks, "description": p.description }) } else { Value::Null },
        "resources": if hydrate { json!({ "tags": [] }) } else { Value::Null },
    })
}

pub fn build(b: &Build, hydrate: bool) -> Value {
    json!({
        "id": b.id,
        "name": Value::Null,
        "body": { "created": time(b.created), "updated": time(b.updated), "project_id": PROJECT_ID },
        "metadata": if hydrate {
            json!({
                "pipeline": { "id": b.pipeline_id, "name": b.pipeline_name, "version": b.pipeline_version },
                "blocks": b.blocks,
                "images": b.images,
                "checksum": b.checksum,
                "is_local": false,
                "contains_code": false,
            })
        } else {
            Value::Null
        },
        "resources": if hydrate { json!({ "pipeline_id": b.pipeline_id }) } else { Value::Null },
    })
}

fn step(b: &BlockRun) -> Value {
    json!({
        "id": b.id,
        "name": b.block_uuid,
        "status": b.status.as_zenml(),
        "parameters": b.parameters,
        "attempts": b.attempts,
        "start_time": opt_time(b.started_at),
        "end_time": opt_time(b.completed_at),
        "metrics": b.metrics,
        "created": time(b.created),
        "updated": time(b.updated),
    })
}

/// The run's configuration as ZenML shows it: what the trigger sent, with the pipeline's `name`.
fn run_configuration(r: &crate::domain::Run) -> Value {
    let mut config = r.config.clone();
    config.entry("name").or_insert_with(|| Value::String(r.pipeline_name.clone()));
    Value::Object(config)
}

pub fn run(d: &RunDetail, hydrate: bool) -> Value {
    let r = &d.run;
    json!({
        "id": r.uuid,
        "name": r.name,
        "body": {
            "created": time(r.created),
            "updated": time(r.updated),
            "status": r.status.as_zenml(),
            "pipeline_id": r.pipeline_id,
            "build_id": r.build_id,
            "schedule_id": r.schedule_id,
            "run_id": r.id,
            "project_id": PROJECT_ID,
            "in_progress": !r.status.is_finished(),
            // ZenML numbers a pipeline's runs; Kickoff's integer run ids grow with time (SPEC §11).
            "index": r.id,
        },
        "metadata": if hydrate {
            json!({
                "config": run_configuration(r),
                "enable_heartbeat": false,
                "steps": d.blocks.iter().map(|b| (b.block_uuid.clone(), step(b))).collect::<serde_json::Map<_, _>>(),
                "execution_date": time(r.execution_date),
                "start_time": opt_time(r.started_at),
                "end_time": opt_time(r.completed_at),
                "variables": r.variables,
                "event_variables": r.event_variables,
                "pipeline_version": r.pipeline_version,
            })
        } else {
            Value::Null
        },
        "resources": if hydrate {
            json!({
                "pipeline": { "id": r.pipeline_id, "name": r.pipeline_name, "version": r.pipeline_version },
                "build": { "id": r.build_id },
                "tags": [],
            })
        } else {
            Value::Null
        },
    })
}
