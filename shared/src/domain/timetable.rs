//! When a `time` schedule fires (SPEC §6): its `schedule_interval` — `@once`, `@hourly`, `@daily`,
//! `@weekly`, `@monthly` or a 5-field cron expression, read by `croner` — evaluated in its IANA
//! `timezone` (`chrono-tz`). Nothing here parses cron by hand.
//!
//! Daylight saving time is croner's documented behaviour: in a spring-forward gap a fixed-time job
//! (`30 2 * * *`) fires at the first valid minute after the gap, the same day, and wildcard or step
//! fields skip the times that do not exist; in a fall-back repeat a fixed-time job fires once (the
//! first pass) and wildcard or step fields fire in both passes. `@hourly` is `0 * * * *`, `@daily`
//! `0 0 * * *`, `@weekly` `0 0 * * 0` (Sunday), `@monthly` `0 0 1 * *`, as in cron.
//!
//! The rules on top (what the scheduler tick does with these times) are in `scheduler::fire`'s docs.

use std::str::FromStr;

use chrono::{DateTime, SubsecRound, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

use crate::{Error, Result};

/// A schedule's interval in its timezone.
#[derive(Debug, Clone)]
pub struct Timetable {
    cron: Option<Cron>,
    tz: Tz,
}

/// The cron expression an interval keyword stands for (`None` for `@once`).
fn expression(interval: &str) -> Result<Option<&str>> {
    Ok(Some(match interval {
        "@once" => return Ok(None),
        "@hourly" => "0 * * * *",
        "@daily" => "0 0 * * *",
        "@weekly" => "0 0 * * 0",
        "@monthly" => "0 0 1 * *",
        other if other.starts_with('@') => {
            return Err(Error::Unprocessable(format!(
                "schedule_interval: {other:?} is not @once, @hourly, @daily, @weekly, @monthly or a 5-field cron expression"
            )))
        }
        other => other,
    }))
}

/// Checks an interval on its own (what a create or update body carries).
pub fn parse_interval(interval: &str) -> Result<Option<Cron>> {
    let Some(expr) = expression(interval)? else { return Ok(None) };
    let parser = CronParser::builder().seconds(Seconds::Disallowed).year(Year::Disallowed).build();
    parser.parse(expr).map(Some).map_err(|e| {
        Error::Unprocessable(format!(
            "schedule_interval: {interval:?} is not a valid 5-field cron expression: {e}"
        ))
    })
}

/// Checks an IANA time zone name (`Europe/Berlin`, `UTC`).
pub fn parse_timezone(timezone: &str) -> Result<Tz> {
    Tz::from_str(timezone)
        .map_err(|_| Error::Unprocessable(format!("timezone: {timezone:?} is not an IANA time zone name")))
}

impl Timetable {
    pub fn new(interval: &str, timezone: &str) -> Result<Timetable> {
        Ok(Timetable { cron: parse_interval(interval)?, tz: parse_timezone(timezone)? })
    }

    /// `@once`: fires one time only.
    pub fn is_once(&self) -> bool {
        self.cron.is_none()
    }

    /// The first fire time after `t` (at `t` too when `inclusive`); `None` for `@once` or past year 5000.
    pub fn next(&self, t: DateTime<Utc>, inclusive: bool) -> Option<DateTime<Utc>> {
        let cron = self.cron.as_ref()?;
        let local = t.with_timezone(&self.tz);
        cron.find_next_occurrence(&local, inclusive).ok().map(|n| n.with_timezone(&Utc))
    }

    /// The last fire time before `t` (at `t` too when `inclusive`); `None` for `@once`.
    pub fn previous(&self, t: DateTime<Utc>, inclusive: bool) -> Option<DateTime<Utc>> {
        let cron = self.cron.as_ref()?;
        let local = t.with_timezone(&self.tz);
        cron.find_previous_occurrence(&local, inclusive).ok().map(|n| n.with_timezone(&Utc))
    }

    /// The schedule's first fire time when it becomes active at `now`: `@once` at `start_time`, or now if
    /// that has passed (or is not set); otherwise the first fire time at or after `start_time` and now.
    /// With `initial_run` (`create_initial_pipeline_run`) the last fire time that has passed, if it is
    /// at or after `start_time`, comes first: one run for the interval that is under way, no replay of
    /// earlier ones.
    pub fn first_fire(
        &self,
        start_time: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        initial_run: bool,
    ) -> Option<DateTime<Utc>> {
        let from = start_time.map_or(now, |s| s.max(now)).trunc_subsecs(0);
        if self.is_once() {
            return Some(from);
        }
        if initial_run && start_time.is_none_or(|s| s <= now) {
            if let Some(last) = self.previous(now, true).filter(|p| start_time.is_none_or(|s| *p >= s)) {
                return Some(last);
            }
        }
        self.next(from, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// The fire times after `from`, in UTC.
    fn fires(interval: &str, tz: &str, from: &str, n: usize) -> Vec<String> {
        let t = Timetable::new(interval, tz).unwrap();
        let mut at = utc(from);
        let mut out = Vec::new();
        for _ in 0..n {
            at = t.next(at, false).unwrap();
            out.push(at.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        }
        out
    }

    #[test]
    fn keywords_fire_as_cron_does() {
        assert_eq!(
            fires("@hourly", "UTC", "2024-02-28T22:30:00Z", 3),
            ["2024-02-28T23:00:00Z", "2024-02-29T00:00:00Z", "2024-02-29T01:00:00Z"]
        );
        // Leap day, then the month end.
        assert_eq!(
            fires("@daily", "UTC", "2024-02-28T00:00:00Z", 3),
            ["2024-02-29T00:00:00Z", "2024-03-01T00:00:00Z", "2024-03-02T00:00:00Z"]
        );
        // Sundays.
        assert_eq!(
            fires("@weekly", "UTC", "2024-02-27T12:00:00Z", 2),
            ["2024-03-03T00:00:00Z", "2024-03-10T00:00:00Z"]
        );
        assert_eq!(
            fires("@monthly", "UTC", "2024-01-31T00:00:00Z", 3),
            ["2024-02-01T00:00:00Z", "2024-03-01T00:00:00Z", "2024-04-01T00:00:00Z"]
        );
    }

    #[test]
    fn month_ends_and_leap_days_are_only_fired_when_they_exist() {
        // The 31st: skipped in 30-day months and February.
        assert_eq!(
            fires("0 6 31 * *", "UTC", "2024-01-01T00:00:00Z", 3),
            ["2024-01-31T06:00:00Z", "2024-03-31T06:00:00Z", "2024-05-31T06:00:00Z"]
        );
        // 29 February: leap years only.
        assert_eq!(
            fires("0 0 29 2 *", "UTC", "2023-01-01T00:00:00Z", 2),
            ["2024-02-29T00:00:00Z", "2028-02-29T00:00:00Z"]
        );
        // Berlin's midnight on the first of the month, across a year end (UTC+1 in winter).
        assert_eq!(
            fires("@monthly", "Europe/Berlin", "2023-11-15T00:00:00Z", 3),
            ["2023-11-30T23:00:00Z", "2023-12-31T23:00:00Z", "2024-01-31T23:00:00Z"]
        );
    }

    #[test]
    fn daily_keeps_local_midnight_across_both_transitions() {
        // Berlin: clocks go forward on 2024-03-31 (UTC+1 → UTC+2) and back on 2024-10-27.
        assert_eq!(
            fires("@daily", "Europe/Berlin", "2024-03-29T12:00:00Z", 3),
            ["2024-03-29T23:00:00Z", "2024-03-30T23:00:00Z", "2024-03-31T22:00:00Z"]
        );
        assert_eq!(
            fires("@daily", "Europe/Berlin", "2024-10-25T12:00:00Z", 3),
            ["2024-10-25T22:00:00Z", "2024-10-26T22:00:00Z", "2024-10-27T23:00:00Z"]
        );
        // New York: forward on 2024-03-10 (UTC-5 → UTC-4), back on 2024-11-03.
        assert_eq!(
            fires("0 9 * * *", "America/New_York", "2024-03-09T00:00:00Z", 2),
            ["2024-03-09T14:00:00Z", "2024-03-10T13:00:00Z"]
        );
        assert_eq!(
            fires("0 9 * * *", "America/New_York", "2024-11-02T00:00:00Z", 2),
            ["2024-11-02T13:00:00Z", "2024-11-03T14:00:00Z"]
        );
    }

    #[test]
    fn a_fixed_time_in_the_spring_gap_fires_once_just_after_it() {
        // 02:30 does not exist in Berlin on 2024-03-31 (02:00 → 03:00): it fires at 03:00 local.
        assert_eq!(
            fires("30 2 * * *", "Europe/Berlin", "2024-03-30T12:00:00Z", 2),
            ["2024-03-31T01:00:00Z", "2024-04-01T00:30:00Z"]
        );
        // New York, 2024-03-10: 02:00 → 03:00.
        assert_eq!(
            fires("30 2 * * *", "America/New_York", "2024-03-09T12:00:00Z", 2),
            ["2024-03-10T07:00:00Z", "2024-03-11T06:30:00Z"]
        );
    }

    #[test]
    fn a_fixed_time_in_the_autumn_repeat_fires_once_and_hourly_fires_in_both_passes() {
        // 02:30 happens twice in Berlin on 2024-10-27 (at 00:30Z and 01:30Z): fired once, the first.
        assert_eq!(
            fires("30 2 * * *", "Europe/Berlin", "2024-10-26T12:00:00Z", 2),
            ["2024-10-27T00:30:00Z", "2024-10-28T01:30:00Z"]
        );
        // New York, 2024-11-03: 01:00–02:00 happens twice (05:00Z–06:00Z and 06:00Z–07:00Z).
        assert_eq!(
            fires("30 1 * * *", "America/New_York", "2024-11-02T12:00:00Z", 2),
            ["2024-11-03T05:30:00Z", "2024-11-04T06:30:00Z"]
        );
        // @hourly is real time: every hour fires, the repeated one too (no duplicates, none lost).
        assert_eq!(
            fires("@hourly", "America/New_York", "2024-11-03T04:30:00Z", 4),
            ["2024-11-03T05:00:00Z", "2024-11-03T06:00:00Z", "2024-11-03T07:00:00Z", "2024-11-03T08:00:00Z"]
        );
        // …and across the spring gap there is simply one hour fewer that day.
        assert_eq!(
            fires("@hourly", "Europe/Berlin", "2024-03-31T00:30:00Z", 2),
            ["2024-03-31T01:00:00Z", "2024-03-31T02:00:00Z"]
        );
    }

    #[test]
    fn weekly_and_monthly_follow_local_midnight_in_new_york() {
        assert_eq!(
            fires("@weekly", "America/New_York", "2024-03-05T00:00:00Z", 2),
            ["2024-03-10T05:00:00Z", "2024-03-17T04:00:00Z"]
        );
        assert_eq!(
            fires("@monthly", "America/New_York", "2024-10-15T00:00:00Z", 2),
            ["2024-11-01T04:00:00Z", "2024-12-01T05:00:00Z"]
        );
    }

    #[test]
    fn first_fire_honours_start_time_once_and_the_initial_run() {
        let now = utc("2024-05-01T10:20:30.5Z");
        let hourly = Timetable::new("@hourly", "UTC").unwrap();
        assert_eq!(hourly.first_fire(None, now, false), Some(utc("2024-05-01T11:00:00Z")));
        assert_eq!(
            hourly.first_fire(Some(utc("2024-05-03T00:00:00Z")), now, false),
            Some(utc("2024-05-03T00:00:00Z")),
            "a start time that is a fire time fires"
        );
        assert_eq!(
            hourly.first_fire(Some(utc("2024-04-01T00:00:00Z")), now, false),
            Some(utc("2024-05-01T11:00:00Z"))
        );
        // create_initial_pipeline_run: the interval under way, once.
        assert_eq!(
            hourly.first_fire(Some(utc("2024-04-01T00:00:00Z")), now, true),
            Some(utc("2024-05-01T10:00:00Z"))
        );
        assert_eq!(
            hourly.first_fire(Some(utc("2024-05-01T10:10:00Z")), now, true),
            Some(utc("2024-05-01T11:00:00Z")),
            "nothing before start_time"
        );
        let once = Timetable::new("@once", "Europe/Berlin").unwrap();
        assert!(once.is_once());
        assert_eq!(once.first_fire(None, now, false), Some(utc("2024-05-01T10:20:30Z")));
        assert_eq!(
            once.first_fire(Some(utc("2024-06-01T08:00:00Z")), now, false),
            Some(utc("2024-06-01T08:00:00Z"))
        );
        assert_eq!(once.next(now, false), None);
    }

    #[test]
    fn bad_intervals_and_zones_name_their_field() {
        for bad in ["@sometimes", "* * *", "* * * * * *", "61 * * * *", "0 9 * * ;rm", "0 0 32 * *"] {
            let e = Timetable::new(bad, "UTC").unwrap_err().to_string();
            assert!(e.contains("schedule_interval"), "{bad}: {e}");
        }
        for bad in ["Mars/Olympus", "Europe/Berlin ", "utc+1", ""] {
            let e = Timetable::new("@daily", bad).unwrap_err().to_string();
            assert!(e.contains("timezone"), "{bad}: {e}");
        }
        for ok in ["*/5 * * * *", "0 9 * * MON-FRI", "0 0 1,15 * *", "0 0 L * *"] {
            assert!(Timetable::new(ok, "America/New_York").is_ok(), "{ok}");
        }
    }
}
