//! The SQS queue: one standard queue of JSON messages (a dead-letter queue behind it in AWS).

use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::Client;

use super::{Message, Received, RunQueue};
use crate::{Error, Result};

#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self { client, url: url.into() }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Creates a queue (received messages come back after `visibility_s` unless deleted; SQS's default
    /// without) and returns its URL — tests and local runs; AWS gets it from the template. An error is
    /// one line.
    pub async fn create(client: &Client, name: &str, visibility_s: Option<u32>) -> Result<String> {
        let mut create = client.create_queue().queue_name(name);
        if let Some(s) = visibility_s {
            create =
                create.attributes(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout, s.to_string());
        }
        let out = create.send().await.map_err(|e| {
            Error::Internal(format!("cannot create queue {name:?}: {}", crate::error::causes(&e)))
        })?;
        out.queue_url().map(str::to_string).ok_or_else(|| Error::Internal("queue without URL".into()))
    }
}

/// Received SQS messages as the event Lambda's SQS event source mapping hands the worker function —
/// for running it where no event source mapping does (`kickoff feed` on the local stack, the tests).
pub fn lambda_event(messages: &[aws_sdk_sqs::types::Message], queue_url: &str) -> SqsEvent {
    let queue_name = queue_url.rsplit('/').next().unwrap_or(queue_url);
    let mut event = SqsEvent::default();
    for m in messages {
        let mut record = SqsMessage::default();
        record.message_id = m.message_id.clone();
        record.receipt_handle = m.receipt_handle.clone();
        record.body = m.body.clone();
        record.event_source = Some("aws:sqs".into());
        record.event_source_arn = Some(format!("arn:aws:sqs:local:000000000000:{queue_name}"));
        record.aws_region = Some("local".into());
        event.records.push(record);
    }
    event
}

#[async_trait]
impl RunQueue for SqsQueue {
    async fn send_delayed(&self, message: &Message, delay: Duration) -> Result<()> {
        let body = serde_json::to_string(message).map_err(Error::internal)?;
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .delay_seconds(delay.min(super::MAX_DELAY).as_secs() as i32)
            .send()
            .await
            .map_err(crate::error::from_sdk)?;
        Ok(())
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Received>> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .send()
            .await
            .map_err(crate::error::from_sdk)?;
        let mut received = Vec::new();
        for m in out.messages() {
            let (Some(body), Some(receipt)) = (m.body(), m.receipt_handle()) else {
                continue;
            };
            let message: Message = serde_json::from_str(body)
                .map_err(|e| Error::Internal(format!("unreadable queue message: {e}")))?;
            received.push(Received { message, receipt: receipt.to_string() });
        }
        Ok(received)
    }

    async fn delete(&self, receipt: &str) -> Result<()> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(crate::error::from_sdk)?;
        Ok(())
    }
}
