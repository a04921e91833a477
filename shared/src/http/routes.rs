//! The route table: every path and method Kickoff serves, the endpoint behind it, the Lambda function
//! that serves it (crate `functions/<function>`, SAM resource `<Function>` in CamelCase, router entry in the
//! workspace `Cargo.toml`), and who may call it. `dispatch` is the one place a request meets its handler.

use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use http::Method;

use super::{auth, errors, mage, redact, zenml, ApiRequest, ApiResponse, MAX_BODY_BYTES};
use crate::{App, Error, Result};

/// Which REST dialect a route speaks (decides the error body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Zenml,
    Mage,
}

impl Dialect {
    pub fn of_path(path: &str) -> Dialect {
        if path == "/api/v1" || path.starts_with("/api/v1/") {
            Dialect::Zenml
        } else {
            Dialect::Mage
        }
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A `read` or `write` API key.
    Read,
    /// A `write` API key.
    Write,
    /// No API key: the handler checks a token (a schedule's, a block attempt's callback token, or the API
    /// key a ZenML client logs in with).
    Token,
    /// No credential at all: the answer is the same fixed document for everyone (`GET /api/v1/info`,
    /// which ZenML's client reads before it logs in).
    Open,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ListPipelines,
    CreatePipeline,
    GetPipeline,
    ListBuilds,
    CreateBuild,
    GetBuild,
    TriggerBuildRun,
    ListRuns,
    GetRun,
    StopRun,
    ReplayRun,
    Login,
    ServerInfo,
    CurrentUser,
    ListProjects,
    GetProject,
    ListStacks,
    GetStack,
    ListSnapshots,
    GetSnapshot,
    TriggerSnapshotRun,
    TriggerTemplateRun,
    CreateSchedule,
    ListPipelineSchedules,
    ListSchedules,
    GetSchedule,
    UpdateSchedule,
    DeleteSchedule,
    TriggerScheduleRun,
    ApiTriggerScheduleRun,
    WebhookScheduleRun,
    ScheduleRunStatus,
    RunScheduleNow,
    TestScheduleRules,
    ListScheduleRuns,
    ListPipelineRuns,
    GetPipelineRun,
    UpdatePipelineRun,
    ListBlockRuns,
    CreateBackfill,
    ListBackfills,
    GetBackfill,
    UpdateBackfill,
    DeleteBackfill,
    BlockRunCallback,
}

#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub endpoint: Endpoint,
    /// The Lambda function (and crate) name.
    pub function: &'static str,
    pub method: &'static str,
    /// `{name}` segments are path parameters.
    pub path: &'static str,
    pub access: Access,
}

const fn route(
    endpoint: Endpoint,
    function: &'static str,
    method: &'static str,
    path: &'static str,
    access: Access,
) -> Route {
    Route { endpoint, function, method, path, access }
}

use Access::{Open, Read, Token, Write};
use Endpoint::*;

pub const ROUTES: &[Route] = &[
    // ZenML dialect
    route(ListPipelines, "list-pipelines", "GET", "/api/v1/pipelines", Read),
    route(CreatePipeline, "create-pipeline", "POST", "/api/v1/pipelines", Write),
    route(GetPipeline, "get-pipeline", "GET", "/api/v1/pipelines/{id}", Read),
    route(ListBuilds, "list-builds", "GET", "/api/v1/pipeline_builds", Read),
    route(CreateBuild, "create-build", "POST", "/api/v1/pipeline_builds", Write),
    route(GetBuild, "get-build", "GET", "/api/v1/pipeline_builds/{id}", Read),
    route(TriggerBuildRun, "trigger-build-run", "POST", "/api/v1/pipeline_builds/{id}/runs", Write),
    route(ListRuns, "list-runs", "GET", "/api/v1/runs", Read),
    route(GetRun, "get-run", "GET", "/api/v1/runs/{id}", Read),
    route(StopRun, "stop-run", "POST", "/api/v1/runs/{id}/stop", Write),
    route(ReplayRun, "replay-run", "POST", "/api/v1/runs/{id}/replay", Write),
    route(ListSnapshots, "list-snapshots", "GET", "/api/v1/pipeline_snapshots", Read),
    route(GetSnapshot, "get-snapshot", "GET", "/api/v1/pipeline_snapshots/{id}", Read),
    route(TriggerSnapshotRun, "trigger-snapshot-run", "POST", "/api/v1/pipeline_snapshots/{id}/runs", Write),
    // ZenML's deprecated run templates: a build is its own template.
    route(TriggerTemplateRun, "trigger-template-run", "POST", "/api/v1/run_templates/{id}/runs", Write),
    // ZenML's connect routes (what the stock client reads before it does anything)
    route(Login, "login", "POST", "/api/v1/login", Token),
    route(ServerInfo, "server-info", "GET", "/api/v1/info", Open),
    route(CurrentUser, "current-user", "GET", "/api/v1/current-user", Read),
    route(ListProjects, "list-projects", "GET", "/api/v1/projects", Read),
    route(GetProject, "get-project", "GET", "/api/v1/projects/{id}", Read),
    route(ListStacks, "list-stacks", "GET", "/api/v1/stacks", Read),
    route(GetStack, "get-stack", "GET", "/api/v1/stacks/{id}", Read),
    // Mage dialect
    route(
        CreateSchedule,
        "create-schedule",
        "POST",
        "/api/pipelines/{pipeline_uuid}/pipeline_schedules",
        Write,
    ),
    route(
        ListPipelineSchedules,
        "list-pipeline-schedules",
        "GET",
        "/api/pipelines/{pipeline_uuid}/pipeline_schedules",
        Read,
    ),
    route(ListSchedules, "list-schedules", "GET", "/api/pipeline_schedules", Read),
    route(GetSchedule, "get-schedule", "GET", "/api/pipeline_schedules/{id}", Read),
    route(UpdateSchedule, "update-schedule", "PUT", "/api/pipeline_schedules/{id}", Write),
    route(DeleteSchedule, "delete-schedule", "DELETE", "/api/pipeline_schedules/{id}", Write),
    route(
        TriggerScheduleRun,
        "trigger-schedule-run",
        "POST",
        "/api/pipeline_schedules/{id}/pipeline_runs/{token}",
        Token,
    ),
    route(
        ApiTriggerScheduleRun,
        "api-trigger-schedule-run",
        "POST",
        "/api/pipeline_schedules/{id}/api_trigger",
        Token,
    ),
    route(WebhookScheduleRun, "webhook-schedule-run", "POST", "/api/pipeline_schedules/{id}/webhook", Token),
    route(
        ScheduleRunStatus,
        "api-trigger-run-status",
        "GET",
        "/api/pipeline_schedules/{id}/api_trigger/pipeline_runs/{run_id}",
        Token,
    ),
    route(RunScheduleNow, "run-schedule-now", "POST", "/api/pipeline_schedules/{id}/pipeline_runs", Write),
    route(TestScheduleRules, "test-schedule-rules", "POST", "/api/pipeline_schedules/{id}/rules/test", Read),
    route(ListScheduleRuns, "list-schedule-runs", "GET", "/api/pipeline_schedules/{id}/pipeline_runs", Read),
    route(ListPipelineRuns, "list-pipeline-runs", "GET", "/api/pipeline_runs", Read),
    route(GetPipelineRun, "get-pipeline-run", "GET", "/api/pipeline_runs/{id}", Read),
    route(UpdatePipelineRun, "update-pipeline-run", "PUT", "/api/pipeline_runs/{id}", Write),
    route(ListBlockRuns, "list-block-runs", "GET", "/api/pipeline_runs/{id}/block_runs", Read),
    route(CreateBackfill, "create-backfill", "POST", "/api/pipelines/{pipeline_uuid}/backfills", Write),
    route(ListBackfills, "list-backfills", "GET", "/api/backfills", Read),
    route(GetBackfill, "get-backfill", "GET", "/api/backfills/{id}", Read),
    route(UpdateBackfill, "update-backfill", "PUT", "/api/backfills/{id}", Write),
    route(DeleteBackfill, "delete-backfill", "DELETE", "/api/backfills/{id}", Write),
    // Executors
    route(BlockRunCallback, "block-run-callback", "POST", "/api/block_runs/{id}/callback", Token),
];

impl Route {
    pub fn by_function(function: &str) -> Option<&'static Route> {
        ROUTES.iter().find(|r| r.function == function)
    }

    pub fn dialect(&self) -> Dialect {
        Dialect::of_path(self.path)
    }

    /// The path parameters if `path` matches this route's pattern.
    pub fn match_path(&self, path: &str) -> Option<Vec<(String, String)>> {
        let path = path.strip_suffix('/').filter(|p| !p.is_empty()).unwrap_or(path);
        let mut pattern = self.path.split('/');
        let mut actual = path.split('/');
        let mut params = Vec::new();
        loop {
            match (pattern.next(), actual.next()) {
                (None, None) => return Some(params),
                (Some(p), Some(a)) if p.starts_with('{') && p.ends_with('}') && !a.is_empty() => {
                    params.push((p[1..p.len() - 1].to_string(), super::percent_decode(a)));
                }
                (Some(p), Some(a)) if p == a => {}
                _ => return None,
            }
        }
    }
}

/// The route for a method and path: 404 if no route has the path, 405 if none has the method.
pub fn find(method: &Method, path: &str) -> Result<(&'static Route, Vec<(String, String)>)> {
    let mut path_known = false;
    for r in ROUTES {
        if let Some(params) = r.match_path(path) {
            if r.method == method.as_str() {
                return Ok((r, params));
            }
            path_known = true;
        }
    }
    if path_known {
        // Neither names the path: a path can hold a schedule's token.
        Err(Error::MethodNotAllowed(format!("method {method} is not allowed on this path")))
    } else {
        Err(Error::NotFound("no route for this path".into()))
    }
}

/// Serves a request on a known route: size limit, authentication, then the handler; every error is
/// rendered in the route's dialect. A handler that panics is a 500 with the dialect's bare
/// "Internal server error" (the panic is logged with the route, never shown), under Lambda and on the
/// embedded server alike.
pub async fn dispatch(app: &App, route: &Route, req: ApiRequest) -> ApiResponse {
    let dialect = route.dialect();
    match AssertUnwindSafe(handle(app, route, req)).catch_unwind().await {
        Ok(resp) => resp,
        Err(panic) => {
            let what = crate::error::panic_message(panic.as_ref());
            errors::render(dialect, &Error::Internal(format!("{} panicked: {what}", route.function)))
        }
    }
}

async fn handle(app: &App, route: &Route, mut req: ApiRequest) -> ApiResponse {
    let dialect = route.dialect();
    let result = async {
        if req.body.len() > MAX_BODY_BYTES {
            return Err(Error::PayloadTooLarge(format!(
                "the body is {} bytes; the limit is {MAX_BODY_BYTES}",
                req.body.len()
            )));
        }
        req.params =
            route.match_path(&req.path).ok_or_else(|| Error::NotFound("no route for this path".into()))?;
        let role = match route.access {
            Access::Token | Access::Open => None,
            access => Some(auth::authorize(app, &req, access, dialect, route.function).await?),
        };
        let resp = call(app, route.endpoint, &req).await?;
        Ok(redact::for_caller(resp, role))
    }
    .await;
    match result.and_then(within_answer_limit) {
        Ok(resp) => resp,
        Err(e) => errors::render(dialect, &e),
    }
}

/// AWS Lambda's largest synchronous answer: 6 MB, the whole API Gateway response object counted (the
/// body as a JSON string, so each `"` and `\` twice), less room for the status and headers.
pub const MAX_ANSWER_BYTES: usize = 6 * 1024 * 1024 - 64 * 1024;

/// An answer Lambda could not return (API Gateway would answer 502) is a 422 that says to ask for less:
/// a list of many large items. The same limit holds on the embedded server, so that it behaves as
/// deployed.
fn within_answer_limit(resp: ApiResponse) -> Result<ApiResponse> {
    let body = &resp.body;
    if body.len() * 2 <= MAX_ANSWER_BYTES {
        return Ok(resp);
    }
    let escaped = body.len() + body.iter().filter(|b| matches!(**b, b'"' | b'\\')).count();
    if escaped <= MAX_ANSWER_BYTES {
        return Ok(resp);
    }
    Err(Error::Unprocessable(format!(
        "the answer would be {escaped} bytes, over AWS Lambda's limit of {MAX_ANSWER_BYTES}: ask for a \
         smaller page (`size` or `_limit`)"
    )))
}

/// Serves any request: finds its route (404/405 in the dialect of its path), then dispatches.
pub async fn serve(app: &App, req: ApiRequest) -> ApiResponse {
    match find(&req.method, &req.path) {
        Ok((route, _)) => dispatch(app, route, req).await,
        Err(e) => {
            let mut resp = errors::render(Dialect::of_path(&req.path), &e);
            if let Error::MethodNotAllowed(_) = e {
                // RFC 9110: a 405 lists the methods the path has.
                resp.headers.push(("allow", allowed_methods(&req.path).join(", ")));
            }
            resp
        }
    }
}

/// The methods the routes of `path` take.
pub fn allowed_methods(path: &str) -> Vec<&'static str> {
    ROUTES.iter().filter(|r| r.match_path(path).is_some()).map(|r| r.method).collect()
}

async fn call(app: &App, endpoint: Endpoint, req: &ApiRequest) -> Result<ApiResponse> {
    match endpoint {
        ListPipelines => zenml::pipelines::list(app, req).await,
        CreatePipeline => zenml::pipelines::create(app, req).await,
        GetPipeline => zenml::pipelines::get(app, req).await,
        ListBuilds => zenml::builds::list(app, req).await,
        CreateBuild => zenml::builds::create(app, req).await,
        GetBuild => zenml::builds::get(app, req).await,
        TriggerBuildRun => zenml::runs::trigger(app, req).await,
        ListRuns => zenml::run_list::list(app, req).await,
        GetRun => zenml::runs::get(app, req).await,
        StopRun => zenml::runs::stop(app, req).await,
        ReplayRun => zenml::replay::replay(app, req).await,
        ListSnapshots => zenml::snapshots::list(app, req).await,
        GetSnapshot => zenml::snapshots::get(app, req).await,
        TriggerSnapshotRun => zenml::snapshots::trigger(app, req).await,
        TriggerTemplateRun => zenml::runs::trigger_template(app, req).await,
        Login => zenml::connect::login(app, req).await,
        ServerInfo => zenml::connect::info(app, req).await,
        CurrentUser => zenml::connect::current_user(app, req).await,
        ListProjects => zenml::connect::list_projects(app, req).await,
        GetProject => zenml::connect::get_project(app, req).await,
        ListStacks => zenml::connect::list_stacks(app, req).await,
        GetStack => zenml::connect::get_stack(app, req).await,
        CreateSchedule => mage::schedules::create(app, req).await,
        ListPipelineSchedules => mage::schedules::list_for_pipeline(app, req).await,
        ListSchedules => mage::schedules::list(app, req).await,
        GetSchedule => mage::schedules::get(app, req).await,
        UpdateSchedule => mage::schedules::update(app, req).await,
        DeleteSchedule => mage::schedules::delete(app, req).await,
        TriggerScheduleRun => mage::triggers::with_path_token(app, req).await,
        ApiTriggerScheduleRun => mage::triggers::with_bearer_token(app, req).await,
        WebhookScheduleRun => mage::webhook::handle(app, req).await,
        ScheduleRunStatus => mage::triggers::run_status(app, req).await,
        RunScheduleNow => mage::triggers::run_now(app, req).await,
        TestScheduleRules => mage::rules::test(app, req).await,
        ListScheduleRuns => mage::runs::list_for_schedule(app, req).await,
        ListPipelineRuns => mage::runs::list(app, req).await,
        GetPipelineRun => mage::runs::get(app, req).await,
        UpdatePipelineRun => mage::runs::update(app, req).await,
        ListBlockRuns => mage::runs::block_runs(app, req).await,
        CreateBackfill => mage::backfills::create(app, req).await,
        ListBackfills => mage::backfills::list(app, req).await,
        GetBackfill => mage::backfills::get(app, req).await,
        UpdateBackfill => mage::backfills::update(app, req).await,
        DeleteBackfill => mage::backfills::delete(app, req).await,
        BlockRunCallback => super::callback::handle(app, req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_patterns_with_parameters() {
        let (r, params) = find(&Method::POST, "/api/v1/pipeline_builds/abc/runs").unwrap();
        assert_eq!(r.function, "trigger-build-run");
        assert_eq!(params, vec![("id".to_string(), "abc".to_string())]);
        assert!(matches!(find(&Method::DELETE, "/api/v1/pipelines"), Err(Error::MethodNotAllowed(_))));
        assert!(matches!(find(&Method::GET, "/api/v1/nope"), Err(Error::NotFound(_))));
        assert!(find(&Method::GET, "/api/v1/pipelines//").is_err());
        assert_eq!(find(&Method::GET, "/api/v1/pipelines/").unwrap().0.function, "list-pipelines");
    }

    #[test]
    fn function_names_are_unique() {
        let mut names: Vec<_> = ROUTES.iter().map(|r| r.function).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ROUTES.len());
    }
}
