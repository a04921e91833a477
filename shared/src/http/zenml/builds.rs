//! `GET /api/v1/pipeline_builds`, `POST /api/v1/pipeline_builds`, `GET /api/v1/pipeline_builds/{id}`.

use super::page::{self, FieldValue, ListQuery};
use super::{envelope, path_uuid};
use crate::domain::build::NewBuild;
use crate::domain::Build;
use crate::http::{ApiRequest, ApiResponse};
use crate::{App, Error, Result};

fn field(b: &Build, name: &str) -> Option<FieldValue> {
    Some(match name {
        "id" => FieldValue::Text(b.id.to_string()),
        "pipeline_id" => FieldValue::Text(b.pipeline_id.to_string()),
        "created" => FieldValue::Time(b.created),
        "updated" => FieldValue::Time(b.updated),
        _ => return None,
    })
}

pub async fn list(app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    let q = ListQuery::parse(
        req,
        &["id", "pipeline_id", "created"],
        &["created"],
        &["id", "pipeline_id", "created", "updated"],
    )?;
    // `pipeline_id=<uuid>` (the seed's call) reads only that pipeline's builds.
    let builds = match req.query_value("pipeline_id").and_then(|v| uuid::Uuid::parse_str(v).ok()) {
        Some(pid) if !req.query.iter().any(|(k, v)| k == "logical_operator" && v == "or") => {
            app.store.builds_of_pipeline(pid).await?
        }
        _ => app.store.list_builds().await?,
    };
    let page = q.apply(builds, field, |b| b.id.to_string())?;
    Ok(ApiResponse::ok(&page.to_json(|b| envelope::build(b, q.hydrate))))
}

pub async fn create(app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    let new: NewBuild = req.json()?;
    let pipeline = app
        .store
        .get_pipeline(new.pipeline_id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("No pipeline with id {}", new.pipeline_id)))?;
    let build = Build::from_request(&pipeline, new, app.clock.now())?;
    app.store.create_build(&build).await?;
    tracing::info!(build_id = %build.id, pipeline_id = %pipeline.id, "build created");
    Ok(ApiResponse::ok(&envelope::build(&build, true)))
}

pub async fn get(app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    let id = path_uuid(req.param("id"))?;
    let hydrate = page::hydrate(req, true)?;
    let b =
        app.store.get_build(id).await?.ok_or_else(|| Error::NotFound(format!("No build with id {id}")))?;
    Ok(ApiResponse::ok(&envelope::build(&b, hydrate)))
}
