//! The two dialects' error bodies, decided once.
//!
//! ZenML: `{"detail": ["<ErrorKind>", "<message>"]}`, except a missing credential:
//! `{"detail": "Not authenticated"}` with `WWW-Authenticate: Bearer`.
//! Mage: `{"error": {"code": <status>, "type": "<kind>", "message": "<text>"}}` with the real status.
//! A 500's message is logged, never shown.

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
        Error::TooManyRequests(_) => "TooManyRequests",
        Error::Unprocessable(_) => "ValidationError",
        Error::Internal(_) => "RuntimeError",
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
        Error::TooManyRequests(_) => "too_many_requests",
        Error::Unprocessable(_) => "invalid_input",
        Error::Internal(_) => "internal_error",
    }
}

pub fn render(dialect: Dialect, e: &Error) -> ApiResponse {
    let message = match e {
        Error::Internal(detail) => {
            tracing::error!(error = %detail, "internal error");
            "Internal server error".to_string()
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
    resp
}
