//! Backfills (SPEC §6, Mage's): runs of a pipeline for every interval date between two times, made
//! when the backfill is started, each with `backfill_id` and that date as its `execution_date`.

use chrono::{DateTime, Duration, Months, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::bounds;
use super::schedule::parse_datetime;
use super::RunStatus;
use crate::{Error, Result};

/// The most dates one backfill may have.
pub const MAX_DATES: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IntervalType {
    Minute,
    Hour,
    Day,
    Week,
    Month,
}

/// What the stored status says; what a backfill shows is [`Backfill::status_from`] its runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackfillStatus {
    /// Not started.
    Initial,
    /// Started: its runs exist; completed or failed once they have all finished.
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl BackfillStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BackfillStatus::Initial => "initial",
            BackfillStatus::Running => "running",
            BackfillStatus::Completed => "completed",
            BackfillStatus::Failed => "failed",
            BackfillStatus::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backfill {
    pub id: i64,
    /// The pipeline's name (Mage's `pipeline_uuid`).
    pub pipeline_uuid: String,
    /// Runs are runs of this schedule (its settings and run limits apply), if set.
    pub pipeline_schedule_id: Option<i64>,
    pub name: String,
    pub start_datetime: DateTime<Utc>,
    pub end_datetime: DateTime<Utc>,
    pub interval_type: IntervalType,
    pub interval_units: u32,
    pub variables: Map<String, Value>,
    pub status: BackfillStatus,
    pub started_at: Option<DateTime<Utc>>,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
}

/// The fields a create or update body may carry (`{"backfill": {...}}`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackfillFields {
    pub name: Option<String>,
    pub start_datetime: Option<String>,
    pub end_datetime: Option<String>,
    pub interval_type: Option<IntervalType>,
    pub interval_units: Option<u32>,
    pub variables: Option<Map<String, Value>>,
    pub pipeline_schedule_id: Option<i64>,
    /// Update only: `initial` starts the backfill, `cancelled` cancels it.
    pub status: Option<BackfillStatus>,
}

impl Backfill {
    /// A new, unstarted backfill of `pipeline_uuid` from a create body.
    pub fn create(id: i64, pipeline_uuid: &str, f: BackfillFields, now: DateTime<Utc>) -> Result<Backfill> {
        if f.status.is_some() {
            return Err(Error::Unprocessable(
                "status: a new backfill is initial; start it with a PUT".into(),
            ));
        }
        let need = |field: &str| Error::Unprocessable(format!("{field}: a backfill needs one"));
        let mut b = Backfill {
            id,
            pipeline_uuid: pipeline_uuid.to_string(),
            pipeline_schedule_id: None,
            name: f.name.clone().ok_or_else(|| need("name"))?,
            start_datetime: parse_datetime(
                "start_datetime",
                f.start_datetime.as_deref().ok_or_else(|| need("start_datetime"))?,
            )?,
            end_datetime: parse_datetime(
                "end_datetime",
                f.end_datetime.as_deref().ok_or_else(|| need("end_datetime"))?,
            )?,
            interval_type: f.interval_type.ok_or_else(|| need("interval_type"))?,
            interval_units: f.interval_units.unwrap_or(1),
            variables: Map::new(),
            status: BackfillStatus::Initial,
            started_at: None,
            created: now,
            updated: now,
        };
        b.apply(f, now)?;
        Ok(b)
    }

    /// Applies the editable fields of a body (not `status`, which the caller acts on); only before the
    /// backfill has started.
    pub fn apply(&mut self, f: BackfillFields, now: DateTime<Utc>) -> Result<()> {
        let edits = f.name.is_some()
            || f.start_datetime.is_some()
            || f.end_datetime.is_some()
            || f.interval_type.is_some()
            || f.interval_units.is_some()
            || f.variables.is_some()
            || f.pipeline_schedule_id.is_some();
        if edits && self.status != BackfillStatus::Initial {
            return Err(Error::Conflict("a backfill that has started cannot be changed".into()));
        }
        if let Some(n) = f.name {
            if n.trim().is_empty() || n.len() > 255 {
                return Err(Error::Unprocessable("name: 1 to 255 characters".into()));
            }
            self.name = n;
        }
        if let Some(t) = f.start_datetime {
            self.start_datetime = parse_datetime("start_datetime", &t)?;
        }
        if let Some(t) = f.end_datetime {
            self.end_datetime = parse_datetime("end_datetime", &t)?;
        }
        if let Some(t) = f.interval_type {
            self.interval_type = t;
        }
        if let Some(u) = f.interval_units {
            self.interval_units = u;
        }
        if let Some(v) = f.variables {
            self.variables = v;
        }
        if let Some(s) = f.pipeline_schedule_id {
            self.pipeline_schedule_id = Some(s);
        }
        if self.interval_units == 0 {
            return Err(Error::Unprocessable("interval_units: at least 1".into()));
        }
        bounds::at_most("interval_units", self.interval_units, bounds::MAX_INTERVAL_UNITS)?;
        bounds::variables("variables", &self.variables)?;
        if self.end_datetime < self.start_datetime {
            return Err(Error::Unprocessable("end_datetime: before start_datetime".into()));
        }
        self.dates()?;
        self.updated = now;
        Ok(())
    }

    /// One date per interval from `start_datetime` to `end_datetime`, both included; 422 past
    /// [`MAX_DATES`].
    pub fn dates(&self) -> Result<Vec<DateTime<Utc>>> {
        let units = self.interval_units.max(1);
        let mut dates = Vec::new();
        let mut t = self.start_datetime;
        let mut i: u32 = 0;
        while t <= self.end_datetime {
            if dates.len() == MAX_DATES {
                return Err(Error::Unprocessable(format!(
                    "end_datetime: a backfill has at most {MAX_DATES} dates; this one has more"
                )));
            }
            dates.push(t);
            i += 1;
            let step = i64::from(units) * i64::from(i);
            // Each date from the start (not from the previous date), so that month ends do not drift.
            // Checked: a step past chrono's range ends the dates instead of panicking.
            let after = |d: Option<Duration>| d.and_then(|d| self.start_datetime.checked_add_signed(d));
            let next = match self.interval_type {
                IntervalType::Minute => after(Duration::try_minutes(step)),
                IntervalType::Hour => after(Duration::try_hours(step)),
                IntervalType::Day => after(Duration::try_days(step)),
                IntervalType::Week => after(Duration::try_weeks(step)),
                IntervalType::Month => u32::try_from(step)
                    .ok()
                    .and_then(|m| self.start_datetime.checked_add_months(Months::new(m))),
            };
            match next {
                Some(n) => t = n,
                None => break,
            }
        }
        Ok(dates)
    }

    /// The status to show, from the stored one and the statuses of its runs: a started backfill is
    /// `failed` once one run failed, `completed` once every date's run completed, else `running`.
    pub fn status_from(&self, runs: &[RunStatus]) -> BackfillStatus {
        if self.status != BackfillStatus::Running {
            return self.status;
        }
        if runs.contains(&RunStatus::Failed) {
            BackfillStatus::Failed
        } else if self.dates().is_ok_and(|d| runs.len() >= d.len())
            && runs.iter().all(|s| *s == RunStatus::Completed)
        {
            BackfillStatus::Completed
        } else {
            BackfillStatus::Running
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(start: &str, end: &str, t: IntervalType, units: u32) -> BackfillFields {
        BackfillFields {
            name: Some("b".into()),
            start_datetime: Some(start.into()),
            end_datetime: Some(end.into()),
            interval_type: Some(t),
            interval_units: Some(units),
            ..Default::default()
        }
    }

    #[test]
    fn dates_step_by_the_interval_and_keep_month_ends() {
        let b =
            Backfill::create(1, "p", fields("2024-01-31", "2024-05-01", IntervalType::Month, 1), Utc::now())
                .unwrap();
        let dates: Vec<String> =
            b.dates().unwrap().iter().map(|d| d.format("%Y-%m-%d").to_string()).collect();
        assert_eq!(dates, ["2024-01-31", "2024-02-29", "2024-03-31", "2024-04-30"]);
        let b =
            Backfill::create(1, "p", fields("2024-01-01", "2024-01-10", IntervalType::Day, 3), Utc::now())
                .unwrap();
        assert_eq!(b.dates().unwrap().len(), 4);
    }

    #[test]
    fn bad_ranges_are_422() {
        let now = Utc::now();
        assert!(
            Backfill::create(1, "p", fields("2024-01-10", "2024-01-01", IntervalType::Day, 1), now).is_err()
        );
        assert!(
            Backfill::create(1, "p", fields("2024-01-01", "2024-01-10", IntervalType::Day, 0), now).is_err()
        );
        assert!(Backfill::create(1, "p", fields("2020-01-01", "2024-01-10", IntervalType::Minute, 1), now)
            .is_err());
    }

    #[test]
    fn huge_steps_and_far_dates_are_422_or_end_the_dates_never_a_panic() {
        let now = Utc::now();
        let max = bounds::MAX_INTERVAL_UNITS;
        for t in [
            IntervalType::Minute,
            IntervalType::Hour,
            IntervalType::Day,
            IntervalType::Week,
            IntervalType::Month,
        ] {
            // Either the dates (the step's arithmetic past chrono's range ends them) or the count's 422.
            match Backfill::create(1, "p", fields("1970-01-01", "9999-12-31", t, max), now) {
                Ok(b) => assert!(!b.dates().unwrap().is_empty(), "{t:?}"),
                Err(e) => assert!(e.to_string().contains("at most 1000 dates"), "{t:?}: {e}"),
            }
            let e =
                Backfill::create(1, "p", fields("1970-01-01", "9999-12-31", t, max + 1), now).unwrap_err();
            assert!(e.to_string().starts_with("interval_units: at most 1000000"), "{e}");
        }
        let e = Backfill::create(
            1,
            "p",
            fields("2024-01-01", "+10000-01-01T00:00:00", IntervalType::Day, 1),
            now,
        );
        assert!(e.unwrap_err().to_string().starts_with("end_datetime: must lie in the years"));
    }
}
