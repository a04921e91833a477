//! `POST /api/pipeline_schedules/{id}/webhook`: the `webhook-schedule-run` Lambda function. The handler is in `kickoff::http::routes`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), kickoff::http::lambda::LambdaError> {
    kickoff::http::lambda::serve("webhook-schedule-run").await
}
