//! The worker as a Lambda function: an SQS event in, each message handled concurrently, a partial batch
//! response out. A message that fails, or that cannot be read at all, is reported as a batch item
//! failure: SQS delivers it again, and after the queue's `maxReceiveCount` moves it to the dead-letter
//! queue. It never holds up the rest of the batch.

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use futures_util::FutureExt;
use lambda_runtime::{service_fn, LambdaEvent};
use tokio::task::JoinSet;

use super::executor::Executors;
use super::Worker;
use crate::queue::Message;
use crate::{telemetry, App};

/// The error the worker function's `main` returns.
pub type LambdaError = lambda_runtime::Error;

/// The worker function's configuration: `KICKOFF_PUBLIC_URL` (the API's base URL, for callback URLs) and
/// `KICKOFF_WEBHOOK_SECRET` (signs HTTP invocations), besides the table and the queue.
pub async fn serve() -> Result<(), LambdaError> {
    telemetry::init_lambda();
    let app = App::for_lambda().await?;
    let public_url = std::env::var("KICKOFF_PUBLIC_URL").map_err(|_| "KICKOFF_PUBLIC_URL must be set")?;
    let secret = std::env::var("KICKOFF_WEBHOOK_SECRET").map_err(|_| "KICKOFF_WEBHOOK_SECRET must be set")?;
    let worker = Arc::new(Worker::new(app, Arc::new(Executors::new(&secret)), &public_url));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let worker = worker.clone();
        async move { Ok::<_, std::convert::Infallible>(process(worker, event.payload).await) }
    }))
    .await
}

/// Handles a batch; the response names the messages to deliver again. A message is reported done only
/// when its handling returned `Ok`: one whose handling failed or panicked (the panic is caught and
/// logged with the run's id) is a batch item failure, so SQS delivers it again and never deletes it.
pub async fn process(worker: Arc<Worker>, event: SqsEvent) -> SqsBatchResponse {
    let mut tasks = JoinSet::new();
    let mut failures = Vec::new();
    // Every message handed to a task, until the task says it succeeded: what is left is a failure,
    // whatever happened to its task.
    let mut unfinished = HashSet::new();
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let parsed = record.body.as_deref().map(serde_json::from_str::<Message>);
        let message = match parsed {
            Some(Ok(m)) => m,
            other => {
                let why = match other {
                    Some(Err(e)) => e.to_string(),
                    _ => "no body".to_string(),
                };
                tracing::error!(message_id = %id, error = %why, "unreadable message; it goes to the dead-letter queue");
                failures.push(id);
                continue;
            }
        };
        let worker = worker.clone();
        unfinished.insert(id.clone());
        tasks.spawn(async move {
            let ok = match AssertUnwindSafe(worker.handle(&message)).catch_unwind().await {
                Ok(Ok(())) => true,
                Ok(Err(e)) => {
                    tracing::warn!(message_id = %id, run_uuid = ?message.run_uuid(), error = %e, "message failed");
                    false
                }
                Err(panic) => {
                    let what = crate::error::panic_message(panic.as_ref());
                    tracing::error!(message_id = %id, run_uuid = ?message.run_uuid(), panic = %what, "message handling panicked; it will be delivered again");
                    false
                }
            };
            (id, ok)
        });
    }
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((id, true)) => {
                unfinished.remove(&id);
            }
            Ok((_, false)) => {}
            Err(e) => tracing::error!(error = %e, "a message task ended abnormally"),
        }
    }
    failures.extend(unfinished);
    SqsBatchResponse {
        batch_item_failures: failures
            .into_iter()
            .map(|id| BatchItemFailure { item_identifier: id })
            .collect(),
    }
}
