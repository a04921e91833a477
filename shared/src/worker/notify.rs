//! Delivering a run's notifications (SPEC §10): a `Notify` message claims attempt `n` of one delivery
//! on the run item (a lease, so a duplicate message never sends it twice for one attempt), POSTs it
//! signed like a block invocation (`webhook-id` stays the same across attempts, so a receiver can tell
//! a repeat), and records the answer: a 2xx delivers it for good; anything else is retried with
//! backoff (`Notification::record`) until 24 hours after the event. The attempts show on the run.
//!
//! Crash points: before the claim's write, the message is redelivered; after it, the lease's end is the
//! run's wake time, so the sweep queues a `StartRun`, whose [`plan::pending`] re-sends the delivery's
//! `Notify` — the lost attempt is given up and the next one sent. A worker stopped after the receiver
//! answered but before recording it makes the receiver see the same `webhook-id` twice; no other path
//! sends a delivery twice.

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use super::plan::{self, Send};
use super::{Worker, MAX_RACES};
use crate::domain::notify::{DeliveryStatus, Notification, NotifyFormat};
use crate::domain::{BlockRun, BlockRunStatus, Run};
use crate::{Error, Result};

/// How long a claimed delivery attempt holds before another worker may try.
const LEASE_S: i64 = super::executor::NOTIFY_TIMEOUT_S as i64 + 50;

/// The `webhook-id` of a delivery: the same for every attempt.
pub fn delivery_id(run: &Run, delivery: usize) -> String {
    format!("notification-{}-{delivery}", run.uuid)
}

/// The body a notification sends: Kickoff's run summary, or a Slack incoming-webhook message.
pub fn payload(run: &Run, blocks: &[BlockRun], n: &Notification) -> Value {
    let failed: Vec<Value> = blocks
        .iter()
        .filter(|b| b.status == BlockRunStatus::Failed)
        .map(|b| json!({ "block": b.block_uuid, "error": b.metrics.as_ref().and_then(|m| m.get("error")).cloned() }))
        .collect();
    match n.format {
        NotifyFormat::Json => json!({
            "type": format!("run.{}", n.event.as_str()),
            "event": n.event.as_str(),
            "run": {
                "id": run.id,
                "uuid": run.uuid,
                "name": run.name,
                "pipeline": run.pipeline_name,
                "pipeline_version": run.pipeline_version,
                "pipeline_schedule_id": run.schedule_id,
                "status": run.status.as_mage(),
                "execution_date": run.execution_date,
                "started_at": run.started_at,
                "completed_at": run.completed_at,
                "passed_sla": run.passed_sla,
                "failed_blocks": failed,
            },
        }),
        NotifyFormat::Slack => {
            let what = match n.event.as_str() {
                "sla_missed" => "missed its SLA".to_string(),
                other => other.to_string(),
            };
            let mut text = format!(
                "Kickoff: run {} of pipeline {} (version {}) {what}.",
                run.name, run.pipeline_name, run.pipeline_version
            );
            for f in &failed {
                let error = f["error"].as_str().unwrap_or("no error message");
                text.push_str(&format!("\n• block {} failed: {error}", f["block"].as_str().unwrap_or("?")));
            }
            json!({ "text": text })
        }
    }
}

impl Worker {
    /// `Notify`: attempt `attempt` of delivery `delivery` of the run.
    pub(super) async fn notify(&self, run_uuid: Uuid, delivery: usize, attempt: u32) -> Result<()> {
        let mut claimed = None;
        for _ in 0..MAX_RACES {
            let Some(state) = self.load(run_uuid).await? else { return Ok(()) };
            let (mut run, blocks) = state.values();
            let now = self.now();
            let Some(n) = run.notifications.get(delivery) else { return Ok(()) };
            if n.status != DeliveryStatus::Pending {
                return Ok(()); // delivered, or given up
            }
            if n.attempts >= attempt {
                let lost = n.attempts == attempt && n.lease_until.is_some_and(|l| l <= now);
                if !lost {
                    // A duplicate, or a redelivery while the attempt's lease holds: re-send the
                    // delivery's own follow-up (a re-check at the lease's end) and nothing more.
                    return self
                        .send_all(plan::notification(&run, delivery, now).into_iter().collect())
                        .await;
                }
                // The worker that claimed this attempt is gone: the next attempt, now.
                tracing::warn!(run_uuid = %run_uuid, delivery, attempt, "notification attempt lost with its worker");
                let n = &mut run.notifications[delivery];
                n.lease_until = None;
                n.next_at = Some(now);
                if self.commit(&state, run.clone(), &blocks).await? {
                    return self
                        .send_all(plan::notification(&run, delivery, now).into_iter().collect())
                        .await;
                }
                continue;
            }
            if attempt != n.attempts + 1 {
                return Ok(()); // a stale message
            }
            if let Some(t) = n.next_at.filter(|t| *t > now) {
                let again = crate::queue::Message::Notify { run_uuid, delivery, attempt };
                return self.send_all(vec![Send { message: again, delay_s: plan::secs_until(t, now) }]).await;
            }
            let n = &mut run.notifications[delivery];
            n.attempts = attempt;
            n.lease_until = Some(now + Duration::seconds(LEASE_S));
            if self.commit(&state, run.clone(), &blocks).await? {
                claimed = Some((run, blocks));
                break;
            }
        }
        let Some((run, blocks)) = claimed else {
            return Err(Error::Conflict(format!("run {run_uuid}: too many concurrent changes")));
        };
        let n = &run.notifications[delivery];
        let body = serde_json::to_vec(&payload(&run, &blocks, n)).map_err(Error::internal)?;
        tracing::info!(run_uuid = %run_uuid, delivery, attempt, event = n.event.as_str(), "sending a notification");
        let answer = self.executors.notify(&n.url, &delivery_id(&run, delivery), body).await;
        let (delivered, result) = match answer {
            Ok(status) => ((200..300).contains(&status), format!("HTTP {status}")),
            Err(e) => (false, e),
        };
        self.record_notification(run_uuid, delivery, attempt, delivered, result).await
    }

    /// Records a delivery attempt's result (if its claim still holds) and queues the next attempt.
    async fn record_notification(
        &self,
        run_uuid: Uuid,
        delivery: usize,
        attempt: u32,
        delivered: bool,
        result: String,
    ) -> Result<()> {
        for _ in 0..MAX_RACES {
            let Some(state) = self.load(run_uuid).await? else { return Ok(()) };
            let (mut run, blocks) = state.values();
            let now: DateTime<Utc> = self.now();
            let Some(n) = run.notifications.get_mut(delivery) else { return Ok(()) };
            if n.status != DeliveryStatus::Pending || n.attempts != attempt || n.lease_until.is_none() {
                return Ok(()); // the claim was given up meanwhile
            }
            if !delivered {
                tracing::warn!(run_uuid = %run_uuid, delivery, attempt, result = %result, "notification not delivered");
            }
            n.record(delivered, result.clone(), now);
            if self.commit(&state, run.clone(), &blocks).await? {
                return self.send_all(plan::notification(&run, delivery, now).into_iter().collect()).await;
            }
        }
        Err(Error::Conflict(format!("run {run_uuid}: too many concurrent changes")))
    }
}
