//! `POST /api/pipeline_schedules/{id}/pipeline_runs/{token}`: the `trigger-schedule-run` Lambda function. The handler is in `kickoff::http::routes`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), kickoff::http::lambda::LambdaError> {
    kickoff::http::lambda::serve("trigger-schedule-run").await
}
