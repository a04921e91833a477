//! `GET /api/pipeline_runs/{id}/block_runs`: the `list-block-runs` Lambda function. The handler is in `kickoff::http::routes`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), kickoff::http::lambda::LambdaError> {
    kickoff::http::lambda::serve("list-block-runs").await
}
