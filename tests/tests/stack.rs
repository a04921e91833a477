//! The store and queue conformance suites on the local stack (DynamoDB Local, the SQS emulator), and
//! the embedded server pointed at them.

use std::sync::Arc;
use std::time::Duration;

use kickoff::app::Config;
use kickoff::domain::{ApiKey, Role};
use kickoff::queue::sqs::SqsQueue;
use kickoff::queue::{Message, RunQueue};
use kickoff::store::dynamo::DynamoTable;
use kickoff::store::Store;
use kickoff::App;
use kickoff_tests::{request, stack, Stack};
use serde_json::json;

/// The embedded server's app built by `App::from_config` on a fresh table and queue of the local stack,
/// served on a free port: the app, its base URL, the table and the queue URL.
async fn embedded_on_stack(stack: &Stack, prefix: &str) -> (App, String, DynamoTable, String) {
    let table = stack.new_table(prefix).await;
    let queue_url = stack.new_queue(prefix).await;
    // nextest runs each test in its own process, so these variables are this test's alone.
    std::env::set_var("AWS_ENDPOINT_URL_DYNAMODB", &stack.dynamodb);
    std::env::set_var("AWS_ENDPOINT_URL_SQS", &stack.sqs);
    let config = Config { table: Some(table.table_name().to_string()), queue_url: Some(queue_url.clone()) };
    let app = App::from_config(&config).await.expect("app on the local stack");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(kickoff::http::local::serve(Arc::new(app.clone()), listener));
    (app, base, table, queue_url)
}

#[tokio::test]
async fn the_store_conforms_on_dynamodb_local() {
    let Some(stack) = stack("the_store_conforms_on_dynamodb_local") else {
        return;
    };
    let table = stack.new_table("conformance").await;
    kickoff::store::conformance::run_all(&Store::new(Arc::new(table))).await;
}

#[tokio::test]
async fn the_queue_conforms_on_the_sqs_emulator() {
    let Some(stack) = stack("the_queue_conforms_on_the_sqs_emulator") else {
        return;
    };
    let url = stack.new_queue("conformance").await;
    kickoff::queue::conformance::run_all(&SqsQueue::new(stack.sqs().await, url)).await;
}

/// `App::from_config` with a table and a queue URL (as the embedded server and the functions build it)
/// runs the seed's flow on DynamoDB Local and the SQS emulator.
#[tokio::test]
async fn the_embedded_server_runs_on_dynamodb_and_sqs_when_configured() {
    let Some(stack) = stack("the_embedded_server_runs_on_dynamodb_and_sqs_when_configured") else {
        return;
    };
    let (app, base, table, queue_url) = embedded_on_stack(&stack, "embedded").await;
    let (secret, key) = ApiKey::generate(Role::Write, "stack", app.clock.now());
    app.store.put_api_key(&key).await.expect("key");
    let (_, build) = kickoff::demo::seed(&app).await.expect("seed");

    let auth = format!("Bearer {secret}");
    let a = request(
        "GET",
        &format!("{base}/api/v1/pipelines?name=training&version=45"),
        &[("authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(a.json["items"][0]["id"], json!(build.pipeline_id));
    let a = request(
        "POST",
        &format!("{base}/api/v1/pipeline_builds/{}/runs", build.id),
        &[("authorization", &auth)],
        r#"{"steps": {"model_trainer": {"parameters": {"model_type": "rf"}}}}"#,
    )
    .await;
    assert_eq!(a.status, 200, "{:?}", a.json);
    let run_uuid: uuid::Uuid = a.json["id"].as_str().and_then(|s| s.parse().ok()).expect("run id");

    // The run is in the table, and its message is on the queue.
    let stored = Store::new(Arc::new(table)).get_run(run_uuid).await.expect("get").expect("run in the table");
    assert_eq!(stored.value.blocks[1].parameters["model_type"], "rf");
    let queue = SqsQueue::new(stack.sqs().await, queue_url);
    let got = queue.receive(10, Duration::from_secs(2)).await.expect("receive");
    assert_eq!(
        got.iter().map(|r| r.message.clone()).collect::<Vec<_>>(),
        vec![Message::StartRun { run_uuid }]
    );
}

/// Many concurrent token triggers with one Idempotency-Key, over HTTP, on DynamoDB Local: one run.
#[tokio::test]
async fn concurrent_idempotent_triggers_make_one_run_on_dynamodb() {
    let Some(stack) = stack("concurrent_idempotent_triggers_make_one_run_on_dynamodb") else {
        return;
    };
    let (app, base, _, _) = embedded_on_stack(&stack, "race").await;
    kickoff::demo::seed(&app).await.expect("seed");
    let schedule = kickoff::demo::seed_schedule(&app, None).await.expect("schedule");
    let url = format!("{base}/api/pipeline_schedules/71/pipeline_runs/{}", schedule.token);

    let mut tasks = Vec::new();
    for _ in 0..24 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            request("POST", &url, &[("idempotency-key", "race-1")], r#"{"a": 1}"#).await
        }));
    }
    let mut ids = std::collections::BTreeSet::new();
    for t in tasks {
        let a = t.await.expect("task");
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.raw));
        ids.insert(a.json["pipeline_run"]["id"].as_i64().expect("id"));
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    let runs = app.store.run_entries(&kickoff::store::RunView::Schedule(71)).await.expect("entries");
    assert_eq!(runs.len(), 1, "exactly one run in the table");
}

/// The scheduler tick invoked twice at once, on DynamoDB Local and the SQS emulator: each run whose
/// `StartRun` was lost is queued once; and a tick that finds nothing costs one DynamoDB query per shard.
#[tokio::test]
async fn overlapping_ticks_queue_each_stuck_run_once_and_an_empty_sweep_costs_one_query() {
    use kickoff::clock::ManualClock;
    use kickoff::queue::fault::FaultyQueue;
    use kickoff::store::fault::FaultyTable;
    let Some(stack) = stack("overlapping_ticks_queue_each_stuck_run_once_and_an_empty_sweep_costs_one_query")
    else {
        return;
    };
    let table = Arc::new(FaultyTable::new(Arc::new(stack.new_table("sweep").await)));
    let sqs = Arc::new(SqsQueue::new(stack.sqs().await, stack.new_queue("sweep").await));
    let sends = Arc::new(FaultyQueue::new(sqs.clone()));
    let clock = Arc::new(ManualClock::default());
    let app = App { store: Store::new(table.clone()), queue: sends.clone(), clock: clock.clone() };
    let (_, build) = kickoff::demo::seed(&app).await.expect("seed");

    // 12 runs written whose queue sends failed.
    const STUCK: usize = 12;
    sends.fail_next_sends(STUCK);
    let mut runs = std::collections::BTreeSet::new();
    for _ in 0..STUCK {
        let config =
            kickoff::domain::run_config::RunConfig::parse(Default::default(), &build).expect("config");
        let detail =
            kickoff::trigger::start_run(&app, &build, config, Default::default()).await.expect("trigger");
        runs.insert(detail.run.uuid);
    }
    clock.advance(chrono::Duration::minutes(2));

    // The tick (it sweeps every shard), invoked twice at once.
    let start = app.clock.now();
    let (a, b) = tokio::join!(kickoff::scheduler::tick(&app, start), kickoff::scheduler::tick(&app, start));
    let queued = a.expect("tick").sweep.queued + b.expect("tick").sweep.queued;
    assert_eq!(queued, STUCK, "each stuck run queued by one of the two ticks");
    let mut sent = Vec::new();
    loop {
        let got = sqs.receive(10, Duration::from_secs(1)).await.expect("receive");
        if got.is_empty() {
            break;
        }
        for r in got {
            sqs.delete(&r.receipt).await.expect("delete");
            sent.push(r.message);
        }
    }
    let expected: Vec<Message> = runs.iter().map(|&run_uuid| Message::StartRun { run_uuid }).collect();
    sent.sort_by_key(|m| m.run_uuid());
    assert_eq!(sent, expected, "one StartRun per stuck run, none twice");

    // Nothing is due now: a tick costs one query per shard of the fire index and of the wake index,
    // and writes and sends nothing.
    let before = table.requests();
    let report = kickoff::scheduler::tick(&app, start).await.expect("tick");
    assert_eq!((report.sweep.due, report.sweep.queued, report.fire.due), (0, 0, 0));
    let shards = usize::from(kickoff::store::WAKE_SHARDS);
    assert_eq!(table.requests() - before, 2 * shards, "an empty tick is one query per shard");
    assert!(sqs.receive(10, Duration::from_secs(1)).await.expect("receive").is_empty());
}

/// Two ticks racing on the same minute, on DynamoDB Local: each fire time of each schedule gets one run
/// (the fire is one transaction with the claim of `(schedule, execution_date)` and the schedule's
/// version), whichever tick wins it.
#[tokio::test]
async fn two_ticks_racing_on_the_same_minute_make_one_run_per_fire_time_on_dynamodb() {
    use kickoff::clock::ManualClock;
    use kickoff::queue::memory::MemoryQueue;
    use kickoff::store::RunView;
    let Some(stack) = stack("two_ticks_racing_on_the_same_minute_make_one_run_per_fire_time_on_dynamodb")
    else {
        return;
    };
    let table = Arc::new(stack.new_table("fire").await);
    // The clock goes on at the system's pace: put it mid-minute, so that no minute begins between the
    // schedules' creation and the ticks (their first fire time is the next minute's start).
    let clock = Arc::new(ManualClock::default());
    let minute =
        chrono::DateTime::from_timestamp(chrono::Utc::now().timestamp() / 60 * 60, 0).expect("minute");
    clock.set(minute + chrono::Duration::seconds(20));
    let app = App { store: Store::new(table), queue: Arc::new(MemoryQueue::new()), clock: clock.clone() };
    kickoff::demo::seed(&app).await.expect("seed");
    let mut schedules = Vec::new();
    for _ in 0..6 {
        schedules.push(kickoff_tests::new_time_schedule(&app, "* * * * *").await.id);
    }
    // Three fire times have come for each; two ticks (and a third, late) race for them.
    clock.advance(chrono::Duration::minutes(3));
    let now = app.clock.now();
    let (a, b, c) = tokio::join!(
        kickoff::scheduler::tick(&app, now),
        kickoff::scheduler::tick(&app, now),
        kickoff::scheduler::tick(&app, now)
    );
    let made: usize = [a, b, c].into_iter().map(|r| r.expect("tick").fire.runs).sum();
    assert_eq!(made, 6 * 3, "the ticks made 3 runs per schedule between them");
    for id in schedules {
        let entries = app.store.run_entries(&RunView::Schedule(id)).await.expect("entries");
        let mut dates: Vec<_> = entries.iter().map(|e| e.execution_date).collect();
        dates.sort();
        dates.dedup();
        assert_eq!((entries.len(), dates.len()), (3, 3), "schedule {id}: one run per fire time");
        let s = app.store.get_schedule(id).await.expect("get").expect("schedule").value;
        assert!(s.next_run_at.is_some_and(|n| n > now), "moved past now");
    }
    assert_eq!(kickoff::scheduler::tick(&app, now).await.expect("tick").fire.runs, 0);
}
