//! `GET /api/v1/stacks/{id}`: the `get-stack` Lambda function. The handler is in `kickoff::http::routes`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), kickoff::http::lambda::LambdaError> {
    kickoff::http::lambda::serve("get-stack").await
}
