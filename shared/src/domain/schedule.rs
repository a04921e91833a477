//! Schedules (Mage: pipeline schedules, triggers): how and when a pipeline is run, with the secret token
//! that API triggers present.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;
use uuid::Uuid;

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

/// `settings` of a schedule, as Mage names them.
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
    pub settings: Option<ScheduleSettings>,
    pub build_id: Option<Uuid>,
    /// Update only: issue a new token.
    #[serde(default)]
    pub rotate_token: bool,
}

/// `@once`, `@hourly`, `@daily`, `@weekly`, `@monthly`, or five cron fields of `0-9 * , - /`
/// (with names of months and weekdays).
pub fn validate_interval(interval: &str) -> Result<()> {
    if matches!(interval, "@once" | "@hourly" | "@daily" | "@weekly" | "@monthly") {
        return Ok(());
    }
    let fields: Vec<&str> = interval.split_whitespace().collect();
    let ok = fields.len() == 5
        && fields
            .iter()
            .all(|f| f.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '*' | ',' | '-' | '/')));
    if ok {
        Ok(())
    } else {
        Err(Error::Unprocessable(format!(
            "schedule_interval: {interval:?} is not @once, @hourly, @daily, @weekly, @monthly or a 5-field cron expression"
        )))
    }
}

/// Times as Mage sends them: ISO 8601 with or without an offset (UTC when none), or with a space.
pub fn parse_datetime(field: &str, value: &str) -> Result<DateTime<Utc>> {
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

fn validate_timezone(tz: &str) -> Result<()> {
    // IANA names: Area/Location (e.g. Europe/Berlin), or UTC.
    let ok = tz == "UTC"
        || (tz.contains('/')
            && tz.len() <= 64
            && tz.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '+')));
    if ok {
        Ok(())
    } else {
        Err(Error::Unprocessable(format!("timezone: {tz:?} is not an IANA time zone name")))
    }
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
        if let Some(i) = f.schedule_interval {
            validate_interval(&i)?;
            self.schedule_interval = Some(i);
        }
        if let Some(tz) = f.timezone {
            validate_timezone(&tz)?;
            self.timezone = tz;
        }
        if let Some(t) = f.start_time {
            self.start_time = Some(parse_datetime("start_time", &t)?);
        }
        if let Some(v) = f.variables {
            self.variables = v;
        }
        if let Some(sla) = f.sla {
            self.sla = Some(sla);
        }
        if let Some(s) = f.settings {
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
        if self.schedule_type == ScheduleType::Time && self.schedule_interval.is_none() {
            return Err(Error::Unprocessable(
                "schedule_interval: a time schedule needs an interval (@once, @hourly, … or cron)".into(),
            ));
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
    fn intervals_are_checked() {
        for ok in ["@once", "@daily", "*/5 * * * *", "0 9 * * MON-FRI", "0 0 1,15 * *"] {
            assert!(validate_interval(ok).is_ok(), "{ok}");
        }
        for bad in ["@sometimes", "* * *", "* * * * * *", "0 9 * * ;rm"] {
            assert!(validate_interval(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn datetimes_parse_in_mage_and_iso_forms() {
        for v in
            ["2023-04-01T00:36:39Z", "2023-04-01 00:36:39.904371+00:00", "2023-04-01T00:36:39", "2023-04-01"]
        {
            assert!(parse_datetime("x", v).is_ok(), "{v}");
        }
        assert!(parse_datetime("x", "yesterday").is_err());
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
