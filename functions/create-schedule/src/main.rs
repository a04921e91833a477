//! `POST /api/pipelines/{pipeline_uuid}/pipeline_schedules`: the `create-schedule` Lambda function. The handler is in `kickoff::http::routes`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), kickoff::http::lambda::LambdaError> {
    kickoff::http::lambda::serve("create-schedule").await
}
