//! One walk through every route of both dialects — success and error answers — shared by the OpenAPI
//! test (against the embedded server) and the IAM test (against the function binaries on the enforcing
//! local stack), so that both see the same calls.

use std::time::Duration;

use http::Method;
use kickoff::http::routes::{find, Access, Endpoint, ROUTES};
use serde_json::{json, Value};

use crate::blocks::{BlockServer, Reply};
use crate::{request, Answer};

/// Where the walk goes: the server's base URL (callback URLs point at it) and a write and a read key.
pub struct Target {
    pub base: String,
    pub write_key: String,
    pub read_key: String,
}

/// One call and its answer, by route.
pub struct Exchange {
    pub method: String,
    /// The route's path pattern (`/api/v1/pipelines/{id}`).
    pub route: String,
    pub status: u16,
    pub request: Option<Value>,
    pub answer: Value,
}

/// The calls made so far, against the server at `base`.
pub struct Calls {
    pub base: String,
    pub exchanges: Vec<Exchange>,
}

impl Calls {
    /// The id of the first run the Mage list `path` answers, polled until there is one (a minute at
    /// most: through the function binaries the worker takes a few invocations).
    pub async fn first_run(&mut self, path: &str, headers: &[(&str, &str)]) -> i64 {
        let started = std::time::Instant::now();
        loop {
            let a = self.call("GET", path, headers, None, 200).await;
            if let Some(id) = a.json["pipeline_runs"][0]["id"].as_i64() {
                return id;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "no run at {path}: {}", a.json);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Creates an active `api` schedule of the demo pipeline named `name` with `settings`, with key
    /// `headers`: its answer, id and token.
    pub async fn api_schedule(
        &mut self,
        headers: &[(&str, &str)],
        name: &str,
        settings: Value,
    ) -> (Answer, i64, String) {
        let body = json!({"pipeline_schedule": {"name": name, "schedule_type": "api", "status": "active",
                          "settings": settings}});
        let a =
            self.call("POST", "/api/pipelines/training/pipeline_schedules", headers, Some(body), 200).await;
        let id = a.json["pipeline_schedule"]["id"].as_i64().expect("schedule id");
        let token = a.json["pipeline_schedule"]["token"].as_str().expect("token").to_string();
        (a, id, token)
    }

    /// Checks that every route of the route table answered a success at least once.
    pub fn assert_every_route_succeeded(&self) {
        for route in ROUTES {
            assert!(
                self.exchanges
                    .iter()
                    .any(|e| e.route == route.path && e.method == route.method && e.status < 300),
                "{} {} was not called successfully",
                route.method,
                route.path
            );
        }
    }

    /// Calls `method path` with `headers` and `body` (JSON, or none), records the exchange, and checks
    /// the status is `expect`.
    pub async fn call(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
        expect: u16,
    ) -> Answer {
        self.call_expecting(method, path, headers, body, &[expect]).await
    }

    /// As [`Calls::call`] with a body that is not JSON (`raw`, a form); the exchange records no request.
    pub async fn call_raw(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        raw: String,
        expect: u16,
    ) -> Answer {
        let a = request(method, &format!("{}{path}", self.base), headers, raw).await;
        assert_eq!(a.status, expect, "{method} {path}: {}", String::from_utf8_lossy(&a.raw));
        self.record(method, path, None, &a);
        a
    }

    fn record(&mut self, method: &str, path: &str, body: Option<Value>, a: &Answer) {
        let bare = path.split('?').next().unwrap_or(path);
        let m: Method = method.parse().expect("method");
        let (route, _) = find(&m, bare).unwrap_or_else(|e| panic!("{method} {bare}: {e}"));
        self.exchanges.push(Exchange {
            method: method.to_string(),
            route: route.path.to_string(),
            status: a.status,
            request: body,
            answer: a.json.clone(),
        });
    }

    /// As [`Calls::call`], the status being one of `expect`.
    pub async fn call_expecting(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
        expect: &[u16],
    ) -> Answer {
        let raw = body.as_ref().map(Value::to_string).unwrap_or_default();
        let a = request(method, &format!("{}{path}", self.base), headers, raw).await;
        assert!(
            expect.contains(&a.status),
            "{method} {path}: {} {}",
            a.status,
            String::from_utf8_lossy(&a.raw)
        );
        self.record(method, path, body, &a);
        a
    }
}

/// The content type of ZenML's login form.
const FORM: &str = "application/x-www-form-urlencoded";

/// Calls every route of the route table through `target`, successes first (a pipeline with a noop and
/// an http block on `blocks`, whose callback ends it; runs of both dialects; schedules, webhooks,
/// backfills; cancels and stops), then each route's errors (no key, a read key writing, unknown ids, bad
/// input). A worker must be running the target's queue. Returns the exchanges, each checked for its
/// status.
pub async fn every_route(target: &Target, blocks: &BlockServer) -> Calls {
    blocks.script("wait", vec![Reply::status(202)]);
    let write = format!("Bearer {}", target.write_key);
    let read = format!("Bearer {}", target.read_key);
    let w = [("authorization", write.as_str())];
    let r = [("authorization", read.as_str())];
    let mut c = Calls { base: target.base.clone(), exchanges: Vec::new() };

    // ZenML dialect.
    for hydrate in ["false", "true"] {
        c.call("GET", &format!("/api/v1/pipelines?name=training&hydrate={hydrate}"), &r, None, 200).await;
    }
    let pipeline = json!({
        "name": "etl", "version": "1", "description": "extract and wait",
        "blocks": [
            {"name": "extract", "parameters": {"source": "s3://bucket"}, "executor": {"type": "noop"},
             "retries": 1, "delay_s": 2, "max_delay_s": 10, "timeout_s": 30},
            {"name": "wait", "upstream": ["extract"],
             "executor": {"type": "http", "url": format!("{}/wait", blocks.url), "timeout_s": 5}},
        ],
        // Its ends are told (a stop, a cancel and a callback's completion each owe a message).
        "notifications": [{"url": format!("{}/notify", blocks.url), "on": ["completed", "failed", "cancelled"]}]
    });
    let p = c.call("POST", "/api/v1/pipelines", &w, Some(pipeline), 200).await;
    let pipeline_id = p.json["id"].as_str().expect("pipeline id").to_string();
    for hydrate in ["false", "true"] {
        c.call("GET", &format!("/api/v1/pipelines/{pipeline_id}?hydrate={hydrate}"), &r, None, 200).await;
        c.call(
            "GET",
            &format!("/api/v1/pipeline_builds?pipeline_id={pipeline_id}&hydrate={hydrate}"),
            &r,
            None,
            200,
        )
        .await;
    }
    let b = c
        .call(
            "POST",
            "/api/v1/pipeline_builds",
            &w,
            Some(json!({"pipeline_id": pipeline_id, "executors": {"extract": {"type": "noop"}},
                        "images": {"extract": {"image": "etl:1"}}, "checksum": "abc"})),
            200,
        )
        .await;
    let build_id = b.json["id"].as_str().expect("build id").to_string();
    c.call("GET", "/api/v1/pipeline_builds?size=5", &r, None, 200).await;
    for hydrate in ["false", "true"] {
        c.call("GET", &format!("/api/v1/pipeline_builds/{build_id}?hydrate={hydrate}"), &r, None, 200).await;
    }
    let run = c
        .call(
            "POST",
            &format!("/api/v1/pipeline_builds/{build_id}/runs"),
            &w,
            Some(json!({"run_name": "openapi", "steps": {"extract": {"parameters": {"source": "s3://other"}}}})),
            200,
        )
        .await;
    let run_id = run.json["id"].as_str().expect("run id").to_string();
    // The worker reaches the http block, which answers 202: a callback ends it.
    let call = loop {
        if let Some(call) = blocks.calls().into_iter().find(|c| c.block == "wait") {
            break call;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let callback_url = call.body["callback_url"].as_str().expect("callback_url").to_string();
    let callback_path =
        callback_url.strip_prefix(&target.base).expect("a callback to this server").to_string();
    let token = format!("Bearer {}", call.body["callback_token"].as_str().expect("callback_token"));
    // Still waiting for its callback: a wait runs out (202).
    c.call("GET", &format!("/api/v1/runs/{run_id}?wait=1"), &r, None, 202).await;
    c.call(
        "POST",
        &callback_path,
        &[("authorization", "Bearer wrong")],
        Some(json!({"status": "completed"})),
        401,
    )
    .await;
    c.call(
        "POST",
        &callback_path,
        &[("authorization", token.as_str())],
        Some(json!({"status": "completed", "metrics": {"rows": 3}})),
        200,
    )
    .await;
    for hydrate in ["false", "true"] {
        c.call("GET", &format!("/api/v1/runs/{run_id}?hydrate={hydrate}"), &r, None, 200).await;
        c.call("GET", &format!("/api/v1/runs?hydrate={hydrate}&sort_by=desc:created&size=5"), &r, None, 200)
            .await;
    }
    // The run list's three ways (docs/zenml.md): a view page through the counters (`status`), one with
    // a filter tested on the runs read, and a sort with no index (every run, through the view of all).
    for query in ["status=completed", "name=contains:a&pipeline_id=", "sort_by=name"] {
        let query = if query.ends_with('=') { format!("{query}{pipeline_id}") } else { query.to_string() };
        c.call("GET", &format!("/api/v1/runs?size=5&{query}"), &r, None, 200).await;
    }
    let second = c
        .call_expecting(
            "POST",
            &format!("/api/v1/pipeline_builds/{build_id}/runs?wait=1"),
            &w,
            Some(json!({})),
            &[200, 202],
        )
        .await;
    let second_id = second.json["id"].as_str().expect("run id").to_string();
    c.call("POST", &format!("/api/v1/runs/{second_id}/stop"), &w, None, 200).await;

    // What ZenML's own client calls: connect, snapshots, a snapshot's run, a replay.
    c.call("GET", "/api/v1/info", &[], None, 200).await;
    let form = format!("grant_type=zenml-api-key&password={}", target.write_key);
    let login = c.call_raw("POST", "/api/v1/login", &[("content-type", FORM)], form, 200).await;
    assert_eq!(login.json["access_token"], target.write_key.as_str(), "{}", login.json);
    let form = format!("username=ci&password={}", target.read_key);
    c.call_raw("POST", "/api/v1/login", &[("content-type", FORM)], form, 200).await;
    c.call_raw("POST", "/api/v1/login", &[("content-type", FORM)], "password=wrong".into(), 401).await;
    for hydrate in ["false", "true"] {
        c.call("GET", &format!("/api/v1/current-user?hydrate={hydrate}"), &r, None, 200).await;
        c.call("GET", &format!("/api/v1/projects?hydrate={hydrate}"), &r, None, 200).await;
        c.call("GET", &format!("/api/v1/projects/default?hydrate={hydrate}"), &r, None, 200).await;
        c.call("GET", &format!("/api/v1/stacks?name=default&hydrate={hydrate}"), &r, None, 200).await;
        c.call("GET", &format!("/api/v1/stacks/default?hydrate={hydrate}"), &r, None, 200).await;
        let page = c
            .call(
                "GET",
                &format!("/api/v1/pipeline_snapshots?pipeline={pipeline_id}&runnable=True&named_only=True&sort_by=desc:created&hydrate={hydrate}"),
                &r,
                None,
                200,
            )
            .await;
        assert_eq!(page.json["total"], 2, "{}", page.json);
        c.call("GET", &format!("/api/v1/pipeline_snapshots/{build_id}?hydrate={hydrate}"), &r, None, 200)
            .await;
    }
    c.call("GET", "/api/v1/pipeline_snapshots?size=5&sort_by=desc:created", &r, None, 200).await;
    c.call("GET", "/api/v1/pipeline_snapshots?named_only=maybe", &r, None, 422).await;
    let by_name = c.call("GET", "/api/v1/pipeline_snapshots?pipeline=etl&size=1", &r, None, 200).await;
    assert_eq!(by_name.json["total"], 2, "{}", by_name.json);
    let project_id = c.call("GET", "/api/v1/projects/default", &r, None, 200).await.json["id"].clone();
    let project_id = project_id.as_str().expect("project id").to_string();
    c.call("GET", &format!("/api/v1/projects/{project_id}"), &r, None, 200).await;
    c.call("GET", "/api/v1/projects/other", &r, None, 404).await;
    // As ZenML's client sends it: every key of its models, unset ones null.
    let config = json!({"run_name": null, "enable_cache": null, "build": null, "schedule": null,
        "steps": {"extract": {"parameters": {"source": "s3://snapshot"}, "enable_cache": null, "outputs": {},
                              "heartbeat_healthy_threshold": 30}},
        "execution_mode": null, "secrets": null});
    // Its http block answers 202 and waits: the wait runs out (the run is stopped below).
    let snap_run = c
        .call_expecting(
            "POST",
            &format!("/api/v1/pipeline_snapshots/{build_id}/runs?wait=1"),
            &w,
            Some(json!({"run_configuration": config, "step_run": null})),
            &[200, 202],
        )
        .await;
    assert_eq!(snap_run.json["metadata"]["steps"]["extract"]["parameters"]["source"], "s3://snapshot");
    let snap_run_id = snap_run.json["id"].as_str().expect("run id").to_string();
    c.call_expecting("POST", &format!("/api/v1/runs/{snap_run_id}/stop"), &w, None, &[200, 409]).await;
    // ZenML's deprecated run templates: the build is its own template; the body is a run configuration.
    let template_run = c
        .call_expecting(
            "POST",
            &format!("/api/v1/run_templates/{build_id}/runs?wait=1"),
            &w,
            Some(
                json!({"run_name": null, "steps": {"extract": {"parameters": {"source": "s3://template"}}}}),
            ),
            &[200, 202],
        )
        .await;
    let template_run_id = template_run.json["id"].as_str().expect("run id").to_string();
    c.call_expecting("POST", &format!("/api/v1/runs/{template_run_id}/stop"), &w, None, &[200, 409]).await;
    c.call(
        "POST",
        &format!("/api/v1/pipeline_snapshots/{build_id}/runs"),
        &w,
        Some(json!({"run_configuration": {"steps": {"nope": {}}}})),
        422,
    )
    .await;
    // The callback-ended run, replayed: its completed blocks reused, nothing called again.
    let replayed = c
        .call(
            "POST",
            &format!("/api/v1/runs/{run_id}/replay?wait=20"),
            &w,
            Some(json!({"skip_successful_steps": true, "steps_to_skip": null, "run_name": "replayed"})),
            200,
        )
        .await;
    assert_eq!(replayed.json["body"]["status"], "completed", "{}", replayed.json);
    assert_eq!(replayed.json["body"]["original_run_id"], run_id.as_str());
    assert_eq!(replayed.json["resources"]["original_run"]["id"], run_id.as_str());
    assert_eq!(replayed.json["metadata"]["steps"]["wait"]["attempts"], 0, "{}", replayed.json);
    let replay_id = replayed.json["id"].as_str().expect("replay id").to_string();
    c.call("GET", &format!("/api/v1/runs/{replay_id}"), &r, None, 200).await;
    c.call(
        "POST",
        &format!("/api/v1/runs/{second_id}/replay"),
        &w,
        Some(json!({"steps_to_skip": ["wait"]})),
        422,
    )
    .await;

    // Mage dialect.
    let schedule = json!({"pipeline_schedule": {
        "name": "nightly", "description": "every night", "schedule_type": "time",
        "schedule_interval": "0 3 * * *", "timezone": "Europe/Berlin", "start_time": "2026-01-01 00:00:00",
        "status": "active", "variables": {"env": "prod"}, "sla": 3600,
        "settings": {"skip_if_previous_running": true, "allow_blocks_to_fail": false, "pipeline_run_limit": 2,
                     "timeout": 600, "timeout_status": "cancelled", "create_initial_pipeline_run": false}}});
    c.call("POST", "/api/pipelines/training/pipeline_schedules", &w, Some(schedule), 200).await;
    let (_, sid, stoken) = c.api_schedule(&w, "hook", json!({})).await;
    // A schedule with a webhook (its generated secret shown once): a GitHub push makes a run, a ping none.
    let github = json!({"webhook": {"provider": "github", "events": ["push"]}});
    let (hooked, hook_id, _) = c.api_schedule(&w, "github", github).await;
    let secret = hooked.json["pipeline_schedule"]["settings"]["webhook"]["secret"]
        .as_str()
        .expect("secret")
        .to_string();
    for (event, delivery) in [("push", "d-1"), ("ping", "d-2")] {
        let body = json!({"ref": "refs/heads/main"});
        let raw = body.to_string();
        let signature =
            format!("sha256={}", hex::encode(crate::hmac_sha256(secret.as_bytes(), raw.as_bytes())));
        let headers = [
            ("x-hub-signature-256", signature.as_str()),
            ("x-github-event", event),
            ("x-github-delivery", delivery),
        ];
        c.call("POST", &format!("/api/pipeline_schedules/{hook_id}/webhook"), &headers, Some(body), 200)
            .await;
    }
    // Payload rules and flow control (SPEC §12): a trigger no rule matches makes no run; one per key at a
    // time, a newer trigger cancelling the key's running run; the rules test route says so, writing nothing.
    let per_customer = json!({"rules": [{"when": "has(event.customer)", "variables": {"customer": "event.customer"}}],
                              "flow_control": {"key": "event.customer",
                                               "concurrency": {"per_key": 1, "on_limit": "cancel_running"}}});
    let (_, flow_id, flow_token) = c.api_schedule(&w, "per customer", per_customer).await;
    let flow_path = format!("/api/pipeline_schedules/{flow_id}/pipeline_runs/{flow_token}");
    let skipped = c.call("POST", &flow_path, &[], Some(json!({"other": 1})), 200).await;
    assert_eq!(skipped.json["skipped"], "no rule matched", "{}", skipped.json);
    for _ in 0..2 {
        c.call("POST", &flow_path, &[], Some(json!({"customer": "acme"})), 200).await;
    }
    for key in [&r, &w] {
        let t = c
            .call(
                "POST",
                &format!("/api/pipeline_schedules/{flow_id}/rules/test"),
                key,
                Some(json!({"customer": "acme"})),
                200,
            )
            .await;
        assert_eq!(t.json["rules_test"]["key"], "acme", "{}", t.json);
    }
    c.call(
        "POST",
        &format!("/api/pipeline_schedules/{flow_id}/rules/test"),
        &r,
        Some(json!({"customer": "x".repeat(300)})),
        422,
    )
    .await;
    // Debounce: the second trigger of a key merges into the first's pending run; throttle: a key's second
    // trigger inside its period, with no delay allowed, is a 429 with Retry-After.
    for (name, flow_control) in [
        ("debounced", json!({"key": "event.branch", "debounce": {"period_s": 1}})),
        (
            "throttled",
            json!({"key": "event.branch", "throttle": {"limit": 1, "period_s": 3600, "max_delay_s": 0}}),
        ),
    ] {
        let (_, id, token) = c.api_schedule(&w, name, json!({"flow_control": flow_control})).await;
        let path = format!("/api/pipeline_schedules/{id}/pipeline_runs/{token}");
        let first = c.call("POST", &path, &[], Some(json!({"branch": "main", "n": 1})), 200).await;
        if name == "debounced" {
            assert_eq!(first.json["flow_control"]["outcome"], "deferred", "{}", first.json);
            // Merged, and waited for: the worker closes the window a second on and runs the run with
            // this, the last, payload.
            let wait = format!("{path}?wait=15");
            let second = c.call("POST", &wait, &[], Some(json!({"branch": "main", "n": 2})), 200).await;
            assert_eq!(second.json["flow_control"]["outcome"], "merged", "{}", second.json);
            let run = &second.json["pipeline_run"];
            assert_eq!(run["id"], first.json["pipeline_run"]["id"]);
            assert_eq!(
                (run["status"].as_str(), &run["event_variables"]["n"]),
                (Some("completed"), &json!(2)),
                "{run}"
            );
        } else {
            assert_eq!(first.json["flow_control"]["outcome"], "new_run", "{}", first.json);
            let over = c.call("POST", &path, &[], Some(json!({"branch": "main"})), 429).await;
            assert!(over.headers.contains_key("retry-after"), "{:?}", over.headers);
        }
    }
    c.call("GET", "/api/pipelines/training/pipeline_schedules?_limit=10&_offset=0", &r, None, 200).await;
    c.call("GET", "/api/pipeline_schedules?_limit=10", &r, None, 200).await;
    c.call("GET", &format!("/api/pipeline_schedules/{sid}"), &r, None, 200).await;
    c.call(
        "PUT",
        &format!("/api/pipeline_schedules/{sid}"),
        &w,
        Some(json!({"pipeline_schedule": {"description": "github pushes", "variables": {"branch": "main"}}})),
        200,
    )
    .await;
    let t = c
        .call_expecting(
            "POST",
            &format!("/api/pipeline_schedules/{sid}/pipeline_runs/{stoken}?wait=1"),
            &[],
            Some(json!({"pipeline_run": {"variables": {"env": "dev"}}})),
            &[200, 202],
        )
        .await;
    let mage_run = t.json["pipeline_run"]["id"].as_i64().expect("run id");
    let bearer = format!("Bearer {stoken}");
    c.call(
        "POST",
        &format!("/api/pipeline_schedules/{sid}/api_trigger"),
        &[("authorization", bearer.as_str()), ("idempotency-key", "k1")],
        Some(json!({"env": "dev", "test": 1})),
        200,
    )
    .await;
    c.call_expecting(
        "POST",
        &format!("/api/pipeline_schedules/{sid}/pipeline_runs?wait=1"),
        &w,
        Some(json!({})),
        &[200, 202],
    )
    .await;
    // Until the worker has finished it (at once in process; a few invocations through the binaries).
    c.call(
        "GET",
        &format!("/api/pipeline_schedules/{sid}/api_trigger/pipeline_runs/{mage_run}?wait=25"),
        &[("authorization", bearer.as_str())],
        None,
        200,
    )
    .await;
    c.call("GET", &format!("/api/pipeline_schedules/{sid}/pipeline_runs?_limit=2&_offset=1"), &r, None, 200)
        .await;
    c.call("GET", "/api/pipeline_runs?_limit=5&status=completed", &r, None, 200).await;
    c.call("GET", "/api/pipeline_runs?pipeline_uuid=training", &r, None, 200).await;
    c.call("GET", &format!("/api/pipeline_runs/{mage_run}"), &r, None, 200).await;
    c.call("GET", &format!("/api/pipeline_runs/{mage_run}/block_runs"), &r, None, 200).await;
    // The demo's noop run has completed: cancelling it is a conflict. A run of `etl` waits on its
    // http block's callback: that one cancels.
    let cancel = json!({"pipeline_run": {"status": "cancelled"}});
    c.call("PUT", &format!("/api/pipeline_runs/{mage_run}"), &w, Some(cancel.clone()), 409).await;
    c.call("POST", &format!("/api/v1/pipeline_builds/{build_id}/runs"), &w, Some(json!({})), 200).await;
    // Once the worker has reached its http block.
    let waiting = c.first_run("/api/pipeline_runs?pipeline_uuid=etl&status=running", &r).await;
    c.call("PUT", &format!("/api/pipeline_runs/{waiting}"), &w, Some(cancel), 200).await;
    // Retries and retry_blocks: `retried` fails once and is retried; `broken` fails the run, and
    // retry_blocks from it runs it again (its second answer is a 200).
    blocks.script("retried", vec![Reply::status(500), Reply::status(200)]);
    blocks.script("broken", vec![Reply::status(400), Reply::status(200)]);
    let flaky = json!({"name": "flaky", "blocks": [
        {"name": "retried", "executor": {"type": "http", "url": format!("{}/retried", blocks.url)},
         "retries": 1, "delay_s": 1},
        {"name": "broken", "upstream": ["retried"],
         "executor": {"type": "http", "url": format!("{}/broken", blocks.url)}},
    ]});
    let p = c.call("POST", "/api/v1/pipelines", &w, Some(flaky), 200).await;
    let flaky_id = p.json["id"].as_str().expect("pipeline id").to_string();
    let b = c.call("POST", "/api/v1/pipeline_builds", &w, Some(json!({"pipeline_id": flaky_id})), 200).await;
    let flaky_build = b.json["id"].as_str().expect("build id").to_string();
    c.call("POST", &format!("/api/v1/pipeline_builds/{flaky_build}/runs"), &w, Some(json!({})), 200).await;
    let failed = c.first_run("/api/pipeline_runs?pipeline_uuid=flaky&status=failed", &r).await;
    let retry = json!({"pipeline_run": {"pipeline_run_action": "retry_blocks", "from_block_uuid": "broken"}});
    c.call("PUT", &format!("/api/pipeline_runs/{failed}"), &w, Some(retry), 200).await;
    let completed = c.first_run("/api/pipeline_runs?pipeline_uuid=flaky&status=completed", &r).await;
    assert_eq!(completed, failed, "retry_blocks completes the failed run");
    let bf = c
        .call(
            "POST",
            "/api/pipelines/training/backfills",
            &w,
            Some(json!({"backfill": {"name": "january", "start_datetime": "2026-01-01", "end_datetime": "2026-01-03",
                                     "interval_type": "day", "interval_units": 1, "variables": {"env": "dev"}}})),
            200,
        )
        .await;
    let bid = bf.json["backfill"]["id"].as_i64().expect("backfill id");
    c.call("GET", "/api/backfills?_limit=5", &r, None, 200).await;
    c.call("GET", &format!("/api/backfills/{bid}"), &r, None, 200).await;
    c.call(
        "PUT",
        &format!("/api/backfills/{bid}"),
        &w,
        Some(json!({"backfill": {"status": "initial"}})),
        200,
    )
    .await;
    c.call("DELETE", &format!("/api/backfills/{bid}"), &w, None, 200).await;
    c.call("DELETE", &format!("/api/pipeline_schedules/{sid}"), &w, None, 200).await;

    // Errors of both dialects: no key, a read key writing, unknown ids, bad input.
    for route in ROUTES {
        let path = route
            .path
            .replace("{id}", "12345")
            .replace("{pipeline_uuid}", "training")
            .replace("{token}", "nope");
        let path = if route.path.starts_with("/api/v1/") {
            path.replace("12345", "00000000-0000-0000-0000-000000000000")
        } else {
            path
        };
        let body = (route.method == "POST" || route.method == "PUT").then(|| json!({}));
        // A token route looks its schedule or block run up first: unknown ones are 404. Login without
        // a form is a 422; the open route needs nothing.
        let expect: &[u16] = match (route.access, route.endpoint) {
            (Access::Open, _) => &[200],
            (_, Endpoint::Login) => &[422],
            (Access::Token, _) => &[401, 404],
            _ => &[401],
        };
        c.call_expecting(route.method, &path, &[], body, expect).await;
    }
    c.call("POST", "/api/v1/pipelines", &r, Some(json!({"name": "x", "blocks": []})), 403).await;
    c.call(
        "POST",
        "/api/pipelines/training/pipeline_schedules",
        &r,
        Some(json!({"pipeline_schedule": {}})),
        403,
    )
    .await;
    c.call("GET", "/api/v1/pipelines/00000000-0000-0000-0000-000000000000", &r, None, 404).await;
    c.call("GET", "/api/pipeline_schedules/999999", &r, None, 404).await;
    c.call("POST", "/api/v1/pipelines", &w, Some(json!({"name": "x", "blocks": [], "color": 1})), 422).await;
    c.call(
        "POST",
        "/api/pipelines/training/pipeline_schedules",
        &w,
        Some(json!({"pipeline_schedule": {"sla": -1}})),
        422,
    )
    .await;

    c
}
