//! API-key authentication and roles for the management routes.
//!
//! ZenML routes take `Authorization: Bearer <key>`. Mage routes also take `X-API-KEY: <key>` and
//! `?api_key=<key>`; a request may carry several (Mage's own clients send `api_key` and a Bearer token
//! together) and is let in if any of them is a valid key. Keys are looked up by their SHA-256 and
//! compared in constant time (`domain::api_key`).

use super::routes::{Access, Dialect};
use super::ApiRequest;
use crate::domain::Role;
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

/// Ok if the request carries a key whose role allows `access`.
pub async fn authorize(app: &App, req: &ApiRequest, access: Access, dialect: Dialect) -> Result<()> {
    let presented = credentials(req, dialect);
    if presented.is_empty() {
        return Err(Error::Unauthenticated);
    }
    let mut best: Option<Role> = None;
    for secret in presented {
        if let Some(key) = app.store.find_api_key(secret).await? {
            if best != Some(Role::Write) {
                best = Some(key.role);
            }
        }
    }
    match (best, access) {
        (None, _) => Err(Error::Unauthorized("Invalid API key".into())),
        (Some(Role::Read), Access::Write) => {
            Err(Error::Forbidden("this API key has the read role and may not write".into()))
        }
        (Some(_), Access::Read | Access::Write) => Ok(()),
        (Some(_), Access::Token) => Err(Error::Internal("token routes are not API-key routes".into())),
    }
}
