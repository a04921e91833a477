//! The README's webhook, CI-wait and Slack examples, as written, against the embedded server
//! (`kickoff-local` with the dev key and token, as the README starts it; only the port differs).

use kickoff_tests::blocks::BlockServer;
use kickoff_tests::{free_port, readme_block, request, run_readme_block, workspace_binary, ChildGroup};
use serde_json::Value;

async fn start() -> (u16, ChildGroup) {
    let port = free_port();
    let mut cmd = std::process::Command::new(workspace_binary("kickoff-local"));
    cmd.args(["--port", &port.to_string()])
        .env("KICKOFF_DEV_API_KEY", "dev-key")
        .env("KICKOFF_DEV_SCHEDULE_TOKEN", "4506463a01944ef492f70005996dac1a")
        .env("KICKOFF_WEBHOOK_SECRET", kickoff_tests::worker::SECRET)
        .env_remove("KICKOFF_TABLE")
        .env_remove("KICKOFF_QUEUE_URL");
    let server = ChildGroup::spawn(cmd, &std::env::temp_dir().join(format!("kickoff-readme-{port}.log")));
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    (port, server)
}

#[tokio::test]
async fn the_github_webhook_example_starts_a_run() {
    let (port, _server) = start().await;
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
    let (port, _server) = start().await;
    let out = run_readme_block(&readme_block("Trigger from CI and wait for the result"), port, &[]);
    assert!(out.trim_end().ends_with("completed"), "{out}");
}

#[tokio::test]
async fn the_slack_example_posts_a_slack_message_when_the_run_fails() {
    let (port, _server) = start().await;
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
