//! The two dialects' error bodies, decided once.
//!
//! ZenML: `{"detail": ["<ErrorKind>", "<message>"]}`, except a missing credential:
//! `{"detail": "Not authenticated"}` with `WWW-Authenticate: Bearer`.
//! Mage: `{"error": {"code": <status>, "type": "<kind>", "message": "<text>"}}` with the real status.
//! A 500's message is logged, never shown; so is a 503's, which carries `Retry-After` (a store that is
//! throttled or unreachable).

use serde_json::json;

use super::routes::Dialect;
use super::ApiResponse;
use crate::Error;

fn zenml_kind(e: &Error) -> &'static str {
    match e {
        Error::BadRequest(_) => "ValueError",
        Error::Unauthenticated | Error::Unauthorized(_) => "AuthorizationException",
        Error::Forbidden(_) => "IllegalOperationError",
        Error::NotFound(_) => "KeyError",
        Error::MethodNotAllowed(_) => "MethodNotAllowed",
        Error::Conflict(_) => "EntityExistsError",
        Error::PayloadTooLarge(_) => "PayloadTooLarge",
        Error::TooManyRequests(_) | Error::RateLimited(..) => "TooManyRequests",
        Error::Unprocessable(_) => "ValidationError",
        Error::Internal(_) => "RuntimeError",
        Error::Unavailable(_) => "ServiceUnavailable",
    }
}

fn mage_kind(e: &Error) -> &'static str {
    match e {
        Error::BadRequest(_) => "bad_request",
        Error::Unauthenticated | Error::Unauthorized(_) => "unauthorized",
        Error::Forbidden(_) => "forbidden",
        Error::NotFound(_) => "record_not_found",
        Error::MethodNotAllowed(_) => "method_not_allowed",
        Error::Conflict(_) => "conflict",
        Error::PayloadTooLarge(_) => "payload_too_large",
        Error::TooManyRequests(_) | Error::RateLimited(..) => "too_many_requests",
        Error::Unprocessable(_) => "invalid_input",
        Error::Internal(_) => "internal_error",
        Error::Unavailable(_) => "service_unavailable",
    }
}

/// The `Retry-After` of a 503: DynamoDB's throttling clears within seconds.
pub const RETRY_AFTER_S: u64 = 2;

pub fn render(dialect: Dialect, e: &Error) -> ApiResponse {
    let message = match e {
        Error::Internal(detail) => {
            tracing::error!(error = %detail, "internal error");
            "Internal server error".to_string()
        }
        Error::Unavailable(detail) => {
            tracing::warn!(error = %detail, "a dependency is busy or unreachable");
            format!("Service unavailable: try again in {RETRY_AFTER_S} seconds")
        }
        other => other.to_string(),
    };
    let status = e.status();
    let mut resp = match dialect {
        Dialect::Zenml if *e == Error::Unauthenticated => {
            ApiResponse::json(status, &json!({ "detail": "Not authenticated" }))
        }
        Dialect::Zenml => ApiResponse::json(status, &json!({ "detail": [zenml_kind(e), message] })),
        Dialect::Mage => ApiResponse::json(
            status,
            &json!({ "error": { "code": status.as_u16(), "type": mage_kind(e), "message": message } }),
        ),
    };
    if matches!(e, Error::Unauthenticated | Error::Unauthorized(_)) {
        resp.headers.push(("www-authenticate", "Bearer".into()));
    }
    match e {
        Error::Unavailable(_) => resp.headers.push(("retry-after", RETRY_AFTER_S.to_string())),
        Error::RateLimited(_, after_s) => resp.headers.push(("retry-after", after_s.to_string())),
        _ => {}
    }
    resp
}
