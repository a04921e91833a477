//! Run limits of a schedule (SPEC §6): `settings.pipeline_run_limit` and
//! `settings.skip_if_previous_running`, applied to every run of the schedule — token triggers, run-now,
//! time schedule fires and backfills alike. (ZenML's run route starts a build, not a schedule, so no
//! schedule's limits apply there.)
//!
//! A schedule with either setting has one **slots** item (`store::slots`): the runs that hold a slot
//! (admitted: started, or free to start) and the runs waiting for one, in `execution_date` order, then
//! id. Every decision is a conditional write of that item, in the same transaction as the run it
//! concerns, so concurrent triggers and hand-overs never admit more than the limit:
//! - **Admission**, in the trigger's transaction: a run takes a slot while fewer than the limit are held
//!   and nobody waits; else, with `skip_if_previous_running`, it is created `cancelled` (its blocks too)
//!   and the slots item is not touched; else it **waits**: created `initial`, on the waiting list, with
//!   no queue message and out of the wake index — nothing polls it.
//! - **Hand-over**: a run that held or awaited a slot and has finished (completed, failed, cancelled,
//!   timed out) gives it up ([`release`]): one transaction removes it from the slots item, gives the
//!   freed slots to the first waiting runs (each admitted run's item rewritten with a wake time), and
//!   marks the finished run released; then each admitted run is sent its `StartRun`.
//!
//! Crash safety: a finished run whose slot is not yet released stays in the wake index (its wake time a
//! grace period after it finished), so if the process that finished it dies before the hand-over, the
//! scheduler's sweep does it. An admitted run whose `StartRun` was lost is in the wake index as any
//! `initial` run is. So a waiting run always starts once a slot frees.
//!
//! Cost: the slots item is written once per run of a limited schedule at admission and once at its
//! hand-over, so a limited schedule's runs are serialized through one item (fine: the limit serializes
//! them anyway); schedules without limits never touch it. The waiting list is bounded by
//! [`MAX_WAITING`] (a trigger past it is a 429).
//!
//! **Per key** (`settings.flow_control.concurrency`, `flow`): the same machinery, with one slots item
//! per schedule and key value (`SLOTS#<schedule id>#<SHA-256 of the key>`), `per_key` slots, the key
//! kept on the run (`flow_key`) so that its hand-over finds the item. Over the limit, `on_limit`
//! decides: `queue` waits as above; `skip` writes nothing at all ([`Admission::Refused`]);
//! `cancel_running` waits at once and names the key's runs it supersedes (the oldest holders that
//! free one slot, and every run already waiting), which the trigger cancels after its write — each
//! cancel hands its slot over, so the new run starts when they have stopped. If the trigger dies
//! between its write and those cancels, the new run waits for the old ones to finish on their own:
//! it is late, never lost.
//!
//! **ZenML runs** take flow control with each trigger (`extra.flow_control`), scoped to the build's
//! pipeline name ([`Scope::Pipeline`]: `SLOTS#PIPELINE:<name>#<hash>`); with no schedule to read the
//! limit from at hand-over, the slots item keeps it (`Slots::limit`, the latest trigger's).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::run::Slot;
use crate::domain::Schedule;
use crate::flow::OnLimit;
use crate::queue::Message;
use crate::store::Versioned;
use crate::{App, Error, Result};

/// Runs that may wait for a slot of one schedule at once.
pub const MAX_WAITING: usize = 2_000;

/// Whose flow-control items: a schedule's (its runs, from the Mage routes and the webhook intake), or
/// a pipeline name's (ZenML runs, whose flow control comes with each trigger: `docs/flow.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Schedule(i64),
    Pipeline(String),
}

impl std::fmt::Display for Scope {
    /// As item keys spell it: the schedule's id, or `PIPELINE:<name>`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Schedule(id) => write!(f, "{id}"),
            Scope::Pipeline(name) => write!(f, "PIPELINE:{name}"),
        }
    }
}

/// Which slots item: a schedule's, or one key value's of a schedule's or a pipeline's flow control.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotsKey {
    pub scope: Scope,
    /// The flow-control key's value (`None`: the schedule's own run limits).
    pub flow_key: Option<String>,
}

impl SlotsKey {
    /// The key of a run's flow-control items: its schedule's, else (a ZenML run) its pipeline's.
    pub fn of_run(run: &crate::domain::Run) -> SlotsKey {
        let scope = match run.schedule_id {
            Some(id) => Scope::Schedule(id),
            None => Scope::Pipeline(run.pipeline_name.clone()),
        };
        SlotsKey { scope, flow_key: run.flow_key.clone() }
    }
}

/// A schedule's limits, as its settings give them.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub slots: SlotsKey,
    /// Slots (`pipeline_run_limit`, or `per_key`); `usize::MAX` when only skip is set.
    pub limit: usize,
    pub skip_if_previous_running: bool,
    /// Over the limit (per key only; the schedule's own limits queue).
    pub on_limit: OnLimit,
}

impl Limits {
    /// The limits of a schedule, if it has any; a run keyed `flow_key` under its flow control's
    /// concurrency, if it has that.
    pub fn of(schedule: &Schedule, flow_key: Option<&str>) -> Option<Limits> {
        let settings = &schedule.settings;
        if let Some(f) = settings.flow_control.as_ref().filter(|f| f.concurrency.is_some()) {
            return Limits::keyed(Scope::Schedule(schedule.id), f, flow_key);
        }
        let limit = settings.pipeline_run_limit.map(|l| l as usize);
        let skip = settings.skip_if_previous_running.unwrap_or(false);
        (limit.is_some() || skip).then_some(Limits {
            slots: SlotsKey { scope: Scope::Schedule(schedule.id), flow_key: None },
            limit: limit.unwrap_or(usize::MAX),
            skip_if_previous_running: skip,
            on_limit: OnLimit::Queue,
        })
    }
}

impl Limits {
    /// The per-key limits of flow control `f` in `scope`, for a trigger keyed `flow_key`.
    pub fn keyed(scope: Scope, f: &crate::flow::FlowControl, flow_key: Option<&str>) -> Option<Limits> {
        let c = f.concurrency.as_ref()?;
        Some(Limits {
            slots: SlotsKey { scope, flow_key: Some(flow_key?.to_string()) },
            limit: c.per_key as usize,
            skip_if_previous_running: false,
            on_limit: c.on_limit,
        })
    }
}

/// A run waiting for a slot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Waiter {
    pub uuid: Uuid,
    pub execution_date: DateTime<Utc>,
    pub id: i64,
}

/// The slots item of one schedule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Slots {
    pub holders: Vec<Uuid>,
    /// In the order they start: `execution_date`, then id.
    pub waiting: Vec<Waiter>,
    /// The limit, kept for a pipeline's keys (ZenML runs: no schedule to read it from at hand-over).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// What admission decided for a new run.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Takes a slot: the slots item to write (and the version it was read at; `None`: new).
    Holds(Slots, Option<u64>),
    /// Waits: the slots item to write.
    Waits(Slots, Option<u64>),
    /// `skip_if_previous_running` and a run of the schedule is unfinished: created `cancelled`.
    Skipped,
    /// Per key, `on_limit: skip`, and the key's slots are taken: nothing is written.
    Refused,
    /// Per key, `on_limit: cancel_running`: waits (the slots item to write), and these runs of the key
    /// are to be cancelled once the run is written.
    Supersedes(Slots, Option<u64>, Vec<Uuid>),
}

impl Admission {
    /// The run's slot state.
    pub fn slot(&self) -> Option<Slot> {
        match self {
            Admission::Holds(..) => Some(Slot::Held),
            Admission::Waits(..) | Admission::Supersedes(..) => Some(Slot::Waiting),
            Admission::Skipped | Admission::Refused => None,
        }
    }

    /// The slots item to write with the run, and the version it must still have.
    pub fn write(&self) -> Option<(&Slots, Option<u64>)> {
        match self {
            Admission::Holds(s, v) | Admission::Waits(s, v) | Admission::Supersedes(s, v, _) => Some((s, *v)),
            Admission::Skipped | Admission::Refused => None,
        }
    }
}

/// Decides a new run's admission from the schedule's slots item as it is now (one `GetItem`).
pub async fn admit(app: &App, limits: &Limits, waiter: Waiter) -> Result<Admission> {
    let current = app.store.slots(&limits.slots).await?;
    let (slots, version) = match current {
        Some(v) => (v.value, Some(v.version)),
        None => (Slots::default(), None),
    };
    decide(limits, slots, version, waiter)
}

/// [`admit`]'s decision over the slots item as read (at `version`; `None`: there is none yet) — also
/// what the rules test route predicts, without writing.
pub fn decide(limits: &Limits, mut slots: Slots, version: Option<u64>, waiter: Waiter) -> Result<Admission> {
    if let Scope::Pipeline(_) = limits.slots.scope {
        slots.limit = Some(limits.limit);
    }
    let busy = !slots.holders.is_empty() || !slots.waiting.is_empty();
    if limits.skip_if_previous_running && busy {
        return Ok(Admission::Skipped);
    }
    if slots.holders.len() < limits.limit && slots.waiting.is_empty() {
        slots.holders.push(waiter.uuid);
        return Ok(Admission::Holds(slots, version));
    }
    if limits.on_limit == OnLimit::Skip {
        return Ok(Admission::Refused);
    }
    if slots.waiting.len() >= MAX_WAITING {
        return Err(Error::TooManyRequests(format!(
            "{MAX_WAITING} runs are waiting for a slot (settings.pipeline_run_limit or flow_control.concurrency)"
        )));
    }
    // Superseded: the oldest holders that free one slot, and every run already waiting.
    let superseded: Vec<Uuid> = if limits.on_limit == OnLimit::CancelRunning {
        let n = (slots.holders.len() + 1).saturating_sub(limits.limit).min(slots.holders.len());
        slots.holders[..n].iter().copied().chain(slots.waiting.iter().map(|w| w.uuid)).collect()
    } else {
        Vec::new()
    };
    let at =
        slots.waiting.partition_point(|w| (w.execution_date, w.id) <= (waiter.execution_date, waiter.id));
    slots.waiting.insert(at, waiter);
    if limits.on_limit == OnLimit::CancelRunning {
        return Ok(Admission::Supersedes(slots, version, superseded));
    }
    Ok(Admission::Waits(slots, version))
}

/// Gives up the slot (or the place in the queue) of a finished run and hands freed slots to the first
/// waiting runs, then sends them their `StartRun`. Safe to repeat: a run already released is left alone.
pub async fn release(app: &App, run_uuid: Uuid) -> Result<()> {
    for _ in 0..8 {
        let Some(run) = app.store.get_run(run_uuid).await? else { return Ok(()) };
        let needs =
            run.value.run.status.is_finished() && run.value.run.slot.is_some_and(|s| s != Slot::Released);
        if !needs {
            return Ok(());
        }
        let key = SlotsKey::of_run(&run.value.run);
        let Some(slots) = app.store.slots(&key).await? else {
            return mark_released(app, run).await;
        };
        let limit = match (&key.scope, slots.value.limit) {
            (Scope::Schedule(id), _) => match app.store.get_schedule(*id).await? {
                Some(s) => Limits::of(&s.value, key.flow_key.as_deref()).map_or(usize::MAX, |l| l.limit),
                None => usize::MAX,
            },
            (Scope::Pipeline(_), limit) => limit.unwrap_or(usize::MAX),
        };
        let mut next = slots.value.clone();
        next.holders.retain(|u| *u != run_uuid);
        next.waiting.retain(|w| w.uuid != run_uuid);
        let now = app.clock.now();
        let mut admitted = Vec::new();
        while next.holders.len() < limit && !next.waiting.is_empty() {
            let w = next.waiting.remove(0);
            let Some(mut waiting) = app.store.get_run(w.uuid).await? else { continue };
            let waiting_run = &mut waiting.value.run;
            if waiting_run.status.is_finished() {
                continue; // cancelled while waiting: its own release removes nothing more
            }
            next.holders.push(w.uuid);
            waiting_run.slot = Some(Slot::Held);
            waiting_run.updated = now;
            waiting_run.wake_at = crate::worker::plan::wake_at(None, waiting_run, &[], now);
            admitted.push(waiting);
        }
        let mut done = run;
        done.value.run.slot = Some(Slot::Released);
        done.value.run.wake_at = None;
        let mut runs = vec![done];
        runs.extend(admitted.iter().cloned());
        if app.store.hand_over(&key, &next, slots.version, &runs).await? {
            for r in admitted {
                tracing::info!(run_uuid = %r.value.run.uuid, scope = %key.scope, flow_key = ?key.flow_key, "a slot freed: run admitted");
                if let Err(e) = app.queue.send(&Message::StartRun { run_uuid: r.value.run.uuid }).await {
                    tracing::error!(run_uuid = %r.value.run.uuid, error = %e, "send failed; the sweep will queue the run");
                }
            }
            return Ok(());
        }
    }
    Err(Error::Conflict("the schedule's slots are changing; the sweep will retry".into()))
}

async fn mark_released(app: &App, mut run: Versioned<crate::domain::run::RunDetail>) -> Result<()> {
    run.value.run.slot = Some(Slot::Released);
    run.value.run.wake_at = None;
    let status = run.value.run.status;
    app.store.update_run(&run, status).await?;
    Ok(())
}
