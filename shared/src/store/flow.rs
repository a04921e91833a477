//! The flow-control items of one key value of a schedule, or of a pipeline name for ZenML runs
//! (`flow::timing`): its debounce window (`DEBOUNCE#<scope>#<hash>`) and its throttle's pace
//! (`THROTTLE#<scope>#<hash>`), the scope being the schedule's id or `PIPELINE:<name>` and the hash the
//! first 32 hex digits of the key's SHA-256 (as the key's slots item, `SLOTS#…`).

use sha2::Digest;

use super::schedules::changed;
use super::table::{Condition, Put};
use super::{encode, item, Store, Versioned};
use crate::admission::SlotsKey;
use crate::domain::Run;
use crate::flow::timing::{closed_version, Pace, Window};
use crate::Result;

/// `<prefix>#<scope>` (a schedule's id, or `PIPELINE:<name>`), plus `#<hash of the key>` for a key
/// value.
pub(super) fn keyed_pk(prefix: &str, key: &SlotsKey) -> String {
    match &key.flow_key {
        None => format!("{prefix}#{}", key.scope),
        Some(k) => {
            let hash = hex::encode(sha2::Sha256::digest(k.as_bytes()));
            format!("{prefix}#{}#{}", key.scope, &hash[..32])
        }
    }
}

/// A closed window or a pace is kept this long after it last mattered (DynamoDB's TTL deletes it).
const KEEP_S: i64 = 7 * 86_400;

impl Store {
    /// A key value's debounce window: one `GetItem`.
    pub async fn window(&self, key: &SlotsKey) -> Result<Option<Versioned<Window>>> {
        self.get_doc(keyed_pk("DEBOUNCE", key), "DEBOUNCE").await
    }

    /// The window item to write at `version` under `condition` (in a new run's transaction, or alone).
    pub fn window_put(key: &SlotsKey, w: &Window, version: u64, condition: Condition) -> Result<Put> {
        let mut it = item(keyed_pk("DEBOUNCE", key), "DEBOUNCE", None, encode(w)?);
        it.version = version;
        if !w.open {
            it.expires_at = Some(w.start_at.timestamp() + KEEP_S);
        }
        Ok(Put { item: it, condition })
    }

    /// A merge into an open window: one conditional put; `false` if the window closed (or moved on)
    /// meanwhile.
    pub async fn merge_window(&self, put: Put) -> Result<bool> {
        changed(self.table.write(vec![put]).await)
    }

    /// The window of a debounced run whose window is open (`run.debounce_open`), if it is open and names
    /// the run (one `GetItem`), with its key.
    pub async fn open_window_of(&self, run: &Run) -> Result<Option<(SlotsKey, Versioned<Window>)>> {
        let key = SlotsKey::of_run(run);
        let window = self.window(&key).await?;
        Ok(window.filter(|w| w.value.open && w.value.run_uuid == run.uuid).map(|w| (key, w)))
    }

    /// The put that closes window `w` (read at its version): conditioned on that version, so that a
    /// merge landing after the read makes it fail (`flow::timing`).
    pub fn window_close_put(key: &SlotsKey, w: &Versioned<Window>) -> Result<Put> {
        let closed = Window { open: false, ..w.value.clone() };
        Self::window_put(key, &closed, closed_version(w.version), Condition::Version(w.version))
    }

    /// A key value's throttle pace: one `GetItem`.
    pub async fn pace(&self, key: &SlotsKey) -> Result<Option<Versioned<Pace>>> {
        self.get_doc(keyed_pk("THROTTLE", key), "THROTTLE").await
    }

    /// The pace item to write in a run's transaction, conditioned on the version read (`None`: new).
    pub fn pace_put(key: &SlotsKey, pace: &Pace, version: Option<u64>) -> Result<Put> {
        let mut it = item(keyed_pk("THROTTLE", key), "THROTTLE", None, encode(pace)?);
        it.version = version.map_or(1, |v| v + 1);
        it.expires_at = Some(pace.tat.timestamp() + KEEP_S);
        Ok(Put { item: it, condition: version.map_or(Condition::Absent, Condition::Version) })
    }
}
