//! Property tests (issue #19): every parser a client reaches — pipeline, build, schedule, backfill and
//! trigger bodies, run configurations, callback bodies, query strings, webhook headers and bodies — fed
//! generated input through the real dispatch (`http::routes::serve`) on an in-memory app. Nothing
//! answers 500 (a panic would: dispatch catches it and answers a bare 500), every refusal is a 4xx in
//! its dialect's error shape, and a value past a bound is a 422 naming the field. Bounded in count (a
//! few thousand cases each, seconds in all) and repeatable: each test draws from a fixed seed.

use std::sync::Arc;

use bytes::Bytes;
use kickoff::domain::{ApiKey, Role};
use kickoff::http::routes::{serve, ROUTES};
use kickoff::http::ApiRequest;
use kickoff::App;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};

/// Names the parsers know, so that generated objects reach past the first unknown-field check.
const KEYS: &[&str] = &[
    "name",
    "blocks",
    "executor",
    "type",
    "url",
    "timeout_s",
    "retries",
    "delay_s",
    "max_delay_s",
    "upstream",
    "parameters",
    "function",
    "notifications",
    "on",
    "format",
    "pipeline_schedule",
    "schedule_type",
    "schedule_interval",
    "start_time",
    "status",
    "variables",
    "sla",
    "settings",
    "timeout",
    "timeout_status",
    "pipeline_run_limit",
    "skip_if_previous_running",
    "webhook",
    "provider",
    "events",
    "branches",
    "pipeline_run",
    "execution_date",
    "run_name",
    "substitutions",
    "steps",
    "backfill",
    "start_datetime",
    "end_datetime",
    "interval_type",
    "interval_units",
    "pipeline_id",
    "images",
    "checksum",
    "rotate_token",
    "metrics",
    "pipeline_run_action",
    "from_block_uuid",
    "extra",
    "version",
    "description",
    "allow_blocks_to_fail",
    "create_initial_pipeline_run",
    "timezone",
    "rotate_secret",
    "secret",
    "header",
    "encoding",
    "prefix",
    "build_id",
    "pipeline_schedule_id",
];

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("+262142-12-31 00:00:00".to_string()),
        Just("+10000-01-01T00:00:00".to_string()),
        Just("9999-12-31T23:59:59Z".to_string()),
        Just("1969-12-31".to_string()),
        Just("2024-01-01".to_string()),
        Just("@daily".to_string()),
        Just("* * * * *".to_string()),
        Just("{k}{k}{pipeline}".to_string()),
        Just("http://127.0.0.1:9001/".to_string()),
        Just("https://169.254.169.254/latest".to_string()),
        Just("https://example.com/b".to_string()),
        Just("http".to_string()),
        Just("noop".to_string()),
        Just("api".to_string()),
        Just("github".to_string()),
        Just("day".to_string()),
        Just("cancelled".to_string()),
        Just("retry_blocks".to_string()),
        "[a-z{}:/._ -]{0,16}",
        "\\PC{0,8}",
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(1)),
        Just(json!(u64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(86_401)),
        Just(json!(901)),
        Just(json!(1_000_001)),
        Just(json!(1e308)),
        Just(json!(0.5)),
        any::<u32>().prop_map(|n| json!(n)),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        let key =
            prop_oneof![4 => proptest::sample::select(KEYS).prop_map(str::to_string), 1 => "[a-z_]{1,8}"];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key, inner), 0..7).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// An in-memory app with the demo seeded and a write key; its build id and the demo schedule's token.
async fn app() -> (App, String, Vec<String>) {
    kickoff::egress::set(kickoff::egress::Policy::Public);
    let (app, _queue) = App::memory();
    let now = app.clock.now();
    let (secret, key) = ApiKey::generate(Role::Write, "properties", now);
    app.store.put_api_key(&key).await.unwrap();
    kickoff::demo::seed(&app).await.unwrap();
    kickoff::demo::seed_schedule(&app, None).await.unwrap();
    let token = app.store.get_schedule(71).await.unwrap().unwrap().value.token;
    let build = app.store.list_builds().await.unwrap()[0].id.to_string();
    (app, secret, vec!["71".into(), build, token, "training".into(), "0".into(), "x%00".into()])
}

/// `Authorization: Bearer <secret>`.
fn bearer(secret: &str) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    headers.insert("authorization", format!("Bearer {secret}").parse().unwrap());
    headers
}

/// `cases` cases from a fixed seed: the same inputs on every run, so that CI is repeatable and a failure
/// is reproduced by running the test again (proptest prints the smallest failing input).
fn runner(cases: u32) -> TestRunner {
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let rng = proptest::test_runner::TestRng::deterministic_rng(config.rng_algorithm);
    TestRunner::new_with_rng(config, rng)
}

/// Every route, any body: no 500, and a 4xx is in the dialect's error shape.
#[test]
fn no_body_on_any_route_makes_a_500() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (app, secret, params) = rt.block_on(app());
    let app = Arc::new(app);
    let strategy = (0..ROUTES.len(), value(), proptest::sample::select(params.clone()), any::<bool>());
    runner(4000)
        .run(&strategy, |(route, body, param, authed)| {
            let route = &ROUTES[route];
            let path = route
                .path
                .split('/')
                .map(|seg| if seg.starts_with('{') { param.as_str() } else { seg })
                .collect::<Vec<_>>()
                .join("/");
            let headers = if authed { bearer(&secret) } else { http::HeaderMap::new() };
            let method = route.method.parse().unwrap();
            let req = ApiRequest::new(method, &path, headers, Bytes::from(body.to_string()));
            let resp = rt.block_on(serve(&app, req));
            let status = resp.status.as_u16();
            prop_assert!(
                status < 500,
                "{} {path} {body}: {status} {}",
                route.method,
                String::from_utf8_lossy(&resp.body)
            );
            if status >= 400 {
                let shown: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
                let shaped = if path.starts_with("/api/v1/") {
                    !shown["detail"].is_null()
                } else {
                    shown["error"]["code"] == status
                };
                prop_assert!(shaped, "{path}: {shown}");
            }
            Ok(())
        })
        .unwrap();
}

/// Every list route, any query string: no 500.
#[test]
fn no_query_string_on_a_list_route_makes_a_500() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (app, secret, _) = rt.block_on(app());
    let names = [
        "_limit",
        "_offset",
        "page",
        "size",
        "sort_by",
        "status",
        "name",
        "created",
        "pipeline_id",
        "logical_operator",
        "hydrate",
        "pipeline_schedule_id",
        "wait",
        "api_key",
        "start_time",
    ];
    let pair = (
        proptest::sample::select(names.to_vec()),
        prop_oneof![
            Just("100001".to_string()),
            Just("-1".to_string()),
            Just("99999999999999999999".to_string()),
            Just("desc:created".to_string()),
            Just("gte:+262142-01-01".to_string()),
            Just("oneof:[1,{}]".to_string()),
            "[a-z0-9:%+&=-]{0,12}",
        ],
    );
    let lists: Vec<&str> =
        ROUTES.iter().filter(|r| r.method == "GET" && !r.path.contains('{')).map(|r| r.path).collect();
    let strategy = (proptest::sample::select(lists), prop::collection::vec(pair, 0..5));
    runner(2000)
        .run(&strategy, |(path, pairs)| {
            let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let headers = bearer(&secret);
            let target = format!("{path}?{}", query.join("&"));
            let resp =
                rt.block_on(serve(&app, ApiRequest::new(http::Method::GET, &target, headers, Bytes::new())));
            prop_assert!(resp.status.as_u16() < 500, "{target}: {}", String::from_utf8_lossy(&resp.body));
            Ok(())
        })
        .unwrap();
}

/// A block number past its bound is a 422 naming the field, whatever the rest of the block.
#[test]
fn a_block_number_past_its_bound_is_a_422_naming_it() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (app, secret, _) = rt.block_on(app());
    let field = proptest::sample::select(vec![
        ("retries", 100u64),
        ("delay_s", 86_400),
        ("max_delay_s", 86_400),
        ("timeout_s", 86_400),
    ]);
    let strategy = (field, 1u64..u64::MAX / 2, any::<bool>());
    runner(300)
        .run(&strategy, |((name, max), over, lambda)| {
            let value = if name == "retries" { (max + over).min(u64::from(u32::MAX)) } else { max + over };
            let executor =
                if lambda { json!({"type": "lambda", "function": "f"}) } else { json!({"type": "noop"}) };
            let mut block = json!({"name": "a", "executor": executor});
            block[name] = json!(value);
            let body = json!({"name": "bounded", "blocks": [block]}).to_string();
            let headers = bearer(&secret);
            let req = ApiRequest::new(http::Method::POST, "/api/v1/pipelines", headers, Bytes::from(body));
            let resp = rt.block_on(serve(&app, req));
            let shown: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
            prop_assert_eq!(resp.status.as_u16(), 422, "{} = {}: {}", name, value, shown);
            let message = shown["detail"][1].as_str().unwrap_or_default().to_string();
            prop_assert!(message.contains(&format!("blocks[0].{name}")), "{}", message);
            Ok(())
        })
        .unwrap();
}

/// Webhook verification takes any headers and any body without panicking, and lets nothing unsigned in.
#[test]
fn webhook_verification_refuses_what_is_not_signed_and_never_panics() {
    use kickoff::webhook::{Provider, WebhookConfig};
    let now = chrono::Utc::now();
    let providers = [
        Provider::Github,
        Provider::Gitlab,
        Provider::Stripe,
        Provider::Slack,
        Provider::Standard,
        Provider::Hmac,
    ];
    let header_names = [
        "X-Hub-Signature-256",
        "X-Gitlab-Token",
        "Stripe-Signature",
        "X-Slack-Signature",
        "X-Slack-Request-Timestamp",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "X-Signature",
    ];
    let header_value = prop_oneof![
        Just("sha256=".to_string()),
        Just("t=99999999999999999999,v1=zz".to_string()),
        Just("v0=".to_string()),
        Just("v1,".to_string()),
        Just("-9223372036854775808".to_string()),
        Just("9223372036854775807".to_string()),
        "[ -~]{0,40}",
    ];
    let strategy = (
        proptest::sample::select(providers.to_vec()),
        prop::collection::vec((proptest::sample::select(header_names.to_vec()), header_value), 0..6),
        prop::collection::vec(any::<u8>(), 0..64),
    );
    runner(3000)
        .run(&strategy, |(provider, headers, body)| {
            let config: WebhookConfig = serde_json::from_value(
                json!({"provider": provider.as_str(), "secret": "s3cret-s3cret-s3cret-s3cret"}),
            )
            .unwrap();
            let header = |name: &str| {
                headers.iter().rev().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
            };
            let verdict = kickoff::webhook::verify::verify(&config, &config.secrets(now), header, &body, now);
            prop_assert!(verdict.is_err(), "{:?} let an unsigned delivery in: {:?}", provider, headers);
            Ok(())
        })
        .unwrap();
}
