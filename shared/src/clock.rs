//! Time and randomness, injected so that tests control them.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, SubsecRound, Utc};

/// The source of "now". Timestamps are kept to the microsecond, as both dialects print them.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now().trunc_subsecs(6)
    }
}

/// A clock tests move forward: the system time plus an offset (to expire leases and time-outs without
/// sleeping).
#[derive(Default)]
pub struct ManualClock {
    offset_ms: std::sync::atomic::AtomicI64,
}

impl ManualClock {
    pub fn advance(&self, by: chrono::Duration) {
        self.offset_ms.fetch_add(by.num_milliseconds(), std::sync::atomic::Ordering::SeqCst);
    }

    /// Puts the clock at `t` (from where it goes on at the system clock's pace).
    pub fn set(&self, t: DateTime<Utc>) {
        let offset = (t - SystemClock.now()).num_milliseconds();
        self.offset_ms.store(offset, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        SystemClock.now()
            + chrono::Duration::milliseconds(self.offset_ms.load(std::sync::atomic::Ordering::SeqCst))
    }
}

/// `N` bytes from the OS CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // The OS CSPRNG failing is not something a request can recover from.
    getrandom::fill(&mut buf).expect("the OS random number generator is unavailable");
    buf
}

/// A secret of 128 bits from the OS CSPRNG as 32 lower-case hex characters (Mage's token shape).
pub fn new_token() -> String {
    hex::encode(random_bytes::<16>())
}

/// Integer ids count milliseconds from 2024-01-01T00:00:00Z.
const ID_EPOCH_MS: i64 = 1_704_067_200_000;
/// Bits below the millisecond: 4,096 ids per millisecond per table.
const ID_LOW_BITS: u32 = 12;
/// The last id this process handed out (ids of one process only ever grow).
static LAST_ID: AtomicI64 = AtomicI64::new(0);

/// The integer id of a run, a schedule or a backfill (SPEC §11): milliseconds since 2024-01-01 shifted
/// left by 12 bits, plus 12 low bits that are random for a process's first id in a millisecond and count
/// up from there for the next ones. So ids grow with creation time (strictly, within one process), stay
/// below 2^53 until 2093, and leave room for 4,096 new ids per millisecond — 4 million a second — per
/// table. Processes drawing in the same millisecond may pick the same id: the conditional write that
/// claims it decides, and the loser draws again (no hot counter item anywhere).
pub fn new_int_id(now: DateTime<Utc>) -> i64 {
    new_int_ids(now, 1)
}

/// `n` consecutive ids (a run and its block runs); returns the first. See [`new_int_id`].
pub fn new_int_ids(now: DateTime<Utc>, n: usize) -> i64 {
    let ms = (now.timestamp_millis() - ID_EPOCH_MS).max(0);
    let low = i64::from(u16::from_le_bytes(random_bytes::<2>()) >> (16 - ID_LOW_BITS));
    let candidate = (ms << ID_LOW_BITS) | low;
    let n = i64::try_from(n.max(1)).unwrap_or(1);
    let mut last = LAST_ID.load(Ordering::Relaxed);
    loop {
        let first = candidate.max(last + 1);
        match LAST_ID.compare_exchange_weak(last, first + n - 1, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return first,
            Err(seen) => last = seen,
        }
    }
}

/// The id of the `index`-th block run of the run with id `run_id`: the ids right after the run's own
/// (drawn with it by [`new_int_ids`]). Unique within the run and growing with creation time like run ids;
/// across runs drawn by different processes in the same millisecond they may repeat, so a block run is
/// always addressed together with its run (the callback token names the run).
pub fn block_run_id(run_id: i64, index: usize) -> i64 {
    run_id + 1 + i64::try_from(index).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_32_lowercase_hex_and_differ() {
        let a = new_token();
        let b = new_token();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }

    #[test]
    fn int_ids_grow_with_time_and_within_a_millisecond_and_stay_js_safe() {
        let t1 = Utc::now();
        let a = new_int_id(t1);
        let b = new_int_id(t1);
        assert!(a < b, "same millisecond: {a} then {b}");
        let c = new_int_ids(t1 + chrono::Duration::milliseconds(1), 4);
        assert!(c > b && new_int_id(t1) > c + 3, "a range is reserved whole");
        let far = t1 + chrono::Duration::days(365 * 65);
        assert!(new_int_ids(far, 1000) + 1000 < (1i64 << 53));
        assert_eq!(block_run_id(a, 0), a + 1);
    }
}
