//! End to end: the seed's three ZenML calls through the real function binaries under
//! `cargo lambda watch` (routes mapped as API Gateway maps them, from the workspace router), on
//! DynamoDB Local and the SQS emulator. The run must be in the table and its message on the queue.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kickoff::domain::{ApiKey, Role};
use kickoff::queue::sqs::SqsQueue;
use kickoff::queue::{Message, RunQueue};
use kickoff::store::Store;
use kickoff::App;
use kickoff_tests::{free_port, request, stack, workspace_root, ChildGroup};

#[tokio::test]
async fn the_seed_zenml_flow_runs_through_the_function_binaries() {
    let Some(stack) = stack("the_seed_zenml_flow_runs_through_the_function_binaries") else {
        return;
    };
    let table = stack.new_table("e2e").await;
    let table_name = table.table_name().to_string();
    let queue_url = stack.new_queue("e2e").await;
    let store = Store::new(Arc::new(table));

    // The deployment's data: a write key (as `kickoff api-key create` makes it) and the demo pipeline.
    let (app, _) = App::memory();
    let app = App {
        store: store.clone(),
        ..app
    };
    let (secret, key) = ApiKey::generate(Role::Write, "e2e", app.clock.now());
    store.put_api_key(&key).await.expect("key");
    kickoff::demo::seed(&app).await.expect("seed");

    let port = free_port();
    let mut cmd = std::process::Command::new("cargo");
    cmd.current_dir(workspace_root()).args([
        "lambda",
        "watch",
        "--ignore-changes",
        "--invoke-address",
        "127.0.0.1",
        "--invoke-port",
        &port.to_string(),
    ]);
    for (k, v) in [
        ("KICKOFF_TABLE", table_name.as_str()),
        ("KICKOFF_QUEUE_URL", queue_url.as_str()),
        ("AWS_ENDPOINT_URL_DYNAMODB", stack.dynamodb.as_str()),
        ("AWS_ENDPOINT_URL_SQS", stack.sqs.as_str()),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ] {
        cmd.args(["--env-var", &format!("{k}={v}")]);
    }
    let log = workspace_root()
        .join("target")
        .join(format!("cargo-lambda-watch-{port}.log"));
    let _watch = ChildGroup::spawn(cmd, &log);
    let base = format!("http://127.0.0.1:{port}");
    let auth = format!("Bearer {secret}");
    let headers = [
        ("accept", "application/json"),
        ("authorization", auth.as_str()),
    ];

    // Wait for the emulator to answer (the first call of each function may compile or start it).
    let started = Instant::now();
    loop {
        let ok = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(("127.0.0.1", port)),
        )
        .await;
        if matches!(ok, Ok(Ok(_))) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "cargo lambda watch did not start; see {}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

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
    let pipeline_id = a.json["items"][0]["id"]
        .as_str()
        .expect("pipeline id")
        .to_string();

    // 2. GET /pipeline_builds?pipeline_id=…
    let a = request(
        "GET",
        &format!("{base}/api/v1/pipeline_builds?hydrate=false&logical_operator=and&page=1&size=20&pipeline_id={pipeline_id}"),
        &headers,
        "",
    )
    .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.raw));
    let build_id = a.json["items"][0]["id"]
        .as_str()
        .expect("build id")
        .to_string();

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
    let run_uuid: uuid::Uuid = a.json["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("run uuid");

    // The run exists in the table, with the configuration applied …
    let stored = store
        .get_run(run_uuid)
        .await
        .expect("get run")
        .expect("the run is in the table");
    assert_eq!(stored.value.run.build_id.to_string(), build_id);
    let trainer = stored
        .value
        .blocks
        .iter()
        .find(|b| b.block_uuid == "model_trainer")
        .expect("block run");
    assert_eq!(trainer.parameters["model_type"], "rf");
    // … and its message is on the queue.
    let queue = SqsQueue::new(stack.sqs().await, queue_url);
    let got = queue
        .receive(10, Duration::from_secs(2))
        .await
        .expect("receive");
    assert_eq!(
        got.into_iter().map(|r| r.message).collect::<Vec<_>>(),
        vec![Message::StartRun { run_uuid }]
    );

    // Errors come back from the binaries in ZenML's shape too.
    let a = request("GET", &format!("{base}/api/v1/pipelines"), &[], "").await;
    assert_eq!(a.status, 401);
    assert_eq!(a.json["detail"], "Not authenticated");
}
