//! A block target for tests: an HTTP server that records every invocation (block, attempt, when it
//! started and ended, headers, body) and answers from a script per block and attempt.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// How the server answers one attempt.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub delay: Duration,
    pub body: Value,
    /// A callback body to POST to the invocation's callback URL before answering.
    pub callback_first: Option<Value>,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply { status, delay: Duration::ZERO, body: Value::Object(Default::default()), callback_first: None }
    }

    /// Calls back with `body` (as a fast job does) before answering.
    pub fn calling_back_first(mut self, body: Value) -> Reply {
        self.callback_first = Some(body);
        self
    }

    pub fn after(mut self, delay_ms: u64) -> Reply {
        self.delay = Duration::from_millis(delay_ms);
        self
    }

    pub fn body(mut self, body: Value) -> Reply {
        self.body = body;
        self
    }
}

#[derive(Debug, Clone)]
pub struct Call {
    pub block: String,
    pub attempt: u32,
    pub started: Instant,
    pub ended: Instant,
    pub headers: http::HeaderMap,
    pub raw: Bytes,
    pub body: Value,
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    /// The body of every invocation, as it arrived (before its reply, which a test may never see).
    arrived: Vec<Value>,
    /// block → replies by attempt (1-based); past the end, the last one; none: 200.
    script: HashMap<String, Vec<Reply>>,
    /// The status of every callback made by [`Reply::calling_back_first`].
    callbacks: Vec<u16>,
}

#[derive(Clone)]
pub struct BlockServer {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

impl BlockServer {
    pub async fn start() -> BlockServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let inner = Arc::new(Mutex::new(Inner::default()));
        let state = inner.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let state = state.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<Incoming>| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(answer(state, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        BlockServer { url, inner }
    }

    /// Replies for a block's attempts 1, 2, …
    pub fn script(&self, block: &str, replies: Vec<Reply>) {
        self.inner.lock().expect("lock").script.insert(block.to_string(), replies);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().expect("lock").calls.clone()
    }

    /// Every invocation's body as it arrived, answered or not.
    pub fn arrived(&self) -> Vec<Value> {
        self.inner.lock().expect("lock").arrived.clone()
    }

    /// The statuses Kickoff answered the callbacks made before answering.
    pub fn early_callbacks(&self) -> Vec<u16> {
        self.inner.lock().expect("lock").callbacks.clone()
    }

    /// `(block, attempt)` of every call, in arrival order.
    pub fn attempts(&self) -> Vec<(String, u32)> {
        self.calls().into_iter().map(|c| (c.block, c.attempt)).collect()
    }
}

async fn answer(state: Arc<Mutex<Inner>>, req: hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
    let started = Instant::now();
    let headers = req.headers().clone();
    let raw = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let block = body["block"].as_str().unwrap_or("").to_string();
    let reply = {
        let mut inner = state.lock().expect("lock");
        // A call that names no attempt (a run's notification) counts its own: the calls of its block
        // (`""` without one) so far, plus one.
        let attempt = match body["attempt"].as_u64() {
            Some(a) => a as u32,
            None => {
                1 + inner.arrived.iter().filter(|b| b["block"].as_str().unwrap_or("") == block).count() as u32
            }
        };
        inner.arrived.push(body.clone());
        let reply = inner
            .script
            .get(&block)
            .and_then(|r| r.get((attempt as usize).saturating_sub(1)).or(r.last()).cloned())
            .unwrap_or_else(|| Reply::status(200));
        (reply, attempt)
    };
    let (reply, attempt) = reply;
    if let Some(callback) = &reply.callback_first {
        let url = body["callback_url"].as_str().unwrap_or_default();
        let token = format!("Bearer {}", body["callback_token"].as_str().unwrap_or_default());
        let answer = crate::request("POST", url, &[("authorization", &token)], callback.to_string()).await;
        state.lock().expect("lock").callbacks.push(answer.status);
    }
    tokio::time::sleep(reply.delay).await;
    state.lock().expect("lock").calls.push(Call {
        block,
        attempt,
        started,
        ended: Instant::now(),
        headers,
        raw,
        body,
    });
    hyper::Response::builder()
        .status(reply.status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(reply.body.to_string())))
        .unwrap_or_else(|_| hyper::Response::new(Full::new(Bytes::new())))
}
