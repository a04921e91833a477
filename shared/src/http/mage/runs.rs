//! Pipeline runs: `GET /api/pipeline_schedules/{id}/pipeline_runs`, `GET /api/pipeline_runs`,
//! `GET|PUT /api/pipeline_runs/{id}`, `GET /api/pipeline_runs/{id}/block_runs`.
//!
//! Lists read one page of one run list view of the store (`store::RunView`: all runs, a schedule's, a
//! pipeline's, a backfill's), ordered by `execution_date` desc then `id` desc, with `metadata.count` exact
//! from the view's counters, and then only the runs of the page.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::{path_id, unwrap_body, view, Paging};
use crate::cancel::cancel_run;
use crate::domain::run::RunDetail;
use crate::domain::{RunStatus, Schedule};
use crate::http::{wait, ApiRequest, ApiResponse};
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

/// Renders a page of entries: reads each run of the page (`Store::runs_of`) and its schedules.
/// `next_cursor`: where the next page starts (`_cursor`), if this one is full.
async fn respond(
    app: &App,
    page: &[RunEntry],
    count: usize,
    paging: &Paging,
    next_cursor: Option<String>,
) -> Result<ApiResponse> {
    let details = app.store.runs_of(page).await?;
    let next = next_cursor.is_some() && paging.offset.saturating_add(paging.limit) < count;
    // Mage's own `{"count", "next"}`, and `next_cursor` when there is a next page.
    let mut metadata = json!({ "count": count, "next": next });
    if let Some(c) = next_cursor.filter(|_| next) {
        metadata["next_cursor"] = json!(base64_simd::URL_SAFE_NO_PAD.encode_to_string(c));
    }
    Ok(ApiResponse::ok(&json!({ "pipeline_runs": render(app, &details).await?, "metadata": metadata })))
}

/// `_cursor`: the `next_cursor` of an earlier page, for pages past `_offset`'s reach (with `_offset`
/// too, or not one this list gave: 422).
fn cursor(req: &ApiRequest) -> Result<Option<String>> {
    let Some(given) = req.query_value("_cursor") else { return Ok(None) };
    if req.query_value("_offset").is_some() {
        return Err(Error::Unprocessable("_cursor: give _cursor or _offset, not both".into()));
    }
    base64_simd::URL_SAFE_NO_PAD
        .decode_to_vec(given)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|c| crate::store::valid_cursor(c))
        .map(Some)
        .ok_or_else(|| Error::Unprocessable("_cursor: not a next_cursor this list gave".into()))
}

/// One page of a view, its count exact from the view's counters (`Store::run_page`), or the page after
/// a cursor (`Store::run_page_after`: any depth at the first page's cost).
async fn list_view(app: &App, req: &ApiRequest, view: RunView) -> Result<ApiResponse> {
    let paging = Paging::parse(req)?;
    let status = status_filter(req)?;
    let page = match cursor(req)? {
        Some(c) => app.store.run_page_after(&view, status, &c, paging.limit).await?,
        None => app.store.run_page(&view, status, paging.offset, paging.limit).await?,
    };
    respond(app, &page.entries, usize::try_from(page.count).unwrap_or(0), &paging, page.cursor).await
}

pub async fn list_for_schedule(app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    let id = path_id(req, "pipeline schedule")?;
    if app.store.get_schedule(id).await?.is_none() {
        return Err(Error::NotFound(format!("No pipeline schedule with id {id}")));
    }
    list_view(app, req, RunView::Schedule(id)).await
}

/// `pipeline_uuid`, `pipeline_schedule_id`, `backfill_id` and `status` filter. The narrowest view the
/// filters name is read: a backfill's (at most 1,000 runs, filtered here), else a schedule's, a
/// pipeline's or all runs, paged by the store.
pub async fn list(app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    let schedule = int_filter(req, "pipeline_schedule_id")?;
    let backfill = int_filter(req, "backfill_id")?;
    let pipeline = req.query_value("pipeline_uuid").map(str::to_string);
    if let Some(id) = backfill {
        let paging = Paging::parse(req)?;
        let status = status_filter(req)?;
        let entries: Vec<RunEntry> = app
            .store
            .run_entries(&RunView::Backfill(id))
            .await?
            .into_iter()
            .filter(|e| {
                status.is_none_or(|s| e.status == s)
                    && schedule.is_none_or(|s| e.schedule_id == Some(s))
                    && pipeline.as_ref().is_none_or(|p| &e.pipeline_name == p)
            })
            .collect();
        if req.query_value("_cursor").is_some() {
            return Err(Error::Unprocessable(
                "_cursor: not taken with backfill_id; use _offset (a backfill has at most 1000 runs)".into(),
            ));
        }
        let (page, _) = paging.page(&entries);
        return respond(app, page, entries.len(), &paging, None).await;
    }
    match (schedule, pipeline) {
        (Some(id), Some(name)) => {
            // A schedule's runs are all of its pipeline: the filters agree on all of them or on none.
            let of_pipeline =
                app.store.get_schedule(id).await?.is_some_and(|s| s.value.pipeline_uuid == name);
            if !of_pipeline {
                let paging = Paging::parse(req)?;
                status_filter(req)?;
                cursor(req)?;
                return respond(app, &[], 0, &paging, None).await;
            }
            list_view(app, req, RunView::Schedule(id)).await
        }
        (Some(id), None) => list_view(app, req, RunView::Schedule(id)).await,
        (None, Some(name)) => list_view(app, req, RunView::Pipeline(name)).await,
        (None, None) => list_view(app, req, RunView::All).await,
    }
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
    let wait = wait::param(req)?;
    let detail = load(app, req).await?;
    let location = format!("/api/pipeline_runs/{}", detail.run.id);
    wait::respond(app, wait, detail, location, |d| async move { answer_one(app, &d).await }).await
}

/// One run as Mage answers it alone: `{"pipeline_run": {...}, "metadata": null}`.
async fn answer_one(app: &App, d: &RunDetail) -> Result<ApiResponse> {
    let rendered = render(app, std::slice::from_ref(d)).await?;
    let run =
        rendered.into_iter().next().ok_or_else(|| Error::Internal("a run rendered to nothing".into()))?;
    Ok(ApiResponse::ok(&view::one("pipeline_run", run)))
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
    answer_one(app, &updated).await
}

pub async fn block_runs(app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    let d = load(app, req).await?;
    Ok(ApiResponse::ok(&json!({
        "block_runs": d.blocks.iter().map(view::block_run).collect::<Vec<_>>(),
        "metadata": { "count": d.blocks.len(), "next": false },
    })))
}
