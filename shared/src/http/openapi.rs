//! The OpenAPI 3.1 document of both dialects, served by the embedded server at `/openapi.json` and
//! shipped as `docs/openapi.json` (`kickoff openapi` prints it).
//!
//! Paths and methods come from the route table (`routes::ROUTES`), one operation per route with its
//! function's name as `operationId` and its access as `security`; what each operation takes and answers
//! is [`operation`] below; the schemas, parameters and error bodies are `openapi_components.json`. Every
//! object schema is closed (`additionalProperties: false`) and lists every field it answers as required,
//! so `tests/tests/openapi.rs`, which validates real answers of every route against the document, fails
//! when a field is in the answers and not the document, or the reverse.

use serde_json::{json, Map, Value};

use super::routes::{Access, Dialect, Endpoint, Route, ROUTES};

/// Schemas, parameters and security schemes (hand-written; checked against real answers by the tests).
const COMPONENTS: &str = include_str!("openapi_components.json");

/// What one operation takes and answers.
struct Operation {
    summary: &'static str,
    /// Query parameters, by their name in `components.parameters`.
    query: Vec<&'static str>,
    /// The request body's schema in `components.schemas`, if it takes one.
    body: Option<&'static str>,
    /// The success answer's schema in `components.schemas`.
    answer: &'static str,
}

/// The paging parameters of every ZenML list.
const ZENML_PAGE: &[&str] = &["page", "size", "hydrate", "sort_by", "logical_operator"];

fn operation(e: Endpoint) -> Operation {
    use Endpoint::*;
    let op = |summary, query: &[&'static str], body, answer| Operation {
        summary,
        query: query.to_vec(),
        body,
        answer,
    };
    // A ZenML list's paging and its filters.
    let zenml_list = |filters: &[&'static str]| [ZENML_PAGE, filters].concat();
    match e {
        ListPipelines => op(
            "List pipelines (filter by name, version)",
            &zenml_list(&["name", "version", "id", "created", "updated"]),
            None,
            "ZenmlPipelinePage",
        ),
        CreatePipeline => {
            op("Create a pipeline version and its first build", &[], Some("NewPipeline"), "ZenmlPipeline")
        }
        GetPipeline => op("Get a pipeline", &["hydrate"], None, "ZenmlPipeline"),
        ListBuilds => op(
            "List pipeline builds (filter by pipeline_id)",
            &zenml_list(&["pipeline_id", "id", "created", "updated"]),
            None,
            "ZenmlBuildPage",
        ),
        CreateBuild => op("Create a build of a pipeline", &[], Some("NewBuild"), "ZenmlBuild"),
        GetBuild => op("Get a pipeline build", &["hydrate"], None, "ZenmlBuild"),
        TriggerBuildRun => {
            op("Run a build with a run configuration", &["wait"], Some("ZenmlRunConfiguration"), "ZenmlRun")
        }
        ListRuns => op(
            "List pipeline runs",
            &zenml_list(&["name", "pipeline_id", "build_id", "status", "id", "created", "updated"]),
            None,
            "ZenmlRunPage",
        ),
        GetRun => op("Get a pipeline run", &["hydrate", "wait"], None, "ZenmlRun"),
        StopRun => op("Stop a pipeline run", &[], None, "ZenmlRun"),
        ReplayRun => op(
            "Replay a run: a new run of its build with its inputs (ReplayRunConfiguration)",
            &["wait"],
            Some("ZenmlReplayConfiguration"),
            "ZenmlRun",
        ),
        ListSnapshots => op(
            "List pipeline snapshots (Kickoff's builds; filter by pipeline id or name)",
            &zenml_list(&[
                "name",
                "pipeline",
                "pipeline_id",
                "project",
                "stack",
                "build_id",
                "runnable",
                "deployable",
                "named_only",
                "id",
                "created",
                "updated",
            ]),
            None,
            "ZenmlSnapshotPage",
        ),
        GetSnapshot => op("Get a pipeline snapshot", &["hydrate"], None, "ZenmlSnapshot"),
        TriggerSnapshotRun => op(
            "Run a snapshot with a run configuration (PipelineSnapshotRunRequest)",
            &["wait"],
            Some("ZenmlSnapshotRunRequest"),
            "ZenmlRun",
        ),
        TriggerTemplateRun => op(
            "Run a build as ZenML's deprecated run template (the template's id is the build's)",
            &["wait"],
            Some("ZenmlRunConfiguration"),
            "ZenmlRun",
        ),
        Login => op(
            "Log in with a Kickoff API key (OAuth2 form); the key is the access token",
            &[],
            None,
            "ZenmlToken",
        ),
        ServerInfo => op("The server's fixed ServerModel", &[], None, "ZenmlServerInfo"),
        CurrentUser => op("The one user every API key acts as", &["hydrate"], None, "ZenmlUser"),
        ListProjects => op(
            "List projects (Kickoff has one, default)",
            &zenml_list(&["name", "id", "created", "updated"]),
            None,
            "ZenmlProjectPage",
        ),
        GetProject => op("Get the project by name or id", &["hydrate"], None, "ZenmlProject"),
        ListStacks => op(
            "List stacks (Kickoff has one, default)",
            &zenml_list(&["name", "id", "created", "updated"]),
            None,
            "ZenmlStackPage",
        ),
        GetStack => op("Get the stack by name or id", &["hydrate"], None, "ZenmlStack"),
        CreateSchedule => {
            op("Create a pipeline schedule", &[], Some("MageScheduleBody"), "MageScheduleAnswer")
        }
        ListPipelineSchedules => {
            op("List a pipeline's schedules", &["_limit", "_offset", "api_key"], None, "MageSchedulePage")
        }
        ListSchedules => {
            op("List pipeline schedules", &["_limit", "_offset", "api_key"], None, "MageSchedulePage")
        }
        GetSchedule => op("Get a pipeline schedule", &["api_key"], None, "MageScheduleAnswer"),
        UpdateSchedule => op(
            "Update a pipeline schedule (rotate_token: a new token)",
            &["api_key"],
            Some("MageScheduleBody"),
            "MageScheduleAnswer",
        ),
        DeleteSchedule => op("Delete a pipeline schedule", &["api_key"], None, "MageScheduleAnswer"),
        TriggerScheduleRun => op(
            "Trigger a run with the schedule's token in the path",
            &["wait"],
            Some("MageTriggerBody"),
            "MageTriggerAnswer",
        ),
        ApiTriggerScheduleRun => op(
            "Trigger a run with the schedule's token as a Bearer token",
            &["wait"],
            Some("MageTriggerBody"),
            "MageTriggerAnswer",
        ),
        WebhookScheduleRun => op(
            "Trigger a run from a provider-signed webhook delivery (settings.webhook)",
            &["wait"],
            Some("WebhookBody"),
            "WebhookAnswer",
        ),
        ScheduleRunStatus => op(
            "Follow a run of this schedule with its token as a Bearer token",
            &["wait"],
            None,
            "MageRunAnswer",
        ),
        RunScheduleNow => {
            op("Run a schedule now", &["api_key", "wait"], Some("MageTriggerBody"), "MageTriggerAnswer")
        }
        TestScheduleRules => op(
            "What a trigger with this body and these headers would do under the schedule's rules and flow control, without a run",
            &["api_key"],
            Some("MageTriggerBody"),
            "RulesTestAnswer",
        ),
        ListScheduleRuns => op(
            "List a schedule's runs",
            &["_limit", "_offset", "_cursor", "status", "api_key"],
            None,
            "MageRunPage",
        ),
        ListPipelineRuns => op(
            "List pipeline runs",
            &["_limit", "_offset", "_cursor", "status", "pipeline_uuid", "api_key"],
            None,
            "MageRunPage",
        ),
        GetPipelineRun => op("Get a pipeline run", &["api_key", "wait"], None, "MageRunAnswer"),
        UpdatePipelineRun => {
            op("Cancel a run, or retry its blocks", &["api_key"], Some("MageRunUpdateBody"), "MageRunAnswer")
        }
        ListBlockRuns => op("List a run's block runs", &["api_key"], None, "MageBlockRunPage"),
        CreateBackfill => {
            op("Create a backfill", &["api_key"], Some("MageBackfillBody"), "MageBackfillAnswer")
        }
        ListBackfills => op("List backfills", &["_limit", "_offset", "api_key"], None, "MageBackfillPage"),
        GetBackfill => op("Get a backfill", &["api_key"], None, "MageBackfillAnswer"),
        UpdateBackfill => op(
            "Update a backfill (status initial starts it, cancelled cancels it)",
            &["api_key"],
            Some("MageBackfillBody"),
            "MageBackfillAnswer",
        ),
        DeleteBackfill => op("Delete a backfill", &["api_key"], None, "MageBackfillAnswer"),
        BlockRunCallback => op(
            "Report the end of an accepted block attempt (Bearer: its callback token)",
            &[],
            Some("CallbackBody"),
            "MageBlockRunAnswer",
        ),
    }
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn json_content(name: &str) -> Value {
    json!({ "application/json": { "schema": schema_ref(name) } })
}

/// A path parameter: ZenML ids are UUIDs (the one project and stack go by name too), Mage ids integers.
fn path_parameter(name: &str, route: &Route) -> Value {
    let dialect = route.dialect();
    let by_name = matches!(route.endpoint, Endpoint::GetProject | Endpoint::GetStack);
    let schema = match (name, dialect) {
        ("id", Dialect::Zenml) if by_name => {
            json!({ "type": "string", "minLength": 1, "description": "the name (default) or the id" })
        }
        ("id", Dialect::Zenml) => json!({ "type": "string", "format": "uuid" }),
        (id, Dialect::Mage) if id.ends_with("id") => json!({ "type": "integer", "minimum": 1 }),
        _ => json!({ "type": "string", "minLength": 1 }),
    };
    json!({ "name": name, "in": "path", "required": true, "schema": schema })
}

/// Error answers: every operation may answer these, in its dialect's error shape.
fn errors(route: &Route) -> Vec<(&'static str, &'static str)> {
    let mut out = vec![
        ("400", "The request cannot be read (a bad header, query or JSON body)"),
        ("401", "No valid credential"),
        ("404", "No such resource"),
        ("409", "A conflict with the current state"),
        ("413", "The body is over 256 KiB"),
        ("422", "A field is invalid; the message names it"),
        ("429", "A run limit refused the run, or a throttled key's turn is too far away (Retry-After)"),
    ];
    if route.access == Access::Write {
        out.push(("403", "A read key may not do this"));
    }
    out
}

fn path_item_operation(route: &Route, components: &Value) -> Value {
    let op = operation(route.endpoint);
    let dialect = route.dialect();
    let mut parameters: Vec<Value> = route
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| path_parameter(name, route))
        .collect();
    for q in &op.query {
        parameters.push(json!({ "$ref": format!("#/components/parameters/{q}") }));
    }
    if matches!(
        route.endpoint,
        Endpoint::TriggerScheduleRun
            | Endpoint::ApiTriggerScheduleRun
            | Endpoint::TriggerBuildRun
            | Endpoint::TriggerSnapshotRun
            | Endpoint::TriggerTemplateRun
            | Endpoint::ReplayRun
    ) {
        parameters.push(json!({ "$ref": "#/components/parameters/Idempotency-Key" }));
    }
    let error_schema = match dialect {
        Dialect::Zenml => "ZenmlError",
        Dialect::Mage => "MageError",
    };
    let mut responses = Map::new();
    let mut ok = json!({ "description": "OK", "content": json_content(op.answer) });
    if matches!(
        route.endpoint,
        Endpoint::TriggerBuildRun | Endpoint::TriggerSnapshotRun | Endpoint::TriggerTemplateRun
    ) {
        ok["headers"] = json!({
            "X-Kickoff-Flow-Outcome": { "schema": { "type": "string", "enum": ["new_run", "queued", "cancelling_running", "deferred", "merged"] },
                                        "description": "with extra.flow_control: what flow control made of the trigger (docs/flow.md)" },
            "X-Kickoff-Flow-Start-At": { "schema": { "type": "string", "format": "date-time" },
                                         "description": "deferred or merged: when the run is to start" },
        });
    }
    responses.insert("200".into(), ok);
    if op.query.contains(&"wait") {
        responses.insert(
            "202".into(),
            json!({
                "description": "wait: the run had not finished when the time was up; poll the Location",
                "headers": { "Location": { "schema": { "type": "string" }, "description": "where to poll the run" } },
                "content": json_content(op.answer),
            }),
        );
    }
    for (status, description) in errors(route) {
        let mut answer = json!({ "description": description, "content": json_content(error_schema) });
        if status == "429" {
            answer["headers"] = json!({ "Retry-After": { "schema": { "type": "integer" }, "description": "seconds, when a throttle refused the trigger" } });
        }
        responses.insert(status.into(), answer);
    }
    let security = match (route.access, route.endpoint) {
        (Access::Read | Access::Write, _) if dialect == Dialect::Zenml => json!([{ "bearer": [] }]),
        (Access::Read | Access::Write, _) => {
            json!([{ "bearer": [] }, { "api_key_header": [] }, { "api_key_query": [] }])
        }
        (Access::Token, Endpoint::TriggerScheduleRun) => json!([{}]),
        (Access::Token, Endpoint::WebhookScheduleRun) => json!([{ "webhook_signature": [] }]),
        (Access::Token, Endpoint::Login) | (Access::Open, _) => json!([{}]),
        (Access::Token, _) => json!([{ "bearer": [] }]),
    };
    let mut out = json!({
        "operationId": route.function,
        "summary": op.summary,
        "tags": [match dialect { Dialect::Zenml => "zenml", Dialect::Mage => "mage" }],
        "parameters": parameters,
        "responses": responses,
        "security": security,
    });
    if route.endpoint == Endpoint::Login {
        out["requestBody"] = json!({
            "required": true,
            "content": { "application/x-www-form-urlencoded": { "schema": schema_ref("ZenmlLoginForm") } },
        });
    }
    if let Some(body) = op.body {
        // A body is required when its schema has required fields (an empty body reads as `{}`).
        let required = components["schemas"][body]["required"].as_array().is_some_and(|r| !r.is_empty());
        out["requestBody"] = json!({ "required": required, "content": json_content(body) });
    }
    out
}

/// The whole document.
pub fn document() -> Value {
    let components: Value = serde_json::from_str(COMPONENTS).unwrap_or_else(|_| json!({}));
    let mut paths = Map::new();
    for route in ROUTES {
        let item = paths.entry(route.path.to_string()).or_insert_with(|| json!({}));
        item[route.method.to_lowercase()] = path_item_operation(route, &components);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Kickoff",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Trigger pipeline runs over HTTPS in ZenML's and Mage's REST dialects. \
                            Errors: ZenML routes answer {\"detail\": [kind, message]}, Mage routes \
                            {\"error\": {\"code\", \"type\", \"message\"}}.",
        },
        "tags": [
            { "name": "zenml", "description": "ZenML's pipelines, builds and runs (`/api/v1`)" },
            { "name": "mage", "description": "Mage's pipeline schedules, triggers, runs and backfills (`/api`)" },
        ],
        "paths": paths,
        "components": components,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_components_parse_and_every_reference_resolves() {
        let components: Value = serde_json::from_str(COMPONENTS).expect("openapi_components.json is JSON");
        let doc = document();
        let text = doc.to_string();
        let mut rest = text.as_str();
        let mut seen = 0;
        while let Some(i) = rest.find("\"$ref\":\"#/components/") {
            rest = &rest[i + 21..];
            let end = rest.find('"').expect("end of ref");
            let mut target = &components;
            for part in rest[..end].split('/') {
                target = &target[part];
            }
            assert!(!target.is_null(), "unresolved reference #/components/{}", &rest[..end]);
            seen += 1;
        }
        assert!(seen > ROUTES.len());
    }
}
