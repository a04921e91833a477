//! A test seam: a `RunQueue` whose sends fail on demand (the queue was unreachable after the write
//! that asked for the message), and that counts the sends made through it and their round trips. Used by tests; never in
//! production wiring.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{Message, Received, RunQueue};
use crate::store::fault::RoundTrips;
use crate::{Error, Result};

pub struct FaultyQueue {
    inner: Arc<dyn RunQueue>,
    round_trips: Arc<RoundTrips>,
    failing: AtomicUsize,
    sends: AtomicUsize,
}

impl FaultyQueue {
    pub fn new(inner: Arc<dyn RunQueue>) -> Self {
        FaultyQueue {
            inner,
            round_trips: Arc::new(RoundTrips::default()),
            failing: AtomicUsize::new(0),
            sends: AtomicUsize::new(0),
        }
    }

    /// Counts this queue's sends in `round_trips` (shared with a table's: [`RoundTrips`]).
    pub fn with_round_trips(mut self, round_trips: Arc<RoundTrips>) -> Self {
        self.round_trips = round_trips;
        self
    }

    /// Sends asked for so far (failed ones too).
    pub fn sends(&self) -> usize {
        self.sends.load(Ordering::SeqCst)
    }

    /// The next `n` sends fail (and send nothing).
    pub fn fail_next_sends(&self, n: usize) {
        self.failing.store(n, Ordering::SeqCst);
    }
}

#[async_trait]
impl RunQueue for FaultyQueue {
    async fn send_delayed(&self, message: &Message, delay: Duration) -> Result<()> {
        self.sends.fetch_add(1, Ordering::SeqCst);
        let failed =
            self.failing.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        if failed {
            return Err(Error::Internal("injected queue send failure".into()));
        }
        self.round_trips.around(self.inner.send_delayed(message, delay)).await
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Received>> {
        self.inner.receive(max, wait).await
    }

    async fn delete(&self, receipt: &str) -> Result<()> {
        self.inner.delete(receipt).await
    }
}
