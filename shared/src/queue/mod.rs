//! The `RunQueue` port: messages that ask the worker to advance a run. SQS in AWS and on the local
//! stack ([`sqs::SqsQueue`]); in-process for the embedded server and tests ([`memory::MemoryQueue`]).
//! [`conformance`] is the suite both pass.

pub mod conformance;
pub mod memory;
pub mod sqs;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Result;

/// What a queue message asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Message {
    /// Start (or resume) a run.
    StartRun { run_uuid: Uuid },
}

/// A message taken from the queue, with the handle that acknowledges it.
#[derive(Debug, Clone)]
pub struct Received {
    pub message: Message,
    pub receipt: String,
}

#[async_trait]
pub trait RunQueue: Send + Sync {
    async fn send(&self, message: &Message) -> Result<()>;
    /// Up to `max` messages, waiting at most `wait` for the first.
    async fn receive(&self, max: usize, wait: std::time::Duration) -> Result<Vec<Received>>;
    /// Acknowledges a received message so that it is not delivered again.
    async fn delete(&self, receipt: &str) -> Result<()>;
}
