//! `POST /api/pipeline_schedules/{id}/webhook`: provider-verified intake (SPEC §9) for an `api` schedule
//! with `settings.webhook`, instead of its token. In order: the schedule (404 without a webhook), the
//! signature over the exact bytes with the schedule's valid secrets (401: `webhook::verify`), an
//! inactive schedule (409), the JSON body (400); GitHub's `ping`, Slack's `url_verification` (its
//! `challenge` echoed), events not in `events` and pushes to branches not in `branches` answer 200
//! without a run; otherwise the run is written
//! and queued before the answer, `{"pipeline_run": {...}}`. A delivery id seen in the last 24 hours
//! answers its run again and creates nothing. The body maps as a token trigger's does; the run's
//! `variables.webhook` records the provider, event and delivery id. Nothing of the secret, the signature
//! or the body is logged.

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::triggers::{load, start_mapped, Follow, Reply};
use crate::domain::ScheduleStatus;
use crate::http::{wait, ApiRequest, ApiResponse};
use crate::trigger::Idempotency;
use crate::webhook::verify::{identify, verify};
use crate::webhook::Provider;
use crate::{App, Error, Result};

/// What makes a delivery "the same" for 24 hours. Providers that sign a timestamp (Stripe, Slack,
/// Standard Webhooks) sign their delivery id too, and a captured delivery expires with its window: the
/// delivery id. GitHub, GitLab and `hmac` sign no timestamp (GitLab signs nothing) and their delivery id
/// is not signed, so a captured delivery could be sent again under a new id: the key is the SHA-256 of
/// the exact body instead. A provider's retry (same id, same body) is caught as before; a replay under
/// a new id is caught too; a sender that means to start two runs with identical bodies within 24 hours
/// must make the bodies differ (a timestamp or a nonce), as `docs/webhooks.md` says.
fn replay_key(provider: Provider, delivery_id: Option<&str>, body: &[u8]) -> Option<String> {
    if provider.signs_timestamp() {
        return delivery_id.map(str::to_string);
    }
    Some(format!("body:{}", hex::encode(Sha256::digest(body))))
}

/// 200 without a run, saying why.
fn no_run(why: String) -> ApiResponse {
    ApiResponse::ok(&json!({ "pipeline_run": null, "ignored": why }))
}

pub async fn handle(app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    let wait = wait::param(req)?;
    let (schedule, prefetched) = load(app, req).await?;
    let Some(webhook) = schedule.settings.webhook.clone() else {
        return Err(Error::NotFound(format!(
            "pipeline schedule {} takes no webhooks: give it settings.webhook",
            schedule.id
        )));
    };
    let now = app.clock.now();
    let header = |name: &str| req.header(name);
    if let Err(e) = verify(&webhook, &webhook.secrets(now), header, &req.body, now) {
        tracing::warn!(schedule_id = schedule.id, provider = webhook.provider.as_str(), error = %e, "webhook refused");
        return Err(e);
    }
    if schedule.status != ScheduleStatus::Active {
        return Err(Error::Conflict("the pipeline schedule is inactive; activate it to trigger runs".into()));
    }
    let body = req.json_object()?;
    let delivery = identify(webhook.provider, header, &body);
    let event = delivery.event.clone();
    if webhook.provider == Provider::Github && event.as_deref() == Some("ping") {
        return Ok(no_run("ping".into()));
    }
    if webhook.provider == Provider::Slack
        && body.get("type").and_then(Value::as_str) == Some("url_verification")
    {
        let challenge = body.get("challenge").cloned().unwrap_or(Value::Null);
        return Ok(ApiResponse::ok(&json!({ "challenge": challenge })));
    }
    if !webhook.events.is_empty() && !event.as_ref().is_some_and(|e| webhook.events.contains(e)) {
        return Ok(no_run(format!(
            "event {} is not one of this schedule's events",
            event.as_deref().map_or("(none)".to_string(), |e| format!("{e:?}"))
        )));
    }
    if !webhook.takes_ref(&body) {
        let r = body.get("ref").and_then(Value::as_str).unwrap_or_default();
        return Ok(no_run(format!("ref {r:?} is not on one of this schedule's branches")));
    }
    let idempotency = replay_key(webhook.provider, delivery.delivery_id.as_deref(), &req.body)
        .map(|key| Idempotency::for_delivery(format!("webhook:{}", schedule.id), &key));
    let mut extra = Map::new();
    extra.insert(
        "webhook".into(),
        json!({ "provider": webhook.provider.as_str(), "event": event, "delivery_id": delivery.delivery_id }),
    );
    tracing::info!(
        schedule_id = schedule.id,
        provider = webhook.provider.as_str(),
        event = event.as_deref().unwrap_or(""),
        delivery_id = delivery.delivery_id.as_deref().unwrap_or(""),
        "webhook delivery verified"
    );
    let reply = Reply { wait, follow: Follow::Token };
    start_mapped(app, (schedule, prefetched), body, &req.headers, idempotency, extra, reply).await
}
