//! The run's state machine, as pure functions over a run, its block runs and its build's blocks (block
//! run `i` is block `i` of the build). The worker reads, applies one of these, and writes the result
//! back conditionally; messages to send come back as values. The run's wake time (when the sweep is to
//! look at it if no message has, SPEC §5) is decided here too, by [`wake_at`].

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::json;

use crate::domain::bounds::plus_secs;
use crate::domain::run::Slot;
use crate::domain::{Block, BlockRun, BlockRunStatus, Executor, Run, RunStatus};
use crate::queue::Message;

/// A message to send after the state that asks for it is written, after `delay_s` seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Send {
    pub message: Message,
    pub delay_s: u64,
}

fn run_block(run: &Run, block: &BlockRun, delay_s: u64) -> Send {
    Send {
        message: Message::RunBlock {
            run_uuid: run.uuid,
            block: block.block_uuid.clone(),
            attempt: block.attempts + 1,
        },
        delay_s,
    }
}

/// Whole seconds from `now` until `t` (rounded up, so that a message sent with this delay arrives at
/// or after `t`; 0 if `t` has passed).
pub fn secs_until(t: DateTime<Utc>, now: DateTime<Utc>) -> u64 {
    let ms = (t - now).num_milliseconds();
    if ms <= 0 {
        0
    } else {
        (ms as u64).div_ceil(1000)
    }
}

/// How late a message may be before the sweep steps in: the grace period of SPEC §5.
pub const GRACE_S: u64 = 60;
/// A wake time closer than this to now is moved on by the run's own progress rather than let fire.
const REFRESH_S: u64 = 30;
/// A wake time may stay this much later than the state needs before it is moved earlier…
const LATE_S: u64 = 120;
/// …and this much earlier before it is moved later.
const EARLY_S: i64 = 600;

/// When the run must be looked at: the first of [`message_due`] and its SLA or time-out deadline.
pub fn needed_wake(run: &Run, blocks: &[BlockRun]) -> Option<DateTime<Utc>> {
    let message = message_due(run, blocks)?;
    Some(match run.next_deadline() {
        Some(deadline) if deadline < message => plus_secs(deadline.trunc_subsecs(0), 1),
        _ => message,
    })
}

/// When the run must be looked at if no message comes: when the first message it waits for was due
/// (a queued block's dispatch, at its queueing or at its backoff's end; a claimed attempt's lease end;
/// an accepted attempt's callback deadline; the run's `StartRun`, at its last write, when nothing else
/// is in flight — an `initial` run's creation), plus [`GRACE_S`]. In the past means stuck: nothing that
/// was due came. For a finished run: its slot's hand-over or a notification it owes; `None` once it owes
/// nothing.
pub fn message_due(run: &Run, blocks: &[BlockRun]) -> Option<DateTime<Utc>> {
    if run.status.is_finished() {
        // Its slot not yet handed over (`admission::release`): the hand-over is due; a notification
        // owed: its next attempt (or its claimed attempt's lease end).
        let hand_over = run.slot.filter(|s| *s != Slot::Released).map(|_| run.updated);
        let notify = run.notifications.iter().filter_map(|n| n.due()).min();
        let first = [hand_over, notify].into_iter().flatten().min()?;
        return Some(plus_secs(first, GRACE_S).trunc_subsecs(0));
    }
    if run.slot == Some(Slot::Waiting) {
        // Waiting for a slot: nothing is due until a hand-over admits it.
        return None;
    }
    let first = blocks
        .iter()
        .filter_map(|b| match b.status {
            BlockRunStatus::Queued => Some(b.not_before.unwrap_or(b.updated)),
            BlockRunStatus::Running => b.lease_until.or(b.callback_deadline),
            _ => None,
        })
        .min()
        .unwrap_or_else(|| run.not_before.map_or(run.updated, |t| t.max(run.updated)));
    // An `sla_missed` notification owed while the run goes on.
    let first = run.notifications.iter().filter_map(|n| n.due()).fold(first, DateTime::min);
    Some(plus_secs(first, GRACE_S).trunc_subsecs(0))
}

/// The wake time to write with the run: `current` while it is close enough to [`needed_wake`] (not
/// about to fire, at most 2 minutes late, at most 10 minutes early), else the needed one. So a run's
/// steps seldom move its index entry: a run that finishes within a minute keeps the one its trigger
/// wrote until it finishes, and a long one moves it about once per lease.
pub fn wake_at(
    current: Option<DateTime<Utc>>,
    run: &Run,
    blocks: &[BlockRun],
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let needed = needed_wake(run, blocks)?;
    match current {
        Some(w)
            if w >= plus_secs(now, REFRESH_S)
                && w <= plus_secs(needed, LATE_S)
                && w.timestamp() >= needed.timestamp() - EARLY_S =>
        {
            Some(w)
        }
        _ => Some(needed),
    }
}

/// The error of an accepted attempt whose callback did not come in time.
pub fn callback_timeout_error(block: &Block) -> String {
    let timeout = block.timeout_s.unwrap_or(super::DEFAULT_CALLBACK_TIMEOUT_S);
    format!("no callback within timeout_s ({timeout}s)")
}

/// Gives up a claimed attempt whose lease has passed (its worker is gone): not counted as a failure;
/// the block is queued for its next attempt, whose message is returned.
pub fn give_up(run: &Run, block: &mut BlockRun, now: DateTime<Utc>) -> Send {
    block.status = BlockRunStatus::Queued;
    block.lease_until = None;
    block.callback_hash = None;
    block.updated = now;
    run_block(run, block, 0)
}

/// A look at the whole run (a `StartRun` message: from a trigger, `retry_blocks` or the sweep): starts
/// it if `initial`, gives up attempts whose lease has passed, fails accepted attempts whose callback is
/// overdue, and dispatches what is ready. The messages to send afterwards are [`pending`]'s.
pub fn reconcile(run: &mut Run, blocks: &mut [BlockRun], dag: &[Block], now: DateTime<Utc>) {
    // A debounced run's window is closed by the worker first (`flow::timing`); until then it waits.
    if run.status.is_finished()
        || run.slot == Some(Slot::Waiting)
        || run.debounce_open
        || waits_for_its_turn(run, now)
    {
        return;
    }
    if run.status == RunStatus::Initial {
        run.status = RunStatus::Running;
        run.started_at = Some(now);
    }
    for i in 0..blocks.len() {
        if run.status.is_finished() || blocks[i].status != BlockRunStatus::Running {
            continue;
        }
        if blocks[i].lease_until.is_some_and(|lease| lease <= now) {
            give_up(run, &mut blocks[i], now);
        } else if blocks[i].callback_deadline.is_some_and(|deadline| deadline <= now) {
            let error = callback_timeout_error(&dag[i]);
            fail_attempt(run, blocks, dag, i, true, &error, now);
        }
    }
    advance(run, blocks, dag, now);
}

/// An `initial` run whose flow-control start time (`not_before`) has not come.
pub fn waits_for_its_turn(run: &Run, now: DateTime<Utc>) -> bool {
    run.status == RunStatus::Initial && run.not_before.is_some_and(|t| t > now)
}

/// What a message about attempt `attempt` of block `i` re-sends when it finds that attempt claimed or
/// done already (a duplicate, a redelivery, a lease re-check): the messages that attempt's own steps
/// ask for, in case the worker that wrote them stopped before sending — a re-check at the end of the
/// attempt's lease, its callback deadline check, its retry, or the dispatch of the blocks its
/// completion made ready. Only those, so that duplicates never multiply.
pub fn followups(
    run: &Run,
    blocks: &[BlockRun],
    dag: &[Block],
    i: usize,
    attempt: u32,
    now: DateTime<Utc>,
) -> Vec<Send> {
    let b = &blocks[i];
    if run.status.is_finished() || b.attempts != attempt {
        return Vec::new();
    }
    match b.status {
        BlockRunStatus::Running => recheck(run, b, now).into_iter().collect(),
        BlockRunStatus::Queued => vec![dispatch(run, b, now)],
        BlockRunStatus::Completed => {
            readied_by(blocks, dag, i).into_iter().map(|j| dispatch(run, &blocks[j], now)).collect()
        }
        _ => Vec::new(),
    }
}

/// The queued blocks that the completion of block `i` readied: its queued children, and through the
/// `noop` children completed in the same write ([`advance`]), theirs — in DAG order, each once.
fn readied_by(blocks: &[BlockRun], dag: &[Block], i: usize) -> Vec<usize> {
    let mut through = vec![i];
    let mut readied = Vec::new();
    while let Some(k) = through.pop() {
        for (j, d) in dag.iter().enumerate() {
            if !d.upstream.contains(&dag[k].name) || readied.contains(&j) || through.contains(&j) {
                continue;
            }
            match blocks[j].status {
                BlockRunStatus::Queued => readied.push(j),
                BlockRunStatus::Completed if matches!(d.executor, Executor::Noop {}) => through.push(j),
                _ => {}
            }
        }
    }
    readied.sort_unstable();
    readied
}

/// The wait before retry `failures` (1-based): `delay_s · 2^(failures−1)`, at most `max_delay_s`.
pub fn backoff(block: &Block, failures: u32) -> u64 {
    let factor = 1u64.checked_shl(failures.saturating_sub(1)).unwrap_or(u64::MAX);
    block.delay_s.saturating_mul(factor).min(block.max_delay_s)
}

/// Dispatches the blocks whose upstreams have all completed (a `noop` block is completed on the spot),
/// marks blocks below a failure
/// `upstream_failed` (when the run lets blocks fail), and finishes the run when every block has.
pub fn advance(run: &mut Run, blocks: &mut [BlockRun], dag: &[Block], now: DateTime<Utc>) -> Vec<Send> {
    let mut sends = Vec::new();
    if run.status.is_finished() {
        return sends;
    }
    loop {
        let mut changed = false;
        for i in 0..blocks.len() {
            if blocks[i].status != BlockRunStatus::Initial {
                continue;
            }
            let ups: Vec<BlockRunStatus> = dag[i]
                .upstream
                .iter()
                .filter_map(|u| blocks.iter().find(|b| &b.block_uuid == u))
                .map(|b| b.status)
                .collect();
            if ups.iter().all(|s| *s == BlockRunStatus::Completed) {
                let b = &mut blocks[i];
                b.updated = now;
                if matches!(dag[i].executor, Executor::Noop {}) {
                    // A noop block completes at once (SPEC §5): in this same write, without a message,
                    // a claim or a call — nothing is done that a duplicate could do twice.
                    b.status = BlockRunStatus::Completed;
                    b.attempts = 1;
                    b.started_at = Some(now);
                    b.completed_at = Some(now);
                } else {
                    b.status = BlockRunStatus::Queued;
                    sends.push(run_block(run, b, 0));
                }
                changed = true;
            } else if ups.iter().any(|s| {
                matches!(
                    s,
                    BlockRunStatus::Failed | BlockRunStatus::UpstreamFailed | BlockRunStatus::Cancelled
                )
            }) {
                blocks[i].status = BlockRunStatus::UpstreamFailed;
                blocks[i].completed_at = Some(now);
                blocks[i].updated = now;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    if blocks.iter().all(|b| b.status.is_finished()) {
        let failed = blocks.iter().any(|b| b.status != BlockRunStatus::Completed);
        run.finish(if failed { RunStatus::Failed } else { RunStatus::Completed }, now);
    }
    sends
}

/// Records a failed attempt of block `i`: a retry if the failure is retryable and retries are left,
/// else the block fails — and with it the run (its unstarted blocks cancelled) unless the run lets
/// blocks fail.
pub fn fail_attempt(
    run: &mut Run,
    blocks: &mut [BlockRun],
    dag: &[Block],
    i: usize,
    retryable: bool,
    error: &str,
    now: DateTime<Utc>,
) -> Vec<Send> {
    let b = &mut blocks[i];
    b.failures += 1;
    b.metrics = Some(json!({ "error": error }));
    b.lease_until = None;
    b.callback_hash = None;
    b.callback_deadline = None;
    b.updated = now;
    if retryable && b.failures <= dag[i].retries && !run.status.is_finished() {
        let delay = backoff(&dag[i], b.failures);
        b.status = BlockRunStatus::Queued;
        b.not_before = Some(plus_secs(now, delay));
        return vec![run_block(run, b, delay)];
    }
    b.status = BlockRunStatus::Failed;
    b.completed_at = Some(now);
    if !run.status.is_finished() && !run.allow_blocks_to_fail {
        run.finish(RunStatus::Failed, now);
        for other in blocks.iter_mut() {
            if matches!(other.status, BlockRunStatus::Initial | BlockRunStatus::Queued) {
                other.status = BlockRunStatus::Cancelled;
                other.updated = now;
            }
        }
    }
    advance(run, blocks, dag, now)
}

/// Records a completed attempt of block `i` and advances the run.
pub fn complete(
    run: &mut Run,
    blocks: &mut [BlockRun],
    dag: &[Block],
    i: usize,
    metrics: Option<serde_json::Value>,
    now: DateTime<Utc>,
) -> Vec<Send> {
    let b = &mut blocks[i];
    b.status = BlockRunStatus::Completed;
    b.metrics = metrics;
    b.completed_at = Some(now);
    b.lease_until = None;
    b.callback_hash = None;
    b.callback_deadline = None;
    b.updated = now;
    advance(run, blocks, dag, now)
}

/// Every message the run's state waits for, sent after a look at the whole run ([`reconcile`]): the
/// dispatch (or retry) of each queued block, a re-check at the end of each claimed attempt's lease, the
/// deadline check of each accepted attempt, and the `Notify` of each notification owed. Duplicates are harmless: every message claims its step
/// with a conditional write.
pub fn pending(run: &Run, blocks: &[BlockRun], now: DateTime<Utc>) -> Vec<Send> {
    let notify = notifications(run, 0, now);
    if run.status.is_finished() {
        return notify;
    }
    if let Some(t) = run.not_before.filter(|_| waits_for_its_turn(run, now)) {
        // Looked at again when its turn comes (a delay past SQS's 15 minutes comes back early and is
        // sent on again).
        return vec![Send { message: Message::StartRun { run_uuid: run.uuid }, delay_s: secs_until(t, now) }];
    }
    blocks
        .iter()
        .filter_map(|b| match b.status {
            BlockRunStatus::Queued => Some(dispatch(run, b, now)),
            BlockRunStatus::Running => recheck(run, b, now),
            _ => None,
        })
        .chain(notify)
        .collect()
}

/// The `Notify` messages the run's notifications from `from` on wait for: a claimed attempt's re-check
/// at its lease's end, else the next attempt at its time.
pub fn notifications(run: &Run, from: usize, now: DateTime<Utc>) -> Vec<Send> {
    (from..run.notifications.len()).filter_map(|delivery| notification(run, delivery, now)).collect()
}

/// The `Notify` delivery `delivery` waits for, if it is owed: a re-check at its claimed attempt's lease
/// end, else its next attempt at its time.
pub fn notification(run: &Run, delivery: usize, now: DateTime<Utc>) -> Option<Send> {
    let n = run.notifications.get(delivery)?;
    let due = n.due()?;
    let attempt = if n.lease_until.is_some() { n.attempts } else { n.attempts + 1 };
    Some(Send {
        message: Message::Notify { run_uuid: run.uuid, delivery, attempt },
        delay_s: secs_until(due, now),
    })
}

/// The `RunBlock` of a queued block's next attempt, delayed to the end of its backoff if it has one.
fn dispatch(run: &Run, b: &BlockRun, now: DateTime<Utc>) -> Send {
    run_block(run, b, b.not_before.map_or(0, |t| secs_until(t, now)))
}

/// The message that looks at a claimed attempt when its lease ends (`RunBlock` of the same attempt:
/// the attempt is given up if it is still claimed then), or at an accepted attempt when its callback
/// deadline passes (`CheckBlock`).
fn recheck(run: &Run, b: &BlockRun, now: DateTime<Utc>) -> Option<Send> {
    let (run_uuid, block, attempt) = (run.uuid, b.block_uuid.clone(), b.attempts);
    let (message, until) = match (b.lease_until, b.callback_deadline) {
        (Some(lease), _) => (Message::RunBlock { run_uuid, block, attempt }, lease),
        (None, Some(deadline)) => (Message::CheckBlock { run_uuid, block, attempt }, deadline),
        (None, None) => return None,
    };
    Some(Send { message, delay_s: secs_until(until, now) })
}

/// Resets blocks for `retry_blocks`: `from` and its descendants, or every failed, cancelled and
/// upstream-failed block; the run runs again.
pub fn reset_for_retry(
    run: &mut Run,
    blocks: &mut [BlockRun],
    dag: &[Block],
    from: Option<usize>,
    now: DateTime<Utc>,
) {
    let mut reset = vec![false; blocks.len()];
    match from {
        Some(start) => {
            reset[start] = true;
            loop {
                let mut grew = false;
                for (i, block) in dag.iter().enumerate() {
                    if !reset[i]
                        && block
                            .upstream
                            .iter()
                            .any(|u| dag.iter().position(|d| &d.name == u).is_some_and(|j| reset[j]))
                    {
                        reset[i] = true;
                        grew = true;
                    }
                }
                if !grew {
                    break;
                }
            }
        }
        None => {
            for (i, b) in blocks.iter().enumerate() {
                reset[i] = matches!(
                    b.status,
                    BlockRunStatus::Failed | BlockRunStatus::Cancelled | BlockRunStatus::UpstreamFailed
                );
            }
        }
    }
    for (i, b) in blocks.iter_mut().enumerate() {
        if reset[i] {
            b.status = BlockRunStatus::Initial;
            b.failures = 0;
            b.metrics = None;
            b.started_at = None;
            b.completed_at = None;
            b.lease_until = None;
            b.callback_hash = None;
            b.callback_deadline = None;
            b.not_before = None;
            b.updated = now;
        }
    }
    run.status = RunStatus::Running;
    run.completed_at = None;
    run.updated = now;
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    /// [`GRACE_S`] as a signed count.
    const G: i64 = GRACE_S as i64;
    use crate::domain::Executor;
    use serde_json::Map;
    use uuid::Uuid;

    fn block(name: &str, up: &[&str], retries: u32) -> Block {
        Block {
            name: name.into(),
            upstream: up.iter().map(|s| s.to_string()).collect(),
            parameters: Map::new(),
            executor: Executor::Http { url: "https://example.com/block".into(), timeout_s: None },
            retries,
            delay_s: 5,
            max_delay_s: 300,
            timeout_s: None,
        }
    }

    fn diamond() -> (Run, Vec<BlockRun>, Vec<Block>) {
        let dag = vec![
            block("a", &[], 0),
            block("b", &["a"], 0),
            block("c", &["a"], 0),
            block("d", &["b", "c"], 0),
        ];
        let now = Utc::now();
        let uuid = Uuid::new_v4();
        let blocks = dag
            .iter()
            .enumerate()
            .map(|(i, b)| BlockRun::new(uuid, 1, i, &b.name, Map::new(), now))
            .collect();
        let run: Run = serde_json::from_value(json!({
            "uuid": uuid, "id": 1, "name": "r", "build_id": Uuid::new_v4(), "pipeline_id": Uuid::new_v4(),
            "pipeline_name": "p", "pipeline_version": "1", "schedule_id": null, "backfill_id": null,
            "status": "running", "execution_date": now, "variables": null, "event_variables": null,
            "config": {}, "passed_sla": false, "metrics": null, "started_at": now, "completed_at": null,
            "created": now, "updated": now
        }))
        .unwrap();
        (run, blocks, dag)
    }

    fn names(sends: &[Send]) -> Vec<String> {
        sends
            .iter()
            .map(|s| match &s.message {
                Message::RunBlock { block, attempt, .. } => format!("{block}#{attempt}"),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn noop_blocks_complete_where_they_are_dispatched_and_stop_at_other_executors() {
        let (mut run, mut blocks, mut dag) = diamond();
        for i in [0, 1, 3] {
            dag[i].executor = Executor::Noop {};
        }
        run.status = RunStatus::Running;
        let now = Utc::now();
        // a (noop) completes, which readies b (noop, completes) and c (http, dispatched); d waits for c.
        assert_eq!(names(&advance(&mut run, &mut blocks, &dag, now)), ["c#1"]);
        let status: Vec<_> = blocks.iter().map(|b| (b.status, b.attempts)).collect();
        assert_eq!(
            status,
            [
                (BlockRunStatus::Completed, 1),
                (BlockRunStatus::Completed, 1),
                (BlockRunStatus::Queued, 0),
                (BlockRunStatus::Initial, 0)
            ]
        );
        blocks[2].attempts = 1;
        assert!(complete(&mut run, &mut blocks, &dag, 2, None, now).is_empty(), "d is noop: no message");
        assert_eq!(blocks[3].status, BlockRunStatus::Completed);
        assert_eq!(run.status, RunStatus::Completed);
    }

    #[test]
    fn a_diamond_dispatches_in_order_and_completes() {
        let (mut run, mut blocks, dag) = diamond();
        let now = Utc::now();
        assert_eq!(names(&advance(&mut run, &mut blocks, &dag, now)), ["a#1"]);
        blocks[0].attempts = 1;
        assert_eq!(names(&complete(&mut run, &mut blocks, &dag, 0, None, now)), ["b#1", "c#1"]);
        blocks[1].attempts = 1;
        assert!(complete(&mut run, &mut blocks, &dag, 1, None, now).is_empty(), "d waits for c");
        blocks[2].attempts = 1;
        assert_eq!(names(&complete(&mut run, &mut blocks, &dag, 2, None, now)), ["d#1"]);
        blocks[3].attempts = 1;
        complete(&mut run, &mut blocks, &dag, 3, None, now);
        assert_eq!(run.status, RunStatus::Completed);
        assert!(run.completed_at.is_some());
    }

    #[test]
    fn failures_retry_with_backoff_then_fail_the_run() {
        let (mut run, mut blocks, mut dag) = diamond();
        dag[0].retries = 2;
        let now = Utc::now();
        advance(&mut run, &mut blocks, &dag, now);
        blocks[0].attempts = 1;
        let s = fail_attempt(&mut run, &mut blocks, &dag, 0, true, "boom", now);
        assert_eq!((names(&s), s[0].delay_s), (vec!["a#2".to_string()], 5));
        blocks[0].attempts = 2;
        let s = fail_attempt(&mut run, &mut blocks, &dag, 0, true, "boom", now);
        assert_eq!((names(&s), s[0].delay_s), (vec!["a#3".to_string()], 10));
        blocks[0].attempts = 3;
        fail_attempt(&mut run, &mut blocks, &dag, 0, true, "boom", now);
        assert_eq!(blocks[0].status, BlockRunStatus::Failed);
        assert_eq!(blocks[0].metrics, Some(json!({"error": "boom"})));
        assert_eq!(run.status, RunStatus::Failed);
        assert!(blocks[1..].iter().all(|b| b.status == BlockRunStatus::Cancelled));
    }

    #[test]
    fn a_non_retryable_failure_is_final_and_allow_blocks_to_fail_spares_the_rest() {
        let (mut run, mut blocks, mut dag) = diamond();
        dag[1].retries = 5;
        run.allow_blocks_to_fail = true;
        let now = Utc::now();
        advance(&mut run, &mut blocks, &dag, now);
        complete(&mut run, &mut blocks, &dag, 0, None, now);
        let s = fail_attempt(&mut run, &mut blocks, &dag, 1, false, "400", now);
        assert!(s.is_empty());
        assert_eq!(blocks[1].status, BlockRunStatus::Failed);
        assert_eq!(blocks[3].status, BlockRunStatus::UpstreamFailed, "d is below b");
        assert_eq!(blocks[2].status, BlockRunStatus::Queued, "c goes on");
        assert_eq!(run.status, RunStatus::Running);
        complete(&mut run, &mut blocks, &dag, 2, None, now);
        assert_eq!(run.status, RunStatus::Failed, "a run with a failed block ends failed");
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let mut b = block("x", &[], 10);
        b.delay_s = 5;
        b.max_delay_s = 30;
        let waits: Vec<u64> = (1..=6).map(|f| backoff(&b, f)).collect();
        assert_eq!(waits, [5, 10, 20, 30, 30, 30]);
        assert_eq!(backoff(&b, 200), 30);
    }

    #[test]
    fn retry_from_a_block_resets_it_and_its_descendants_only() {
        let (mut run, mut blocks, dag) = diamond();
        for b in blocks.iter_mut() {
            b.status = BlockRunStatus::Completed;
        }
        blocks[1].status = BlockRunStatus::Failed;
        blocks[3].status = BlockRunStatus::UpstreamFailed;
        run.status = RunStatus::Failed;
        reset_for_retry(&mut run, &mut blocks, &dag, Some(1), Utc::now());
        let st: Vec<_> = blocks.iter().map(|b| b.status).collect();
        assert_eq!(
            st,
            [
                BlockRunStatus::Completed,
                BlockRunStatus::Initial,
                BlockRunStatus::Completed,
                BlockRunStatus::Initial
            ]
        );
        assert_eq!(run.status, RunStatus::Running);
    }

    #[test]
    fn the_wake_time_follows_what_the_run_waits_for_and_seldom_moves() {
        let (mut run, mut blocks, dag) = diamond();
        let t0 = run.updated;
        let secs = |s: i64| (t0 + Duration::seconds(s)).trunc_subsecs(0);
        run.status = RunStatus::Initial;
        assert_eq!(needed_wake(&run, &blocks), Some(secs(G)), "initial: its StartRun, plus grace");
        let first = wake_at(None, &run, &blocks, t0);
        assert_eq!(first, Some(secs(G)));

        // Started, a queued: kept (close enough); a claimed with a 90 s lease: still kept.
        run.status = RunStatus::Running;
        advance(&mut run, &mut blocks, &dag, t0);
        assert_eq!(wake_at(first, &run, &blocks, t0), first);
        blocks[0].status = BlockRunStatus::Running;
        blocks[0].attempts = 1;
        blocks[0].lease_until = Some(t0 + Duration::seconds(90));
        assert_eq!(needed_wake(&run, &blocks), Some(secs(90 + G)));
        assert_eq!(wake_at(first, &run, &blocks, t0), first, "earlier than needed is fine: no index write");
        // About to fire: moved on to what the state needs.
        let later = t0 + Duration::seconds(45);
        assert_eq!(wake_at(first, &run, &blocks, later), Some(secs(90 + G)));
        // Far later than needed (a claimed run woken by the sweep): moved earlier.
        let claimed = Some(t0 + Duration::seconds(3600));
        assert_eq!(wake_at(claimed, &run, &blocks, t0), Some(secs(90 + G)));
        // A lease long past: the needed time is past too — the run is stuck, due at once.
        blocks[0].lease_until = Some(t0 - Duration::seconds(300));
        assert_eq!(needed_wake(&run, &blocks), Some(secs(-300 + G)));
        assert_eq!(wake_at(first, &run, &blocks, t0), Some(secs(-300 + G)));
        // Finished: out of the index.
        run.status = RunStatus::Completed;
        assert_eq!(wake_at(first, &run, &blocks, t0), None);
    }

    #[test]
    fn follow_ups_resend_only_what_the_attempt_asked_for() {
        let (mut run, mut blocks, dag) = diamond();
        let now = Utc::now();
        advance(&mut run, &mut blocks, &dag, now);
        // Claimed under a lease: a re-check at the lease's end.
        blocks[0].status = BlockRunStatus::Running;
        blocks[0].attempts = 1;
        blocks[0].lease_until = Some(now + Duration::seconds(90));
        let s = followups(&run, &blocks, &dag, 0, 1, now);
        assert_eq!((names(&s), s[0].delay_s), (vec!["a#1".to_string()], 90));
        assert!(followups(&run, &blocks, &dag, 0, 2, now).is_empty(), "another attempt's message");
        // Completed, b and c queued: their dispatch, not d's (still initial) nor anything twice.
        blocks[0].lease_until = None;
        complete(&mut run, &mut blocks, &dag, 0, None, now);
        assert_eq!(names(&followups(&run, &blocks, &dag, 0, 1, now)), ["b#1", "c#1"]);
        blocks[1].status = BlockRunStatus::Running;
        blocks[1].attempts = 1;
        assert_eq!(names(&followups(&run, &blocks, &dag, 0, 1, now)), ["c#1"], "b was claimed already");
    }

    #[test]
    fn follow_ups_reach_through_the_noop_blocks_a_completion_finished() {
        // a → b, c (both noop) → d: a's completion finishes b and c in its write and queues d, so a
        // redelivered message of a's attempt must re-send d's dispatch.
        let (mut run, mut blocks, mut dag) = diamond();
        dag[1].executor = Executor::Noop {};
        dag[2].executor = Executor::Noop {};
        let now = Utc::now();
        advance(&mut run, &mut blocks, &dag, now);
        blocks[0].attempts = 1;
        assert_eq!(names(&complete(&mut run, &mut blocks, &dag, 0, None, now)), ["d#1"]);
        assert_eq!(names(&followups(&run, &blocks, &dag, 0, 1, now)), ["d#1"]);
        blocks[3].status = BlockRunStatus::Running;
        blocks[3].attempts = 1;
        assert!(followups(&run, &blocks, &dag, 0, 1, now).is_empty(), "d was claimed already");
    }

    #[test]
    fn reconcile_starts_gives_up_expired_leases_and_fails_overdue_callbacks() {
        let (mut run, mut blocks, mut dag) = diamond();
        dag[1].retries = 1;
        dag[1].delay_s = 0;
        let now = Utc::now();
        run.status = RunStatus::Initial;
        reconcile(&mut run, &mut blocks, &dag, now);
        assert_eq!((run.status, blocks[0].status), (RunStatus::Running, BlockRunStatus::Queued));
        assert_eq!(names(&pending(&run, &blocks, now)), ["a#1"]);

        blocks[0].status = BlockRunStatus::Completed;
        advance(&mut run, &mut blocks, &dag, now);
        for (i, b) in blocks.iter_mut().enumerate().take(3).skip(1) {
            b.status = BlockRunStatus::Running;
            b.attempts = 1;
            if i == 1 {
                b.callback_deadline = Some(now - Duration::seconds(1));
            } else {
                b.lease_until = Some(now - Duration::seconds(1));
            }
        }
        reconcile(&mut run, &mut blocks, &dag, now);
        assert_eq!(blocks[1].status, BlockRunStatus::Queued, "overdue callback: a failed attempt, retried");
        assert_eq!(blocks[1].failures, 1);
        assert_eq!(blocks[2].status, BlockRunStatus::Queued, "expired lease: given up");
        assert_eq!(blocks[2].failures, 0, "a lost attempt is not a failure");
        assert_eq!(names(&pending(&run, &blocks, now)), ["b#2", "c#2"]);
    }
}
