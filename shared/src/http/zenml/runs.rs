//! `POST /api/v1/pipeline_builds/{id}/runs` (trigger), `POST /api/v1/run_templates/{id}/runs` (the
//! same, under ZenML's deprecated run templates: a build is its own template),
//! `GET /api/v1/runs/{id}`, `POST /api/v1/runs/{id}/stop`; the list is [`super::run_list`].

use super::page;
use super::{envelope, path_uuid};
use crate::admission::{Limits, Scope};
use crate::cancel::cancel_run;
use crate::domain::run::RunDetail;
use crate::domain::run_config::RunConfig;
use crate::flow::{self, timing::Timing};
use crate::http::{wait, ApiRequest, ApiResponse};
use crate::trigger::{start_or_skip, Idempotency, RunOptions, Started};
use crate::{App, Error, Result};

pub async fn trigger(app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    let build_id = path_uuid(req.param("id"))?;
    let body = req.json_object()?;
    run_build(app, req, build_id, body, "No build").await
}

/// ZenML's deprecated `POST /api/v1/run_templates/{id}/runs` (`Client().trigger_pipeline(template_id=…)`):
/// the body is a run configuration, as on the build-run route, and the template's id is a build's.
pub async fn trigger_template(app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    let build_id = path_uuid(req.param("id"))?;
    let body = req.json_object()?;
    run_build(app, req, build_id, body, "No run template").await
}

/// Starts a run of build `build_id` with the run configuration `config` and answers it (after
/// `?wait=`): the build-run and snapshot-run routes. `missing` begins the 404's message.
pub async fn run_build(
    app: &App,
    req: &ApiRequest,
    build_id: uuid::Uuid,
    config: serde_json::Map<String, serde_json::Value>,
    missing: &str,
) -> Result<ApiResponse> {
    let wait = wait::param(req)?;
    let build = app
        .store
        .get_build(build_id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("{missing} with id {build_id}")))?;
    let idempotency = Idempotency::new(req.header("idempotency-key"), format!("build:{build_id}"), &config)?;
    let config = RunConfig::parse(config, &build)?;
    let flow = flow_control(&config)?;
    let mut opts = RunOptions { idempotency, ..RunOptions::default() };
    if let Some(f) = &flow {
        let event = serde_json::Value::Object(config.raw.clone());
        let d = flow::decide(
            Some(f),
            None,
            Some(&event),
            &serde_json::Map::new(),
            flow::headers_of(&req.headers),
        )
        .map_err(renamed)?;
        let scope = Scope::Pipeline(build.pipeline_name.clone());
        opts.limits = Limits::keyed(scope.clone(), f, d.key.as_deref());
        opts.timing = Timing::keyed(scope, f, d.key.as_deref());
    }
    let (detail, merged) = match start_or_skip(app, &build, config, opts).await? {
        Started::Run(detail) => (detail, false),
        Started::Merged(detail) => (detail, true),
        Started::Skipped(why) => return Err(Error::Conflict(format!("skipped, no run: {why}"))),
    };
    let said =
        flow.as_ref().map(|f| flow::outcome(&detail.run, merged, f.concurrency.as_ref().map(|c| c.on_limit)));
    let mut resp = answer(app, wait, detail, true).await?;
    if let Some((outcome, start_at)) = said {
        resp.headers.push(("x-kickoff-flow-outcome", outcome.to_string()));
        if let Some(t) = start_at {
            resp.headers
                .push(("x-kickoff-flow-start-at", t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)));
        }
    }
    Ok(resp)
}

/// A ZenML run's flow control: `extra.flow_control` of its run configuration (`docs/flow.md`), checked
/// as a schedule's is (a 422 naming `extra.flow_control…`).
fn flow_control(config: &RunConfig) -> Result<Option<flow::FlowControl>> {
    let Some(raw) = config.raw.get("extra").and_then(|e| e.get("flow_control")) else { return Ok(None) };
    let f: flow::FlowControl = serde_json::from_value(raw.clone())
        .map_err(|e| Error::Unprocessable(format!("extra.flow_control: {e}")))?;
    flow::validate(Some(&f), None).map_err(renamed)?;
    Ok(Some(f))
}

/// A flow-control error as the ZenML body names the field.
fn renamed(e: Error) -> Error {
    match e {
        Error::Unprocessable(m) => {
            Error::Unprocessable(m.replacen("settings.flow_control", "extra.flow_control", 1))
        }
        other => other,
    }
}

pub async fn get(app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    let id = path_uuid(req.param("id"))?;
    let hydrate = page::hydrate(req, true)?;
    let wait = wait::param(req)?;
    let d = app.store.get_run(id).await?.ok_or_else(|| Error::NotFound(format!("No run with id {id}")))?;
    answer(app, wait, d.value, hydrate).await
}

/// A run's answer, after waiting for it if `wait` (202 with `Location: /api/v1/runs/{id}` if unfinished).
pub(super) async fn answer(
    app: &App,
    wait: Option<std::time::Duration>,
    detail: RunDetail,
    hydrate: bool,
) -> Result<ApiResponse> {
    let location = format!("/api/v1/runs/{}", detail.run.uuid);
    wait::respond(app, wait, detail, location, |d| async move {
        // A replay's hydrated answer shows the run it replays.
        let original = match d.run.replay_of {
            Some(o) if hydrate => app.store.get_run(o).await?.map(|v| v.value.run),
            _ => None,
        };
        Ok(ApiResponse::ok(&envelope::run_of(&d, hydrate, original.as_ref())))
    })
    .await
}

/// Cancels a run (`cancel::cancel_run`); ZenML shows it as `stopped`.
pub async fn stop(app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    let id = path_uuid(req.param("id"))?;
    let detail = cancel_run(app, id).await?;
    Ok(ApiResponse::ok(&envelope::run(&detail, true)))
}
