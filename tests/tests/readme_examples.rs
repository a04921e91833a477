//! The README's webhook, CI-wait and Slack examples, as written, against the embedded server
//! (`kickoff-local` with the dev key and token, as the README starts it; only the port differs).

use kickoff_tests::blocks::BlockServer;
use kickoff_tests::{readme_block, request, run_readme_block, start_kickoff_local, LocalServer};
use serde_json::Value;

/// The embedded server as the README starts it, with the dev schedule token and a known signing secret.
async fn start() -> LocalServer {
    start_kickoff_local(&[
        ("KICKOFF_DEV_SCHEDULE_TOKEN", "4506463a01944ef492f70005996dac1a"),
        ("KICKOFF_WEBHOOK_SECRET", kickoff_tests::worker::SECRET),
    ])
    .await
}

#[tokio::test]
async fn the_github_webhook_example_starts_a_run() {
    let server = start().await;
    let port = server.port;
    let out = run_readme_block(
        &readme_block("A GitHub webhook that runs a pipeline on every push to main"),
        port,
        &[],
    );
    let answer: Value =
        serde_json::from_str(out.lines().last().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}: {out}"));
    let run = &answer["pipeline_run"];
    assert_eq!(run["variables"]["webhook"]["provider"], "github", "{out}");
    assert_eq!(run["variables"]["webhook"]["event"], "push");
    assert_eq!(run["event_variables"]["ref"], "refs/heads/main");
    assert!(out.contains("Payload URL: http://localhost:"), "{out}");
}

#[tokio::test]
async fn the_ci_example_waits_for_the_run_and_passes_when_it_completes() {
    let server = start().await;
    let port = server.port;
    let out = run_readme_block(&readme_block("Trigger from CI and wait for the result"), port, &[]);
    assert!(out.trim_end().ends_with("completed"), "{out}");
}

#[tokio::test]
async fn the_slack_example_posts_a_slack_message_when_the_run_fails() {
    let server = start().await;
    let port = server.port;
    let slack = BlockServer::start().await;
    let url = format!("{}/services/T000/B000/XXXX", slack.url);
    let out = run_readme_block(
        &readme_block("A Slack message when a run fails"),
        port,
        &[("SLACK_WEBHOOK_URL", &url)],
    );
    assert!(out.contains("failed"), "{out}");
    let started = std::time::Instant::now();
    let calls = loop {
        let calls = slack.calls();
        if !calls.is_empty() {
            break calls;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "no Slack message came: {out}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(calls.len(), 1);
    let text = calls[0].body["text"].as_str().expect("a Slack incoming-webhook body");
    assert!(text.contains("nightly-export") && text.contains("failed"), "{text}");
    // The run shows the delivery.
    let runs = request(
        "GET",
        &format!("http://127.0.0.1:{port}/api/pipeline_runs?pipeline_uuid=nightly-export"),
        &[("authorization", "Bearer dev-key")],
        "",
    )
    .await;
    let n = &runs.json["pipeline_runs"][0]["notifications"][0];
    assert_eq!(
        (n["event"].as_str(), n["format"].as_str()),
        (Some("failed"), Some("slack")),
        "{:?}",
        runs.json
    );
}

#[tokio::test]
async fn the_flow_control_example_keys_by_customer_maps_the_payload_and_skips_the_rest() {
    let server = start().await;
    let out = run_readme_block(
        &readme_block("One run per customer at a time, and only the payloads you want"),
        server.port,
        &[],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() >= 5, "{out}");
    let mapped = r#"{"customer": "acme", "plan": "pro"}"#;
    assert_eq!(lines[0], format!("acme new_run {mapped}"), "{out}");
    assert!(
        lines[1] == format!("acme queued {mapped}") || lines[1] == format!("acme new_run {mapped}"),
        "the second acme waits, or runs if the first had finished: {out}"
    );
    assert_eq!(lines[2], r#"globex new_run {"customer": "globex", "plan": "pro"}"#, "{out}");
    let skipped: Value = serde_json::from_str(lines[3]).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(skipped["pipeline_run"], Value::Null, "{out}");
    assert_eq!(skipped["skipped"], "no rule matched", "{out}");
    let test: Value = serde_json::from_str(lines[4]).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(test["rules_test"]["key"], "acme", "{out}");
    assert_eq!(test["rules_test"]["rule"], 0, "{out}");
}

#[tokio::test]
async fn the_debounce_example_merges_a_branchs_pushes_into_one_run_with_the_last_commit() {
    let server = start().await;
    let out = run_readme_block(
        &readme_block("Debounce a burst of pushes into one run per branch"),
        server.port,
        &[],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 6, "{out}");
    let answer = |i: usize| -> (String, String, String) {
        let f: Vec<&str> = lines[i].split(' ').collect();
        assert_eq!(f.len(), 3, "{out}");
        (f[0].to_string(), f[1].to_string(), f[2].to_string())
    };
    let (main_id, key, outcome) = answer(0);
    assert_eq!((key.as_str(), outcome.as_str()), ("refs/heads/main", "deferred"), "{out}");
    for i in [1, 2] {
        assert_eq!(answer(i), (main_id.clone(), key.clone(), "merged".to_string()), "{out}");
    }
    let (dev_id, key, outcome) = answer(3);
    assert_eq!((key.as_str(), outcome.as_str()), ("refs/heads/dev", "deferred"), "{out}");
    assert_ne!(dev_id, main_id, "{out}");
    let mut listed: Vec<&str> = lines[4..].to_vec();
    listed.sort();
    let mut expected = vec![
        format!(r#"{main_id} completed {{"branch": "main", "commit": "c3"}}"#),
        format!(r#"{dev_id} completed {{"branch": "dev", "commit": "d1"}}"#),
    ];
    expected.sort();
    assert_eq!(listed, expected, "{out}");
}
