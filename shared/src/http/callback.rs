//! `POST /api/block_runs/{id}/callback`: the target of an accepted (202) block attempt reports its end,
//! with `Authorization: Bearer <callback_token>` (the one-time token of the invocation) and
//! `{"status": "completed" | "failed", "metrics"?: {...}}`. Errors in the Mage shape.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::mage::{path_id, view};
use super::{auth, ApiRequest, ApiResponse};
use crate::worker::Worker;
use crate::{App, Error, Result};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Callback {
    status: CallbackStatus,
    #[serde(default)]
    metrics: Option<Map<String, Value>>,
}

#[derive(Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum CallbackStatus {
    Completed,
    Failed,
}

pub async fn handle(app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    let id = path_id(req, "block run")?;
    let token = auth::bearer(req)
        .ok_or_else(|| Error::Unauthorized("the callback token is required as a Bearer token".into()))?;
    let body: Callback = req.json()?;
    let worker = Worker::for_api(app.clone());
    let block = worker
        .callback(id, token, body.status == CallbackStatus::Completed, body.metrics.map(Value::Object))
        .await?;
    Ok(ApiResponse::ok(&view::one("block_run", view::block_run(&block))))
}
