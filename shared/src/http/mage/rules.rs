//! `POST /api/pipeline_schedules/{id}/rules/test`: what a trigger of the schedule with this body and
//! these headers would do under its payload rules and flow control (SPEC §12) — without a run: nothing
//! is written. Answers `{"rules_test": {"outcome", "skipped", "rule", "key", "event_variables",
//! "variables", "slots"}, "metadata": null}`; `outcome` is what the live path would answer now
//! (`new_run`, `queued`, `cancelling_running` or `skipped`), judged from the key's slots item as it
//! stands (`slots`: held and waiting runs, and the limit), which a concurrent trigger may change.

use serde_json::{json, Map};

use super::path_id;
use super::triggers::{decide, map_body};
use crate::admission::{self, Admission, Limits, Waiter};
use crate::flow::timing::{self, DebounceStep, Timing, Turn};
use crate::flow::OnLimit;
use crate::http::{ApiRequest, ApiResponse};
use crate::{App, Error, Result};

pub async fn test(app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    let id = path_id(req, "pipeline schedule")?;
    let schedule = app
        .store
        .get_schedule(id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("No pipeline schedule with id {id}")))?
        .value;
    let mapped = map_body(req.json_object()?)?;
    let (variables, d) = decide(&schedule, &mapped, &req.headers, Map::new())?;
    let limits = Limits::of(&schedule, d.key.as_deref()).filter(|_| d.skipped.is_none());
    let mut slots = serde_json::Value::Null;
    let mut outcome = if d.skipped.is_some() { "skipped" } else { "new_run" };
    if let Some(l) = limits {
        let current = app.store.slots(&l.slots).await?.map(|v| v.value).unwrap_or_default();
        // The live path's own decision (`admission::decide`), for a run that would come now.
        let waiter = Waiter { uuid: uuid::Uuid::nil(), execution_date: app.clock.now(), id: 0 };
        outcome = match admission::decide(&l, current.clone(), None, waiter) {
            Ok(Admission::Holds(..)) => "new_run",
            Ok(Admission::Waits(..)) => "queued",
            Ok(Admission::Supersedes(..)) => "cancelling_running",
            Ok(Admission::Skipped | Admission::Refused) => "skipped",
            // The waiting list is full (2,000 runs; the live path answers 429): said by `on_limit`.
            Err(_) if l.on_limit == OnLimit::CancelRunning => "cancelling_running",
            Err(_) => "queued",
        };
        slots = json!({
            "held": current.holders.len(),
            "waiting": current.waiting.len(),
            "limit": (l.limit != usize::MAX).then_some(l.limit),
        });
    }
    // Debounce and throttle: what the key's window or pace says now (`flow::timing`).
    let mut start_at = None;
    let mut retry_after_s = None;
    let now = app.clock.now();
    match Timing::of(&schedule, d.key.as_deref()).filter(|_| d.skipped.is_none()) {
        Some(Timing::Debounce(key, deb)) => {
            let current = app.store.window(&key).await?;
            let read = current.as_ref().map(|v| (&v.value, v.version));
            (outcome, start_at) = match timing::debounce_step(read, &deb, d.event_variables.as_ref(), now) {
                DebounceStep::Open { start_at, .. } => ("deferred", Some(start_at)),
                DebounceStep::Merge { window, .. } => ("merged", Some(window.start_at)),
            };
        }
        Some(Timing::Throttle(key, t)) => {
            let current = app.store.pace(&key).await?;
            match timing::turn(current.as_ref().map(|v| &v.value), &t, now) {
                Turn::At { start, .. } if start > now => (outcome, start_at) = ("deferred", Some(start)),
                Turn::At { .. } => {}
                Turn::Over { retry_after_s: s } => (outcome, retry_after_s) = ("rate_limited", Some(s)),
            }
        }
        None => {}
    }
    Ok(ApiResponse::ok(&json!({
        "rules_test": {
            "outcome": outcome,
            "start_at": start_at,
            "retry_after_s": retry_after_s,
            "skipped": d.skipped,
            "rule": d.rule,
            "key": d.key,
            "event_variables": d.event_variables,
            "variables": variables,
            "slots": slots,
        },
        "metadata": null,
    })))
}
