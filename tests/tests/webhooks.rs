//! Provider-verified webhook intake (SPEC §9) through `kickoff-local` as a user runs it, its log read
//! back: for each provider a delivery signed as the provider signs it (the signature computed here from
//! the provider's documented algorithm) makes one run with the payload in `event_variables` and
//! `variables.webhook`; the same delivery id again answers the same run; a wrong signature, a missing
//! header, a wrong secret, an old timestamp and a body changed by one byte are each 401 and write
//! nothing; events not in `events`, GitHub's `ping` and Slack's `url_verification` make no run; the log
//! holds neither the secret nor a signature. Concurrent deliveries of one id on DynamoDB Local make one
//! run; a rotated secret works for 24 hours (a manual clock) and not after.

use std::sync::Arc;

use kickoff::clock::{Clock, ManualClock};
use kickoff::domain::{ApiKey, Role};
use kickoff::App;
use kickoff_tests::{hmac_sha256, request, stack, start_kickoff_local, Answer};
use serde_json::{json, Value};

fn b64(bytes: &[u8]) -> String {
    base64_simd::STANDARD.encode_to_string(bytes)
}

/// One delivery as its provider would send it.
struct Delivery {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Delivery {
    fn header_pairs(&self) -> Vec<(&str, &str)> {
        self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    fn without(&self, name: &str) -> Delivery {
        Delivery {
            headers: self.headers.iter().filter(|(k, _)| !k.eq_ignore_ascii_case(name)).cloned().collect(),
            body: self.body.clone(),
        }
    }

    fn with_body(&self, body: Vec<u8>) -> Delivery {
        Delivery { headers: self.headers.clone(), body }
    }
}

/// Signs `body` as `provider` does with `secret` at Unix time `t`; `id` is the delivery id.
fn sign(provider: &str, secret: &str, body: &[u8], t: i64, id: &str, event: &str) -> Delivery {
    let h = |k: &str, v: String| (k.to_string(), v);
    let mut headers = vec![h("content-type", "application/json".into())];
    match provider {
        "github" => {
            headers.push(h(
                "X-Hub-Signature-256",
                format!("sha256={}", hex::encode(hmac_sha256(secret.as_bytes(), body))),
            ));
            headers.push(h("X-GitHub-Event", event.into()));
            headers.push(h("X-GitHub-Delivery", id.into()));
        }
        "gitlab" => {
            headers.push(h("X-Gitlab-Token", secret.into()));
            headers.push(h("X-Gitlab-Event", event.into()));
            headers.push(h("X-Gitlab-Event-UUID", id.into()));
        }
        "stripe" => {
            let payload = [t.to_string().as_bytes(), b".", body].concat();
            let sig = hex::encode(hmac_sha256(secret.as_bytes(), &payload));
            // Stripe may send several v1 signatures (during its own rotation): one of them matches.
            headers.push(h("Stripe-Signature", format!("t={t},v1={},v1={sig},v0=ignored", "00".repeat(32))));
        }
        "slack" => {
            let base = [b"v0:".as_slice(), t.to_string().as_bytes(), b":", body].concat();
            headers.push(h("X-Slack-Request-Timestamp", t.to_string()));
            headers.push(h(
                "X-Slack-Signature",
                format!("v0={}", hex::encode(hmac_sha256(secret.as_bytes(), &base))),
            ));
        }
        "standard" => {
            let key =
                base64_simd::STANDARD.decode_to_vec(secret.trim_start_matches("whsec_")).expect("whsec_");
            let content = [id.as_bytes(), b".", t.to_string().as_bytes(), b".", body].concat();
            headers.push(h("webhook-id", id.into()));
            headers.push(h("webhook-timestamp", t.to_string()));
            headers.push(h(
                "webhook-signature",
                format!("v1,{} v1,{}", b64(b"not it"), b64(&hmac_sha256(&key, &content))),
            ));
        }
        "hmac" => {
            headers
                .push(h("X-Kickoff-Sig", format!("sha256:{}", b64(&hmac_sha256(secret.as_bytes(), body)))));
            headers.push(h("Idempotency-Key", id.into()));
        }
        other => panic!("no provider {other}"),
    }
    Delivery { headers, body: body.to_vec() }
}

/// A payload as the provider would send it for `event`, with delivery id `id` where it lives in the body.
fn payload(provider: &str, event: &str, id: &str) -> Value {
    match provider {
        "stripe" => json!({"id": id, "type": event, "data": {"object": {"amount": 2000}}}),
        "slack" => {
            json!({"type": "event_callback", "event_id": id, "event": {"type": event, "text": "deploy"}})
        }
        "standard" => json!({"type": event, "data": {"ref": "main"}}),
        _ => json!({"ref": "refs/heads/main", "after": "abc123", "repository": {"full_name": "acme/etl"}}),
    }
}

const AUTH: [(&str, &str); 1] = [("authorization", "Bearer dev-key")];

async fn new_schedule(base: &str, webhook: Value) -> (i64, Value) {
    let a = request(
        "POST",
        &format!("{base}/api/pipelines/training/pipeline_schedules"),
        &AUTH,
        json!({"pipeline_schedule": {"name": "hook", "schedule_type": "api", "status": "active",
               "variables": {"env": "prod"}, "settings": {"webhook": webhook}}})
        .to_string(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.raw));
    (a.json["pipeline_schedule"]["id"].as_i64().expect("id"), a.json["pipeline_schedule"].clone())
}

async fn deliver(base: &str, schedule: i64, d: &Delivery) -> Answer {
    request(
        "POST",
        &format!("{base}/api/pipeline_schedules/{schedule}/webhook"),
        &d.header_pairs(),
        d.body.clone(),
    )
    .await
}

async fn run_count(base: &str, schedule: i64) -> u64 {
    let a =
        request("GET", &format!("{base}/api/pipeline_schedules/{schedule}/pipeline_runs"), &AUTH, "").await;
    a.json["metadata"]["count"].as_u64().expect("count")
}

#[tokio::test]
async fn every_provider_verifies_deduplicates_filters_and_refuses_as_specified() {
    let local = start_kickoff_local(&[("RUST_LOG", "debug")]).await;
    let base = local.base.as_str();
    let now = chrono::Utc::now().timestamp();
    let mut secrets_and_signatures = Vec::new();
    for (provider, event) in [
        ("github", "push"),
        ("gitlab", "Push Hook"),
        ("stripe", "invoice.paid"),
        ("slack", "app_mention"),
        ("standard", "build.finished"),
        ("hmac", ""),
    ] {
        let mut webhook = json!({"provider": provider});
        if provider == "hmac" {
            webhook = json!({"provider": "hmac", "header": "X-Kickoff-Sig", "encoding": "base64", "prefix": "sha256:"});
        } else {
            webhook["events"] = json!([event]);
        }
        if provider == "github" {
            webhook["branches"] = json!(["main"]);
        }
        let (id, shown) = new_schedule(base, webhook).await;
        let secret = shown["settings"]["webhook"]["secret"]
            .as_str()
            .expect("a generated secret, shown once")
            .to_string();
        assert_eq!(shown["settings"]["webhook"]["secret_set"], true);
        let got = request("GET", &format!("{base}/api/pipeline_schedules/{id}"), &AUTH, "").await;
        assert!(
            got.json["settings"]["webhook"].get("secret").is_none(),
            "{provider}: write-only: {:?}",
            got.json
        );
        assert!(!String::from_utf8_lossy(&got.raw).contains(&secret));

        let delivery_id = format!("{provider}-delivery-1");
        let body = payload(provider, event, &delivery_id).to_string().into_bytes();
        let good = sign(provider, &secret, &body, now, &delivery_id, event);
        for (_, v) in &good.headers {
            if v.len() > 20 && v != &secret {
                secrets_and_signatures.push(v.clone());
            }
        }
        secrets_and_signatures.push(secret.clone());

        // Refusals first: each 401, nothing written.
        let wrong_secret = if provider == "standard" {
            format!("whsec_{}", b64(b"another secret, 24 bytes"))
        } else {
            "another-secret".to_string()
        };
        let mut refusals =
            vec![("a wrong secret", sign(provider, &wrong_secret, &body, now, &delivery_id, event))];
        // One letter of the payload changed (still JSON). GitLab's token does not sign the body, so there
        // a changed body cannot be told apart (SPEC §9's scheme for GitLab).
        if provider != "gitlab" {
            let mut changed = body.clone();
            let at = changed.iter().rposition(u8::is_ascii_lowercase).expect("a letter");
            changed[at] = if changed[at] == b'a' { b'b' } else { b'a' };
            refusals.push(("a body changed by one byte", good.with_body(changed)));
        }
        let signature_header = match provider {
            "github" => "X-Hub-Signature-256",
            "gitlab" => "X-Gitlab-Token",
            "stripe" => "Stripe-Signature",
            "slack" => "X-Slack-Signature",
            "standard" => "webhook-signature",
            _ => "X-Kickoff-Sig",
        };
        refusals.push(("a missing signature header", good.without(signature_header)));
        let mut tampered = good.without(signature_header);
        let original = good.headers.iter().find(|(k, _)| k == signature_header).expect("signature").1.clone();
        tampered.headers.push((signature_header.to_string(), original.replace(|c: char| c == 'a', "b")));
        if original.contains('a') && provider != "gitlab" {
            refusals.push(("a wrong signature", tampered));
        }
        if ["stripe", "slack", "standard"].contains(&provider) {
            refusals.push((
                "a timestamp 301 s old",
                sign(provider, &secret, &body, now - 301, &delivery_id, event),
            ));
        }
        for (what, d) in &refusals {
            let a = deliver(base, id, d).await;
            assert_eq!(a.status, 401, "{provider}, {what}: {}", String::from_utf8_lossy(&a.raw));
            assert_eq!(a.json["error"]["code"], 401);
        }
        assert_eq!(run_count(base, id).await, 0, "{provider}: a refused delivery wrote nothing");

        // The delivery: one run, the payload in event_variables, the webhook fields in variables.
        let a = deliver(base, id, &good).await;
        assert_eq!(a.status, 200, "{provider}: {}", String::from_utf8_lossy(&a.raw));
        let run = &a.json["pipeline_run"];
        let sent: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(run["event_variables"], sent, "{provider}");
        assert_eq!(run["variables"]["env"], "prod");
        assert_eq!(run["variables"]["webhook"]["provider"], provider);
        assert_eq!(run["variables"]["webhook"]["delivery_id"], delivery_id.as_str());
        if provider != "hmac" {
            assert_eq!(run["variables"]["webhook"]["event"], event);
        }
        // Again: the same run, nothing new.
        let again = deliver(base, id, &good).await;
        assert_eq!(again.status, 200);
        assert_eq!(
            again.json["pipeline_run"]["id"], run["id"],
            "{provider}: the same delivery answers the same run"
        );
        assert_eq!(run_count(base, id).await, 1, "{provider}");
        // A captured delivery sent again under a new delivery id: where no timestamp is signed, the
        // body's hash keys it (24 h), so it is the same run (issue #19's replays).
        if ["github", "gitlab", "hmac"].contains(&provider) {
            let replay = sign(provider, &secret, &body, now, &format!("{provider}-replayed"), event);
            let a = deliver(base, id, &replay).await;
            assert_eq!(a.status, 200, "{provider}: {}", String::from_utf8_lossy(&a.raw));
            assert_eq!(
                a.json["pipeline_run"]["id"], run["id"],
                "{provider}: a replay under a new id starts nothing"
            );
            assert_eq!(run_count(base, id).await, 1, "{provider}");
        }

        // An event the schedule does not take: 200, no run.
        if provider != "hmac" {
            let other_id = format!("{provider}-delivery-2");
            let other = payload(provider, "other.event", &other_id).to_string().into_bytes();
            let mut d = sign(provider, &secret, &other, now, &other_id, "other.event");
            if provider == "github" || provider == "gitlab" {
                d = sign(provider, &secret, &other, now, &other_id, "issues");
            }
            let a = deliver(base, id, &d).await;
            assert_eq!(a.status, 200, "{provider}: {}", String::from_utf8_lossy(&a.raw));
            assert!(a.json["pipeline_run"].is_null(), "{provider}: {:?}", a.json);
            assert_eq!(run_count(base, id).await, 1);
        }
        if provider == "github" {
            // A push to another branch: 200, no run.
            let dev = json!({"ref": "refs/heads/dev", "after": "def456"}).to_string().into_bytes();
            let a = deliver(base, id, &sign("github", &secret, &dev, now, "dev-push", "push")).await;
            assert_eq!(a.status, 200);
            assert!(a.json["pipeline_run"].is_null(), "{:?}", a.json);
            assert_eq!(run_count(base, id).await, 1);
            let ping = json!({"zen": "Keep it logically awesome.", "hook_id": 1}).to_string().into_bytes();
            let a = deliver(base, id, &sign("github", &secret, &ping, now, "ping-1", "ping")).await;
            assert_eq!(a.status, 200);
            assert!(a.json["pipeline_run"].is_null());
            assert_eq!(run_count(base, id).await, 1);
        }
        if provider == "slack" {
            let challenge = json!({"token": "x", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"});
            let body = challenge.to_string().into_bytes();
            let a = deliver(base, id, &sign("slack", &secret, &body, now, "", "")).await;
            assert_eq!(a.status, 200);
            assert_eq!(a.json["challenge"], challenge["challenge"]);
            assert_eq!(run_count(base, id).await, 1);
        }
    }
    // Not JSON (a signed body): 400.
    let (id, shown) = new_schedule(base, json!({"provider": "github"})).await;
    let secret = shown["settings"]["webhook"]["secret"].as_str().expect("secret").to_string();
    let a = deliver(base, id, &sign("github", &secret, b"payload=%7B%7D", now, "form-1", "push")).await;
    assert_eq!(a.status, 400, "{}", String::from_utf8_lossy(&a.raw));

    let log = std::fs::read_to_string(&local.log).expect("log");
    assert!(log.contains("webhook refused"), "the refusals are logged: {log}");
    // The audit: each request a key let in, with the key's name and the function (docs/security.md).
    // (The terminal format may colour field names: compare the text without escape sequences.)
    let plain: String = {
        let mut out = String::new();
        let mut chars = log.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    };
    let audited = plain.lines().any(|l| {
        l.contains("write request") && l.contains("key=dev") && l.contains("function=\"create-schedule\"")
    });
    assert!(audited, "write requests are logged with the key's name: {plain}");
    assert!(plain.lines().any(|l| l.contains("read request") && l.contains("key=dev")), "and reads");
    for s in &secrets_and_signatures {
        assert!(!log.contains(s.as_str()), "the log holds a secret or signature {s:?}");
    }
}

/// The embedded app on `store` with a manual clock, served on a free port.
async fn app_on(store: kickoff::store::Store, clock: Arc<ManualClock>) -> (String, App) {
    kickoff_tests::allow_loopback();
    let (app, _queue) = App::memory();
    let app = App { store, clock: clock.clone(), ..app };
    app.store
        .put_api_key(&ApiKey::from_secret("dev-key", Role::Write, "dev", clock.now()))
        .await
        .expect("key");
    kickoff::demo::seed(&app).await.expect("demo");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(kickoff::http::local::serve(Arc::new(app.clone()), listener));
    (base, app)
}

#[tokio::test]
async fn concurrent_deliveries_of_one_id_make_one_run_on_dynamodb() {
    let Some(stack) = stack("concurrent_deliveries_of_one_id_make_one_run_on_dynamodb") else { return };
    let store = kickoff::store::Store::new(Arc::new(stack.new_table("webhooks").await));
    let clock = Arc::new(ManualClock::default());
    let (base, _app) = app_on(store, clock.clone()).await;
    let (id, shown) = new_schedule(&base, json!({"provider": "github"})).await;
    let secret = shown["settings"]["webhook"]["secret"].as_str().expect("secret").to_string();
    let body = payload("github", "push", "same").to_string().into_bytes();
    let d = sign("github", &secret, &body, clock.now().timestamp(), "same-delivery", "push");
    let answers = futures_util::future::join_all((0..8).map(|_| deliver(&base, id, &d))).await;
    let runs: std::collections::BTreeSet<String> = answers
        .iter()
        .map(|a| {
            assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.raw));
            a.json["pipeline_run"]["id"].to_string()
        })
        .collect();
    assert_eq!(runs.len(), 1, "one run for one delivery id: {runs:?}");
    assert_eq!(run_count(&base, id).await, 1);
}

#[tokio::test]
async fn a_rotated_secret_works_for_24_hours_and_not_after() {
    let clock = Arc::new(ManualClock::default());
    let (base, _app) = app_on(kickoff::store::Store::memory(), clock.clone()).await;
    let (id, _) = new_schedule(&base, json!({"provider": "github", "secret": "the-first-secret"})).await;
    let a = request(
        "PUT",
        &format!("{base}/api/pipeline_schedules/{id}"),
        &AUTH,
        json!({"pipeline_schedule": {"settings": {"webhook": {"provider": "github", "rotate_secret": true}}}}).to_string(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.raw));
    let new_secret = a.json["pipeline_schedule"]["settings"]["webhook"]["secret"]
        .as_str()
        .expect("shown once")
        .to_string();
    assert!(a.json["pipeline_schedule"]["settings"]["webhook"]["previous_secret_valid_until"].is_string());
    let body = payload("github", "push", "x").to_string().into_bytes();
    let at = |hours: i64, secret: &str, n: u32| {
        sign(
            "github",
            secret,
            &body,
            clock.now().timestamp() + hours * 3600,
            &format!("d-{hours}-{n}"),
            "push",
        )
    };
    let old_now = at(0, "the-first-secret", 1);
    assert_eq!(deliver(&base, id, &old_now).await.status, 200, "the old secret right after rotating");
    assert_eq!(deliver(&base, id, &at(0, &new_secret, 2)).await.status, 200, "the new secret");
    clock.advance(chrono::Duration::hours(23) + chrono::Duration::minutes(59));
    assert_eq!(deliver(&base, id, &at(0, "the-first-secret", 3)).await.status, 200, "23 h 59 min later");
    clock.advance(chrono::Duration::minutes(1));
    assert_eq!(deliver(&base, id, &at(0, "the-first-secret", 4)).await.status, 401, "24 hours later");
    assert_eq!(deliver(&base, id, &at(0, &new_secret, 5)).await.status, 200);
}
