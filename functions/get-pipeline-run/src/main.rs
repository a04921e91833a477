//! `GET /api/pipeline_runs/{id}`: the `get-pipeline-run` Lambda function. The handler is in `kickoff::http::routes`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), kickoff::http::lambda::LambdaError> {
    kickoff::http::lambda::serve("get-pipeline-run").await
}
