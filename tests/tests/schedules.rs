//! Time schedules on the scheduler tick (SPEC §6), with the injected clock: each interval kind across
//! month ends, a leap day and both DST transitions in Europe/Berlin and America/New_York; a late tick's
//! catch-up; re-enabling without replay; `@once`; SLA and time-out; bad input. Through the Mage API of
//! the embedded server's router and `scheduler::tick`, on the in-memory store.

use std::time::Duration;

use chrono::{DateTime, Utc};
use kickoff::domain::{ApiKey, Role, RunStatus};
use kickoff::queue::RunQueue;
use kickoff::store::RunView;
use kickoff_tests::worker::{Delivery, Harness};
use kickoff_tests::{request, Answer};
use serde_json::{json, Value};

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
}

fn minutes(n: i64) -> chrono::Duration {
    chrono::Duration::minutes(n)
}

/// The harness with the demo pipeline and a write key.
async fn setup() -> (Harness, String) {
    let h = Harness::new().await;
    kickoff::demo::seed(&h.app).await.expect("demo");
    let (secret, key) = ApiKey::generate(Role::Write, "test", h.app.clock.now());
    h.app.store.put_api_key(&key).await.expect("key");
    (h, format!("Bearer {secret}"))
}

async fn call(h: &Harness, key: &str, method: &str, path: &str, body: Value) -> Answer {
    request(method, &format!("{}{path}", h.api), &[("authorization", key)], body.to_string()).await
}

/// Creates an active time schedule of the demo pipeline; its id.
async fn time_schedule(h: &Harness, key: &str, fields: Value) -> i64 {
    let mut body = json!({"name": "nightly", "schedule_type": "time", "status": "active"});
    body.as_object_mut().expect("object").extend(fields.as_object().expect("object").clone());
    let a = call(
        h,
        key,
        "POST",
        "/api/pipelines/training/pipeline_schedules",
        json!({"pipeline_schedule": body}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.json);
    a.json["pipeline_schedule"]["id"].as_i64().expect("id")
}

/// The execution dates of a schedule's runs, oldest first.
async fn fired(h: &Harness, schedule: i64) -> Vec<DateTime<Utc>> {
    let mut dates: Vec<_> = h
        .app
        .store
        .run_entries(&RunView::Schedule(schedule))
        .await
        .expect("entries")
        .into_iter()
        .map(|e| e.execution_date)
        .collect();
    dates.reverse();
    dates
}

async fn tick(h: &Harness) -> kickoff::scheduler::TickReport {
    kickoff::scheduler::tick(&h.app, h.app.clock.now()).await.expect("tick")
}

/// Creates the schedule at `from`, then ticks around each expected fire time: nothing before it, one
/// run at it, nothing more when the same minute is ticked again.
async fn walk(interval: &str, tz: &str, from: &str, expected: &[&str]) {
    let (h, key) = setup().await;
    h.clock.set(utc(from));
    let id = time_schedule(&h, &key, json!({"schedule_interval": interval, "timezone": tz})).await;
    let mut made = Vec::new();
    for e in expected {
        let e = utc(e);
        h.clock.set(e - chrono::Duration::seconds(30));
        assert_eq!(tick(&h).await.fire.runs, 0, "{interval} {tz}: nothing before {e}");
        h.clock.set(e + chrono::Duration::seconds(20));
        assert_eq!(tick(&h).await.fire.runs, 1, "{interval} {tz}: one run at {e}");
        assert_eq!(tick(&h).await.fire.runs, 0, "{interval} {tz}: a second tick in the minute makes none");
        made.push(e);
        assert_eq!(fired(&h, id).await, made, "{interval} {tz}");
    }
    let s = h.app.store.get_schedule(id).await.expect("get").expect("schedule").value;
    assert!(s.next_run_at.is_some_and(|n| n > *made.last().expect("one")), "{interval}: moved on");
}

#[tokio::test]
async fn hourly_fires_every_real_hour_across_berlins_spring_gap_and_new_yorks_autumn_repeat() {
    walk(
        "@hourly",
        "Europe/Berlin",
        "2024-03-31T00:10:00Z",
        &["2024-03-31T01:00:00Z", "2024-03-31T02:00:00Z"],
    )
    .await;
    walk(
        "@hourly",
        "America/New_York",
        "2024-11-03T04:30:00Z",
        &["2024-11-03T05:00:00Z", "2024-11-03T06:00:00Z", "2024-11-03T07:00:00Z"],
    )
    .await;
}

#[tokio::test]
async fn daily_keeps_local_midnight_across_both_berlin_transitions() {
    walk(
        "@daily",
        "Europe/Berlin",
        "2024-03-29T12:00:00Z",
        &["2024-03-29T23:00:00Z", "2024-03-30T23:00:00Z", "2024-03-31T22:00:00Z"],
    )
    .await;
    walk(
        "@daily",
        "Europe/Berlin",
        "2024-10-26T12:00:00Z",
        &["2024-10-26T22:00:00Z", "2024-10-27T23:00:00Z"],
    )
    .await;
}

#[tokio::test]
async fn weekly_and_monthly_follow_new_york_midnight_across_both_transitions() {
    walk(
        "@weekly",
        "America/New_York",
        "2024-03-05T00:00:00Z",
        &["2024-03-10T05:00:00Z", "2024-03-17T04:00:00Z"],
    )
    .await;
    walk(
        "@monthly",
        "America/New_York",
        "2024-10-15T00:00:00Z",
        &["2024-11-01T04:00:00Z", "2024-12-01T05:00:00Z"],
    )
    .await;
}

#[tokio::test]
async fn cron_in_the_gap_fires_after_it_and_in_the_repeat_fires_once() {
    walk(
        "30 2 * * *",
        "America/New_York",
        "2024-03-09T12:00:00Z",
        &["2024-03-10T07:00:00Z", "2024-03-11T06:30:00Z"],
    )
    .await;
    walk(
        "30 2 * * *",
        "Europe/Berlin",
        "2024-10-26T12:00:00Z",
        &["2024-10-27T00:30:00Z", "2024-10-28T01:30:00Z"],
    )
    .await;
}

#[tokio::test]
async fn month_ends_and_a_leap_day_fire_only_when_they_exist() {
    walk("0 0 29 2 *", "UTC", "2024-02-27T00:00:00Z", &["2024-02-29T00:00:00Z"]).await;
    walk(
        "0 6 31 * *",
        "Europe/Berlin",
        "2024-04-01T00:00:00Z",
        &["2024-05-31T04:00:00Z", "2024-07-31T04:00:00Z"],
    )
    .await;
    walk("@monthly", "UTC", "2024-01-31T12:00:00Z", &["2024-02-01T00:00:00Z", "2024-03-01T00:00:00Z"]).await;
}

#[tokio::test]
async fn once_fires_at_its_start_time_and_goes_inactive() {
    let (h, key) = setup().await;
    h.clock.set(utc("2024-06-01T07:00:00Z"));
    let id = time_schedule(
        &h,
        &key,
        json!({"schedule_interval": "@once", "timezone": "Europe/Berlin", "start_time": "2024-06-01T08:00:00Z"}),
    )
    .await;
    let a = call(&h, &key, "GET", &format!("/api/pipeline_schedules/{id}"), json!(null)).await;
    assert_eq!(a.json["pipeline_schedule"]["next_pipeline_run_date"], "2024-06-01 08:00:00.000000+00:00");
    h.clock.set(utc("2024-06-01T07:59:00Z"));
    assert_eq!(tick(&h).await.fire.runs, 0);
    h.clock.set(utc("2024-06-01T08:00:10Z"));
    assert_eq!(tick(&h).await.fire.runs, 1);
    h.clock.set(utc("2024-06-02T08:00:10Z"));
    assert_eq!(tick(&h).await.fire.runs, 0);
    assert_eq!(fired(&h, id).await, [utc("2024-06-01T08:00:00Z")]);
    let a = call(&h, &key, "GET", &format!("/api/pipeline_schedules/{id}"), json!(null)).await;
    assert_eq!(a.json["pipeline_schedule"]["status"], "inactive");
    assert!(a.json["pipeline_schedule"]["next_pipeline_run_date"].is_null());
}

/// The catch-up rule (`scheduler::fire`): a late tick fires each fire time it missed, once, oldest first;
/// beyond the last 10 it skips.
#[tokio::test]
async fn a_tick_seven_minutes_late_fires_each_missed_time_once() {
    let (h, key) = setup().await;
    h.clock.set(utc("2024-05-01T10:00:30Z"));
    let every_minute = time_schedule(&h, &key, json!({"schedule_interval": "* * * * *"})).await;
    let hourly = time_schedule(&h, &key, json!({"schedule_interval": "@hourly"})).await;
    // Ticks at 10:01 … 10:53 never came; the next is 7 minutes late for 11:00.
    h.clock.set(utc("2024-05-01T10:01:10Z"));
    tick(&h).await;
    h.clock.set(utc("2024-05-01T10:08:10Z"));
    let report = tick(&h).await;
    assert_eq!((report.fire.runs, report.fire.skipped), (7, 0), "{report:?}");
    let expected: Vec<_> = (1..=8).map(|m| utc("2024-05-01T10:00:00Z") + minutes(m)).collect();
    assert_eq!(fired(&h, every_minute).await, expected, "10:01 … 10:08, each once");
    assert_eq!(tick(&h).await.fire.runs, 0, "no duplicates");

    h.clock.set(utc("2024-05-01T11:07:00Z"));
    let report = tick(&h).await;
    assert_eq!(
        fired(&h, hourly).await,
        [utc("2024-05-01T11:00:00Z")],
        "the hour's run, 7 minutes late, once"
    );
    // The every-minute schedule missed 59 minutes: the last 10 fire, 49 are skipped.
    assert_eq!(report.fire.skipped, 49, "{report:?}");
    let dates = fired(&h, every_minute).await;
    assert_eq!(dates.len(), 8 + 10);
    assert_eq!(dates[8..], (58..=67).map(|m| utc("2024-05-01T10:00:00Z") + minutes(m)).collect::<Vec<_>>());
    assert_eq!(tick(&h).await.fire.runs, 0);
}

#[tokio::test]
async fn re_enabling_replays_nothing_unless_create_initial_pipeline_run() {
    let (h, key) = setup().await;
    h.clock.set(utc("2024-05-01T10:30:00Z"));
    let plain = time_schedule(&h, &key, json!({"schedule_interval": "@hourly"})).await;
    let initial = time_schedule(
        &h,
        &key,
        json!({"schedule_interval": "@hourly", "settings": {"create_initial_pipeline_run": true}}),
    )
    .await;
    let first = fired(&h, initial).await;
    assert!(first.is_empty());
    // The initial run: the interval under way (10:00) fires at the next tick.
    assert_eq!(tick(&h).await.fire.runs, 1);
    assert_eq!(fired(&h, initial).await, [utc("2024-05-01T10:00:00Z")]);
    for id in [plain, initial] {
        let a = call(
            &h,
            &key,
            "PUT",
            &format!("/api/pipeline_schedules/{id}"),
            json!({"pipeline_schedule": {"status": "inactive"}}),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.json);
        assert!(a.json["pipeline_schedule"]["next_pipeline_run_date"].is_null());
    }
    // Five hours later, re-enabled.
    h.clock.set(utc("2024-05-01T15:30:00Z"));
    assert_eq!(tick(&h).await.fire.runs, 0, "inactive schedules do not fire");
    for id in [plain, initial] {
        let a = call(
            &h,
            &key,
            "PUT",
            &format!("/api/pipeline_schedules/{id}"),
            json!({"pipeline_schedule": {"status": "active"}}),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.json);
    }
    let a = call(&h, &key, "GET", &format!("/api/pipeline_schedules/{plain}"), json!(null)).await;
    assert_eq!(a.json["pipeline_schedule"]["next_pipeline_run_date"], "2024-05-01 16:00:00.000000+00:00");
    let report = tick(&h).await;
    assert_eq!(report.fire.runs, 1, "only the initial run of the interval under way: {report:?}");
    assert!(fired(&h, plain).await.is_empty(), "11:00 … 15:00 are not replayed");
    assert_eq!(fired(&h, initial).await, [utc("2024-05-01T10:00:00Z"), utc("2024-05-01T15:00:00Z")]);
    h.clock.set(utc("2024-05-01T16:00:30Z"));
    assert_eq!(tick(&h).await.fire.runs, 2, "both fire at 16:00");
}

#[tokio::test]
async fn a_fired_run_runs_to_completion_with_the_schedules_variables() {
    let (h, key) = setup().await;
    // 10 s into a minute, so that one minute later exactly one fire time has passed however slow the
    // machine is.
    let now = h.app.clock.now();
    let now = now - chrono::Duration::seconds(now.timestamp().rem_euclid(60)) + chrono::Duration::seconds(10);
    h.clock.set(now);
    let id = time_schedule(&h, &key, json!({"schedule_interval": "* * * * *", "variables": {"env": "prod"}}))
        .await;
    h.clock.set(now + minutes(1));
    assert_eq!(tick(&h).await.fire.runs, 1);
    let entry = h.app.store.run_entries(&RunView::Schedule(id)).await.expect("entries").remove(0);
    let done = h.drain(entry.uuid, Delivery::default(), Duration::from_secs(10)).await;
    assert_eq!(done.run.status, RunStatus::Completed);
    assert_eq!(done.run.variables, Some(json!({"env": "prod"})));
    assert_eq!(done.run.execution_date.timestamp() % 60, 0, "a fire time, to the minute");
    let a = call(&h, &key, "GET", &format!("/api/pipeline_runs/{}", entry.id), json!(null)).await;
    assert_eq!(a.json["pipeline_run"]["pipeline_schedule_type"], "time");
}

#[tokio::test]
async fn a_run_past_its_sla_is_marked_and_one_past_its_timeout_ends_with_its_timeout_status() {
    use kickoff::domain::run::Deadlines;
    use kickoff::trigger::RunOptions;
    use kickoff_tests::blocks::{BlockServer, Reply};
    let (h, _) = setup().await;
    let blocks = BlockServer::start().await;
    blocks.script("wait", vec![Reply::status(202)]);
    let slow = json!([{"name": "wait", "executor": {"type": "http", "url": format!("{}/blocks/wait", blocks.url)}, "timeout_s": 86400}]);
    let deadlines = |timeout_status| Deadlines { sla_s: Some(60), timeout_s: Some(600), timeout_status };
    // Unfinished past its SLA, then past its time-out (default status: failed).
    let late =
        h.run_with(slow.clone(), RunOptions { deadlines: deadlines(None), ..Default::default() }).await;
    let cancelled = h
        .run_with(slow, RunOptions { deadlines: deadlines(Some(RunStatus::Cancelled)), ..Default::default() })
        .await;
    // Finished in time.
    let quick = h
        .run_with(
            json!([{"name": "a", "executor": {"type": "noop"}}]),
            RunOptions { deadlines: deadlines(None), ..Default::default() },
        )
        .await;
    h.deliver_visible().await;
    let store = h.app.store.clone();
    let status = |run| {
        let store = store.clone();
        async move { store.get_run(run).await.expect("get").expect("run").value }
    };
    assert_eq!(status(late).await.run.status, RunStatus::Running, "waiting for its callback");
    assert_eq!(status(quick).await.run.status, RunStatus::Completed);

    h.clock.advance(chrono::Duration::seconds(90));
    let report = tick(&h).await;
    assert_eq!(report.sweep.passed_sla, 2, "{report:?}");
    assert!(status(late).await.run.passed_sla && status(cancelled).await.run.passed_sla);
    assert!(!status(quick).await.run.passed_sla, "finished in time");
    assert_eq!(tick(&h).await.sweep.passed_sla, 0, "marked once");

    h.clock.advance(chrono::Duration::seconds(600));
    let report = tick(&h).await;
    assert_eq!(report.sweep.timed_out, 2, "{report:?}");
    let ended = status(late).await;
    assert_eq!(ended.run.status, RunStatus::Failed);
    assert!(ended.run.completed_at.is_some());
    assert_eq!(
        ended.blocks[0].status,
        kickoff::domain::BlockRunStatus::Cancelled,
        "its running block is cancelled"
    );
    assert_eq!(status(cancelled).await.run.status, RunStatus::Cancelled);
    assert_eq!(status(quick).await.run.status, RunStatus::Completed);
    // Ended once: the next tick finds nothing to time out.
    assert_eq!(tick(&h).await.sweep.timed_out, 0);
}

#[tokio::test]
async fn bad_schedule_input_is_a_422_naming_the_field_that_changes_nothing() {
    let (h, key) = setup().await;
    let id =
        time_schedule(&h, &key, json!({"schedule_interval": "@daily", "timezone": "Europe/Berlin"})).await;
    let before = h.app.store.get_schedule(id).await.expect("get").expect("schedule");
    let count = h.app.store.list_schedules().await.expect("list").len();
    let cases = [
        (json!({"schedule_interval": "61 * * * *"}), "schedule_interval"),
        (json!({"schedule_interval": "@fortnightly"}), "schedule_interval"),
        (json!({"schedule_interval": "* * * *"}), "schedule_interval"),
        (json!({"timezone": "Mars/Olympus_Mons"}), "timezone"),
        (json!({"sla": -5}), "sla"),
        (json!({"settings": {"pipeline_run_limit": 0}}), "pipeline_run_limit"),
        (json!({"settings": {"timeout_status": "exploded"}}), "timeout_status"),
    ];
    for (fields, name) in cases {
        let mut create = json!({"name": "bad", "schedule_type": "time", "schedule_interval": "@daily"});
        create.as_object_mut().expect("object").extend(fields.as_object().expect("object").clone());
        let a = call(
            &h,
            &key,
            "POST",
            "/api/pipelines/training/pipeline_schedules",
            json!({"pipeline_schedule": create}),
        )
        .await;
        assert_eq!(a.status, 422, "{fields}: {}", a.json);
        assert!(a.json["error"]["message"].as_str().unwrap_or("").contains(name), "{fields}: {}", a.json);
        let a = call(
            &h,
            &key,
            "PUT",
            &format!("/api/pipeline_schedules/{id}"),
            json!({"pipeline_schedule": fields}),
        )
        .await;
        assert_eq!(a.status, 422, "{fields}: {}", a.json);
    }
    assert_eq!(h.app.store.list_schedules().await.expect("list").len(), count, "nothing created");
    assert_eq!(h.app.store.get_schedule(id).await.expect("get"), Some(before), "nothing changed");
}

/// Creates an active `api` schedule of the demo pipeline with `settings`; its id and token.
async fn api_schedule(h: &Harness, key: &str, settings: Value) -> (i64, String) {
    let body = json!({"pipeline_schedule": {"name": "hook", "schedule_type": "api", "status": "active", "settings": settings}});
    let a = call(h, key, "POST", "/api/pipelines/training/pipeline_schedules", body).await;
    assert_eq!(a.status, 200, "{}", a.json);
    let s = &a.json["pipeline_schedule"];
    (s["id"].as_i64().expect("id"), s["token"].as_str().expect("token").to_string())
}

async fn token_trigger(h: &Harness, id: i64, token: &str) -> Value {
    let a =
        request("POST", &format!("{}/api/pipeline_schedules/{id}/pipeline_runs/{token}", h.api), &[], "{}")
            .await;
    assert_eq!(a.status, 200, "{}", a.json);
    a.json["pipeline_run"].clone()
}

/// The runs of a schedule, oldest execution date first.
async fn runs_of(h: &Harness, schedule: i64) -> Vec<kickoff::domain::Run> {
    let mut runs = Vec::new();
    for e in h.app.store.run_entries(&RunView::Schedule(schedule)).await.expect("entries").into_iter().rev() {
        runs.push(h.app.store.get_run(e.uuid).await.expect("get").expect("run").value.run);
    }
    runs
}

/// Each run started after the one before it had finished, and all completed.
fn one_after_another(runs: &[kickoff::domain::Run]) {
    for r in runs {
        assert_eq!(r.status, RunStatus::Completed, "{r:#?}");
    }
    for pair in runs.windows(2) {
        let (done, next) = (pair[0].completed_at.expect("completed"), pair[1].started_at.expect("started"));
        assert!(
            next >= done,
            "run {} started at {next} before run {} finished at {done}",
            pair[1].id,
            pair[0].id
        );
    }
}

#[tokio::test]
async fn a_run_limit_of_one_runs_three_api_triggers_one_after_another_in_order() {
    let (h, key) = setup().await;
    let (id, token) = api_schedule(&h, &key, json!({"pipeline_run_limit": 1})).await;
    let mut answers = Vec::new();
    for _ in 0..3 {
        answers.push(token_trigger(&h, id, &token).await);
        h.clock.advance(chrono::Duration::seconds(1));
    }
    assert!(answers.iter().all(|a| a["status"] == "initial"), "{answers:?}");
    assert_eq!(h.queue.visible_len().await, 1, "only the admitted run is queued; the others wait, unpolled");
    // The sweep leaves waiting runs alone, however late.
    h.clock.advance(chrono::Duration::minutes(10));
    assert_eq!(tick(&h).await.sweep.queued, 1, "only the admitted run, whose message was not taken yet");
    h.deliver_visible().await;
    let runs = runs_of(&h, id).await;
    assert_eq!(runs.len(), 3);
    one_after_another(&runs);
    let ids: Vec<i64> = answers.iter().map(|a| a["id"].as_i64().expect("id")).collect();
    assert_eq!(runs.iter().map(|r| r.id).collect::<Vec<_>>(), ids, "in trigger order");
}

#[tokio::test]
async fn skip_if_previous_running_creates_the_second_api_trigger_cancelled() {
    let (h, key) = setup().await;
    let (id, token) = api_schedule(&h, &key, json!({"skip_if_previous_running": true})).await;
    let first = token_trigger(&h, id, &token).await;
    let second = token_trigger(&h, id, &token).await;
    assert_eq!(first["status"], "initial");
    assert_eq!(second["status"], "cancelled", "{second}");
    assert!(second["block_runs"].as_array().expect("blocks").iter().all(|b| b["status"] == "cancelled"));
    assert_eq!(h.queue.visible_len().await, 1, "the skipped run is not queued");
    h.deliver_visible().await;
    // The first has finished: the next trigger runs.
    let third = token_trigger(&h, id, &token).await;
    assert_eq!(third["status"], "initial");
}

#[tokio::test]
async fn run_limits_hold_for_time_schedules_too() {
    let (h, key) = setup().await;
    h.clock.set(utc("2024-05-01T10:00:30Z"));
    let limited = time_schedule(
        &h,
        &key,
        json!({"schedule_interval": "* * * * *", "settings": {"pipeline_run_limit": 1}}),
    )
    .await;
    let skipping = time_schedule(
        &h,
        &key,
        json!({"schedule_interval": "* * * * *", "settings": {"skip_if_previous_running": true}}),
    )
    .await;
    // A tick 3 minutes late: three fire times for each.
    h.clock.set(utc("2024-05-01T10:03:10Z"));
    assert_eq!(tick(&h).await.fire.runs, 6);
    let statuses: Vec<RunStatus> = runs_of(&h, skipping).await.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [RunStatus::Initial, RunStatus::Cancelled, RunStatus::Cancelled]);
    h.deliver_visible().await;
    let runs = runs_of(&h, limited).await;
    assert_eq!(
        runs.iter().map(|r| r.execution_date).collect::<Vec<_>>(),
        (1..=3).map(|m| utc("2024-05-01T10:00:00Z") + minutes(m)).collect::<Vec<_>>()
    );
    one_after_another(&runs);
}

#[tokio::test]
async fn cancelling_a_waiting_run_gives_up_its_place() {
    let (h, key) = setup().await;
    let (id, token) = api_schedule(&h, &key, json!({"pipeline_run_limit": 1})).await;
    let runs: Vec<Value> = [
        token_trigger(&h, id, &token).await,
        token_trigger(&h, id, &token).await,
        token_trigger(&h, id, &token).await,
    ]
    .into();
    let middle = runs[1]["id"].as_i64().expect("id");
    let a = call(
        &h,
        &key,
        "PUT",
        &format!("/api/pipeline_runs/{middle}"),
        json!({"pipeline_run": {"status": "cancelled"}}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.json);
    h.deliver_visible().await;
    let statuses: Vec<RunStatus> = runs_of(&h, id).await.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [RunStatus::Completed, RunStatus::Cancelled, RunStatus::Completed]);
}

async fn backfill(h: &Harness, key: &str, fields: Value) -> Answer {
    call(h, key, "POST", "/api/pipelines/training/backfills", json!({"backfill": fields})).await
}

#[tokio::test]
async fn a_daily_backfill_over_ten_days_makes_ten_runs_and_completes() {
    let (h, key) = setup().await;
    let a = backfill(
        &h,
        &key,
        json!({"name": "ten days", "start_datetime": "2024-02-24T06:00:00Z", "end_datetime": "2024-03-04T06:00:00Z",
               "interval_type": "day", "interval_units": 1, "variables": {"source": "archive"}}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.json);
    assert_eq!(a.json["backfill"]["status"], "initial");
    assert_eq!(a.json["backfill"]["total_run_count"], 10);
    let id = a.json["backfill"]["id"].as_i64().expect("id");
    let a =
        call(&h, &key, "PUT", &format!("/api/backfills/{id}"), json!({"backfill": {"status": "initial"}}))
            .await;
    assert_eq!(a.status, 200, "{}", a.json);
    assert_eq!(a.json["backfill"]["status"], "running");
    // Starting again makes no date twice.
    call(&h, &key, "PUT", &format!("/api/backfills/{id}"), json!({"backfill": {"status": "initial"}})).await;
    h.deliver_visible().await;
    let a =
        call(&h, &key, "GET", &format!("/api/pipeline_runs?backfill_id={id}&_limit=100"), json!(null)).await;
    let runs = a.json["pipeline_runs"].as_array().expect("runs").clone();
    let mut dates: Vec<String> =
        runs.iter().map(|r| r["execution_date"].as_str().expect("date").to_string()).collect();
    dates.sort();
    let expected: Vec<String> = (0..10)
        .map(|d| {
            (utc("2024-02-24T06:00:00Z") + chrono::Duration::days(d))
                .format("%Y-%m-%d %H:%M:%S%.6f+00:00")
                .to_string()
        })
        .collect();
    assert_eq!(dates, expected, "one run per day, 29 February included");
    assert!(runs.iter().all(|r| r["backfill_id"] == id
        && r["status"] == "completed"
        && r["variables"]["source"] == "archive"));
    let a = call(&h, &key, "GET", &format!("/api/backfills/{id}"), json!(null)).await;
    assert_eq!(a.json["backfill"]["status"], "completed", "{}", a.json);
    let a = call(&h, &key, "GET", "/api/backfills", json!(null)).await;
    assert_eq!(a.json["metadata"]["count"], 1);
    let a = call(&h, &key, "DELETE", &format!("/api/backfills/{id}"), json!(null)).await;
    assert_eq!(a.status, 200);
    assert_eq!(call(&h, &key, "GET", &format!("/api/backfills/{id}"), json!(null)).await.status, 404);
}

/// A long backfill is written in pages through the queue (the start writes the first 100 dates; each
/// `StartBackfill` message one more page), and overlapping starts — concurrent PUTs, pages delivered
/// twice — make each date's run once (its claim: an idempotency record per backfill and date).
#[tokio::test]
async fn a_long_backfill_is_written_in_pages_and_overlapping_starts_make_each_date_once() {
    let (h, key) = setup().await;
    let a = backfill(
        &h,
        &key,
        json!({"name": "250 days", "start_datetime": "2023-01-01T00:00:00Z", "end_datetime": "2023-09-07T00:00:00Z",
               "interval_type": "day", "interval_units": 1}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.json);
    assert_eq!(a.json["backfill"]["total_run_count"], 250);
    let id = a.json["backfill"]["id"].as_i64().expect("id");
    let path = format!("/api/backfills/{id}");
    let start = || call(&h, &key, "PUT", &path, json!({"backfill": {"status": "initial"}}));
    let (first, second) = tokio::join!(start(), start());
    assert!(first.status == 200 || second.status == 200, "{} {}", first.json, second.json);
    let entries = h.app.store.run_entries(&kickoff::store::RunView::Backfill(id)).await.expect("entries");
    assert_eq!(entries.len(), 100, "the start wrote the first page only");
    // Every page message delivered twice, concurrently.
    let mut pages = 0;
    loop {
        let batch = h.queue.receive(10, Duration::from_millis(50)).await.expect("receive");
        if batch.is_empty() {
            break;
        }
        for r in batch {
            h.queue.delete(&r.receipt).await.expect("delete");
            if matches!(r.message, kickoff::queue::Message::StartBackfill { .. }) {
                pages += 1;
                let (a, b) = tokio::join!(h.worker.handle(&r.message), h.worker.handle(&r.message));
                a.expect("page");
                b.expect("page again");
            } else {
                h.worker.handle(&r.message).await.expect("handle");
            }
        }
    }
    assert!(pages >= 2, "pages 100..200 and 200..250 went through the queue: {pages}");
    let entries = h.app.store.run_entries(&kickoff::store::RunView::Backfill(id)).await.expect("entries");
    let mut dates: Vec<_> = entries.iter().map(|e| e.execution_date).collect();
    dates.sort();
    dates.dedup();
    assert_eq!((entries.len(), dates.len()), (250, 250), "each date once");
}

#[tokio::test]
async fn cancelling_a_backfill_midway_cancels_its_unfinished_runs_under_its_schedules_limit() {
    let (h, key) = setup().await;
    let (schedule, _) = api_schedule(&h, &key, json!({"pipeline_run_limit": 2})).await;
    let a = backfill(
        &h,
        &key,
        json!({"name": "hours", "start_datetime": "2024-05-01 00:00", "end_datetime": "2024-05-01 09:00",
               "interval_type": "hour", "interval_units": 1, "pipeline_schedule_id": schedule}),
    )
    .await;
    let id = a.json["backfill"]["id"].as_i64().expect("id");
    call(&h, &key, "PUT", &format!("/api/backfills/{id}"), json!({"backfill": {"status": "initial"}})).await;
    // Admitted under the schedule's limit: two at a time; the first two run, then cancel.
    assert_eq!(h.queue.visible_len().await, 2);
    let entries = h.app.store.run_entries(&RunView::Backfill(id)).await.expect("entries");
    assert_eq!(entries.len(), 10);
    // Only the oldest run's messages are delivered until it has completed; the others' wait.
    let first = entries.last().expect("oldest").uuid;
    let mut held = Vec::new();
    while !h.app.store.get_run(first).await.expect("get").expect("run").value.run.status.is_finished() {
        let batch = h.queue.receive(10, Duration::from_millis(50)).await.expect("receive");
        assert!(!batch.is_empty(), "the first run is stuck");
        for r in batch {
            h.queue.delete(&r.receipt).await.expect("delete");
            if r.message.run_uuid() == Some(first) {
                h.worker.handle(&r.message).await.expect("handle");
            } else {
                held.push(r.message);
            }
        }
    }
    for m in held {
        h.queue.send(&m).await.expect("requeue");
    }
    let a =
        call(&h, &key, "PUT", &format!("/api/backfills/{id}"), json!({"backfill": {"status": "cancelled"}}))
            .await;
    assert_eq!(a.status, 200, "{}", a.json);
    assert_eq!(a.json["backfill"]["status"], "cancelled");
    h.deliver_visible().await;
    let statuses: Vec<RunStatus> = runs_of(&h, schedule).await.iter().map(|r| r.status).collect();
    let mut expected = vec![RunStatus::Cancelled; 10];
    expected[0] = RunStatus::Completed;
    assert_eq!(statuses, expected, "the run that had finished stays completed; the rest are cancelled");
}

#[tokio::test]
async fn bad_backfills_are_a_422_that_changes_nothing() {
    let (h, key) = setup().await;
    let base = json!({"name": "b", "start_datetime": "2024-01-10", "end_datetime": "2024-01-20", "interval_type": "day", "interval_units": 1});
    for (change, field) in [
        (json!({"end_datetime": "2024-01-01"}), "end_datetime"),
        (json!({"interval_units": 0}), "interval_units"),
        (json!({"interval_type": "fortnight"}), "interval_type"),
        (json!({"start_datetime": "soon"}), "start_datetime"),
    ] {
        let mut body = base.clone();
        body.as_object_mut().expect("object").extend(change.as_object().expect("object").clone());
        let a = backfill(&h, &key, body).await;
        assert_eq!(a.status, 422, "{change}: {}", a.json);
        assert!(a.json["error"]["message"].as_str().unwrap_or("").contains(field), "{change}: {}", a.json);
    }
    assert!(h.app.store.list_backfills().await.expect("list").is_empty());
}
