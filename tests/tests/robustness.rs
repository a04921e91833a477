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
#[tokio::test]
async fn a_run_too_large_to_store_is_a_413_and_stores_nothing() {
    let s = spawn_app().await;
    let auth = s.auth();
    let h = [("authorization", auth.as_str()), ("content-type", "application/json")];
    let big = "v".repeat(240 * 1024);
    let schedule = serde_json::json!({"pipeline_schedule": {"name": "big", "schedule_type": "api",
        "status": "active", "variables": {"a": big}}});
    let a =
        request("POST", &s.url("/api/pipelines/training/pipeline_schedules"), &h, schedule.to_string()).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.raw));
    let id = a.json["pipeline_schedule"]["id"].as_i64().expect("id");
    let run = serde_json::json!({"pipeline_run": {"variables": {"b": big}}});
    let a =
        request("POST", &s.url(&format!("/api/pipeline_schedules/{id}/pipeline_runs")), &h, run.to_string())
            .await;
    assert_eq!(a.status, 413, "{}", String::from_utf8_lossy(&a.raw));
    let message = a.json["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("item limit of 409600 bytes"), "{message}");
    let a = request("GET", &s.url(&format!("/api/pipeline_schedules/{id}/pipeline_runs")), &h, "").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json["metadata"]["count"], 0, "no run was stored: {}", a.json);
}

/// Lambda's 6 MB answer limit, reached by a page of many large runs: a 422 that asks for a smaller page
/// (API Gateway would answer a bare 502), while a smaller page of the same runs is answered.
#[tokio::test]
async fn an_answer_over_lambdas_limit_is_a_422_asking_for_a_smaller_page() {
    let s = spawn_app().await;
    let auth = s.auth();
    let h = [("authorization", auth.as_str()), ("content-type", "application/json")];
    let big = "w".repeat(240 * 1024);
    let run = serde_json::json!({"pipeline_run": {"variables": {"b": big}}});
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
