//! The Lambda adapter: an API Gateway (HTTP API) event in, the route's handler, the response out.
//! Each function's `main.rs` is one call to [`serve`].

use std::convert::Infallible;

use bytes::Bytes;
use lambda_http::{service_fn, Body, Request, Response};

use super::routes::{dispatch, Route};
use super::{ApiRequest, ApiResponse};
use crate::{telemetry, App};

/// The error a function's `main` returns.
pub type LambdaError = lambda_http::Error;

/// Runs the Lambda function named `function` (its name in the route table) until the runtime stops.
pub async fn serve(function: &str) -> Result<(), LambdaError> {
    telemetry::init_lambda();
    let route = Route::by_function(function).ok_or_else(|| format!("no route for function {function}"))?;
    let app = App::for_lambda().await?;
    let app = &app;
    lambda_http::run(service_fn(move |event: Request| async move {
        let req = from_event(event);
        Ok::<_, Infallible>(to_response(dispatch(app, route, req).await))
    }))
    .await
}

pub fn from_event(event: Request) -> ApiRequest {
    let (parts, body) = event.into_parts();
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let body = match body {
        Body::Empty => Bytes::new(),
        Body::Text(t) => Bytes::from(t),
        Body::Binary(b) => Bytes::from(b),
    };
    ApiRequest::new(parts.method, &path_and_query, parts.headers, body)
}

pub fn to_response(resp: ApiResponse) -> Response<Body> {
    let mut builder = Response::builder().status(resp.status);
    for (k, v) in &resp.headers {
        builder = builder.header(*k, v);
    }
    let body = match String::from_utf8(resp.body.to_vec()) {
        Ok(text) => Body::Text(text),
        Err(e) => Body::Binary(e.into_bytes()),
    };
    builder.body(body).unwrap_or_else(|_| Response::new(Body::Empty))
}
