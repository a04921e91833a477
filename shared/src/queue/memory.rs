//! The in-process queue: a FIFO with SQS's receive/delete shape (a received message stays invisible
//! until deleted; this queue never redelivers it).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Mutex, Notify};

use super::{Message, Received, RunQueue};
use crate::Result;

#[derive(Default)]
pub struct MemoryQueue {
    inner: Mutex<Inner>,
    notify: Notify,
}

#[derive(Default)]
struct Inner {
    ready: VecDeque<Message>,
    in_flight: HashMap<String, Message>,
    next_receipt: u64,
}

impl MemoryQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// Messages waiting to be received (for tests and the embedded server's status line).
    pub async fn len(&self) -> usize {
        self.inner.lock().await.ready.len()
    }

    pub async fn is_empty(&self) -> bool {
        self.len().await == 0
    }
}

#[async_trait]
impl RunQueue for MemoryQueue {
    async fn send(&self, message: &Message) -> Result<()> {
        self.inner.lock().await.ready.push_back(message.clone());
        self.notify.notify_one();
        Ok(())
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Received>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            {
                let mut inner = self.inner.lock().await;
                if !inner.ready.is_empty() {
                    let mut out = Vec::new();
                    while out.len() < max {
                        let Some(m) = inner.ready.pop_front() else {
                            break;
                        };
                        inner.next_receipt += 1;
                        let receipt = format!("mem-{}", inner.next_receipt);
                        inner.in_flight.insert(receipt.clone(), m.clone());
                        out.push(Received {
                            message: m,
                            receipt,
                        });
                    }
                    return Ok(out);
                }
            }
            if tokio::time::timeout_at(deadline, self.notify.notified())
                .await
                .is_err()
            {
                return Ok(Vec::new());
            }
        }
    }

    async fn delete(&self, receipt: &str) -> Result<()> {
        self.inner.lock().await.in_flight.remove(receipt);
        Ok(())
    }
}
