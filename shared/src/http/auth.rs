//! API-key authentication and roles for the management routes.
//!
//! ZenML routes take `Authorization: Bearer <key>`. Mage routes also take `X-API-KEY: <key>` and
//! `?api_key=<key>`; a request may carry several (Mage's own clients send `api_key` and a Bearer token
//! together) and is let in if any of them is a valid key. Keys are looked up by their SHA-256 and
//! compared in constant time (`domain::api_key`).
//!
//! A process remembers the keys it found for [`KEY_CACHE_S`] seconds (by their SHA-256, never the secret),
//! so that a warm function checks a known key without a read: the ZenML trigger then takes its three
//! round trips (build, write, send; SPEC §11). A key deleted from the table still works in a warm
//! function for at most that long, as an API Gateway authorizer's cached answer would. Keys not found
//! are never remembered.

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
pub const KEY_CACHE_S: i64 = 60;
/// The keys found, by the SHA-256 of their secret: their role and until when they are trusted.
static FOUND_KEYS: Remembered<String, (Role, DateTime<Utc>)> = Remembered::new(1_000);

/// The role of the key `secret`, if the table has it (or had it less than [`KEY_CACHE_S`] ago).
async fn role_of(app: &App, secret: &str) -> Result<Option<Role>> {
    let hash = crate::domain::api_key::hash_secret(secret);
    let now = app.clock.now();
    if let Some((role, _)) = FOUND_KEYS.get(&hash).filter(|(_, until)| *until > now) {
        return Ok(Some(role));
    }
    let Some(key) = app.store.find_api_key(secret).await? else { return Ok(None) };
    FOUND_KEYS.insert(hash, (key.role, now + chrono::Duration::seconds(KEY_CACHE_S)));
    Ok(Some(key.role))
}

/// The role of the request's best key, if it allows `access`.
pub async fn authorize(app: &App, req: &ApiRequest, access: Access, dialect: Dialect) -> Result<Role> {
    let presented = credentials(req, dialect);
    if presented.is_empty() {
        return Err(Error::Unauthenticated);
    }
    let mut best: Option<Role> = None;
    for secret in presented {
        if let Some(role) = role_of(app, secret).await? {
            if best != Some(Role::Write) {
                best = Some(role);
            }
        }
    }
    match (best, access) {
        (None, _) => Err(Error::Unauthorized("Invalid API key".into())),
        (Some(Role::Read), Access::Write) => {
            Err(Error::Forbidden("this API key has the read role and may not write".into()))
        }
        (Some(role), Access::Read | Access::Write) => Ok(role),
        (Some(_), Access::Token) => Err(Error::Internal("token routes are not API-key routes".into())),
    }
}
