//! Runs and block runs: one execution of a build, and one block of it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::notify::{Notification, NotifyEvent, NotifyTarget};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Initial,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub const ALL: [RunStatus; 5] = [
        RunStatus::Initial,
        RunStatus::Running,
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ];

    /// The Mage word.
    pub fn as_mage(self) -> &'static str {
        match self {
            RunStatus::Initial => "initial",
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    /// The ZenML word.
    pub fn as_zenml(self) -> &'static str {
        match self {
            RunStatus::Initial => "initializing",
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "stopped",
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(self, RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockRunStatus {
    Initial,
    Queued,
    Running,
    Completed,
    Failed,
    Cancelled,
    UpstreamFailed,
}

impl BlockRunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BlockRunStatus::Initial => "initial",
            BlockRunStatus::Queued => "queued",
            BlockRunStatus::Running => "running",
            BlockRunStatus::Completed => "completed",
            BlockRunStatus::Failed => "failed",
            BlockRunStatus::Cancelled => "cancelled",
            BlockRunStatus::UpstreamFailed => "upstream_failed",
        }
    }

    /// The ZenML step status.
    pub fn as_zenml(self) -> &'static str {
        match self {
            BlockRunStatus::Initial | BlockRunStatus::Queued => "initializing",
            BlockRunStatus::Running => "running",
            BlockRunStatus::Completed => "completed",
            BlockRunStatus::Failed => "failed",
            BlockRunStatus::Cancelled | BlockRunStatus::UpstreamFailed => "stopped",
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(
            self,
            BlockRunStatus::Completed
                | BlockRunStatus::Failed
                | BlockRunStatus::Cancelled
                | BlockRunStatus::UpstreamFailed
        )
    }
}

/// A pipeline run. Stored in its run item with its block runs (`store::runs`), without the fields
/// that are empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// The ZenML dialect's id.
    pub uuid: Uuid,
    /// The Mage dialect's id.
    pub id: i64,
    pub name: String,
    pub build_id: Uuid,
    pub pipeline_id: Uuid,
    pub pipeline_name: String,
    pub pipeline_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backfill_id: Option<i64>,
    pub status: RunStatus,
    pub execution_date: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variables: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_variables: Option<Value>,
    /// The ZenML run configuration, as sent.
    pub config: Map<String, Value>,
    pub passed_sla: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Value>,
    /// From the schedule's settings: a failed block fails only its descendants, not the run.
    #[serde(default)]
    pub allow_blocks_to_fail: bool,
    /// From the schedule: its `sla` and its `timeout` settings.
    #[serde(default)]
    pub deadlines: Deadlines,
    /// For a run of a schedule with run limits: its place under them (`admission`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<Slot>,
    /// For a run of a schedule with flow control: its key's value (`flow`), whose slots it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_key: Option<String>,
    /// Flow control's start time: an `initial` run does not start before it (a throttled run's turn,
    /// a debounced run's window end as last seen; `flow::timing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<DateTime<Utc>>,
    /// A debounced run whose window is still open: its worker closes the window before it starts
    /// (`flow::timing`), which gives it the window's last payload.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub debounce_open: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    /// While the run is unfinished: when the scheduler tick's sweep is to look at it if nothing else
    /// has (SPEC §5; `worker::plan::wake_at` decides it). Kept in the wake index's key, not the
    /// document: the store reads and writes it there, and leaves finished runs out of the index.
    #[serde(skip)]
    pub wake_at: Option<DateTime<Utc>>,
    /// Where to notify when the run ends (SPEC §10), copied from its schedule and pipeline version.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<NotifyTarget>,
    /// The notifications owed for its events, with their attempts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<Notification>,
    /// A replay (ZenML's `POST /api/v1/runs/{id}/replay`): the run it replays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<Uuid>,
}

/// A run's place under its schedule's run limits (`admission`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Slot {
    /// Admitted: it may start.
    Held,
    /// Waiting in `initial` for a slot to free.
    Waiting,
    /// Finished, and its slot (or place) handed over.
    Released,
}

/// A run's time limits, copied from its schedule when it is made (SPEC §6).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Deadlines {
    /// Seconds after `execution_date` by which the run should have finished; past it, unfinished, the
    /// run is `passed_sla`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sla_s: Option<u64>,
    /// Seconds after the run started after which it is ended with `timeout_status` and its running
    /// blocks cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_status: Option<RunStatus>,
}

use super::bounds::plus_secs;

impl Run {
    /// A new `initial` run of `build`: not started, of no schedule or backfill, without variables,
    /// configuration or deadlines — a trigger sets what it adds.
    pub fn new(
        build: &super::Build,
        uuid: Uuid,
        id: i64,
        name: String,
        execution_date: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Run {
        Run {
            uuid,
            id,
            name,
            build_id: build.id,
            pipeline_id: build.pipeline_id,
            pipeline_name: build.pipeline_name.clone(),
            pipeline_version: build.pipeline_version.clone(),
            schedule_id: None,
            backfill_id: None,
            status: RunStatus::Initial,
            execution_date,
            variables: None,
            event_variables: None,
            config: Map::new(),
            passed_sla: false,
            metrics: None,
            allow_blocks_to_fail: false,
            deadlines: Deadlines::default(),
            slot: None,
            flow_key: None,
            not_before: None,
            debounce_open: false,
            started_at: None,
            completed_at: None,
            created: now,
            updated: now,
            wake_at: None,
            notify: Vec::new(),
            notifications: Vec::new(),
            replay_of: None,
        }
    }

    /// When an unfinished run misses its SLA, unless it has already been marked.
    pub fn sla_deadline(&self) -> Option<DateTime<Utc>> {
        if self.passed_sla {
            return None;
        }
        self.deadlines.sla_s.map(|s| plus_secs(self.execution_date, s))
    }

    /// Ends the run with `status` at `now`; a run that ends after its SLA deadline has passed it. The
    /// notifications of both events are owed from here.
    pub fn finish(&mut self, status: RunStatus, now: DateTime<Utc>) {
        if self.sla_deadline().is_some_and(|d| d < now) {
            self.mark_sla_missed(now);
        }
        self.status = status;
        self.completed_at = Some(now);
        self.updated = now;
        self.ended(now);
    }

    /// Marks the run `passed_sla` (once), owing its `sla_missed` notifications.
    pub fn mark_sla_missed(&mut self, now: DateTime<Utc>) {
        if !self.passed_sla {
            self.passed_sla = true;
            self.owe(NotifyEvent::SlaMissed, now);
        }
    }

    /// Owes the notifications of the finished status the run has just reached.
    pub fn ended(&mut self, now: DateTime<Utc>) {
        let event = match self.status {
            RunStatus::Completed => NotifyEvent::Completed,
            RunStatus::Failed => NotifyEvent::Failed,
            RunStatus::Cancelled => NotifyEvent::Cancelled,
            RunStatus::Initial | RunStatus::Running => return,
        };
        self.owe(event, now);
    }

    fn owe(&mut self, event: NotifyEvent, now: DateTime<Utc>) {
        let owed: Vec<Notification> = self
            .notify
            .iter()
            .filter(|t| t.on.contains(&event))
            .map(|t| Notification::new(event, t, now))
            .collect();
        self.notifications.extend(owed);
    }

    /// The first of the SLA and time-out deadlines still to come for an unfinished run.
    pub fn next_deadline(&self) -> Option<DateTime<Utc>> {
        if self.status.is_finished() {
            return None;
        }
        [self.sla_deadline(), self.timeout_deadline()].into_iter().flatten().min()
    }

    /// When a started run times out.
    pub fn timeout_deadline(&self) -> Option<DateTime<Utc>> {
        Some(plus_secs(self.started_at?, self.deadlines.timeout_s?))
    }
}

/// A block's run within a run. Stored inside its run's item, compact (`store::runs`): the fields
/// the run gives (`id`, `run_id`, `run_uuid`, `created`) and empty ones are not written, and are put
/// back when read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockRun {
    #[serde(default, skip_serializing)]
    pub id: i64,
    #[serde(default, skip_serializing)]
    pub run_id: i64,
    #[serde(default = "Uuid::nil", skip_serializing)]
    pub run_uuid: Uuid,
    /// The block's name.
    pub block_uuid: String,
    pub status: BlockRunStatus,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempts: u32,
    /// The block's parameters for this run: defaults with the run configuration's values applied.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub parameters: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
    /// Its run's creation time: block runs are made with their run (and a debounce merge moves both),
    /// so it is stored once, in the run.
    #[serde(default, skip_serializing)]
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    /// Failed attempts, counted against the block's `retries` (an attempt lost with a worker is not one).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failures: u32,
    /// While an attempt runs in a worker: when that worker is presumed gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_until: Option<DateTime<Utc>>,
    /// From an attempt's claim until it ends (the target may call back before it has answered 202):
    /// SHA-256 of the attempt's one-time callback token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_hash: Option<String>,
    /// While an accepted attempt waits: when it times out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_deadline: Option<DateTime<Utc>>,
    /// A queued retry waits until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<DateTime<Utc>>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl BlockRun {
    /// The `index`-th block run of a new run, `initial`.
    pub fn new(
        run_uuid: Uuid,
        run_id: i64,
        index: usize,
        block: &str,
        parameters: Map<String, Value>,
        now: DateTime<Utc>,
    ) -> Self {
        BlockRun {
            id: crate::clock::block_run_id(run_id, index),
            run_id,
            run_uuid,
            block_uuid: block.to_string(),
            status: BlockRunStatus::Initial,
            attempts: 0,
            parameters,
            metrics: None,
            started_at: None,
            completed_at: None,
            created: now,
            updated: now,
            failures: 0,
            lease_until: None,
            callback_hash: None,
            callback_deadline: None,
            not_before: None,
        }
    }
}

/// A run with its block runs, as handlers show it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunDetail {
    pub run: Run,
    pub blocks: Vec<BlockRun>,
}
