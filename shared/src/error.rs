//! The one error type of Kickoff. Each variant is an HTTP status; `http::errors` renders it in the
//! dialect's error body, in one place.

use http::StatusCode;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum Error {
    /// 400: the body is not JSON, not an object, or a value is out of range.
    #[error("{0}")]
    BadRequest(String),
    /// 401 with no credential at all.
    #[error("Not authenticated")]
    Unauthenticated,
    /// 401: a credential was sent but is not valid.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: a valid credential that may not do this.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 409: the entity exists already, or its state forbids the change.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 429: a limit was reached (a schedule's waiting list is full); try again later.
    #[error("{0}")]
    TooManyRequests(String),
    /// 429 with `Retry-After` (seconds): over a rate (a throttled key's turn is too far away).
    #[error("{0}")]
    RateLimited(String, u64),
    /// 422: well-formed JSON whose content is not acceptable (unknown field, wrong type, bad DAG).
    #[error("{0}")]
    Unprocessable(String),
    /// 500: a dependency failed (store, queue). The message is logged, never shown to clients.
    #[error("{0}")]
    Internal(String),
    /// 503 with `Retry-After`: a dependency is throttled or cannot be reached for now (DynamoDB's
    /// throughput exceeded, SQS unreachable). The message is logged, never shown to clients.
    #[error("{0}")]
    Unavailable(String),
}

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Unauthenticated | Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::TooManyRequests(_) | Error::RateLimited(..) => StatusCode::TOO_MANY_REQUESTS,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A dependency's failure (the store, the queue), which the same call may get past if tried again.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Internal(_) | Error::Unavailable(_))
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        Error::Internal(e.to_string())
    }
}

/// An error and its sources, each once, in one line (the SDK's `DisplayErrorContext` adds a debug dump).
pub fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}

/// What a caught panic said (its `&str` or `String` payload).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_string())
}

/// An AWS SDK error as Kickoff's: [`Error::Unavailable`] when trying again later may succeed — a
/// throttled or failing service (`ProvisionedThroughputExceededException`, `ThrottlingException`,
/// `RequestLimitExceeded`, `InternalServerError`, `ServiceUnavailable`, a 5xx) or one that could not be
/// reached or did not answer in time — else [`Error::Internal`]. One place for every adapter.
pub fn from_sdk<E, R>(e: aws_smithy_runtime_api::client::result::SdkError<E, R>) -> Error
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    use aws_smithy_runtime_api::client::result::SdkError;
    let busy = match &e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(s) => is_busy_code(s.err().code()),
        _ => false,
    };
    let text = aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string();
    if busy {
        Error::Unavailable(text)
    } else {
        Error::Internal(text)
    }
}

/// Whether an AWS error code (or a transaction's cancellation reason) says "busy, try again".
pub fn is_busy_code(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "ProvisionedThroughputExceededException"
                | "ThrottlingException"
                | "ThrottlingError"
                | "Throttling"
                | "RequestLimitExceeded"
                | "InternalServerError"
                | "ServiceUnavailable"
                | "RequestThrottled"
                | "KMSThrottlingException"
        )
    )
}
