//! The Mage dialect (`/api`): bodies wrapped in the model's name, `_limit`/`_offset` lists with
//! `{"metadata": {"count", "next"}}`, times like `2023-02-16 06:40:49.769087+00:00`, and one module per
//! resource.

pub mod backfills;
pub mod rules;
pub mod runs;
pub mod schedules;
pub mod triggers;
pub mod view;
pub mod webhook;

use serde_json::{json, Map, Value};

use crate::domain::bounds;
use crate::http::{json_type_name, ApiRequest};
use crate::{Error, Result};

/// An integer id from the path; anything else is a 404 (no such record can exist).
pub fn path_id(req: &ApiRequest, what: &str) -> Result<i64> {
    path_id_named(req, "id", what)
}

/// The integer path parameter `param` (404 naming `what` if it is none).
pub fn path_id_named(req: &ApiRequest, param: &str, what: &str) -> Result<i64> {
    let raw = req.param(param);
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| Error::NotFound(format!("No {what} with id {raw:?}")))
}

/// 404 unless a pipeline of this name (Mage's `pipeline_uuid`) exists.
pub async fn require_pipeline(app: &crate::App, name: &str) -> Result<()> {
    if app.store.pipeline_versions(name).await?.is_empty() {
        return Err(Error::NotFound(format!("No pipeline named {name:?}")));
    }
    Ok(())
}

/// `_limit` (1..=1000, default 40) and `_offset` (0..=100,000, default 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Paging {
    pub limit: usize,
    pub offset: usize,
}

impl Paging {
    pub fn parse(req: &ApiRequest) -> Result<Paging> {
        let limit = match req.query_value("_limit") {
            None => 40,
            Some(v) => v.parse::<usize>().ok().filter(|n| (1..=1000).contains(n)).ok_or_else(|| {
                Error::Unprocessable(format!("_limit: must be a whole number from 1 to 1000, got {v:?}"))
            })?,
        };
        let offset = match req.query_value("_offset") {
            None => 0,
            Some(v) => v.parse::<usize>().ok().filter(|n| *n <= bounds::MAX_OFFSET).ok_or_else(|| {
                Error::Unprocessable(format!(
                    "_offset: must be a whole number from 0 to {}, got {v:?}",
                    bounds::MAX_OFFSET
                ))
            })?,
        };
        Ok(Paging { limit, offset })
    }

    /// Cuts one page and answers `{"<name>": [...], "metadata": {"count", "next"}}`.
    pub fn page<'a, T>(&self, items: &'a [T]) -> (&'a [T], Value) {
        let total = items.len();
        let start = self.offset.min(total);
        let end = (start + self.limit).min(total);
        (&items[start..end], json!({ "count": total, "next": end < total }))
    }
}

/// The object under `name` in a wrapped body (`{"pipeline_schedule": {...}}`); 422 if it is missing or
/// not an object, or if other keys stand beside it.
pub fn unwrap_body(body: Map<String, Value>, name: &str) -> Result<Map<String, Value>> {
    let extra: Vec<&str> = body.keys().filter(|k| *k != name).map(String::as_str).collect();
    if !extra.is_empty() {
        return Err(Error::Unprocessable(format!(
            "unknown field(s) {}; the body is {{\"{name}\": {{...}}}}",
            extra.join(", ")
        )));
    }
    match body.get(name) {
        Some(Value::Object(inner)) => Ok(inner.clone()),
        Some(other) => {
            Err(Error::Unprocessable(format!("{name}: must be an object, got {}", json_type_name(other))))
        }
        None => Err(Error::Unprocessable(format!("the body must be {{\"{name}\": {{...}}}}"))),
    }
}
