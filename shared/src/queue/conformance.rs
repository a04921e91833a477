//! The conformance suite every `RunQueue` passes: run on the in-memory queue by unit tests and on the
//! SQS emulator by `tests/tests/stack.rs`.

use std::time::Duration;

use uuid::Uuid;

use super::{Message, RunQueue};

/// Sends, receives and deletes; panics on the first difference from the contract.
pub async fn run_all(queue: &dyn RunQueue) {
    let empty = queue.receive(10, Duration::from_millis(50)).await.expect("receive on empty queue");
    assert!(empty.is_empty(), "a new queue must be empty");

    let a = Message::StartRun { run_uuid: Uuid::new_v4() };
    let b = Message::StartRun { run_uuid: Uuid::new_v4() };
    queue.send(&a).await.expect("send a");
    queue.send(&b).await.expect("send b");

    let mut got = Vec::new();
    for _ in 0..10 {
        let batch = queue.receive(10, Duration::from_secs(1)).await.expect("receive");
        for r in batch {
            queue.delete(&r.receipt).await.expect("delete");
            got.push(r.message);
        }
        if got.len() >= 2 {
            break;
        }
    }
    assert_eq!(got.len(), 2, "both messages arrive: {got:?}");
    assert!(got.contains(&a) && got.contains(&b), "the messages arrive unchanged");

    let after = queue.receive(10, Duration::from_millis(200)).await.expect("receive after delete");
    assert!(after.is_empty(), "deleted messages are not delivered again: {after:?}");

    // SQS refuses a delay over 900 s (so does the emulator): a longer wait is sent at the cap (the
    // sweep covers the rest), and the message stays hidden.
    let later = Message::StartRun { run_uuid: Uuid::new_v4() };
    queue.send_delayed(&later, Duration::from_secs(86_400)).await.expect("a day's delay is sent at 900 s");
    let hidden = queue.receive(10, Duration::from_millis(200)).await.expect("receive");
    assert!(hidden.is_empty(), "a delayed message is not delivered at once: {hidden:?}");
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn memory_queue_conforms() {
        super::run_all(&super::super::memory::MemoryQueue::new()).await;
    }
}
