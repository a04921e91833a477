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
