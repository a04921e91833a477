//! End to end: the seeds' worked examples through the real function binaries under
//! `cargo lambda watch` (routes mapped as API Gateway maps them, from the workspace router), on
//! DynamoDB Local and the SQS emulator.

use std::time::Duration;

use kickoff::queue::Message;
use kickoff_tests::blocks::BlockServer;
use kickoff_tests::{deploy, request, stack};
use serde_json::json;

#[tokio::test]
async fn the_seed_zenml_flow_runs_through_the_function_binaries() {
    let Some(stack) = stack("the_seed_zenml_flow_runs_through_the_function_binaries") else {
        return;
    };
    let d = deploy(&stack, "e2e-zenml").await;
    let base = &d.base;
    let auth = format!("Bearer {}", d.write_key);
    let headers = [("accept", "application/json"), ("authorization", auth.as_str())];

    // 1. GET /pipelines?name=…&version=…
    let a = request(
        "GET",
        &format!("{base}/api/v1/pipelines?hydrate=false&name=training&version=45"),
        &headers,
        "",
    )
    .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.raw));
    assert_eq!(a.json["total"], 1);
    let pipeline_id = a.json["items"][0]["id"].as_str().expect("pipeline id").to_string();

    // 2. GET /pipeline_builds?pipeline_id=…
    let a = request(
        "GET",
        &format!("{base}/api/v1/pipeline_builds?hydrate=false&logical_operator=and&page=1&size=20&pipeline_id={pipeline_id}"),
        &headers,
        "",
    )
    .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.raw));
    let build_id = a.json["items"][0]["id"].as_str().expect("build id").to_string();

    // 3. POST /pipeline_builds/{id}/runs
    let a = request(
        "POST",
        &format!("{base}/api/v1/pipeline_builds/{build_id}/runs"),
        &[
            ("accept", "application/json"),
            ("content-type", "application/json"),
            ("authorization", auth.as_str()),
        ],
        "{\n  \"steps\": {\"model_trainer\": {\"parameters\": {\"model_type\": \"rf\"}}}\n}",
    )
    .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.raw));
    assert_eq!(a.json["body"]["status"], "initializing");
    let run_uuid: uuid::Uuid = a.json["id"].as_str().and_then(|s| s.parse().ok()).expect("run uuid");

    // The run exists in the table, with the configuration applied …
    let stored = d.store.get_run(run_uuid).await.expect("get run").expect("the run is in the table");
    assert_eq!(stored.value.run.build_id.to_string(), build_id);
    let trainer = stored.value.blocks.iter().find(|b| b.block_uuid == "model_trainer").expect("block run");
    assert_eq!(trainer.parameters["model_type"], "rf");
    // … and its message is on the queue: the worker function, fed from it, runs it to completion.
    let delivered = d.pump(run_uuid, Duration::from_secs(120)).await;
    assert_eq!(delivered.first(), Some(&Message::StartRun { run_uuid }), "{delivered:?}");

    // Completed, with its block runs, in both dialects.
    let a = request("GET", &format!("{base}/api/v1/runs/{run_uuid}"), &headers, "").await;
    assert_eq!(a.json["body"]["status"], "completed", "{}", a.json);
    assert_eq!(a.json["metadata"]["steps"]["model_trainer"]["status"], "completed");
    let run_id = stored.value.run.id;
    let a = request(
        "GET",
        &format!("{base}/api/pipeline_runs/{run_id}"),
        &[("authorization", auth.as_str())],
        "",
    )
    .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.raw));
    assert_eq!(a.json["pipeline_run"]["uuid"], json!(run_uuid));
    assert_eq!(a.json["pipeline_run"]["status"], "completed");
    assert!(a.json["pipeline_run"]["completed_at"].is_string());
    let blocks = a.json["pipeline_run"]["block_runs"].as_array().expect("block runs");
    assert!(blocks.iter().all(|b| b["status"] == "completed" && b["completed_at"].is_string()), "{blocks:?}");

    // Errors come back from the binaries in ZenML's shape too.
    let a = request("GET", &format!("{base}/api/v1/pipelines"), &[], "").await;
    assert_eq!(a.status, 401);
    assert_eq!(a.json["detail"], "Not authenticated");
}

#[tokio::test]
async fn the_seed_mage_examples_run_through_the_function_binaries() {
    let Some(stack) = stack("the_seed_mage_examples_run_through_the_function_binaries") else {
        return;
    };
    let d = deploy(&stack, "e2e-mage").await;
    let base = &d.base;

    // curl --request POST --url '<host>/api/pipeline_schedules/71/pipeline_runs/<token>' --data '{"env": "dev", "test": 1}'
    let a = request(
        "POST",
        &format!("{base}/api/pipeline_schedules/71/pipeline_runs/{}", d.schedule_token),
        &[("content-type", "application/x-www-form-urlencoded")],
        "{\n\"env\": \"dev\",\n\"test\": 1\n}",
    )
    .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.raw));
    assert_eq!(a.json["pipeline_run"]["status"], "initial");
    assert_eq!(a.json["pipeline_run"]["event_variables"], json!({"env": "dev", "test": 1}));
    let uuid: uuid::Uuid =
        a.json["pipeline_run"]["uuid"].as_str().and_then(|s| s.parse().ok()).expect("uuid");
    assert!(d.store.get_run(uuid).await.expect("get").is_some(), "the run is in the table");
    let delivered = d.pump(uuid, Duration::from_secs(120)).await;
    assert_eq!(delivered.first(), Some(&Message::StartRun { run_uuid: uuid }));
    let run_id = a.json["pipeline_run"]["id"].as_i64().expect("id");
    let auth = format!("Bearer {}", d.write_key);
    let a = request(
        "GET",
        &format!("{base}/api/pipeline_runs/{run_id}/block_runs"),
        &[("authorization", auth.as_str())],
        "",
    )
    .await;
    assert_eq!(a.json["metadata"]["count"], 3);
    assert!(
        a.json["block_runs"].as_array().expect("blocks").iter().all(|b| b["status"] == "completed"),
        "{}",
        a.json
    );
    let a =
        request("GET", &format!("{base}/api/v1/runs/{uuid}"), &[("authorization", auth.as_str())], "").await;
    assert_eq!(a.json["body"]["status"], "completed");
    assert_eq!(a.json["metadata"]["event_variables"], json!({"env": "dev", "test": 1}));

    // Twenty-one more (one through api_trigger with an Idempotency-Key sent twice).
    for i in 0..20 {
        let a = request(
            "POST",
            &format!("{base}/api/pipeline_schedules/71/pipeline_runs/{}", d.schedule_token),
            &[],
            json!({"n": i}).to_string(),
        )
        .await;
        assert_eq!(a.status, 200);
    }
    let bearer = format!("Bearer {}", d.schedule_token);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let a = request(
            "POST",
            &format!("{base}/api/pipeline_schedules/71/api_trigger"),
            &[("authorization", bearer.as_str()), ("idempotency-key", "delivery-7")],
            r#"{"n": 21}"#,
        )
        .await;
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.raw));
        ids.push(a.json["pipeline_run"]["id"].clone());
    }
    assert_eq!(ids[0], ids[1], "a repeated Idempotency-Key answers the same run");

    // curl --request GET --url '<host>/api/pipeline_schedules/71/pipeline_runs?api_key=<key>' --header 'Authorization: Bearer …'
    let list = |limit: usize, offset: usize| {
        format!(
            "{base}/api/pipeline_schedules/71/pipeline_runs?api_key={}&_limit={limit}&_offset={offset}",
            d.write_key
        )
    };
    let a = request(
        "GET",
        &format!("{base}/api/pipeline_schedules/71/pipeline_runs?api_key={}", d.write_key),
        &[("authorization", "Bearer ZKXScwLKLZUujbw7vwMeWnhtTTSLqifw8_RnBHYipww")],
        "",
    )
    .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.raw));
    assert_eq!(a.json["metadata"], json!({"count": 22, "next": false}));
    for (limit, offset, len, next) in
        [(10, 0, 10, true), (10, 10, 10, true), (10, 20, 2, false), (5, 22, 0, false)]
    {
        let a = request("GET", &list(limit, offset), &[], "").await;
        assert_eq!(a.json["metadata"], json!({"count": 22, "next": next}), "limit {limit} offset {offset}");
        assert_eq!(a.json["pipeline_runs"].as_array().expect("runs").len(), len);
    }
    let a = request(
        "POST",
        &format!("{base}/api/pipeline_schedules/71/pipeline_runs/0123456789abcdef0123456789abcdef"),
        &[],
        "{}",
    )
    .await;
    assert_eq!(a.status, 401);
    assert_eq!(a.json["error"]["code"], 401);
}

/// A `lambda` block invoking a function served by cargo lambda watch, then an `http` block, run by the
/// worker function; a failing lambda block fails the run.
#[tokio::test]
async fn lambda_and_http_blocks_run_through_the_worker_function() {
    let Some(stack) = stack("lambda_and_http_blocks_run_through_the_worker_function") else { return };
    let d = deploy(&stack, "e2e-blocks").await;
    let server = BlockServer::start().await;
    let auth = format!("Bearer {}", d.write_key);
    let h = [("authorization", auth.as_str())];
    let pipeline = json!({
        "name": "lambda-then-http",
        "blocks": [
            {"name": "load", "parameters": {"table": "events", "fail": false}, "executor": {"type": "lambda", "function": "echo-block"}},
            {"name": "notify", "upstream": ["load"], "executor": {"type": "http", "url": format!("{}/notify", server.url)}}
        ]
    });
    let a = request("POST", &format!("{}/api/v1/pipelines", d.base), &h, pipeline.to_string()).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.raw));
    let pid = a.json["id"].as_str().expect("id").to_string();
    let a = request("GET", &format!("{}/api/v1/pipeline_builds?pipeline_id={pid}", d.base), &h, "").await;
    let build = a.json["items"][0]["id"].as_str().expect("build").to_string();

    let a = request("POST", &format!("{}/api/v1/pipeline_builds/{build}/runs", d.base), &h, "{}").await;
    let run: uuid::Uuid = a.json["id"].as_str().and_then(|s| s.parse().ok()).expect("run");
    d.pump(run, Duration::from_secs(120)).await;
    let detail = d.store.get_run(run).await.expect("get").expect("run").value;
    assert_eq!(detail.run.status, kickoff::domain::RunStatus::Completed, "{detail:#?}");
    assert_eq!(
        detail.blocks[0].metrics.as_ref().map(|m| m["echoed"].clone()),
        Some(json!("load")),
        "the function answered"
    );
    assert_eq!(server.attempts(), [("notify".to_string(), 1)]);
    let call = server.calls().remove(0);
    assert!(call.headers.contains_key("webhook-signature"));
    assert!(call.body["callback_url"].as_str().expect("url").starts_with(&d.base));

    let a = request(
        "POST",
        &format!("{}/api/v1/pipeline_builds/{build}/runs", d.base),
        &h,
        r#"{"steps": {"load": {"parameters": {"fail": true}}}}"#,
    )
    .await;
    let run: uuid::Uuid = a.json["id"].as_str().and_then(|s| s.parse().ok()).expect("run");
    d.pump(run, Duration::from_secs(120)).await;
    let detail = d.store.get_run(run).await.expect("get").expect("run").value;
    assert_eq!(detail.run.status, kickoff::domain::RunStatus::Failed);
    assert_eq!(detail.blocks[1].status, kickoff::domain::BlockRunStatus::Cancelled);
    assert_eq!(server.attempts().len(), 1, "notify is not called after load failed");
}
