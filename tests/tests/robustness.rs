//! SPEC §7: nothing a client sends makes a function answer 500 (or panic). Every route of the route
//! table, with odd path parameters and odd bodies, with and without credentials.

use kickoff::http::routes::ROUTES;
use kickoff_tests::{request, spawn_app};

#[tokio::test]
async fn no_route_answers_500_to_odd_input() {
    let s = spawn_app().await;
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let bodies = [
        String::new(),
        "null".into(),
        "[]".into(),
        "{}".into(),
        "{\"a\":".into(),
        "\"text\"".into(),
        "1e999".into(),
        deep,
        "{\"pipeline_schedule\": null, \"pipeline_run\": [], \"name\": {}, \"blocks\": \"x\", \"steps\": 5}"
            .into(),
        "{\"pipeline_run\": {\"status\": \"cancelled\", \"pipeline_run_action\": \"retry_blocks\"}}".into(),
        "{\"status\": \"completed\", \"metrics\": 3}".into(),
        "\u{0}\u{ffff}".into(),
    ];
    let params =
        ["0", "-1", "abc", "9999999999999999999999", "00000000-0000-0000-0000-000000000000", "%00", "71"];
    let auths = [None, Some(s.auth()), Some(s.read_auth()), Some("Bearer x".to_string())];
    let mut checked = 0;
    for route in ROUTES {
        for param in params {
            let path =
                route.path.replace("{id}", param).replace("{pipeline_uuid}", param).replace("{token}", param);
            for body in &bodies {
                for auth in &auths {
                    let mut headers = vec![("content-type", "application/json")];
                    if let Some(a) = auth {
                        headers.push(("authorization", a.as_str()));
                    }
                    let a = request(route.method, &s.url(&path), &headers, body.clone()).await;
                    assert!(
                        a.status < 500,
                        "{} {path} with {body:.40?}: {} {}",
                        route.method,
                        a.status,
                        String::from_utf8_lossy(&a.raw)
                    );
                    assert!(!a.json.is_null(), "{} {path}: the answer is JSON", route.method);
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 1000);
}

/// DynamoDB's 400 KB item limit, reached by what a client sends: a schedule's variables and a run's
/// each under the 256 KiB body limit, together over it. The trigger is a 413 that says so, not a 500,
/// and no run is stored (the store refuses the write before writing; on DynamoDB Local too, by the
/// conformance suite).
/// Variables are bounded where they are parsed (64 KiB of JSON each: a schedule's, a trigger's), so
/// that a run made of the largest of each and the largest body stays far below DynamoDB's 400 KB item
/// limit: a run at the bounds is stored, one past them is a 422 naming the field and stores nothing.
/// (The store's own 413 for an item over 400 KB is the conformance check `write_limits`.)
#[tokio::test]
async fn variables_past_their_bound_are_a_422_and_a_run_at_the_bounds_is_stored() {
    let s = spawn_app().await;
    let auth = s.auth();
    let h = [("authorization", auth.as_str()), ("content-type", "application/json")];
    let near = "v".repeat(60 * 1024);
    let over = "v".repeat(65 * 1024);
    let schedule = |v: &str| {
        serde_json::json!({"pipeline_schedule": {"name": "big", "schedule_type": "api",
            "status": "active", "variables": {"a": v}}})
        .to_string()
    };
    let url = s.url("/api/pipelines/training/pipeline_schedules");
    let a = request("POST", &url, &h, schedule(&over)).await;
    assert_eq!(a.status, 422, "{}", String::from_utf8_lossy(&a.raw));
    let message = a.json["error"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("variables: at most 65536 bytes of JSON"), "{message}");
    let a = request("POST", &url, &h, schedule(&near)).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.raw));
    let id = a.json["pipeline_schedule"]["id"].as_i64().expect("id");
    let trigger = s.url(&format!("/api/pipeline_schedules/{id}/pipeline_runs"));
    let run = |v: &str| {
        serde_json::json!({"pipeline_run": {"variables": {"b": v}}, "event": "e".repeat(120 * 1024)})
            .to_string()
    };
    let a = request("POST", &trigger, &h, run(&over)).await;
    assert_eq!(a.status, 422, "{}", String::from_utf8_lossy(&a.raw));
    let message = a.json["error"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("pipeline_run.variables: at most 65536"), "{message}");
    let a = request("GET", &trigger, &h, "").await;
    assert_eq!(a.json["metadata"]["count"], 0, "no run was stored: {}", a.json);
    let a = request("POST", &trigger, &h, run(&near)).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.raw));
    let a = request("GET", &trigger, &h, "").await;
    assert_eq!(a.json["metadata"]["count"], 1, "the run at the bounds was stored: {}", a.json);
}

/// Every bound of `docs/security.md` that a body or a query reaches: a 422 in the dialect's shape that
/// names the field and the bound, and nothing stored.
#[tokio::test]
async fn every_bound_is_a_422_naming_the_field_and_changes_nothing() {
    let s = spawn_app().await;
    let auth = s.auth();
    let h = [("authorization", auth.as_str())];
    let build = s.app.store.list_builds().await.expect("builds")[0].id;
    let block = |extra: serde_json::Value| {
        let mut b = serde_json::json!({"name": "a", "executor": {"type": "noop"}});
        for (k, v) in extra.as_object().expect("object") {
            b[k] = v.clone();
        }
        serde_json::json!({"name": "bounded", "blocks": [b]}).to_string()
    };
    let lambda = |t: u64| {
        serde_json::json!({"name": "bounded", "blocks": [{"name": "a", "timeout_s": t,
            "executor": {"type": "lambda", "function": "f"}}]})
        .to_string()
    };
    let http = |t: u64| {
        serde_json::json!({"name": "bounded", "blocks": [{"name": "a",
            "executor": {"type": "http", "url": "https://example.com/x", "timeout_s": t}}]})
        .to_string()
    };
    let sched = |fields: serde_json::Value| {
        let mut f = serde_json::json!({"name": "b", "schedule_type": "api"});
        for (k, v) in fields.as_object().expect("object") {
            f[k] = v.clone();
        }
        serde_json::json!({"pipeline_schedule": f}).to_string()
    };
    let backfill = |units: u64, end: &str| {
        serde_json::json!({"backfill": {"name": "b", "start_datetime": "2024-01-01", "end_datetime": end,
            "interval_type": "day", "interval_units": units}})
        .to_string()
    };
    let subs: serde_json::Map<String, serde_json::Value> = (0..20)
        .map(|i| (format!("k{i}"), serde_json::json!(format!("{{k{}}}{{k{}}}", i + 1, i + 1))))
        .collect();
    let pipelines = "/api/v1/pipelines".to_string();
    let schedules = "/api/pipelines/training/pipeline_schedules".to_string();
    let cases: Vec<(&str, String, String, &str)> = vec![
        (
            "POST",
            pipelines.clone(),
            block(serde_json::json!({"retries": 101})),
            "blocks[0].retries: at most 100",
        ),
        (
            "POST",
            pipelines.clone(),
            block(serde_json::json!({"delay_s": 86401})),
            "blocks[0].delay_s: at most 86400",
        ),
        (
            "POST",
            pipelines.clone(),
            block(serde_json::json!({"max_delay_s": u64::MAX})),
            "blocks[0].max_delay_s: at most 86400",
        ),
        (
            "POST",
            pipelines.clone(),
            block(serde_json::json!({"timeout_s": 86401})),
            "blocks[0].timeout_s: at most 86400",
        ),
        ("POST", pipelines.clone(), lambda(901), "blocks[0].timeout_s: at most 900"),
        ("POST", pipelines.clone(), http(841), "blocks[0].executor.timeout_s: at most 840"),
        (
            "POST",
            format!("/api/v1/pipeline_builds/{build}/runs"),
            serde_json::json!({"run_name": "x".repeat(256)}).to_string(),
            "run_name: at most 255 characters",
        ),
        (
            "POST",
            format!("/api/v1/pipeline_builds/{build}/runs"),
            serde_json::json!({"run_name": "{k0}", "substitutions": subs}).to_string(),
            "",
        ),
        ("POST", schedules.clone(), sched(serde_json::json!({"sla": 2_592_001})), "sla: at most 2592000"),
        (
            "POST",
            schedules.clone(),
            sched(serde_json::json!({"settings": {"timeout": 2_592_001}})),
            "settings.timeout: at most 2592000",
        ),
        (
            "POST",
            schedules.clone(),
            sched(serde_json::json!({"settings": {"pipeline_run_limit": 10_001}})),
            "settings.pipeline_run_limit: at most 10000",
        ),
        (
            "POST",
            schedules.clone(),
            sched(serde_json::json!({"start_time": "+10000-01-01T00:00:00"})),
            "start_time: must lie in the years 1970 to 9999",
        ),
        (
            "POST",
            "/api/pipeline_schedules/71/pipeline_runs".into(),
            serde_json::json!({"pipeline_run": {"execution_date": "+262142-12-31 00:00:00"}}).to_string(),
            "pipeline_run.execution_date: must lie in the years",
        ),
        (
            "POST",
            "/api/pipelines/training/backfills".into(),
            backfill(1_000_001, "2024-02-01"),
            "interval_units: at most 1000000",
        ),
        (
            "POST",
            "/api/pipelines/training/backfills".into(),
            backfill(1, "+262142-12-31 00:00:00"),
            "end_datetime: must lie in the years",
        ),
        (
            "GET",
            "/api/pipeline_schedules/71/pipeline_runs?_offset=100001".into(),
            String::new(),
            "_offset: must be a whole number from 0 to 100000",
        ),
        (
            "GET",
            "/api/v1/runs?page=1002&size=100".into(),
            String::new(),
            "page: (page - 1) x size skips at most 100000",
        ),
    ];
    let count = |path: &'static str| {
        let s = &s;
        async move { request("GET", &s.url(path), &h, "").await.raw.len() }
    };
    let before = (
        count("/api/v1/pipelines").await,
        count("/api/pipeline_schedules").await,
        count("/api/pipeline_runs").await,
        count("/api/backfills").await,
    );
    for (method, path, body, message) in cases {
        let a = request(method, &s.url(&path), &h, body).await;
        let shown = String::from_utf8_lossy(&a.raw).to_string();
        if message.is_empty() {
            // Substitutions apply once: the 20 chained keys make a short name, not one of 2^20 copies.
            assert_eq!(a.status, 200, "{method} {path}: {shown:.300}");
            assert_eq!(a.json["name"], "{k1}{k1}", "{shown:.300}");
            continue;
        }
        assert_eq!(a.status, 422, "{method} {path}: {shown:.300}");
        let text =
            a.json["error"]["message"].as_str().or_else(|| a.json["detail"][1].as_str()).unwrap_or_default();
        assert!(text.starts_with(message), "{method} {path}: {text:?} does not start with {message:?}");
    }
    let after = (
        count("/api/v1/pipelines").await,
        count("/api/pipeline_schedules").await,
        count("/api/pipeline_runs").await,
        count("/api/backfills").await,
    );
    assert_eq!((before.0, before.1, before.3), (after.0, after.1, after.3), "a refused body stored nothing");
}

/// Lambda's 6 MB answer limit, reached by a page of many large runs: a 422 that asks for a smaller page
/// (API Gateway would answer a bare 502), while a smaller page of the same runs is answered.
#[tokio::test]
async fn an_answer_over_lambdas_limit_is_a_422_asking_for_a_smaller_page() {
    let s = spawn_app().await;
    let auth = s.auth();
    let h = [("authorization", auth.as_str()), ("content-type", "application/json")];
    // The body's own keys become the run's event_variables, bounded by the body's 256 KiB only.
    let big = "w".repeat(240 * 1024);
    let run = serde_json::json!({"b": big});
    for _ in 0..30 {
        let a =
            request("POST", &s.url("/api/pipeline_schedules/71/pipeline_runs"), &h, run.to_string()).await;
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.raw));
    }
    let a = request("GET", &s.url("/api/pipeline_runs?_limit=30"), &h, "").await;
    assert_eq!(a.status, 422, "{:.300}", String::from_utf8_lossy(&a.raw));
    let message = a.json["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("ask for a smaller page"), "{message}");
    let a = request("GET", &s.url("/api/pipeline_runs?_limit=5"), &h, "").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json["pipeline_runs"].as_array().map(Vec::len), Some(5));
}

/// A DynamoDB endpoint that answers every request as a throttled table does.
async fn throttling_dynamodb() -> String {
    use http_body_util::Full;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req: hyper::Request<hyper::body::Incoming>| async {
                    let body = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"The level of configured provisioned throughput for the table was exceeded."}"#;
                    hyper::Response::builder()
                        .status(400)
                        .header("content-type", "application/x-amz-json-1.0")
                        .header("x-amzn-errortype", "ProvisionedThroughputExceededException")
                        .body(Full::new(bytes::Bytes::from(body)))
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, svc).await;
            });
        }
    });
    url
}

/// SPEC §7 and issue #19: DynamoDB throttled (through the real SDK, on an endpoint that answers as
/// DynamoDB does) or unreachable is a 503 with `Retry-After` in the dialect's error shape — management
/// routes and token routes alike — never a 500.
#[tokio::test]
async fn a_store_throttled_or_down_is_a_503_with_retry_after_in_both_dialects() {
    use kickoff::http::routes::serve;
    use kickoff::http::ApiRequest;
    use std::sync::Arc;
    let down = format!("http://127.0.0.1:{}", kickoff_tests::free_port());
    for endpoint in [throttling_dynamodb().await, down] {
        let conf = aws_sdk_dynamodb::config::Builder::new()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "t"))
            .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::standard().with_max_attempts(1))
            .endpoint_url(&endpoint)
            .build();
        let table = kickoff::store::dynamo::DynamoTable::new(aws_sdk_dynamodb::Client::from_conf(conf), "t");
        let app = kickoff::App {
            store: kickoff::store::Store::new(Arc::new(table)),
            queue: Arc::new(kickoff::queue::memory::MemoryQueue::new()),
            clock: Arc::new(kickoff::clock::SystemClock),
        };
        let mut h = http::HeaderMap::new();
        h.insert("authorization", "Bearer kk_some_key".parse().unwrap());
        let token = "0123456789abcdef0123456789abcdef";
        for (method, path, headers) in [
            (http::Method::GET, "/api/v1/pipelines".to_string(), h.clone()),
            (http::Method::GET, "/api/pipeline_schedules".to_string(), h.clone()),
            (
                http::Method::POST,
                format!("/api/pipeline_schedules/71/pipeline_runs/{token}"),
                http::HeaderMap::new(),
            ),
        ] {
            let req = ApiRequest::new(method.clone(), &path, headers, bytes::Bytes::from_static(b"{}"));
            let resp = serve(&app, req).await;
            let body: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
            assert_eq!(resp.status, 503, "{endpoint} {method} {path}: {body}");
            let retry = resp.headers.iter().find(|(k, _)| *k == "retry-after").map(|(_, v)| v.as_str());
            assert_eq!(retry, Some("2"), "{method} {path}");
            let text = body.to_string();
            assert!(!text.contains("Provisioned") && !text.contains("127.0.0.1"), "no detail shown: {text}");
            if path.starts_with("/api/v1/") {
                assert_eq!(body["detail"][0], "ServiceUnavailable", "{body}");
            } else {
                assert_eq!(body["error"]["code"], 503, "{body}");
                assert_eq!(body["error"]["type"], "service_unavailable", "{body}");
            }
        }
    }
}

/// Under the default (`public`) egress policy, block and notification URLs to loopback, link-local
/// (the metadata service), private or unique-local addresses, or over plain http, are a 422 naming
/// the field when saved; nothing is stored.
#[tokio::test]
async fn urls_the_egress_policy_refuses_are_a_422_when_saved() {
    let s = spawn_app().await;
    kickoff::egress::set(kickoff::egress::Policy::Public);
    let auth = s.auth();
    let h = [("authorization", auth.as_str())];
    let pipeline = |url: &str| {
        serde_json::json!({"name": "egress", "blocks": [{"name": "a", "executor": {"type": "http", "url": url}}]})
            .to_string()
    };
    for url in [
        "https://127.0.0.1:9001/2018-06-01/runtime/invocation/next",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.7/hook",
        "https://[fd00::7]/hook",
        "https://localhost/hook",
        "http://example.com/hook",
    ] {
        let a = request("POST", &s.url("/api/v1/pipelines"), &h, pipeline(url)).await;
        assert_eq!(a.status, 422, "{url}: {}", String::from_utf8_lossy(&a.raw));
        let text = a.json["detail"][1].as_str().unwrap_or_default();
        assert!(text.contains("executor.url") && text.contains("egress policy `public`"), "{url}: {text}");
    }
    let a = request("POST", &s.url("/api/v1/pipelines"), &h, pipeline("https://blocks.example.com/a")).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.raw));
    let schedule = serde_json::json!({"pipeline_schedule": {"name": "n", "schedule_type": "api",
        "settings": {"notifications": [{"url": "https://192.168.0.1/slack", "on": ["failed"]}]}}});
    let a =
        request("POST", &s.url("/api/pipelines/training/pipeline_schedules"), &h, schedule.to_string()).await;
    assert_eq!(a.status, 422, "{}", String::from_utf8_lossy(&a.raw));
    let text = a.json["error"]["message"].as_str().unwrap_or_default();
    assert!(text.starts_with("settings.notifications[0].url: "), "{text}");
}
