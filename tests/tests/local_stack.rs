//! The local stack as a user runs it: `bash infra/scripts/local-stack.sh` starts DynamoDB Local, moto and
//! every function under `cargo lambda watch`; the README's ZenML and Mage worked examples (the seeds'
//! curls) run against it as written, on its port; the runs they trigger finish (the feed delivers the
//! queue to the worker as SQS events), an `@once` schedule fires (the feed's tick invokes the scheduler);
//! Ctrl-C stops every part of it.

use std::io::Read;
use std::time::{Duration, Instant};

use kickoff_tests::{free_port, readme_block, request, run_readme_block, stack, workspace_root, ChildGroup};
use serde_json::Value;

fn is_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[tokio::test]
async fn the_local_stack_serves_the_seeds_examples_and_stops_on_ctrl_c() {
    // The script starts emulators of its own; the stack gate says the tools are installed.
    let Some(_tools) = stack("the_local_stack_serves_the_seeds_examples_and_stops_on_ctrl_c") else { return };
    let (port, ddb, sqs) = (free_port(), free_port(), free_port());
    let log = workspace_root().join("target").join(format!("local-stack-test-{port}.log"));
    // As a terminal runs it: SIGINT at its default (a test runner may start us with it ignored).
    let mut cmd = std::process::Command::new("python3");
    cmd.current_dir(workspace_root())
        .args([
            "-c",
            "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp('bash', ['bash', sys.argv[1]])",
            "infra/scripts/local-stack.sh",
        ])
        .env("KICKOFF_PORT", port.to_string())
        .env("KICKOFF_DYNAMODB_PORT", ddb.to_string())
        .env("KICKOFF_SQS_PORT", sqs.to_string())
        .env("KICKOFF_TICK_INTERVAL_S", "2")
        .env_remove("KICKOFF_TABLE")
        .env_remove("KICKOFF_QUEUE_URL")
        .env_remove("KICKOFF_DEV_API_KEY")
        .env_remove("KICKOFF_DEV_SCHEDULE_TOKEN");
    let mut script = ChildGroup::spawn(cmd, &log);
    let started = Instant::now();
    let printed = loop {
        let printed = std::fs::read_to_string(&log).unwrap_or_default();
        if printed.contains("Ctrl-C stops it.") {
            break printed;
        }
        assert!(!printed.contains("error:"), "{printed}");
        assert!(started.elapsed() < Duration::from_secs(600), "the local stack did not start:\n{printed}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(printed.contains(&format!("API:    http://localhost:{port}")), "{printed}");
    assert!(printed.contains("API key (write): dev-key"), "{printed}");
    assert!(printed.contains("demo pipeline schedule 71"), "{printed}");

    // The seeds' worked examples, as the README gives them.
    let zenml = run_readme_block(&readme_block("The ZenML worked example"), port, &[]);
    // Three answers, one after the other: the pipelines page, the builds page, the triggered run.
    let answers: Vec<Value> = serde_json::Deserializer::from_str(&zenml)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{e}: {zenml}"));
    assert_eq!(answers.len(), 3, "{zenml}");
    let triggered = &answers[2];
    assert_eq!(triggered["body"]["status"], "initializing", "{zenml}");
    let mage = run_readme_block(&readme_block("The Mage worked example"), port, &[]);
    assert!(mage.contains(r#""event_variables":{"env":"dev","test":1}"#), "{mage}");
    assert!(mage.contains(r#""pipeline_runs":["#), "{mage}");

    let base = format!("http://127.0.0.1:{port}");
    let auth = [("authorization", "Bearer dev-key")];
    // An @once time schedule: the next tick fires it.
    let a = request(
        "POST",
        &format!("{base}/api/pipelines/training/pipeline_schedules"),
        &auth,
        r#"{"pipeline_schedule": {"name": "once", "schedule_type": "time", "schedule_interval": "@once", "status": "active"}}"#,
    )
    .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.raw));
    let once = a.json["pipeline_schedule"]["id"].as_i64().expect("schedule id");

    // Every run finishes: the two triggers' and the fired one, through the worker function.
    let runs = loop {
        let a = request("GET", &format!("{base}/api/pipeline_runs?_limit=50"), &auth, "").await;
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.raw));
        let runs = a.json["pipeline_runs"].as_array().cloned().unwrap_or_default();
        let fired = runs.iter().any(|r| r["pipeline_schedule_id"] == once);
        if runs.len() >= 3 && fired && runs.iter().all(|r| r["status"] == "completed") {
            break runs;
        }
        assert!(started.elapsed() < Duration::from_secs(900), "runs did not finish: {runs:#?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(runs.len(), 3, "{runs:#?}");
    let feed =
        std::fs::read_to_string(workspace_root().join("target/local-stack/feed.log")).unwrap_or_default();
    assert!(feed.contains("worker: ") && feed.contains(r#""fire":{"due":1,"runs":1"#), "{feed}");

    // Ctrl-C: SIGINT to its process group, as a terminal sends it; every part stops.
    let group = format!("-{}", script.id());
    let sent = std::process::Command::new("kill").args(["-INT", "--", &group]).status().expect("kill");
    assert!(sent.success());
    let stopped = Instant::now();
    while script.try_wait().is_none() {
        assert!(stopped.elapsed() < Duration::from_secs(30), "the script did not stop on Ctrl-C");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut printed = String::new();
    std::fs::File::open(&log).and_then(|mut f| f.read_to_string(&mut printed)).expect("log");
    assert!(printed.contains("local stack stopped"), "{printed}");
    for p in [port, ddb, sqs] {
        assert!(!is_open(p), "port {p} is still served after Ctrl-C");
    }
}
