//! Nothing lost (issue #7, SPEC §5), deterministically, with an injected clock: a message redelivered
//! while its attempt's lease holds has the run looked at again when the lease ends; a run whose queue
//! send failed after its write is queued by the scheduler tick; the tick's sweep finds an expired lease,
//! an overdue callback and a due backoff wait whose messages were all lost; overlapping sweeps queue a
//! run once. (The same on the real local stack, with SIGKILL: `crash.rs`; on DynamoDB Local: `stack.rs`.)

use std::time::Duration;

use kickoff::domain::{ApiKey, BlockRunStatus, Role, RunStatus};
use kickoff::queue::Message;
use kickoff_tests::blocks::{BlockServer, Reply};
use kickoff_tests::request;
use kickoff_tests::worker::{Delivery, Harness};
use serde_json::{json, Value};
use uuid::Uuid;

const LIMIT: Duration = Duration::from_secs(30);

fn http(server: &BlockServer, name: &str, up: &[&str]) -> Value {
    json!({ "name": name, "upstream": up, "executor": { "type": "http", "url": format!("{}/blocks/{name}", server.url) }, "delay_s": 0 })
}

/// Hands every waiting message (delayed ones too) to the worker, one after the other; returns them.
async fn step(h: &Harness) -> Vec<Message> {
    let mut handled = Vec::new();
    for (_, m) in h.queue.take_all().await {
        h.worker.handle(&m).await.expect("handle");
        handled.push(m);
    }
    handled
}

/// Waits until block `i` of the run has its attempt `attempt` claimed.
async fn until_claimed(h: &Harness, run: Uuid, i: usize, attempt: u32) {
    for _ in 0..200 {
        let d = h.app.store.get_run(run).await.expect("get").expect("run").value;
        if d.blocks[i].status == BlockRunStatus::Running && d.blocks[i].attempts == attempt {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("attempt {attempt} of block {i} was never claimed");
}

/// Waits until attempt `attempt` of `block` has reached the block's server (the worker is in the call).
async fn until_called(server: &BlockServer, block: &str, attempt: u64) {
    for _ in 0..200 {
        let arrived = server.arrived();
        if arrived.iter().any(|b| b["block"] == block && b["attempt"] == attempt) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("attempt {attempt} of block {block} never reached its server");
}

/// Starts a run of one block whose first attempt hangs, claims that attempt in a worker, and kills the
/// worker during the call; returns the run and the attempt's message.
async fn claimed_then_killed(h: &Harness, server: &BlockServer, block: &str) -> (Uuid, Message) {
    server.script(block, vec![Reply::status(200).after(120_000), Reply::status(200)]);
    let run = h
        .run(json!([http(server, block, &[]), http(server, &format!("{block}-after"), &[block])]), false)
        .await;
    assert!(matches!(step(h).await[..], [Message::StartRun { .. }]));
    let taken = h.queue.take_all().await;
    let [(_, message)] = &taken[..] else { panic!("one RunBlock: {taken:?}") };
    let (worker, m) = (h.worker.clone(), message.clone());
    let first = tokio::spawn(async move { worker.handle(&m).await });
    until_claimed(h, run, 0, 1).await;
    until_called(server, block, 1).await;
    first.abort();
    (run, message.clone())
}

/// A run of one block (with `settings` merged in) whose first attempt answers `first` and the second
/// 200: its `StartRun` and first attempt are delivered, then every message it left is lost.
async fn one_attempt_then_lose_messages(
    h: &Harness,
    server: &BlockServer,
    name: &str,
    first: Reply,
    settings: Value,
) -> Uuid {
    server.script(name, vec![first, Reply::status(200)]);
    let mut block = http(server, name, &[]);
    for (k, v) in settings.as_object().expect("settings object") {
        block[k] = v.clone();
    }
    let run = h.run(json!([block]), false).await;
    step(h).await; // StartRun
    step(h).await; // RunBlock: the first attempt
    h.queue.take_all().await;
    run
}

#[tokio::test]
async fn a_message_redelivered_while_its_lease_holds_has_the_run_looked_at_when_the_lease_ends() {
    let server = BlockServer::start().await;
    server.script("a", vec![Reply::status(200).after(120_000), Reply::status(200)]);
    let h = Harness::new().await;
    let run = h.run(json!([http(&server, "a", &[]), http(&server, "b", &["a"])]), false).await;
    step(&h).await; // StartRun
    let taken = h.queue.take_all().await;
    let [(_, message)] = &taken[..] else { panic!("one RunBlock: {taken:?}") };
    assert_eq!(message, &Message::RunBlock { run_uuid: run, block: "a".into(), attempt: 1 });

    // A worker claims attempt 1 and calls the block, which takes its time.
    let (worker, m) = (h.worker.clone(), message.clone());
    let first = tokio::spawn(async move { worker.handle(&m).await });
    until_claimed(&h, run, 0, 1).await;
    until_called(&server, "a", 1).await;

    // The queue's visibility timeout (shorter than the lease) passes: the same message comes again. It
    // must not be dropped as a duplicate: it asks for a look at the run when the lease ends.
    h.worker.handle(message).await.expect("the redelivered message");
    let recheck = h.queue.take_all().await;
    let [(delay, again)] = &recheck[..] else { panic!("one re-check at the lease's end: {recheck:?}") };
    assert_eq!(again, message, "the same attempt, looked at again");
    let lease = (30 + 60) as f64; // http's default call time-out + the lease margin
    assert!(
        (lease - 2.0..=lease + 1.0).contains(&delay.as_secs_f64()),
        "delayed to the lease's end: {delay:?}"
    );

    // The worker holding the lease dies during the call; the lease ends; the re-check comes.
    first.abort();
    h.clock.advance(chrono::Duration::seconds(91));
    h.worker.handle(again).await.expect("the re-check");
    let detail = h.drain(run, Delivery::default(), LIMIT).await;
    assert_eq!(detail.run.status, RunStatus::Completed, "{detail:#?}");
    assert_eq!(detail.blocks[0].attempts, 2, "attempt 1 was given up with its worker, attempt 2 ran");
    let calls: Vec<(String, u64)> = server
        .arrived()
        .iter()
        .map(|b| (b["block"].as_str().unwrap_or("").to_string(), b["attempt"].as_u64().unwrap_or(0)))
        .collect();
    assert_eq!(
        calls,
        [("a".to_string(), 1), ("a".to_string(), 2), ("b".to_string(), 1)],
        "each attempt once"
    );
}

#[tokio::test]
async fn a_run_whose_queue_send_failed_after_its_write_is_queued_by_the_tick_and_completes() {
    let h = Harness::new().await;
    let now = h.app.clock.now();
    let (secret, key) = ApiKey::generate(Role::Write, "recovery", now);
    h.app.store.put_api_key(&key).await.expect("key");
    let (_, build) = kickoff::demo::seed(&h.app).await.expect("demo");
    let schedule = kickoff::demo::seed_schedule(&h.app, None).await.expect("schedule");

    // Both dialects' triggers, each losing its queue send after the run was written: answered 200.
    h.sends.fail_next_sends(2);
    let mage = request(
        "POST",
        &format!("{}/api/pipeline_schedules/71/pipeline_runs/{}", h.api, schedule.token),
        &[],
        r#"{"env": "dev"}"#,
    )
    .await;
    assert_eq!(mage.status, 200, "{:?}", mage.json);
    let auth = format!("Bearer {secret}");
    let zenml = request(
        "POST",
        &format!("{}/api/v1/pipeline_builds/{}/runs", h.api, build.id),
        &[("authorization", &auth)],
        "{}",
    )
    .await;
    assert_eq!(zenml.status, 200, "{:?}", zenml.json);
    assert!(h.queue.take_all().await.is_empty(), "no message was sent");
    let mage_id = mage.json["pipeline_run"]["id"].as_i64().expect("id");
    let mage_run = h.app.store.run_uuid(mage_id).await.expect("lookup").expect("the run was written");
    let zenml_run: Uuid = zenml.json["id"].as_str().and_then(|s| s.parse().ok()).expect("uuid");

    // Within the grace period the sweep leaves them alone; after it, it queues each once.
    assert_eq!(h.tick_every_shard().await, 0, "not due yet");
    h.clock.advance(chrono::Duration::seconds(61));
    assert_eq!(h.tick_every_shard().await, 2, "both stuck runs queued");
    assert_eq!(h.tick_every_shard().await, 0, "and not again");
    for run in [mage_run, zenml_run] {
        let detail = h.drain(run, Delivery::default(), LIMIT).await;
        assert_eq!(detail.run.status, RunStatus::Completed, "{detail:#?}");
    }
}

#[tokio::test]
async fn the_sweep_finds_an_expired_lease_an_overdue_callback_and_a_due_backoff_whose_messages_were_lost() {
    let server = BlockServer::start().await;
    let h = Harness::new().await;

    // 1. A worker claimed an attempt and died during the call; every message of the run is lost.
    let (lease_run, _) = claimed_then_killed(&h, &server, "leased").await;
    h.queue.take_all().await;

    // 2. An accepted (202) attempt whose callback never comes, and whose deadline check is lost.
    let callback_run = one_attempt_then_lose_messages(
        &h,
        &server,
        "accepted",
        Reply::status(202),
        json!({"timeout_s": 5, "retries": 1}),
    )
    .await;
    let d = h.app.store.get_run(callback_run).await.expect("get").expect("run").value;
    assert!(d.blocks[0].callback_deadline.is_some(), "waiting for its callback");

    // 3. A failed attempt waiting out its backoff, whose retry message is lost.
    let backoff_run = one_attempt_then_lose_messages(
        &h,
        &server,
        "flaky",
        Reply::status(500),
        json!({"retries": 1, "delay_s": 5}),
    )
    .await;
    let d = h.app.store.get_run(backoff_run).await.expect("get").expect("run").value;
    assert!(d.blocks[0].not_before.is_some(), "waiting out its backoff");

    assert_eq!(h.tick_every_shard().await, 0, "nothing is overdue yet");
    h.clock.advance(chrono::Duration::minutes(3));
    assert_eq!(h.tick_every_shard().await, 3, "each stuck run queued once");
    for (run, block) in [(lease_run, "leased"), (callback_run, "accepted"), (backoff_run, "flaky")] {
        let detail = h.drain(run, Delivery::default(), LIMIT).await;
        assert_eq!(detail.run.status, RunStatus::Completed, "{block}: {detail:#?}");
        assert_eq!(detail.blocks[0].attempts, 2, "{block}: the second attempt completed it");
    }
}

#[tokio::test]
async fn overlapping_sweeps_queue_a_stuck_run_once() {
    let h = Harness::new().await;
    let server = BlockServer::start().await;
    h.sends.fail_next_sends(1);
    let run = h.run(json!([http(&server, "a", &[])]), false).await;
    h.clock.advance(chrono::Duration::minutes(2));
    let shard = kickoff::store::wake_shard(run);
    let (a, b) =
        tokio::join!(kickoff::scheduler::sweep(&h.app, shard), kickoff::scheduler::sweep(&h.app, shard));
    let (a, b) = (a.expect("sweep"), b.expect("sweep"));
    assert_eq!(a.queued + b.queued, 1, "{a:?} {b:?}");
    let sent: Vec<Message> = h.queue.take_all().await.into_iter().map(|(_, m)| m).collect();
    assert_eq!(sent, [Message::StartRun { run_uuid: run }]);
}

#[tokio::test]
async fn a_healthy_run_found_due_is_rescheduled_not_queued() {
    let server = BlockServer::start().await;
    server.script("slow", vec![Reply::status(200).after(120_000)]);
    let h = Harness::new().await;
    let run = h.run(json!([http(&server, "slow", &[])]), false).await;
    step(&h).await; // StartRun
    let taken = h.queue.take_all().await;
    let [(_, message)] = &taken[..] else { panic!("one RunBlock: {taken:?}") };
    let (worker, m) = (h.worker.clone(), message.clone());
    let call = tokio::spawn(async move { worker.handle(&m).await });
    until_claimed(&h, run, 0, 1).await;

    // The trigger's wake time (created + 60 s) passes while the call, and its 90 s lease, go on: the
    // sweep reads the run, sees its lease holds, and moves its wake time to the lease's end + grace.
    h.clock.advance(chrono::Duration::seconds(70));
    let shard = kickoff::store::wake_shard(run);
    let report = kickoff::scheduler::sweep(&h.app, shard).await.expect("sweep");
    assert_eq!((report.due, report.rescheduled, report.queued), (1, 1, 0), "{report:?}");
    assert!(h.queue.take_all().await.is_empty(), "nothing sent");
    let report = kickoff::scheduler::sweep(&h.app, shard).await.expect("sweep");
    assert_eq!(report.due, 0, "not due again until the lease's end + grace");
    let wake = h.app.store.get_run(run).await.expect("get").expect("run").value.run.wake_at.expect("wake");
    let lease = h.app.store.get_run(run).await.expect("get").expect("run").value.blocks[0]
        .lease_until
        .expect("lease");
    assert_eq!(wake.timestamp(), (lease + chrono::Duration::seconds(60)).timestamp());
    call.abort();
}
