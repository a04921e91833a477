//! The in-process queue: a FIFO with SQS's send-with-delay and receive/delete shape (a received message
//! stays invisible until deleted; this queue never redelivers it — tests that need redelivery do it
//! themselves).

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
    /// Messages with the instant they become visible, in sending order.
    ready: VecDeque<(tokio::time::Instant, Message)>,
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

    /// Takes every waiting message, delayed ones too, with how long each still had to wait (for tests
    /// that deliver by hand, or lose messages on purpose).
    pub async fn take_all(&self) -> Vec<(Duration, Message)> {
        let now = tokio::time::Instant::now();
        let mut inner = self.inner.lock().await;
        inner.ready.drain(..).map(|(t, m)| (t.saturating_duration_since(now), m)).collect()
    }

    /// Messages that could be received now (not delayed).
    pub async fn visible_len(&self) -> usize {
        let now = tokio::time::Instant::now();
        self.inner.lock().await.ready.iter().filter(|(t, _)| *t <= now).count()
    }
}

#[async_trait]
impl RunQueue for MemoryQueue {
    async fn send_delayed(&self, message: &Message, delay: Duration) -> Result<()> {
        let visible = tokio::time::Instant::now() + delay.min(super::MAX_DELAY);
        self.inner.lock().await.ready.push_back((visible, message.clone()));
        self.notify.notify_one();
        Ok(())
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Received>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let next_visible = {
                let mut inner = self.inner.lock().await;
                let now = tokio::time::Instant::now();
                let mut out = Vec::new();
                let mut i = 0;
                while i < inner.ready.len() && out.len() < max {
                    if inner.ready[i].0 > now {
                        i += 1;
                        continue;
                    }
                    let Some((_, m)) = inner.ready.remove(i) else { break };
                    inner.next_receipt += 1;
                    let receipt = format!("mem-{}", inner.next_receipt);
                    inner.in_flight.insert(receipt.clone(), m.clone());
                    out.push(Received { message: m, receipt });
                }
                if !out.is_empty() {
                    return Ok(out);
                }
                inner.ready.iter().map(|(t, _)| *t).min()
            };
            let wake = next_visible.map_or(deadline, |t| t.min(deadline));
            let notified = tokio::time::timeout_at(wake, self.notify.notified()).await;
            if notified.is_err() && wake >= deadline {
                return Ok(Vec::new());
            }
        }
    }

    async fn delete(&self, receipt: &str) -> Result<()> {
        self.inner.lock().await.in_flight.remove(receipt);
        Ok(())
    }
}
