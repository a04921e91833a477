//! `PUT /api/pipeline_runs/{id}`: the `update-pipeline-run` Lambda function. The handler is in `kickoff::http::routes`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), kickoff::http::lambda::LambdaError> {
    kickoff::http::lambda::serve("update-pipeline-run").await
}
