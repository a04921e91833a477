//! The worker (issue #4): blocks run in DAG order and in parallel, each attempt's executor is called
//! once however often a message comes and wherever the worker stops, retries, failures, callbacks,
//! time-outs, cancellation and `retry_blocks` — through real HTTP block targets.

use std::collections::BTreeMap;
use std::time::Duration;

use kickoff::domain::{BlockRunStatus, RunStatus};
use kickoff::worker::executor::sign;
use kickoff_tests::blocks::{BlockServer, Reply};
use kickoff_tests::request;
use kickoff_tests::worker::{Delivery, Harness, SECRET};
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(30);

fn http(server: &BlockServer, name: &str, up: &[&str]) -> Value {
    json!({ "name": name, "upstream": up, "executor": { "type": "http", "url": format!("{}/blocks/{name}", server.url) }, "delay_s": 0 })
}

fn diamond(server: &BlockServer) -> Value {
    json!([
        http(server, "a", &[]),
        http(server, "b", &["a"]),
        http(server, "c", &["a"]),
        http(server, "d", &["b", "c"])
    ])
}

fn statuses(detail: &kickoff::domain::run::RunDetail) -> BTreeMap<String, BlockRunStatus> {
    detail.blocks.iter().map(|b| (b.block_uuid.clone(), b.status)).collect()
}

/// Every `(block, attempt)` was called at most once.
fn assert_once_per_attempt(server: &BlockServer) {
    let mut seen = server.attempts();
    let total = seen.len();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), total, "an attempt was called twice: {:?}", server.attempts());
}

#[tokio::test]
async fn a_diamond_runs_in_order_with_independent_blocks_in_parallel() {
    let server = BlockServer::start().await;
    server.script("b", vec![Reply::status(200).after(400)]);
    server.script("c", vec![Reply::status(200).after(400).body(json!({"rows": 7}))]);
    let h = Harness::new().await;
    let run = h.run(diamond(&server), false).await;
    let detail = h.drain(run, Delivery::default(), LIMIT).await;

    assert_eq!(detail.run.status, RunStatus::Completed);
    assert!(detail.run.started_at.is_some() && detail.run.completed_at.is_some());
    let calls = server.calls();
    let at = |b: &str| calls.iter().find(|c| c.block == b).unwrap_or_else(|| panic!("{b} was called"));
    assert_eq!(server.attempts().len(), 4, "every block exactly once: {:?}", server.attempts());
    let (a, b, c, d) = (at("a"), at("b"), at("c"), at("d"));
    assert!(a.ended <= b.started && a.ended <= c.started, "b and c wait for a");
    assert!(b.ended <= d.started && c.ended <= d.started, "d waits for b and c");
    assert!(b.started < c.ended && c.started < b.ended, "b and c overlap in time");
    for block in &detail.blocks {
        assert_eq!(block.status, BlockRunStatus::Completed);
        assert_eq!(block.attempts, 1);
        assert!(block.started_at.is_some() && block.completed_at.is_some());
    }
    assert_eq!(
        detail.blocks[2].metrics,
        Some(json!({"rows": 7})),
        "a JSON object answer becomes the metrics"
    );

    // The invocation is signed as Standard Webhooks specify, and carries what the block needs.
    let id = a.headers["webhook-id"].to_str().unwrap();
    let ts: i64 = a.headers["webhook-timestamp"].to_str().unwrap().parse().unwrap();
    let key = base64_simd::STANDARD.decode_to_vec(SECRET.trim_start_matches("whsec_")).unwrap();
    assert_eq!(a.headers["webhook-signature"].to_str().unwrap(), sign(&key, id, ts, &a.raw));
    assert_eq!(a.body["run_uuid"], json!(run));
    assert_eq!(a.body["attempt"], 1);
    assert!(a.body["callback_url"].as_str().unwrap().ends_with("/callback"));
    assert_eq!(a.body["callback_token"].as_str().unwrap().len(), 32);
}

#[tokio::test]
async fn every_message_delivered_twice_still_calls_each_attempt_once() {
    let server = BlockServer::start().await;
    server.script("b", vec![Reply::status(503), Reply::status(200)]);
    server.script("c", vec![Reply::status(200).after(200)]);
    let h = Harness::new().await;
    let mut blocks = diamond(&server);
    blocks[1]["retries"] = json!(1);
    let run = h.run(blocks, false).await;
    let detail = h.drain(run, Delivery { twice: true }, LIMIT).await;
    assert_eq!(detail.run.status, RunStatus::Completed, "{detail:#?}");
    assert_once_per_attempt(&server);
    let mut attempts = server.attempts();
    attempts.sort();
    let expected: Vec<(String, u32)> =
        [("a", 1), ("b", 1), ("b", 2), ("c", 1), ("d", 1)].iter().map(|(b, n)| (b.to_string(), *n)).collect();
    assert_eq!(attempts, expected);
}

#[tokio::test]
async fn a_worker_stopped_after_any_of_its_writes_resumes_on_redelivery() {
    let server = BlockServer::start().await;
    // A clean run first, to count the worker's writes.
    let h = Harness::new().await;
    let run = h.run(diamond(&server), false).await;
    let before = h.table.writes();
    h.drain(run, Delivery::default(), LIMIT).await;
    let writes = h.table.writes() - before;
    assert!(writes >= 9, "start, and a claim and a result per block: {writes}");

    let mut lost_attempts = 0;
    for k in 1..=writes {
        let server = BlockServer::start().await;
        let h = Harness::new().await;
        let run = h.run(diamond(&server), false).await;
        h.table.crash_after_write(h.table.writes() + k);
        let detail = h.drain(run, Delivery::default(), LIMIT).await;
        assert_eq!(detail.run.status, RunStatus::Completed, "stopped after worker write {k}: {detail:#?}");
        assert!(detail.blocks.iter().all(|b| b.status == BlockRunStatus::Completed), "stop after write {k}");
        assert_once_per_attempt(&server);
        let mut called: Vec<String> = server.attempts().into_iter().map(|(b, _)| b).collect();
        called.sort();
        called.dedup();
        assert_eq!(called, ["a", "b", "c", "d"], "no block is skipped (stop after write {k})");
        lost_attempts += server.attempts().iter().filter(|(_, n)| *n > 1).count();
    }
    // A stop right after a claim loses that attempt: the next one runs (and the seam really stopped).
    assert!(lost_attempts > 0, "some stop fell between a claim and its executor call");
}

#[tokio::test]
async fn a_block_failing_twice_then_succeeding_with_two_retries_completes() {
    let server = BlockServer::start().await;
    server.script("a", vec![Reply::status(500), Reply::status(502), Reply::status(200)]);
    let h = Harness::new().await;
    let mut a = http(&server, "a", &[]);
    a["retries"] = json!(2);
    a["delay_s"] = json!(1);
    let run = h.run(json!([a]), false).await;
    let detail = h.drain(run, Delivery::default(), LIMIT).await;
    assert_eq!(detail.run.status, RunStatus::Completed);
    assert_eq!(detail.blocks[0].attempts, 3);
    assert_eq!(server.attempts().len(), 3);
    let calls = server.calls();
    assert!(
        calls[1].started.duration_since(calls[0].ended) >= Duration::from_millis(900),
        "the first retry waits delay_s"
    );
    assert!(
        calls[2].started.duration_since(calls[1].ended) >= Duration::from_millis(1900),
        "the second waits twice as long"
    );
}

#[tokio::test]
async fn a_block_failing_for_good_fails_the_run_and_cancels_the_rest() {
    let server = BlockServer::start().await;
    server.script("b", vec![Reply::status(500).body(json!({"why": "disk full"}))]);
    server.script("c", vec![Reply::status(200).after(300)]);
    let h = Harness::new().await;
    let run = h.run(diamond(&server), false).await;
    let detail = h.drain(run, Delivery::default(), LIMIT).await;
    assert_eq!(detail.run.status, RunStatus::Failed);
    assert!(detail.run.completed_at.is_some());
    let st = statuses(&detail);
    assert_eq!(st["b"], BlockRunStatus::Failed);
    assert_eq!(st["d"], BlockRunStatus::Cancelled, "not started: cancelled");
    assert_eq!(st["c"], BlockRunStatus::Completed, "a block already running finishes and is recorded");
    let error =
        detail.blocks[1].metrics.as_ref().and_then(|m| m["error"].as_str()).unwrap_or_default().to_string();
    assert!(error.contains("500") && error.contains("disk full"), "{error}");
    assert!(!server.attempts().iter().any(|(b, _)| b == "d"), "nothing is dispatched after the failure");
}

#[tokio::test]
async fn with_allow_blocks_to_fail_only_descendants_are_spared() {
    let server = BlockServer::start().await;
    server.script("b", vec![Reply::status(500)]);
    let h = Harness::new().await;
    let mut blocks = diamond(&server);
    blocks.as_array_mut().unwrap().push(http(&server, "e", &["c"]));
    let run = h.run(blocks, true).await;
    let detail = h.drain(run, Delivery::default(), LIMIT).await;
    let st = statuses(&detail);
    assert_eq!(st["b"], BlockRunStatus::Failed);
    assert_eq!(st["d"], BlockRunStatus::UpstreamFailed);
    assert_eq!(st["c"], BlockRunStatus::Completed);
    assert_eq!(st["e"], BlockRunStatus::Completed, "the rest goes on");
    assert_eq!(detail.run.status, RunStatus::Failed, "the run ends failed since a block failed");
}

#[tokio::test]
async fn a_4xx_is_not_retried_and_a_time_out_is() {
    let server = BlockServer::start().await;
    server.script("bad", vec![Reply::status(422)]);
    server.script("slow", vec![Reply::status(200).after(2500), Reply::status(200)]);
    let h = Harness::new().await;
    let mut bad = http(&server, "bad", &[]);
    bad["retries"] = json!(3);
    let run = h.run(json!([bad]), false).await;
    let detail = h.drain(run, Delivery::default(), LIMIT).await;
    assert_eq!(detail.run.status, RunStatus::Failed);
    assert_eq!(server.attempts(), [("bad".to_string(), 1)], "a 4xx is final");

    let mut slow = http(&server, "slow", &[]);
    slow["retries"] = json!(1);
    slow["executor"]["timeout_s"] = json!(1);
    let run = h.run(json!([slow]), false).await;
    let detail = h.drain(run, Delivery::default(), LIMIT).await;
    assert_eq!(detail.run.status, RunStatus::Completed, "{detail:#?}");
    assert_eq!(detail.blocks[0].attempts, 2, "the timed-out attempt was retried");
}

async fn accepted_block(h: &Harness, server: &BlockServer, timeout_s: u64) -> uuid::Uuid {
    server.script("async", vec![Reply::status(202)]);
    let mut block = http(server, "async", &[]);
    block["timeout_s"] = json!(timeout_s);
    let run = h.run(json!([block, http(server, "after", &["async"])]), false).await;
    // Deliver until the block is waiting for its callback.
    for _ in 0..50 {
        if let Ok(batch) = kickoff::queue::RunQueue::receive(&*h.queue, 10, Duration::from_millis(50)).await {
            for r in batch {
                h.worker.handle(&r.message).await.expect("handle");
            }
        }
        let d = h.app.store.get_run(run).await.unwrap().unwrap().value;
        if d.blocks[0].callback_deadline.is_some() {
            return run;
        }
    }
    panic!("the block was never accepted");
}

#[tokio::test]
async fn an_accepted_block_is_finished_by_its_callback_once() {
    let server = BlockServer::start().await;
    let h = Harness::new().await;
    let run = accepted_block(&h, &server, 600).await;
    let call = server.calls().remove(0);
    let url = call.body["callback_url"].as_str().unwrap().to_string();
    let token = call.body["callback_token"].as_str().unwrap().to_string();
    assert!(url.starts_with(&h.api));

    let wrong =
        request("POST", &url, &[("authorization", "Bearer 0000")], r#"{"status": "completed"}"#).await;
    assert_eq!(wrong.status, 401);
    assert!(!String::from_utf8_lossy(&wrong.raw).contains(&token));
    let bad =
        request("POST", &url, &[("authorization", &format!("Bearer {token}"))], r#"{"status": "done"}"#)
            .await;
    assert_eq!(bad.status, 422);
    let ok = request(
        "POST",
        &url,
        &[("authorization", &format!("Bearer {token}"))],
        r#"{"status": "completed", "metrics": {"rows": 12}}"#,
    )
    .await;
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.raw));
    assert_eq!(ok.json["block_run"]["status"], "completed");
    let reused =
        request("POST", &url, &[("authorization", &format!("Bearer {token}"))], r#"{"status": "completed"}"#)
            .await;
    assert_eq!(reused.status, 401, "a callback token is good once");

    let detail = h.drain(run, Delivery::default(), LIMIT).await;
    assert_eq!(detail.run.status, RunStatus::Completed);
    assert_eq!(detail.blocks[0].metrics, Some(json!({"rows": 12})));
    assert_eq!(server.attempts(), [("async".to_string(), 1), ("after".to_string(), 1)]);
}

#[tokio::test]
async fn an_accepted_block_that_never_calls_back_fails_at_its_timeout() {
    let server = BlockServer::start().await;
    let h = Harness::new().await;
    let run = accepted_block(&h, &server, 1).await;
    let detail = h.drain(run, Delivery::default(), LIMIT).await;
    assert_eq!(detail.run.status, RunStatus::Failed);
    assert_eq!(detail.blocks[0].status, BlockRunStatus::Failed);
    let error =
        detail.blocks[0].metrics.as_ref().and_then(|m| m["error"].as_str()).unwrap_or_default().to_string();
    assert!(error.contains("timeout_s"), "{error}");
    assert_eq!(detail.blocks[1].status, BlockRunStatus::Cancelled);
}

#[tokio::test]
async fn cancelling_a_running_run_dispatches_nothing_new() {
    let server = BlockServer::start().await;
    server.script("a", vec![Reply::status(200).after(1500)]);
    let h = Harness::new().await;
    let run = h.run(diamond(&server), false).await;
    let worker = h.worker.clone();
    let queue = h.queue.clone();
    // Start the run and the first block, and cancel while `a` runs.
    let first = tokio::spawn(async move {
        for _ in 0..2 {
            let batch = kickoff::queue::RunQueue::receive(&*queue, 10, Duration::from_secs(2)).await.unwrap();
            for r in batch {
                worker.handle(&r.message).await.unwrap();
            }
        }
    });
    loop {
        let d = h.app.store.get_run(run).await.unwrap().unwrap().value;
        if d.blocks[0].status == BlockRunStatus::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let key = {
        let (secret, key) =
            kickoff::domain::ApiKey::generate(kickoff::domain::Role::Write, "t", h.app.clock.now());
        h.app.store.put_api_key(&key).await.unwrap();
        secret
    };
    let run_id = h.app.store.get_run(run).await.unwrap().unwrap().value.run.id;
    let a = request(
        "PUT",
        &format!("{}/api/pipeline_runs/{run_id}", h.api),
        &[("authorization", &format!("Bearer {key}"))],
        r#"{"pipeline_run": {"status": "cancelled"}}"#,
    )
    .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.raw));
    first.await.unwrap();
    let detail = h.drain(run, Delivery::default(), LIMIT).await;
    assert_eq!(detail.run.status, RunStatus::Cancelled);
    let st = statuses(&detail);
    assert_eq!(st["a"], BlockRunStatus::Completed, "the running block's result is recorded");
    for b in ["b", "c", "d"] {
        assert_eq!(st[b], BlockRunStatus::Cancelled);
    }
    assert_eq!(server.attempts(), [("a".to_string(), 1)], "nothing new is dispatched");
}

#[tokio::test]
async fn retry_blocks_from_a_failed_block_reruns_it_and_its_descendants_only() {
    let server = BlockServer::start().await;
    server.script("c", vec![Reply::status(400), Reply::status(200)]);
    let h = Harness::new().await;
    let run = h.run(diamond(&server), false).await;
    let failed = h.drain(run, Delivery::default(), LIMIT).await;
    assert_eq!(failed.run.status, RunStatus::Failed);
    let (secret, key) =
        kickoff::domain::ApiKey::generate(kickoff::domain::Role::Write, "t", h.app.clock.now());
    h.app.store.put_api_key(&key).await.unwrap();
    let calls_before = server.attempts().len();
    let a = request(
        "PUT",
        &format!("{}/api/pipeline_runs/{}", h.api, failed.run.id),
        &[("authorization", &format!("Bearer {secret}"))],
        r#"{"pipeline_run": {"pipeline_run_action": "retry_blocks", "from_block_uuid": "c"}}"#,
    )
    .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.raw));
    assert_eq!(a.json["pipeline_run"]["status"], "running");
    let detail = h.drain(run, Delivery::default(), LIMIT).await;
    assert_eq!(detail.run.status, RunStatus::Completed, "{detail:#?}");
    let again: Vec<String> = server.attempts()[calls_before..].iter().map(|(b, _)| b.clone()).collect();
    assert_eq!(again, ["c", "d"], "only c and its descendant d run again");
}

#[tokio::test]
async fn the_worker_lambda_reports_unreadable_and_failed_messages_as_batch_item_failures() {
    use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
    let h = Harness::new().await;
    let server = BlockServer::start().await;
    let run = h.run(json!([http(&server, "a", &[])]), false).await;
    let message = |id: &str, body: &str| {
        let mut m = SqsMessage::default();
        m.message_id = Some(id.to_string());
        m.body = Some(body.to_string());
        m
    };
    let mut event = SqsEvent::default();
    event.records = vec![
        message(
            "good",
            &serde_json::to_string(&kickoff::queue::Message::StartRun { run_uuid: run }).unwrap(),
        ),
        message("garbage", "{not json"),
        message("unknown-kind", r#"{"kind": "explode"}"#),
    ];
    h.table.crash_after_write(0);
    let response = kickoff::worker::lambda::process(h.worker.clone(), event).await;
    let mut failed: Vec<String> =
        response.batch_item_failures.into_iter().map(|f| f.item_identifier).collect();
    failed.sort();
    assert_eq!(failed, ["garbage", "unknown-kind"]);
    let d = h.app.store.get_run(run).await.unwrap().unwrap().value;
    assert_eq!(d.run.status, RunStatus::Running, "the good message was handled");
}

#[tokio::test]
async fn a_block_answering_a_megabyte_completes_once_with_its_metrics_noted_not_kept() {
    let server = BlockServer::start().await;
    let h = Harness::new().await;
    server.script("big", vec![Reply::status(200).body(json!({ "blob": "x".repeat(1024 * 1024) }))]);
    let run = h.run(json!([http(&server, "big", &[]), http(&server, "after", &["big"])]), false).await;
    let detail = h.drain(run, Delivery::default(), LIMIT).await;
    assert_eq!(detail.run.status, RunStatus::Completed, "{detail:#?}");
    let note = detail.blocks[0].metrics.as_ref().and_then(|m| m["kickoff_note"].as_str()).unwrap_or_default();
    assert!(note.contains("longer than 262144 bytes"), "{note}");
    assert_eq!(server.attempts(), [("big".to_string(), 1), ("after".to_string(), 1)]);
}

#[tokio::test]
async fn a_block_that_calls_back_before_it_answers_202_is_heard() {
    let server = BlockServer::start().await;
    let h = Harness::new().await;
    let done = json!({ "status": "completed", "metrics": { "early": true } });
    server.script("fast", vec![Reply::status(202).calling_back_first(done)]);
    let mut block = http(&server, "fast", &[]);
    block["timeout_s"] = json!(3600);
    let run = h.run(json!([block, http(&server, "after", &["fast"])]), false).await;
    let detail = h.drain(run, Delivery::default(), LIMIT).await;
    assert_eq!(server.early_callbacks(), [200], "the callback made before the 202 was accepted");
    assert_eq!(detail.run.status, RunStatus::Completed, "{detail:#?}");
    assert_eq!(detail.blocks[0].metrics, Some(json!({ "early": true })));
    assert_eq!(server.attempts(), [("fast".to_string(), 1), ("after".to_string(), 1)]);
}

/// The real executors, except that the first call panics once the target has answered — the worst
/// moment: the block has run and its outcome is not recorded.
struct PanicAfterFirstCall {
    inner: kickoff::worker::executor::Executors,
    panicked: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl kickoff::worker::executor::Invoke for PanicAfterFirstCall {
    async fn invoke(
        &self,
        executor: &kickoff::domain::Executor,
        invocation: &kickoff::worker::executor::Invocation,
    ) -> kickoff::worker::executor::Outcome {
        let outcome = self.inner.invoke(executor, invocation).await;
        if !self.panicked.swap(true, std::sync::atomic::Ordering::SeqCst) {
            panic!("injected panic after the block answered");
        }
        outcome
    }

    async fn notify(&self, url: &str, id: &str, body: Vec<u8>) -> Result<u16, String> {
        self.inner.notify(url, id, body).await
    }
}

#[tokio::test]
async fn a_panic_inside_a_message_is_a_batch_item_failure_and_the_run_ends_with_each_attempt_called_once() {
    use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
    use kickoff::queue::RunQueue;
    let server = BlockServer::start().await;
    let h = Harness::new().await;
    let executors = PanicAfterFirstCall {
        inner: kickoff::worker::executor::Executors::new(SECRET),
        panicked: std::sync::atomic::AtomicBool::new(false),
    };
    let worker = std::sync::Arc::new(kickoff::worker::Worker::new(
        h.app.clone(),
        std::sync::Arc::new(executors),
        &h.api,
    ));
    let run = h.run(json!([http(&server, "a", &[]), http(&server, "b", &["a"])]), false).await;
    let started = std::time::Instant::now();
    let mut reported = Vec::new();
    loop {
        let batch = h.queue.receive(10, Duration::from_millis(100)).await.expect("receive");
        let mut event = SqsEvent::default();
        for (i, r) in batch.iter().enumerate() {
            let mut m = SqsMessage::default();
            m.message_id = Some(i.to_string());
            m.body = Some(serde_json::to_string(&r.message).unwrap());
            event.records.push(m);
        }
        let response = kickoff::worker::lambda::process(worker.clone(), event).await;
        for r in &batch {
            h.queue.delete(&r.receipt).await.expect("delete");
        }
        let failed: Vec<usize> =
            response.batch_item_failures.iter().map(|f| f.item_identifier.parse().unwrap()).collect();
        if !failed.is_empty() {
            // As SQS: the failed message comes back after its visibility timeout, past the lease.
            h.clock.advance(chrono::Duration::minutes(20));
            for i in &failed {
                reported.push(batch[*i].message.clone());
                h.queue.send(&batch[*i].message).await.expect("redeliver");
            }
            continue;
        }
        let detail = h.app.store.get_run(run).await.unwrap().unwrap().value;
        if detail.run.status.is_finished() && h.queue.visible_len().await == 0 {
            assert_eq!(detail.run.status, RunStatus::Completed, "{detail:#?}");
            break;
        }
        assert!(started.elapsed() < LIMIT, "the run did not finish: {detail:#?}");
    }
    assert!(
        matches!(reported.as_slice(), [kickoff::queue::Message::RunBlock { block, attempt: 1, .. }] if block == "a"),
        "the panicked message, and only it, was reported for redelivery: {reported:?}"
    );
    // Attempt 1's outcome was lost with the panic: its lease ran out and attempt 2 ran, each once.
    assert_eq!(server.attempts(), [("a".to_string(), 1), ("a".to_string(), 2), ("b".to_string(), 1)]);
}

/// The egress policy holds at call time too: a block saved under an opt-in (loopback) and run by a
/// worker whose policy is `public` is refused before any connection — the target is never called, and
/// the attempt fails for good with the policy's reason.
#[tokio::test]
async fn a_worker_under_the_public_policy_never_calls_a_loopback_block() {
    let server = BlockServer::start().await;
    let h = Harness::new().await;
    let run = h.run(json!([http(&server, "a", &[])]), false).await;
    kickoff::egress::set(kickoff::egress::Policy::Public);
    let executors = kickoff::worker::executor::Executors::new(SECRET);
    let worker = kickoff::worker::Worker::new(h.app.clone(), std::sync::Arc::new(executors), &h.api);
    let started = std::time::Instant::now();
    loop {
        for r in kickoff::queue::RunQueue::receive(&*h.queue, 10, Duration::from_millis(50)).await.unwrap() {
            worker.handle(&r.message).await.expect("handle");
            kickoff::queue::RunQueue::delete(&*h.queue, &r.receipt).await.unwrap();
        }
        let d = h.app.store.get_run(run).await.unwrap().unwrap().value;
        if d.run.status.is_finished() {
            assert_eq!(d.run.status, RunStatus::Failed);
            let error = d.blocks[0]
                .metrics
                .as_ref()
                .and_then(|m| m["error"].as_str())
                .unwrap_or_default()
                .to_string();
            assert!(error.contains("egress policy `public`"), "{error}");
            break;
        }
        assert!(started.elapsed() < LIMIT, "{d:#?}");
    }
    assert!(server.calls().is_empty() && server.arrived().is_empty(), "the block was called");
}
