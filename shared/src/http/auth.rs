//! API-key authentication and roles for the management routes.
//!
//! ZenML routes take `Authorization: Bearer <key>`. Mage routes also take `X-API-KEY: <key>` and
//! `?api_key=<key>`; a request may carry several (Mage's own clients send `api_key` and a Bearer token
//! together) and is let in if any of them is a valid key. Keys are looked up by their SHA-256 and
//! compared in constant time (`domain::api_key`).
//!
//! A process remembers the keys it found for [`KEY_CACHE_S`] seconds (by their SHA-256, never the secret),
//! so that a warm function checks a known key without a read: the ZenML trigger then takes its three
//! round trips (build, write, send; SPEC §11) while it calls more than once per 5 s. A key revoked,
//! expired or deleted is refused by every warm function within those 5 s. Keys not found, revoked or
//! expired are never remembered. Each request a key lets in is logged with the key's name (never the
//! key) and the function it called: the audit of who did what.

use chrono::{DateTime, Utc};

use super::routes::{Access, Dialect};
use super::ApiRequest;
use crate::domain::Role;
use crate::remembered::Remembered;
use crate::{App, Error, Result};

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(req: &ApiRequest) -> Option<&str> {
    let value = req.header("authorization")?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

fn credentials(req: &ApiRequest, dialect: Dialect) -> Vec<&str> {
    let mut found: Vec<&str> = bearer(req).into_iter().collect();
    if dialect == Dialect::Mage {
        found.extend(req.header("x-api-key").filter(|k| !k.is_empty()));
        found.extend(req.query_value("api_key").filter(|k| !k.is_empty()));
    }
    found
}

/// How long a process trusts a key it found without reading it again.
pub const KEY_CACHE_S: i64 = 5;
/// The keys found, by the SHA-256 of their secret: their role, name, and until when they are trusted
/// (the cache's end, or the key's expiry if sooner).
static FOUND_KEYS: Remembered<String, (Role, String, DateTime<Utc>)> = Remembered::new(1_000);

/// The role and name of the key `secret`, if the table has it usable (or had it less than
/// [`KEY_CACHE_S`] ago).
async fn role_of(app: &App, secret: &str) -> Result<Option<(Role, String)>> {
    let hash = crate::domain::api_key::hash_secret(secret);
    let now = app.clock.now();
    if let Some((role, name, _)) = FOUND_KEYS.get(&hash).filter(|(_, _, until)| *until > now) {
        return Ok(Some((role, name)));
    }
    let Some(key) = app.store.find_api_key(secret).await?.filter(|k| k.usable(now)) else { return Ok(None) };
    let until = (now + chrono::Duration::seconds(KEY_CACHE_S))
        .min(key.expires_at.unwrap_or(DateTime::<Utc>::MAX_UTC));
    FOUND_KEYS.insert(hash, (key.role, key.name.clone(), until));
    Ok(Some((key.role, key.name)))
}

/// The role of the request's best key, if it allows `access`; the request is logged with the key's
/// name.
pub async fn authorize(
    app: &App,
    req: &ApiRequest,
    access: Access,
    dialect: Dialect,
    function: &str,
) -> Result<Role> {
    let presented = credentials(req, dialect);
    if presented.is_empty() {
        return Err(Error::Unauthenticated);
    }
    let mut best: Option<(Role, String)> = None;
    for secret in presented {
        if let Some(found) = role_of(app, secret).await? {
            if best.as_ref().is_none_or(|(role, _)| *role != Role::Write) {
                best = Some(found);
            }
        }
    }
    match (best, access) {
        (None, _) => Err(Error::Unauthorized("Invalid API key".into())),
        (Some((Role::Read, name)), Access::Write) => {
            tracing::warn!(key = %name, function, "a read key asked to write");
            Err(Error::Forbidden("this API key has the read role and may not write".into()))
        }
        (Some((role, name)), Access::Read | Access::Write) => {
            // The record of each key's use (its last use: the newest line with its name).
            let kind = if access == Access::Write { "write request" } else { "read request" };
            tracing::info!(key = %name, function, method = %req.method, "{kind}");
            Ok(role)
        }
        (Some(_), Access::Token | Access::Open) => {
            Err(Error::Internal("token and open routes are not API-key routes".into()))
        }
    }
}
