//! When a keyed trigger's run starts (`settings.flow_control.debounce` and `.throttle`), decided by one
//! conditional write of the key value's own item — pure functions here; the store writes the items
//! (`store::flow`), the trigger (`trigger`) and the worker (`worker`) call these.
//!
//! **Debounce** (`DEBOUNCE#<schedule id>#<SHA-256 of the key>`, a [`Window`]): the first trigger of a
//! key opens a window — a new run, created `initial` with `debounce_open` and `not_before` the window's
//! end, in the same transaction as the window item that names it; a trigger while the window is open
//! merges into it — one conditional put of the window item (its payload becomes the run's
//! `event_variables`, its end moves to `period_s` after it, but never past `max_wait_s` after the
//! first), and no run is written. The run's worker closes the window once its end has come: one
//! transaction of the window item (closed) and the run (the window's last payload as its
//! `event_variables`, `debounce_open` cleared); from then on triggers open a new window.
//!
//! Merges must not conflict with each other (a thousand concurrent triggers of one key each merge in
//! one write), but each must conflict with the close, so that a merge either lands before the close —
//! and the close carries its payload — or fails and opens the next window. The item's version says
//! which window it is: window `k` is versions `k·2³²` (closed) to `(k+1)·2³² - 1`. A merge is
//! conditioned on the version being within the open window (`Condition::VersionBetween`) and writes a
//! random version within it; the close is conditioned on the exact version it read and writes
//! `(k+1)·2³²`. So a merge landing between the close's read and its write changes the version and the
//! close reads again (unless it drew the very version the close read: one chance in about 4 billion
//! per such race, when that merge's payload would be passed over for the one before it).
//!
//! **Throttle** (`THROTTLE#<schedule id>#<SHA-256 of the key>`, a [`Pace`]): GCRA. Starts of one key
//! are spaced `period_s / limit` apart, with `burst` more allowed at once; a trigger's run starts at
//! its turn ([`turn`]) — now, or later (`not_before`: the run waits, and its `StartRun` is delayed to
//! then) — and the pace item is written in the run's transaction, conditioned on its version. A turn
//! more than `max_delay_s` away is refused (429 with `Retry-After`); nothing is written.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::domain::bounds;
use crate::{Error, Result};

/// The longest debounce period.
pub const MAX_DEBOUNCE_PERIOD_S: u64 = 3_600;
/// The longest a debounced run may be put off (`max_wait_s`), and the longest throttle period and
/// `max_delay_s`.
pub const MAX_WAIT_S: u64 = 86_400;
/// The most starts per throttle period, and the largest burst.
pub const MAX_THROTTLE_LIMIT: u32 = 10_000;
/// A throttled run waits at most this long for its turn unless `max_delay_s` says otherwise.
pub const DEFAULT_MAX_DELAY_S: u64 = 3_600;

/// `settings.flow_control.debounce`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Debounce {
    pub period_s: u64,
    /// At most this long after a window's first trigger its run starts (default: 10 periods, at most
    /// a day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_wait_s: Option<u64>,
}

impl Debounce {
    pub fn max_wait_s(&self) -> u64 {
        self.max_wait_s.unwrap_or((self.period_s * 10).min(MAX_WAIT_S))
    }

    pub fn validate(&self) -> Result<()> {
        let field = "settings.flow_control.debounce.period_s";
        if self.period_s == 0 {
            return Err(Error::Unprocessable(format!("{field}: at least 1")));
        }
        bounds::at_most(field, self.period_s, MAX_DEBOUNCE_PERIOD_S)?;
        if let Some(m) = self.max_wait_s {
            let field = "settings.flow_control.debounce.max_wait_s";
            if m < self.period_s {
                return Err(Error::Unprocessable(format!("{field}: at least period_s ({})", self.period_s)));
            }
            bounds::at_most(field, m, MAX_WAIT_S)?;
        }
        Ok(())
    }
}

/// `settings.flow_control.throttle`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Throttle {
    /// Starts per period, per key value.
    pub limit: u32,
    pub period_s: u64,
    /// Starts allowed at once beyond the steady pace.
    #[serde(default)]
    pub burst: u32,
    /// A trigger whose turn is further away than this is refused (429).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delay_s: Option<u64>,
}

impl Throttle {
    pub fn max_delay_s(&self) -> u64 {
        self.max_delay_s.unwrap_or(DEFAULT_MAX_DELAY_S)
    }

    pub fn validate(&self) -> Result<()> {
        let f = |name: &str| format!("settings.flow_control.throttle.{name}");
        if self.limit == 0 {
            return Err(Error::Unprocessable(format!("{}: at least 1", f("limit"))));
        }
        if self.period_s == 0 {
            return Err(Error::Unprocessable(format!("{}: at least 1", f("period_s"))));
        }
        bounds::at_most(&f("limit"), self.limit, MAX_THROTTLE_LIMIT)?;
        bounds::at_most(&f("burst"), self.burst, MAX_THROTTLE_LIMIT)?;
        bounds::at_most(&f("period_s"), self.period_s, MAX_WAIT_S)?;
        bounds::at_most(&f("max_delay_s"), self.max_delay_s(), MAX_WAIT_S)
    }

    /// The spacing of starts: `period_s / limit`, in microseconds.
    fn interval(&self) -> Duration {
        Duration::microseconds((self.period_s * 1_000_000 / u64::from(self.limit)) as i64)
    }
}

/// A trigger's timing under its schedule's flow control: debounced or throttled, per key value.
#[derive(Debug, Clone, PartialEq)]
pub enum Timing {
    Debounce(crate::admission::SlotsKey, Debounce),
    Throttle(crate::admission::SlotsKey, Throttle),
}

impl Timing {
    /// The key value it is for.
    pub fn key(&self) -> &crate::admission::SlotsKey {
        match self {
            Timing::Debounce(k, _) | Timing::Throttle(k, _) => k,
        }
    }

    /// The timing of a trigger of `schedule` keyed `flow_key`, if its flow control debounces or
    /// throttles.
    pub fn of(schedule: &crate::domain::Schedule, flow_key: Option<&str>) -> Option<Timing> {
        let f = schedule.settings.flow_control.as_ref()?;
        Timing::keyed(crate::admission::Scope::Schedule(schedule.id), f, flow_key)
    }

    /// The timing of flow control `f` in `scope`, for a trigger keyed `flow_key`.
    pub fn keyed(
        scope: crate::admission::Scope,
        f: &super::FlowControl,
        flow_key: Option<&str>,
    ) -> Option<Timing> {
        let key = crate::admission::SlotsKey { scope, flow_key: Some(flow_key?.to_string()) };
        match (&f.debounce, &f.throttle) {
            (Some(d), _) => Some(Timing::Debounce(key, d.clone())),
            (None, Some(t)) => Some(Timing::Throttle(key, t.clone())),
            (None, None) => None,
        }
    }
}

/// A debounce window of one key value: open (its run waits for `start_at`), or the last one closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub open: bool,
    pub run_uuid: Uuid,
    pub run_id: i64,
    pub name: String,
    pub created: DateTime<Utc>,
    pub execution_date: DateTime<Utc>,
    pub first_at: DateTime<Utc>,
    pub start_at: DateTime<Utc>,
    /// The last merged payload: the run's `event_variables` when the window closes.
    pub event_variables: Option<Value>,
}

/// Versions per window (see the module's docs).
const WINDOW_VERSIONS: u64 = 1 << 32;

fn window_base(version: u64) -> u64 {
    version & !(WINDOW_VERSIONS - 1)
}

/// A random version of the open window whose base is `base`.
fn open_version(base: u64) -> u64 {
    base + 1 + u64::from(getrandom::u32().unwrap_or(0)) % (WINDOW_VERSIONS - 2)
}

/// What a trigger does with its key's window as read.
#[derive(Debug, Clone, PartialEq)]
pub enum DebounceStep {
    /// Opens a window (a new run, written with the window item at `version`, under `condition`).
    Open { version: u64, condition: crate::store::table::Condition, start_at: DateTime<Utc> },
    /// Merges into the open window: the window as it is to be written, at `version`, under `condition`.
    Merge { window: Window, version: u64, condition: crate::store::table::Condition },
}

/// The step of a trigger at `now` carrying `event_variables`, given the key's window item as read.
pub fn debounce_step(
    current: Option<(&Window, u64)>,
    d: &Debounce,
    event_variables: Option<&Value>,
    now: DateTime<Utc>,
) -> DebounceStep {
    use crate::store::table::Condition;
    let period = Duration::seconds(d.period_s as i64);
    match current {
        Some((w, version)) if w.open => {
            let base = window_base(version);
            let cap = w.first_at + Duration::seconds(d.max_wait_s() as i64);
            let window = Window {
                start_at: (now + period).min(cap).max(w.start_at.min(cap)),
                event_variables: event_variables.cloned(),
                ..w.clone()
            };
            DebounceStep::Merge {
                window,
                version: open_version(base),
                condition: Condition::VersionBetween(base + 1, base + WINDOW_VERSIONS - 1),
            }
        }
        Some((_, version)) => {
            let base = window_base(version);
            // A closed window sits at its next window's base exactly.
            DebounceStep::Open {
                version: open_version(base),
                condition: Condition::Version(version),
                start_at: now + period,
            }
        }
        None => DebounceStep::Open {
            version: open_version(WINDOW_VERSIONS),
            condition: Condition::Absent,
            start_at: now + period,
        },
    }
}

/// The window a trigger opens for its new run.
pub fn opened(run: &crate::domain::Run, start_at: DateTime<Utc>, now: DateTime<Utc>) -> Window {
    Window {
        open: true,
        run_uuid: run.uuid,
        run_id: run.id,
        name: run.name.clone(),
        created: run.created,
        execution_date: run.execution_date,
        first_at: now,
        start_at,
        event_variables: run.event_variables.clone(),
    }
}

/// The version a window read at `version` is closed at: the next window's base.
pub fn closed_version(version: u64) -> u64 {
    window_base(version) + WINDOW_VERSIONS
}

/// The pace of one key value's throttle: GCRA's theoretical arrival time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pace {
    pub tat: DateTime<Utc>,
}

/// When a throttled trigger's run may start.
#[derive(Debug, Clone, PartialEq)]
pub enum Turn {
    /// At `start` (now, or later); the pace to write with the run.
    At { start: DateTime<Utc>, pace: Pace },
    /// Further away than `max_delay_s`: refused; this many seconds until a trigger would be taken.
    Over { retry_after_s: u64 },
}

/// GCRA: a start at the later of now and the theoretical arrival time less the burst's tolerance; the
/// arrival time then moves one interval on. So any `period_s` window (half-open) holds at most
/// `limit + burst` starts.
pub fn turn(current: Option<&Pace>, t: &Throttle, now: DateTime<Utc>) -> Turn {
    let interval = t.interval();
    let tat = current.map_or(now, |p| p.tat.max(now));
    let start = (tat - interval * t.burst as i32).max(now);
    let wait = start - now;
    let max = Duration::seconds(t.max_delay_s() as i64);
    if wait > max {
        let over = (wait - max).num_milliseconds().max(0) as u64;
        return Turn::Over { retry_after_s: over.div_ceil(1000).max(1) };
    }
    Turn::At { start, pace: Pace { tat: tat + interval } }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn gcra_holds_every_window_to_limit_plus_burst_and_refuses_past_max_delay() {
        let t = Throttle { limit: 10, period_s: 60, burst: 3, max_delay_s: Some(600) };
        let mut pace = None;
        let mut starts = Vec::new();
        let mut refused = 0;
        // 100 triggers a second for 2 minutes.
        for i in 0..12_000 {
            let now = at(0) + Duration::milliseconds(i * 10);
            match turn(pace.as_ref(), &t, now) {
                Turn::At { start, pace: p } => {
                    assert!(start >= now);
                    starts.push(start);
                    pace = Some(p);
                }
                Turn::Over { retry_after_s } => {
                    assert!((1..=600).contains(&retry_after_s));
                    refused += 1;
                }
            }
        }
        for (i, s) in starts.iter().enumerate() {
            let in_window = starts[i..].iter().take_while(|x| **x < *s + Duration::seconds(60)).count();
            assert!(in_window <= 13, "{in_window} starts in the 60 s from {s}");
        }
        assert_eq!(starts.iter().filter(|s| **s < at(1)).count(), 4, "the burst starts at once");
        // 120 s of triggers, each turn at most 600 s away: 4 at once, then one each 6 s until 714 s.
        assert_eq!(starts.len(), 4 + 714 / 6, "{refused} refused");
        assert_eq!(starts.last(), Some(&at(714)));
    }

    #[test]
    fn merges_move_the_end_but_never_past_max_wait_and_never_conflict_with_each_other() {
        use crate::store::table::Condition;
        let d = Debounce { period_s: 5, max_wait_s: Some(12) };
        let DebounceStep::Open { version, condition, start_at } = debounce_step(None, &d, None, at(0)) else {
            panic!("a first trigger opens")
        };
        assert_eq!((condition, start_at), (Condition::Absent, at(5)));
        let w = Window {
            open: true,
            run_uuid: Uuid::nil(),
            run_id: 1,
            name: "r".into(),
            created: at(0),
            execution_date: at(0),
            first_at: at(0),
            start_at,
            event_variables: None,
        };
        let step = |w: &Window, v, s| debounce_step(Some((w, v)), &d, Some(&Value::from(s)), at(s));
        let DebounceStep::Merge { window, version: v2, condition } = step(&w, version, 4) else { panic!() };
        assert_eq!(window.start_at, at(9));
        assert_eq!(window.event_variables, Some(Value::from(4)));
        let Condition::VersionBetween(lo, hi) = condition else { panic!() };
        assert!((lo..=hi).contains(&version) && (lo..=hi).contains(&v2), "merges of a window agree");
        assert!(!(lo..=hi).contains(&closed_version(version)), "the close ends them");
        let DebounceStep::Merge { window, .. } = step(&window, v2, 8) else { panic!() };
        assert_eq!(window.start_at, at(12), "max_wait_s caps the end");
        let closed = Window { open: false, ..window };
        let DebounceStep::Open { version: v3, condition, .. } = step(&closed, closed_version(v2), 20) else {
            panic!("a closed window is followed by a new one")
        };
        assert_eq!(condition, Condition::Version(closed_version(v2)));
        assert_eq!(window_base(v3), closed_version(v2));
    }
}
