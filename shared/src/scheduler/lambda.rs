//! The scheduler as a Lambda function: EventBridge invokes it every minute with a scheduled event
//! (`{"detail-type": "Scheduled Event", "source": "aws.events", "time": "…", …}`); it runs one tick for
//! the event's `time` and answers what the tick did.

use std::panic::AssertUnwindSafe;

use aws_lambda_events::event::cloudwatch_events::CloudWatchEvent;
use futures_util::FutureExt;
use lambda_runtime::{service_fn, LambdaEvent};

use super::{tick, TickReport};
use crate::{telemetry, App};

/// The error the scheduler function's `main` returns.
pub type LambdaError = lambda_runtime::Error;

pub async fn serve() -> Result<(), LambdaError> {
    telemetry::init_lambda();
    let app = App::for_lambda().await?;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<CloudWatchEvent>| {
        let app = app.clone();
        async move {
            // A panic is an error of this invocation (logged; EventBridge's next minute ticks again),
            // never a runtime that stops answering.
            match AssertUnwindSafe(tick(&app, event.payload.time)).catch_unwind().await {
                Ok(report) => Ok::<TickReport, LambdaError>(report?),
                Err(panic) => {
                    let what = crate::error::panic_message(panic.as_ref());
                    tracing::error!(panic = %what, "the tick panicked");
                    Err("the tick panicked".into())
                }
            }
        }
    }))
    .await
}
