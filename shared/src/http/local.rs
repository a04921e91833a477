//! The local HTTP server: every route of both dialects on one port (hyper, HTTP/1.1), and the OpenAPI
//! document at `/openapi.json`.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::routes::{serve as route_and_serve, Dialect};
use super::{errors, ApiRequest, ApiResponse, MAX_BODY_BYTES};
use crate::{App, Error};

/// Accepts connections until the task is dropped.
pub async fn serve(app: Arc<App>, listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let app = app.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: hyper::Request<Incoming>| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(to_hyper(handle(&app, req).await)) }
            });
            let _ =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

async fn handle(app: &App, req: hyper::Request<Incoming>) -> ApiResponse {
    let (parts, body) = req.into_parts();
    // The OpenAPI document (`http::openapi`): the embedded server's only path outside the route table.
    if parts.method == http::Method::GET && parts.uri.path() == "/openapi.json" {
        return ApiResponse::ok(&super::openapi::document());
    }
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let body = match Limited::new(body, MAX_BODY_BYTES + 1).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            let path = parts.uri.path();
            return errors::render(
                Dialect::of_path(path),
                &Error::PayloadTooLarge(format!("the body is over the limit of {MAX_BODY_BYTES} bytes")),
            );
        }
    };
    route_and_serve(app, ApiRequest::new(parts.method, &path_and_query, parts.headers, body)).await
}

fn to_hyper(resp: ApiResponse) -> hyper::Response<Full<Bytes>> {
    let mut builder = hyper::Response::builder().status(resp.status);
    for (k, v) in &resp.headers {
        builder = builder.header(*k, v);
    }
    builder.body(Full::new(resp.body)).unwrap_or_else(|_| hyper::Response::new(Full::new(Bytes::new())))
}
