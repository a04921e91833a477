//! Waiting for a run (SPEC §10): `?wait=` on the triggers and the get-run routes answers 200 with the
//! finished run, or 202 with the run so far and a `Location` to poll; the token-only status route
//! answers a run of its schedule to its token, and nothing else.

use std::sync::Arc;

use kickoff::worker::executor::Executors;
use kickoff::worker::{run_in_process, Worker};
use kickoff_tests::blocks::{BlockServer, Reply};
use kickoff_tests::{request, spawn_app, Server};
use serde_json::json;

/// The embedded server with its worker running, and a block target whose `hold` block never ends (it
/// accepts and waits for a callback that does not come).
async fn server_with_worker() -> (Server, BlockServer) {
    let server = spawn_app().await;
    let worker = Worker::new(server.app.clone(), Arc::new(Executors::new("whsec_test")), &server.base);
    tokio::spawn(run_in_process(Arc::new(worker), server.queue.clone()));
    let blocks = BlockServer::start().await;
    blocks.script("hold", vec![Reply::status(202); 5]);
    let auth = server.auth();
    let a = request(
        "POST",
        &server.url("/api/v1/pipelines"),
        &[("authorization", &auth)],
        json!({"name": "held", "blocks": [{"name": "hold", "executor": {"type": "http", "url": format!("{}/hold", blocks.url)}}]})
            .to_string(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.raw));
    (server, blocks)
}

/// An active api schedule of `pipeline`: its id and token.
async fn api_schedule(s: &Server, pipeline: &str) -> (i64, String) {
    let a = request(
        "POST",
        &s.url(&format!("/api/pipelines/{pipeline}/pipeline_schedules")),
        &[("authorization", &s.auth())],
        json!({"pipeline_schedule": {"name": "api", "schedule_type": "api", "status": "active"}}).to_string(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.raw));
    let s = &a.json["pipeline_schedule"];
    (s["id"].as_i64().expect("id"), s["token"].as_str().expect("token").to_string())
}

#[tokio::test]
async fn a_run_that_finishes_in_time_answers_200_finished_and_one_that_does_not_202_with_location() {
    let (s, _blocks) = server_with_worker().await;
    let auth = s.auth();
    let key = [("authorization", auth.as_str())];
    // The demo's noop pipeline finishes at once: every trigger with wait answers it completed.
    let (demo, demo_token) = api_schedule(&s, "training").await;
    let a = request(
        "POST",
        &s.url(&format!("/api/pipeline_schedules/{demo}/pipeline_runs/{demo_token}?wait=10")),
        &[],
        "{}",
    )
    .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.raw));
    assert_eq!(a.json["pipeline_run"]["status"], "completed");
    let bearer = format!("Bearer {demo_token}");
    let a = request(
        "POST",
        &s.url(&format!("/api/pipeline_schedules/{demo}/api_trigger?wait=10")),
        &[("authorization", &bearer)],
        "{}",
    )
    .await;
    assert_eq!((a.status, a.json["pipeline_run"]["status"].as_str()), (200, Some("completed")));
    let a =
        request("POST", &s.url(&format!("/api/pipeline_schedules/{demo}/pipeline_runs?wait=10")), &key, "{}")
            .await;
    assert_eq!((a.status, a.json["pipeline_run"]["status"].as_str()), (200, Some("completed")));
    let finished = a.json["pipeline_run"]["id"].as_i64().expect("id");
    let a = request("GET", &s.url(&format!("/api/pipeline_runs/{finished}?wait=3")), &key, "").await;
    assert_eq!((a.status, a.json["pipeline_run"]["status"].as_str()), (200, Some("completed")));

    // The held pipeline does not finish: 202, the run so far, and where to poll it.
    let (held, held_token) = api_schedule(&s, "held").await;
    let started = std::time::Instant::now();
    let a = request(
        "POST",
        &s.url(&format!("/api/pipeline_schedules/{held}/pipeline_runs/{held_token}?wait=1")),
        &[],
        "{}",
    )
    .await;
    assert!(started.elapsed() >= std::time::Duration::from_millis(900), "it waited");
    assert_eq!(a.status, 202, "{}", String::from_utf8_lossy(&a.raw));
    let run = a.json["pipeline_run"]["id"].as_i64().expect("id");
    assert!(["initial", "running"].contains(&a.json["pipeline_run"]["status"].as_str().unwrap_or_default()));
    let location = a.headers.get("location").and_then(|v| v.to_str().ok()).expect("Location").to_string();
    assert_eq!(location, format!("/api/pipeline_schedules/{held}/api_trigger/pipeline_runs/{run}"));
    // The Location, with the schedule's token and nothing else.
    let bearer = format!("Bearer {held_token}");
    let a = request("GET", &s.url(&location), &[("authorization", &bearer)], "").await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.raw));
    assert_eq!(a.json["pipeline_run"]["id"], run);
    let a = request("GET", &s.url(&format!("{location}?wait=1")), &[("authorization", &bearer)], "").await;
    assert_eq!(a.status, 202);
    let a = request("GET", &s.url(&format!("/api/pipeline_runs/{run}?wait=1")), &key, "").await;
    assert_eq!(a.status, 202);
    assert_eq!(
        a.headers.get("location").and_then(|v| v.to_str().ok()),
        Some(format!("/api/pipeline_runs/{run}").as_str())
    );

    // ZenML: a build of the held pipeline.
    let builds =
        request("GET", &s.url("/api/v1/pipeline_builds?sort_by=desc:created&size=1"), &key, "").await;
    let build = builds.json["items"][0]["id"].as_str().expect("build").to_string();
    let a =
        request("POST", &s.url(&format!("/api/v1/pipeline_builds/{build}/runs?wait=1")), &key, "{}").await;
    assert_eq!(a.status, 202, "{}", String::from_utf8_lossy(&a.raw));
    let uuid = a.json["id"].as_str().expect("uuid").to_string();
    assert_eq!(
        a.headers.get("location").and_then(|v| v.to_str().ok()),
        Some(format!("/api/v1/runs/{uuid}").as_str())
    );
    let a = request("GET", &s.url(&format!("/api/v1/runs/{uuid}?wait=1")), &key, "").await;
    assert_eq!(a.status, 202);
    let demo_build =
        request("GET", &s.url("/api/v1/pipeline_builds?sort_by=asc:created&size=1"), &key, "").await;
    let demo_build = demo_build.json["items"][0]["id"].as_str().expect("build").to_string();
    let a =
        request("POST", &s.url(&format!("/api/v1/pipeline_builds/{demo_build}/runs?wait=10")), &key, "{}")
            .await;
    assert_eq!((a.status, a.json["body"]["status"].as_str()), (200, Some("completed")));
}

#[tokio::test]
async fn the_token_only_route_answers_its_schedules_runs_to_its_token_only() {
    let (s, _blocks) = server_with_worker().await;
    let (a_id, a_token) = api_schedule(&s, "training").await;
    let (b_id, b_token) = api_schedule(&s, "training").await;
    let t = request(
        "POST",
        &s.url(&format!("/api/pipeline_schedules/{a_id}/pipeline_runs/{a_token}")),
        &[],
        "{}",
    )
    .await;
    let run = t.json["pipeline_run"]["id"].as_i64().expect("id");
    let path =
        |schedule: i64| s.url(&format!("/api/pipeline_schedules/{schedule}/api_trigger/pipeline_runs/{run}"));
    let bearer = |t: &str| format!("Bearer {t}");
    let a = request("GET", &path(a_id), &[("authorization", &bearer(&a_token))], "").await;
    assert_eq!(a.status, 200);
    // Another schedule's run, even with that schedule's own token: 404.
    let a = request("GET", &path(b_id), &[("authorization", &bearer(&b_token))], "").await;
    assert_eq!(a.status, 404, "{}", String::from_utf8_lossy(&a.raw));
    // A wrong token, another schedule's token, no token: 401.
    for headers in
        [vec![("authorization", bearer("nope"))], vec![("authorization", bearer(&b_token))], vec![]]
    {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let a = request("GET", &path(a_id), &h, "").await;
        assert_eq!(a.status, 401, "{}", String::from_utf8_lossy(&a.raw));
    }
    // An API key is not the schedule's token.
    let a = request("GET", &path(a_id), &[("authorization", &s.auth())], "").await;
    assert_eq!(a.status, 401);
}

#[tokio::test]
async fn a_bad_wait_is_a_422_and_starts_nothing() {
    let (s, _blocks) = server_with_worker().await;
    let (id, token) = api_schedule(&s, "training").await;
    for wait in ["0", "26", "1.5", "soon", ""] {
        let a = request(
            "POST",
            &s.url(&format!("/api/pipeline_schedules/{id}/pipeline_runs/{token}?wait={wait}")),
            &[],
            "{}",
        )
        .await;
        assert_eq!(a.status, 422, "wait={wait}: {}", String::from_utf8_lossy(&a.raw));
        assert!(a.json["error"]["message"].as_str().unwrap_or_default().starts_with("wait:"));
    }
    let runs = request(
        "GET",
        &s.url(&format!("/api/pipeline_schedules/{id}/pipeline_runs")),
        &[("authorization", &s.auth())],
        "",
    )
    .await;
    assert_eq!(runs.json["metadata"]["count"], 0);
}
