//! Real-client fidelity: every ZenML-dialect answer of the seed flow validates against ZenML 0.98.0's
//! own response models (`zenml.models`, run by `tests/zenml_models.py` in `.tools/zenml-venv`) — pages
//! and single objects, hydrated and not, a triggered run, a finished run and a stopped one; the connect
//! routes the stock client reads (token, server, user, project, stack), snapshots, a snapshot's run
//! and a replay.

use kickoff::queue::RunQueue;
use kickoff_tests::{request, spawn_app, tool_venv, workspace_root, Server};
use serde_json::{json, Value};

async fn get(s: &Server, path: &str) -> Value {
    let a = request("GET", &s.url(path), &[("authorization", &s.auth())], "").await;
    assert_eq!(a.status, 200, "{path}: {:?}", a.json);
    a.json
}

async fn post(s: &Server, path: &str, body: Value) -> Value {
    let a = request("POST", &s.url(path), &[("authorization", &s.auth())], body.to_string()).await;
    assert_eq!(a.status, 200, "{path}: {:?}", a.json);
    a.json
}

#[tokio::test]
async fn every_zenml_answer_validates_against_zenml_models() {
    let Some(venv) = tool_venv("zenml-venv", "every_zenml_answer_validates_against_zenml_models") else {
        return;
    };
    let python = venv.join("bin/python");
    let s = spawn_app().await;
    let mut answers = Vec::new();
    let mut add = |what: &str, model: &str, body: Value| {
        answers.push(json!({ "what": what, "model": model, "body": body }));
    };

    for hydrate in [false, true] {
        let page = get(&s, &format!("/api/v1/pipelines?name=training&hydrate={hydrate}")).await;
        let pipeline_id = page["items"][0]["id"].as_str().expect("a pipeline").to_string();
        add(&format!("pipelines page, hydrate={hydrate}"), "Page[PipelineResponse]", page);
        let one = get(&s, &format!("/api/v1/pipelines/{pipeline_id}?hydrate={hydrate}")).await;
        add(&format!("pipeline, hydrate={hydrate}"), "PipelineResponse", one);
        let page =
            get(&s, &format!("/api/v1/pipeline_builds?pipeline_id={pipeline_id}&hydrate={hydrate}")).await;
        let build_id = page["items"][0]["id"].as_str().expect("a build").to_string();
        add(&format!("builds page, hydrate={hydrate}"), "Page[PipelineBuildResponse]", page);
        let one = get(&s, &format!("/api/v1/pipeline_builds/{build_id}?hydrate={hydrate}")).await;
        add(&format!("build, hydrate={hydrate}"), "PipelineBuildResponse", one);
    }

    // A triggered run (the seed's run configuration), then the same run finished, and a stopped one.
    let page = get(&s, "/api/v1/pipeline_builds").await;
    let build_id = page["items"][0]["id"].as_str().expect("a build").to_string();
    let config = json!({"steps": {"model_trainer": {"parameters": {"model_type": "rf"}}}});
    let run = post(&s, &format!("/api/v1/pipeline_builds/{build_id}/runs"), config.clone()).await;
    let run_id = run["id"].as_str().expect("run id").to_string();
    add("a triggered run", "PipelineRunResponse", run);
    let worker = kickoff::worker::Worker::for_api(s.app.clone());
    loop {
        let batch = s.queue.receive(10, std::time::Duration::from_millis(50)).await.expect("receive");
        if batch.is_empty() {
            break;
        }
        for received in batch {
            worker.handle(&received.message).await.expect("the demo's noop blocks need no executor");
            s.queue.delete(&received.receipt).await.expect("delete");
        }
    }
    for hydrate in [false, true] {
        let one = get(&s, &format!("/api/v1/runs/{run_id}?hydrate={hydrate}")).await;
        assert_eq!(one["body"]["status"], "completed", "{one}");
        add(&format!("a finished run, hydrate={hydrate}"), "PipelineRunResponse", one);
        let page = get(&s, &format!("/api/v1/runs?hydrate={hydrate}")).await;
        add(&format!("runs page, hydrate={hydrate}"), "Page[PipelineRunResponse]", page);
    }
    // What the stock client reads to connect, and the snapshot flow.
    let form = "grant_type=zenml-api-key&password=".to_string() + s.write_key.as_str();
    let a = request(
        "POST",
        &s.url("/api/v1/login"),
        &[("content-type", "application/x-www-form-urlencoded")],
        form,
    )
    .await;
    assert_eq!(a.status, 200, "{:?}", a.json);
    add("login", "OAuthTokenResponse", a.json);
    let a = request("GET", &s.url("/api/v1/info"), &[], "").await;
    add("info", "ServerModel", a.json);
    for hydrate in [false, true] {
        add(
            "current user",
            "UserResponse",
            get(&s, &format!("/api/v1/current-user?hydrate={hydrate}")).await,
        );
        add(
            "projects",
            "Page[ProjectResponse]",
            get(&s, &format!("/api/v1/projects?hydrate={hydrate}")).await,
        );
        add(
            "project",
            "ProjectResponse",
            get(&s, &format!("/api/v1/projects/default?hydrate={hydrate}")).await,
        );
        add(
            "stacks",
            "Page[StackResponse]",
            get(&s, &format!("/api/v1/stacks?name=default&hydrate={hydrate}")).await,
        );
        add("stack", "StackResponse", get(&s, &format!("/api/v1/stacks/default?hydrate={hydrate}")).await);
        let page = get(&s, &format!("/api/v1/pipeline_snapshots?pipeline=training&hydrate={hydrate}")).await;
        add(&format!("snapshots, hydrate={hydrate}"), "Page[PipelineSnapshotResponse]", page);
        let one = get(&s, &format!("/api/v1/pipeline_snapshots/{build_id}?hydrate={hydrate}")).await;
        add(&format!("snapshot, hydrate={hydrate}"), "PipelineSnapshotResponse", one);
    }
    let body = json!({"run_configuration": config.clone(), "step_run": null});
    let snap_run = post(&s, &format!("/api/v1/pipeline_snapshots/{build_id}/runs"), body).await;
    add("a snapshot's run", "PipelineRunResponse", snap_run);
    let replayed =
        post(&s, &format!("/api/v1/runs/{run_id}/replay"), json!({"skip_successful_steps": true})).await;
    let replay_id = replayed["id"].as_str().expect("replay id").to_string();
    add("a replay", "PipelineRunResponse", replayed);
    let one = get(&s, &format!("/api/v1/runs/{replay_id}")).await;
    assert_eq!(one["resources"]["original_run"]["id"], run_id.as_str(), "{one}");
    add("a replay, read", "PipelineRunResponse", one);

    let other = post(&s, &format!("/api/v1/pipeline_builds/{build_id}/runs"), config).await;
    let stopped =
        post(&s, &format!("/api/v1/runs/{}/stop", other["id"].as_str().expect("id")), json!({})).await;
    add("a stopped run", "PipelineRunResponse", stopped);

    let file = std::env::temp_dir().join(format!("kickoff-zenml-answers-{}.json", std::process::id()));
    std::fs::write(&file, serde_json::to_vec(&answers).expect("json")).expect("write answers");
    let out = std::process::Command::new(&python)
        .arg(workspace_root().join("tests/zenml_models.py"))
        .arg(&file)
        .output()
        .expect("run the validator");
    let _ = std::fs::remove_file(&file);
    let said = String::from_utf8_lossy(&out.stdout);
    println!("{said}");
    assert!(out.status.success(), "{said}{}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains(&format!("validated {} answers", answers.len())), "{said}");
}
