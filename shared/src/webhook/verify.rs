//! Checking a delivery as its provider signs it (SPEC §9), over the exact bytes received, in constant
//! time (`Mac::verify_slice`, `subtle`), with each of the schedule's valid secrets; and reading the
//! delivery's event type and id.
//!
//! | provider | signature | delivery id | event |
//! |---|---|---|---|
//! | github | `X-Hub-Signature-256: sha256=<hex HMAC(secret, body)>` | `X-GitHub-Delivery` | `X-GitHub-Event` |
//! | gitlab | `X-Gitlab-Token: <secret>` | `X-Gitlab-Event-UUID` | `X-Gitlab-Event` |
//! | stripe | `Stripe-Signature: t=<unix>,v1=<hex HMAC(secret, "<t>.<body>")>` | body `id` | body `type` |
//! | slack | `X-Slack-Signature: v0=<hex HMAC(secret, "v0:<ts>:<body>")>` + `X-Slack-Request-Timestamp` | body `event_id` | `event.type`, else `type` |
//! | standard | `webhook-signature: v1,<base64 HMAC(key, "<id>.<ts>.<body>")>` … + `webhook-id`, `webhook-timestamp` | `webhook-id` | body `type` |
//! | hmac | `<header>: <prefix><hex or base64 HMAC(secret, body)>` | `Idempotency-Key` | — |
//!
//! Stripe, Slack and Standard Webhooks timestamps must be within 300 s of now.

use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{Encoding, Provider, WebhookConfig, REPLAY_WINDOW_S};
use crate::{Error, Result};

/// The `hmac` provider's header when none is configured.
pub const HMAC_DEFAULT_HEADER: &str = "X-Signature";

/// Whether HMAC-SHA256 of `parts` under `key` is `expected` (constant time).
fn hmac_matches(key: &[u8], parts: &[&[u8]], expected: &[u8]) -> bool {
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) else { return false };
    for p in parts {
        mac.update(p);
    }
    mac.verify_slice(expected).is_ok()
}

/// The HMAC key of a Standard Webhooks secret (`whsec_<base64>`).
pub fn standard_key(secret: &str) -> Option<Vec<u8>> {
    let b64 = secret.strip_prefix("whsec_")?;
    base64_simd::STANDARD.decode_to_vec(b64).ok().filter(|k| !k.is_empty())
}

fn unauthorized(why: &str) -> Error {
    Error::Unauthorized(format!("webhook: {why}"))
}

/// A header's value; 401 naming it when missing.
fn required<'a>(header: &impl Fn(&str) -> Option<&'a str>, name: &str) -> Result<&'a str> {
    header(name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| unauthorized(&format!("the {name} header is missing")))
}

/// A signed Unix timestamp within the replay window of `now`.
fn timestamp_in_window(value: &str, name: &str, now: DateTime<Utc>) -> Result<i64> {
    let t: i64 =
        value.trim().parse().map_err(|_| unauthorized(&format!("{name} is not a Unix timestamp")))?;
    // Checked: a crafted timestamp near i64's ends must be refused, not overflow.
    let off = now.timestamp().checked_sub(t).and_then(i64::checked_abs);
    if off.is_none_or(|off| off > REPLAY_WINDOW_S) {
        return Err(unauthorized(&format!("{name} is more than {REPLAY_WINDOW_S} s from now")));
    }
    Ok(t)
}

fn hex_of(value: &str) -> Option<Vec<u8>> {
    hex::decode(value.trim()).ok()
}

/// Checks a delivery's signature with each of `secrets`: `Ok` if one matches, 401 otherwise. `header`
/// looks a request header up by (case-insensitive) name.
pub fn verify<'a>(
    config: &WebhookConfig,
    secrets: &[&str],
    header: impl Fn(&str) -> Option<&'a str>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<()> {
    let matched = match config.provider {
        Provider::Github => {
            let sig = required(&header, "X-Hub-Signature-256")?;
            let expected = sig.strip_prefix("sha256=").and_then(hex_of);
            expected.is_some_and(|e| secrets.iter().any(|s| hmac_matches(s.as_bytes(), &[body], &e)))
        }
        Provider::Gitlab => {
            let token = required(&header, "X-Gitlab-Token")?;
            secrets.iter().any(|s| bool::from(s.as_bytes().ct_eq(token.as_bytes())))
        }
        Provider::Stripe => {
            let sig = required(&header, "Stripe-Signature")?;
            let mut t = None;
            let mut v1 = Vec::new();
            for item in sig.split(',') {
                match item.trim().split_once('=') {
                    Some(("t", v)) => t = Some(v),
                    Some(("v1", v)) => v1.extend(hex_of(v)),
                    _ => {}
                }
            }
            let t = t.ok_or_else(|| unauthorized("Stripe-Signature has no timestamp"))?;
            timestamp_in_window(t, "the Stripe-Signature timestamp", now)?;
            v1.iter()
                .any(|e| secrets.iter().any(|s| hmac_matches(s.as_bytes(), &[t.as_bytes(), b".", body], e)))
        }
        Provider::Slack => {
            let ts = required(&header, "X-Slack-Request-Timestamp")?;
            let sig = required(&header, "X-Slack-Signature")?;
            timestamp_in_window(ts, "X-Slack-Request-Timestamp", now)?;
            let expected = sig.strip_prefix("v0=").and_then(hex_of);
            expected.is_some_and(|e| {
                secrets.iter().any(|s| hmac_matches(s.as_bytes(), &[b"v0:", ts.as_bytes(), b":", body], &e))
            })
        }
        Provider::Standard => {
            let id = required(&header, "webhook-id")?;
            let ts = required(&header, "webhook-timestamp")?;
            let sigs = required(&header, "webhook-signature")?;
            timestamp_in_window(ts, "webhook-timestamp", now)?;
            let expected: Vec<Vec<u8>> = sigs
                .split(' ')
                .filter_map(|s| s.strip_prefix("v1,"))
                .filter_map(|b| base64_simd::STANDARD.decode_to_vec(b).ok())
                .collect();
            let keys: Vec<Vec<u8>> = secrets.iter().filter_map(|s| standard_key(s)).collect();
            expected.iter().any(|e| {
                keys.iter().any(|k| hmac_matches(k, &[id.as_bytes(), b".", ts.as_bytes(), b".", body], e))
            })
        }
        Provider::Hmac => {
            let name = config.header.as_deref().unwrap_or(HMAC_DEFAULT_HEADER);
            let sig = required(&header, name)?;
            let sig = sig.strip_prefix(config.prefix.as_deref().unwrap_or("")).unwrap_or_default();
            let expected = match config.encoding.unwrap_or_default() {
                Encoding::Hex => hex_of(sig),
                Encoding::Base64 => base64_simd::STANDARD.decode_to_vec(sig.trim()).ok(),
            };
            expected.is_some_and(|e| secrets.iter().any(|s| hmac_matches(s.as_bytes(), &[body], &e)))
        }
    };
    if matched {
        Ok(())
    } else {
        Err(unauthorized("the signature does not match"))
    }
}

/// What a verified delivery is: its event type and its delivery id, where the provider says them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Delivery {
    pub event: Option<String>,
    pub delivery_id: Option<String>,
}

/// Reads the event type and delivery id of a verified delivery.
pub fn identify<'a>(
    provider: Provider,
    header: impl Fn(&str) -> Option<&'a str>,
    body: &Map<String, Value>,
) -> Delivery {
    let head = |name: &str| header(name).map(str::to_string);
    let field = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    match provider {
        Provider::Github => {
            Delivery { event: head("X-GitHub-Event"), delivery_id: head("X-GitHub-Delivery") }
        }
        Provider::Gitlab => {
            Delivery { event: head("X-Gitlab-Event"), delivery_id: head("X-Gitlab-Event-UUID") }
        }
        Provider::Stripe => Delivery { event: field(body.get("type")), delivery_id: field(body.get("id")) },
        Provider::Slack => Delivery {
            event: field(body.get("event").and_then(|e| e.get("type"))).or_else(|| field(body.get("type"))),
            delivery_id: field(body.get("event_id")),
        },
        Provider::Standard => Delivery { event: field(body.get("type")), delivery_id: head("webhook-id") },
        Provider::Hmac => Delivery { event: None, delivery_id: head("Idempotency-Key") },
    }
}
