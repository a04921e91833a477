//! `POST /api/v1/runs/{id}/replay`: ZenML 0.98's run replay (a Pro feature there). A replay is a new
//! run of the original's build with the original's inputs — its run configuration (so its step
//! parameters), variables, event variables, execution date, deadlines and notification targets — and
//! the `ReplayRunConfiguration` over them:
//!
//! - its run-configuration keys replace the original's, `steps.<block>` merged key by key and
//!   `parameters` name by name;
//! - `step_default_input_overrides`, then `step_input_overrides`, `{block: {input: value}}`, set block
//!   parameters (a Kickoff block's inputs are its parameters; a name it does not declare is a 422);
//! - `skip_successful_steps: true` reuses every block the original completed, `steps_to_skip` the
//!   named ones (each must have completed): a reused block starts `completed` with the original's
//!   metrics and is not called.
//!
//! The new run names the original (`body.original_run_id`, and `resources.original_run` when hydrated).
//! It belongs to no schedule, so the schedule's run limits do not hold it back.

use serde_json::{Map, Value};

use super::{envelope, path_uuid};
use crate::domain::run_config::{drop_nulls, RunConfig};
use crate::domain::BlockRunStatus;
use crate::http::{json_type_name, wait, ApiRequest, ApiResponse};
use crate::trigger::{start_run, Idempotency, RunOptions};
use crate::{App, Error, Result};

/// What a replay takes besides a run configuration.
struct Replay {
    skip_successful: bool,
    steps_to_skip: Vec<String>,
    /// `step_default_input_overrides` then `step_input_overrides`: block → parameter → value.
    overrides: Vec<(String, Map<String, Value>)>,
}

fn take_replay_keys(config: &mut Map<String, Value>) -> Result<Replay> {
    let skip_successful = match config.remove("skip_successful_steps") {
        None => false,
        Some(Value::Bool(b)) => b,
        Some(v) => {
            return Err(Error::Unprocessable(format!(
                "skip_successful_steps: must be a boolean, got {}",
                json_type_name(&v)
            )))
        }
    };
    let steps_to_skip = match config.remove("steps_to_skip") {
        None => Vec::new(),
        Some(Value::Array(list)) => list
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                v => Err(Error::Unprocessable(format!(
                    "steps_to_skip: must list step names, got {}",
                    json_type_name(&v)
                ))),
            })
            .collect::<Result<_>>()?,
        Some(v) => {
            return Err(Error::Unprocessable(format!(
                "steps_to_skip: must be a list of step names, got {}",
                json_type_name(&v)
            )))
        }
    };
    let mut overrides = Vec::new();
    for key in ["step_default_input_overrides", "step_input_overrides"] {
        match config.remove(key) {
            None => {}
            Some(Value::Object(steps)) => {
                for (step, inputs) in steps {
                    let Value::Object(inputs) = inputs else {
                        return Err(Error::Unprocessable(format!(
                            "{key}.{step}: must be an object of inputs"
                        )));
                    };
                    overrides.push((step, inputs));
                }
            }
            Some(v) => {
                return Err(Error::Unprocessable(format!(
                    "{key}: must be an object, got {}",
                    json_type_name(&v)
                )))
            }
        }
    }
    Ok(Replay { skip_successful, steps_to_skip, overrides })
}

/// `over` on top of `base`: top-level keys replace, `steps.<block>` merge key by key, and a step's
/// `parameters` name by name.
fn merge(mut base: Map<String, Value>, over: Map<String, Value>) -> Map<String, Value> {
    for (k, v) in over {
        match (k.as_str(), v, base.get_mut(&k)) {
            ("steps", Value::Object(steps), Some(Value::Object(have))) => {
                for (step, conf) in steps {
                    match (conf, have.get_mut(&step)) {
                        (Value::Object(conf), Some(Value::Object(had))) => {
                            for (ck, cv) in conf {
                                match (ck.as_str(), cv, had.get_mut(&ck)) {
                                    ("parameters", Value::Object(p), Some(Value::Object(hp))) => hp.extend(p),
                                    (_, cv, _) => {
                                        had.insert(ck, cv);
                                    }
                                }
                            }
                        }
                        (conf, _) => {
                            have.insert(step, conf);
                        }
                    }
                }
            }
            (_, v, _) => {
                base.insert(k, v);
            }
        }
    }
    base
}

pub async fn replay(app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    let wait = wait::param(req)?;
    let id = path_uuid(req.param("id"))?;
    let body = req.json_object()?;
    let idempotency = Idempotency::new(req.header("idempotency-key"), format!("replay:{id}"), &body)?;
    let mut given = body;
    drop_nulls(&mut given);
    let replay = take_replay_keys(&mut given)?;
    let original =
        app.store.get_run(id).await?.ok_or_else(|| Error::NotFound(format!("No run with id {id}")))?.value;
    let build = app.store.get_build(original.run.build_id).await?.ok_or_else(|| {
        Error::Internal(format!("run {id} names build {}, which is gone", original.run.build_id))
    })?;
    let mut config = merge(original.run.config.clone(), given);
    for (step, inputs) in replay.overrides {
        let over = Map::from_iter([(
            "steps".to_string(),
            Value::Object(Map::from_iter([(step, serde_json::json!({ "parameters": inputs }))])),
        )]);
        config = merge(config, over);
    }
    let config = RunConfig::parse(config, &build)?;
    let mut reuse = Vec::new();
    for b in &original.blocks {
        let named = replay.steps_to_skip.contains(&b.block_uuid);
        if (replay.skip_successful || named) && b.status == BlockRunStatus::Completed {
            reuse.push(b.clone());
        }
    }
    if let Some(step) = replay.steps_to_skip.iter().find(|s| !reuse.iter().any(|b| &b.block_uuid == *s)) {
        return Err(Error::Unprocessable(format!(
            "steps_to_skip: {step:?} did not complete in run {id}; only completed steps can be reused"
        )));
    }
    let run = &original.run;
    let opts = RunOptions {
        variables: run.variables.clone(),
        event_variables: run.event_variables.clone(),
        execution_date: Some(run.execution_date),
        idempotency,
        allow_blocks_to_fail: run.allow_blocks_to_fail,
        deadlines: run.deadlines.clone(),
        // The build adds its own targets again.
        notify: run.notify.iter().filter(|t| !build.notifications.contains(t)).cloned().collect(),
        replay_of: Some(run.uuid),
        reuse,
        ..RunOptions::default()
    };
    let detail = start_run(app, &build, config, opts).await?;
    tracing::info!(run_uuid = %detail.run.uuid, original = %id, "run replayed");
    let original = original.run;
    let location = format!("/api/v1/runs/{}", detail.run.uuid);
    wait::respond(app, wait, detail, location, |d| async move {
        Ok(ApiResponse::ok(&envelope::run_of(&d, true, Some(&original))))
    })
    .await
}
