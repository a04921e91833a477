//! How the Mage dialect shows schedules, runs and block runs.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::domain::backfill::Backfill;
use crate::domain::notify::{DeliveryStatus, Notification};
use crate::domain::run::RunDetail;
use crate::domain::schedule::ScheduleSettings;
use crate::domain::{BlockRun, BlockRunStatus, Schedule};

pub fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.6f+00:00").to_string()
}

fn opt_time(t: Option<DateTime<Utc>>) -> Value {
    t.map_or(Value::Null, |t| Value::String(time(t)))
}

pub fn schedule(s: &Schedule) -> Value {
    json!({
        "id": s.id,
        "name": s.name,
        "description": s.description,
        "pipeline_uuid": s.pipeline_uuid,
        "build_id": s.build_id,
        "schedule_type": s.schedule_type.as_str(),
        "schedule_interval": s.schedule_interval,
        "timezone": s.timezone,
        "start_time": opt_time(s.start_time),
        "status": s.status.as_str(),
        "variables": s.variables,
        "sla": s.sla,
        "settings": settings(&s.settings),
        "token": s.token,
        "last_enabled_at": opt_time(s.last_enabled_at),
        "next_pipeline_run_date": opt_time(s.next_run_at),
        // Mage 0.9.80 sends these; Kickoff has no event matchers, data products or schedule tags.
        "event_matchers": [],
        "global_data_product_uuid": null,
        "tags": [],
        "created_at": time(s.created),
        "updated_at": time(s.updated),
    })
}

/// A schedule's settings as answers show them: the webhook without its secrets.
fn settings(s: &ScheduleSettings) -> Value {
    let mut v = serde_json::to_value(s).unwrap_or_else(|_| json!({}));
    if let Some(w) = &s.webhook {
        v["webhook"] = w.view();
    }
    v
}

pub fn block_run(b: &BlockRun) -> Value {
    json!({
        "id": b.id,
        "block_uuid": b.block_uuid,
        "pipeline_run_id": b.run_id,
        "status": b.status.as_str(),
        "attempts": b.attempts,
        "metrics": b.metrics,
        "started_at": opt_time(b.started_at),
        "completed_at": opt_time(b.completed_at),
        "created_at": time(b.created),
        "updated_at": time(b.updated),
    })
}

/// A run with every field of Mage's pipeline run object; `schedule` is the run's schedule if it still
/// exists.
pub fn run(d: &RunDetail, schedule: Option<&Schedule>) -> Value {
    let r = &d.run;
    json!({
        "id": r.id,
        "uuid": r.uuid,
        "pipeline_uuid": r.pipeline_name,
        "pipeline_schedule_id": r.schedule_id,
        "pipeline_schedule_name": schedule.map(|s| s.name.clone()),
        "pipeline_schedule_token": schedule.map(|s| s.token.clone()),
        "pipeline_schedule_type": schedule.map(|s| s.schedule_type.as_str()),
        "backfill_id": r.backfill_id,
        "status": r.status.as_mage(),
        "execution_date": time(r.execution_date),
        "variables": r.variables.clone().unwrap_or_else(|| json!({})),
        "event_variables": r.event_variables,
        "passed_sla": r.passed_sla,
        "metrics": r.metrics,
        "started_at": opt_time(r.started_at),
        "completed_at": opt_time(r.completed_at),
        "created_at": time(r.created),
        "updated_at": time(r.updated),
        "block_runs": d.blocks.iter().map(block_run).collect::<Vec<_>>(),
        "block_runs_count": d.blocks.len(),
        "completed_block_runs_count": d.blocks.iter().filter(|b| b.status == BlockRunStatus::Completed).count(),
        // SPEC §10: each notification owed for the run's events, with its attempts.
        "notifications": r.notifications.iter().map(notification).collect::<Vec<_>>(),
        // Mage 0.9.80 sends these: Kickoff's runs are run by its own worker, as Mage's default executor
        // runs a standard (`python`) pipeline; pipelines have no tags here.
        "executor_type": "local_python",
        "pipeline_type": "python",
        "pipeline_tags": [],
    })
}

/// A notification owed for a run's event, with its attempts (the latest ten).
fn notification(n: &Notification) -> Value {
    json!({
        "event": n.event.as_str(),
        "url": n.url,
        "format": n.format,
        "status": n.status,
        "attempts": n.attempts,
        "next_attempt_at": opt_time(n.next_at.filter(|_| n.status == DeliveryStatus::Pending)),
        "history": n.history.iter().map(|a| json!({ "at": time(a.at), "result": a.result })).collect::<Vec<_>>(),
    })
}

/// A single-object answer, `{"<name>": {...}, "metadata": null}`, as Mage sends it.
pub fn one(name: &str, value: Value) -> Value {
    json!({ name: value, "metadata": null })
}

/// A backfill, with the status its runs give it and how many runs it has.
pub fn backfill(b: &Backfill, runs: usize) -> Value {
    json!({
        "id": b.id,
        "name": b.name,
        "pipeline_uuid": b.pipeline_uuid,
        "pipeline_schedule_id": b.pipeline_schedule_id,
        "start_datetime": time(b.start_datetime),
        "end_datetime": time(b.end_datetime),
        "interval_type": b.interval_type,
        "interval_units": b.interval_units,
        "variables": b.variables,
        "status": b.status.as_str(),
        "started_at": opt_time(b.started_at),
        "total_run_count": b.dates().map_or(0, |d| d.len()),
        "run_count": runs,
        "created_at": time(b.created),
        "updated_at": time(b.updated),
    })
}
