//! `POST /api/block_runs/{id}/callback`: the `block-run-callback` Lambda function. The handler is in `kickoff::http::routes`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), kickoff::http::lambda::LambdaError> {
    kickoff::http::lambda::serve("block-run-callback").await
}
