//! Backfills in the table: `BACKFILL#<id>` / `BACKFILL`, indexed in `GSI1` under `BACKFILLS` by creation.
//! Their runs are found through the run list view `RUNVIEW#BACKFILL#<id>`.

use super::schedules::changed;
use super::table::{Condition, Put};
use super::{decode_all, encode, index_sort_key, item, Store, Versioned};
use crate::domain::backfill::Backfill;
use crate::Result;

fn backfill_put(b: &Backfill, version: u64, condition: Condition) -> Result<Put> {
    let index = Some(("BACKFILLS".into(), index_sort_key(b.created, b.id)));
    let mut it = item(format!("BACKFILL#{}", b.id), "BACKFILL", index, encode(b)?);
    it.version = version;
    Ok(Put { item: it, condition })
}

impl Store {
    /// Writes a new backfill; `false` if its id is taken (draw another).
    pub async fn create_backfill(&self, b: &Backfill) -> Result<bool> {
        changed(self.table.write(vec![backfill_put(b, 1, Condition::Absent)?]).await)
    }

    pub async fn get_backfill(&self, id: i64) -> Result<Option<Versioned<Backfill>>> {
        self.get_doc(format!("BACKFILL#{id}"), "BACKFILL").await
    }

    /// Every backfill, oldest first (one `Query` of its `GSI1` partition; backfills are few).
    pub async fn list_backfills(&self) -> Result<Vec<Backfill>> {
        decode_all(&self.table.query_index("BACKFILLS").await?)
    }

    /// Replaces a backfill if it still has `version`.
    pub async fn update_backfill(&self, b: &Backfill, version: u64) -> Result<bool> {
        changed(self.table.write(vec![backfill_put(b, version + 1, Condition::Version(version))?]).await)
    }

    /// Deletes a backfill if it still has `version`. Its runs stay.
    pub async fn delete_backfill(&self, id: i64, version: u64) -> Result<bool> {
        changed(self.table.delete(&format!("BACKFILL#{id}"), "BACKFILL", Condition::Version(version)).await)
    }
}
