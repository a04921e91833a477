//! Notifications when a run ends (SPEC §10), through the worker as SQS drives it: a recorder receives
//! exactly one signed POST per event — with every queue message delivered twice at once, and with the
//! worker stopped right after each of its writes (the sweep re-queuing what a lost send left behind);
//! a failing receiver is retried with backoff and every attempt shows on the run's answer; the Slack
//! format is a valid incoming-webhook body.

use std::time::Duration;

use kickoff::domain::notify::{DeliveryStatus, NotifyEvent, NotifyFormat, NotifyTarget};
use kickoff::domain::run::RunDetail;
use kickoff::domain::{ApiKey, Role, RunStatus};
use kickoff::trigger::RunOptions;
use kickoff_tests::blocks::{BlockServer, Call, Reply};
use kickoff_tests::request;
use kickoff_tests::worker::{Delivery, Harness, SECRET};
use serde_json::{json, Value};
use uuid::Uuid;

const LIMIT: Duration = Duration::from_secs(30);

/// A pipeline whose `load` block fails (a 4xx is not retried) after `extract` completed.
fn failing(server: &BlockServer) -> Value {
    server.script("load", vec![Reply::status(400).body(json!({"error": "bad rows"}))]);
    json!([
        { "name": "extract", "executor": { "type": "noop" } },
        { "name": "load", "upstream": ["extract"], "executor": { "type": "http", "url": format!("{}/blocks/load", server.url) } },
    ])
}

/// Targets on the recorder: json on failed and completed, slack on failed, json on sla_missed.
fn targets(recorder: &BlockServer) -> Vec<NotifyTarget> {
    let t = |path: &str, on: Vec<NotifyEvent>, format| NotifyTarget {
        url: format!("{}/{path}", recorder.url),
        on,
        format,
    };
    vec![
        t("json", vec![NotifyEvent::Failed, NotifyEvent::Completed], NotifyFormat::Json),
        t("slack", vec![NotifyEvent::Failed], NotifyFormat::Slack),
        t("sla", vec![NotifyEvent::SlaMissed], NotifyFormat::Json),
    ]
}

/// The recorder's calls: notifications carry no `block` in their body.
fn notifications(recorder: &BlockServer) -> Vec<Call> {
    recorder.calls().into_iter().filter(|c| c.body.get("block").is_none()).collect()
}

/// Checks a call's Standard Webhooks signature against the worker's secret.
fn assert_signed(call: &Call) {
    let header = |k: &str| call.headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let (id, ts) = (header("webhook-id"), header("webhook-timestamp"));
    let ts: i64 = ts.parse().expect("webhook-timestamp");
    let key = base64_simd::STANDARD.decode_to_vec(SECRET.trim_start_matches("whsec_")).expect("whsec_");
    let expected = kickoff::worker::executor::sign(&key, &id, ts, &call.raw);
    assert_eq!(header("webhook-signature"), expected, "signed as block invocations are");
    assert!(id.starts_with("notification-"), "{id}");
}

/// Delivers until the run has finished and every notification it owes is settled: the queue drained,
/// then — if a stop lost a send — the clock moved past the grace period and the sweep run.
async fn settle(h: &Harness, run: Uuid, how: Delivery) -> RunDetail {
    for _ in 0..10 {
        let detail = h.drain(run, how, LIMIT).await;
        if detail.run.notifications.iter().all(|n| n.status != DeliveryStatus::Pending) {
            return detail;
        }
        h.clock.advance(chrono::Duration::minutes(3));
        h.tick_every_shard().await;
    }
    panic!(
        "notifications still pending: {:#?}",
        h.app.store.get_run(run).await.expect("get").expect("run").value.run
    );
}

fn assert_failed_run_notified_once(detail: &RunDetail, recorder: &BlockServer, context: &str) {
    assert_eq!(detail.run.status, RunStatus::Failed, "{context}");
    let calls = notifications(recorder);
    let json_calls: Vec<&Call> = calls.iter().filter(|c| c.body.get("event").is_some()).collect();
    let slack_calls: Vec<&Call> = calls.iter().filter(|c| c.body.get("text").is_some()).collect();
    assert_eq!(json_calls.len(), 1, "{context}: one json POST for the failed event: {calls:#?}");
    assert_eq!(slack_calls.len(), 1, "{context}: one slack POST: {calls:#?}");
    for c in &calls {
        assert_signed(c);
    }
    let body = &json_calls[0].body;
    assert_eq!(body["event"], "failed");
    assert_eq!(body["type"], "run.failed");
    assert_eq!(body["run"]["uuid"], detail.run.uuid.to_string());
    assert_eq!(body["run"]["status"], "failed");
    assert_eq!(body["run"]["failed_blocks"][0]["block"], "load");
    // The slack body: a valid incoming-webhook message (a non-empty `text`, nothing Slack would refuse).
    let slack = &slack_calls[0].body;
    let keys: Vec<&String> = slack.as_object().expect("an object").keys().collect();
    assert_eq!(keys, ["text"], "{slack}");
    let text = slack["text"].as_str().expect("text");
    assert!(text.contains("failed") && text.contains("load"), "{text}");
    // Owed: failed → json and slack; never completed or sla_missed.
    let owed: Vec<(NotifyEvent, DeliveryStatus, u32)> =
        detail.run.notifications.iter().map(|n| (n.event, n.status, n.history.len() as u32)).collect();
    assert_eq!(owed.len(), 2, "{context}: {owed:?}");
    assert!(
        owed.iter().all(|(e, s, _)| *e == NotifyEvent::Failed && *s == DeliveryStatus::Delivered),
        "{owed:?}"
    );
}

#[tokio::test]
async fn one_signed_post_per_event_across_duplicated_messages() {
    let (server, recorder) = (BlockServer::start().await, BlockServer::start().await);
    let h = Harness::new().await;
    let opts = RunOptions { notify: targets(&recorder), ..RunOptions::default() };
    let run = h.run_with(failing(&server), opts).await;
    let detail = settle(&h, run, Delivery { twice: true }).await;
    assert_failed_run_notified_once(&detail, &recorder, "every message delivered twice");
}

#[tokio::test]
async fn one_post_per_event_when_the_worker_stops_after_any_of_its_writes() {
    // A clean run first, to count the writes (the run's and its notifications').
    let (server, recorder) = (BlockServer::start().await, BlockServer::start().await);
    let h = Harness::new().await;
    let run = h
        .run_with(failing(&server), RunOptions { notify: targets(&recorder), ..RunOptions::default() })
        .await;
    let before = h.table.writes();
    settle(&h, run, Delivery::default()).await;
    let writes = h.table.writes() - before;
    assert!(writes >= 6, "the run's writes, then a claim and a record per notification: {writes}");
    for k in 1..=writes {
        let (server, recorder) = (BlockServer::start().await, BlockServer::start().await);
        let h = Harness::new().await;
        let run = h
            .run_with(failing(&server), RunOptions { notify: targets(&recorder), ..RunOptions::default() })
            .await;
        h.table.crash_after_write(h.table.writes() + k);
        let detail = settle(&h, run, Delivery::default()).await;
        assert_failed_run_notified_once(&detail, &recorder, &format!("stopped after write {k}"));
    }
}

/// A one-block noop run that notifies `recorder` in `format` when it completes, run to its end; its
/// first notification attempt made.
async fn completed_run_notifying(recorder: &BlockServer, format: NotifyFormat) -> (Harness, Uuid) {
    let h = Harness::new().await;
    let target =
        NotifyTarget { url: format!("{}/hook", recorder.url), on: vec![NotifyEvent::Completed], format };
    let run = h
        .run_with(
            json!([{ "name": "only", "executor": { "type": "noop" } }]),
            RunOptions { notify: vec![target], ..RunOptions::default() },
        )
        .await;
    h.drain(run, Delivery::default(), LIMIT).await;
    (h, run)
}

#[tokio::test]
async fn a_failing_receiver_is_retried_with_backoff_and_its_attempts_show_on_the_run() {
    let recorder = BlockServer::start().await;
    // Notifications have no block name: the recorder scripts them under "".
    recorder.script("", vec![Reply::status(500), Reply::status(503), Reply::status(204)]);
    let (h, run) = completed_run_notifying(&recorder, NotifyFormat::Json).await;
    // Each failure queues the next attempt after its backoff: 30 s, then 60 s.
    let mut waits = Vec::new();
    while notifications(&recorder).len() < 3 {
        let delayed = h.queue.take_all().await;
        assert_eq!(delayed.len(), 1, "one next attempt is queued: {delayed:?}");
        let (delay, message) = delayed.into_iter().next().expect("a message");
        // The queue counts real time; the worker's clock is moved by the whole seconds it was told.
        let secs = delay.as_secs_f64().ceil() as i64;
        waits.push(secs);
        h.clock.advance(chrono::Duration::seconds(secs));
        h.worker.handle(&message).await.expect("notify");
    }
    assert_eq!(waits, [30, 60], "backoff between attempts");
    assert!(h.queue.take_all().await.is_empty(), "delivered: nothing more is queued");
    let calls = notifications(&recorder);
    let ids: Vec<_> = calls.iter().map(|c| c.headers.get("webhook-id").cloned()).collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "every attempt carries the same webhook-id: {ids:?}");

    // The attempts on the run's answer.
    let (secret, key) = ApiKey::generate(Role::Read, "test", h.app.clock.now());
    h.app.store.put_api_key(&key).await.expect("key");
    let id = h.app.store.get_run(run).await.expect("get").expect("run").value.run.id;
    let a = request(
        "GET",
        &format!("{}/api/pipeline_runs/{id}", h.api),
        &[("authorization", &format!("Bearer {secret}"))],
        "",
    )
    .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.raw));
    let n = &a.json["pipeline_run"]["notifications"][0];
    assert_eq!(n["event"], "completed");
    assert_eq!(n["status"], "delivered");
    assert_eq!(n["attempts"], 3);
    let results: Vec<&str> =
        n["history"].as_array().expect("history").iter().filter_map(|a| a["result"].as_str()).collect();
    assert_eq!(results, ["HTTP 500", "HTTP 503", "HTTP 204"]);
    assert!(n["next_attempt_at"].is_null());
}

#[tokio::test]
async fn a_receiver_that_never_answers_2xx_is_given_up_after_24_hours() {
    let recorder = BlockServer::start().await;
    recorder.script("", vec![Reply::status(500)]);
    let (h, run) = completed_run_notifying(&recorder, NotifyFormat::Slack).await;
    let started = h.app.clock.now();
    loop {
        let delayed = h.queue.take_all().await;
        let Some((delay, message)) = delayed.into_iter().next() else { break };
        h.clock.advance(chrono::Duration::seconds(delay.as_secs_f64().ceil() as i64));
        h.worker.handle(&message).await.expect("notify");
    }
    let n = h.app.store.get_run(run).await.expect("get").expect("run").value.run.notifications.remove(0);
    assert_eq!(n.status, DeliveryStatus::Failed, "given up");
    let spent = h.app.clock.now() - started;
    assert!(spent <= chrono::Duration::hours(24) && spent > chrono::Duration::hours(22), "{spent}");
    assert_eq!(notifications(&recorder).len() as u32, n.attempts);
}

#[tokio::test]
async fn a_missed_sla_notifies_while_the_run_goes_on_even_when_the_send_is_lost() {
    use kickoff::domain::run::Deadlines;
    let (blocks, recorder) = (BlockServer::start().await, BlockServer::start().await);
    blocks.script("wait", vec![Reply::status(202)]);
    let h = Harness::new().await;
    let target = NotifyTarget {
        url: format!("{}/sla", recorder.url),
        on: vec![NotifyEvent::SlaMissed],
        format: NotifyFormat::Json,
    };
    let slow = json!([{"name": "wait", "executor": {"type": "http", "url": format!("{}/blocks/wait", blocks.url)}, "timeout_s": 86400}]);
    let opts = RunOptions {
        notify: vec![target],
        deadlines: Deadlines { sla_s: Some(60), ..Deadlines::default() },
        ..RunOptions::default()
    };
    let run = h.run_with(slow, opts).await;
    h.deliver_visible().await;
    // Past the SLA: the tick marks the run, but its Notify send is lost.
    h.clock.advance(chrono::Duration::seconds(90));
    h.sends.fail_next_sends(1);
    let _ = h.tick_every_shard().await;
    h.deliver_visible().await;
    let detail = h.app.store.get_run(run).await.expect("get").expect("run").value;
    assert!(detail.run.passed_sla);
    assert_eq!(detail.run.notifications.len(), 1);
    assert!(notifications(&recorder).is_empty(), "the send was lost");
    // The run is still waiting for its callback; the sweep finds the notification owed and sends it.
    h.clock.advance(chrono::Duration::minutes(3));
    let _ = h.tick_every_shard().await;
    h.deliver_visible().await;
    let calls = notifications(&recorder);
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_eq!(calls[0].body["event"], "sla_missed");
    assert_eq!(calls[0].body["run"]["status"], "running");
    let detail = h.app.store.get_run(run).await.expect("get").expect("run").value;
    assert_eq!(detail.run.status, RunStatus::Running);
    assert_eq!(detail.run.notifications[0].status, DeliveryStatus::Delivered);
}
