//! Every bound on a number, a date, a size or a count a caller chooses, in one place (`docs/security.md`
//! lists them). Each is checked where the input is parsed, as a 422 that names the field and the bound,
//! so that nothing past it reaches arithmetic, the store or the queue.

use chrono::{DateTime, Datelike, Utc};
use serde::Serialize;

use crate::{Error, Result};

/// One day, in seconds: the longest wait a caller may ask for.
pub const DAY_S: u64 = 86_400;
/// `blocks[].timeout_s` of a `lambda` block: Lambda's own 15-minute limit.
pub const MAX_LAMBDA_TIMEOUT_S: u64 = 900;
/// `blocks[].timeout_s` of an `http` block: how long an accepted (202) attempt waits for its callback.
pub const MAX_CALLBACK_TIMEOUT_S: u64 = DAY_S;
/// `blocks[].executor.timeout_s`: the HTTP call itself runs inside the worker function's 900 s, with a
/// minute left to record its outcome.
pub const MAX_CALL_TIMEOUT_S: u64 = 840;
/// `blocks[].delay_s` and `blocks[].max_delay_s`: the backoff between attempts.
pub const MAX_DELAY_S: u64 = DAY_S;
/// `blocks[].retries`.
pub const MAX_RETRIES: u32 = 100;
/// A schedule's `sla` and `settings.timeout`: 30 days.
pub const MAX_RUN_DEADLINE_S: u64 = 30 * DAY_S;
/// A schedule's `settings.pipeline_run_limit`.
pub const MAX_RUN_LIMIT: u32 = 10_000;
/// A backfill's `interval_units` (its dates are at most `backfill::MAX_DATES` besides).
pub const MAX_INTERVAL_UNITS: u32 = 1_000_000;
/// Every date a caller sends (`start_time`, `execution_date`, backfill dates) lies in these years, so
/// that every stored date has the fixed-width form `YYYY-MM-DDTHH:MM:SS…Z` and sorts as text.
pub const MIN_YEAR: i32 = 1970;
pub const MAX_YEAR: i32 = 9999;
/// Mage's `_offset`; deeper pages are read with a narrower filter.
pub const MAX_OFFSET: usize = 100_000;
/// A run's name after its substitutions, in characters.
pub const MAX_RUN_NAME_CHARS: usize = 255;
/// Variables (a schedule's, a backfill's, a trigger's), as JSON.
pub const MAX_VARIABLES_BYTES: usize = 64 * 1024;

/// 422 unless `value` ≤ `max`.
pub fn at_most<T: PartialOrd + std::fmt::Display>(field: &str, value: T, max: T) -> Result<()> {
    if value > max {
        return Err(Error::Unprocessable(format!("{field}: at most {max}, got {value}")));
    }
    Ok(())
}

/// 422 unless `t` lies in years [`MIN_YEAR`]–[`MAX_YEAR`].
pub fn date(field: &str, t: DateTime<Utc>) -> Result<DateTime<Utc>> {
    if !(MIN_YEAR..=MAX_YEAR).contains(&t.year()) {
        return Err(Error::Unprocessable(format!(
            "{field}: must lie in the years {MIN_YEAR} to {MAX_YEAR}, got {}",
            t.to_rfc3339()
        )));
    }
    Ok(t)
}

/// 422 unless `value` serializes to at most [`MAX_VARIABLES_BYTES`] of JSON.
pub fn variables<T: Serialize + ?Sized>(field: &str, value: &T) -> Result<()> {
    let size = serde_json::to_vec(value).map_or(usize::MAX, |v| v.len());
    if size > MAX_VARIABLES_BYTES {
        return Err(Error::Unprocessable(format!(
            "{field}: at most {MAX_VARIABLES_BYTES} bytes of JSON, got {size}"
        )));
    }
    Ok(())
}

/// `t + secs`, at most the last representable time (never a panic).
pub fn plus_secs(t: DateTime<Utc>, secs: u64) -> DateTime<Utc> {
    i64::try_from(secs)
        .ok()
        .and_then(chrono::Duration::try_seconds)
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_name_the_field_and_the_bound() {
        assert!(at_most("retries", 100, MAX_RETRIES).is_ok());
        let e = at_most("blocks[0].retries", 101, MAX_RETRIES).unwrap_err().to_string();
        assert_eq!(e, "blocks[0].retries: at most 100, got 101");
        assert!(date("start_time", DateTime::<Utc>::MAX_UTC)
            .unwrap_err()
            .to_string()
            .contains("1970 to 9999"));
        assert!(date("x", DateTime::<Utc>::UNIX_EPOCH).is_ok());
        assert!(variables("variables", &serde_json::json!({"a": "x".repeat(70_000)})).is_err());
        assert_eq!(plus_secs(DateTime::<Utc>::MAX_UTC, u64::MAX), DateTime::<Utc>::MAX_UTC);
        assert_eq!(plus_secs(DateTime::<Utc>::UNIX_EPOCH, 60).timestamp(), 60);
    }
}
