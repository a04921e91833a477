//! SPEC §11 limits that a test can hold the code to (the figures themselves are the benchmark's): the
//! trigger path's request budget, counted in the store and queue adapters, and integer ids that are
//! distinct under 10,000 concurrent triggers, grow with each sequential trigger and stay below 2^53.

use std::collections::HashSet;
use std::sync::Arc;

use kickoff::clock::SystemClock;
use kickoff::demo::SCHEDULE_ID;
use kickoff::domain::{ApiKey, Role};
use kickoff::queue::fault::FaultyQueue;
use kickoff::queue::memory::MemoryQueue;
use kickoff::store::fault::FaultyTable;
use kickoff::store::memory::MemoryTable;
use kickoff::store::{RunView, Store};
use kickoff::trigger::{start_schedule_run, RunOptions};
use kickoff::App;
use kickoff_tests::request;
use serde_json::json;

const JS_SAFE: i64 = 1 << 53;

/// An app whose table and queue count their requests, seeded with the demo pipeline and schedule.
async fn counted_app() -> (App, Arc<FaultyTable>, Arc<FaultyQueue>) {
    let table = Arc::new(FaultyTable::new(Arc::new(MemoryTable::new())));
    let queue =
        Arc::new(FaultyQueue::new(Arc::new(MemoryQueue::new())).with_round_trips(table.round_trips()));
    let app = App { store: Store::new(table.clone()), queue: queue.clone(), clock: Arc::new(SystemClock) };
    kickoff::demo::seed(&app).await.expect("seed");
    kickoff::demo::seed_schedule(&app, None).await.expect("schedule");
    (app, table, queue)
}

#[tokio::test]
async fn a_trigger_makes_at_most_two_reads_one_write_and_one_send_in_three_round_trips() {
    let (app, table, queue) = counted_app().await;
    let (key, stored) = ApiKey::generate(Role::Write, "budget", app.clock.now());
    app.store.put_api_key(&stored).await.expect("key");
    let token = app.store.get_schedule(SCHEDULE_ID).await.expect("get").expect("schedule").value.token;
    let build = kickoff::trigger::newest_build(&app, kickoff::demo::PIPELINE_NAME).await.expect("build");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(kickoff::http::local::serve(Arc::new(app.clone()), listener));

    let bearer = format!("Bearer {key}");
    let schedule_bearer = format!("Bearer {token}");
    let routes = [
        (format!("/api/pipeline_schedules/{SCHEDULE_ID}/pipeline_runs/{token}"), None),
        (format!("/api/pipeline_schedules/{SCHEDULE_ID}/api_trigger"), Some(schedule_bearer.as_str())),
        (format!("/api/v1/pipeline_builds/{}/runs", build.id), Some(bearer.as_str())),
    ];
    for (path, auth) in &routes {
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", *a)).collect();
        for round in 0..3 {
            let (reads, writes, sends) = (table.reads(), table.writes(), queue.sends());
            table.round_trips().reset();
            let body =
                if path.contains("/api/v1/") { json!({}) } else { json!({"env": "dev", "round": round}) };
            let a = request("POST", &format!("{base}{path}"), &headers, body.to_string()).await;
            assert!(a.status == 200 || a.status == 201, "{path}: {} {:?}", a.status, a.json);
            let (reads, writes, sends) =
                (table.reads() - reads, table.writes() - writes, queue.sends() - sends);
            assert!(reads <= 2, "{path}: {reads} reads");
            assert_eq!(writes, 1, "{path}: one write request");
            assert_eq!(sends, 1, "{path}: one send");
            // A process's first token trigger of a schedule reads the schedule before the build it runs
            // (after that, both at once); its first request with an API key reads the key first.
            let first_of_schedule = round == 0 && !path.contains("/api_trigger");
            let round_trips = table.round_trips().count();
            assert!(
                round_trips <= 3 + usize::from(first_of_schedule),
                "{path} #{round}: {round_trips} round trips"
            );
        }
    }
}

#[tokio::test]
async fn ten_thousand_concurrent_triggers_on_one_schedule_make_ten_thousand_distinct_ids() {
    const N: usize = 10_000;
    let (app, _, _) = counted_app().await;
    let schedule = app.store.get_schedule(SCHEDULE_ID).await.expect("get").expect("schedule").value;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..N {
        let (app, schedule) = (app.clone(), schedule.clone());
        tasks.spawn(async move {
            let run =
                start_schedule_run(&app, &schedule, RunOptions::of_schedule(&schedule).expect("options"))
                    .await;
            let run = run.expect("trigger");
            (run.run.id, run.blocks.iter().map(|b| b.id).collect::<Vec<_>>())
        });
    }
    let mut ids = HashSet::new();
    while let Some(done) = tasks.join_next().await {
        let (id, blocks) = done.expect("task");
        assert!(id > 0 && id < JS_SAFE, "{id}");
        assert!(blocks.iter().all(|b| *b > id && *b < JS_SAFE), "block run ids after the run's");
        assert!(ids.insert(id), "id {id} given twice");
    }
    assert_eq!(ids.len(), N);
    assert_eq!(app.store.run_count(&RunView::Schedule(SCHEDULE_ID), None).await.expect("count"), N as i64);
    let entries = app.store.run_entries(&RunView::Schedule(SCHEDULE_ID)).await.expect("entries");
    assert_eq!(entries.iter().map(|e| e.id).collect::<HashSet<_>>(), ids, "every run is in its view");
}

#[tokio::test]
async fn sequential_triggers_get_increasing_ids() {
    let (app, _, _) = counted_app().await;
    let schedule = app.store.get_schedule(SCHEDULE_ID).await.expect("get").expect("schedule").value;
    let mut last = 0;
    for _ in 0..200 {
        let run = start_schedule_run(&app, &schedule, RunOptions::of_schedule(&schedule).expect("options"))
            .await
            .expect("trigger");
        assert!(run.run.id > last, "{} after {last}", run.run.id);
        assert!(run.run.id < JS_SAFE);
        last = run.run.id;
    }
}
