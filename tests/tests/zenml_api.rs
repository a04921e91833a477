//! The ZenML dialect through the embedded server's real HTTP surface (in-memory store and queue):
//! the seed's worked example, every route, and the bad input of issue #2.

use kickoff_tests::{request, spawn_app, Answer, Server};
use serde_json::{json, Value};

async fn get(s: &Server, path: &str) -> Answer {
    request("GET", &s.url(path), &[("accept", "application/json"), ("authorization", &s.auth())], "").await
}

async fn post(s: &Server, path: &str, body: &str) -> Answer {
    request(
        "POST",
        &s.url(path),
        &[("content-type", "application/json"), ("authorization", &s.auth())],
        body.to_string(),
    )
    .await
}

/// Counts of everything a request could change.
async fn snapshot(s: &Server) -> (usize, usize, usize, usize) {
    (
        s.app.store.list_pipelines().await.unwrap().len(),
        s.app.store.list_builds().await.unwrap().len(),
        s.app.store.list_runs().await.unwrap().len(),
        s.queue.len().await,
    )
}

#[tokio::test]
async fn the_seed_worked_example_triggers_a_run_with_its_configuration() {
    let s = spawn_app().await;
    // 1. Find the pipeline by name and version.
    let a = get(&s, "/api/v1/pipelines?hydrate=false&name=training&version=45").await;
    assert_eq!(a.status, 200, "{:?}", a.json);
    assert_eq!(a.json["total"], 1);
    assert_eq!(a.json["index"], 1);
    assert_eq!(a.json["max_size"], 20);
    assert_eq!(a.json["total_pages"], 1);
    let p = &a.json["items"][0];
    assert_eq!(p["name"], "training");
    assert_eq!(p["body"]["version"], "45");
    assert!(p["metadata"].is_null(), "lists are not hydrated");
    let pipeline_id = p["id"].as_str().unwrap().to_string();

    // 2. Find its build.
    let a = get(
        &s,
        &format!("/api/v1/pipeline_builds?hydrate=false&logical_operator=and&page=1&size=20&pipeline_id={pipeline_id}"),
    )
    .await;
    assert_eq!(a.status, 200, "{:?}", a.json);
    assert_eq!(a.json["total"], 1);
    let build_id = a.json["items"][0]["id"].as_str().unwrap().to_string();
    let created = a.json["items"][0]["body"]["created"].as_str().unwrap();
    assert_eq!(created.len(), "2024-05-01T10:00:00.123456".len(), "ZenML time format: {created}");

    // 3. Run it with a different configuration.
    assert_eq!(s.queue.len().await, 0);
    let a = post(
        &s,
        &format!("/api/v1/pipeline_builds/{build_id}/runs"),
        r#"{
  "steps": {"model_trainer": {"parameters": {"model_type": "rf"}}}
}"#,
    )
    .await;
    assert_eq!(a.status, 200, "{:?}", a.json);
    assert_eq!(a.json["body"]["status"], "initializing");
    assert_eq!(a.json["body"]["build_id"], build_id.as_str());
    let steps = &a.json["metadata"]["steps"];
    assert_eq!(steps["model_trainer"]["parameters"]["model_type"], "rf");
    assert_eq!(steps["data_loader"]["status"], "initializing");
    assert_eq!(a.json["metadata"]["config"]["steps"]["model_trainer"]["parameters"]["model_type"], "rf");
    assert!(a.json["name"].as_str().unwrap().starts_with("training-"));

    // The run is stored with its block runs, queued once, and not executed.
    let run_id = a.json["id"].as_str().unwrap();
    let stored = s.app.store.get_run(run_id.parse().unwrap()).await.unwrap().expect("stored run");
    assert_eq!(stored.value.blocks.len(), 3);
    assert!(stored.value.blocks.iter().all(|b| b.status.as_str() == "initial"));
    assert_eq!(s.queue.len().await, 1, "one queue message per trigger");

    // And it is readable by id and in the list.
    let a = get(&s, &format!("/api/v1/runs/{run_id}")).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json["metadata"]["steps"]["model_trainer"]["parameters"]["model_type"], "rf");
    let a = get(&s, &format!("/api/v1/runs?build_id={build_id}&status=initializing")).await;
    assert_eq!(a.json["total"], 1, "{:?}", a.json);
}

#[tokio::test]
async fn pipelines_builds_and_runs_can_be_created_listed_and_stopped() {
    let s = spawn_app().await;
    let body = json!({
        "name": "etl",
        "description": "nightly",
        "blocks": [
            {"name": "extract", "executor": {"type": "noop"}, "parameters": {"source": "s3"}},
            {"name": "load", "upstream": ["extract"], "executor": {"type": "http", "url": "https://example.com/load"}}
        ]
    });
    let a = post(&s, "/api/v1/pipelines", &body.to_string()).await;
    assert_eq!(a.status, 200, "{:?}", a.json);
    assert_eq!(a.json["body"]["version"], "1", "the first version defaults to 1");
    assert_eq!(a.json["metadata"]["description"], "nightly");
    let pid = a.json["id"].as_str().unwrap().to_string();
    let a = post(&s, "/api/v1/pipelines", &body.to_string()).await;
    assert_eq!(a.json["body"]["version"], "2", "then one past the newest");
    let mut v5 = body.clone();
    v5["version"] = json!("2");
    let a = post(&s, "/api/v1/pipelines", &v5.to_string()).await;
    assert_eq!(a.status, 409, "{:?}", a.json);
    assert_eq!(a.json["detail"][0], "EntityExistsError");

    // Get by id is hydrated by default.
    let a = get(&s, &format!("/api/v1/pipelines/{pid}")).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json["metadata"]["spec"][0]["name"], "extract");
    let a = get(&s, &format!("/api/v1/pipelines/{pid}?hydrate=false")).await;
    assert!(a.json["metadata"].is_null());

    // Filters, sorting, paging.
    let a = get(&s, "/api/v1/pipelines?name=etl&sort_by=desc:version").await;
    assert_eq!(a.json["total"], 2);
    assert_eq!(a.json["items"][0]["body"]["version"], "2");
    let a = get(&s, "/api/v1/pipelines?name=startswith:tr").await;
    assert_eq!(a.json["total"], 1);
    let a = get(&s, "/api/v1/pipelines?size=1&page=3&sort_by=created").await;
    assert_eq!(a.json["total_pages"], 3);
    assert_eq!(a.json["items"].as_array().unwrap().len(), 1);
    let a = get(&s, "/api/v1/pipelines?name=etl&version=45&logical_operator=or").await;
    assert_eq!(a.json["total"], 3, "{:?}", a.json);

    // A new build with another executor for one block.
    let a = post(
        &s,
        "/api/v1/pipeline_builds",
        &json!({"pipeline_id": pid, "executors": {"load": {"type": "noop"}}, "checksum": "abc"}).to_string(),
    )
    .await;
    assert_eq!(a.status, 200, "{:?}", a.json);
    assert_eq!(a.json["metadata"]["blocks"][1]["executor"]["type"], "noop");
    assert_eq!(a.json["metadata"]["pipeline"]["id"], pid.as_str());
    let bid = a.json["id"].as_str().unwrap().to_string();
    let a = get(&s, &format!("/api/v1/pipeline_builds?pipeline_id={pid}&sort_by=desc:created")).await;
    assert_eq!(a.json["total"], 2);
    assert_eq!(a.json["items"][0]["id"], bid.as_str());
    let a = get(&s, &format!("/api/v1/pipeline_builds/{bid}")).await;
    assert_eq!(a.json["metadata"]["checksum"], "abc");
    let a = post(
        &s,
        "/api/v1/pipeline_builds",
        &json!({"pipeline_id": pid, "executors": {"nope": {"type": "noop"}}}).to_string(),
    )
    .await;
    assert_eq!(a.status, 422);
    assert!(a.json["detail"][1].as_str().unwrap().contains("extract, load"), "{:?}", a.json);

    // Run with a name template, then stop it.
    let a = post(
        &s,
        &format!("/api/v1/pipeline_builds/{bid}/runs"),
        r#"{"run_name": "nightly-{date}", "tags": ["x"]}"#,
    )
    .await;
    assert_eq!(a.status, 200, "{:?}", a.json);
    let name = a.json["name"].as_str().unwrap();
    assert!(name.starts_with("nightly-2") && !name.contains('{'), "{name}");
    assert_eq!(a.json["metadata"]["steps"]["extract"]["parameters"]["source"], "s3", "defaults apply");
    let rid = a.json["id"].as_str().unwrap().to_string();
    let a = post(&s, &format!("/api/v1/runs/{rid}/stop"), "").await;
    assert_eq!(a.status, 200, "{:?}", a.json);
    assert_eq!(a.json["body"]["status"], "stopped");
    assert_eq!(a.json["metadata"]["steps"]["extract"]["status"], "stopped");
    let a = post(&s, &format!("/api/v1/runs/{rid}/stop"), "").await;
    assert_eq!(a.status, 409, "a finished run cannot be stopped again");
    let a = get(&s, "/api/v1/runs?status=stopped").await;
    assert_eq!(a.json["total"], 1);
    let a = get(&s, "/api/v1/runs?status=initializing").await;
    assert_eq!(a.json["total"], 0);
    let a = get(&s, "/api/v1/runs?hydrate=true").await;
    assert_eq!(a.json["items"][0]["metadata"]["steps"]["load"]["name"], "load");
}

/// Each case: (method, path, auth, body, expected status, text the answer must contain).
#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_changes_nothing() {
    let s = spawn_app().await;
    let (build, pipeline) = {
        let b = s.app.store.list_builds().await.unwrap().remove(0);
        (b.id.to_string(), b.pipeline_id.to_string())
    };
    let trigger = format!("/api/v1/pipeline_builds/{build}/runs");
    let write = s.auth();
    let read = s.read_auth();
    let big = format!("{{\"run_name\": \"{}\"}}", "x".repeat(300 * 1024));
    let good_pipeline = r#"{"name":"p","blocks":[{"name":"a","executor":{"type":"noop"}}]}"#;
    let cases: Vec<(&str, String, Option<&str>, String, u16, &str)> = vec![
        ("GET", "/api/v1/pipelines".into(), None, "".into(), 401, "Not authenticated"),
        ("GET", "/api/v1/pipelines".into(), Some("Bearer kk_wrong"), "".into(), 401, "Invalid API key"),
        ("GET", "/api/v1/pipelines".into(), Some("Basic abc"), "".into(), 401, "Not authenticated"),
        ("POST", "/api/v1/pipelines".into(), Some(&read), good_pipeline.into(), 403, "read role"),
        ("POST", trigger.clone(), Some(&read), "{}".into(), 403, "read role"),
        ("POST", "/api/v1/pipelines".into(), Some(&write), "{\"name\": ".into(), 400, "line 1 column"),
        ("POST", "/api/v1/pipelines".into(), Some(&write), "[1, 2]".into(), 400, "JSON object"),
        ("POST", "/api/v1/pipelines".into(), Some(&write), r#"{"name":"p","blocks":[],"color":"red"}"#.into(), 422, "color"),
        ("POST", "/api/v1/pipelines".into(), Some(&write), r#"{"name":5,"blocks":[]}"#.into(), 422, "name"),
        ("POST", "/api/v1/pipelines".into(), Some(&write), r#"{"name":"p","blocks":[{"name":"a","executor":{"type":"noop"},"retries":"x"}]}"#.into(), 422, "blocks[0].retries"),
        ("POST", "/api/v1/pipelines".into(), Some(&write), r#"{"name":"p","blocks":[{"name":"a","upstream":["b"],"executor":{"type":"noop"}},{"name":"b","upstream":["a"],"executor":{"type":"noop"}}]}"#.into(), 422, "cycle"),
        ("POST", "/api/v1/pipelines".into(), Some(&write), r#"{"name":"p","blocks":[{"name":"a","upstream":["zz"],"executor":{"type":"noop"}}]}"#.into(), 422, "unknown upstream"),
        ("POST", "/api/v1/pipelines".into(), Some(&write), r#"{"name":"p","blocks":[{"name":"a","executor":{"type":"noop"}},{"name":"a","executor":{"type":"noop"}}]}"#.into(), 422, "duplicate"),
        ("POST", "/api/v1/pipelines".into(), Some(&write), r#"{"name":"p","blocks":[{"name":"a b","executor":{"type":"noop"}}]}"#.into(), 422, "invalid block name"),
        ("POST", "/api/v1/pipelines".into(), Some(&write), r#"{"name":"p q","blocks":[{"name":"a","executor":{"type":"noop"}}]}"#.into(), 422, "pipeline name"),
        ("POST", "/api/v1/pipelines".into(), Some(&write), r#"{"name":"p","blocks":[{"name":"a","executor":{"type":"http","url":"ftp://x"}}]}"#.into(), 422, "executor.url"),
        ("POST", "/api/v1/pipelines".into(), Some(&write), big.clone(), 413, "limit"),
        ("POST", trigger.clone(), Some(&write), r#"{"steps":{"nope":{"parameters":{}}}}"#.into(), 422, "data_loader, model_trainer, model_evaluator"),
        ("POST", trigger.clone(), Some(&write), r#"{"steps":{"model_trainer":{"parameters":{"depth":3}}}}"#.into(), 422, "model_type"),
        ("POST", trigger.clone(), Some(&write), r#"{"steps":{"model_trainer":{"params":{}}}}"#.into(), 422, "params"),
        ("POST", trigger.clone(), Some(&write), r#"{"build":"x"}"#.into(), 422, "build"),
        ("POST", trigger.clone(), Some(&write), r#"{"schedule":{"cron_expression":"* * * * *"}}"#.into(), 422, "schedule"),
        ("POST", trigger.clone(), Some(&write), r#"{"colour":1}"#.into(), 422, "colour"),
        ("POST", trigger.clone(), Some(&write), r#"{"enable_cache":"yes"}"#.into(), 422, "enable_cache"),
        ("POST", trigger.clone(), Some(&write), "not json".into(), 400, "line 1 column"),
        ("POST", trigger.clone(), Some(&write), big.clone(), 413, "limit"),
        ("POST", "/api/v1/pipeline_builds/not-a-uuid/runs".into(), Some(&write), "{}".into(), 422, "UUID"),
        ("POST", format!("/api/v1/pipeline_builds/{}/runs", uuid::Uuid::new_v4()), Some(&write), "{}".into(), 404, "No build"),
        ("POST", "/api/v1/pipeline_builds".into(), Some(&write), r#"{"pipeline_id":"nope"}"#.into(), 422, "pipeline_id"),
        ("POST", "/api/v1/pipeline_builds".into(), Some(&write), format!(r#"{{"pipeline_id":"{}"}}"#, uuid::Uuid::new_v4()), 404, "No pipeline"),
        ("GET", "/api/v1/pipelines?page=0".into(), Some(&read), "".into(), 422, "page"),
        ("GET", "/api/v1/pipelines?size=0".into(), Some(&read), "".into(), 422, "size"),
        ("GET", "/api/v1/pipelines?size=100000".into(), Some(&read), "".into(), 422, "size"),
        ("GET", "/api/v1/pipelines?page=9".into(), Some(&read), "".into(), 400, "Invalid page"),
        ("GET", "/api/v1/pipelines?sort_by=colour".into(), Some(&read), "".into(), 422, "sort_by"),
        ("GET", "/api/v1/runs?sort_by=desc:nope".into(), Some(&read), "".into(), 422, "sort_by"),
        ("GET", "/api/v1/runs?created=gt:yesterday".into(), Some(&read), "".into(), 422, "created"),
        ("GET", "/api/v1/pipelines/not-a-uuid".into(), Some(&read), "".into(), 422, "UUID"),
        ("GET", format!("/api/v1/pipelines/{}", uuid::Uuid::new_v4()), Some(&read), "".into(), 404, "No pipeline"),
        ("GET", "/api/v1/pipeline_builds/123".into(), Some(&read), "".into(), 422, "UUID"),
        ("GET", format!("/api/v1/runs/{}", uuid::Uuid::new_v4()), Some(&read), "".into(), 404, "No run"),
        ("POST", format!("/api/v1/runs/{}/stop", uuid::Uuid::new_v4()), Some(&write), "".into(), 404, "No run"),
        ("GET", "/api/v1/nothing".into(), Some(&read), "".into(), 404, "no route"),
        ("DELETE", format!("/api/v1/pipelines/{pipeline}"), Some(&write), "".into(), 405, "not allowed"),
    ];
    let before = snapshot(&s).await;
    for (method, path, auth, body, status, text) in cases {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(a) = auth {
            headers.push(("authorization", a));
        }
        let a = request(method, &s.url(&path), &headers, body).await;
        let shown = String::from_utf8_lossy(&a.raw).to_string();
        assert_eq!(a.status, status, "{method} {path}: {shown}");
        assert!(shown.contains(text), "{method} {path}: {shown:.300} should mention {text:?}");
        // Every error has ZenML's body.
        let detail = &a.json["detail"];
        if status == 401 && text == "Not authenticated" {
            assert_eq!(detail, &Value::String("Not authenticated".into()));
        } else {
            assert!(detail.is_array() && detail.as_array().unwrap().len() == 2, "{shown:.300}");
        }
        if status == 401 {
            assert_eq!(a.headers.get("www-authenticate").map(|v| v.to_str().unwrap()), Some("Bearer"));
        }
        assert_eq!(snapshot(&s).await, before, "{method} {path} changed stored data");
    }
}

/// Key lifecycle (issue #19): a revoked key is refused within the 5 s a warm process trusts a key it
/// found, an expired key at once, and neither is remembered.
#[tokio::test]
async fn a_revoked_key_is_refused_within_five_seconds_and_an_expired_one_at_once() {
    use kickoff::clock::{Clock, ManualClock};
    use kickoff::domain::{ApiKey, Role};
    use kickoff::http::{routes::serve, ApiRequest};
    use std::sync::Arc;
    let clock = Arc::new(ManualClock::default());
    let (app, _) = kickoff::App::memory();
    let app = kickoff::App { clock: clock.clone(), ..app };
    let now = clock.now();
    let (secret, mut key) = ApiKey::generate(Role::Read, "laptop", now);
    app.store.put_api_key(&key).await.unwrap();
    let (soon, mut expiring) = ApiKey::generate(Role::Read, "temp", now);
    expiring.expires_at = Some(now + chrono::Duration::seconds(2));
    app.store.put_api_key(&expiring).await.unwrap();
    let status = |secret: String| {
        let app = app.clone();
        async move {
            let mut h = http::HeaderMap::new();
            h.insert("authorization", format!("Bearer {secret}").parse().unwrap());
            serve(&app, ApiRequest::new(http::Method::GET, "/api/v1/pipelines", h, bytes::Bytes::new()))
                .await
                .status
                .as_u16()
        }
    };
    assert_eq!(status(secret.clone()).await, 200);
    assert_eq!(status(soon.clone()).await, 200);
    key.revoked_at = Some(clock.now());
    app.store.put_api_key(&key).await.unwrap();
    clock.advance(chrono::Duration::seconds(3));
    assert_eq!(status(soon.clone()).await, 401, "expired: refused at once, though it was remembered");
    assert_eq!(status(secret.clone()).await, 200, "a warm process trusts what it found for up to 5 s");
    clock.advance(chrono::Duration::seconds(3));
    assert_eq!(status(secret.clone()).await, 401, "revoked: refused within 5 s");
    assert_eq!(status(secret).await, 401, "and not remembered");
}

#[tokio::test]
async fn a_replay_takes_the_originals_inputs_with_step_input_overrides_over_them() {
    let s = spawn_app().await;
    let a = get(&s, "/api/v1/pipeline_snapshots?pipeline=training&size=1").await;
    assert_eq!(a.status, 200, "{:?}", a.json);
    let snapshot_id = a.json["items"][0]["id"].as_str().expect("snapshot id").to_string();
    let body = json!({"run_configuration": {"steps": {"model_trainer": {"parameters": {"model_type": "rf"}}}},
                      "step_run": null});
    let a = post(&s, &format!("/api/v1/pipeline_snapshots/{snapshot_id}/runs"), &body.to_string()).await;
    assert_eq!(a.status, 200, "{:?}", a.json);
    let original = a.json["id"].as_str().expect("run id").to_string();
    let replay = format!("/api/v1/runs/{original}/replay");

    // No overrides: the original's inputs.
    let a = post(&s, &replay, "{}").await;
    assert_eq!(a.status, 200, "{:?}", a.json);
    assert_eq!(a.json["metadata"]["steps"]["model_trainer"]["parameters"]["model_type"], "rf");
    assert_eq!(a.json["body"]["original_run_id"], original.as_str());

    // Default overrides, then the step's own over them.
    let body = json!({
        "step_default_input_overrides": {"model_trainer": {"model_type": "svm"}},
        "step_input_overrides": {"model_trainer": {"model_type": "xgb"}}
    });
    let a = post(&s, &replay, &body.to_string()).await;
    assert_eq!(a.status, 200, "{:?}", a.json);
    assert_eq!(
        a.json["metadata"]["steps"]["model_trainer"]["parameters"]["model_type"], "xgb",
        "{:?}",
        a.json
    );
    let a = post(
        &s,
        &replay,
        &json!({"step_default_input_overrides": {"model_trainer": {"model_type": "svm"}}}).to_string(),
    )
    .await;
    assert_eq!(
        a.json["metadata"]["steps"]["model_trainer"]["parameters"]["model_type"], "svm",
        "{:?}",
        a.json
    );

    // An input the block does not declare, a step that is not there, a step to skip that did not
    // complete: each a 422 that writes nothing.
    let before = snapshot(&s).await;
    for body in [
        json!({"step_input_overrides": {"model_trainer": {"learning_rate": 0.1}}}),
        json!({"step_input_overrides": {"nope": {"model_type": "rf"}}}),
        json!({"steps_to_skip": ["model_trainer"]}),
        json!({"skip_successful_steps": "yes"}),
    ] {
        let a = post(&s, &replay, &body.to_string()).await;
        assert_eq!(a.status, 422, "{body}: {:?}", a.json);
        assert_eq!(a.json["detail"][0], "ValidationError", "{body}: {:?}", a.json);
    }
    assert_eq!(snapshot(&s).await, before, "a refused replay changed stored data");
}

/// `GET /api/v1/runs` reads pages of the run list views (issue #22): every filter people page by, and
/// the free-form ones tested on the runs read, both orders, page after page as ZenML's `depaginate`
/// does (`total_pages` read anew each page) — each the same runs as filtering every run would give.
#[tokio::test]
async fn the_run_list_pages_through_its_filters_as_reading_every_run_would() {
    let s = spawn_app().await;
    let build = kickoff::trigger::newest_build(&s.app, kickoff::demo::PIPELINE_NAME).await.unwrap();
    let mut made = Vec::new();
    for i in 0..23 {
        let a = post(&s, &format!("/api/v1/pipeline_builds/{}/runs", build.id), "{}").await;
        assert_eq!(a.status, 200, "{:?}", a.json);
        let id = a.json["id"].as_str().unwrap().to_string();
        if i % 3 == 1 {
            assert_eq!(post(&s, &format!("/api/v1/runs/{id}/stop"), "").await.status, 200);
        }
        made.push(id);
    }
    let runs = s.app.store.list_runs().await.unwrap();
    let mut all: Vec<&kickoff::domain::Run> = runs.iter().collect();
    all.sort_by_key(|r| (r.created, r.uuid));
    assert_eq!(all.iter().map(|r| r.uuid.to_string()).collect::<Vec<_>>(), made, "created in order");
    let tenth = all[9].created.format("%Y-%m-%dT%H:%M:%S%.6f").to_string();
    let stopped = |r: &&kickoff::domain::Run| r.status == kickoff::domain::RunStatus::Cancelled;
    type Keep = Box<dyn Fn(&&kickoff::domain::Run) -> bool>;
    let t = all[9].created;
    let cases: Vec<(String, Keep, bool)> = vec![
        (String::new(), Box::new(|_| true), true),
        ("status=stopped".into(), Box::new(stopped), true),
        ("status=initializing".into(), Box::new(move |r| !stopped(r)), true),
        ("status=bogus".into(), Box::new(|_| false), true),
        (format!("pipeline_id={}", build.pipeline_id), Box::new(|_| true), false),
        (format!("pipeline_id={}", uuid::Uuid::new_v4()), Box::new(|_| false), false),
        (format!("build_id={}&status=stopped", build.id), Box::new(stopped), false),
        (format!("created=gte:{tenth}"), Box::new(move |r| r.created >= t), false),
        (
            format!("created=lt:{tenth}&status=initializing"),
            Box::new(move |r| r.created < t && !stopped(r)),
            false,
        ),
        (format!("created=gt:{tenth}&created=lte:{tenth}"), Box::new(|_| false), false),
        ("name=contains:nightly".into(), Box::new(|r| r.name.contains("nightly")), false),
        ("name=contains:no-such-name".into(), Box::new(|_| false), false),
        ("status=stopped&sort_by=updated".into(), Box::new(stopped), true),
        (
            format!("logical_operator=or&status=stopped&created=lt:{tenth}"),
            Box::new(move |r| stopped(r) || r.created < t),
            false,
        ),
    ];
    for (query, keep, exact) in cases {
        for desc in [false, true] {
            let mut want: Vec<String> = all.iter().filter(|r| keep(r)).map(|r| r.uuid.to_string()).collect();
            if desc {
                want.reverse();
            }
            for size in [1, 4, 23, 50] {
                let mut got = Vec::new();
                let mut page = 1;
                loop {
                    let sort = if desc { "&sort_by=desc:created" } else { "" };
                    let a = get(&s, &format!("/api/v1/runs?size={size}&page={page}&{query}{sort}")).await;
                    assert_eq!(a.status, 200, "{query} size {size} page {page}: {:?}", a.json);
                    got.extend(
                        a.json["items"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|r| r["id"].as_str().unwrap().to_string()),
                    );
                    if exact {
                        assert_eq!(a.json["total"], want.len(), "{query}: exact total");
                    }
                    if a.json["index"].as_u64() >= a.json["total_pages"].as_u64() {
                        break;
                    }
                    page += 1;
                }
                assert_eq!(got, want, "{query}, desc {desc}, size {size}");
            }
        }
    }
}

/// Sorted by a field no view is ordered by, the run list sorts the newest `SORT_WINDOW` runs (a bounded
/// read, docs/zenml.md): as sorting every run would while the history is within it, and without the
/// oldest runs past it.
#[tokio::test]
async fn a_run_list_sorted_by_name_sorts_the_newest_window_of_runs() {
    use kickoff::http::zenml::run_list::SORT_WINDOW;
    let s = spawn_app().await;
    let build = kickoff::trigger::newest_build(&s.app, kickoff::demo::PIPELINE_NAME).await.unwrap();
    let start = chrono::Utc::now() - chrono::Duration::hours(1);
    for i in 0..SORT_WINDOW + 5 {
        let at = start + chrono::Duration::milliseconds(i as i64);
        let mut run = kickoff_tests::bench_run(&build, at);
        run.created = at;
        run.name = format!("run-{:05}", (i * 7919) % (SORT_WINDOW + 5));
        s.app.store.create_run(&mut run, &mut [], None, |r, _| r.id += 1).await.unwrap();
    }
    let mut all = s.app.store.list_runs().await.unwrap();
    let oldest: Vec<String> = all.iter().take(5).map(|r| r.uuid.to_string()).collect();
    all.drain(..5);
    all.sort_by(|a, b| b.name.cmp(&a.name).then(b.uuid.to_string().cmp(&a.uuid.to_string())));
    let a = get(&s, "/api/v1/runs?sort_by=desc:name&size=50").await;
    assert_eq!(a.status, 200, "{:?}", a.json);
    assert_eq!(a.json["total"], SORT_WINDOW, "the window's runs, not the history's");
    let got: Vec<String> =
        a.json["items"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    let want: Vec<String> = all.iter().take(50).map(|r| r.uuid.to_string()).collect();
    assert_eq!(got, want);
    let a = get(&s, &format!("/api/v1/runs?sort_by=name&size=1000&page={}", SORT_WINDOW / 1000)).await;
    assert_eq!(a.status, 200, "{:?}", a.json);
    for item in a.json["items"].as_array().unwrap() {
        assert!(
            !oldest.contains(&item["id"].as_str().unwrap().to_string()),
            "the oldest runs are past the window"
        );
    }
}
