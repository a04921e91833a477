//! Provider-verified webhook intake (SPEC §9): a schedule's `settings.webhook` — which provider signs
//! its deliveries, the secret, the events it takes — and how a delivery is checked (`verify`). The
//! route is `http::mage::webhook`.
//!
//! The secret is stored with the schedule (DynamoDB encrypts it at rest): an HMAC needs the key itself.
//! Answers never show it (`secret_set: true`), except once: a secret Kickoff generated (none given, or
//! `rotate_secret: true`) is in the answer of the create or update that made it. A new secret keeps the
//! previous one valid for 24 hours.

pub mod verify;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::clock::random_bytes;
use crate::{Error, Result};

/// How long a replaced secret keeps working.
pub const PREVIOUS_SECRET_HOURS: i64 = 24;
/// How far a signed timestamp may be from now (Stripe, Slack, Standard Webhooks).
pub const REPLAY_WINDOW_S: i64 = 300;
/// At most this many event names in `events`.
const MAX_EVENTS: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Github,
    Gitlab,
    Stripe,
    Slack,
    /// Standard Webhooks (standardwebhooks.com).
    Standard,
    /// HMAC-SHA256 of the body in a header of your choice.
    Hmac,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Github => "github",
            Provider::Gitlab => "gitlab",
            Provider::Stripe => "stripe",
            Provider::Slack => "slack",
            Provider::Standard => "standard",
            Provider::Hmac => "hmac",
        }
    }

    /// Whether the provider signs a timestamp with each delivery (then a captured delivery is refused
    /// once its window has passed, and its delivery id is signed too).
    pub fn signs_timestamp(self) -> bool {
        matches!(self, Provider::Stripe | Provider::Slack | Provider::Standard)
    }
}

/// How an `hmac` signature is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Hex,
    Base64,
}

/// A schedule's webhook, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookConfig {
    pub provider: Provider,
    pub secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    /// Event types that start a run; empty: every event.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// `github` and `gitlab`: branches whose pushes start a run (the body's `ref` is
    /// `refs/heads/<branch>`); deliveries with another `ref` start none; empty: every branch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub branches: Vec<String>,
    /// `hmac` only: the signature's header (default `X-Signature`), encoding and prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<Encoding>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// A secret this change generated, for its answer only: never stored.
    #[serde(skip)]
    pub revealed: Option<String>,
}

/// `settings.webhook` in a create or update body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookInput {
    pub provider: Provider,
    #[serde(default)]
    pub secret: Option<String>,
    /// Generate a new secret (shown once); the previous one works 24 hours more.
    #[serde(default)]
    pub rotate_secret: bool,
    #[serde(default)]
    pub events: Option<Vec<String>>,
    #[serde(default)]
    pub branches: Option<Vec<String>>,
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub encoding: Option<Encoding>,
    #[serde(default)]
    pub prefix: Option<String>,
}

fn invalid(field: &str, why: impl std::fmt::Display) -> Error {
    Error::Unprocessable(format!("settings.webhook.{field}: {why}"))
}

/// A fresh secret in the provider's shape: `whsec_<base64 of 24 bytes>` for Standard Webhooks, 64 hex
/// characters otherwise.
fn generate_secret(provider: Provider) -> String {
    match provider {
        Provider::Standard => {
            format!("whsec_{}", base64_simd::STANDARD.encode_to_string(random_bytes::<24>()))
        }
        _ => hex::encode(random_bytes::<32>()),
    }
}

impl WebhookConfig {
    /// The webhook an input makes of the `current` one at `now`: a given secret or `rotate_secret`
    /// replaces the secret (the replaced one stays valid for 24 hours); with neither, the current secret
    /// stays, or one is generated.
    pub fn configure(
        current: Option<WebhookConfig>,
        input: WebhookInput,
        now: DateTime<Utc>,
    ) -> Result<WebhookConfig> {
        if input.provider != Provider::Hmac
            && (input.header.is_some() || input.encoding.is_some() || input.prefix.is_some())
        {
            return Err(invalid("provider", "header, encoding and prefix are for the hmac provider only"));
        }
        if let Some(h) = &input.header {
            if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                return Err(invalid("header", format!("{h:?} is not a header name")));
            }
        }
        let events = input.events.unwrap_or_default();
        if events.len() > MAX_EVENTS || events.iter().any(|e| e.is_empty() || e.len() > 255) {
            return Err(invalid("events", format!("at most {MAX_EVENTS} names of 1 to 255 characters")));
        }
        let branches = input.branches.unwrap_or_default();
        if !branches.is_empty() && !matches!(input.provider, Provider::Github | Provider::Gitlab) {
            return Err(invalid("branches", "for the github and gitlab providers only"));
        }
        if branches.len() > MAX_EVENTS || branches.iter().any(|b| b.is_empty() || b.len() > 255) {
            return Err(invalid("branches", format!("at most {MAX_EVENTS} names of 1 to 255 characters")));
        }
        let (given, revealed) = match (input.secret, input.rotate_secret) {
            (Some(_), true) => return Err(invalid("secret", "give a secret or rotate_secret, not both")),
            (Some(s), false) => (Some(s), None),
            (None, true) => {
                let s = generate_secret(input.provider);
                (Some(s.clone()), Some(s))
            }
            (None, false) => (None, None),
        };
        let mut out = WebhookConfig {
            provider: input.provider,
            secret: String::new(),
            previous_secret: None,
            previous_secret_expires_at: None,
            events,
            branches,
            header: input.header,
            encoding: input.encoding,
            prefix: input.prefix,
            revealed,
        };
        match (current, given) {
            (Some(cur), Some(new)) if cur.secret != new => {
                out.previous_secret = Some(cur.secret);
                out.previous_secret_expires_at = Some(now + Duration::hours(PREVIOUS_SECRET_HOURS));
                out.secret = new;
            }
            (Some(cur), _) => {
                out.previous_secret = cur.previous_secret;
                out.previous_secret_expires_at = cur.previous_secret_expires_at;
                out.secret = cur.secret;
            }
            (None, Some(new)) => out.secret = new,
            (None, None) => {
                let s = generate_secret(out.provider);
                out.revealed = Some(s.clone());
                out.secret = s;
            }
        }
        out.check_secret()?;
        Ok(out)
    }

    fn check_secret(&self) -> Result<()> {
        if self.secret.len() < 8 || self.secret.len() > 512 {
            return Err(invalid("secret", "8 to 512 characters"));
        }
        if self.provider == Provider::Standard && verify::standard_key(&self.secret).is_none() {
            return Err(invalid(
                "secret",
                "a Standard Webhooks secret is whsec_ followed by base64; send one, or rotate_secret: true",
            ));
        }
        Ok(())
    }

    /// Whether a delivery's body is on a branch this webhook takes: a `ref` of `refs/heads/<branch>`
    /// with a listed branch, or any body when no branch is listed or it has no `ref` (not a push).
    pub fn takes_ref(&self, body: &Map<String, Value>) -> bool {
        let Some(r) = body.get("ref").and_then(Value::as_str) else { return true };
        self.branches.is_empty()
            || r.strip_prefix("refs/heads/").is_some_and(|b| self.branches.iter().any(|x| x == b))
    }

    /// The secrets a delivery may be signed with at `now`: the current one, and the previous one for
    /// 24 hours after it was replaced.
    pub fn secrets(&self, now: DateTime<Utc>) -> Vec<&str> {
        let mut out = vec![self.secret.as_str()];
        if let (Some(p), Some(until)) = (&self.previous_secret, self.previous_secret_expires_at) {
            if now < until {
                out.push(p);
            }
        }
        out
    }

    /// What answers show: everything but the secrets (`secret_set`), and a generated secret once.
    pub fn view(&self) -> Value {
        let mut v = Map::new();
        v.insert("provider".into(), json!(self.provider.as_str()));
        v.insert("events".into(), json!(self.events));
        if matches!(self.provider, Provider::Github | Provider::Gitlab) {
            v.insert("branches".into(), json!(self.branches));
        }
        if self.provider == Provider::Hmac {
            v.insert("header".into(), json!(self.header.as_deref().unwrap_or(verify::HMAC_DEFAULT_HEADER)));
            v.insert("encoding".into(), json!(self.encoding.unwrap_or_default()));
            v.insert("prefix".into(), json!(self.prefix.as_deref().unwrap_or("")));
        }
        v.insert("secret_set".into(), json!(true));
        v.insert("previous_secret_valid_until".into(), json!(self.previous_secret_expires_at));
        if let Some(s) = &self.revealed {
            v.insert("secret".into(), json!(s));
        }
        Value::Object(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(provider: Provider) -> WebhookInput {
        WebhookInput {
            provider,
            secret: None,
            rotate_secret: false,
            events: None,
            branches: None,
            header: None,
            encoding: None,
            prefix: None,
        }
    }

    #[test]
    fn a_secret_not_given_is_generated_and_shown_once() {
        let now = Utc::now();
        let w = WebhookConfig::configure(None, input(Provider::Github), now).expect("config");
        assert_eq!(w.secret.len(), 64);
        assert_eq!(w.revealed.as_deref(), Some(w.secret.as_str()));
        assert_eq!(w.view()["secret"], w.secret.as_str());
        let stored: WebhookConfig =
            serde_json::from_value(serde_json::to_value(&w).expect("json")).expect("back");
        assert_eq!(stored.revealed, None, "never stored");
        assert!(stored.view().get("secret").is_none());
        assert_eq!(stored.view()["secret_set"], true);
        // Again without a secret: the same secret, not shown.
        let again =
            WebhookConfig::configure(Some(stored.clone()), input(Provider::Github), now).expect("config");
        assert_eq!(again.secret, stored.secret);
        assert_eq!(again.revealed, None);
        let std = WebhookConfig::configure(None, input(Provider::Standard), now).expect("config");
        assert!(std.secret.starts_with("whsec_") && verify::standard_key(&std.secret).is_some());
    }

    #[test]
    fn a_new_secret_keeps_the_previous_one_for_24_hours() {
        let now = Utc::now();
        let first = WebhookConfig::configure(
            None,
            WebhookInput { secret: Some("first-secret".into()), ..input(Provider::Github) },
            now,
        )
        .expect("config");
        let rotated = WebhookConfig::configure(
            Some(first),
            WebhookInput { rotate_secret: true, ..input(Provider::Github) },
            now,
        )
        .expect("rotate");
        assert_ne!(rotated.secret, "first-secret");
        assert_eq!(rotated.secrets(now + Duration::hours(23)), vec![rotated.secret.as_str(), "first-secret"]);
        assert_eq!(rotated.secrets(now + Duration::hours(24)), vec![rotated.secret.as_str()]);
    }

    #[test]
    fn bad_webhook_settings_are_refused_naming_the_field() {
        let now = Utc::now();
        let e = WebhookConfig::configure(
            None,
            WebhookInput { header: Some("X-Sig".into()), ..input(Provider::Github) },
            now,
        )
        .expect_err("hmac only");
        assert!(e.to_string().contains("settings.webhook.provider"), "{e}");
        let e = WebhookConfig::configure(
            None,
            WebhookInput { secret: Some("short".into()), ..input(Provider::Github) },
            now,
        )
        .expect_err("short");
        assert!(e.to_string().contains("settings.webhook.secret"), "{e}");
        let e = WebhookConfig::configure(
            None,
            WebhookInput { secret: Some("not-a-whsec".into()), ..input(Provider::Standard) },
            now,
        )
        .expect_err("standard");
        assert!(e.to_string().contains("whsec_"), "{e}");
    }
}
