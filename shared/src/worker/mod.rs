//! The worker: takes run queue messages and advances runs, block by block (SPEC §5).
//!
//! Every step reads the run and its block runs in one query, applies a pure transition ([`plan`]) and
//! writes the changed items in one transaction conditioned on the versions it read — the run item's
//! version included, so all changes of one run are serialized and a lost race is simply read and
//! applied again. Each write also carries the run's wake time ([`plan::wake_at`]), by which the
//! scheduler's sweep looks at the run if no message has. Messages are sent after the write that asks
//! for them; a message that finds its step done already (a duplicate, a redelivery, a lease re-check)
//! re-sends that step's follow-ups ([`plan::followups`]), in case the worker that wrote it stopped
//! before sending.
//!
//! The invariant (`docs/worker.md` walks every crash point): *every unfinished run always has a queue
//! message on its way that will advance it, or the scheduler tick's sweep will find it.*
//!
//! Attempts: a `RunBlock` message claims attempt `n` of a block (status `running`, a lease) before its
//! executor is called, so a duplicate message never calls it twice for one attempt. A `RunBlock` that
//! finds the attempt still claimed under an unexpired lease (the queue's visibility timeout was shorter
//! than the lease) sends itself again for the lease's end; one that finds the lease passed gives the
//! attempt up (it is not counted as a failure) and queues attempt `n + 1`.
//!
//! Cost per block (DynamoDB): the `RunBlock` message reads the run (one `Query`) and writes the claim
//! (one transaction: the run item and the block run, 2 items); its result is one more `Query` and one
//! transaction of the run item, the block run and the block runs it dispatches or cancels (run list
//! entries are rewritten only when the run's status changes). With the `StartRun` message that is about
//! 2 reads and 2 transactions of ~2–3 items per block; the build is read once per warm worker. A `noop`
//! block costs nothing of its own: it completes in the write that dispatches it.

pub mod executor;
pub mod lambda;
pub mod notify;
pub mod plan;

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::domain::bounds::plus_secs;
use crate::domain::run::{RunDetail, Slot};
use crate::domain::{BlockRun, BlockRunStatus, Build, Run, RunStatus};
use crate::queue::{Message, RunQueue, MAX_DELAY};
use crate::store::Versioned;
use crate::{App, Error, Result};
use executor::{Invocation, Invoke, Outcome};
use plan::Send;

/// How long a claimed attempt may run beyond its executor's time-out before it counts as lost.
const LEASE_MARGIN_S: u64 = 60;
/// How long an accepted (202) attempt waits for its callback when the block sets no `timeout_s`.
pub const DEFAULT_CALLBACK_TIMEOUT_S: u64 = 3600;
/// Conditional-write races one step retries before giving up (the message is then redelivered).
const MAX_RACES: usize = 20;
/// Times a failed write of an attempt's outcome is tried again (backoff from 0.1 s doubling to 8 s:
/// about 21 s in all, inside the lease's [`LEASE_MARGIN_S`]).
const RECORD_RETRIES: u32 = 8;

/// Sends messages a written state asks for, each after its delay (longer waits re-send themselves).
pub async fn send_all(queue: &dyn RunQueue, sends: Vec<Send>) -> Result<()> {
    for s in sends {
        queue.send_delayed(&s.message, Duration::from_secs(s.delay_s).min(MAX_DELAY)).await?;
    }
    Ok(())
}

/// A run as read: the run with the version of its item, its block runs, and the build's blocks.
struct State {
    run: Versioned<Run>,
    blocks: Vec<BlockRun>,
    build: Arc<Build>,
}

impl State {
    fn values(&self) -> (Run, Vec<BlockRun>) {
        (self.run.value.clone(), self.blocks.clone())
    }

    /// `run` with the block runs as read, to be written over this state.
    fn record(&self, run: Run) -> Versioned<RunDetail> {
        Versioned { value: RunDetail { run, blocks: self.blocks.clone() }, version: self.run.version }
    }

    fn index_of(&self, block: &str) -> Option<usize> {
        self.build.blocks.iter().position(|b| b.name == block)
    }
}

pub struct Worker {
    pub app: App,
    executors: Arc<dyn Invoke>,
    /// The API's base URL, for callback URLs.
    public_url: String,
    builds: Mutex<HashMap<Uuid, Arc<Build>>>,
}

/// A one-time callback token, 32 characters: the run's id in 14 hex digits (the route's block run id alone
/// does not say which run it belongs to; see [`crate::clock::block_run_id`]), then 104 random bits in 18
/// URL-safe base64 characters.
fn callback_token(run_id: i64) -> String {
    let secret = base64_simd::URL_SAFE_NO_PAD.encode_to_string(crate::clock::random_bytes::<13>());
    format!("{run_id:014x}{secret}")
}

/// The run id a callback token names (`None`: not a token of this shape).
fn run_id_of_token(token: &str) -> Option<i64> {
    token.get(..14).and_then(|id| i64::from_str_radix(id, 16).ok()).filter(|_| token.len() == 32)
}

pub fn callback_token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Worker {
    pub fn new(app: App, executors: Arc<dyn Invoke>, public_url: &str) -> Self {
        Worker {
            app,
            executors,
            public_url: public_url.trim_end_matches('/').to_string(),
            builds: Mutex::new(HashMap::new()),
        }
    }

    /// A worker for the API functions (callbacks, `retry_blocks`), which change run state but never run
    /// blocks themselves.
    pub fn for_api(app: App) -> Self {
        Worker::new(app, Arc::new(executor::NotHere), "")
    }

    fn now(&self) -> DateTime<Utc> {
        self.app.clock.now()
    }

    async fn build(&self, id: Uuid) -> Result<Arc<Build>> {
        if let Some(b) = self.builds.lock().await.get(&id) {
            return Ok(b.clone());
        }
        let build = Arc::new(
            self.app
                .store
                .get_build(id)
                .await?
                .ok_or_else(|| Error::Internal(format!("build {id} is missing")))?,
        );
        self.builds.lock().await.insert(id, build.clone());
        Ok(build)
    }

    async fn load(&self, run_uuid: Uuid) -> Result<Option<State>> {
        let Some(record) = self.app.store.get_run(run_uuid).await? else { return Ok(None) };
        let RunDetail { run, blocks } = record.value;
        let build = self.build(run.build_id).await?;
        if blocks.len() != build.blocks.len() {
            return Err(Error::Internal(format!("run {run_uuid} does not match its build")));
        }
        Ok(Some(State { run: Versioned { value: run, version: record.version }, blocks, build }))
    }

    /// Writes the run and its block runs over `state`; `false` if a race was lost.
    async fn commit(&self, state: &State, mut run: Run, blocks: &[BlockRun]) -> Result<bool> {
        let now = self.now();
        run.updated = now;
        run.wake_at = plan::wake_at(state.run.value.wake_at, &run, blocks, now);
        let (uuid, hand_over) = (run.uuid, run.status.is_finished() && run.slot == Some(Slot::Held));
        // The notifications this write owes (the run ended, or missed its SLA), sent once it is written.
        let owed = plan::notifications(&run, state.run.value.notifications.len(), now);
        let written = self
            .app
            .store
            .update_run(
                &Versioned { value: RunDetail { run, blocks: blocks.to_vec() }, version: state.run.version },
                state.run.value.status,
            )
            .await?;
        if written && !owed.is_empty() {
            self.send_all(owed).await?;
        }
        if written && hand_over {
            // The run's slot goes to the next waiting run; if this fails, the sweep does it.
            if let Err(e) = crate::admission::release(&self.app, uuid).await {
                tracing::warn!(run_uuid = %uuid, error = %e, "hand-over failed; the sweep will retry it");
            }
        }
        Ok(written)
    }

    async fn send_all(&self, sends: Vec<Send>) -> Result<()> {
        send_all(self.app.queue.as_ref(), sends).await
    }

    /// Handles one message. An error means "deliver it again later".
    pub async fn handle(&self, message: &Message) -> Result<()> {
        match message {
            Message::StartRun { run_uuid } => self.start_run(*run_uuid).await,
            Message::RunBlock { run_uuid, block, attempt } => {
                self.run_block(*run_uuid, block, *attempt).await
            }
            Message::CheckBlock { run_uuid, block, attempt } => {
                self.check_block(*run_uuid, block, *attempt).await
            }
            Message::Notify { run_uuid, delivery, attempt } => {
                self.notify(*run_uuid, *delivery, *attempt).await
            }
            Message::StartBackfill { backfill_id, from } => {
                crate::backfills::page(&self.app, *backfill_id, *from).await
            }
        }
    }

    /// `StartRun`: a look at the whole run ([`plan::reconcile`]) — from a trigger, `retry_blocks` or the
    /// sweep. Writes what changed (the wake time included), then sends everything the state waits for.
    async fn start_run(&self, run_uuid: Uuid) -> Result<()> {
        for _ in 0..MAX_RACES {
            let Some(state) = self.load(run_uuid).await? else {
                tracing::warn!(run_uuid = %run_uuid, "start of an unknown run ignored");
                return Ok(());
            };
            let (mut run, mut blocks) = state.values();
            let now = self.now();
            if run.status.is_finished() {
                // Its notifications still owed (the sweep queues a finished run for them).
                return self.send_all(plan::pending(&run, &blocks, now)).await;
            }
            if run.debounce_open && run.status == RunStatus::Initial {
                if self.close_window(&state, &blocks, now).await? {
                    return Ok(()); // its window is still open: looked at again at its end
                }
                continue; // closed (or raced): read it again
            }
            plan::reconcile(&mut run, &mut blocks, &state.build.blocks, now);
            let wake = plan::wake_at(state.run.value.wake_at, &run, &blocks, now);
            let unchanged =
                run == state.run.value && wake == state.run.value.wake_at && blocks == state.blocks;
            if unchanged || self.commit(&state, run.clone(), &blocks).await? {
                if state.run.value.status == RunStatus::Initial {
                    tracing::info!(run_uuid = %run_uuid, "run started");
                }
                if run.status.is_finished() {
                    return Ok(()); // finished by this look: its commit sent the notifications owed
                }
                return self.send_all(plan::pending(&run, &blocks, now)).await;
            }
        }
        Err(Error::Conflict(format!("run {run_uuid}: too many concurrent changes")))
    }

    /// A debounced run whose window is open (`flow::timing`): before the window's end, the run waits —
    /// its `not_before` moved to that end if a merge moved it (so the sweep looks then, not before),
    /// and a `StartRun` sent for then — and this answers `true`. From the window's end on, the window
    /// item and the run are written in one transaction: the window closed, the run with the window's
    /// last payload as its `event_variables`; this answers `false` (read the run again), as it does
    /// when a write lost a race.
    async fn close_window(&self, state: &State, blocks: &[BlockRun], now: DateTime<Utc>) -> Result<bool> {
        let run = &state.run;
        let mut next = run.clone();
        next.value.updated = now;
        let Some((key, w)) = self.app.store.open_window_of(&run.value).await? else {
            // Only this run's worker (or its cancel) closes its window, in the write that clears the
            // flag: not reached.
            tracing::warn!(run_uuid = %run.value.uuid, "debounced run without its open window: starting it");
            next.value.debounce_open = false;
            next.value.not_before = None;
            self.app.store.update_run(&state.record(next.value), run.value.status).await?;
            return Ok(false);
        };
        if w.value.start_at > now {
            if run.value.not_before != Some(w.value.start_at) {
                next.value.not_before = Some(w.value.start_at);
                next.value.wake_at = plan::wake_at(run.value.wake_at, &next.value, blocks, now);
                if !self.app.store.update_run(&state.record(next.value), run.value.status).await? {
                    return Ok(false);
                }
            }
            let again = Send {
                message: Message::StartRun { run_uuid: run.value.uuid },
                delay_s: plan::secs_until(w.value.start_at, now),
            };
            self.send_all(vec![again]).await?;
            return Ok(true);
        }
        next.value.debounce_open = false;
        next.value.not_before = None;
        next.value.event_variables.clone_from(&w.value.event_variables);
        next.value.wake_at = plan::wake_at(None, &next.value, blocks, now);
        let close = crate::store::Store::window_close_put(&key, &w)?;
        if self.app.store.update_run_with(&state.record(next.value), run.value.status, vec![close]).await? {
            tracing::info!(run_uuid = %run.value.uuid, flow_key = ?key.flow_key, "debounce window closed: the run starts");
        }
        Ok(false)
    }

    /// Claims attempt `attempt` of a block, calls its executor, records the outcome.
    async fn run_block(&self, run_uuid: Uuid, block: &str, attempt: u32) -> Result<()> {
        let mut claimed = None;
        for _ in 0..MAX_RACES {
            let Some(state) = self.load(run_uuid).await? else { return Ok(()) };
            let Some(i) = state.index_of(block) else {
                tracing::warn!(run_uuid = %run_uuid, block, "message for an unknown block ignored");
                return Ok(());
            };
            let (run, mut blocks) = state.values();
            let now = self.now();
            let b = &blocks[i];
            if b.attempts >= attempt {
                let lost = b.status == BlockRunStatus::Running
                    && b.attempts == attempt
                    && b.lease_until.is_some_and(|lease| lease <= now);
                if !lost {
                    // A duplicate, a redelivery while the attempt's lease holds, or the attempt is done:
                    // re-send what this attempt's steps ask for — a re-check at the lease's end above all,
                    // so that the run is looked at again if the worker holding the lease is gone.
                    let dag = &state.build.blocks;
                    return self.send_all(plan::followups(&run, &blocks, dag, i, attempt, now)).await;
                }
                // The worker that claimed this attempt is gone: give it up without counting a failure.
                tracing::warn!(run_uuid = %run_uuid, block, attempt, "attempt lost with its worker; running the next");
                let next = plan::give_up(&run, &mut blocks[i], now);
                if self.commit(&state, run, &blocks).await? {
                    return self.send_all(vec![next]).await;
                }
                continue;
            }
            if attempt != b.attempts + 1
                || !matches!(b.status, BlockRunStatus::Queued | BlockRunStatus::Initial)
            {
                return Ok(()); // a stale message
            }
            if run.status.is_finished() {
                blocks[i].status = BlockRunStatus::Cancelled;
                blocks[i].updated = now;
                if self.commit(&state, run, &blocks).await? {
                    return Ok(());
                }
                continue;
            }
            if let Some(t) = b.not_before.filter(|t| *t > now) {
                let again = Message::RunBlock { run_uuid, block: block.to_string(), attempt };
                return self.send_all(vec![Send { message: again, delay_s: plan::secs_until(t, now) }]).await;
            }
            let call_timeout = match &state.build.blocks[i].executor {
                crate::domain::Executor::Http { timeout_s, .. } => {
                    timeout_s.unwrap_or(executor::DEFAULT_CALL_TIMEOUT_S)
                }
                crate::domain::Executor::Lambda { .. } => executor::LAMBDA_CALL_TIMEOUT_S,
                crate::domain::Executor::Noop {} => 0,
            };
            // The callback token is valid from the claim on, so that a target that calls back before
            // it has answered 202 (fast jobs do) is heard; the claim's write stores its hash.
            let token = callback_token(run.id);
            let b = &mut blocks[i];
            b.status = BlockRunStatus::Running;
            b.attempts = attempt;
            b.started_at = b.started_at.or(Some(now));
            b.lease_until = Some(plus_secs(now, call_timeout.saturating_add(LEASE_MARGIN_S)));
            b.callback_hash = Some(callback_token_hash(&token));
            b.callback_deadline = None;
            b.not_before = None;
            b.updated = now;
            if self.commit(&state, run.clone(), &blocks).await? {
                claimed = Some((run, blocks[i].clone(), state.build.clone(), i, token));
                break;
            }
        }
        let Some((run, b, build, i, token)) = claimed else {
            return Err(Error::Conflict(format!("run {run_uuid}: too many concurrent changes")));
        };
        let invocation = Invocation {
            run_id: run.id,
            run_uuid,
            block: block.to_string(),
            block_run_id: b.id,
            attempt,
            parameters: b.parameters.clone(),
            variables: run.variables.clone(),
            event_variables: run.event_variables.clone(),
            execution_date: run.execution_date,
            callback_url: format!("{}/api/block_runs/{}/callback", self.public_url, b.id),
            callback_token: token.clone(),
        };
        tracing::info!(run_uuid = %run_uuid, block, attempt, "calling the block's executor");
        let outcome = self.executors.invoke(&build.blocks[i].executor, &invocation).await;
        // A store that fails now must not make the block run again for this attempt: the outcome is
        // written with retries (backoff within the lease's margin) before the message is given back.
        let mut wait = Duration::from_millis(100);
        let mut tries = 0;
        loop {
            match self.record(run_uuid, i, attempt, &outcome, tries > 0).await {
                Err(e) if tries < RECORD_RETRIES && e.is_transient() => {
                    tracing::warn!(run_uuid = %run_uuid, block, attempt, error = %e, "recording the outcome failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(8));
                    tries += 1;
                }
                result => return result,
            }
        }
    }

    /// Records the outcome of a claimed attempt (if the claim still holds: an attempt called back
    /// already, given up or cancelled meanwhile drops it). `again`: an earlier try failed, perhaps
    /// after its write took effect — then an attempt found ended re-sends its follow-ups, as a
    /// redelivered message would.
    async fn record(
        &self,
        run_uuid: Uuid,
        i: usize,
        attempt: u32,
        outcome: &Outcome,
        again: bool,
    ) -> Result<()> {
        for _ in 0..MAX_RACES {
            let Some(state) = self.load(run_uuid).await? else { return Ok(()) };
            let (mut run, mut blocks) = state.values();
            let b = &blocks[i];
            if !(b.status == BlockRunStatus::Running
                && b.attempts == attempt
                && b.callback_deadline.is_none())
            {
                if again {
                    let (dag, now) = (&state.build.blocks, self.now());
                    return self.send_all(plan::followups(&run, &blocks, dag, i, attempt, now)).await;
                }
                tracing::warn!(run_uuid = %run_uuid, attempt, "the attempt ended meanwhile (called back, given up or cancelled); its outcome is dropped");
                return Ok(());
            }
            let now = self.now();
            let dag = &state.build.blocks;
            let sends = match outcome {
                Outcome::Completed(metrics) => {
                    plan::complete(&mut run, &mut blocks, dag, i, metrics.clone(), now)
                }
                Outcome::Failed { retryable, error } => {
                    tracing::warn!(run_uuid = %run_uuid, block = %blocks[i].block_uuid, attempt, error = %error, "attempt failed");
                    plan::fail_attempt(&mut run, &mut blocks, dag, i, *retryable, error, now)
                }
                Outcome::Accepted => {
                    // The callback token's hash was stored with the claim.
                    let timeout = dag[i].timeout_s.unwrap_or(DEFAULT_CALLBACK_TIMEOUT_S);
                    let b = &mut blocks[i];
                    b.lease_until = None;
                    b.callback_deadline = Some(plus_secs(now, timeout));
                    b.updated = now;
                    let check = Message::CheckBlock { run_uuid, block: b.block_uuid.clone(), attempt };
                    vec![Send { message: check, delay_s: timeout }]
                }
            };
            if self.commit(&state, run, &blocks).await? {
                return self.send_all(sends).await;
            }
        }
        Err(Error::Conflict(format!("run {run_uuid}: too many concurrent changes")))
    }

    /// Fails an accepted attempt whose callback is overdue.
    async fn check_block(&self, run_uuid: Uuid, block: &str, attempt: u32) -> Result<()> {
        for _ in 0..MAX_RACES {
            let Some(state) = self.load(run_uuid).await? else { return Ok(()) };
            let Some(i) = state.index_of(block) else { return Ok(()) };
            let (mut run, mut blocks) = state.values();
            let b = &blocks[i];
            let now = self.now();
            let Some(deadline) =
                b.callback_deadline.filter(|_| b.status == BlockRunStatus::Running && b.attempts == attempt)
            else {
                // Called back already (or another attempt): re-send what that outcome asked for, in case
                // whoever recorded it stopped before sending.
                let dag = &state.build.blocks;
                return self.send_all(plan::followups(&run, &blocks, dag, i, attempt, now)).await;
            };
            if deadline > now {
                let again = Message::CheckBlock { run_uuid, block: block.to_string(), attempt };
                return self
                    .send_all(vec![Send { message: again, delay_s: plan::secs_until(deadline, now) }])
                    .await;
            }
            let error = plan::callback_timeout_error(&state.build.blocks[i]);
            let sends = plan::fail_attempt(&mut run, &mut blocks, &state.build.blocks, i, true, &error, now);
            if self.commit(&state, run, &blocks).await? {
                return self.send_all(sends).await;
            }
        }
        Err(Error::Conflict(format!("run {run_uuid}: too many concurrent changes")))
    }

    /// `POST /api/block_runs/{id}/callback`: finishes an accepted attempt. The token is the one sent with
    /// that attempt, good once (compared as SHA-256 in constant time); `completed` completes the block,
    /// `failed` is a failed attempt (retried if retries are left).
    pub async fn callback(
        &self,
        block_run_id: i64,
        token: &str,
        completed: bool,
        metrics: Option<serde_json::Value>,
    ) -> Result<BlockRun> {
        let invalid =
            || Error::Unauthorized("the callback token is not valid for this block run (or was used)".into());
        let run_id = run_id_of_token(token).ok_or_else(invalid)?;
        let run_uuid = self.app.store.run_uuid(run_id).await?.ok_or_else(invalid)?;
        for _ in 0..MAX_RACES {
            let state = self.load(run_uuid).await?.ok_or_else(invalid)?;
            let Some(index) = state.blocks.iter().position(|b| b.id == block_run_id) else {
                return Err(invalid());
            };
            let b = &state.blocks[index];
            let presented = callback_token_hash(token);
            let valid = b
                .callback_hash
                .as_ref()
                .is_some_and(|h| bool::from(h.as_bytes().ct_eq(presented.as_bytes())));
            if !valid || b.status != BlockRunStatus::Running {
                return Err(invalid());
            }
            let (mut run, mut blocks) = state.values();
            let now = self.now();
            let dag = &state.build.blocks;
            let metrics = metrics.clone().and_then(executor::limit_metrics);
            let sends = if completed {
                plan::complete(&mut run, &mut blocks, dag, index, metrics.clone(), now)
            } else {
                let error = metrics
                    .as_ref()
                    .and_then(|m| m.get("error"))
                    .and_then(|e| e.as_str())
                    .unwrap_or("the block reported failure")
                    .to_string();
                let sends = plan::fail_attempt(&mut run, &mut blocks, dag, index, true, &error, now);
                if let (Some(m), Some(b)) = (metrics.clone(), blocks.get_mut(index)) {
                    if b.status == BlockRunStatus::Failed {
                        b.metrics = Some(m);
                    }
                }
                sends
            };
            let result = blocks[index].clone();
            if self.commit(&state, run, &blocks).await? {
                self.send_all(sends).await?;
                return Ok(result);
            }
        }
        Err(Error::Conflict("the run is changing; try again".into()))
    }

    /// `retry_blocks`: resets a finished run's failed blocks (or `from_block` and its descendants) and runs
    /// them again.
    pub async fn retry_blocks(&self, run_uuid: Uuid, from_block: Option<&str>) -> Result<()> {
        for _ in 0..MAX_RACES {
            let state = self.load(run_uuid).await?.ok_or_else(|| Error::NotFound("No such run".into()))?;
            if !state.run.value.status.is_finished() {
                return Err(Error::Conflict(
                    "the run has not finished; only a finished run's blocks are retried".into(),
                ));
            }
            let from = match from_block {
                Some(name) => Some(state.index_of(name).ok_or_else(|| {
                    Error::Unprocessable(format!("from_block_uuid: the run has no block {name:?}"))
                })?),
                None => None,
            };
            let (mut run, mut blocks) = state.values();
            plan::reset_for_retry(&mut run, &mut blocks, &state.build.blocks, from, self.now());
            if self.commit(&state, run, &blocks).await? {
                tracing::info!(run_uuid = %run_uuid, "blocks reset for retry");
                return self.app.queue.send(&Message::StartRun { run_uuid }).await;
            }
        }
        Err(Error::Conflict("the run is changing; try again".into()))
    }
}

/// Runs the worker in-process on a queue until the task is dropped (the embedded server). A message
/// whose handling fails is sent again after 30 seconds, as SQS would redeliver it.
pub async fn run_in_process(worker: Arc<Worker>, queue: Arc<dyn RunQueue>) {
    loop {
        let batch = match queue.receive(10, Duration::from_secs(5)).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "receive failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        for received in batch {
            let worker = worker.clone();
            let queue = queue.clone();
            tokio::spawn(async move {
                let handled = AssertUnwindSafe(worker.handle(&received.message)).catch_unwind().await;
                let failed = match handled {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(panic) => Some(format!("panicked: {}", crate::error::panic_message(panic.as_ref()))),
                };
                if let Some(e) = failed {
                    let run_uuid = received.message.run_uuid();
                    tracing::warn!(run_uuid = ?run_uuid, error = %e, "message failed; it will be delivered again");
                    if let Err(e) = queue.send_delayed(&received.message, Duration::from_secs(30)).await {
                        // Left undeleted: SQS delivers it again after its visibility timeout (the
                        // in-memory queue does not; the sweep then finds the run by its wake time).
                        tracing::error!(run_uuid = ?run_uuid, error = %e, "re-send failed");
                        return;
                    }
                }
                let _ = queue.delete(&received.receipt).await;
            });
        }
    }
}
