//! Notifications when a run ends (SPEC §10): where to send them (`settings.notifications` on a
//! schedule, `notifications` on a pipeline version — copied onto each run when it is made), and each
//! delivery owed, kept on the run with every attempt, so that answers show it and the worker delivers it
//! through the run queue: retried with backoff for up to 24 hours, and never again once delivered.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// At most this many notification targets on a schedule or a pipeline version.
pub const MAX_TARGETS: usize = 10;
/// A delivery is retried until this long after the event, then given up.
pub const GIVE_UP_AFTER_H: i64 = 24;
/// Attempts kept on the run per delivery (the latest).
const KEPT_ATTEMPTS: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyEvent {
    Completed,
    Failed,
    Cancelled,
    SlaMissed,
}

impl NotifyEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::Completed => "completed",
            NotifyEvent::Failed => "failed",
            NotifyEvent::Cancelled => "cancelled",
            NotifyEvent::SlaMissed => "sla_missed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NotifyFormat {
    /// Kickoff's run summary, signed like block invocations.
    #[default]
    Json,
    /// A Slack incoming-webhook message.
    Slack,
}

/// Where to send a notification, and for which events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyTarget {
    pub url: String,
    pub on: Vec<NotifyEvent>,
    #[serde(default)]
    pub format: NotifyFormat,
}

/// Checks a list of targets (`field` names it in errors).
pub fn validate(field: &str, targets: &[NotifyTarget]) -> Result<()> {
    if targets.len() > MAX_TARGETS {
        return Err(Error::Unprocessable(format!("{field}: at most {MAX_TARGETS} targets")));
    }
    for (i, t) in targets.iter().enumerate() {
        let ok_url = t.url.len() <= 2048
            && (t.url.starts_with("https://") || t.url.starts_with("http://"))
            && t.url.parse::<http::Uri>().is_ok_and(|u| u.host().is_some());
        if !ok_url {
            return Err(Error::Unprocessable(format!("{field}[{i}].url: an http(s) URL, got {:?}", t.url)));
        }
        crate::egress::check_url(&format!("{field}[{i}].url"), &t.url, crate::egress::Policy::current())?;
        if t.on.is_empty() {
            return Err(Error::Unprocessable(format!(
                "{field}[{i}].on: name at least one of completed, failed, cancelled, sla_missed"
            )));
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    /// Not delivered within 24 hours: given up.
    Failed,
}

/// One attempt of a delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub at: DateTime<Utc>,
    /// `HTTP <status>`, or why no answer came.
    pub result: String,
}

/// A notification owed for one event of a run, with its attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub event: NotifyEvent,
    pub url: String,
    pub format: NotifyFormat,
    pub status: DeliveryStatus,
    /// Attempts started (claimed).
    pub attempts: u32,
    pub created: DateTime<Utc>,
    /// When the next attempt may start (after a failed one's backoff).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_at: Option<DateTime<Utc>>,
    /// The claimed attempt's lease: until then no other worker starts one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_until: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Attempt>,
}

impl Notification {
    pub fn new(event: NotifyEvent, target: &NotifyTarget, now: DateTime<Utc>) -> Notification {
        Notification {
            event,
            url: target.url.clone(),
            format: target.format,
            status: DeliveryStatus::Pending,
            attempts: 0,
            created: now,
            next_at: None,
            lease_until: None,
            history: Vec::new(),
        }
    }

    /// When the delivery needs a worker next: its lease's end while claimed, else its next attempt's
    /// time (at once: its creation); `None` once delivered or given up.
    pub fn due(&self) -> Option<DateTime<Utc>> {
        if self.status != DeliveryStatus::Pending {
            return None;
        }
        Some(self.lease_until.or(self.next_at).unwrap_or(self.created))
    }

    /// Records attempt `attempt`'s result at `now`: delivered on a 2xx; otherwise retried after
    /// 30 s · 2^(n−1) (at most an hour), or given up 24 hours after the event.
    pub fn record(&mut self, delivered: bool, result: String, now: DateTime<Utc>) {
        self.lease_until = None;
        self.history.push(Attempt { at: now, result });
        if self.history.len() > KEPT_ATTEMPTS {
            self.history.remove(0);
        }
        if delivered {
            self.status = DeliveryStatus::Delivered;
            self.next_at = None;
            return;
        }
        let backoff = 30i64.saturating_mul(1i64 << self.attempts.saturating_sub(1).min(20)).min(3600);
        let next = now + Duration::seconds(backoff);
        if next > self.created + Duration::hours(GIVE_UP_AFTER_H) {
            self.status = DeliveryStatus::Failed;
            self.next_at = None;
        } else {
            self.next_at = Some(next);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> NotifyTarget {
        NotifyTarget {
            url: "https://example.com/hook".into(),
            on: vec![NotifyEvent::Failed],
            format: NotifyFormat::Json,
        }
    }

    #[test]
    fn a_failing_delivery_backs_off_and_gives_up_after_24_hours() {
        let t0 = Utc::now();
        let mut n = Notification::new(NotifyEvent::Failed, &target(), t0);
        assert_eq!(n.due(), Some(t0));
        let mut now = t0;
        let mut waits = Vec::new();
        while n.status == DeliveryStatus::Pending {
            n.attempts += 1;
            n.record(false, "HTTP 500".into(), now);
            if let Some(next) = n.next_at {
                waits.push((next - now).num_seconds());
                now = next;
            }
        }
        assert_eq!(&waits[..4], &[30, 60, 120, 240]);
        assert!(waits.iter().all(|w| *w <= 3600));
        assert_eq!(n.status, DeliveryStatus::Failed);
        assert!(now <= t0 + Duration::hours(24) && now > t0 + Duration::hours(23), "{now} {t0}");
        assert_eq!(n.history.len(), 10, "the latest attempts are kept");
        assert_eq!(n.due(), None);
    }

    #[test]
    fn a_delivered_notification_is_never_due_again() {
        let now = Utc::now();
        let mut n = Notification::new(NotifyEvent::Failed, &target(), now);
        n.attempts = 1;
        n.record(true, "HTTP 204".into(), now);
        assert_eq!(n.status, DeliveryStatus::Delivered);
        assert_eq!(n.due(), None);
    }

    #[test]
    fn targets_are_checked() {
        assert!(validate("notifications", &[target()]).is_ok());
        let bad = NotifyTarget { url: "ftp://x".into(), ..target() };
        assert!(validate("notifications", &[bad]).unwrap_err().to_string().contains("notifications[0].url"));
        let none = NotifyTarget { on: vec![], ..target() };
        assert!(validate("settings.notifications", &[none]).is_err());
    }
}
