//! Schedules in the table (keys in `store`'s module docs), and the fire index: an active `time`
//! schedule's item carries `GSI2PK = FIRE#<id mod 8>`, `GSI2SK = <next fire time>`, so the tick finds
//! the schedules due through the index (one `Query` per shard), never by reading them all.

use chrono::{DateTime, Datelike, Utc};

use super::table::{Condition, Put, WriteError};
use super::wake::{wake_key, WAKE_SHARDS};
use super::{decode_all, encode, index_sort_key, item, Store, Versioned};
use crate::admission::{Slots, SlotsKey};
use crate::domain::{bounds, Schedule, ScheduleStatus};
use crate::{Error, Result};

/// The fire index shard of a schedule.
pub fn fire_shard(schedule_id: i64) -> u8 {
    u8::try_from(schedule_id.rem_euclid(i64::from(WAKE_SHARDS))).unwrap_or(0)
}

fn fire_pk(shard: u8) -> String {
    format!("FIRE#{shard}")
}

pub(super) fn schedule_put(s: &Schedule, version: u64, condition: Condition) -> Result<Put> {
    let mut it = item(
        format!("SCHEDULE#{}", s.id),
        "SCHEDULE",
        Some(("SCHEDULES".into(), index_sort_key(s.created, s.id))),
        encode(s)?,
    );
    it.version = version;
    // A schedule that cannot fire (its next time past the year 9999) is not in the index, so that it
    // is never "due" to the tick without firing.
    it.wake = s
        .next_run_at
        .filter(|t| s.status == ScheduleStatus::Active && t.year() <= bounds::MAX_YEAR)
        .map(|t| (fire_pk(fire_shard(s.id)), wake_key(t)));
    Ok(Put { item: it, condition })
}

pub(super) fn changed(result: std::result::Result<(), WriteError>) -> Result<bool> {
    match result {
        Ok(()) => Ok(true),
        Err(WriteError::ConditionFailed) => Ok(false),
        Err(WriteError::Other(e)) => Err(e),
    }
}

impl Store {
    /// Writes a new schedule; `false` if its id is taken (draw another).
    pub async fn create_schedule(&self, s: &Schedule) -> Result<bool> {
        changed(self.table.write(vec![schedule_put(s, 1, Condition::Absent)?]).await)
    }

    pub async fn get_schedule(&self, id: i64) -> Result<Option<Versioned<Schedule>>> {
        self.get_doc(format!("SCHEDULE#{id}"), "SCHEDULE").await
    }

    /// Up to `limit` ids of schedules of fire shard `shard` whose next fire time is at or before `now`,
    /// earliest first: one `Query` of the index (eventually consistent: the fire itself is conditional).
    pub async fn due_schedules(&self, shard: u8, now: DateTime<Utc>, limit: usize) -> Result<Vec<i64>> {
        let entries = self.table.query_wake(&fire_pk(shard), &wake_key(now), limit).await?;
        entries
            .into_iter()
            .map(|e| {
                e.pk.strip_prefix("SCHEDULE#")
                    .and_then(|id| id.parse().ok())
                    .ok_or_else(|| Error::Internal(format!("fire index entry of {}/{}", e.pk, e.sk)))
            })
            .collect()
    }

    /// Every schedule, oldest first.
    pub async fn list_schedules(&self) -> Result<Vec<Schedule>> {
        decode_all(&self.table.query_index("SCHEDULES").await?)
    }

    /// Replaces a schedule if it still has `version`.
    pub async fn update_schedule(&self, s: &Schedule, version: u64) -> Result<bool> {
        changed(self.table.write(vec![schedule_put(s, version + 1, Condition::Version(version))?]).await)
    }

    /// Deletes a schedule if it still has `version`. Its runs stay.
    pub async fn delete_schedule(&self, id: i64, version: u64) -> Result<bool> {
        changed(self.table.delete(&format!("SCHEDULE#{id}"), "SCHEDULE", Condition::Version(version)).await)
    }
}

/// `SLOTS#<schedule id>`, or per flow-control key `SLOTS#<schedule id>#<SHA-256 of the key, 32 hex>`:
/// each key value its own partition, so no key is hot for another.
fn slots_pk(key: &SlotsKey) -> String {
    super::flow::keyed_pk("SLOTS", key)
}

/// The slots item of a schedule with run limits, to write (conditioned on `version`, or on being new).
pub(super) fn slots_put(key: &SlotsKey, slots: &Slots, version: Option<u64>) -> Result<Put> {
    let mut it = item(slots_pk(key), "SLOTS", None, encode(slots)?);
    it.version = version.map_or(1, |v| v + 1);
    Ok(Put { item: it, condition: version.map_or(Condition::Absent, Condition::Version) })
}

impl Store {
    /// The slots item of a schedule with run limits (`admission`): one `GetItem`.
    pub async fn slots(&self, key: &SlotsKey) -> Result<Option<Versioned<Slots>>> {
        self.get_doc(slots_pk(key), "SLOTS").await
    }

    /// A hand-over: the slots item and the runs it concerns (each conditioned on the version read), in
    /// one transaction; `false` if any changed first.
    pub async fn hand_over(
        &self,
        key: &SlotsKey,
        slots: &Slots,
        version: u64,
        runs: &[Versioned<crate::domain::run::RunDetail>],
    ) -> Result<bool> {
        let mut puts = vec![slots_put(key, slots, Some(version))?];
        for r in runs {
            puts.push(Put {
                item: Self::run_item(&r.value.run, &r.value.blocks, r.version + 1)?,
                condition: Condition::Version(r.version),
            });
        }
        changed(self.table.write(puts).await)
    }
}
