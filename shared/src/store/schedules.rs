//! Schedules in the table (keys in `store`'s module docs).

use super::table::{Condition, Put, WriteError};
use super::{decode_all, encode, index_sort_key, item, Store, Versioned};
use crate::domain::Schedule;
use crate::Result;

fn schedule_put(s: &Schedule, version: u64, condition: Condition) -> Result<Put> {
    let mut it = item(
        format!("SCHEDULE#{}", s.id),
        "SCHEDULE",
        Some(("SCHEDULES".into(), index_sort_key(s.created, s.id))),
        encode(s)?,
    );
    it.version = version;
    Ok(Put { item: it, condition })
}

fn changed(result: std::result::Result<(), WriteError>) -> Result<bool> {
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
