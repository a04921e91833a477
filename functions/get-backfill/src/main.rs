//! `GET /api/backfills/{id}`: the `get-backfill` Lambda function. The handler is in `kickoff::http::routes`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), kickoff::http::lambda::LambdaError> {
    kickoff::http::lambda::serve("get-backfill").await
}
