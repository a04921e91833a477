//! Pipeline runs: `GET /api/pipeline_schedules/{id}/pipeline_runs`, `GET /api/pipeline_runs`,
//! `GET|PUT /api/pipeline_runs/{id}`, `GET /api/pipeline_runs/{id}/block_runs`.
//!
//! Lists read one run list view of the store (`store::RunView`: all runs, a schedule's, a pipeline's),
//! already ordered by `execution_date` desc then `id` desc, filter its small entries, count them (so
//! `metadata.count` is exact) and read only the runs of the page.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::{path_id, unwrap_body, view, Paging};
use crate::cancel::cancel_run;
use crate::domain::run::RunDetail;
use crate::domain::{RunStatus, Schedule};
use crate::http::{ApiRequest, ApiResponse};
use crate::store::{RunEntry, RunView};
use crate::{App, Error, Result};

fn int_filter(req: &ApiRequest, name: &str) -> Result<Option<i64>> {
    req.query_value(name)
        .map(|v| {
            v.parse::<i64>().map_err(|_| Error::Unprocessable(format!("{name}: {v:?} is not an integer id")))
        })
        .transpose()
}

fn status_filter(req: &ApiRequest) -> Result<Option<RunStatus>> {
    req.query_value("status")
        .map(|v| {
            RunStatus::ALL.into_iter().find(|s| s.as_mage() == v).ok_or_else(|| {
                Error::Unprocessable(format!(
                    "status: {v:?} is not one of initial, running, completed, failed, cancelled"
                ))
            })
        })
        .transpose()
}

/// Renders runs with their schedules (each schedule read once).
async fn render(app: &App, details: &[RunDetail]) -> Result<Vec<Value>> {
    let mut schedules: HashMap<i64, Option<Schedule>> = HashMap::new();
    let mut out = Vec::with_capacity(details.len());
    for d in details {
        let schedule = match d.run.schedule_id {
            Some(id) => {
                if let std::collections::hash_map::Entry::Vacant(slot) = schedules.entry(id) {
                    slot.insert(app.store.get_schedule(id).await?.map(|v| v.value));
                }
                schedules.get(&id).and_then(Option::as_ref)
            }
            None => None,
        };
        out.push(view::run(d, schedule));
    }
    Ok(out)
}

async fn list_view(
    app: &App,
    req: &ApiRequest,
    view: RunView,
    keep: impl Fn(&RunEntry) -> bool,
) -> Result<ApiResponse> {
    let paging = Paging::parse(req)?;
    let status = status_filter(req)?;
    let entries: Vec<RunEntry> = app
        .store
        .run_entries(&view)
        .await?
        .into_iter()
        .filter(|e| status.is_none_or(|s| e.status == s) && keep(e))
        .collect();
    let (page, metadata) = paging.page(&entries);
    let mut details = Vec::with_capacity(page.len());
    for e in page {
        if let Some(d) = app.store.get_run(e.uuid).await? {
            details.push(d.value);
        }
    }
    Ok(ApiResponse::ok(&json!({ "pipeline_runs": render(app, &details).await?, "metadata": metadata })))
}

pub async fn list_for_schedule(app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    let id = path_id(req, "pipeline schedule")?;
    if app.store.get_schedule(id).await?.is_none() {
        return Err(Error::NotFound(format!("No pipeline schedule with id {id}")));
    }
    list_view(app, req, RunView::Schedule(id), |_| true).await
}

/// `pipeline_uuid`, `pipeline_schedule_id`, `backfill_id` and `status` filter.
pub async fn list(app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    let schedule = int_filter(req, "pipeline_schedule_id")?;
    let backfill = int_filter(req, "backfill_id")?;
    let pipeline = req.query_value("pipeline_uuid").map(str::to_string);
    let view = match (schedule, &pipeline) {
        (Some(id), _) => RunView::Schedule(id),
        (None, Some(name)) => RunView::Pipeline(name.clone()),
        (None, None) => RunView::All,
    };
    list_view(app, req, view, |e| {
        pipeline.as_ref().is_none_or(|p| &e.pipeline_name == p)
            && backfill.is_none_or(|b| e.backfill_id == Some(b))
    })
    .await
}

async fn load(app: &App, req: &ApiRequest) -> Result<RunDetail> {
    let id = path_id(req, "pipeline run")?;
    Ok(app
        .store
        .get_run_by_id(id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("No pipeline run with id {id}")))?
        .value)
}

pub async fn get(app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    let d = load(app, req).await?;
    let rendered = render(app, std::slice::from_ref(&d)).await?;
    Ok(ApiResponse::ok(&json!({ "pipeline_run": rendered[0] })))
}

/// `{"pipeline_run": {"status": "cancelled"}}` cancels the run;
/// `{"pipeline_run": {"pipeline_run_action": "retry_blocks", "from_block_uuid"?: "..."}}` resets the
/// failed and cancelled blocks (or that block and its descendants) of a finished run and runs them again.
pub async fn update(app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    let body = unwrap_body(req.json_object()?, "pipeline_run")?;
    let d = load(app, req).await?;
    let unknown: Vec<&str> = body
        .keys()
        .filter(|k| !matches!(k.as_str(), "status" | "pipeline_run_action" | "from_block_uuid"))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(Error::Unprocessable(format!(
            "pipeline_run: unknown field(s) {}; known fields are status, pipeline_run_action, from_block_uuid",
            unknown.join(", ")
        )));
    }
    let updated = match (body.get("status"), body.get("pipeline_run_action"), body.get("from_block_uuid")) {
        (Some(Value::String(s)), None, None) if s == "cancelled" => cancel_run(app, d.run.uuid).await?,
        (None, Some(Value::String(a)), from) if a == "retry_blocks" => {
            let from = match from {
                None | Some(Value::Null) => None,
                Some(Value::String(b)) => Some(b.as_str()),
                Some(_) => return Err(Error::Unprocessable("from_block_uuid: must be a block name".into())),
            };
            crate::worker::Worker::for_api(app.clone()).retry_blocks(d.run.uuid, from).await?;
            load(app, req).await?
        }
        _ => {
            return Err(Error::Unprocessable(
                "pipeline_run: send either status: \"cancelled\" or pipeline_run_action: \"retry_blocks\" (with an optional from_block_uuid)".into(),
            ))
        }
    };
    let rendered = render(app, std::slice::from_ref(&updated)).await?;
    Ok(ApiResponse::ok(&json!({ "pipeline_run": rendered[0] })))
}

pub async fn block_runs(app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    let d = load(app, req).await?;
    Ok(ApiResponse::ok(&json!({
        "block_runs": d.blocks.iter().map(view::block_run).collect::<Vec<_>>(),
        "metadata": { "count": d.blocks.len(), "next": false },
    })))
}
