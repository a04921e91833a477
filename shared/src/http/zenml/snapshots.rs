//! `GET /api/v1/pipeline_snapshots`, `GET /api/v1/pipeline_snapshots/{id}`,
//! `POST /api/v1/pipeline_snapshots/{id}/runs`: ZenML 0.98's snapshots, which are Kickoff's builds
//! (the same ids; `envelope::snapshot` renders one).

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use uuid::Uuid;

use super::envelope::{self, PROJECT_ID, STACK_ID};
use super::page::{self, FieldValue, ListQuery};
use super::path_uuid;
use crate::domain::{Build, Pipeline};
use crate::http::{json_type_name, ApiRequest, ApiResponse};
use crate::{App, Error, Result};

/// The filters a snapshot list takes (ZenML's `PipelineSnapshotFilter`, less what Kickoff has none
/// of: a filter on `user`, `schedule_id`, `source_snapshot_id`, `tags` or `deployed` matches nothing
/// but `notequals`, as a filter on an absent field does).
const FILTERS: &[&str] = &[
    "id",
    "name",
    "pipeline",
    "pipeline_id",
    "project",
    "stack",
    "build_id",
    "runnable",
    "deployable",
    "deployed",
    "user",
    "schedule_id",
    "source_snapshot_id",
    "tags",
    "created",
    "updated",
];

fn field(b: &Build, name: &str) -> Option<FieldValue> {
    let text = |s: String| Some(FieldValue::Text(s));
    match name {
        "id" | "build_id" => text(b.id.to_string()),
        "name" => text(envelope::snapshot_name(b)),
        "pipeline" | "pipeline_id" => text(b.pipeline_id.to_string()),
        "project" => text(PROJECT_ID.to_string()),
        "stack" => text(STACK_ID.to_string()),
        "runnable" => text("true".into()),
        "deployable" | "deployed" => text("false".into()),
        "created" => Some(FieldValue::Time(b.created)),
        "updated" => Some(FieldValue::Time(b.updated)),
        _ => None,
    }
}

/// The pipelines `pipeline` names (ZenML takes a pipeline's id or its name there), if it does.
async fn named_pipelines(app: &App, req: &ApiRequest) -> Result<Option<Vec<Uuid>>> {
    let Some(v) = req.query_value("pipeline").or_else(|| req.query_value("pipeline_id")) else {
        return Ok(None);
    };
    if req.query.iter().any(|(k, v)| k == "logical_operator" && v == "or") || v.contains(':') {
        return Ok(None);
    }
    Ok(Some(match Uuid::parse_str(v) {
        Ok(id) => vec![id],
        Err(_) => app.store.pipeline_versions(v).await?.into_iter().map(|p| p.id).collect(),
    }))
}

pub async fn list(app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    let mut q =
        ListQuery::parse(req, FILTERS, &["created", "updated"], &["id", "name", "created", "updated"])?;
    // Every snapshot is named: `named_only` changes nothing, but it is a boolean.
    for (_, v) in req.query.iter().filter(|(k, _)| k == "named_only") {
        page::parse_bool("named_only", v)?;
    }
    // `pipeline=<name>` is that name's pipelines: filter by their ids instead.
    let builds = match named_pipelines(app, req).await? {
        Some(ids) => {
            q.drop_filters(&["pipeline", "pipeline_id"]);
            let mut all = Vec::new();
            for id in ids {
                all.extend(app.store.builds_of_pipeline(id).await?);
            }
            all
        }
        None => app.store.list_builds().await?,
    };
    let page = q.apply(builds, field, |b| b.id.to_string())?;
    let mut pipelines = BTreeMap::new();
    if q.hydrate {
        for b in &page.items {
            if !pipelines.contains_key(&b.pipeline_id) {
                pipelines.insert(b.pipeline_id, pipeline_of(app, b).await?);
            }
        }
    }
    Ok(ApiResponse::ok(&page.to_json(|b| envelope::snapshot(b, pipelines.get(&b.pipeline_id)))))
}

async fn pipeline_of(app: &App, b: &Build) -> Result<Pipeline> {
    app.store.get_pipeline(b.pipeline_id).await?.ok_or_else(|| {
        Error::Internal(format!("build {} names pipeline {}, which is gone", b.id, b.pipeline_id))
    })
}

pub async fn get(app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    let id = path_uuid(req.param("id"))?;
    let hydrate = page::hydrate(req, true)?;
    let b =
        app.store.get_build(id).await?.ok_or_else(|| Error::NotFound(format!("No snapshot with id {id}")))?;
    let pipeline = if hydrate { Some(pipeline_of(app, &b).await?) } else { None };
    Ok(ApiResponse::ok(&envelope::snapshot(&b, pipeline.as_ref())))
}

/// ZenML's `PipelineSnapshotRunRequest`: `{"run_configuration": {...} | null, "step_run": <uuid> |
/// null}`. The run configuration is checked as the build-run route checks it; `step_run` (the ZenML
/// step a run was triggered from) is accepted and not kept: Kickoff has no step runs to link it to.
pub async fn trigger(app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    let id = path_uuid(req.param("id"))?;
    let body = req.json_object()?;
    let mut config = Map::new();
    for (k, v) in body {
        match (k.as_str(), v) {
            ("run_configuration", Value::Object(c)) => config = c,
            ("run_configuration", Value::Null) => {}
            ("step_run", Value::Null) => {}
            ("step_run", Value::String(s)) if Uuid::parse_str(&s).is_ok() => {}
            ("run_configuration", v) => {
                return Err(Error::Unprocessable(format!(
                    "run_configuration: must be an object or null, got {}",
                    json_type_name(&v)
                )))
            }
            ("step_run", _) => return Err(Error::Unprocessable("step_run: must be a UUID or null".into())),
            (other, _) => {
                return Err(Error::Unprocessable(format!(
                    "unknown field {other}; known fields are run_configuration, step_run"
                )))
            }
        }
    }
    super::runs::run_build(app, req, id, config, "No snapshot").await
}
