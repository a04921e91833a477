//! The crash test (issue #7, SPEC §5 "Nothing lost"): the embedded server — the real `kickoff-local`
//! binary, with its in-process worker and scheduler tick — on DynamoDB Local and the SQS emulator, the
//! queue's visibility timeout (5 s) shorter than a block's call and than its lease, `http` blocks against
//! a local recorder, bursts of triggers on both dialects, and SIGKILL at a random moment of each of
//! [`ROUNDS`] rounds, then a restart. Afterwards every trigger answered 2xx — indeed every run in the
//! table — has completed, no block attempt was called twice, and every block of every acknowledged run
//! was called. Bounded: [`ROUNDS`] rounds of at most a few seconds, then at most [`FINISH_LIMIT`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kickoff::domain::notify::DeliveryStatus;
use kickoff::domain::RunStatus;
use kickoff::store::{RunView, Store};
use kickoff_tests::blocks::{BlockServer, Reply};
use kickoff_tests::{free_port, request, stack, try_request, workspace_binary, workspace_root, ChildGroup};
use serde_json::json;
use uuid::Uuid;

const ROUNDS: usize = 12;
const TRIGGERS_PER_ROUND: usize = 12;
/// How long the runs may take to finish after the last restart (a lease of 8 + 60 s, the sweep's grace
/// of 60 s and 8 one-second ticks, with room).
const FINISH_LIMIT: Duration = Duration::from_secs(200);
const API_KEY: &str = "crash-test-key";

/// A number in `0..n` from the OS's random bytes.
fn random_below(n: u64) -> u64 {
    u64::from(u32::from_le_bytes(kickoff::clock::random_bytes::<4>())) % n.max(1)
}

struct Server {
    port: u16,
    env: Vec<(&'static str, String)>,
    log: std::path::PathBuf,
}

impl Server {
    /// `kickoff-local` on a fresh table and queue (visibility 5 s) of the local stack, its tick every
    /// second; and a store on that table.
    async fn fresh(stack: &kickoff_tests::Stack, prefix: &str) -> (Store, Server) {
        let table = stack.new_table(prefix).await;
        let table_name = table.table_name().to_string();
        let store = Store::new(Arc::new(table));
        let queue_url = stack.new_queue_with_visibility(prefix, 5).await;
        let server = Server {
            port: free_port(),
            env: vec![
                ("KICKOFF_TABLE", table_name),
                ("KICKOFF_QUEUE_URL", queue_url),
                ("AWS_ENDPOINT_URL_DYNAMODB", stack.dynamodb.clone()),
                ("AWS_ENDPOINT_URL_SQS", stack.sqs.clone()),
                ("AWS_ACCESS_KEY_ID", "test".into()),
                ("AWS_SECRET_ACCESS_KEY", "test".into()),
                ("AWS_REGION", "us-east-1".into()),
                ("KICKOFF_DEV_API_KEY", API_KEY.into()),
                ("KICKOFF_WEBHOOK_SECRET", kickoff_tests::worker::SECRET.into()),
                ("KICKOFF_TICK_INTERVAL_S", "1".into()),
                ("RUST_LOG", "info".into()),
            ],
            log: workspace_root().join("target").join(format!("crash-test-{}.log", Uuid::new_v4().simple())),
        };
        (store, server)
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the binary and waits until it answers.
    async fn start(&self) -> ChildGroup {
        let mut cmd = std::process::Command::new(workspace_binary("kickoff-local"));
        cmd.args(["--port", &self.port.to_string()]);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        // Appending: one log across the restarts.
        let child = ChildGroup::spawn_appending(cmd, &self.log);
        let started = Instant::now();
        loop {
            let answer = try_request(
                "GET",
                &format!("{}/api/pipeline_schedules", self.base()),
                &[("authorization", &format!("Bearer {API_KEY}"))],
                "",
            )
            .await;
            if answer.is_ok_and(|a| a.status == 200) {
                return child;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "kickoff-local did not start; see {:?}",
                self.log
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// What a trigger answered 2xx: the run, as its dialect names it.
#[derive(Debug, Clone)]
enum Acknowledged {
    Mage(i64),
    Zenml(Uuid),
}

#[tokio::test]
async fn every_acknowledged_run_completes_through_sigkills_at_random_moments() {
    let Some(stack) = stack("every_acknowledged_run_completes_through_sigkills_at_random_moments") else {
        return;
    };
    let (store, server) = Server::fresh(&stack, "crash").await;

    // Block targets: a short call, a call longer than the visibility timeout, a quick one.
    let recorder = BlockServer::start().await;
    recorder.script("extract", vec![Reply::status(200).after(200)]);
    recorder.script("transform", vec![Reply::status(200).after(6_000)]);
    let block = |name: &str, up: &[&str]| {
        json!({ "name": name, "upstream": up, "timeout_s": 8,
                "executor": { "type": "http", "url": format!("{}/blocks/{name}", recorder.url) } })
    };
    let blocks =
        json!([block("extract", &[]), block("transform", &["extract"]), block("load", &["transform"])]);
    // A notification target on the pipeline version: every completed run owes one POST (SPEC §10).
    let notifier = BlockServer::start().await;

    let base = server.base();
    let auth = format!("Bearer {API_KEY}");

    // The pipeline (ZenML) and an api schedule of it (Mage), made through the API.
    let mut child = server.start().await;
    let a = request("POST", &format!("{base}/api/v1/pipelines"), &[("authorization", &auth)], {
        json!({ "name": "crash", "blocks": blocks,
                "notifications": [{ "url": format!("{}/notify", notifier.url), "on": ["completed"] }] })
        .to_string()
    })
    .await;
    assert_eq!(a.status, 200, "{}", a.json);
    let pipeline_id = a.json["id"].as_str().expect("pipeline id").to_string();
    let a = request(
        "GET",
        &format!("{base}/api/v1/pipeline_builds?pipeline_id={pipeline_id}"),
        &[("authorization", &auth)],
        "",
    )
    .await;
    let build_id = a.json["items"][0]["id"].as_str().expect("build id").to_string();
    let a = request(
        "POST",
        &format!("{base}/api/pipelines/crash/pipeline_schedules"),
        &[("authorization", &auth)],
        r#"{"pipeline_schedule": {"name": "crash", "schedule_type": "api", "status": "active"}}"#,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.json);
    let schedule_id = a.json["pipeline_schedule"]["id"].as_i64().expect("schedule id");
    let token = a.json["pipeline_schedule"]["token"].as_str().expect("token").to_string();

    let mut acknowledged: Vec<Acknowledged> = Vec::new();
    let mut sent = 0;
    let mut kills = 0;
    for round in 0..ROUNDS {
        if round > 0 {
            child = server.start().await;
        }
        // A burst of triggers spread over 1.5 s, on both dialects' trigger routes.
        let mut tasks = Vec::new();
        for i in 0..TRIGGERS_PER_ROUND {
            let (base, auth, token, build_id) = (base.clone(), auth.clone(), token.clone(), build_id.clone());
            let wait = Duration::from_millis(random_below(1_500));
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                let body = json!({ "round": round, "i": i }).to_string();
                let answer = match i % 3 {
                    0 => {
                        let url =
                            format!("{base}/api/pipeline_schedules/{schedule_id}/pipeline_runs/{token}");
                        try_request("POST", &url, &[], body).await
                    }
                    1 => {
                        let url = format!("{base}/api/pipeline_schedules/{schedule_id}/api_trigger");
                        try_request("POST", &url, &[("authorization", &format!("Bearer {token}"))], body)
                            .await
                    }
                    _ => {
                        let url = format!("{base}/api/v1/pipeline_builds/{build_id}/runs");
                        try_request("POST", &url, &[("authorization", &auth)], "{}").await
                    }
                };
                match answer {
                    Ok(a) if a.status == 200 && i % 3 == 2 => Some(Acknowledged::Zenml(
                        a.json["id"].as_str().and_then(|s| s.parse().ok()).expect("uuid"),
                    )),
                    Ok(a) if a.status == 200 => {
                        Some(Acknowledged::Mage(a.json["pipeline_run"]["id"].as_i64().expect("run id")))
                    }
                    Ok(a) => panic!("a trigger answered {}: {}", a.status, String::from_utf8_lossy(&a.raw)),
                    Err(_) => None, // the server was killed first: not acknowledged
                }
            }));
        }
        sent += TRIGGERS_PER_ROUND;
        // SIGKILL at a random moment: during the burst, or while its runs are running.
        tokio::time::sleep(Duration::from_millis(100 + random_below(2_400))).await;
        child.sigkill();
        kills += 1;
        for t in tasks {
            acknowledged.extend(t.await.expect("trigger task"));
        }
    }

    // The last restart: everything must finish.
    let restarted = Instant::now();
    let _child = server.start().await;
    let mut uuids: Vec<Uuid> = Vec::new();
    for a in &acknowledged {
        uuids.push(match a {
            Acknowledged::Zenml(u) => *u,
            Acknowledged::Mage(id) => {
                store.run_uuid(*id).await.expect("lookup").expect("an acknowledged run is stored")
            }
        });
    }
    let finished_after = loop {
        let entries = store.run_entries(&RunView::All).await.expect("run list");
        let unfinished = entries.iter().filter(|e| !e.status.is_finished()).count();
        if unfinished == 0 {
            break restarted.elapsed();
        }
        assert!(
            restarted.elapsed() < FINISH_LIMIT,
            "{unfinished} of {} runs unfinished {FINISH_LIMIT:?} after the last restart; log: {:?}",
            entries.len(),
            server.log
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    let entries = store.run_entries(&RunView::All).await.expect("run list");
    let completed = entries.iter().filter(|e| e.status == RunStatus::Completed).count();
    println!(
        "crash test: {sent} triggers sent, {} acknowledged (2xx), {kills} SIGKILLs, {} runs in the table, \
         {completed} completed; the last run finished {:.1} s after the last restart",
        acknowledged.len(),
        entries.len(),
        finished_after.as_secs_f64()
    );
    assert!(acknowledged.len() >= ROUNDS, "the test acknowledged too few triggers to mean much");
    for e in &entries {
        assert_eq!(e.status, RunStatus::Completed, "every run completes (id {})", e.id);
    }

    // Every run's completed notification is delivered: once, or — if a SIGKILL fell between the
    // receiver's answer and its record — again with the same webhook-id.
    let waited = std::time::Instant::now();
    loop {
        let mut owed = 0;
        for e in &entries {
            let d = store.get_run_by_id(e.id).await.expect("get").expect("run").value;
            owed += d.run.notifications.iter().filter(|n| n.status != DeliveryStatus::Delivered).count();
            assert_eq!(d.run.notifications.len(), 1, "one completed event per run (id {})", e.id);
        }
        if owed == 0 {
            break;
        }
        assert!(waited.elapsed() < Duration::from_secs(120), "{owed} notifications not delivered");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut per_id: BTreeMap<String, usize> = BTreeMap::new();
    for c in notifier.calls() {
        let id = c.headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        *per_id.entry(id).or_default() += 1;
    }
    for e in &entries {
        let uuid = store.run_uuid(e.id).await.expect("uuid").expect("run");
        assert!(per_id.contains_key(&format!("notification-{uuid}-0")), "run {uuid} was not notified");
    }
    assert_eq!(per_id.len(), entries.len(), "one delivery per run: {per_id:?}");
    println!(
        "crash test: {} notifications delivered, {} repeated after a SIGKILL between answer and record",
        per_id.len(),
        per_id.values().filter(|n| **n > 1).count()
    );

    // The recorder: no attempt twice; every block of every acknowledged run at least once.
    let arrived = recorder.arrived();
    let mut attempts: BTreeMap<(String, String, u64), usize> = BTreeMap::new();
    for body in &arrived {
        let key = (
            body["run_uuid"].as_str().unwrap_or_default().to_string(),
            body["block"].as_str().unwrap_or_default().to_string(),
            body["attempt"].as_u64().unwrap_or_default(),
        );
        *attempts.entry(key).or_default() += 1;
    }
    let twice: Vec<_> = attempts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "attempts called more than once: {twice:?}");
    let called: BTreeSet<(String, String)> =
        attempts.keys().map(|(r, b, _)| (r.clone(), b.clone())).collect();
    for uuid in &uuids {
        for block in ["extract", "transform", "load"] {
            assert!(
                called.contains(&(uuid.to_string(), block.to_string())),
                "run {uuid}: {block} was never called"
            );
        }
    }
}

/// Debounce through SIGKILLs (issue #21): bursts of triggers of one key on a schedule debounced by 3 s
/// (at most 5 s), the server killed at a random moment of each round — mostly inside the window, before
/// its run has started — then restarted. Every run a trigger was answered with starts once and completes, with the
/// payload of one of its triggers; its block is called once.
#[tokio::test]
async fn a_debounced_run_starts_once_through_sigkills_during_its_window() {
    let Some(stack) = stack("a_debounced_run_starts_once_through_sigkills_during_its_window") else {
        return;
    };
    let (store, server) = Server::fresh(&stack, "debounce").await;
    let recorder = BlockServer::start().await;
    let (base, auth) = (server.base(), format!("Bearer {API_KEY}"));
    let mut child = server.start().await;
    let blocks = json!([{ "name": "only", "executor": { "type": "http", "url": format!("{}/blocks/only", recorder.url) } }]);
    let a = request("POST", &format!("{base}/api/v1/pipelines"), &[("authorization", &auth)], {
        json!({ "name": "debounced", "blocks": blocks }).to_string()
    })
    .await;
    assert_eq!(a.status, 200, "{}", a.json);
    // max_wait_s 5: a window that keeps being extended still closes, so kills fall before and after.
    let settings =
        json!({"flow_control": {"key": "event.branch", "debounce": {"period_s": 3, "max_wait_s": 5}}});
    let a = request(
        "POST",
        &format!("{base}/api/pipelines/debounced/pipeline_schedules"),
        &[("authorization", &auth)],
        json!({"pipeline_schedule": {"name": "d", "schedule_type": "api", "status": "active", "settings": settings}})
            .to_string(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.json);
    let schedule_id = a.json["pipeline_schedule"]["id"].as_i64().expect("schedule id");
    let token = a.json["pipeline_schedule"]["token"].as_str().expect("token").to_string();

    // run id -> the payloads its acknowledged triggers carried
    let mut acknowledged: BTreeMap<i64, Vec<serde_json::Value>> = BTreeMap::new();
    for round in 0..6 {
        if round > 0 {
            child = server.start().await;
        }
        let mut tasks = Vec::new();
        for i in 0..8 {
            let url = format!("{base}/api/pipeline_schedules/{schedule_id}/pipeline_runs/{token}");
            let wait = Duration::from_millis(random_below(1_500));
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                let payload = json!({ "branch": "main", "round": round, "i": i });
                match try_request("POST", &url, &[], payload.to_string()).await {
                    Ok(a) if a.status == 200 => {
                        Some((a.json["pipeline_run"]["id"].as_i64().expect("run id"), payload))
                    }
                    Ok(a) => panic!("a trigger answered {}: {}", a.status, String::from_utf8_lossy(&a.raw)),
                    Err(_) => None,
                }
            }));
        }
        // Killed inside the window (3 s after the last trigger) most times, now and then after it.
        tokio::time::sleep(Duration::from_millis(100 + random_below(4_000))).await;
        child.sigkill();
        for t in tasks {
            if let Some((id, payload)) = t.await.expect("trigger task") {
                acknowledged.entry(id).or_default().push(payload);
            }
        }
    }
    let restarted = Instant::now();
    let _child = server.start().await;
    let entries = loop {
        let entries = store.run_entries(&RunView::Schedule(schedule_id)).await.expect("run list");
        if entries.iter().all(|e| e.status.is_finished()) {
            break entries;
        }
        assert!(restarted.elapsed() < FINISH_LIMIT, "runs unfinished; log: {:?}", server.log);
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(!acknowledged.is_empty(), "no trigger was acknowledged");
    for (id, payloads) in &acknowledged {
        let d = store.get_run_by_id(*id).await.expect("get").expect("an acknowledged run is stored").value;
        assert_eq!(d.run.status, RunStatus::Completed, "run {id}");
        let ev = d.run.event_variables.clone().expect("event_variables");
        assert_eq!(ev["branch"], "main");
        // The payload of a trigger of its window: none older than the window's first answered one.
        let first = payloads.iter().filter_map(|p| p["round"].as_u64()).min().expect("a round");
        assert!(ev["round"].as_u64().is_some_and(|r| r >= first), "run {id}: {ev}, first {first}");
        assert!(!d.run.debounce_open, "run {id}: its window was closed");
    }
    let mut calls: BTreeMap<String, usize> = BTreeMap::new();
    for body in recorder.arrived() {
        *calls.entry(body["run_uuid"].as_str().unwrap_or_default().to_string()).or_default() += 1;
    }
    for e in &entries {
        assert_eq!(e.status, RunStatus::Completed, "every run completes (id {})", e.id);
        let uuid = store.run_uuid(e.id).await.expect("uuid").expect("run");
        assert_eq!(
            calls.get(&uuid.to_string()),
            Some(&1),
            "run {} started once, its block called once",
            e.id
        );
    }
    println!(
        "debounce crash test: {} acknowledged triggers into {} runs ({} in the table), 6 SIGKILLs",
        acknowledged.values().map(Vec::len).sum::<usize>(),
        acknowledged.len(),
        entries.len()
    );
}
