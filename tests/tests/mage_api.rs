//! The Mage dialect through the embedded server's real HTTP surface (in-memory store and queue): the
//! seed's worked examples, schedules, triggers, run history paging, idempotency, both dialects seeing one
//! run, and the bad input of issue #3.

use kickoff::demo::SCHEDULE_ID;
use kickoff_tests::{request, spawn_app, Answer, Server};
use serde_json::{json, Value};

/// Every field of a block run in the run object of `seeds/mage-pipeline-runs-api.txt` (SPEC §3).
const SEED_BLOCK_RUN_FIELDS: &[&str] = &[
    "block_uuid",
    "completed_at",
    "created_at",
    "id",
    "metrics",
    "pipeline_run_id",
    "started_at",
    "status",
    "updated_at",
];

/// Every field of the run object in `seeds/mage-pipeline-runs-api.txt` (SPEC §3).
const SEED_RUN_FIELDS: &[&str] = &[
    "backfill_id",
    "block_runs",
    "block_runs_count",
    "completed_at",
    "created_at",
    "event_variables",
    "execution_date",
    "id",
    "metrics",
    "passed_sla",
    "pipeline_schedule_id",
    "pipeline_schedule_name",
    "pipeline_schedule_token",
    "pipeline_schedule_type",
    "pipeline_uuid",
    "status",
    "updated_at",
    "variables",
];

async fn call(s: &Server, method: &str, path: &str, body: &str) -> Answer {
    request(method, &s.url(path), &[("authorization", &s.auth())], body.to_string()).await
}

async fn token(s: &Server, id: i64) -> String {
    s.app.store.get_schedule(id).await.unwrap().unwrap().value.token
}

async fn new_api_schedule(s: &Server, status: &str) -> (i64, String) {
    let a = call(
        s,
        "POST",
        "/api/pipelines/training/pipeline_schedules",
        &json!({"pipeline_schedule": {"name": "hook", "schedule_type": "api", "status": status}}).to_string(),
    )
    .await;
    assert_eq!(a.status, 200, "{:?}", a.json);
    let sch = &a.json["pipeline_schedule"];
    (sch["id"].as_i64().unwrap(), sch["token"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn the_seed_trigger_and_list_examples_work_word_for_word() {
    let s = spawn_app().await;
    let token = token(&s, SCHEDULE_ID).await;
    // curl --request POST --url '<host>/api/pipeline_schedules/71/pipeline_runs/<token>' --data '{…}'
    // (curl's --data sends a form content type; the body is JSON all the same.)
    let a = request(
        "POST",
        &s.url(&format!("/api/pipeline_schedules/71/pipeline_runs/{token}")),
        &[("content-type", "application/x-www-form-urlencoded")],
        "{\n\"env\": \"dev\",\n\"test\": 1\n}",
    )
    .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.raw));
    let run = &a.json["pipeline_run"];
    assert_eq!(run["status"], "initial");
    assert_eq!(run["pipeline_schedule_id"], 71);
    assert_eq!(run["pipeline_uuid"], "training");
    assert_eq!(run["event_variables"], json!({"env": "dev", "test": 1}));
    assert_eq!(run["variables"], json!({}));
    assert_eq!(run["passed_sla"], false);
    assert!(run["completed_at"].is_null() && run["metrics"].is_null() && run["backfill_id"].is_null());
    let created = run["created_at"].as_str().unwrap();
    assert!(
        created.ends_with("+00:00") && created.len() == "2023-04-01 00:36:23.507282+00:00".len(),
        "{created}"
    );
    assert_eq!(s.queue.len().await, 1, "the run is queued");

    // curl --request GET --url '<host>/api/pipeline_schedules/71/pipeline_runs?api_key=<key>'
    //      --header 'Authorization: Bearer <oauth token>'
    let a = request(
        "GET",
        &s.url(&format!("/api/pipeline_schedules/71/pipeline_runs?api_key={}", s.read_key)),
        &[("authorization", "Bearer ZKXScwLKLZUujbw7vwMeWnhtTTSLqifw8_RnBHYipww")],
        "",
    )
    .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.raw));
    assert_eq!(a.json["metadata"], json!({"count": 1, "next": false}));
    let item = &a.json["pipeline_runs"][0];
    assert_has_keys("the run object of the seed", item, SEED_RUN_FIELDS);
    assert_eq!(item["block_runs_count"], 3);
    assert_eq!(item["pipeline_schedule_type"], "api");
    // The field is there as in the seed; a read key sees no token (it would let it trigger runs).
    assert!(item["pipeline_schedule_token"].is_null(), "{item}");
    let block = &item["block_runs"][0];
    assert_has_keys("the block run object of the seed", block, SEED_BLOCK_RUN_FIELDS);
    assert_eq!(block["pipeline_run_id"], item["id"]);
    // X-API-KEY works as well.
    let a =
        request("GET", &s.url("/api/pipeline_schedules/71/pipeline_runs"), &[("x-api-key", &s.read_key)], "")
            .await;
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn twenty_two_triggers_page_with_exact_count_and_next() {
    let s = spawn_app().await;
    let token = token(&s, SCHEDULE_ID).await;
    for i in 0..22 {
        let a = request(
            "POST",
            &s.url(&format!("/api/pipeline_schedules/71/pipeline_runs/{token}")),
            &[],
            json!({"n": i}).to_string(),
        )
        .await;
        assert_eq!(a.status, 200);
    }
    let mut seen = Vec::new();
    for limit in [1usize, 5, 10, 21, 22, 40] {
        for offset in 0..=23usize {
            let a = call(
                &s,
                "GET",
                &format!("/api/pipeline_schedules/71/pipeline_runs?_limit={limit}&_offset={offset}"),
                "",
            )
            .await;
            assert_eq!(a.status, 200);
            let items = a.json["pipeline_runs"].as_array().unwrap();
            assert_eq!(a.json["metadata"]["count"], 22, "limit {limit} offset {offset}");
            assert_eq!(
                items.len(),
                limit.min(22usize.saturating_sub(offset)),
                "limit {limit} offset {offset}"
            );
            assert_eq!(a.json["metadata"]["next"], offset + limit < 22, "limit {limit} offset {offset}");
            if limit == 40 && offset == 0 {
                seen = items
                    .iter()
                    .map(|r| (r["execution_date"].as_str().unwrap().to_string(), r["id"].as_i64().unwrap()))
                    .collect();
            }
        }
    }
    let a = call(&s, "GET", "/api/pipeline_schedules/71/pipeline_runs", "").await;
    assert_eq!(
        a.json["pipeline_runs"].as_array().unwrap().len(),
        22,
        "the default limit (40) holds them all"
    );
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted, "execution_date desc, then id desc");

    // Deep pages by cursor: `next_cursor` of each page is the next one's `_cursor`; every run once, in order.
    for limit in [1usize, 5, 21] {
        let mut walked = Vec::new();
        let mut path = format!("/api/pipeline_schedules/71/pipeline_runs?_limit={limit}");
        loop {
            let a = call(&s, "GET", &path, "").await;
            assert_eq!(a.status, 200, "{path}: {}", a.json);
            assert_eq!(a.json["metadata"]["count"], 22);
            for r in a.json["pipeline_runs"].as_array().unwrap() {
                walked.push((r["execution_date"].as_str().unwrap().to_string(), r["id"].as_i64().unwrap()));
            }
            match a.json["metadata"]["next_cursor"].as_str() {
                Some(c) => {
                    path = format!("/api/pipeline_schedules/71/pipeline_runs?_limit={limit}&_cursor={c}")
                }
                None => break,
            }
        }
        assert_eq!(walked, seen, "cursor pages of {limit}");
    }
    let last = call(&s, "GET", "/api/pipeline_schedules/71/pipeline_runs?_limit=40", "").await;
    assert!(last.json["metadata"].get("next_cursor").is_none(), "the last page has no next cursor");
    for bad in [
        "_cursor=xyz",
        "_cursor=MjAyNA&_limit=2",
        "_cursor=MjAyNDAxMDFUMDAwMDAwMDAwMDAwIzAwMDAwMDAwMDAwMDAwMDE&_offset=3",
    ] {
        let a = call(&s, "GET", &format!("/api/pipeline_schedules/71/pipeline_runs?{bad}"), "").await;
        assert_eq!(a.status, 422, "{bad}: {}", a.json);
        assert!(a.json["error"]["message"].as_str().unwrap().starts_with("_cursor: "), "{}", a.json);
    }
}

#[tokio::test]
async fn schedules_are_created_read_updated_rotated_and_deleted() {
    let s = spawn_app().await;
    let a = call(
        &s,
        "POST",
        "/api/pipelines/training/pipeline_schedules",
        r#"{"pipeline_schedule": {"name": "nightly", "schedule_interval": "0 2 * * *", "timezone": "Europe/Berlin", "variables": {"env": "prod"}, "sla": 3600, "settings": {"skip_if_previous_running": true}}}"#,
    )
    .await;
    assert_eq!(a.status, 200, "{:?}", a.json);
    let sch = a.json["pipeline_schedule"].clone();
    assert_eq!(sch["schedule_type"], "time", "Mage's default type");
    assert_eq!(sch["status"], "inactive", "Mage's default status");
    assert_eq!(sch["timezone"], "Europe/Berlin");
    let tok = sch["token"].as_str().unwrap();
    assert!(tok.len() == 32 && tok.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    let id = sch["id"].as_i64().unwrap();
    assert!(id < (1i64 << 53));

    let a = call(&s, "GET", &format!("/api/pipeline_schedules/{id}"), "").await;
    assert_eq!(a.json["pipeline_schedule"]["name"], "nightly");
    let a = call(&s, "GET", "/api/pipeline_schedules?_limit=1", "").await;
    assert_eq!(a.json["metadata"], json!({"count": 2, "next": true}));
    let a = call(&s, "GET", "/api/pipelines/training/pipeline_schedules", "").await;
    assert_eq!(a.json["metadata"]["count"], 2);
    let a = call(&s, "GET", "/api/pipelines/nope/pipeline_schedules", "").await;
    assert_eq!(a.status, 404);

    let a = call(
        &s,
        "PUT",
        &format!("/api/pipeline_schedules/{id}"),
        r#"{"pipeline_schedule": {"status": "active", "rotate_token": true}}"#,
    )
    .await;
    assert_eq!(a.status, 200, "{:?}", a.json);
    let updated = &a.json["pipeline_schedule"];
    assert_eq!(updated["status"], "active");
    assert!(updated["last_enabled_at"].is_string());
    assert_ne!(updated["token"], sch["token"], "rotate_token issues a new token");

    let a = call(&s, "DELETE", &format!("/api/pipeline_schedules/{id}"), "").await;
    assert_eq!(a.status, 200);
    let a = call(&s, "GET", &format!("/api/pipeline_schedules/{id}"), "").await;
    assert_eq!(a.status, 404);
    assert_eq!(a.json["error"]["code"], 404);
    assert_eq!(a.json["error"]["type"], "record_not_found");
}

#[tokio::test]
async fn api_trigger_run_now_and_a_rotated_token() {
    let s = spawn_app().await;
    let (id, tok) = new_api_schedule(&s, "active").await;
    let a = request(
        "POST",
        &s.url(&format!("/api/pipeline_schedules/{id}/api_trigger")),
        &[("authorization", &format!("Bearer {tok}"))],
        r#"{"pipeline_run": {"variables": {"x": 1}, "execution_date": "2024-01-02T03:04:05Z"}, "ref": "main"}"#,
    )
    .await;
    assert_eq!(a.status, 200, "{:?}", a.json);
    assert_eq!(a.json["pipeline_run"]["variables"], json!({"x": 1}));
    assert_eq!(a.json["pipeline_run"]["event_variables"], json!({"ref": "main"}));
    assert_eq!(a.json["pipeline_run"]["execution_date"], "2024-01-02 03:04:05.000000+00:00");
    let a = request("POST", &s.url(&format!("/api/pipeline_schedules/{id}/api_trigger")), &[], "{}").await;
    assert_eq!(a.status, 401);

    // Rotating the token retires the old one.
    let a = call(
        &s,
        "PUT",
        &format!("/api/pipeline_schedules/{id}"),
        r#"{"pipeline_schedule": {"rotate_token": true}}"#,
    )
    .await;
    let new_tok = a.json["pipeline_schedule"]["token"].as_str().unwrap().to_string();
    let a =
        request("POST", &s.url(&format!("/api/pipeline_schedules/{id}/pipeline_runs/{tok}")), &[], "").await;
    assert_eq!(a.status, 401);
    let a =
        request("POST", &s.url(&format!("/api/pipeline_schedules/{id}/pipeline_runs/{new_tok}")), &[], "")
            .await;
    assert_eq!(a.status, 200);
    assert!(a.json["pipeline_run"]["event_variables"].is_null(), "an empty body leaves event_variables null");

    // Run now with an API key works on an inactive schedule too.
    let (inactive, _) = new_api_schedule(&s, "inactive").await;
    let a =
        call(&s, "POST", &format!("/api/pipeline_schedules/{inactive}/pipeline_runs"), r#"{"a": 1}"#).await;
    assert_eq!(a.status, 200, "{:?}", a.json);
    assert_eq!(a.json["pipeline_run"]["pipeline_schedule_id"], inactive);
}

#[tokio::test]
async fn one_run_is_visible_in_both_dialects_and_can_be_cancelled() {
    let s = spawn_app().await;
    let token = token(&s, SCHEDULE_ID).await;
    let a = request(
        "POST",
        &s.url(&format!("/api/pipeline_schedules/71/pipeline_runs/{token}")),
        &[],
        r#"{"k": "v"}"#,
    )
    .await;
    let mage_id = a.json["pipeline_run"]["id"].as_i64().unwrap();
    let uuid = a.json["pipeline_run"]["uuid"].as_str().unwrap().to_string();
    let z =
        request("GET", &s.url(&format!("/api/v1/runs/{uuid}")), &[("authorization", &s.auth())], "").await;
    assert_eq!(z.status, 200);
    assert_eq!(z.json["body"]["run_id"], mage_id);
    assert_eq!(z.json["metadata"]["event_variables"], json!({"k": "v"}));

    // A ZenML-triggered run on the Mage side.
    let build = s.app.store.list_builds().await.unwrap().remove(0).id;
    let z = request(
        "POST",
        &s.url(&format!("/api/v1/pipeline_builds/{build}/runs")),
        &[("authorization", &s.auth())],
        "{}",
    )
    .await;
    let run_id = z.json["body"]["run_id"].as_i64().unwrap();
    let a = call(&s, "GET", &format!("/api/pipeline_runs/{run_id}"), "").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json["pipeline_run"]["uuid"], z.json["id"]);
    assert!(a.json["pipeline_run"]["pipeline_schedule_id"].is_null());
    let a = call(&s, "GET", &format!("/api/pipeline_runs/{run_id}/block_runs"), "").await;
    assert_eq!(a.json["metadata"]["count"], 3);
    assert_eq!(a.json["block_runs"][1]["block_uuid"], "model_trainer");

    // Filters of the global list.
    let a = call(&s, "GET", "/api/pipeline_runs?pipeline_uuid=training", "").await;
    assert_eq!(a.json["metadata"]["count"], 2);
    let a = call(&s, "GET", "/api/pipeline_runs?pipeline_schedule_id=71", "").await;
    assert_eq!(a.json["metadata"]["count"], 1);

    // Cancel on the Mage side; ZenML shows it stopped.
    let a = call(
        &s,
        "PUT",
        &format!("/api/pipeline_runs/{mage_id}"),
        r#"{"pipeline_run": {"status": "cancelled"}}"#,
    )
    .await;
    assert_eq!(a.status, 200, "{:?}", a.json);
    assert_eq!(a.json["pipeline_run"]["status"], "cancelled");
    assert!(a.json["pipeline_run"]["block_runs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|b| b["status"] == "cancelled"));
    let z =
        request("GET", &s.url(&format!("/api/v1/runs/{uuid}")), &[("authorization", &s.auth())], "").await;
    assert_eq!(z.json["body"]["status"], "stopped");
    let a = call(&s, "GET", "/api/pipeline_runs?status=cancelled", "").await;
    assert_eq!(a.json["metadata"]["count"], 1);
    let a = call(
        &s,
        "PUT",
        &format!("/api/pipeline_runs/{mage_id}"),
        r#"{"pipeline_run": {"status": "cancelled"}}"#,
    )
    .await;
    assert_eq!(a.status, 409, "a finished run cannot be cancelled again");
}

#[tokio::test]
async fn idempotency_keys_make_one_run_on_both_dialects() {
    let s = spawn_app().await;
    let token = token(&s, SCHEDULE_ID).await;
    let url = s.url(&format!("/api/pipeline_schedules/71/pipeline_runs/{token}"));
    let first = request("POST", &url, &[("idempotency-key", "delivery-1")], r#"{"a": 1, "b": 2}"#).await;
    assert_eq!(first.status, 200);
    // Same body (other key order and spacing): the same run, nothing new.
    let again = request("POST", &url, &[("idempotency-key", "delivery-1")], r#"{ "b": 2, "a": 1 }"#).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json["pipeline_run"]["id"], first.json["pipeline_run"]["id"]);
    let other = request("POST", &url, &[("idempotency-key", "delivery-1")], r#"{"a": 9}"#).await;
    assert_eq!(other.status, 422);
    assert_eq!(s.app.store.list_runs().await.unwrap().len(), 1);
    assert_eq!(s.queue.len().await, 1, "a repeat is not queued again");
    let bad = request("POST", &url, &[("idempotency-key", &"k".repeat(256))], "{}").await;
    assert_eq!(bad.status, 400);

    // Many at once with one key: one run.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            request("POST", &url, &[("idempotency-key", "burst")], r#"{"x": 1}"#).await
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        let a = t.await.unwrap();
        assert_eq!(a.status, 200);
        ids.push(a.json["pipeline_run"]["id"].as_i64().unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(s.app.store.list_runs().await.unwrap().len(), 2);

    // The ZenML trigger honours the header too.
    let build = s.app.store.list_builds().await.unwrap().remove(0).id;
    let zurl = s.url(&format!("/api/v1/pipeline_builds/{build}/runs"));
    let h = [("authorization", s.auth()), ("idempotency-key", "z-1".to_string())];
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let z1 = request("POST", &zurl, &h, "{}").await;
    let z2 = request("POST", &zurl, &h, "{}").await;
    assert_eq!(z1.json["id"], z2.json["id"]);
    let z3 = request("POST", &zurl, &h, r#"{"run_name": "other"}"#).await;
    assert_eq!(z3.status, 422);
    assert_eq!(z3.json["detail"][0], "ValidationError");
}

/// Counts of everything a request could change.
async fn snapshot(s: &Server) -> (usize, usize, usize, Vec<String>) {
    let schedules = s.app.store.list_schedules().await.unwrap();
    (
        s.app.store.list_runs().await.unwrap().len(),
        schedules.len(),
        s.queue.len().await,
        schedules.iter().map(|x| format!("{}{}{:?}", x.token, x.name, x.status)).collect(),
    )
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_in_mage_shape_and_changes_nothing() {
    let s = spawn_app().await;
    let token = token(&s, SCHEDULE_ID).await;
    let (inactive, inactive_tok) = new_api_schedule(&s, "inactive").await;
    let a = call(
        &s,
        "POST",
        "/api/pipelines/training/pipeline_schedules",
        r#"{"pipeline_schedule": {"name": "t", "schedule_interval": "@daily", "status": "active"}}"#,
    )
    .await;
    let time_id = a.json["pipeline_schedule"]["id"].as_i64().unwrap();
    let time_tok = a.json["pipeline_schedule"]["token"].as_str().unwrap().to_string();
    let wrong = "0123456789abcdef0123456789abcdef";
    let big = format!("{{\"x\": \"{}\"}}", "y".repeat(300 * 1024));
    let write = s.auth();
    let read = s.read_auth();
    let trig = |id: i64, tok: &str| format!("/api/pipeline_schedules/{id}/pipeline_runs/{tok}");
    let cases: Vec<(&str, String, Vec<(&str, String)>, String, u16)> = vec![
        ("POST", trig(71, wrong), vec![], "{}".into(), 401),
        ("POST", trig(71, "short"), vec![], "{}".into(), 401),
        ("POST", "/api/pipeline_schedules/71/api_trigger".into(), vec![], "{}".into(), 401),
        ("POST", "/api/pipeline_schedules/71/api_trigger".into(), vec![("authorization", format!("Bearer {wrong}"))], "{}".into(), 401),
        ("POST", trig(999, &token), vec![], "{}".into(), 404),
        ("POST", trig(0, &token), vec![], "{}".into(), 404),
        ("POST", format!("/api/pipeline_schedules/abc/pipeline_runs/{token}"), vec![], "{}".into(), 404),
        ("POST", trig(inactive, &inactive_tok), vec![], "{}".into(), 409),
        ("POST", trig(time_id, &time_tok), vec![], "{}".into(), 422),
        ("POST", trig(71, &token), vec![], "not json".into(), 400),
        ("POST", trig(71, &token), vec![], "[1,2]".into(), 400),
        ("POST", trig(71, &token), vec![], "\"text\"".into(), 400),
        ("POST", trig(71, &token), vec![], big.clone(), 413),
        ("POST", trig(71, &token), vec![], r#"{"pipeline_run": 5}"#.into(), 422),
        ("POST", trig(71, &token), vec![], r#"{"pipeline_run": {"variables": []}}"#.into(), 422),
        ("POST", trig(71, &token), vec![], r#"{"pipeline_run": {"execution_date": "soon"}}"#.into(), 422),
        ("POST", trig(71, &token), vec![], r#"{"pipeline_run": {"colour": 1}}"#.into(), 422),
        ("GET", "/api/pipeline_schedules/71/pipeline_runs?_limit=0".into(), vec![("authorization", read.clone())], "".into(), 422),
        ("GET", "/api/pipeline_schedules/71/pipeline_runs?_limit=-1".into(), vec![("authorization", read.clone())], "".into(), 422),
        ("GET", "/api/pipeline_schedules/71/pipeline_runs?_limit=abc".into(), vec![("authorization", read.clone())], "".into(), 422),
        ("GET", "/api/pipeline_schedules/71/pipeline_runs?_offset=-3".into(), vec![("authorization", read.clone())], "".into(), 422),
        ("GET", "/api/pipeline_runs?status=done".into(), vec![("authorization", read.clone())], "".into(), 422),
        ("GET", "/api/pipeline_runs?pipeline_schedule_id=x".into(), vec![("authorization", read.clone())], "".into(), 422),
        ("GET", "/api/pipeline_schedules/71/pipeline_runs".into(), vec![], "".into(), 401),
        ("GET", "/api/pipeline_schedules/71/pipeline_runs?api_key=wrong".into(), vec![], "".into(), 401),
        ("GET", "/api/pipeline_schedules/999/pipeline_runs".into(), vec![("authorization", read.clone())], "".into(), 404),
        ("GET", "/api/pipeline_runs/12x".into(), vec![("authorization", read.clone())], "".into(), 404),
        ("GET", "/api/pipeline_runs/424242".into(), vec![("authorization", read.clone())], "".into(), 404),
        ("POST", "/api/pipelines/training/pipeline_schedules".into(), vec![("authorization", read.clone())], r#"{"pipeline_schedule": {"name": "x", "schedule_type": "api"}}"#.into(), 403),
        ("POST", "/api/pipeline_schedules/71/pipeline_runs".into(), vec![("authorization", read.clone())], "{}".into(), 403),
        ("PUT", "/api/pipeline_schedules/71".into(), vec![("x-api-key", s.read_key.clone())], r#"{"pipeline_schedule": {"rotate_token": true}}"#.into(), 403),
        ("DELETE", "/api/pipeline_schedules/71".into(), vec![("authorization", read.clone())], "".into(), 403),
        ("POST", "/api/pipelines/training/pipeline_schedules".into(), vec![("authorization", write.clone())], r#"{"name": "x"}"#.into(), 422),
        ("POST", "/api/pipelines/training/pipeline_schedules".into(), vec![("authorization", write.clone())], r#"{"pipeline_schedule": {"name": "x", "colour": 1}}"#.into(), 422),
        ("POST", "/api/pipelines/training/pipeline_schedules".into(), vec![("authorization", write.clone())], r#"{"pipeline_schedule": {"name": "x", "schedule_interval": "every day"}}"#.into(), 422),
        ("POST", "/api/pipelines/training/pipeline_schedules".into(), vec![("authorization", write.clone())], r#"{"pipeline_schedule": {"name": "x"}}"#.into(), 422),
        ("POST", "/api/pipelines/training/pipeline_schedules".into(), vec![("authorization", write.clone())], r#"{"pipeline_schedule": {"name": "x", "schedule_type": "api", "sla": "soon"}}"#.into(), 422),
        ("POST", "/api/pipelines/training/pipeline_schedules".into(), vec![("authorization", write.clone())], r#"{"pipeline_schedule": {"name": "x", "schedule_type": "api", "build_id": "00000000-0000-0000-0000-000000000000"}}"#.into(), 422),
        ("POST", "/api/pipelines/missing/pipeline_schedules".into(), vec![("authorization", write.clone())], r#"{"pipeline_schedule": {"name": "x", "schedule_type": "api"}}"#.into(), 404),
        ("PUT", "/api/pipeline_schedules/71".into(), vec![("authorization", write.clone())], r#"{"pipeline_schedule": {"status": "paused"}}"#.into(), 422),
        ("PUT", "/api/pipeline_runs/1".into(), vec![("authorization", write.clone())], r#"{"pipeline_run": {"status": "cancelled"}}"#.into(), 404),
        ("PATCH", "/api/pipeline_schedules/71".into(), vec![("authorization", write.clone())], "{}".into(), 405),
        ("GET", "/api/nothing".into(), vec![("authorization", write.clone())], "".into(), 404),
    ];
    let before = snapshot(&s).await;
    for (method, path, headers, body, status) in cases {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let a = request(method, &s.url(&path), &h, body).await;
        let shown = String::from_utf8_lossy(&a.raw).to_string();
        assert_eq!(a.status, status, "{method} {path}: {shown:.300}");
        assert_eq!(a.json["error"]["code"], status, "{method} {path}: Mage's error body: {shown:.300}");
        assert!(a.json["error"]["type"].is_string() && a.json["error"]["message"].is_string());
        for secret in [token.as_str(), inactive_tok.as_str(), time_tok.as_str(), wrong, s.read_key.as_str()] {
            assert!(!shown.contains(secret), "{method} {path} echoes a secret: {shown:.300}");
        }
        assert_eq!(snapshot(&s).await, before, "{method} {path} changed stored data");
    }
    // Past the end: an empty page, next false.
    let a = call(&s, "GET", "/api/pipeline_schedules/71/pipeline_runs?_offset=500", "").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json, json!({"pipeline_runs": [], "metadata": {"count": 0, "next": false}}));
    let _: Value = a.json;
}

#[tokio::test]
async fn a_schedule_runs_its_pinned_build_else_the_newest_build_of_the_newest_version() {
    let s = spawn_app().await;
    let v45_build = s.app.store.list_builds().await.unwrap().remove(0).id;
    // A newer version of the pipeline, with a second build.
    let a = request(
        "POST",
        &s.url("/api/v1/pipelines"),
        &[("authorization", &s.auth())],
        json!({"name": "training", "version": "46", "blocks": [{"name": "only", "executor": {"type": "noop"}}]})
            .to_string(),
    )
    .await;
    assert_eq!(a.status, 200);
    let v46 = a.json["id"].as_str().unwrap().to_string();
    let a = request(
        "POST",
        &s.url("/api/v1/pipeline_builds"),
        &[("authorization", &s.auth())],
        json!({"pipeline_id": v46, "checksum": "second"}).to_string(),
    )
    .await;
    let v46_newest = a.json["id"].as_str().unwrap().to_string();

    let token = token(&s, SCHEDULE_ID).await;
    let a = request("POST", &s.url(&format!("/api/pipeline_schedules/71/pipeline_runs/{token}")), &[], "{}")
        .await;
    let uuid = a.json["pipeline_run"]["uuid"].as_str().unwrap().to_string();
    assert_eq!(a.json["pipeline_run"]["block_runs_count"], 1, "the newest version's blocks");
    let z =
        request("GET", &s.url(&format!("/api/v1/runs/{uuid}")), &[("authorization", &s.auth())], "").await;
    assert_eq!(z.json["body"]["build_id"], v46_newest.as_str(), "the newest build of the newest version");

    let a = call(
        &s,
        "POST",
        "/api/pipelines/training/pipeline_schedules",
        &json!({"pipeline_schedule": {"name": "pinned", "schedule_type": "api", "status": "active", "build_id": v45_build}})
            .to_string(),
    )
    .await;
    assert_eq!(a.status, 200, "{:?}", a.json);
    let id = a.json["pipeline_schedule"]["id"].as_i64().unwrap();
    let tok = a.json["pipeline_schedule"]["token"].as_str().unwrap();
    let a = request("POST", &s.url(&format!("/api/pipeline_schedules/{id}/pipeline_runs/{tok}")), &[], "{}")
        .await;
    let uuid = a.json["pipeline_run"]["uuid"].as_str().unwrap().to_string();
    let z =
        request("GET", &s.url(&format!("/api/v1/runs/{uuid}")), &[("authorization", &s.auth())], "").await;
    assert_eq!(z.json["body"]["build_id"], json!(v45_build), "the pinned build");
    assert_eq!(a.json["pipeline_run"]["block_runs_count"], 3);
}

/// The keys an object must carry (besides any others).
fn assert_has_keys(what: &str, object: &Value, keys: &[&str]) {
    let missing: Vec<&&str> = keys.iter().filter(|k| object.get(**k).is_none()).collect();
    assert!(missing.is_empty(), "{what} lacks {missing:?}: {object}");
}

/// SPEC §3 field parity with Mage 0.9.80: every field of the seed's run object, Mage's extra schedule and
/// run fields, and `"metadata": null` beside a single object — on every answer that carries one.
#[tokio::test]
async fn answers_carry_every_field_mage_sends() {
    let run_fields: Vec<&str> = SEED_RUN_FIELDS
        .iter()
        .copied()
        .chain(["executor_type", "completed_block_runs_count", "pipeline_tags", "pipeline_type"])
        .collect();
    let run_fields = run_fields.as_slice();
    const SCHEDULE: &[&str] = &[
        "id",
        "name",
        "pipeline_uuid",
        "schedule_type",
        "schedule_interval",
        "start_time",
        "status",
        "variables",
        "sla",
        "settings",
        "token",
        "event_matchers",
        "global_data_product_uuid",
        "next_pipeline_run_date",
        "tags",
        "created_at",
        "updated_at",
    ];
    let s = spawn_app().await;
    let single = |a: &Answer, name: &str| {
        assert_eq!(a.status, 200, "{:?}", a.json);
        assert!(
            a.json.get("metadata").is_some_and(Value::is_null),
            "metadata: null beside {name}: {}",
            a.json
        );
        a.json[name].clone()
    };

    // Schedules: created, read, updated; listed.
    let created = call(
        &s,
        "POST",
        "/api/pipelines/training/pipeline_schedules",
        &json!({"pipeline_schedule": {"name": "fields", "schedule_type": "api", "status": "active"}})
            .to_string(),
    )
    .await;
    let schedule = single(&created, "pipeline_schedule");
    assert_has_keys("a created schedule", &schedule, SCHEDULE);
    assert_eq!((schedule["event_matchers"].clone(), schedule["tags"].clone()), (json!([]), json!([])));
    let id = schedule["id"].as_i64().unwrap();
    let got = call(&s, "GET", &format!("/api/pipeline_schedules/{id}"), "").await;
    assert_has_keys("a read schedule", &single(&got, "pipeline_schedule"), SCHEDULE);
    let put = call(
        &s,
        "PUT",
        &format!("/api/pipeline_schedules/{id}"),
        &json!({"pipeline_schedule": {"name": "renamed"}}).to_string(),
    )
    .await;
    assert_has_keys("an updated schedule", &single(&put, "pipeline_schedule"), SCHEDULE);
    let listed = call(&s, "GET", "/api/pipeline_schedules", "").await;
    for item in listed.json["pipeline_schedules"].as_array().unwrap() {
        assert_has_keys("a listed schedule", item, SCHEDULE);
    }

    // Runs: triggered, read, listed both ways, cancelled; their block runs.
    let token = schedule["token"].as_str().unwrap();
    let a =
        request("POST", &s.url(&format!("/api/pipeline_schedules/{id}/pipeline_runs/{token}")), &[], "{}")
            .await;
    let run = single(&a, "pipeline_run");
    assert_has_keys("a triggered run", &run, run_fields);
    assert_eq!(
        (run["executor_type"].clone(), run["pipeline_type"].clone()),
        (json!("local_python"), json!("python"))
    );
    assert_eq!(run["completed_block_runs_count"], 0);
    for b in run["block_runs"].as_array().unwrap() {
        assert_has_keys("a block run", b, SEED_BLOCK_RUN_FIELDS);
    }
    let run_id = run["id"].as_i64().unwrap();
    let got = call(&s, "GET", &format!("/api/pipeline_runs/{run_id}"), "").await;
    assert_has_keys("a read run", &single(&got, "pipeline_run"), run_fields);
    for path in [format!("/api/pipeline_schedules/{id}/pipeline_runs"), "/api/pipeline_runs".to_string()] {
        let listed = call(&s, "GET", &path, "").await;
        assert_eq!(listed.status, 200);
        for item in listed.json["pipeline_runs"].as_array().unwrap() {
            assert_has_keys(&format!("a run listed by {path}"), item, run_fields);
        }
    }
    let blocks = call(&s, "GET", &format!("/api/pipeline_runs/{run_id}/block_runs"), "").await;
    for b in blocks.json["block_runs"].as_array().unwrap() {
        assert_has_keys("a listed block run", b, SEED_BLOCK_RUN_FIELDS);
    }
    let cancelled = call(
        &s,
        "PUT",
        &format!("/api/pipeline_runs/{run_id}"),
        &json!({"pipeline_run": {"status": "cancelled"}}).to_string(),
    )
    .await;
    assert_has_keys("a cancelled run", &single(&cancelled, "pipeline_run"), run_fields);
}

#[tokio::test]
async fn a_read_key_sees_no_token_and_no_notification_secret_and_errors_echo_no_path() {
    let s = spawn_app().await;
    let hook = "https://hooks.slack.com/services/T000/B000/very-secret";
    let body = json!({"pipeline_schedule": {"name": "hook", "schedule_type": "api", "status": "active",
        "settings": {"notifications": [{"url": hook, "on": ["failed"], "format": "slack"}]}}});
    let created = call(&s, "POST", "/api/pipelines/training/pipeline_schedules", &body.to_string()).await;
    assert_eq!(created.status, 200, "{:?}", created.json);
    let id = created.json["pipeline_schedule"]["id"].as_i64().unwrap();
    let tok = created.json["pipeline_schedule"]["token"].as_str().unwrap().to_string();
    let run =
        request("POST", &s.url(&format!("/api/pipeline_schedules/{id}/pipeline_runs/{tok}")), &[], "").await;
    assert_eq!(run.status, 200, "{:?}", run.json);
    let on_token_route = String::from_utf8_lossy(&run.raw).to_string();
    assert!(
        !on_token_route.contains("very-secret"),
        "the token route shows no hook secret: {on_token_route}"
    );

    let read = s.read_auth();
    for path in [
        format!("/api/pipeline_schedules/{id}"),
        "/api/pipeline_schedules".to_string(),
        format!("/api/pipeline_schedules/{id}/pipeline_runs"),
        "/api/pipeline_runs".to_string(),
    ] {
        let a = request("GET", &s.url(&path), &[("authorization", &read)], "").await;
        assert_eq!(a.status, 200, "{path}: {:?}", a.json);
        let text = String::from_utf8_lossy(&a.raw);
        assert!(!text.contains(&tok), "{path} shows a read key the schedule's token");
        assert!(!text.contains("very-secret"), "{path} shows a read key the hook's secret");
    }
    let a = request("GET", &s.url(&format!("/api/pipeline_schedules/{id}")), &[("authorization", &read)], "")
        .await;
    assert!(a.json["pipeline_schedule"]["token"].is_null());
    assert_eq!(
        a.json["pipeline_schedule"]["settings"]["notifications"][0]["url"],
        "https://hooks.slack.com/…"
    );
    let w = call(&s, "GET", &format!("/api/pipeline_schedules/{id}"), "").await;
    assert_eq!(w.json["pipeline_schedule"]["token"], tok.as_str(), "a write key sees the token");
    assert_eq!(w.json["pipeline_schedule"]["settings"]["notifications"][0]["url"], hook);

    // A path can hold a token: neither a 404 nor a 405 repeats it.
    for (method, path) in [
        ("GET", format!("/api/nothing/{tok}")),
        ("DELETE", format!("/api/pipeline_schedules/{id}/pipeline_runs/{tok}")),
    ] {
        let a = request(method, &s.url(&path), &[("authorization", &read)], "").await;
        assert!(matches!(a.status, 404 | 405), "{method} {path}: {}", a.status);
        assert!(!String::from_utf8_lossy(&a.raw).contains(&tok), "{method} {path} echoes the token");
    }
}
