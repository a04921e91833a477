//! `GET /api/v1/pipeline_snapshots`: the `list-snapshots` Lambda function. The handler is in `kickoff::http::routes`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), kickoff::http::lambda::LambdaError> {
    kickoff::http::lambda::serve("list-snapshots").await
}
