//! ZenML's connect routes, what the stock `zenml` client (0.98) reads before it does anything:
//! `POST /api/v1/login`, `GET /api/v1/info`, `GET /api/v1/current-user`, `GET /api/v1/projects`,
//! `GET /api/v1/projects/{id}`, `GET /api/v1/stacks`, `GET /api/v1/stacks/{id}`.
//!
//! Kickoff has no users, projects or stacks; these answer fixed entities ([`envelope::project`],
//! [`envelope::user`], [`envelope::stack`]), the same on every deployment and for every caller, so
//! that the client's checks pass (`docs/zenml.md` lists every value). Login takes a Kickoff API key
//! and answers the key itself as the access token: the client already holds the key, so handing it
//! back exposes nothing new, and every function checks it as it checks any Bearer key (no signing
//! secret to share between ~45 functions, revocation within 5 s as for keys). The key is never
//! logged; the login is, with the key's name.

use serde_json::{json, Value};

use super::envelope::{self, PROJECT_ID, STACK_ID};
use super::page::{FieldValue, ListQuery};
use crate::http::{parse_query, ApiRequest, ApiResponse};
use crate::{App, Error, Result};

/// The ZenML version whose client and models Kickoff answers as (the client warns on a mismatch).
pub const ZENML_VERSION: &str = "0.98.0";

/// `POST /api/v1/login`: ZenML's OAuth2 form. `grant_type=zenml-api-key` with the key as `password`
/// (what `ZENML_STORE_API_KEY` and `zenml login --api-key` send), or the password grant (no
/// `grant_type`, or `password`) with any `username` and the key as `password`.
pub async fn login(app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    let body = std::str::from_utf8(&req.body)
        .map_err(|_| Error::BadRequest("the login form must be UTF-8".into()))?;
    let form = parse_query(body);
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    match field("grant_type").unwrap_or("password") {
        "zenml-api-key" | "password" | "" => {}
        other => {
            return Err(Error::Unprocessable(format!(
                "grant_type: {other:?} is not supported; log in with a Kickoff API key \
                 (grant_type=zenml-api-key or password, the key as password)"
            )))
        }
    }
    let secret = field("password").filter(|p| !p.is_empty()).ok_or_else(|| {
        Error::Unprocessable("password: the form must carry a Kickoff API key as password".into())
    })?;
    let now = app.clock.now();
    let key = app
        .store
        .find_api_key(secret)
        .await?
        .filter(|k| k.usable(now))
        .ok_or_else(|| Error::Unauthorized("Invalid API key".into()))?;
    tracing::info!(key = %key.name, function = "login", "login");
    let expires_in = key.expires_at.map(|t| (t - now).num_seconds().max(0));
    Ok(ApiResponse::ok(&json!({
        "access_token": secret,
        "token_type": "bearer",
        "expires_in": expires_in,
        "refresh_token": Value::Null,
        "csrf_token": Value::Null,
        "scope": Value::Null,
        "device_id": Value::Null,
        "device_metadata": Value::Null,
    })))
}

/// `GET /api/v1/info`: a fixed `ServerModel`. Not a ZenML Pro server (no `pro_*` fields), so the
/// client takes the API-key login and no Pro paths.
pub async fn info(_app: &App, _req: &ApiRequest) -> Result<ApiResponse> {
    Ok(ApiResponse::ok(&json!({
        "id": envelope::SERVER_ID,
        "name": "kickoff",
        "version": ZENML_VERSION,
        "active": true,
        "debug": false,
        "deployment_type": "other",
        "database_type": "other",
        "secrets_store_type": "none",
        "auth_scheme": "OAUTH2_PASSWORD_BEARER",
        "server_url": "",
        "dashboard_url": "",
        "analytics_enabled": false,
        "metadata": { "kickoff": env!("CARGO_PKG_VERSION") },
        "last_user_activity": Value::Null,
        "pro_dashboard_url": Value::Null,
        "pro_api_url": Value::Null,
        "pro_organization_id": Value::Null,
        "pro_organization_name": Value::Null,
        "pro_workspace_id": Value::Null,
        "pro_workspace_name": Value::Null,
    })))
}

/// `GET /api/v1/current-user`: the one fixed service account every key acts as.
pub async fn current_user(_app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    Ok(ApiResponse::ok(&envelope::user(super::page::hydrate(req, true)?)))
}

/// A list of one fixed entity: `name`, `id`, `created`, `updated` filter it, ZenML's paging applies.
fn list_of_one(
    req: &ApiRequest,
    id: uuid::Uuid,
    name: &str,
    render: impl Fn(bool) -> Value,
) -> Result<ApiResponse> {
    const FIELDS: &[&str] = &["id", "name", "created", "updated"];
    let q = ListQuery::parse(req, FIELDS, &["created", "updated"], FIELDS)?;
    let field = |_: &(), f: &str| {
        Some(match f {
            "id" => FieldValue::Text(id.to_string()),
            "name" => FieldValue::Text(name.to_string()),
            "created" | "updated" => FieldValue::Time(envelope::FIXED_TIME),
            _ => return None,
        })
    };
    let page = q.apply(vec![()], field, |_| id.to_string())?;
    Ok(ApiResponse::ok(&page.to_json(|_| render(q.hydrate))))
}

/// The fixed entity named by `{id}`, its UUID or its name: 404 for any other.
fn one_of_one(
    req: &ApiRequest,
    id: uuid::Uuid,
    name: &str,
    what: &str,
    render: impl Fn(bool) -> Value,
) -> Result<ApiResponse> {
    let asked = req.param("id");
    let hydrate = super::page::hydrate(req, true)?;
    if asked == name || uuid::Uuid::parse_str(asked).is_ok_and(|u| u == id) {
        Ok(ApiResponse::ok(&render(hydrate)))
    } else {
        Err(Error::NotFound(format!("No {what} with name or id {asked}; Kickoff has one, {name:?} ({id})")))
    }
}

pub async fn list_projects(_app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    list_of_one(req, PROJECT_ID, envelope::PROJECT_NAME, envelope::project)
}

pub async fn get_project(_app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    one_of_one(req, PROJECT_ID, envelope::PROJECT_NAME, "project", envelope::project)
}

pub async fn list_stacks(_app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    list_of_one(req, STACK_ID, envelope::STACK_NAME, envelope::stack)
}

pub async fn get_stack(_app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    one_of_one(req, STACK_ID, envelope::STACK_NAME, "stack", envelope::stack)
}
