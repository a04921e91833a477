//! The `RunQueue` port: messages that ask the worker to advance a run. SQS in AWS and on the local
//! stack ([`sqs::SqsQueue`]); in-process for the embedded server and tests ([`memory::MemoryQueue`]).
//! [`conformance`] is the suite both pass.

pub mod conformance;
pub mod fault;
pub mod memory;
pub mod sqs;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Result;

/// What a queue message asks the worker for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Message {
    /// Start (or resume) a run: dispatch the blocks that are ready.
    StartRun { run_uuid: Uuid },
    /// Run one attempt of one block.
    RunBlock { run_uuid: Uuid, block: String, attempt: u32 },
    /// Time out an accepted attempt whose callback is overdue.
    CheckBlock { run_uuid: Uuid, block: String, attempt: u32 },
    /// Attempt `attempt` of the run's notification `delivery` (its index in the run's notifications).
    Notify { run_uuid: Uuid, delivery: usize, attempt: u32 },
    /// Write a started backfill's runs for its dates `from..from + backfills::PAGE` (then queue the next
    /// page): a long backfill is written in pages through the queue, not in one function call.
    StartBackfill { backfill_id: i64, from: usize },
}

impl Message {
    /// The run the message is about (none for a backfill's page).
    pub fn run_uuid(&self) -> Option<Uuid> {
        match self {
            Message::StartRun { run_uuid }
            | Message::RunBlock { run_uuid, .. }
            | Message::CheckBlock { run_uuid, .. }
            | Message::Notify { run_uuid, .. } => Some(*run_uuid),
            Message::StartBackfill { .. } => None,
        }
    }
}

/// The longest delay SQS allows on a message; longer waits re-send themselves.
pub const MAX_DELAY: std::time::Duration = std::time::Duration::from_secs(900);

/// A message taken from the queue, with the handle that acknowledges it.
#[derive(Debug, Clone)]
pub struct Received {
    pub message: Message,
    pub receipt: String,
}

#[async_trait]
pub trait RunQueue: Send + Sync {
    async fn send(&self, message: &Message) -> Result<()> {
        self.send_delayed(message, std::time::Duration::ZERO).await
    }
    /// Sends a message that becomes visible after `delay` (at most [`MAX_DELAY`]).
    async fn send_delayed(&self, message: &Message, delay: std::time::Duration) -> Result<()>;
    /// Up to `max` messages, waiting at most `wait` for the first.
    async fn receive(&self, max: usize, wait: std::time::Duration) -> Result<Vec<Received>>;
    /// Acknowledges a received message so that it is not delivered again.
    async fn delete(&self, receipt: &str) -> Result<()>;
}
