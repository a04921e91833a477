//! The OpenAPI document (`kickoff::http::openapi`, shipped as `docs/openapi.json`, served at
//! `/openapi.json`) against the code: its operations are exactly the route table's; every route is
//! called through the embedded server and each answer — success and error — is validated against the
//! document's schema for its status (schemas are closed: a field the answer has and the document lacks,
//! or the reverse, fails), and each request body sent against the operation's request schema
//! (`tests/openapi_check.py`, JSON Schema 2020-12 with `jsonschema` from `.tools/venv`).

use std::sync::Arc;

use kickoff::http::routes::ROUTES;
use kickoff::worker::executor::Executors;
use kickoff::worker::{run_in_process, Worker};
use kickoff_tests::blocks::BlockServer;
use kickoff_tests::walk::{every_route, Target};
use kickoff_tests::{request, spawn_app, tool_venv, workspace_root};
use serde_json::{json, Value};

#[tokio::test]
async fn the_document_has_every_route_and_every_answer_matches_it() {
    let Some(venv) = tool_venv("venv", "the_document_has_every_route_and_every_answer_matches_it") else {
        return;
    };
    let server = spawn_app().await;
    let worker = Worker::new(server.app.clone(), Arc::new(Executors::new("whsec_test")), &server.base);
    tokio::spawn(run_in_process(Arc::new(worker), server.queue.clone()));
    let blocks = BlockServer::start().await;

    // The document served is the document shipped, and its operations are the route table's.
    let served = request("GET", &server.url("/openapi.json"), &[], "").await;
    assert_eq!(served.status, 200);
    let shipped: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("docs/openapi.json")).expect("docs/openapi.json"),
    )
    .expect("docs/openapi.json is JSON");
    assert_eq!(
        served.json, shipped,
        "docs/openapi.json is not the served document: `cargo run -p kickoff-local --bin kickoff -- openapi > docs/openapi.json`"
    );
    let mut documented: Vec<(String, String, String)> = Vec::new();
    for (path, item) in shipped["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            if method == "parameters" {
                continue;
            }
            let id = op["operationId"].as_str().expect("operationId").to_string();
            documented.push((method.to_uppercase(), path.clone(), id));
        }
    }
    let mut routes: Vec<(String, String, String)> =
        ROUTES.iter().map(|r| (r.method.to_string(), r.path.to_string(), r.function.to_string())).collect();
    documented.sort();
    routes.sort();
    assert_eq!(documented, routes, "the document's operations are not the route table's");

    let target = Target {
        base: server.base.clone(),
        write_key: server.write_key.clone(),
        read_key: server.read_key.clone(),
    };
    let c = every_route(&target, &blocks).await;
    let write = server.auth();
    let w = [("authorization", write.as_str())];

    // A method a path does not take: 405 with the methods it does take (RFC 9110), in the dialect's shape.
    let a = request("PATCH", &server.url("/api/pipeline_schedules/1"), &w, "").await;
    assert_eq!(a.status, 405);
    assert_eq!(a.headers.get("allow").and_then(|v| v.to_str().ok()), Some("GET, PUT, DELETE"));
    assert_eq!(a.json["error"]["code"], 405);

    c.assert_every_route_succeeded();
    let dump: Vec<Value> = c
        .exchanges
        .iter()
        .map(|e| json!({"method": e.method, "route": e.route, "status": e.status, "request": e.request, "answer": e.answer}))
        .collect();
    let file = workspace_root().join("target").join("openapi-exchanges.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&dump).expect("dump")).expect("write exchanges");
    let out = std::process::Command::new(venv.join("bin/python"))
        .arg(workspace_root().join("tests/openapi_check.py"))
        .arg(workspace_root().join("docs/openapi.json"))
        .arg(&file)
        .output()
        .expect("python");
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{printed}");
    assert!(printed.contains(&format!("{} answers valid", c.exchanges.len())), "{printed}");
}
