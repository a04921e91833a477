//! Flow control and payload rules (SPEC §12) through the Mage API of the embedded router, with the
//! worker driven as SQS would drive it — each test on the in-memory store and on DynamoDB Local:
//! payload rules filter and map a GitHub push (and the rules test route says the same without a run);
//! `per_key: 1` runs one run per key at a time with the keys in parallel under 60 concurrent triggers;
//! `on_limit: skip` writes nothing; `cancel_running` cancels the key's running run and starts the new
//! one; bad settings and a key that fails on a payload are a 422 that writes nothing.

use std::sync::Arc;

use kickoff::domain::{ApiKey, Role, RunStatus};
use kickoff::queue::RunQueue;
use kickoff::store::RunView;
use kickoff_tests::blocks::{BlockServer, Reply};
use kickoff_tests::worker::Harness;
use kickoff_tests::{hmac_sha256, request, stack, Answer};
use serde_json::{json, Value};

/// The in-memory harness, and one on a fresh DynamoDB Local table.
async fn harnesses(test: &str) -> Vec<(&'static str, Harness, String)> {
    let mut out = vec![("memory", Harness::new().await)];
    if let Some(stack) = stack(test) {
        out.push(("dynamodb", Harness::on(Arc::new(stack.new_table("flow").await)).await));
    }
    let mut ready = Vec::new();
    for (name, h) in out {
        kickoff::demo::seed(&h.app).await.expect("demo");
        let (secret, key) = ApiKey::generate(Role::Write, "test", h.app.clock.now());
        h.app.store.put_api_key(&key).await.expect("key");
        ready.push((name, h, format!("Bearer {secret}")));
    }
    ready
}

async fn call(h: &Harness, key: &str, method: &str, path: &str, body: Value) -> Answer {
    request(method, &format!("{}{path}", h.api), &[("authorization", key)], body.to_string()).await
}

/// Creates an active `api` schedule of `pipeline` with these settings: its id and token.
async fn api_schedule(h: &Harness, key: &str, pipeline: &str, settings: Value) -> (i64, String) {
    let body = json!({"pipeline_schedule": {"name": "flow", "schedule_type": "api", "status": "active", "settings": settings}});
    let a = call(h, key, "POST", &format!("/api/pipelines/{pipeline}/pipeline_schedules"), body).await;
    assert_eq!(a.status, 200, "{}", a.json);
    let s = &a.json["pipeline_schedule"];
    (s["id"].as_i64().expect("id"), s["token"].as_str().expect("token").to_string())
}

async fn trigger(h: &Harness, id: i64, token: &str, body: Value) -> Answer {
    let path = format!("{}/api/pipeline_schedules/{id}/pipeline_runs/{token}", h.api);
    request("POST", &path, &[], body.to_string()).await
}

async fn runs_of(h: &Harness, schedule: i64) -> Vec<kickoff::domain::Run> {
    let entries = h.app.store.run_entries(&RunView::Schedule(schedule)).await.expect("entries");
    let mut runs: Vec<_> =
        h.app.store.runs_of(&entries).await.expect("runs").into_iter().map(|d| d.run).collect();
    assert_eq!(runs.len(), entries.len(), "every entry's run exists");
    runs.sort_by_key(|r| r.id);
    runs
}

/// The rules test route of schedule `id` with this payload.
async fn rules_test(h: &Harness, key: &str, id: i64, body: Value) -> Answer {
    call(h, key, "POST", &format!("/api/pipeline_schedules/{id}/rules/test"), body).await
}

#[tokio::test]
async fn rules_map_a_matching_github_push_and_make_no_run_for_the_rest() {
    for (store, h, key) in harnesses("rules_map_a_matching_github_push_and_make_no_run_for_the_rest").await {
        let settings = json!({
            "webhook": {"provider": "github", "secret": "s3cret-webhook"},
            "rules": [
                {"when": r#"headers["x-github-event"] == "push" && event.ref == "refs/heads/main""#,
                 "variables": {"branch": r#"event.ref.substring(11)"#, "pusher": "event.pusher.name"}},
                {"when": "event.ref.startsWith('refs/tags/')", "variables": {"tag": "event.ref"}}
            ]
        });
        let (id, _) = api_schedule(&h, &key, "training", settings).await;
        let deliver = |body: Value, delivery: &'static str| {
            let raw = body.to_string();
            let sig = format!("sha256={}", hex::encode(hmac_sha256(b"s3cret-webhook", raw.as_bytes())));
            let url = format!("{}/api/pipeline_schedules/{id}/webhook", h.api);
            async move {
                let headers = [
                    ("x-hub-signature-256", sig.as_str()),
                    ("x-github-event", "push"),
                    ("x-github-delivery", delivery),
                    ("content-type", "application/json"),
                ];
                request("POST", &url, &headers, raw).await
            }
        };
        let dev = json!({"ref": "refs/heads/dev", "pusher": {"name": "ada"}, "commits": [1, 2]});
        let a = deliver(dev.clone(), "d-1").await;
        assert_eq!(a.status, 200, "{store}: {}", a.json);
        assert_eq!(a.json["pipeline_run"], Value::Null, "{store}: {}", a.json);
        assert_eq!(a.json["skipped"], "no rule matched", "{store}: {}", a.json);
        assert!(runs_of(&h, id).await.is_empty(), "{store}: a filtered push makes no run");

        let main = json!({"ref": "refs/heads/main", "pusher": {"name": "ada"}, "commits": [1, 2]});
        let a = deliver(main.clone(), "d-2").await;
        assert_eq!(a.status, 200, "{store}: {}", a.json);
        let run = &a.json["pipeline_run"];
        assert_eq!(
            run["event_variables"],
            json!({"branch": "main", "pusher": "ada"}),
            "{store}: only the named ones"
        );
        assert_eq!(run["variables"]["webhook"]["event"], "push");
        assert_eq!(a.json["flow_control"], json!({"rule": 0, "key": null, "outcome": "new_run"}));
        assert_eq!(runs_of(&h, id).await.len(), 1, "{store}");

        // The test route answers what the live path did, and writes nothing.
        let t = request(
            "POST",
            &format!("{}/api/pipeline_schedules/{id}/rules/test", h.api),
            &[("authorization", key.as_str()), ("x-github-event", "push")],
            main.to_string(),
        )
        .await;
        assert_eq!(t.status, 200, "{store}: {}", t.json);
        let r = &t.json["rules_test"];
        assert_eq!(
            (r["outcome"].as_str(), r["rule"].as_i64()),
            (Some("new_run"), Some(0)),
            "{store}: {}",
            t.json
        );
        assert_eq!(r["event_variables"], json!({"branch": "main", "pusher": "ada"}));
        let t = rules_test(&h, &key, id, json!({"ref": "refs/tags/v1"})).await;
        assert_eq!(
            t.json["rules_test"]["event_variables"],
            json!({"tag": "refs/tags/v1"}),
            "{store}: {}",
            t.json
        );
        let t = rules_test(&h, &key, id, dev).await;
        assert_eq!(
            t.json["rules_test"]["outcome"], "skipped",
            "{store}: no x-github-event header: {}",
            t.json
        );
        assert_eq!(runs_of(&h, id).await.len(), 1, "{store}: the test route makes no run");
    }
}

#[tokio::test]
async fn one_run_per_key_at_a_time_with_the_keys_in_parallel() {
    for (store, h, key) in harnesses("one_run_per_key_at_a_time_with_the_keys_in_parallel").await {
        let settings = json!({"flow_control": {"key": "event.customer", "concurrency": {"per_key": 1}}});
        let (id, token) = api_schedule(&h, &key, "training", settings).await;
        let customers = ["acme", "globex", "initech"];
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..60 {
            let (api, token) = (h.api.clone(), token.clone());
            let customer = customers[i % 3];
            tasks.spawn(async move {
                let path = format!("{api}/api/pipeline_schedules/{id}/pipeline_runs/{token}");
                (
                    customer,
                    request("POST", &path, &[], json!({"customer": customer, "n": i}).to_string()).await,
                )
            });
        }
        let mut outcomes = std::collections::BTreeMap::<(&str, String), usize>::new();
        while let Some(done) = tasks.join_next().await {
            let (customer, a) = done.expect("task");
            assert_eq!(a.status, 200, "{store}: {}", a.json);
            assert_eq!(a.json["flow_control"]["key"], customer);
            let outcome = a.json["flow_control"]["outcome"].as_str().expect("outcome").to_string();
            *outcomes.entry((customer, outcome)).or_default() += 1;
        }
        for c in customers {
            assert_eq!(outcomes.get(&(c, "new_run".into())), Some(&1), "{store}: {outcomes:?}");
            assert_eq!(outcomes.get(&(c, "queued".into())), Some(&19), "{store}: {outcomes:?}");
        }
        // The three keys' first runs are queued at once: in parallel.
        assert_eq!(h.queue.visible_len().await, 3, "{store}: one admitted run per key");
        // Drive the worker; after every step no key has two unfinished runs admitted.
        for _ in 0..200 {
            let runs = runs_of(&h, id).await;
            for c in customers {
                let admitted = runs
                    .iter()
                    .filter(|r| r.flow_key.as_deref() == Some(c) && !r.status.is_finished())
                    .filter(|r| r.slot == Some(kickoff::domain::run::Slot::Held))
                    .count();
                assert!(admitted <= 1, "{store}: {admitted} runs of {c} admitted at once");
            }
            if runs.iter().all(|r| r.status == RunStatus::Completed) {
                break;
            }
            // A second per message, so that start and end times order the runs.
            h.clock.advance(chrono::Duration::seconds(1));
            let batch = h.queue.receive(1, std::time::Duration::from_millis(20)).await.expect("receive");
            for m in batch {
                let _ = h.worker.handle(&m.message).await;
                h.queue.delete(&m.receipt).await.expect("delete");
            }
        }
        let runs = runs_of(&h, id).await;
        assert_eq!(runs.len(), 60, "{store}");
        for c in customers {
            let mut mine: Vec<_> = runs.iter().filter(|r| r.flow_key.as_deref() == Some(c)).collect();
            mine.sort_by_key(|r| r.started_at);
            assert_eq!(mine.len(), 20, "{store}");
            for r in &mine {
                assert_eq!(r.status, RunStatus::Completed, "{store}: {r:#?}");
            }
            for pair in mine.windows(2) {
                let (done, next) =
                    (pair[0].completed_at.expect("done"), pair[1].started_at.expect("started"));
                assert!(
                    next > done,
                    "{store}: run {} of {c} started before run {} ended",
                    pair[1].id,
                    pair[0].id
                );
            }
        }
    }
}

#[tokio::test]
async fn on_limit_skip_writes_nothing_and_says_why() {
    for (store, h, key) in harnesses("on_limit_skip_writes_nothing_and_says_why").await {
        let settings = json!({"flow_control": {"key": "event.customer", "concurrency": {"per_key": 1, "on_limit": "skip"}}});
        let (id, token) = api_schedule(&h, &key, "training", settings).await;
        let first = trigger(&h, id, &token, json!({"customer": "acme"})).await;
        assert_eq!(first.json["flow_control"]["outcome"], "new_run", "{store}: {}", first.json);
        let second = trigger(&h, id, &token, json!({"customer": "acme"})).await;
        assert_eq!(second.status, 200, "{store}: {}", second.json);
        assert_eq!(second.json["pipeline_run"], Value::Null, "{store}: {}", second.json);
        assert!(
            second.json["skipped"].as_str().is_some_and(|s| s.contains("on_limit: skip")),
            "{}",
            second.json
        );
        assert_eq!(second.json["flow_control"]["outcome"], "skipped");
        let other = trigger(&h, id, &token, json!({"customer": "globex"})).await;
        assert_eq!(other.json["flow_control"]["outcome"], "new_run", "{store}: another key runs");
        assert_eq!(runs_of(&h, id).await.len(), 2, "{store}: the skip wrote nothing");
        // An idempotent repeat of the run that holds the slot answers that run, not a skip.
        let path = format!("{}/api/pipeline_schedules/{id}/pipeline_runs/{token}", h.api);
        let body = json!({"customer": "initech"}).to_string();
        let a = request("POST", &path, &[("idempotency-key", "k-1")], body.clone()).await;
        let b = request("POST", &path, &[("idempotency-key", "k-1")], body).await;
        assert_eq!(a.json["pipeline_run"]["id"], b.json["pipeline_run"]["id"], "{store}: {}", b.json);
        // Once the key's run has finished, the key runs again.
        h.deliver_visible().await;
        let again = trigger(&h, id, &token, json!({"customer": "acme"})).await;
        assert_eq!(again.json["flow_control"]["outcome"], "new_run", "{store}: {}", again.json);
    }
}

#[tokio::test]
async fn cancel_running_cancels_the_keys_running_run_and_starts_the_new_one() {
    for (store, h, key) in
        harnesses("cancel_running_cancels_the_keys_running_run_and_starts_the_new_one").await
    {
        let blocks = BlockServer::start().await;
        blocks.script("wait", vec![Reply::status(202)]);
        let pipeline = json!({"name": "slow", "blocks": [
            {"name": "wait", "executor": {"type": "http", "url": format!("{}/wait", blocks.url)}}]});
        let a = call(&h, &key, "POST", "/api/v1/pipelines", pipeline).await;
        assert_eq!(a.status, 200, "{}", a.json);
        let settings = json!({"flow_control": {"key": "event.branch",
                              "concurrency": {"per_key": 1, "on_limit": "cancel_running"}}});
        let (id, token) = api_schedule(&h, &key, "slow", settings).await;
        let first = trigger(&h, id, &token, json!({"branch": "main"})).await;
        assert_eq!(first.json["flow_control"]["outcome"], "new_run", "{store}: {}", first.json);
        let first_id = first.json["pipeline_run"]["id"].as_i64().expect("id");
        h.deliver_visible().await;
        let runs = runs_of(&h, id).await;
        assert_eq!(runs[0].status, RunStatus::Running, "{store}: the block accepted and runs");
        let other = trigger(&h, id, &token, json!({"branch": "dev"})).await;
        assert_eq!(other.json["flow_control"]["outcome"], "new_run", "{store}: another key is not touched");

        let second = trigger(&h, id, &token, json!({"branch": "main"})).await;
        assert_eq!(second.status, 200, "{store}: {}", second.json);
        assert_eq!(second.json["flow_control"]["outcome"], "cancelling_running", "{store}: {}", second.json);
        let second_id = second.json["pipeline_run"]["id"].as_i64().expect("id");
        h.deliver_visible().await;
        let runs = runs_of(&h, id).await;
        let status = |run_id: i64| runs.iter().find(|r| r.id == run_id).expect("run").status;
        assert_eq!(status(first_id), RunStatus::Cancelled, "{store}");
        assert_eq!(status(second_id), RunStatus::Running, "{store}: the new run started");
        let other_id = other.json["pipeline_run"]["id"].as_i64().expect("id");
        assert_eq!(status(other_id), RunStatus::Running, "{store}: dev's run goes on");
        assert_eq!(blocks.calls().len(), 3, "{store}: one call per run");
    }
}

#[tokio::test]
async fn bad_flow_settings_and_keys_that_fail_are_a_422_that_writes_nothing() {
    for (store, h, key) in
        harnesses("bad_flow_settings_and_keys_that_fail_are_a_422_that_writes_nothing").await
    {
        let path = "/api/pipelines/training/pipeline_schedules";
        for (schedule, says) in [
            (
                json!({"schedule_type": "time", "schedule_interval": "@daily", "settings": {"flow_control": {"key": "1"}}}),
                "settings.flow_control: only api schedules",
            ),
            (
                json!({"schedule_type": "api", "settings": {"rules": [{"when": "event.("}]}}),
                "settings.rules[0].when: ",
            ),
            (
                json!({"schedule_type": "api", "settings": {"flow_control": {"key": "event.a", "concurrency": {"per_key": 0}}}}),
                "settings.flow_control.concurrency.per_key: at least 1",
            ),
            (
                json!({"schedule_type": "api", "settings": {"pipeline_run_limit": 2,
                    "flow_control": {"key": "event.a", "concurrency": {"per_key": 1}}}}),
                "settings.flow_control.concurrency: ",
            ),
            (
                json!({"schedule_type": "api", "settings": {"flow_control": {"key": "event.a", "debounce": {"period_s": 5},
                    "throttle": {"limit": 1, "period_s": 1}}}}),
                "settings.flow_control: one of concurrency, debounce and throttle",
            ),
            (
                json!({"schedule_type": "api", "settings": {"flow_control": {"key": "event.a", "debounce": {"period_s": 3601}}}}),
                "settings.flow_control.debounce.period_s: at most 3600",
            ),
            (
                json!({"schedule_type": "api", "settings": {"flow_control": {"key": "event.a", "debounce": {"period_s": 5, "max_wait_s": 4}}}}),
                "settings.flow_control.debounce.max_wait_s: at least period_s",
            ),
            (
                json!({"schedule_type": "api", "settings": {"flow_control": {"key": "event.a", "throttle": {"limit": 0, "period_s": 60}}}}),
                "settings.flow_control.throttle.limit: at least 1",
            ),
            (
                json!({"schedule_type": "api", "settings": {"flow_control": {"key": "event.a", "throttle": {"limit": 10, "period_s": 60, "burst": 10001}}}}),
                "settings.flow_control.throttle.burst: at most 10000",
            ),
        ] {
            let mut body = schedule;
            body["name"] = json!("bad");
            let a = call(&h, &key, "POST", path, json!({"pipeline_schedule": body})).await;
            assert_eq!(a.status, 422, "{store}: {}", a.json);
            let message = a.json["error"]["message"].as_str().expect("message");
            assert!(message.contains(says), "{store}: {message:?} does not say {says:?}");
        }
        let settings = json!({"flow_control": {"key": "event.customer", "concurrency": {"per_key": 1}}});
        let (id, token) = api_schedule(&h, &key, "training", settings).await;
        let a = trigger(&h, id, &token, json!({"no_customer": true})).await;
        assert_eq!(a.status, 422, "{store}: {}", a.json);
        assert!(a.json["error"]["message"]
            .as_str()
            .expect("message")
            .starts_with("settings.flow_control.key: "));
        assert!(runs_of(&h, id).await.is_empty(), "{store}");
    }
}

/// Delivers every message the queue holds, delayed ones too (the test's clock, not the queue's, says
/// what time it is for the worker), until none is left or `rounds` have passed.
async fn deliver_all(h: &Harness, rounds: usize) {
    for _ in 0..rounds {
        let all = h.queue.take_all().await;
        if all.is_empty() {
            return;
        }
        for (_, m) in all {
            let _ = h.worker.handle(&m).await;
        }
    }
}

#[tokio::test]
async fn a_thousand_concurrent_triggers_of_one_key_debounce_into_one_run_with_the_last_payload() {
    for (store, h, key) in
        harnesses("a_thousand_concurrent_triggers_of_one_key_debounce_into_one_run_with_the_last_payload")
            .await
    {
        let settings = json!({"flow_control": {"key": "event.branch", "debounce": {"period_s": 5}}});
        let (id, token) = api_schedule(&h, &key, "training", settings).await;
        let in_flight = Arc::new(tokio::sync::Semaphore::new(200));
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..1_000 {
            let (api, token, in_flight) = (h.api.clone(), token.clone(), in_flight.clone());
            tasks.spawn(async move {
                let _permit = in_flight.acquire_owned().await.expect("semaphore");
                let path = format!("{api}/api/pipeline_schedules/{id}/pipeline_runs/{token}");
                request("POST", &path, &[], json!({"branch": "main", "n": n}).to_string()).await
            });
        }
        let mut ids = std::collections::BTreeSet::new();
        let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
        while let Some(done) = tasks.join_next().await {
            let a = done.expect("task");
            assert_eq!(a.status, 200, "{store}: {}", a.json);
            ids.insert(a.json["pipeline_run"]["id"].as_i64().expect("every answer carries the run"));
            let f = &a.json["flow_control"];
            assert_eq!(f["key"], "main");
            assert!(f["start_at"].is_string(), "{store}: {f}");
            *outcomes.entry(f["outcome"].as_str().expect("outcome").to_string()).or_default() += 1;
        }
        assert_eq!(ids.len(), 1, "{store}: every answer names the one run: {ids:?}");
        assert_eq!(outcomes.get("deferred"), Some(&1), "{store}: {outcomes:?}");
        assert_eq!(outcomes.get("merged"), Some(&999), "{store}: {outcomes:?}");
        // The rules test route says what the next trigger would do, without doing it.
        let t = rules_test(&h, &key, id, json!({"branch": "main"})).await;
        assert_eq!(t.json["rules_test"]["outcome"], "merged", "{store}: {}", t.json);
        assert!(t.json["rules_test"]["start_at"].is_string(), "{store}: {}", t.json);
        // The last trigger, after the thousand: its payload is the run's.
        let last = trigger(&h, id, &token, json!({"branch": "main", "n": "last"})).await;
        assert_eq!(last.json["flow_control"]["outcome"], "merged", "{store}: {}", last.json);
        let run_id = *ids.first().expect("one");
        assert_eq!(last.json["pipeline_run"]["id"], run_id);
        assert_eq!(last.json["pipeline_run"]["event_variables"], json!({"branch": "main", "n": "last"}));
        let runs = runs_of(&h, id).await;
        assert_eq!(runs.len(), 1, "{store}: one run was written");
        assert_eq!(runs[0].status, RunStatus::Initial);

        // Before the window's end the worker leaves it waiting; after it, the run starts with the
        // window's last payload.
        deliver_all(&h, 1).await;
        assert_eq!(runs_of(&h, id).await[0].status, RunStatus::Initial, "{store}: not before its end");
        h.clock.advance(chrono::Duration::seconds(6));
        deliver_all(&h, 50).await;
        let run = runs_of(&h, id).await.remove(0);
        assert_eq!(run.status, RunStatus::Completed, "{store}: {run:?}");
        assert_eq!(run.event_variables, Some(json!({"branch": "main", "n": "last"})), "{store}");
        assert!(run.started_at.expect("started") >= run.not_before.unwrap_or(run.created));

        // The window is closed: the next trigger of the key opens a new one, with a new run; another
        // key has a window of its own.
        let next = trigger(&h, id, &token, json!({"branch": "main", "n": "next"})).await;
        assert_eq!(next.json["flow_control"]["outcome"], "deferred", "{store}: {}", next.json);
        assert_ne!(next.json["pipeline_run"]["id"], run_id);
        let dev = trigger(&h, id, &token, json!({"branch": "dev"})).await;
        assert_eq!(dev.json["flow_control"]["outcome"], "deferred", "{store}: {}", dev.json);
        assert_eq!(runs_of(&h, id).await.len(), 3, "{store}");
        // Cancelling a pending run closes its window: the key's next trigger opens a new one.
        let dev_id = dev.json["pipeline_run"]["id"].as_i64().expect("id");
        let body = json!({"pipeline_run": {"status": "cancelled"}});
        let c = call(&h, &key, "PUT", &format!("/api/pipeline_runs/{dev_id}"), body).await;
        assert_eq!(c.status, 200, "{store}: {}", c.json);
        let again = trigger(&h, id, &token, json!({"branch": "dev"})).await;
        assert_eq!(again.json["flow_control"]["outcome"], "deferred", "{store}: {}", again.json);
        assert_ne!(again.json["pipeline_run"]["id"], dev_id, "{store}: not merged into the cancelled run");
    }
}

#[tokio::test]
async fn a_throttle_holds_every_window_to_limit_plus_burst_and_answers_the_excess_429() {
    for (store, h, key) in
        harnesses("a_throttle_holds_every_window_to_limit_plus_burst_and_answers_the_excess_429").await
    {
        let settings = json!({"flow_control": {"key": "event.customer",
            "throttle": {"limit": 10, "period_s": 60, "burst": 2, "max_delay_s": 30}}});
        let (id, token) = api_schedule(&h, &key, "training", settings).await;
        // 100 triggers a second for 2 minutes (of the test's clock), ten at a time; on DynamoDB Local,
        // whose requests take longer, 20 a second (two at a time), so the test stays under a minute.
        let per_tenth = if store == "memory" { 10 } else { 2 };
        let (mut taken, mut refused) = (0, 0);
        let start = h.app.clock.now();
        for tenth in 0..1_200 {
            h.clock.set(start + chrono::Duration::milliseconds(100 * tenth));
            let mut batch = tokio::task::JoinSet::new();
            for _ in 0..per_tenth {
                let path = format!("{}/api/pipeline_schedules/{id}/pipeline_runs/{token}", h.api);
                batch.spawn(async move {
                    request("POST", &path, &[], json!({"customer": "acme"}).to_string()).await
                });
            }
            while let Some(done) = batch.join_next().await {
                let a = done.expect("task");
                match a.status {
                    200 => taken += 1,
                    429 => {
                        refused += 1;
                        let after: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
                        assert!((1..=60).contains(&after), "{store}: Retry-After {after}");
                        assert_eq!(a.json["error"]["type"], "too_many_requests", "{store}: {}", a.json);
                    }
                    _ => panic!("{store}: {} {}", a.status, a.json),
                }
            }
        }
        let runs = runs_of(&h, id).await;
        assert_eq!(runs.len(), taken, "{store}: a 429 writes nothing");
        assert_eq!(taken + refused, 1_200 * per_tenth);
        let mut turns: Vec<_> = runs.iter().map(|r| r.not_before.unwrap_or(r.created)).collect();
        turns.sort();
        for (i, t) in turns.iter().enumerate() {
            let window = turns[i..].iter().take_while(|x| **x < *t + chrono::Duration::seconds(60)).count();
            assert!(window <= 12, "{store}: {window} starts in the 60 s from {t}");
        }
        // 2 minutes of turns plus the 30 s a turn may be away, at 10 a minute, and the burst of 2 more.
        assert!((25..=28).contains(&taken), "{store}: {taken} runs");
        // At the 100th second of the triggers the key's next turn (after the 144th) was over 30 s away.
        h.clock.set(start + chrono::Duration::seconds(100));
        let t = rules_test(&h, &key, id, json!({"customer": "acme"})).await;
        assert_eq!(t.json["rules_test"]["outcome"], "rate_limited", "{store}: {}", t.json);
        let t = rules_test(&h, &key, id, json!({"customer": "initech"})).await;
        assert_eq!(
            t.json["rules_test"]["outcome"], "new_run",
            "{store}: another key has its own pace: {}",
            t.json
        );

        // The worker starts no run before its turn.
        let last = runs.iter().max_by_key(|r| r.not_before).expect("runs").clone();
        let turn = last.not_before.expect("a later turn");
        h.queue.take_all().await;
        h.worker.handle(&kickoff::queue::Message::StartRun { run_uuid: last.uuid }).await.expect("start");
        let seen = h.app.store.get_run(last.uuid).await.expect("get").expect("run").value.run;
        assert_eq!(seen.status, RunStatus::Initial, "{store}: before its turn");
        let again = h.queue.take_all().await;
        assert!(
            matches!(again.as_slice(), [(_, kickoff::queue::Message::StartRun { run_uuid })] if *run_uuid == last.uuid),
            "{store}: looked at again at its turn: {again:?}"
        );
        h.clock.set(turn + chrono::Duration::seconds(1));
        h.worker.handle(&kickoff::queue::Message::StartRun { run_uuid: last.uuid }).await.expect("start");
        let seen = h.app.store.get_run(last.uuid).await.expect("get").expect("run").value.run;
        assert_ne!(seen.status, RunStatus::Initial, "{store}: started at its turn");
    }
}

#[tokio::test]
async fn zenml_runs_take_flow_control_from_extra_keyed_per_pipeline() {
    for (store, h, key) in harnesses("zenml_runs_take_flow_control_from_extra_keyed_per_pipeline").await {
        let build = h.app.store.pipeline_head("training").await.expect("head").expect("build");
        let path = format!("/api/v1/pipeline_builds/{}/runs", build.id);
        let run =
            |customer: &str, flow: Value| json!({"extra": {"customer": customer, "flow_control": flow}});
        // One run per customer at a time: the second of a key waits; another key does not.
        let one = json!({"key": "event.extra.customer", "concurrency": {"per_key": 1}});
        let a = call(&h, &key, "POST", &path, run("acme", one.clone())).await;
        assert_eq!(a.status, 200, "{store}: {}", a.json);
        assert_eq!(a.headers["x-kickoff-flow-outcome"], "new_run", "{store}");
        let b = call(&h, &key, "POST", &path, run("acme", one.clone())).await;
        assert_eq!(b.headers["x-kickoff-flow-outcome"], "queued", "{store}: {}", b.json);
        let c = call(&h, &key, "POST", &path, run("globex", one.clone())).await;
        assert_eq!(c.headers["x-kickoff-flow-outcome"], "new_run", "{store}");
        // `skip` over the limit writes nothing: a 409 in ZenML's shape.
        let skip = json!({"key": "event.extra.customer", "concurrency": {"per_key": 1, "on_limit": "skip"}});
        let d = call(&h, &key, "POST", &path, run("acme", skip)).await;
        assert_eq!(d.status, 409, "{store}: {}", d.json);
        assert!(d.json["detail"][1].as_str().expect("message").starts_with("skipped, no run: "), "{store}");
        // Debounce: the second trigger of a key merges into the first's run.
        let deb = json!({"key": "event.extra.customer", "debounce": {"period_s": 5}});
        let e = call(&h, &key, "POST", &path, run("initech", deb.clone())).await;
        assert_eq!(e.headers["x-kickoff-flow-outcome"], "deferred", "{store}: {}", e.json);
        assert!(e.headers.contains_key("x-kickoff-flow-start-at"));
        let f = call(&h, &key, "POST", &path, run("initech", deb)).await;
        assert_eq!(f.headers["x-kickoff-flow-outcome"], "merged", "{store}: {}", f.json);
        assert_eq!(f.json["id"], e.json["id"], "{store}: the same run");
        // Bad flow control is a 422 naming the ZenML field, and writes nothing.
        let bad = json!({"key": "event.extra.customer", "concurrency": {"per_key": 0}});
        let g = call(&h, &key, "POST", &path, run("acme", bad)).await;
        assert_eq!(g.status, 422, "{store}: {}", g.json);
        assert!(
            g.json["detail"][1]
                .as_str()
                .expect("message")
                .starts_with("extra.flow_control.concurrency.per_key"),
            "{store}: {}",
            g.json
        );

        // Drive the worker: acme's second run starts only when its first has finished.
        let acme = |j: &Value| j["id"].as_str().expect("uuid").parse::<uuid::Uuid>().expect("uuid");
        let (first, second) = (acme(&a.json), acme(&b.json));
        h.clock.advance(chrono::Duration::seconds(6));
        for _ in 0..100 {
            let r1 = h.app.store.get_run(first).await.expect("get").expect("run").value.run;
            let r2 = h.app.store.get_run(second).await.expect("get").expect("run").value.run;
            if r2.status != RunStatus::Initial {
                assert_eq!(
                    r1.status,
                    RunStatus::Completed,
                    "{store}: the second started after the first ended"
                );
            }
            if r2.status == RunStatus::Completed {
                break;
            }
            deliver_all(&h, 1).await;
        }
        let r2 = h.app.store.get_run(second).await.expect("get").expect("run").value.run;
        assert_eq!(r2.status, RunStatus::Completed, "{store}: {r2:?}");
        let merged = acme(&e.json);
        let m = h.app.store.get_run(merged).await.expect("get").expect("run").value.run;
        assert_eq!(m.status, RunStatus::Completed, "{store}: the debounced run ran: {m:?}");
    }
}
