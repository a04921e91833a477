//! The run's state machine, as pure functions over a run, its block runs and its build's blocks (block
//! run `i` is block `i` of the build). The worker reads, applies one of these, and writes the result
//! back conditionally; messages to send come back as values.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use crate::domain::{Block, BlockRun, BlockRunStatus, Run, RunStatus};
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

/// The wait before retry `failures` (1-based): `delay_s · 2^(failures−1)`, at most `max_delay_s`.
pub fn backoff(block: &Block, failures: u32) -> u64 {
    let factor = 1u64.checked_shl(failures.saturating_sub(1)).unwrap_or(u64::MAX);
    block.delay_s.saturating_mul(factor).min(block.max_delay_s)
}

/// Dispatches the blocks whose upstreams have all completed, marks blocks below a failure
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
                blocks[i].status = BlockRunStatus::Queued;
                blocks[i].updated = now;
                sends.push(run_block(run, &blocks[i], 0));
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
        run.status = if failed { RunStatus::Failed } else { RunStatus::Completed };
        run.completed_at = Some(now);
        run.updated = now;
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
        b.not_before = Some(now + Duration::seconds(delay as i64));
        return vec![run_block(run, b, delay)];
    }
    b.status = BlockRunStatus::Failed;
    b.completed_at = Some(now);
    if !run.status.is_finished() && !run.allow_blocks_to_fail {
        run.status = RunStatus::Failed;
        run.completed_at = Some(now);
        run.updated = now;
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

/// Messages a redelivered or duplicate message re-sends, in case the worker that wrote the state stopped
/// before sending them: dispatches of queued blocks and time-out checks of accepted ones. Duplicates are
/// harmless: every message claims its step with a conditional write.
pub fn pending(run: &Run, blocks: &[BlockRun], now: DateTime<Utc>) -> Vec<Send> {
    if run.status.is_finished() {
        return Vec::new();
    }
    let wait = |t: Option<DateTime<Utc>>| t.map_or(0, |t| (t - now).num_seconds().max(0) as u64);
    blocks
        .iter()
        .filter_map(|b| match b.status {
            BlockRunStatus::Queued => Some(run_block(run, b, wait(b.not_before))),
            BlockRunStatus::Running if b.callback_deadline.is_some() => Some(Send {
                message: Message::CheckBlock {
                    run_uuid: run.uuid,
                    block: b.block_uuid.clone(),
                    attempt: b.attempts,
                },
                delay_s: wait(b.callback_deadline),
            }),
            _ => None,
        })
        .collect()
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
    use crate::domain::Executor;
    use serde_json::Map;
    use uuid::Uuid;

    fn block(name: &str, up: &[&str], retries: u32) -> Block {
        Block {
            name: name.into(),
            upstream: up.iter().map(|s| s.to_string()).collect(),
            parameters: Map::new(),
            executor: Executor::Noop {},
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
}
