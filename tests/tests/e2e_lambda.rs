//! End to end: the seeds' worked examples through the real function binaries under
//! `cargo lambda watch` (routes mapped as API Gateway maps them, from the workspace router), on
//! DynamoDB Local and the SQS emulator.

use std::time::Duration;

use kickoff::queue::Message;
use kickoff_tests::blocks::BlockServer;
use kickoff_tests::walk::{every_route, Target};
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
        assert_eq!(a.json["metadata"]["count"], 22, "limit {limit} offset {offset}");
        assert_eq!(a.json["metadata"]["next"], next, "limit {limit} offset {offset}");
        assert_eq!(a.json["metadata"].get("next_cursor").is_some(), next, "a next page has a cursor");
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

/// An unreadable message does not hold up its batch: the worker function names it in its partial batch
/// response, SQS delivers it again, and after `maxReceiveCount` the queue's redrive policy moves it to the
/// dead-letter queue — on the SQS emulator, with the queue attributes of `infra/template.yaml`'s shape.
#[tokio::test]
async fn an_unreadable_message_ends_in_the_dead_letter_queue_without_blocking_the_batch() {
    use aws_sdk_sqs::types::QueueAttributeName;
    let Some(stack) = stack("an_unreadable_message_ends_in_the_dead_letter_queue_without_blocking_the_batch")
    else {
        return;
    };
    let d = deploy(&stack, "e2e-dlq").await;
    let sqs = stack.sqs().await;
    let dlq = stack.new_queue("dlq").await;
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("attributes")
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .expect("DLQ ARN");
    let main = sqs
        .create_queue()
        .queue_name(format!("redrive-{}", uuid::Uuid::new_v4().simple()))
        .attributes(QueueAttributeName::VisibilityTimeout, "1")
        .attributes(
            QueueAttributeName::RedrivePolicy,
            json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"}).to_string(),
        )
        .send()
        .await
        .expect("queue with redrive")
        .queue_url()
        .expect("url")
        .to_string();

    // A good message (the start of a real run) and a garbage one in the same batch.
    let a = request(
        "POST",
        &format!("{}/api/pipeline_schedules/71/pipeline_runs/{}", d.base, d.schedule_token),
        &[],
        "{}",
    )
    .await;
    let run_uuid: uuid::Uuid =
        a.json["pipeline_run"]["uuid"].as_str().and_then(|s| s.parse().ok()).expect("uuid");
    let start = serde_json::to_string(&Message::StartRun { run_uuid }).expect("json");
    for body in [start.as_str(), "{this is not a message"] {
        sqs.send_message().queue_url(&main).message_body(body).send().await.expect("send");
    }

    let started = std::time::Instant::now();
    let mut first_batch = true;
    loop {
        let out = sqs
            .receive_message()
            .queue_url(&main)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive");
        let messages = out.messages().to_vec();
        if !messages.is_empty() {
            let failed = d.invoke_worker(&messages).await;
            if first_batch {
                assert_eq!(messages.len(), 2, "both messages in one batch");
                assert_eq!(failed.len(), 1, "only the unreadable message fails: {failed:?}");
                first_batch = false;
            }
            for m in &messages {
                if !failed.iter().any(|f| Some(f.as_str()) == m.message_id()) {
                    sqs.delete_message()
                        .queue_url(&main)
                        .receipt_handle(m.receipt_handle().unwrap_or_default())
                        .send()
                        .await
                        .expect("delete");
                }
            }
        }
        let dead =
            sqs.receive_message().queue_url(&dlq).max_number_of_messages(10).send().await.expect("dlq");
        if let Some(m) = dead.messages().first() {
            assert_eq!(m.body(), Some("{this is not a message"));
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the unreadable message never reached the DLQ");
    }
    let detail = d.store.get_run(run_uuid).await.expect("get").expect("run").value;
    assert_ne!(detail.run.status, kickoff::domain::RunStatus::Initial, "the good message was handled");
}

/// The `scheduler` function as cargo lambda runs it, invoked with a real EventBridge scheduled event:
/// it queues a run whose trigger died after writing it (no `StartRun` was ever sent), and the run
/// completes through the worker function.
#[tokio::test]
async fn the_scheduler_function_queues_a_stuck_run_on_an_eventbridge_tick() {
    use std::sync::Arc;

    use kickoff::clock::{Clock, ManualClock, SystemClock};
    use kickoff::queue::fault::FaultyQueue;
    let Some(stack) = stack("the_scheduler_function_queues_a_stuck_run_on_an_eventbridge_tick") else {
        return;
    };
    let d = deploy(&stack, "e2e-scheduler").await;

    // The trigger of ten minutes ago: the run is written, its queue send is lost.
    let clock = Arc::new(ManualClock::default());
    clock.advance(chrono::Duration::minutes(-10));
    let sends = Arc::new(FaultyQueue::new(Arc::new(d.queue.clone())));
    sends.fail_next_sends(1);
    let app = kickoff::App { store: d.store.clone(), queue: sends, clock };
    let (_, build) = kickoff::demo::seed(&app).await.expect("demo");
    let config = kickoff::domain::run_config::RunConfig::parse(Default::default(), &build).expect("config");
    let run = kickoff::trigger::start_run(&app, &build, config, Default::default())
        .await
        .expect("trigger")
        .run
        .uuid;

    // EventBridge's tick for this minute.
    let now = SystemClock.now();
    let at = chrono::DateTime::from_timestamp(now.timestamp() / 60 * 60, 0).expect("minute");
    let a = eventbridge_tick(&d, at).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.raw));
    assert_eq!(a.json["sweep"]["due"], 1, "{}", a.json);
    assert_eq!(a.json["sweep"]["queued"], 1, "{}", a.json);

    let delivered = d.pump(run, Duration::from_secs(60)).await;
    assert_eq!(
        delivered.first(),
        Some(&Message::StartRun { run_uuid: run }),
        "the tick's message started it"
    );
    let detail = d.store.get_run(run).await.expect("get").expect("run").value;
    assert_eq!(detail.run.status, kickoff::domain::RunStatus::Completed, "{detail:#?}");
}

/// The `scheduler` function as cargo lambda runs it, invoked with an EventBridge scheduled event, fires
/// a cron schedule that is due: one run with the fire time as its execution date, which completes through
/// the worker function; the schedule moves to its next fire time.
#[tokio::test]
async fn the_scheduler_function_fires_a_due_cron_schedule_on_an_eventbridge_tick() {
    use std::sync::Arc;

    use kickoff::clock::{Clock, ManualClock, SystemClock};
    use kickoff::store::RunView;
    let Some(stack) = stack("the_scheduler_function_fires_a_due_cron_schedule_on_an_eventbridge_tick") else {
        return;
    };
    let d = deploy(&stack, "e2e-fire").await;
    // Created a second before this minute began: its first fire time is this minute's start (and the
    // test keeps clear of the minute's end, so that the next one has not come by the tick).
    let second = SystemClock.now().timestamp() % 60;
    if second >= 50 {
        tokio::time::sleep(Duration::from_secs(61 - second as u64)).await;
    }
    let minute =
        chrono::DateTime::from_timestamp(SystemClock.now().timestamp() / 60 * 60, 0).expect("minute");
    let clock = Arc::new(ManualClock::default());
    clock.set(minute - chrono::Duration::seconds(1));
    let app = kickoff::App { store: d.store.clone(), queue: Arc::new(d.queue.clone()), clock };
    kickoff::demo::seed(&app).await.expect("demo");
    let schedule = kickoff_tests::new_time_schedule(&app, "* * * * *").await;
    assert_eq!(schedule.next_run_at, Some(minute));

    let a = eventbridge_tick(&d, minute).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.raw));
    assert_eq!(a.json["fire"]["runs"], 1, "{}", a.json);

    let entries = d.store.run_entries(&RunView::Schedule(schedule.id)).await.expect("entries");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].execution_date, minute, "the fire time is the execution date");
    d.pump(entries[0].uuid, Duration::from_secs(60)).await;
    let detail = d.store.get_run(entries[0].uuid).await.expect("get").expect("run").value;
    assert_eq!(detail.run.status, kickoff::domain::RunStatus::Completed, "{detail:#?}");
    let moved = d.store.get_schedule(schedule.id).await.expect("get").expect("schedule").value;
    assert_eq!(moved.next_run_at, Some(minute + chrono::Duration::minutes(1)));
}

/// Every route of the route table through the function binaries on the enforcing local stack — the
/// walk the OpenAPI test makes (both dialects' successes: an http block ended by its callback, stops and
/// cancels, schedules, webhooks, backfills; then every route's errors) — with the worker fed as AWS's
/// event source mapping feeds it; then a run held by its block until the scheduler function marks its
/// SLA passed and ends it at its time-out: every function answers and no call is denied.
#[tokio::test]
async fn every_route_runs_through_the_function_binaries_with_no_denied_call() {
    let Some(stack) = stack("every_route_runs_through_the_function_binaries_with_no_denied_call") else {
        return;
    };
    let d = deploy(&stack, "e2e-routes").await;
    let _feed = d.feed.in_background();
    let blocks = BlockServer::start().await;
    let target =
        Target { base: d.base.clone(), write_key: d.write_key.clone(), read_key: d.read_key.clone() };
    let calls = every_route(&target, &blocks).await;
    calls.assert_every_route_succeeded();

    // A run that holds (its block answers 202 and never calls back), on a schedule with a one-second
    // SLA and a three-second time-out, for the scheduler to find (the tick runs on the clock, so the
    // times are short rather than the tick's time moved).
    blocks.script("hold", vec![kickoff_tests::blocks::Reply::status(202)]);
    let w = format!("Bearer {}", d.write_key);
    let h = [("authorization", w.as_str()), ("content-type", "application/json")];
    let hold = json!({"name": "hold", "blocks": [{"name": "hold",
        "executor": {"type": "http", "url": format!("{}/hold", blocks.url)}}]});
    let a = request("POST", &format!("{}/api/v1/pipelines", d.base), &h, hold.to_string()).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.raw));
    let build = json!({"pipeline_id": a.json["id"]});
    let a = request("POST", &format!("{}/api/v1/pipeline_builds", d.base), &h, build.to_string()).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.raw));
    let schedule = json!({"pipeline_schedule": {"name": "held", "schedule_type": "api", "status": "active",
        "sla": 1, "settings": {"timeout": 3, "timeout_status": "failed"}}});
    let a = request(
        "POST",
        &format!("{}/api/pipelines/hold/pipeline_schedules", d.base),
        &h,
        schedule.to_string(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.raw));
    let held = a.json["pipeline_schedule"]["id"].as_i64().expect("schedule id");
    let a =
        request("POST", &format!("{}/api/pipeline_schedules/{held}/pipeline_runs", d.base), &h, "{}").await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.raw));
    let run = a.json["pipeline_run"]["id"].as_i64().expect("run id");
    let started = std::time::Instant::now();
    while !blocks.calls().iter().any(|c| c.block == "hold") {
        assert!(started.elapsed() < Duration::from_secs(30), "the held run's block was not called");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Ticks until the SLA has passed and the time-out has ended the run.
    let (mut passed_sla, mut timed_out, mut reports) = (0, 0, Vec::new());
    while passed_sla == 0 || timed_out == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "passed_sla {passed_sla}, timed_out {timed_out}: {reports:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        let a = eventbridge_tick(&d, chrono::Utc::now()).await;
        assert_eq!(a.status, 200, "tick: {}", String::from_utf8_lossy(&a.raw));
        passed_sla += a.json["sweep"]["passed_sla"].as_u64().unwrap_or(0);
        timed_out += a.json["sweep"]["timed_out"].as_u64().unwrap_or(0);
        reports.push(a.json);
    }
    let a = request("GET", &format!("{}/api/pipeline_runs/{run}", d.base), &h, "").await;
    assert_eq!(a.json["pipeline_run"]["status"], "failed", "{}", a.json);
    assert_eq!(a.json["pipeline_run"]["passed_sla"], true, "{}", a.json);
    let denied: Vec<_> = d.enforcer.decisions().into_iter().filter(|x| x.3 != "allow").collect();
    assert!(denied.is_empty(), "calls the template does not allow: {denied:?}");
}

/// Invokes the `scheduler` function as EventBridge's one-minute schedule does, for the tick at `at`.
async fn eventbridge_tick(
    d: &kickoff_tests::Deployed,
    at: chrono::DateTime<chrono::Utc>,
) -> kickoff_tests::Answer {
    let event = json!({
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/kickoff-SchedulerTick"],
        "detail": {}
    });
    request(
        "POST",
        &format!("{}/2015-03-31/functions/scheduler/invocations", d.base),
        &[("content-type", "application/json")],
        event.to_string(),
    )
    .await
}

/// SPEC §9–§10 through the function binaries: a GitHub-signed push to the `webhook-schedule-run`
/// function (waiting a second: 202 and the token-only `Location`, as nothing feeds the worker yet)
/// starts a run; the worker function completes it and sends the notifications of its pipeline version
/// (json) and of its schedule (slack), signed; the `api-trigger-run-status` function answers the run.
#[tokio::test]
async fn a_github_signed_push_starts_a_run_that_completes_and_notifies() {
    use hmac::{Hmac, KeyInit, Mac};
    let Some(stack) = stack("a_github_signed_push_starts_a_run_that_completes_and_notifies") else { return };
    let d = deploy(&stack, "e2e-webhook").await;
    let recorder = BlockServer::start().await;
    let auth = format!("Bearer {}", d.write_key);
    let h = [("authorization", auth.as_str())];
    let pipeline = json!({
        "name": "on-push",
        "blocks": [{"name": "build", "executor": {"type": "noop"}}],
        "notifications": [{"url": format!("{}/pipeline", recorder.url), "on": ["completed", "failed"]}]
    });
    let a = request("POST", &format!("{}/api/v1/pipelines", d.base), &h, pipeline.to_string()).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.raw));
    let schedule = json!({"pipeline_schedule": {"name": "github", "schedule_type": "api", "status": "active",
    "settings": {
        "webhook": {"provider": "github", "secret": "e2e-github-secret", "events": ["push"], "branches": ["main"]},
        "notifications": [{"url": format!("{}/slack", recorder.url), "on": ["completed"], "format": "slack"}]
    }}});
    let a = request(
        "POST",
        &format!("{}/api/pipelines/on-push/pipeline_schedules", d.base),
        &h,
        schedule.to_string(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.raw));
    let id = a.json["pipeline_schedule"]["id"].as_i64().expect("id");
    let token = a.json["pipeline_schedule"]["token"].as_str().expect("token").to_string();
    assert_eq!(a.json["pipeline_schedule"]["settings"]["webhook"]["secret_set"], true);

    let body =
        json!({"ref": "refs/heads/main", "after": "0d1a26e6", "repository": {"full_name": "acme/etl"}})
            .to_string();
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(b"e2e-github-secret").expect("key");
    mac.update(body.as_bytes());
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let headers = [
        ("content-type", "application/json"),
        ("x-github-event", "push"),
        ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ("x-hub-signature-256", signature.as_str()),
    ];
    let a = request(
        "POST",
        &format!("{}/api/pipeline_schedules/{id}/webhook?wait=1", d.base),
        &headers,
        body.clone(),
    )
    .await;
    assert_eq!(a.status, 202, "{}", String::from_utf8_lossy(&a.raw));
    let location = a.headers.get("location").and_then(|v| v.to_str().ok()).expect("Location").to_string();
    let run: uuid::Uuid = a.json["pipeline_run"]["uuid"].as_str().and_then(|s| s.parse().ok()).expect("run");
    assert_eq!(a.json["pipeline_run"]["variables"]["webhook"]["event"], "push");
    // GitHub's redelivery of the same delivery: the same run.
    let again =
        request("POST", &format!("{}/api/pipeline_schedules/{id}/webhook", d.base), &headers, body).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json["pipeline_run"]["uuid"], run.to_string());

    d.pump(run, Duration::from_secs(120)).await;
    let detail = d.store.get_run(run).await.expect("get").expect("run").value;
    assert_eq!(detail.run.status, kickoff::domain::RunStatus::Completed, "{detail:#?}");
    let calls = recorder.calls();
    assert_eq!(calls.len(), 2, "one notification per target: {calls:#?}");
    let key = base64_simd::STANDARD
        .decode_to_vec(kickoff_tests::worker::SECRET.trim_start_matches("whsec_"))
        .expect("secret");
    for c in &calls {
        let header = |k: &str| c.headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let ts: i64 = header("webhook-timestamp").parse().expect("timestamp");
        let expected = kickoff::worker::executor::sign(&key, &header("webhook-id"), ts, &c.raw);
        assert_eq!(header("webhook-signature"), expected);
    }
    assert!(calls.iter().any(|c| c.body["event"] == "completed" && c.body["run"]["pipeline"] == "on-push"));
    assert!(calls.iter().any(|c| c.body["text"].as_str().is_some_and(|t| t.contains("completed"))));

    let bearer = format!("Bearer {token}");
    let a = request("GET", &format!("{}{location}", d.base), &[("authorization", bearer.as_str())], "").await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.raw));
    assert_eq!(a.json["pipeline_run"]["status"], "completed");
    let delivered: Vec<&str> = a.json["pipeline_run"]["notifications"]
        .as_array()
        .expect("notifications")
        .iter()
        .filter_map(|n| n["status"].as_str())
        .collect();
    assert_eq!(delivered, ["delivered", "delivered"]);
}
