//! Starting runs from a schedule: `POST /api/pipeline_schedules/{id}/pipeline_runs/{token}` and
//! `POST /api/pipeline_schedules/{id}/api_trigger` (the schedule's token is the credential, in the
//! path or as a Bearer token), and the authenticated run-now `POST /api/pipeline_schedules/{id}/pipeline_runs`.
//!
//! Body mapping, as in Mage: `pipeline_run.variables` becomes the run's `variables` (over the schedule's
//! own), `pipeline_run.execution_date` may set the execution date, and every other top-level key goes
//! into `event_variables` (`null` when there is none).
//!
//! A schedule with payload rules or flow control (SPEC §12, `flow`) decides first: no matching rule, or
//! a key whose slots are taken under `on_limit: skip`, answers 200 `{"pipeline_run": null, "skipped":
//! "<reason>"}` and writes nothing; otherwise the answer carries `"flow_control": {"rule", "key",
//! "outcome"}`, `outcome` one of `new_run` (it may start), `queued` (it waits for a run of its key to
//! finish) or `cancelling_running` (it waits while the key's running runs are cancelled).

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use std::time::Duration;

use super::{path_id, path_id_named, view};
use crate::admission::Limits;
use crate::domain::bounds;
use crate::domain::run::RunDetail;
use crate::domain::schedule::parse_datetime;
use crate::domain::{Schedule, ScheduleStatus, ScheduleType};
use crate::flow;
use crate::flow::timing::Timing;
use crate::http::{auth, json_type_name, wait, ApiRequest, ApiResponse};
use crate::trigger::{
    read_schedule, start_schedule_run_or_skip, Idempotency, Prefetched, RunOptions, Started,
};
use crate::{App, Error, Result};

/// What a trigger body says, mapped as Mage maps it.
pub(super) struct TriggerBody {
    variables: Map<String, Value>,
    event_variables: Option<Value>,
    execution_date: Option<DateTime<Utc>>,
}

pub(super) fn map_body(mut body: Map<String, Value>) -> Result<TriggerBody> {
    let mut out = TriggerBody { variables: Map::new(), event_variables: None, execution_date: None };
    if let Some(pr) = body.remove("pipeline_run") {
        let Value::Object(pr) = pr else {
            return Err(Error::Unprocessable(format!(
                "pipeline_run: must be an object, got {}",
                json_type_name(&pr)
            )));
        };
        for (k, v) in pr {
            match (k.as_str(), v) {
                ("variables", Value::Object(vars)) => {
                    bounds::variables("pipeline_run.variables", &vars)?;
                    out.variables = vars
                }
                ("variables", Value::Null) => {}
                ("variables", other) => {
                    return Err(Error::Unprocessable(format!(
                        "pipeline_run.variables: must be an object, got {}",
                        json_type_name(&other)
                    )))
                }
                ("execution_date", Value::String(s)) => {
                    out.execution_date = Some(parse_datetime("pipeline_run.execution_date", &s)?)
                }
                ("execution_date", Value::Null) => {}
                ("execution_date", other) => {
                    return Err(Error::Unprocessable(format!(
                        "pipeline_run.execution_date: must be an ISO 8601 string, got {}",
                        json_type_name(&other)
                    )))
                }
                (other, _) => {
                    return Err(Error::Unprocessable(format!(
                        "pipeline_run: unknown field {other}; known fields are variables, execution_date"
                    )))
                }
            }
        }
    }
    if !body.is_empty() {
        out.event_variables = Some(Value::Object(body));
    }
    Ok(out)
}

/// The schedule of the path, with the build it probably runs (read beside it: [`read_schedule`]).
pub(super) async fn load(app: &App, req: &ApiRequest) -> Result<(Schedule, Option<Prefetched>)> {
    let id = path_id(req, "pipeline schedule")?;
    let (schedule, prefetched) = read_schedule(app, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("No pipeline schedule with id {id}")))?;
    Ok((schedule.value, prefetched))
}

/// Token triggers only: the token must match (constant time), the schedule be active and of type `api`.
fn check_token_trigger(schedule: &Schedule, presented: Option<&str>) -> Result<()> {
    let Some(token) = presented else {
        return Err(Error::Unauthorized("a pipeline schedule token is required".into()));
    };
    if !schedule.token_matches(token) {
        return Err(Error::Unauthorized("the token does not match this pipeline schedule".into()));
    }
    if schedule.status != ScheduleStatus::Active {
        return Err(Error::Conflict("the pipeline schedule is inactive; activate it to trigger runs".into()));
    }
    if schedule.schedule_type != ScheduleType::Api {
        return Err(Error::Unprocessable(format!(
            "the pipeline schedule is of type {}; only api schedules take API triggers",
            schedule.schedule_type.as_str()
        )));
    }
    Ok(())
}

async fn run(
    app: &App,
    req: &ApiRequest,
    loaded: (Schedule, Option<Prefetched>),
    follow: Follow,
) -> Result<ApiResponse> {
    let wait = wait::param(req)?;
    let body = req.json_object()?;
    let idempotency =
        Idempotency::new(req.header("idempotency-key"), format!("schedule:{}", loaded.0.id), &body)?;
    start_mapped(app, loaded, body, &req.headers, idempotency, Map::new(), Reply { wait, follow }).await
}

/// How a trigger answers: at once or after waiting (`http::wait`), and where its caller polls.
#[derive(Debug, Clone, Copy)]
pub(super) struct Reply {
    pub wait: Option<Duration>,
    pub follow: Follow,
}

/// Where the caller of a trigger polls its run (a waiting trigger's `Location`).
#[derive(Debug, Clone, Copy)]
pub(super) enum Follow {
    /// The token-only status route: the caller has the schedule's token (or a webhook's signature).
    Token,
    /// The run itself, `/api/pipeline_runs/{id}`: the caller has an API key.
    ApiKey,
}

/// What the schedule's rules and flow control make of a mapped trigger body (`flow::decide`):
/// the run's variables (the schedule's, the body's, then `extra`) and the decision.
pub(super) fn decide(
    schedule: &Schedule,
    mapped: &TriggerBody,
    headers: &http::HeaderMap,
    extra: Map<String, Value>,
) -> Result<(Map<String, Value>, flow::Decision)> {
    let mut variables = schedule.variables.clone();
    variables.extend(mapped.variables.clone());
    variables.extend(extra);
    let s = &schedule.settings;
    let headers =
        if s.flow_control.is_some() || s.rules.is_some() { flow::headers_of(headers) } else { Map::new() };
    let decision = flow::decide(
        s.flow_control.as_ref(),
        s.rules.as_deref(),
        mapped.event_variables.as_ref(),
        &variables,
        headers,
    )?;
    Ok((variables, decision))
}

/// The answer's `flow_control` object, for a schedule with rules or flow control.
fn flow_view(schedule: &Schedule, d: &flow::Decision, made: Option<(&RunDetail, bool)>) -> Option<Value> {
    let s = &schedule.settings;
    if s.flow_control.is_none() && s.rules.is_none() {
        return None;
    }
    let Some((detail, merged)) = made.filter(|_| d.skipped.is_none()) else {
        return Some(json!({ "rule": d.rule, "key": d.key, "outcome": "skipped" }));
    };
    let on_limit = s.flow_control.as_ref().and_then(|f| f.concurrency.as_ref()).map(|c| c.on_limit);
    let (outcome, start_at) = flow::outcome(&detail.run, merged, on_limit);
    let mut view = json!({ "rule": d.rule, "key": d.key, "outcome": outcome });
    if let Some(t) = start_at {
        view["start_at"] = json!(t);
    }
    Some(view)
}

/// 200 without a run: the rules or flow control skipped this trigger.
fn skipped(schedule: &Schedule, d: &flow::Decision) -> ApiResponse {
    let mut body = json!({ "pipeline_run": null, "skipped": d.skipped });
    if let Some(f) = flow_view(schedule, d, None) {
        body["flow_control"] = f;
    }
    ApiResponse::ok(&body)
}

/// Starts a run of the schedule from a trigger body mapped as Mage maps it ([`map_body`]), under its
/// rules and flow control; `extra` variables go over the schedule's and the body's. Answers
/// `{"pipeline_run": {...}}`, after waiting for the run if `reply.wait` (`http::wait`).
pub(super) async fn start_mapped(
    app: &App,
    (schedule, prefetched): (Schedule, Option<Prefetched>),
    body: Map<String, Value>,
    headers: &http::HeaderMap,
    idempotency: Option<Idempotency>,
    extra: Map<String, Value>,
    reply: Reply,
) -> Result<ApiResponse> {
    let mapped = map_body(body)?;
    let (variables, mut decision) = decide(&schedule, &mapped, headers, extra)?;
    if decision.skipped.is_some() {
        // Counted in the log: `docs/flow.md` has the Logs Insights query.
        tracing::info!(
            schedule_id = schedule.id,
            skipped = decision.skipped.as_deref().unwrap_or(""),
            "trigger skipped: no run"
        );
        return Ok(skipped(&schedule, &decision));
    }
    let opts = RunOptions {
        variables: Some(Value::Object(variables)),
        event_variables: decision.event_variables.clone(),
        execution_date: mapped.execution_date,
        idempotency,
        limits: Limits::of(&schedule, decision.key.as_deref()),
        timing: Timing::of(&schedule, decision.key.as_deref()),
        ..RunOptions::of_schedule(&schedule)?
    };
    let (detail, merged) = match start_schedule_run_or_skip(app, &schedule, prefetched, opts).await? {
        Started::Run(detail) => (detail, false),
        Started::Merged(detail) => (detail, true),
        Started::Skipped(why) => {
            decision.skipped = Some(why);
            return Ok(skipped(&schedule, &decision));
        }
    };
    let location = match reply.follow {
        Follow::Token => status_path(schedule.id, detail.run.id),
        Follow::ApiKey => format!("/api/pipeline_runs/{}", detail.run.id),
    };
    let flow = flow_view(&schedule, &decision, Some((&detail, merged)));
    let schedule = &schedule;
    wait::respond(app, reply.wait, detail, location, |d| async move {
        let mut body = view::one("pipeline_run", view::run(&d, Some(schedule)));
        if let Some(f) = flow {
            body["flow_control"] = f;
        }
        Ok(ApiResponse::ok(&body))
    })
    .await
}

/// The token-only status route of a run.
fn status_path(schedule: i64, run: i64) -> String {
    format!("/api/pipeline_schedules/{schedule}/api_trigger/pipeline_runs/{run}")
}

/// `GET /api/pipeline_schedules/{id}/api_trigger/pipeline_runs/{run_id}` with the schedule's token as
/// a Bearer token: a run of that schedule (404 for any other), with `?wait=`; no API key needed.
pub async fn run_status(app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    let wait = wait::param(req)?;
    let (schedule, _) = load(app, req).await?;
    let Some(token) = auth::bearer(req) else {
        return Err(Error::Unauthorized("a pipeline schedule token is required".into()));
    };
    if !schedule.token_matches(token) {
        return Err(Error::Unauthorized("the token does not match this pipeline schedule".into()));
    }
    let run_id = path_id_named(req, "run_id", "pipeline run")?;
    let detail = app
        .store
        .get_run_by_id(run_id)
        .await?
        .map(|v| v.value)
        .filter(|d| d.run.schedule_id == Some(schedule.id))
        .ok_or_else(|| {
            Error::NotFound(format!("No pipeline run {run_id} of pipeline schedule {}", schedule.id))
        })?;
    let location = status_path(schedule.id, run_id);
    let schedule = &schedule;
    wait::respond(app, wait, detail, location, |d| async move {
        Ok(ApiResponse::ok(&view::one("pipeline_run", view::run(&d, Some(schedule)))))
    })
    .await
}

pub async fn with_path_token(app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    let loaded = load(app, req).await?;
    check_token_trigger(&loaded.0, Some(req.param("token")))?;
    run(app, req, loaded, Follow::Token).await
}

pub async fn with_bearer_token(app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    let loaded = load(app, req).await?;
    check_token_trigger(&loaded.0, auth::bearer(req))?;
    run(app, req, loaded, Follow::Token).await
}

/// Run now, with an API key: any schedule, active or not, of either type.
pub async fn run_now(app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    run(app, req, load(app, req).await?, Follow::ApiKey).await
}
