//! Backfills: `POST /api/pipelines/{pipeline_uuid}/backfills`, `GET /api/backfills`,
//! `GET|PUT|DELETE /api/backfills/{id}`. `PUT` with `status: "initial"` starts one, with
//! `status: "cancelled"` cancels it (`crate::backfills`); other fields change an unstarted one.

use serde_json::json;

use super::{path_id, require_pipeline, unwrap_body, view, Paging};
use crate::backfills;
use crate::clock::new_int_id;
use crate::domain::backfill::{Backfill, BackfillFields, BackfillStatus};
use crate::http::{from_object, ApiRequest, ApiResponse};
use crate::store::Versioned;
use crate::{App, Error, Result};

fn fields(req: &ApiRequest) -> Result<BackfillFields> {
    from_object(unwrap_body(req.json_object()?, "backfill")?)
}

async fn answer(app: &App, b: Backfill) -> Result<ApiResponse> {
    let (b, runs) = backfills::with_status(app, b).await?;
    Ok(ApiResponse::ok(&view::one("backfill", view::backfill(&b, runs))))
}

pub async fn create(app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    let pipeline_uuid = req.param("pipeline_uuid").to_string();
    let f = fields(req)?;
    require_pipeline(app, &pipeline_uuid).await?;
    let now = app.clock.now();
    let mut b = Backfill::create(new_int_id(now), &pipeline_uuid, f, now)?;
    if let Some(id) = b.pipeline_schedule_id {
        let s = app.store.get_schedule(id).await?;
        if s.is_none_or(|s| s.value.pipeline_uuid != pipeline_uuid) {
            return Err(Error::Unprocessable(format!(
                "pipeline_schedule_id: {id} is not a schedule of pipeline {pipeline_uuid:?}"
            )));
        }
    }
    for _ in 0..8 {
        if app.store.create_backfill(&b).await? {
            tracing::info!(backfill_id = b.id, pipeline = %pipeline_uuid, "backfill created");
            return answer(app, b).await;
        }
        b.id = new_int_id(app.clock.now());
    }
    Err(Error::Internal("could not claim a backfill id".into()))
}

pub async fn list(app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    let paging = Paging::parse(req)?;
    let mut all = app.store.list_backfills().await?;
    all.sort_by(|a, b| b.created.cmp(&a.created).then(b.id.cmp(&a.id)));
    let (page, metadata) = paging.page(&all);
    let mut shown = Vec::with_capacity(page.len());
    for b in page {
        let (b, runs) = backfills::with_status(app, b.clone()).await?;
        shown.push(view::backfill(&b, runs));
    }
    Ok(ApiResponse::ok(&json!({ "backfills": shown, "metadata": metadata })))
}

async fn load(app: &App, req: &ApiRequest) -> Result<Versioned<Backfill>> {
    let id = path_id(req, "backfill")?;
    app.store.get_backfill(id).await?.ok_or_else(|| Error::NotFound(format!("No backfill with id {id}")))
}

pub async fn get(app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    answer(app, load(app, req).await?.value).await
}

pub async fn update(app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    let mut f = fields(req)?;
    let current = load(app, req).await?;
    let status = f.status.take();
    let mut b = current.value.clone();
    b.apply(f, app.clock.now())?;
    let current = if b != current.value {
        if !app.store.update_backfill(&b, current.version).await? {
            return Err(Error::Conflict("the backfill changed meanwhile; read it and try again".into()));
        }
        Versioned { value: b.clone(), version: current.version + 1 }
    } else {
        current
    };
    let b = match status {
        None => b,
        Some(BackfillStatus::Initial) => backfills::start(app, current).await?,
        Some(BackfillStatus::Cancelled) => backfills::cancel(app, current).await?,
        Some(other) => {
            return Err(Error::Unprocessable(format!(
                "status: {} is not \"initial\" (start) or \"cancelled\" (cancel)",
                other.as_str()
            )))
        }
    };
    answer(app, b).await
}

/// Deletes the backfill; its runs stay.
pub async fn delete(app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    let current = load(app, req).await?;
    if !app.store.delete_backfill(current.value.id, current.version).await? {
        return Err(Error::Conflict("the backfill changed meanwhile; read it and try again".into()));
    }
    tracing::info!(backfill_id = current.value.id, "backfill deleted");
    answer(app, current.value).await
}
