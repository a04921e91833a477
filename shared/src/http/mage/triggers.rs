//! Starting runs from a schedule: `POST /api/pipeline_schedules/{id}/pipeline_runs/{token}` and
//! `POST /api/pipeline_schedules/{id}/api_trigger` (the schedule's token is the credential, in the
//! path or as a Bearer token), and the authenticated run-now `POST /api/pipeline_schedules/{id}/pipeline_runs`.
//!
//! Body mapping, as in Mage: `pipeline_run.variables` becomes the run's `variables` (over the schedule's
//! own), `pipeline_run.execution_date` may set the execution date, and every other top-level key goes
//! into `event_variables` (`null` when there is none).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use std::time::Duration;

use super::{path_id, path_id_named, view};
use crate::domain::bounds;
use crate::domain::schedule::parse_datetime;
use crate::domain::{Schedule, ScheduleStatus, ScheduleType};
use crate::http::{auth, json_type_name, wait, ApiRequest, ApiResponse};
use crate::trigger::{read_schedule, start_schedule_run_with, Idempotency, Prefetched, RunOptions};
use crate::{App, Error, Result};

/// What a trigger body says, mapped as Mage maps it.
struct TriggerBody {
    variables: Map<String, Value>,
    event_variables: Option<Value>,
    execution_date: Option<DateTime<Utc>>,
}

fn map_body(mut body: Map<String, Value>) -> Result<TriggerBody> {
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
    start_mapped(app, loaded, body, idempotency, Map::new(), wait, follow).await
}

/// Where the caller of a trigger polls its run (a waiting trigger's `Location`).
#[derive(Debug, Clone, Copy)]
pub(super) enum Follow {
    /// The token-only status route: the caller has the schedule's token (or a webhook's signature).
    Token,
    /// The run itself, `/api/pipeline_runs/{id}`: the caller has an API key.
    ApiKey,
}

/// Starts a run of the schedule from a trigger body mapped as Mage maps it ([`map_body`]); `extra`
/// variables go over the schedule's and the body's. Answers `{"pipeline_run": {...}}`, after waiting
/// for the run if `wait` (`http::wait`).
pub(super) async fn start_mapped(
    app: &App,
    (schedule, prefetched): (Schedule, Option<Prefetched>),
    body: Map<String, Value>,
    idempotency: Option<Idempotency>,
    extra: Map<String, Value>,
    wait: Option<Duration>,
    follow: Follow,
) -> Result<ApiResponse> {
    let mapped = map_body(body)?;
    let mut variables = schedule.variables.clone();
    variables.extend(mapped.variables);
    variables.extend(extra);
    let opts = RunOptions {
        variables: Some(Value::Object(variables)),
        event_variables: mapped.event_variables,
        execution_date: mapped.execution_date,
        idempotency,
        ..RunOptions::of_schedule(&schedule)?
    };
    let detail = start_schedule_run_with(app, &schedule, prefetched, opts).await?;
    let location = match follow {
        Follow::Token => status_path(schedule.id, detail.run.id),
        Follow::ApiKey => format!("/api/pipeline_runs/{}", detail.run.id),
    };
    let schedule = &schedule;
    wait::respond(app, wait, detail, location, |d| async move {
        Ok(ApiResponse::ok(&view::one("pipeline_run", view::run(&d, Some(schedule)))))
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
