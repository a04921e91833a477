//! The `worker` Lambda function: the SQS-triggered worker that runs queued pipeline runs block by block.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), kickoff::worker::lambda::LambdaError> {
    kickoff::worker::lambda::serve().await
}
