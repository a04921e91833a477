//! The demo the embedded server seeds, so that the seeds' worked examples run at once: pipeline
//! `training` version `"45"`, blocks `data_loader` → `model_trainer` (parameter `model_type`, default
//! `"svm"`) → `model_evaluator`, noop executors, with its first build.

use serde_json::json;

use crate::domain::pipeline::NewPipeline;
use crate::domain::{Build, Pipeline};
use crate::http::from_object;
use crate::{App, Error, Result};

pub const PIPELINE_NAME: &str = "training";
pub const PIPELINE_VERSION: &str = "45";

/// Creates the demo pipeline unless it exists; returns it with its newest build.
pub async fn seed(app: &App) -> Result<(Pipeline, Build)> {
    let existing = app.store.pipeline_versions(PIPELINE_NAME).await?;
    let pipeline = match existing.into_iter().find(|p| p.version == PIPELINE_VERSION) {
        Some(p) => p,
        None => {
            let body = json!({
                "name": PIPELINE_NAME,
                "version": PIPELINE_VERSION,
                "description": "Kickoff's demo pipeline",
                "blocks": [
                    { "name": "data_loader", "executor": { "type": "noop" } },
                    { "name": "model_trainer", "upstream": ["data_loader"],
                      "parameters": { "model_type": "svm" }, "executor": { "type": "noop" } },
                    { "name": "model_evaluator", "upstream": ["model_trainer"], "executor": { "type": "noop" } },
                ],
            });
            let serde_json::Value::Object(body) = body else {
                return Err(Error::Internal("demo pipeline is not an object".into()));
            };
            let new: NewPipeline = from_object(body)?;
            let p = new.into_pipeline(&[], app.clock.now())?;
            app.store.create_pipeline(&p, &Build::initial(&p)).await?;
            p
        }
    };
    let build = app
        .store
        .builds_of_pipeline(pipeline.id)
        .await?
        .pop()
        .ok_or_else(|| Error::Internal("the demo pipeline has no build".into()))?;
    Ok((pipeline, build))
}
