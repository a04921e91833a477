//! Pipeline schedules: `POST /api/pipelines/{pipeline_uuid}/pipeline_schedules`,
//! `GET /api/pipeline_schedules`, `GET /api/pipelines/{pipeline_uuid}/pipeline_schedules`,
//! `GET|PUT|DELETE /api/pipeline_schedules/{id}`.

use serde_json::json;

use super::{path_id, require_pipeline, unwrap_body, view, Paging};
use crate::clock::{new_int_id, new_token};
use crate::domain::schedule::ScheduleFields;
use crate::domain::Schedule;
use crate::http::{from_object, ApiRequest, ApiResponse};
use crate::{App, Error, Result};

fn fields(req: &ApiRequest) -> Result<ScheduleFields> {
    from_object(unwrap_body(req.json_object()?, "pipeline_schedule")?)
}

/// A pinned build must be a build of the schedule's pipeline.
async fn check_build(app: &App, s: &Schedule) -> Result<()> {
    if let Some(id) = s.build_id {
        let build = app.store.get_build(id).await?;
        if build.is_none_or(|b| b.pipeline_name != s.pipeline_uuid) {
            return Err(Error::Unprocessable(format!(
                "build_id: {id} is not a build of pipeline {:?}",
                s.pipeline_uuid
            )));
        }
    }
    Ok(())
}

pub async fn create(app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    let pipeline_uuid = req.param("pipeline_uuid").to_string();
    let f = fields(req)?;
    require_pipeline(app, &pipeline_uuid).await?;
    let now = app.clock.now();
    let mut schedule = Schedule::create(new_int_id(now), &pipeline_uuid, f, new_token(), now)?;
    check_build(app, &schedule).await?;
    for _ in 0..8 {
        if app.store.create_schedule(&schedule).await? {
            tracing::info!(schedule_id = schedule.id, pipeline = %pipeline_uuid, "schedule created");
            return Ok(ApiResponse::ok(&view::one("pipeline_schedule", view::schedule(&schedule))));
        }
        schedule.id = new_int_id(app.clock.now());
    }
    Err(Error::Internal("could not claim a schedule id".into()))
}

async fn list_of(req: &ApiRequest, schedules: Vec<Schedule>) -> Result<ApiResponse> {
    let paging = Paging::parse(req)?;
    let mut schedules = schedules;
    schedules.sort_by(|a, b| b.created.cmp(&a.created).then(b.id.cmp(&a.id)));
    let (page, metadata) = paging.page(&schedules);
    Ok(ApiResponse::ok(&json!({
        "pipeline_schedules": page.iter().map(view::schedule).collect::<Vec<_>>(),
        "metadata": metadata,
    })))
}

pub async fn list(app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    list_of(req, app.store.list_schedules().await?).await
}

pub async fn list_for_pipeline(app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    let name = req.param("pipeline_uuid");
    require_pipeline(app, name).await?;
    let all = app.store.list_schedules().await?;
    list_of(req, all.into_iter().filter(|s| s.pipeline_uuid == name).collect()).await
}

/// The schedule of the `{id}` path parameter; 404 if there is none.
pub(super) async fn load(app: &App, req: &ApiRequest) -> Result<crate::store::Versioned<Schedule>> {
    let id = path_id(req, "pipeline schedule")?;
    app.store
        .get_schedule(id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("No pipeline schedule with id {id}")))
}

pub async fn get(app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    let s = load(app, req).await?;
    Ok(ApiResponse::ok(&view::one("pipeline_schedule", view::schedule(&s.value))))
}

/// Changes fields; `"rotate_token": true` issues a new token (the old one stops working at once).
pub async fn update(app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    let f = fields(req)?;
    let current = load(app, req).await?;
    let mut s = current.value.clone();
    let rotate = f.rotate_token;
    s.apply(f, app.clock.now())?;
    if rotate {
        s.token = new_token();
    }
    check_build(app, &s).await?;
    if !app.store.update_schedule(&s, current.version).await? {
        return Err(Error::Conflict("the schedule changed meanwhile; read it and try again".into()));
    }
    tracing::info!(schedule_id = s.id, rotated = rotate, "schedule updated");
    Ok(ApiResponse::ok(&view::one("pipeline_schedule", view::schedule(&s))))
}

/// Deletes the schedule; its runs stay (their schedule fields then show `null`).
pub async fn delete(app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    let current = load(app, req).await?;
    if !app.store.delete_schedule(current.value.id, current.version).await? {
        return Err(Error::Conflict("the schedule changed meanwhile; read it and try again".into()));
    }
    tracing::info!(schedule_id = current.value.id, "schedule deleted");
    Ok(ApiResponse::ok(&view::one("pipeline_schedule", view::schedule(&current.value))))
}
