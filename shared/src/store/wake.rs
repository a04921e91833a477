//! The wake index (`GSI2`, keys only): every unfinished run, by the time the scheduler tick's sweep is
//! to look at it if no queue message has (SPEC §5). The run item carries the keys itself, so keeping
//! the index costs no extra item: `GSI2PK = WAKE#<shard>`, `GSI2SK = <wake time, to the second>`,
//! written with the run and removed (by leaving the keys out) when the run finishes.
//!
//! Shards: `WAKE#0` … `WAKE#7`, the shard taken from the run's UUID, so that no index partition takes
//! every run's writes (SPEC §11). A run's wake time is set when it is created and moved only when it
//! must be (see `worker::plan::wake_at`): a run that finishes within a minute writes its index entry
//! twice in all (created, removed), so 1,000 triggers/s put about 2,000 small index writes/s on the
//! index, 250 per shard, under DynamoDB's 1,000 write units/s per partition with room for the moves of
//! longer runs (at most one per run per ~90 s). Each tick sweeps every shard (see `scheduler`): a
//! sweep that finds nothing costs one `Query` per shard. A wake time may be early (the state did not need
//! it yet); the sweep then reads the run and moves it, without queueing anything.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use uuid::Uuid;

use super::table::WriteError;
use super::Store;
use crate::{Error, Result};

/// How many partitions the wake index is spread over.
pub const WAKE_SHARDS: u8 = 8;

const WAKE_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";

/// The wake shard of a run.
pub fn wake_shard(run_uuid: Uuid) -> u8 {
    run_uuid.as_bytes()[0] % WAKE_SHARDS
}

pub(super) fn wake_pk(shard: u8) -> String {
    format!("WAKE#{shard}")
}

/// A wake time as the index's sort key (sortable text, to the second), always in the fixed-width form
/// `YYYY-MM-DDTHH:MM:SSZ`: a time past the year 9999 (which `%Y` writes as `+10000-…`, sorting before
/// every real date) is the last second of 9999, and one before the year 0 is its first.
pub(super) fn wake_key(at: DateTime<Utc>) -> String {
    let last = NaiveDate::from_ymd_opt(9999, 12, 31).and_then(|d| d.and_hms_opt(23, 59, 59));
    let first = NaiveDate::from_ymd_opt(0, 1, 1).and_then(|d| d.and_hms_opt(0, 0, 0));
    let t = at.naive_utc();
    let t = match (first, last) {
        (Some(first), Some(last)) => t.clamp(first, last),
        _ => t,
    };
    t.format(WAKE_FORMAT).to_string()
}

pub(super) fn parse_wake_key(key: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(key, WAKE_FORMAT).ok().map(|t| t.and_utc())
}

/// A run the sweep found due: its UUID and the wake key it was found at.
#[derive(Debug, Clone, PartialEq)]
pub struct DueRun {
    pub uuid: Uuid,
    pub wake: String,
}

impl Store {
    /// Up to `limit` runs of wake shard `shard` whose wake time is at or before `now`, earliest first:
    /// one `Query` of the index (eventually consistent; a run seen late is claimed conditionally).
    pub async fn due_runs(&self, shard: u8, now: DateTime<Utc>, limit: usize) -> Result<Vec<DueRun>> {
        let entries = self.table.query_wake(&wake_pk(shard), &wake_key(now), limit).await?;
        entries
            .into_iter()
            .map(|e| {
                let uuid =
                    e.pk.strip_prefix("RUN#")
                        .and_then(|u| Uuid::parse_str(u).ok())
                        .ok_or_else(|| Error::Internal(format!("wake index entry of {}/{}", e.pk, e.sk)))?;
                Ok(DueRun { uuid, wake: e.wake })
            })
            .collect()
    }

    /// Claims a due run: moves its wake time to `next` if it is still the one the sweep saw (one
    /// conditional `UpdateItem`). `false` if another sweep, or the run's own progress, moved it first —
    /// so however many ticks overlap, a run is queued once per wake.
    pub async fn claim_due_run(&self, due: &DueRun, next: DateTime<Utc>) -> Result<bool> {
        match self.table.move_wake(&format!("RUN#{}", due.uuid), "RUN", &due.wake, &wake_key(next)).await {
            Ok(()) => Ok(true),
            Err(WriteError::ConditionFailed) => Ok(false),
            Err(WriteError::Other(e)) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wake_keys_have_one_width_and_sort_as_their_times() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert_eq!(wake_key(at("2026-12-02T10:00:00.5Z")), "2026-12-02T10:00:00Z");
        let far =
            chrono::NaiveDate::from_ymd_opt(10_000, 1, 1).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc();
        assert_eq!(wake_key(far), "9999-12-31T23:59:59Z");
        assert_eq!(wake_key(DateTime::<Utc>::MAX_UTC), "9999-12-31T23:59:59Z");
        assert_eq!(wake_key(DateTime::<Utc>::MIN_UTC), "0000-01-01T00:00:00Z");
        assert!(wake_key(far) > wake_key(at("2026-12-02T10:00:00Z")));
    }
}
