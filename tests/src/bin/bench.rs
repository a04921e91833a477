//! Kickoff's scale and cost benchmark (issue #9, SPEC §11): prints one table, each figure beside its
//! target, every comparison against a baseline measured in the same run.
//!
//! `cargo build --release --workspace && cargo run --release -p kickoff-tests --bin bench`
//! (`-- --smoke`: small counts and short loads, as CI runs it on a debug build).
//!
//! Sections: trigger throughput on the embedded server (with its in-process worker) beside the same
//! binary's 404 ceiling; the Mage history page at three view sizes (in-memory store); a recorded workload
//! of 1,000 triggers of the demo's 3-block run, all on one schedule, run to completion through the
//! worker, metered per partition key by AWS's sizing rules (`store::meter`), with requests, capacity
//! units and dollars per million runs; cold start of every function binary and of a bare
//! `lambda_runtime` hello world (process start to its first `GET .../invocation/next` on a fake Runtime
//! API), their peak memory and zip size.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use kickoff::demo::SCHEDULE_ID;
use kickoff::domain::{ApiKey, Role};
use kickoff::queue::fault::FaultyQueue;
use kickoff::queue::memory::MemoryQueue;
use kickoff::queue::RunQueue;
use kickoff::store::memory::MemoryTable;
use kickoff::store::meter::{Metered, MeteredTable};
use kickoff::store::{RunView, Store};
use kickoff::App;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// us-east-1 list prices (USD).
const APIGW_PER_REQUEST: f64 = 1.00 / 1e6;
const LAMBDA_PER_REQUEST: f64 = 0.20 / 1e6;
const LAMBDA_PER_GB_S: f64 = 0.000_016_666_7;
const LAMBDA_GB: f64 = 0.125;
const DDB_PER_WRITE_UNIT: f64 = 0.625 / 1e6;
const DDB_PER_READ_UNIT: f64 = 0.125 / 1e6;
const SQS_PER_REQUEST: f64 = 0.40 / 1e6;
/// Billed duration assumed per Lambda invocation (a trigger or one worker message at 128 MB).
const ASSUMED_INVOCATION_S: f64 = 0.030;

struct Row {
    what: String,
    figure: String,
    target: String,
    verdict: &'static str,
}

fn row(
    rows: &mut Vec<Row>,
    what: impl Into<String>,
    figure: impl Into<String>,
    target: impl Into<String>,
    ok: Option<bool>,
) {
    let verdict = match ok {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "",
    };
    rows.push(Row { what: what.into(), figure: figure.into(), target: target.into(), verdict });
}

#[tokio::main]
async fn main() {
    let smoke = std::env::args().any(|a| a == "--smoke");
    kickoff_tests::allow_loopback();
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    let mut rows = Vec::new();
    println!(
        "Kickoff benchmark — {profile} build{}, {}",
        if smoke { ", smoke counts" } else { "" },
        chrono::Utc::now().format("%Y-%m-%d")
    );

    // `KICKOFF_BENCH_ONLY=history,workload`: only those sections (for working on one).
    let only = std::env::var("KICKOFF_BENCH_ONLY").unwrap_or_default();
    let on = |section: &str| only.is_empty() || only.split(',').any(|s| s == section);
    if on("triggers") {
        triggers(&mut rows, smoke).await;
    }
    if on("history") {
        history(&mut rows, smoke).await;
    }
    if on("workload") {
        workload(&mut rows, smoke).await;
    }
    if on("flow") {
        flow_triggers(&mut rows, smoke).await;
    }
    if on("cold") {
        cold_starts(&mut rows, profile, smoke).await;
    } else if on("packaged") {
        // The deployed artifact alone (`KICKOFF_BENCH_ONLY=packaged`), without the per-function builds.
        packaged_cold_starts(&mut rows, &function_names(), if smoke { 3 } else { 20 }).await;
    }

    let w = [
        rows.iter().map(|r| r.what.len()).max().unwrap_or(0),
        rows.iter().map(|r| r.figure.chars().count()).max().unwrap_or(0),
        rows.iter().map(|r| r.target.chars().count()).max().unwrap_or(0),
    ];
    println!();
    println!(
        "| {:w0$} | {:w1$} | {:w2$} | verdict |",
        "what",
        "figure",
        "target",
        w0 = w[0],
        w1 = w[1],
        w2 = w[2]
    );
    println!("|{}|{}|{}|---------|", "-".repeat(w[0] + 2), "-".repeat(w[1] + 2), "-".repeat(w[2] + 2));
    for r in &rows {
        let pad = |s: &str, n: usize| format!("{s}{}", " ".repeat(n.saturating_sub(s.chars().count())));
        println!(
            "| {} | {} | {} | {:7} |",
            pad(&r.what, w[0]),
            pad(&r.figure, w[1]),
            pad(&r.target, w[2]),
            r.verdict
        );
    }
}

fn executors() -> Arc<dyn kickoff::worker::executor::Invoke> {
    Arc::new(kickoff::worker::executor::Executors::new(kickoff_tests::worker::SECRET))
}

// --- triggers on the embedded server ---------------------------------------------------------------

struct Load {
    per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn load(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &str,
    secs: f64,
) -> Load {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (client, url, method, headers, body) =
            (client.clone(), format!("{base}{path}"), method.to_string(), headers.to_vec(), body.to_string());
        tasks.spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < until {
                let mut req = hyper::Request::builder().method(method.as_str()).uri(&url);
                for (k, v) in &headers {
                    req = req.header(k, v);
                }
                let req = req.body(Full::new(Bytes::from(body.clone()))).expect("request");
                let t = Instant::now();
                let res = client.request(req).await.expect("answer");
                let status = res.status().as_u16();
                let _ = res.into_body().collect().await;
                assert!(status < 500, "{url}: {status}");
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            lat
        });
    }
    let mut lat: Vec<f64> = Vec::new();
    while let Some(l) = tasks.join_next().await {
        lat.extend(l.expect("load task"));
    }
    lat.sort_by(f64::total_cmp);
    let pick = |q: f64| lat.get(((lat.len() as f64 - 1.0) * q) as usize).copied().unwrap_or(0.0);
    Load { per_s: lat.len() as f64 / secs, p50_ms: pick(0.5), p99_ms: pick(0.99) }
}

async fn triggers(rows: &mut Vec<Row>, smoke: bool) {
    let secs = if smoke { 0.5 } else { 5.0 };
    let (app, queue) = App::memory();
    let (key, stored) = ApiKey::generate(Role::Write, "bench", app.clock.now());
    app.store.put_api_key(&stored).await.expect("key");
    kickoff::demo::seed(&app).await.expect("seed");
    let schedule = kickoff::demo::seed_schedule(&app, None).await.expect("schedule");
    let build = kickoff::trigger::newest_build(&app, kickoff::demo::PIPELINE_NAME).await.expect("build");
    let worker = Arc::new(kickoff::worker::Worker::new(app.clone(), executors(), "http://127.0.0.1"));
    tokio::spawn(kickoff::worker::run_in_process(worker, queue as Arc<dyn RunQueue>));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    tokio::spawn(kickoff::http::local::serve(Arc::new(app.clone()), listener));
    let base = format!("http://{addr}");

    let ceiling = load(&base, "GET", "/no/such/route", &[], "", secs).await;
    row(
        rows,
        "404 route (ceiling), embedded server",
        format!("{:.0} req/s, p50 {:.2} ms, p99 {:.2} ms", ceiling.per_s, ceiling.p50_ms, ceiling.p99_ms),
        "baseline",
        None,
    );
    let bearer = vec![("authorization".to_string(), format!("Bearer {key}"))];
    let token = vec![("authorization".to_string(), format!("Bearer {}", schedule.token))];
    let cases = [
        (
            "Mage token trigger (path)",
            format!("/api/pipeline_schedules/{SCHEDULE_ID}/pipeline_runs/{}", schedule.token),
            vec![],
            r#"{"env":"dev"}"#,
        ),
        (
            "Mage api_trigger (Bearer token)",
            format!("/api/pipeline_schedules/{SCHEDULE_ID}/api_trigger"),
            token,
            r#"{"env":"dev"}"#,
        ),
        ("ZenML run trigger (API key)", format!("/api/v1/pipeline_builds/{}/runs", build.id), bearer, "{}"),
    ];
    for (name, path, headers, body) in cases {
        let l = load(&base, "POST", &path, &headers, body, secs).await;
        let share = l.per_s / ceiling.per_s.max(1.0);
        row(
            rows,
            name,
            format!(
                "{:.0} req/s ({:.0}% of 404), p50 {:.2} ms, p99 {:.2} ms",
                l.per_s,
                share * 100.0,
                l.p50_ms,
                l.p99_ms
            ),
            ">= 25% of the 404 ceiling",
            Some(share >= 0.25),
        );
    }
}

// --- history pages ---------------------------------------------------------------------------------

/// Every run list route at three history sizes, in process on a metered in-memory table: per page, its
/// DynamoDB requests and read units (by AWS's sizing rules) and its median time; the target is the same
/// cost at any size. One run in 50 failed, none cancelled; all of one schedule and pipeline version.
async fn history(rows: &mut Vec<Row>, smoke: bool) {
    let sizes: [usize; 3] = if smoke { [10, 5_000, 20_000] } else { [10, 10_000, 1_000_000] };
    let mut measured: Vec<(usize, Vec<(String, f64, f64, f64, u16)>)> = Vec::new();
    for n in sizes {
        let table = Arc::new(MeteredTable::new(Arc::new(MemoryTable::new())));
        let app = App {
            store: Store::new(table.clone()),
            queue: Arc::new(MemoryQueue::new()),
            clock: Arc::new(kickoff::clock::SystemClock),
        };
        let (key, stored) = ApiKey::generate(Role::Read, "bench", app.clock.now());
        app.store.put_api_key(&stored).await.expect("key");
        kickoff::demo::seed(&app).await.expect("seed");
        kickoff::demo::seed_schedule(&app, None).await.expect("schedule");
        let build = kickoff::trigger::newest_build(&app, kickoff::demo::PIPELINE_NAME).await.expect("build");
        let now = app.clock.now();
        for i in 0..n {
            let mut run = kickoff_tests::bench_run(&build, now + chrono::Duration::milliseconds(i as i64));
            run.schedule_id = Some(SCHEDULE_ID);
            if i % 50 == 7 {
                run.status = kickoff::domain::RunStatus::Failed;
            }
            app.store.create_run(&mut run, &mut [], None, |r, _| r.id += 1).await.expect("run");
        }
        let middle = (now + chrono::Duration::milliseconds(n as i64 / 2)).format("%Y-%m-%dT%H:%M:%S%.6f");
        let routes_of = [
            "/api/pipeline_runs?_limit=40".to_string(),
            "/api/pipeline_runs?_limit=40&status=failed".to_string(),
            "/api/pipeline_runs?_limit=40&status=cancelled".to_string(),
            format!("/api/pipeline_schedules/{SCHEDULE_ID}/pipeline_runs?_limit=40"),
            format!("/api/pipeline_runs?_limit=40&pipeline_uuid={}", kickoff::demo::PIPELINE_NAME),
            "/api/v1/runs?size=20".to_string(),
            "/api/v1/runs?size=20&sort_by=desc:created".to_string(),
            format!("/api/v1/runs?size=20&pipeline_id={}", build.pipeline_id),
            "/api/v1/runs?size=20&status=failed".to_string(),
            format!("/api/v1/runs?size=20&sort_by=desc:created&created=lte:{middle}"),
            "/api/v1/runs?size=20&name=contains:bench".to_string(),
            // No view in this order: sorts the newest 10,000 runs (docs/zenml.md).
            "/api/v1/runs?size=20&sort_by=name".to_string(),
        ];
        let mut figures = Vec::new();
        for path in routes_of {
            let call = || in_process(&app, &key, http::Method::GET, &path, None);
            table.take();
            let status = call().await.status.as_u16();
            let metered = table.take();
            let mut times = Vec::new();
            for _ in 0..if n > 100_000 && path.contains("sort_by=name") { 3 } else { 15 } {
                let t = Instant::now();
                call().await;
                times.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            times.sort_by(f64::total_cmp);
            figures.push((
                path,
                metered.request_count() as f64,
                metered.read_units,
                times[times.len() / 2],
                status,
            ));
        }
        table.take();
        measured.push((n, figures));
    }
    // Each route beside itself at the middle size (a 10-run view's page is not full).
    let (small, large) = (&measured[0], &measured[2]);
    for (i, (path, requests, rcu, ms, status)) in large.1.iter().enumerate() {
        let (_, base_requests, base_rcu, base_ms, _) = &measured[1].1[i];
        let (_, small_requests, small_rcu, small_ms, _) = &small.1[i];
        let ratio = rcu / base_rcu.max(0.5);
        // A sort no view orders reads a bounded window of runs instead (docs/zenml.md).
        let window = kickoff::http::zenml::run_list::SORT_WINDOW as f64;
        let (target, ok) = if path.contains("sort_by=name") {
            ("at most the newest 10,000 runs read", *requests <= window + 100.0)
        } else {
            ("same read units at any size (ratio <= 2)", ratio <= 2.0)
        };
        row(
            rows,
            format!("list `GET {path}`"),
            format!(
                "{} runs: {small_requests:.0} requests, {small_rcu:.1} RCU, {small_ms:.2} ms; {}: {base_requests:.0}, {base_rcu:.1} RCU, {base_ms:.2} ms; {}: {requests:.0}, {rcu:.1} RCU, {ms:.2} ms ({ratio:.2}x the {}-run read units; answer {status})",
                small.0, measured[1].0, large.0, measured[1].0
            ),
            target,
            Some(ok && *status == 200),
        );
    }
}

// --- metered workload ------------------------------------------------------------------------------

async fn drain(worker: &kickoff::worker::Worker, queue: &MemoryQueue) -> u64 {
    let mut handled = 0;
    loop {
        let batch = queue.receive(10, Duration::ZERO).await.expect("receive");
        if batch.is_empty() {
            // Delayed messages (backoffs, re-checks) are not part of a noop run.
            return handled;
        }
        for m in batch {
            worker.handle(&m.message).await.expect("message");
            queue.delete(&m.receipt).await.expect("delete");
            handled += 1;
        }
    }
}

/// The recorded workload of 3-block runs: noop blocks (the demo schedule), then `http` blocks that a
/// local server answers 200 at once (each block a claim, a call and a result).
async fn workload(rows: &mut Vec<Row>, smoke: bool) {
    workload_of(rows, smoke, false).await;
    workload_of(rows, smoke, true).await;
}

/// One request through the route table in process, with API key `key` and a JSON body if given.
async fn in_process(
    app: &App,
    key: &str,
    method: http::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> kickoff::http::ApiResponse {
    let mut headers = http::HeaderMap::new();
    headers.insert("authorization", format!("Bearer {key}").parse().expect("header"));
    if body.is_some() {
        headers.insert("content-type", "application/json".parse().expect("header"));
    }
    let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
    kickoff::http::routes::serve(app, kickoff::http::ApiRequest::new(method, path, headers, body)).await
}

/// A pipeline of three chained `http` blocks and an `api` schedule of it, made through the routes;
/// the schedule.
async fn http_schedule(app: &App, target: &kickoff_tests::blocks::BlockServer) -> kickoff::domain::Schedule {
    let (key, stored) = ApiKey::generate(Role::Write, "bench-http", app.clock.now());
    app.store.put_api_key(&stored).await.expect("key");
    let block = |name: &str, up: &[&str]| {
        serde_json::json!({ "name": name, "upstream": up,
            "executor": { "type": "http", "url": format!("{}/blocks/{name}", target.url) } })
    };
    let blocks = serde_json::json!([
        block("extract", &[]),
        block("transform", &["extract"]),
        block("load", &["transform"])
    ]);
    let pipeline = serde_json::json!({ "name": "bench-http", "blocks": blocks });
    let a = in_process(app, &key, http::Method::POST, "/api/v1/pipelines", Some(pipeline)).await;
    assert_eq!(a.status.as_u16(), 200, "pipeline");
    let schedule = serde_json::json!({"pipeline_schedule": {"name": "bench-http", "schedule_type": "api", "status": "active"}});
    let path = "/api/pipelines/bench-http/pipeline_schedules";
    let a = in_process(app, &key, http::Method::POST, path, Some(schedule)).await;
    assert_eq!(a.status.as_u16(), 200, "schedule");
    let body: serde_json::Value = serde_json::from_slice(&a.body).expect("json");
    let id = body["pipeline_schedule"]["id"].as_i64().expect("schedule id");
    app.store.get_schedule(id).await.expect("get").expect("schedule").value
}

async fn workload_of(rows: &mut Vec<Row>, smoke: bool, http_blocks: bool) {
    let runs: u64 = if smoke { 200 } else { 1_000 };
    let table = Arc::new(MeteredTable::new(Arc::new(MemoryTable::new())));
    let memory = Arc::new(MemoryQueue::new());
    let queue = Arc::new(FaultyQueue::new(memory.clone()));
    let app = App {
        store: Store::new(table.clone()),
        queue: queue.clone(),
        clock: Arc::new(kickoff::clock::SystemClock),
    };
    kickoff::demo::seed(&app).await.expect("seed");
    let target = kickoff_tests::blocks::BlockServer::start().await;
    let schedule = if http_blocks {
        http_schedule(&app, &target).await
    } else {
        kickoff::demo::seed_schedule(&app, None).await.expect("schedule")
    };
    let kind = if http_blocks { "http" } else { "noop" };
    let worker = kickoff::worker::Worker::new(app.clone(), executors(), "http://127.0.0.1");
    // Warm: the worker caches builds, as a warm Lambda does.
    let opts = || kickoff::trigger::RunOptions::of_schedule(&schedule).expect("options");
    kickoff::trigger::start_schedule_run(&app, &schedule, opts()).await.expect("warm trigger");
    drain(&worker, &memory).await;
    table.take();

    let sends_before = queue.sends();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..runs {
        let (app, schedule) = (app.clone(), schedule.clone());
        tasks.spawn(async move {
            let o = kickoff::trigger::RunOptions::of_schedule(&schedule).expect("options");
            kickoff::trigger::start_schedule_run(&app, &schedule, o).await.expect("trigger");
        });
    }
    while tasks.join_next().await.is_some() {}
    let trig: Metered = table.take();
    let trigger_sends = (queue.sends() - sends_before) as u64;
    let messages = drain(&worker, &memory).await;
    let work: Metered = table.take();
    let completed = app
        .store
        .run_count(&RunView::Schedule(schedule.id), Some(kickoff::domain::RunStatus::Completed))
        .await
        .expect("count");
    assert_eq!(completed as u64, runs + 1, "every run of the workload completed");
    let all_sends = (queue.sends() - sends_before) as u64;
    let n = runs as f64;

    if !http_blocks {
        row(
            rows,
            "trigger: DynamoDB requests",
            format!("{:.2} ({})", trig.request_count() as f64 / n, ops(&trig, n)),
            "<= 2 reads + 1 write",
            Some(reads(&trig) / n <= 2.0 && writes(&trig) / n <= 1.0),
        );
        row(
            rows,
            "trigger: SQS sends",
            format!("{:.2}", trigger_sends as f64 / n),
            "1",
            Some(trigger_sends == runs),
        );
        row(
            rows,
            "trigger: capacity units",
            format!("{:.1} WCU, {:.1} RCU", trig.write_units / n, trig.read_units / n),
            "",
            None,
        );
    }
    let total_wcu = (trig.write_units + work.write_units) / n;
    let total_rcu = (trig.read_units + work.read_units) / n;
    row(
        rows,
        format!("3-block run ({kind} blocks): DynamoDB requests"),
        format!("{:.1} ({})", (trig.request_count() + work.request_count()) as f64 / n, ops(&work, n)),
        "",
        None,
    );
    row(
        rows,
        format!("3-block {kind} run: capacity units"),
        format!("{total_wcu:.1} WCU, {total_rcu:.1} RCU"),
        "",
        None,
    );
    row(rows, format!("3-block {kind} run: write units by item"), by_kind(&[&trig, &work], n), "", None);
    row(
        rows,
        format!("3-block {kind} run: queue messages"),
        format!("{:.1}", all_sends as f64 / n),
        "",
        None,
    );
    let _ = messages;

    // At 1,000 triggers/s the workload's units land in one second: units per key = units/s per key.
    let scale = 1000.0 / n;
    let mut merged = trig.clone();
    for (k, u) in &work.by_key {
        let e = merged.by_key.entry(k.clone()).or_default();
        e.write_units += u.write_units;
        e.read_units += u.read_units;
    }
    if let Some((key, u)) = merged.hottest_write() {
        let per_s = u.write_units * scale;
        row(
            rows,
            format!("{kind} runs: hottest key by writes at 1,000 triggers/s"),
            format!("{key}: {per_s:.0} WCU/s"),
            "<= 1,000 WCU/s",
            Some(per_s <= 1000.0),
        );
    }
    if let Some((key, u)) = merged.hottest_read() {
        let per_s = u.read_units * scale;
        row(
            rows,
            format!("{kind} runs: hottest key by reads at 1,000 triggers/s"),
            format!("{key}: {per_s:.0} RCU/s"),
            "<= 3,000 RCU/s",
            Some(per_s <= 3000.0),
        );
    }

    // Dollars per million runs.
    let msgs = all_sends as f64 / n;
    let invocations = 1.0 + msgs;
    let apigw = 1e6 * APIGW_PER_REQUEST;
    let lambda =
        1e6 * invocations * (LAMBDA_PER_REQUEST + ASSUMED_INVOCATION_S * LAMBDA_GB * LAMBDA_PER_GB_S);
    let ddb = 1e6 * (total_wcu * DDB_PER_WRITE_UNIT + total_rcu * DDB_PER_READ_UNIT);
    // Each message: its send, a receive and a delete (unbatched: the worst case).
    let sqs = 1e6 * msgs * 3.0 * SQS_PER_REQUEST;
    let total = apigw + lambda + ddb + sqs;
    row(
        rows,
        if http_blocks {
            "AWS bill per million 3-block http runs (delayed re-checks: sent and billed, their reads not metered)"
                .to_string()
        } else {
            "AWS bill per million 3-block noop runs".to_string()
        },
        format!("${total:.2} = DynamoDB ${ddb:.2} + SQS ${sqs:.2} + Lambda ${lambda:.2} + API Gateway ${apigw:.2}"),
        "< $10",
        Some(total < 10.0),
    );
}

/// Write units per run by kind of item: the key's prefix (`RUN`, `RUNVIEW`, `GSI1:RUNS`, …).
fn by_kind(metered: &[&Metered], n: f64) -> String {
    let mut kinds: std::collections::BTreeMap<String, f64> = std::collections::BTreeMap::new();
    for m in metered {
        for (key, u) in &m.by_key {
            let kind = key.split('#').next().unwrap_or(key).to_string();
            *kinds.entry(kind).or_default() += u.write_units;
        }
    }
    let mut kinds: Vec<(String, f64)> = kinds.into_iter().filter(|(_, w)| *w > 0.0).collect();
    kinds.sort_by(|a, b| b.1.total_cmp(&a.1));
    kinds.iter().map(|(k, w)| format!("{k} {:.1}", w / n)).collect::<Vec<_>>().join(", ")
}

/// The trigger path's requests with flow control on (issue #21): triggers of the demo schedule with
/// each kind of flow control, one key per 10 triggers, as the token route makes them (the schedule and
/// its build read together, the key decided, the run written and sent), metered per trigger.
async fn flow_triggers(rows: &mut Vec<Row>, smoke: bool) {
    use kickoff::flow::timing::Timing;
    let n: u64 = if smoke { 100 } else { 1_000 };
    let kinds = [
        ("rules + key, no limit", serde_json::json!({"key": "event.customer"})),
        ("per-key concurrency", serde_json::json!({"key": "event.customer", "concurrency": {"per_key": 1}})),
        ("debounce", serde_json::json!({"key": "event.customer", "debounce": {"period_s": 60}})),
        ("throttle", serde_json::json!({"key": "event.customer", "throttle": {"limit": 5, "period_s": 60}})),
    ];
    for (what, flow) in kinds {
        let table = Arc::new(MeteredTable::new(Arc::new(MemoryTable::new())));
        let queue = Arc::new(FaultyQueue::new(Arc::new(MemoryQueue::new())));
        let app = App {
            store: Store::new(table.clone()),
            queue: queue.clone(),
            clock: Arc::new(kickoff::clock::SystemClock),
        };
        kickoff::demo::seed(&app).await.expect("seed");
        let mut schedule = kickoff::demo::seed_schedule(&app, None).await.expect("schedule");
        schedule.settings.rules = Some(
            serde_json::from_value(serde_json::json!([{"when": "has(event.customer)", "variables": {"customer": "event.customer"}}]))
                .expect("rules"),
        );
        schedule.settings.flow_control = Some(serde_json::from_value(flow).expect("flow control"));
        let version = app.store.get_schedule(SCHEDULE_ID).await.expect("get").expect("schedule").version;
        assert!(app.store.update_schedule(&schedule, version).await.expect("update"));
        let trigger = |i: u64| {
            let app = app.clone();
            async move {
                let (s, prefetched) = kickoff::trigger::read_schedule(&app, SCHEDULE_ID)
                    .await
                    .expect("read")
                    .expect("schedule");
                let s = s.value;
                let event = serde_json::json!({"customer": format!("c{}", i / 10)});
                let d = kickoff::flow::decide(
                    s.settings.flow_control.as_ref(),
                    s.settings.rules.as_deref(),
                    Some(&event),
                    &serde_json::Map::new(),
                    serde_json::Map::new(),
                )
                .expect("decide");
                let opts = kickoff::trigger::RunOptions {
                    event_variables: d.event_variables.clone(),
                    limits: kickoff::admission::Limits::of(&s, d.key.as_deref()),
                    timing: Timing::of(&s, d.key.as_deref()),
                    ..kickoff::trigger::RunOptions::of_schedule(&s).expect("options")
                };
                // A throttled key past its turns is a 429: counted as a trigger all the same.
                let _ = kickoff::trigger::start_schedule_run_or_skip(&app, &s, prefetched, opts).await;
            }
        };
        trigger(u64::MAX).await; // warm: the schedule's build remembered, as in a warm function
        table.take();
        let sends = queue.sends();
        for i in 0..n {
            trigger(i).await;
        }
        let m: Metered = table.take();
        let nf = n as f64;
        row(
            rows,
            format!("trigger with {what}: DynamoDB requests"),
            format!(
                "{:.2} ({}); {:.2} sends",
                m.request_count() as f64 / nf,
                ops(&m, nf),
                (queue.sends() - sends) as f64 / nf
            ),
            "<= 3 reads + 1 write (SPEC §11 + the key's item)",
            Some(reads(&m) / nf <= 3.0 && writes(&m) / nf <= 1.0),
        );
    }
}

fn reads(m: &Metered) -> f64 {
    ["GetItem", "Query", "BatchGetItem"].iter().map(|k| *m.requests.get(k).unwrap_or(&0) as f64).sum()
}

fn writes(m: &Metered) -> f64 {
    ["PutItem", "UpdateItem", "TransactWriteItems", "DeleteItem"]
        .iter()
        .map(|k| *m.requests.get(k).unwrap_or(&0) as f64)
        .sum()
}

fn ops(m: &Metered, n: f64) -> String {
    m.requests.iter().map(|(k, v)| format!("{} {:.2}", k, *v as f64 / n)).collect::<Vec<_>>().join(", ")
}

// --- cold starts -----------------------------------------------------------------------------------

/// Process start to its first `GET /2018-06-01/runtime/invocation/next`, and its peak memory then.
async fn cold_start(binary: &Path, function: &str) -> Option<(f64, u64)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.ok()?;
    let addr = listener.local_addr().ok()?;
    let t = Instant::now();
    let mut child = tokio::process::Command::new(binary)
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "bench")
        .env("KICKOFF_FUNCTION", function)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("KICKOFF_TABLE", "bench")
        .env("KICKOFF_WEBHOOK_SECRET", kickoff_tests::worker::SECRET)
        .env("KICKOFF_PUBLIC_URL", "http://127.0.0.1:1")
        .env("KICKOFF_QUEUE_URL", "http://127.0.0.1:1/queue/bench")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    let accepted = tokio::time::timeout(Duration::from_secs(10), async {
        let (mut sock, _) = listener.accept().await.ok()?;
        let mut buf = vec![0u8; 4096];
        let mut got = Vec::new();
        while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
            let n = sock.read(&mut buf).await.ok()?;
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        let elapsed = t.elapsed().as_secs_f64() * 1000.0;
        let _ = sock.write_all(b"").await;
        String::from_utf8_lossy(&got).contains("/invocation/next").then_some(elapsed)
    })
    .await
    .ok()??;
    let peak_kb = child
        .id()
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0);
    let _ = child.kill().await;
    Some((accepted, peak_kb))
}

fn zip_size(binary: &Path) -> Option<u64> {
    let out = std::env::temp_dir().join(format!("kickoff-bench-{}.zip", std::process::id()));
    let script = "import sys, zipfile\nwith zipfile.ZipFile(sys.argv[2], 'w', zipfile.ZIP_DEFLATED) as z: z.write(sys.argv[1], 'bootstrap')";
    let ok = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(binary)
        .arg(&out)
        .status()
        .ok()?
        .success();
    let size = ok.then(|| std::fs::metadata(&out).ok().map(|m| m.len())).flatten();
    let _ = std::fs::remove_file(&out);
    size
}

/// The median of `samples` cold starts of `binary` running `function` (its `KICKOFF_FUNCTION`, which only
/// the packaged multi-function binary reads).
async fn median_cold_start(binary: &Path, function: &str, samples: usize) -> Option<(f64, u64)> {
    let mut times = Vec::new();
    let mut peak = 0;
    for _ in 0..samples {
        let (t, kb) = cold_start(binary, function).await?;
        times.push(t);
        peak = peak.max(kb);
    }
    times.sort_by(f64::total_cmp);
    Some((times[times.len() / 2], peak))
}

async fn cold_starts(rows: &mut Vec<Row>, profile: &str, smoke: bool) {
    let samples = if smoke { 3 } else { 20 };
    let target: PathBuf = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| kickoff_tests::workspace_root().join("target"))
        .join(profile);
    let Some((hello, hello_kb)) = median_cold_start(&target.join("hello-lambda"), "hello", samples).await
    else {
        row(rows, "cold start", format!("hello-lambda is not built in target/{profile}"), "", Some(false));
        return;
    };
    row(
        rows,
        "cold start: bare lambda_runtime hello world",
        format!(
            "{hello:.2} ms, peak {:.1} MB, zip {}",
            hello_kb as f64 / 1024.0,
            kb_text(zip_size(&target.join("hello-lambda")))
        ),
        "baseline",
        None,
    );
    let functions = function_names();
    let (mut worst, mut worst_name) = (0.0f64, String::new());
    // The packaged binary (`infra/scripts/package.sh` builds it for the x86_64 target; the test
    // command's debug build has it in target/debug), run as the largest HTTP function.
    let packaged = [
        target.join("kickoff-lambda"),
        target.join("..").join("x86_64-unknown-linux-gnu").join(profile).join("kickoff-lambda"),
    ]
    .into_iter()
    .find(|p| p.exists());
    let mut runs: Vec<(String, PathBuf, String)> =
        functions.iter().map(|f| (f.clone(), target.join(f), f.clone())).collect();
    if let Some(p) = packaged {
        runs.push((
            "kickoff-lambda as trigger-schedule-run (packaged)".into(),
            p,
            "trigger-schedule-run".into(),
        ));
    }
    for (f, bin, function) in &runs {
        match median_cold_start(bin, function, samples).await {
            Some((t, kb)) => {
                let ratio = t / hello.max(0.001);
                if ratio > worst {
                    (worst, worst_name) = (ratio, f.clone());
                }
                row(
                    rows,
                    format!("cold start: {f}"),
                    format!(
                        "{t:.2} ms ({ratio:.1}x), peak {:.1} MB, zip {}",
                        kb as f64 / 1024.0,
                        kb_text(zip_size(bin))
                    ),
                    "<= 2x hello world",
                    Some(ratio <= 2.0),
                );
            }
            None => {
                row(rows, format!("cold start: {f}"), "did not reach /next", "<= 2x hello world", Some(false))
            }
        }
    }
    if !worst_name.is_empty() {
        println!("slowest cold start: {worst_name} at {worst:.1}x the hello world");
    }
    packaged_cold_starts(rows, &functions, samples).await;
}

/// Every function's name (the folders of `functions/`), sorted.
fn function_names() -> Vec<String> {
    let mut functions: Vec<String> = std::fs::read_dir(kickoff_tests::workspace_root().join("functions"))
        .map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    functions.sort();
    functions
}

/// The deployed artifact: `infra/scripts/package.sh`'s release binary (non-PIE), run as every function
/// (`KICKOFF_FUNCTION`, as the template sets it), beside the hello world built the same way.
async fn packaged_cold_starts(rows: &mut Vec<Row>, functions: &[String], samples: usize) {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| kickoff_tests::workspace_root().join("target"))
        .join("x86_64-unknown-linux-gnu")
        .join("release");
    let (binary, hello) = (dir.join("kickoff-lambda"), dir.join("hello-lambda"));
    let Some((base, _)) = median_cold_start(&hello, "hello", samples).await.filter(|_| binary.exists())
    else {
        row(rows, "cold start: packaged release binary", "not built (infra/scripts/package.sh)", "", None);
        return;
    };
    let mut all = Vec::new();
    for f in functions {
        if let Some((t, _)) = median_cold_start(&binary, f, samples).await {
            all.push((t, f.clone()));
        }
    }
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let Some((worst, worst_name)) = all.last().cloned() else {
        row(
            rows,
            "cold start: packaged release binary",
            "did not reach /next",
            "<= 2x hello world",
            Some(false),
        );
        return;
    };
    let median = all[all.len() / 2].0;
    let over = all.iter().filter(|(t, _)| *t > 2.0 * base).count();
    row(
        rows,
        format!("cold start: packaged kickoff-lambda (release, non-PIE) as each of {} functions", all.len()),
        format!(
            "median {median:.2} ms ({:.1}x), slowest {worst_name} {worst:.2} ms ({:.1}x); hello world {base:.2} ms; {over} over 2x",
            median / base.max(0.001),
            worst / base.max(0.001)
        ),
        "every one <= 2x hello world",
        Some(over == 0),
    );
}

fn kb_text(bytes: Option<u64>) -> String {
    bytes.map_or("?".into(), |b| format!("{:.2} MB", b as f64 / 1_048_576.0))
}
