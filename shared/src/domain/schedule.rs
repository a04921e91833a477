//! Schedules (Mage: pipeline schedules, triggers): how and when a pipeline is run, with the secret token
//! that API triggers present.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::bounds;
use super::notify::NotifyTarget;
use super::timetable::{self, Timetable};
use super::RunStatus;
use crate::webhook::{WebhookConfig, WebhookInput};
use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleType {
    Api,
    Time,
}

impl ScheduleType {
    pub fn as_str(self) -> &'static str {
        match self {
            ScheduleType::Api => "api",
            ScheduleType::Time => "time",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleStatus {
    Active,
    Inactive,
}

impl ScheduleStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ScheduleStatus::Active => "active",
            ScheduleStatus::Inactive => "inactive",
        }
    }
}

/// `settings` of a schedule, as Mage names them. `timeout_status` is `failed` (the default) or
/// `cancelled`; `pipeline_run_limit` is at least 1.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_if_previous_running: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_blocks_to_fail: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline_run_limit: Option<u32>,
    /// Seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_initial_pipeline_run: Option<bool>,
    /// Where to notify when a run of the schedule ends (SPEC §10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications: Option<Vec<NotifyTarget>>,
    /// Provider-verified intake (SPEC §9), with its secrets: answers show [`WebhookConfig::view`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookConfig>,
    /// Flow control of an `api` schedule's triggers (SPEC §12, `flow`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_control: Option<crate::flow::FlowControl>,
    /// Payload rules of an `api` schedule's triggers (SPEC §12, `flow`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<crate::flow::Rule>>,
}

impl ScheduleSettings {
    fn validate(&self) -> Result<()> {
        if self.pipeline_run_limit == Some(0) {
            return Err(Error::Unprocessable("settings.pipeline_run_limit: at least 1".into()));
        }
        if self.timeout == Some(0) {
            return Err(Error::Unprocessable("settings.timeout: at least 1 second".into()));
        }
        if let Some(t) = self.timeout {
            bounds::at_most("settings.timeout", t, bounds::MAX_RUN_DEADLINE_S)?;
        }
        if let Some(n) = self.pipeline_run_limit {
            bounds::at_most("settings.pipeline_run_limit", n, bounds::MAX_RUN_LIMIT)?;
        }
        self.timeout_status()?;
        crate::flow::validate(self.flow_control.as_ref(), self.rules.as_deref())?;
        let keyed = self.flow_control.as_ref().is_some_and(|f| f.concurrency.is_some());
        if keyed && (self.pipeline_run_limit.is_some() || self.skip_if_previous_running == Some(true)) {
            return Err(Error::Unprocessable(
                "settings.flow_control.concurrency: limits runs per key; it does not go with pipeline_run_limit or skip_if_previous_running".into(),
            ));
        }
        super::notify::validate("settings.notifications", self.notifications.as_deref().unwrap_or_default())?;
        Ok(())
    }

    /// What a run past `timeout` ends as.
    pub fn timeout_status(&self) -> Result<RunStatus> {
        match self.timeout_status.as_deref() {
            None | Some("failed") => Ok(RunStatus::Failed),
            Some("cancelled") => Ok(RunStatus::Cancelled),
            Some(other) => Err(Error::Unprocessable(format!(
                "settings.timeout_status: {other:?} is not \"failed\" or \"cancelled\""
            ))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub id: i64,
    /// The pipeline's name (Mage's `pipeline_uuid`).
    pub pipeline_uuid: String,
    /// A pinned build; `None` runs the newest build of the newest version.
    pub build_id: Option<Uuid>,
    pub name: String,
    pub description: Option<String>,
    pub schedule_type: ScheduleType,
    pub schedule_interval: Option<String>,
    pub timezone: String,
    pub start_time: Option<DateTime<Utc>>,
    pub status: ScheduleStatus,
    pub variables: Map<String, Value>,
    pub sla: Option<u64>,
    pub settings: ScheduleSettings,
    pub token: String,
    pub last_enabled_at: Option<DateTime<Utc>>,
    /// When an active `time` schedule fires next (Mage's `next_pipeline_run_date`); `None` otherwise.
    #[serde(default)]
    pub next_run_at: Option<DateTime<Utc>>,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
}

/// The fields a create or update body may carry (`{"pipeline_schedule": {...}}`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleFields {
    pub name: Option<String>,
    pub description: Option<String>,
    pub schedule_type: Option<ScheduleType>,
    pub schedule_interval: Option<String>,
    pub timezone: Option<String>,
    pub start_time: Option<String>,
    pub status: Option<ScheduleStatus>,
    pub variables: Option<Map<String, Value>>,
    pub sla: Option<u64>,
    /// [`ScheduleSettings`] as sent, with `webhook` a [`WebhookInput`]: absent keeps the schedule's
    /// webhook, `null` removes it.
    pub settings: Option<Map<String, Value>>,
    pub build_id: Option<Uuid>,
    /// Update only: issue a new token.
    #[serde(default)]
    pub rotate_token: bool,
}

/// Times as Mage sends them: ISO 8601 with or without an offset (UTC when none), or with a space;
/// in the years [`bounds::MIN_YEAR`]–[`bounds::MAX_YEAR`].
pub fn parse_datetime(field: &str, value: &str) -> Result<DateTime<Utc>> {
    parse_any_datetime(field, value).and_then(|t| bounds::date(field, t))
}

fn parse_any_datetime(field: &str, value: &str) -> Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(t) = DateTime::parse_from_str(value, "%Y-%m-%d %H:%M:%S%.f%:z") {
        return Ok(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(value, fmt) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc());
        }
    }
    Err(Error::Unprocessable(format!("{field}: {value:?} is not an ISO 8601 date and time")))
}

impl Schedule {
    /// A new schedule of `pipeline_uuid` from a create body. Defaults as Mage's: type `time`,
    /// status `inactive`; timezone UTC.
    pub fn create(
        id: i64,
        pipeline_uuid: &str,
        f: ScheduleFields,
        token: String,
        now: DateTime<Utc>,
    ) -> Result<Schedule> {
        if f.rotate_token {
            return Err(Error::Unprocessable("rotate_token: only an update may rotate the token".into()));
        }
        let name =
            f.name.clone().ok_or_else(|| Error::Unprocessable("name: a schedule needs a name".into()))?;
        let mut s = Schedule {
            id,
            pipeline_uuid: pipeline_uuid.to_string(),
            build_id: None,
            name,
            description: None,
            schedule_type: ScheduleType::Time,
            schedule_interval: None,
            timezone: "UTC".into(),
            start_time: None,
            status: ScheduleStatus::Inactive,
            variables: Map::new(),
            sla: None,
            settings: ScheduleSettings::default(),
            token,
            last_enabled_at: None,
            next_run_at: None,
            created: now,
            updated: now,
        };
        s.apply(f, now)?;
        Ok(s)
    }

    /// Applies an update body; `rotate_token` is the caller's to act on.
    pub fn apply(&mut self, f: ScheduleFields, now: DateTime<Utc>) -> Result<()> {
        if let Some(name) = f.name {
            if name.trim().is_empty() || name.len() > 255 {
                return Err(Error::Unprocessable("name: 1 to 255 characters".into()));
            }
            self.name = name;
        }
        if let Some(d) = f.description {
            self.description = Some(d);
        }
        if let Some(t) = f.schedule_type {
            self.schedule_type = t;
        }
        // Whether the fire times change: then the next one is worked out again from now.
        let retime = f.schedule_type.is_some()
            || f.schedule_interval.is_some()
            || f.timezone.is_some()
            || f.start_time.is_some()
            || f.status == Some(ScheduleStatus::Active) && self.status != ScheduleStatus::Active;
        if let Some(i) = f.schedule_interval {
            timetable::parse_interval(&i)?;
            self.schedule_interval = Some(i);
        }
        if let Some(tz) = f.timezone {
            timetable::parse_timezone(&tz)?;
            self.timezone = tz;
        }
        if let Some(t) = f.start_time {
            self.start_time = Some(parse_datetime("start_time", &t)?);
        }
        if let Some(v) = f.variables {
            bounds::variables("variables", &v)?;
            self.variables = v;
        }
        if let Some(sla) = f.sla {
            bounds::at_most("sla", sla, bounds::MAX_RUN_DEADLINE_S)?;
            self.sla = Some(sla);
        }
        if let Some(mut raw) = f.settings {
            let webhook = raw.remove("webhook");
            let mut s: ScheduleSettings = crate::http::from_object_at("settings.", raw)?;
            s.validate()?;
            let current = self.settings.webhook.clone();
            s.webhook = match webhook {
                None => current,
                Some(Value::Null) => None,
                Some(Value::Object(input)) => {
                    let input: WebhookInput = crate::http::from_object_at("settings.webhook.", input)?;
                    Some(WebhookConfig::configure(current, input, now)?)
                }
                Some(other) => {
                    return Err(Error::Unprocessable(format!(
                        "settings.webhook: must be an object or null, got {}",
                        crate::http::json_type_name(&other)
                    )))
                }
            };
            self.settings = s;
        }
        if let Some(b) = f.build_id {
            self.build_id = Some(b);
        }
        if let Some(st) = f.status {
            if st == ScheduleStatus::Active && self.status != ScheduleStatus::Active {
                self.last_enabled_at = Some(now);
            }
            self.status = st;
        }
        if self.settings.webhook.is_some() && self.schedule_type != ScheduleType::Api {
            return Err(Error::Unprocessable("settings.webhook: only api schedules take webhooks".into()));
        }
        if self.schedule_type != ScheduleType::Api {
            if self.settings.flow_control.is_some() {
                return Err(Error::Unprocessable(
                    "settings.flow_control: only api schedules take flow control".into(),
                ));
            }
            if self.settings.rules.is_some() {
                return Err(Error::Unprocessable(
                    "settings.rules: only api schedules take payload rules".into(),
                ));
            }
        }
        if self.schedule_type == ScheduleType::Time && self.schedule_interval.is_none() {
            return Err(Error::Unprocessable(
                "schedule_interval: a time schedule needs an interval (@once, @hourly, … or cron)".into(),
            ));
        }
        match self.timetable()? {
            Some(t) if self.status == ScheduleStatus::Active => {
                if retime || self.next_run_at.is_none() && !t.is_once() {
                    let initial = self.settings.create_initial_pipeline_run.unwrap_or(false);
                    self.next_run_at = t.first_fire(self.start_time, now, initial);
                }
            }
            _ => self.next_run_at = None,
        }
        self.updated = now;
        Ok(())
    }

    /// The interval in the timezone, for a `time` schedule.
    pub fn timetable(&self) -> Result<Option<Timetable>> {
        match (&self.schedule_interval, self.schedule_type) {
            (Some(i), ScheduleType::Time) => Ok(Some(Timetable::new(i, &self.timezone)?)),
            _ => Ok(None),
        }
    }

    /// Moves the schedule past its fire time `at`: to the next fire time, or, for `@once`, to
    /// `inactive`.
    pub fn fired(&mut self, at: DateTime<Utc>, now: DateTime<Utc>) -> Result<()> {
        let Some(t) = self.timetable()? else { return Ok(()) };
        self.next_run_at = t.next(at, false);
        if t.is_once() {
            self.status = ScheduleStatus::Inactive;
        }
        self.updated = now;
        Ok(())
    }

    /// Whether `presented` is this schedule's token, compared in constant time.
    pub fn token_matches(&self, presented: &str) -> bool {
        presented.len() == self.token.len() && bool::from(presented.as_bytes().ct_eq(self.token.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_parse_in_mage_and_iso_forms() {
        for v in
            ["2023-04-01T00:36:39Z", "2023-04-01 00:36:39.904371+00:00", "2023-04-01T00:36:39", "2023-04-01"]
        {
            assert!(parse_datetime("x", v).is_ok(), "{v}");
        }
        assert!(parse_datetime("x", "yesterday").is_err());
        for far in ["+10000-01-01T00:00:00", "+262142-12-31 00:00:00", "1969-12-31T23:59:59Z"] {
            let e = parse_datetime("start_time", far).unwrap_err().to_string();
            assert!(e.starts_with("start_time: must lie in the years 1970 to 9999"), "{e}");
        }
        assert!(parse_datetime("x", "9999-12-31T23:59:59Z").is_ok());
    }

    #[test]
    fn tokens_compare_exactly() {
        let s = Schedule::create(
            1,
            "p",
            ScheduleFields {
                name: Some("n".into()),
                schedule_type: Some(ScheduleType::Api),
                ..Default::default()
            },
            "a".repeat(32),
            Utc::now(),
        )
        .unwrap();
        assert!(s.token_matches(&"a".repeat(32)));
        assert!(!s.token_matches(&"a".repeat(31)));
        assert!(!s.token_matches(&"b".repeat(32)));
    }
}
