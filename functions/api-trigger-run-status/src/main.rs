//! `GET /api/pipeline_schedules/{id}/api_trigger/pipeline_runs/{run_id}`: the `api-trigger-run-status` Lambda function. The handler is in `kickoff::http::routes`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), kickoff::http::lambda::LambdaError> {
    kickoff::http::lambda::serve("api-trigger-run-status").await
}
