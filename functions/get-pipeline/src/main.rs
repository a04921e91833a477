//! `GET /api/v1/pipelines/{id}`: the `get-pipeline` Lambda function. The handler is in `kickoff::http::routes`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), kickoff::http::lambda::LambdaError> {
    kickoff::http::lambda::serve("get-pipeline").await
}
