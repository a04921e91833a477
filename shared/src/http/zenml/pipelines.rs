//! `GET /api/v1/pipelines`, `POST /api/v1/pipelines`, `GET /api/v1/pipelines/{id}`.

use http::StatusCode;

use super::page::{FieldValue, ListQuery};
use super::{envelope, path_uuid};
use crate::domain::pipeline::NewPipeline;
use crate::domain::{Build, Pipeline};
use crate::http::{ApiRequest, ApiResponse};
use crate::{App, Error, Result};

fn field(p: &Pipeline, name: &str) -> Option<FieldValue> {
    Some(match name {
        "id" => FieldValue::Text(p.id.to_string()),
        "name" => FieldValue::Text(p.name.clone()),
        "version" => FieldValue::Text(p.version.clone()),
        "created" => FieldValue::Time(p.created),
        "updated" => FieldValue::Time(p.updated),
        _ => return None,
    })
}

pub async fn list(app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    const FIELDS: &[&str] = &["id", "name", "version", "created", "updated"];
    let q = ListQuery::parse(req, FIELDS, &["created", "updated"], FIELDS)?;
    let page = q.apply(app.store.list_pipelines().await?, field, |p| p.id.to_string())?;
    Ok(ApiResponse::ok(&page.to_json(|p| envelope::pipeline(p, q.hydrate))))
}

pub async fn create(app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    let new: NewPipeline = req.json()?;
    let existing: Vec<String> = if new.version.is_none() {
        app.store.pipeline_versions(&new.name).await?.into_iter().map(|p| p.version).collect()
    } else {
        Vec::new()
    };
    let pipeline = new.into_pipeline(&existing, app.clock.now())?;
    let build = Build::initial(&pipeline);
    app.store.create_pipeline(&pipeline, &build).await?;
    tracing::info!(pipeline_id = %pipeline.id, build_id = %build.id, "pipeline created");
    Ok(ApiResponse::json(StatusCode::OK, &envelope::pipeline(&pipeline, true)))
}

pub async fn get(app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    let id = path_uuid(req.param("id"))?;
    let hydrate = super::page::hydrate(req, true)?;
    let p = app
        .store
        .get_pipeline(id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("No pipeline with id {id}")))?;
    Ok(ApiResponse::ok(&envelope::pipeline(&p, hydrate)))
}
