//! The `scheduler` Lambda function: the one-minute tick EventBridge invokes: the sweep that re-queues runs no message looked at in time.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), kickoff::scheduler::lambda::LambdaError> {
    kickoff::scheduler::lambda::serve().await
}
