//! Time and randomness, injected so that tests control them.

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

/// Lower-case hex of some bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// A secret of 128 bits from the OS CSPRNG as 32 lower-case hex characters (Mage's token shape).
pub fn new_token() -> String {
    hex(&random_bytes::<16>())
}

/// The integer id of a run or a schedule: 10-millisecond ticks since 2024-01-01 shifted left by 6 bits, plus 6 random
/// bits. Time-ordered, below 2^46 for centuries, and made unique by the conditional write that claims it
/// (a collision draws again), not by a hot counter item. Block runs number themselves from it
/// ([`block_run_id`]), so their ids stay below 2^53 (safe in JavaScript) as well.
pub fn new_int_id(now: DateTime<Utc>) -> i64 {
    const EPOCH_2024_MS: i64 = 1_704_067_200_000;
    let ticks = ((now.timestamp_millis() - EPOCH_2024_MS) / 10).max(0);
    let low = i64::from(random_bytes::<1>()[0] & 0x3f);
    (ticks << 6) | low
}

/// The id of the `index`-th block run of run `run_id` (a pipeline has at most 128 blocks), and back.
pub fn block_run_id(run_id: i64, index: usize) -> i64 {
    run_id * 128 + index as i64
}

/// The run a block run id belongs to.
pub fn run_id_of_block_run(block_run_id: i64) -> i64 {
    block_run_id / 128
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
    fn int_ids_are_time_ordered_and_js_safe() {
        let t1 = Utc::now();
        let t2 = t1 + chrono::Duration::milliseconds(20);
        let a = new_int_id(t1);
        let b = new_int_id(t2);
        assert!(a < b);
        let far = t1 + chrono::Duration::days(365 * 300);
        assert!(block_run_id(new_int_id(far), 127) < (1i64 << 53));
        assert_eq!(run_id_of_block_run(block_run_id(a, 5)), a);
    }
}
