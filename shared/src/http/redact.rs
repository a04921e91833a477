//! What a caller without the `write` role sees of the secrets in an answer, decided once and applied
//! by `routes::dispatch` to every answer: a `read` key sees no schedule `token` and no run's
//! `pipeline_schedule_token` (either lets its holder trigger runs), and neither a read key nor a token
//! route's caller sees more of a notification URL than its origin (a Slack incoming-webhook URL is a
//! secret itself). A `write` key sees everything.

use bytes::Bytes;
use serde_json::Value;

use super::ApiResponse;
use crate::domain::Role;

/// What a notification URL shows to a caller who may not see it: its origin.
pub const HIDDEN_PATH: &str = "/…";

/// `resp` as the caller of `role` may see it (`None`: a token route's caller).
pub fn for_caller(resp: ApiResponse, role: Option<Role>) -> ApiResponse {
    let tokens = role == Some(Role::Read);
    // Most answers (a token trigger's run without notifications, say) hold nothing to redact: only
    // keys named `url` or ending in `token` are ever changed, so without either the answer is passed on
    // as it is, unparsed.
    let holds = |needle: &[u8]| resp.body.windows(needle.len()).any(|w| w == needle);
    if role == Some(Role::Write) || !(holds(b"\"url\"") || tokens && holds(b"token\"")) {
        return resp;
    }
    let Ok(mut value) = serde_json::from_slice::<Value>(&resp.body) else { return resp };
    walk(&mut value, None, tokens);
    ApiResponse { body: Bytes::from(value.to_string()), ..resp }
}

/// Redacts within `v`, found under the key `under` (array elements are under their array's key).
fn walk(v: &mut Value, under: Option<&str>, tokens: bool) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                match k.as_str() {
                    "pipeline_schedule_token" if tokens => *child = Value::Null,
                    "token"
                        if tokens && matches!(under, Some("pipeline_schedule" | "pipeline_schedules")) =>
                    {
                        *child = Value::Null
                    }
                    "url" if under == Some("notifications") => {
                        if let Value::String(url) = child {
                            *url = origin(url);
                        }
                    }
                    _ => walk(child, Some(k.as_str()), tokens),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| walk(item, under, tokens)),
        _ => {}
    }
}

/// `https://hooks.slack.com/services/T/B/secret` → `https://hooks.slack.com/…`.
fn origin(url: &str) -> String {
    match url.parse::<http::Uri>() {
        Ok(uri) => match (uri.scheme_str(), uri.authority()) {
            (Some(scheme), Some(authority)) => {
                let host = authority.as_str().rsplit('@').next().unwrap_or_default();
                format!("{scheme}://{host}{HIDDEN_PATH}")
            }
            _ => HIDDEN_PATH.to_string(),
        },
        Err(_) => HIDDEN_PATH.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn answer(v: Value) -> ApiResponse {
        ApiResponse::ok(&v)
    }

    fn body(r: &ApiResponse) -> Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn readers_see_no_tokens_and_no_notification_secrets() {
        let hook = "https://user:pw@hooks.slack.com/services/T0/B0/secret";
        let v = json!({
            "pipeline_schedules": [{ "token": "t1", "settings": { "notifications": [{ "url": hook, "on": ["failed"] }] } }],
            "pipeline_run": { "pipeline_schedule_token": "t1", "notifications": [{ "url": hook }],
                              "variables": { "token": "mine" } },
        });
        let read = body(&for_caller(answer(v.clone()), Some(Role::Read)));
        assert_eq!(read["pipeline_schedules"][0]["token"], Value::Null);
        assert_eq!(
            read["pipeline_schedules"][0]["settings"]["notifications"][0]["url"],
            "https://hooks.slack.com/…"
        );
        assert_eq!(read["pipeline_run"]["pipeline_schedule_token"], Value::Null);
        assert_eq!(read["pipeline_run"]["notifications"][0]["url"], "https://hooks.slack.com/…");
        assert_eq!(read["pipeline_run"]["variables"]["token"], "mine", "a variable named token is data");
        let token_route = body(&for_caller(answer(v.clone()), None));
        assert_eq!(token_route["pipeline_run"]["pipeline_schedule_token"], "t1", "its caller knows it");
        assert_eq!(token_route["pipeline_run"]["notifications"][0]["url"], "https://hooks.slack.com/…");
        assert_eq!(body(&for_caller(answer(v.clone()), Some(Role::Write))), v);
    }
}
