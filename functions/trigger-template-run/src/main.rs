//! `POST /api/v1/run_templates/{id}/runs`: the `trigger-template-run` Lambda function. The handler is in `kickoff::http::routes`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), kickoff::http::lambda::LambdaError> {
    kickoff::http::lambda::serve("trigger-template-run").await
}
