//! `POST /api/pipeline_schedules/{id}/pipeline_runs`: the `run-schedule-now` Lambda function. The handler is in `kickoff::http::routes`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), kickoff::http::lambda::LambdaError> {
    kickoff::http::lambda::serve("run-schedule-now").await
}
