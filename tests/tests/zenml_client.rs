//! The stock ZenML client (zenml 0.98.0 from PyPI, in `.tools/zenml-venv`, unpatched) runs the README's
//! "The stock ZenML client" script, as written, against kickoff-local (the embedded server, its worker
//! in the process) and against the function binaries on the local stack (the worker fed as AWS's event
//! source mapping feeds it): it logs in with an API key, reads the server, user, project and stack,
//! finds the demo pipeline's snapshot, triggers it with the seed's run configuration and waits for it,
//! triggers the pipeline's newest snapshot by the pipeline's name and as a (deprecated) run template,
//! reads and lists the runs, and replays the run. What the client printed is then checked against the
//! server's own answers: the run completed with `model_type` `rf`, and the replay reused every block.

use kickoff_tests::{deploy, readme_code, request, stack, start_kickoff_local, tool_venv, workspace_root};
use serde_json::Value;

/// Runs the README's script with the client pointed at `base` with `key`; checks what it did there.
async fn the_readme_script_runs_against(base: &str, key: &str, venv: &std::path::Path) {
    let script = readme_code("The stock ZenML client", "python");
    let dir = std::env::temp_dir().join(format!("kickoff-zenml-client-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("trigger.py"), &script).expect("write the script");
    let out = tokio::process::Command::new(venv.join("bin/python"))
        .arg("trigger.py")
        .current_dir(&dir)
        .env("ZENML_STORE_URL", base)
        .env("ZENML_STORE_API_KEY", key)
        // The client's own configuration, in the test's directory, not the user's home.
        .env("ZENML_CONFIG_PATH", dir.join("zenml-config"))
        .env("ZENML_ANALYTICS_OPT_IN", "false")
        .env("AUTO_OPEN_DASHBOARD", "false")
        .output()
        .await
        .expect("run python");
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "the script failed:\n{said}\n{err}");
    let line = |prefix: &str| -> Vec<String> {
        said.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{said}\n{err}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let run = line("run ");
    assert_eq!(run[1], "completed", "{said}");
    let replay = line("replay ");
    assert_eq!(
        (replay[1].as_str(), replay[2].as_str(), replay[3].as_str()),
        ("completed", "of", run[0].as_str())
    );
    let listed: u64 = line("runs of training: ")[0].parse().expect("a count");
    let by_name = line("by name ");
    let by_template = line("by template ");

    // The server's own view of what the client did.
    let auth = format!("Bearer {key}");
    let h = [("authorization", auth.as_str())];
    let a = request("GET", &format!("{base}/api/v1/runs/{}", run[0]), &h, "").await;
    assert_eq!(a.status, 200, "{:?}", a.json);
    let steps = &a.json["metadata"]["steps"];
    assert_eq!(steps["model_trainer"]["parameters"]["model_type"], "rf", "{}", a.json);
    assert_eq!(a.json["metadata"]["config"]["steps"]["model_trainer"]["parameters"]["model_type"], "rf");
    let a = request("GET", &format!("{base}/api/v1/runs/{}", replay[0]), &h, "").await;
    assert_eq!(a.json["body"]["original_run_id"], run[0].as_str(), "{}", a.json);
    let steps = a.json["metadata"]["steps"].as_object().expect("steps");
    assert_eq!(steps.len(), 3, "{}", a.json);
    for (name, step) in steps {
        // Reused: completed without an attempt of its own.
        assert_eq!(
            (step["status"].as_str(), step["attempts"].as_u64()),
            (Some("completed"), Some(0)),
            "{name}"
        );
    }
    assert_eq!(
        steps["model_trainer"]["parameters"]["model_type"], "rf",
        "the replay keeps the original's inputs"
    );
    let pipeline = a.json["body"]["pipeline_id"].as_str().expect("pipeline id").to_string();
    let a = request("GET", &format!("{base}/api/v1/runs/{}", by_name[0]), &h, "").await;
    assert_eq!(a.json["body"]["pipeline_id"], pipeline.as_str(), "the pipeline named: {}", a.json);
    let a = request("GET", &format!("{base}/api/v1/runs/{}", by_template[0]), &h, "").await;
    assert_eq!(a.json["body"]["pipeline_id"], pipeline.as_str(), "the template's pipeline: {}", a.json);
    // The list the client read held the run (and the others of the pipeline at that moment).
    let a = request("GET", &format!("{base}/api/v1/runs?pipeline_id={pipeline}&size=100"), &h, "").await;
    let items: Vec<&Value> = a.json["items"].as_array().expect("items").iter().collect();
    assert!(items.iter().any(|r| r["id"] == run[0].as_str()), "{}", a.json);
    assert_eq!(a.json["total"].as_u64(), Some(listed + 1), "the list then, and the replay since: {}", a.json);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_stock_zenml_client_triggers_follows_and_replays_on_kickoff_local() {
    let Some(venv) =
        tool_venv("zenml-venv", "the_stock_zenml_client_triggers_follows_and_replays_on_kickoff_local")
    else {
        return;
    };
    let server = start_kickoff_local(&[]).await;
    the_readme_script_runs_against(&server.base, "dev-key", &venv).await;
}

#[tokio::test]
async fn the_stock_zenml_client_triggers_follows_and_replays_on_the_local_stack() {
    let test = "the_stock_zenml_client_triggers_follows_and_replays_on_the_local_stack";
    let (Some(venv), Some(stack)) = (tool_venv("zenml-venv", test), stack(test)) else { return };
    let d = deploy(&stack, "zenml-client").await;
    let _feed = d.feed.in_background();
    the_readme_script_runs_against(&d.base, &d.write_key, &venv).await;
    // The functions' logs (cargo lambda watch prints them) name the key that logged in, never the key.
    let port = d.base.rsplit(':').next().expect("a port");
    let log = workspace_root().join("target").join(format!("cargo-lambda-watch-zenml-client-{port}.log"));
    let logged = std::fs::read_to_string(&log).expect("the functions' log");
    assert!(logged.contains(r#""message":"login""#), "the login is logged: {}", log.display());
    assert!(!logged.contains(&d.write_key), "the API key is in the functions' log: {}", log.display());
}
