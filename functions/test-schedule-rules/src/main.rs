//! `POST /api/pipeline_schedules/{id}/rules/test`: the `test-schedule-rules` Lambda function. The handler is in `kickoff::http::routes`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), kickoff::http::lambda::LambdaError> {
    kickoff::http::lambda::serve("test-schedule-rules").await
}
