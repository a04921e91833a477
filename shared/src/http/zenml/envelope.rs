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
                // What the client checks before it runs a pipeline by name: a stack with nothing local.
                "stack": stack(false),
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
    run_of(d, hydrate, None)
}

/// A run; a replay's `original` (the run it replays, which the caller read) goes in
/// `resources.original_run` when hydrated.
pub fn run_of(d: &RunDetail, hydrate: bool, original: Option<&crate::domain::Run>) -> Value {
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
            "original_run_id": r.replay_of,
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
                "original_run": original.map(|o| run(&RunDetail { run: o.clone(), blocks: Vec::new() }, false)),
            })
        } else {
            Value::Null
        },
    })
}

/// The server's id in `GET /api/v1/info`.
pub const SERVER_ID: uuid::Uuid = uuid::Uuid::from_u128(0x6b69636b_6f66_4000_8000_000000000000);
/// The one user every API key acts as (a service account).
pub const USER_ID: uuid::Uuid = uuid::Uuid::from_u128(0x6b69636b_6f66_4000_8000_000000000002);
/// The one stack every snapshot runs on.
pub const STACK_ID: uuid::Uuid = uuid::Uuid::from_u128(0x6b69636b_6f66_4000_8000_000000000003);
pub const PROJECT_NAME: &str = "default";
pub const STACK_NAME: &str = "default";
pub const USER_NAME: &str = "kickoff";
/// `created` and `updated` of the fixed entities (project, user, stack).
pub const FIXED_TIME: DateTime<Utc> = match DateTime::from_timestamp(1_704_067_200, 0) {
    Some(t) => t,
    None => panic!("a valid time"),
};

fn fixed_time() -> String {
    time(FIXED_TIME)
}

/// The one project (ZenML's `default`).
pub fn project(hydrate: bool) -> Value {
    json!({
        "id": PROJECT_ID,
        "name": PROJECT_NAME,
        "body": { "created": fixed_time(), "updated": fixed_time(), "display_name": "Default" },
        "metadata": if hydrate { json!({ "description": "Kickoff's one project" }) } else { Value::Null },
        "resources": if hydrate { json!({}) } else { Value::Null },
    })
}

/// The one user: a service account, not an admin.
pub fn user(hydrate: bool) -> Value {
    json!({
        "id": USER_ID,
        "name": USER_NAME,
        "body": {
            "created": fixed_time(),
            "updated": fixed_time(),
            "active": true,
            "activation_token": Value::Null,
            "full_name": "Kickoff API key",
            "email_opted_in": false,
            "is_service_account": true,
            "is_admin": false,
            "default_project_id": PROJECT_ID,
            "avatar_url": Value::Null,
        },
        "metadata": if hydrate { json!({ "email": Value::Null, "external_user_id": Value::Null, "user_metadata": {} }) } else { Value::Null },
        "resources": if hydrate { json!({}) } else { Value::Null },
    })
}

/// The one stack, `default`: Kickoff's worker is its orchestrator, so it lists no components.
pub fn stack(hydrate: bool) -> Value {
    json!({
        "id": STACK_ID,
        "name": STACK_NAME,
        "body": { "created": fixed_time(), "updated": fixed_time(), "user_id": Value::Null, "project_id": Value::Null },
        "metadata": if hydrate {
            json!({ "components": {}, "description": "Kickoff's worker runs every block", "labels": Value::Null })
        } else {
            Value::Null
        },
        "resources": if hydrate { json!({ "tags": [] }) } else { Value::Null },
    })
}

/// A snapshot's name: ZenML snapshots are named, Kickoff builds are not, so each is named after its
/// pipeline version and the first 8 hex digits of its id (fixed for the build, never reused).
pub fn snapshot_name(b: &Build) -> String {
    format!("{}-{}-{}", b.pipeline_name, b.pipeline_version, &b.id.simple().to_string()[..8])
}

/// The run configuration a snapshot takes, as ZenML's `config_template`: each step's parameters with
/// their defaults.
fn config_template(b: &Build) -> Value {
    let steps: serde_json::Map<String, Value> = b
        .blocks
        .iter()
        .filter(|blk| !blk.parameters.is_empty())
        .map(|blk| (blk.name.clone(), json!({ "parameters": blk.parameters })))
        .collect();
    json!({ "steps": steps })
}

/// A build as a ZenML pipeline snapshot (its `id` is the build's). Hydrated, `resources` carries the
/// pipeline (`pipeline`, which the caller read) and the build and stack, not hydrated.
pub fn snapshot(b: &Build, hydrate: Option<&Pipeline>) -> Value {
    json!({
        "id": b.id,
        "name": snapshot_name(b),
        "body": {
            "created": time(b.created),
            "updated": time(b.updated),
            "user_id": Value::Null,
            "project_id": PROJECT_ID,
            "runnable": true,
            "deployable": false,
            "is_dynamic": false,
            "pipeline_id": b.pipeline_id,
        },
        "metadata": if hydrate.is_some() {
            json!({
                "description": Value::Null,
                "source_code": Value::Null,
                "run_name_template": crate::domain::run_config::DEFAULT_RUN_NAME,
                "pipeline_configuration": { "name": b.pipeline_name },
                "step_configurations": {},
                "client_environment": {},
                "client_version": Value::Null,
                "server_version": super::connect::ZENML_VERSION,
                "pipeline_version_hash": b.checksum,
                "pipeline_spec": Value::Null,
                "code_path": Value::Null,
                "template_id": Value::Null,
                "source_snapshot_id": Value::Null,
                "config_template": config_template(b),
                "config_schema": Value::Null,
            })
        } else {
            Value::Null
        },
        "resources": match hydrate {
            Some(p) => json!({
                "user": Value::Null,
                "pipeline": pipeline(p, false),
                "stack": stack(false),
                "build": build(b, false),
                "schedule": Value::Null,
                "code_reference": Value::Null,
                "deployment": Value::Null,
                "tags": [],
                "latest_run_id": Value::Null,
                "latest_run_status": Value::Null,
                "latest_run_user": Value::Null,
                "visualizations": [],
            }),
            None => Value::Null,
        },
    })
}
