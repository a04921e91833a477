//! Executors: what running one attempt of a block means. `http` POSTs a signed JSON invocation,
//! `lambda` invokes an AWS Lambda function with the same payload, `noop` completes at once. All three
//! answer an [`Outcome`] by the same rules: 2xx completed (a JSON object body becomes the block's metrics),
//! 202 accepted (the target calls back), 4xx failed for good, 5xx, time-outs and transport errors failed
//! and retryable.
//!
//! HTTP requests are signed in the manner of Standard Webhooks: `webhook-id` (`<block run id>-<attempt>`),
//! `webhook-timestamp` (Unix seconds) and `webhook-signature: v1,<base64 HMAC-SHA256 of
//! "<id>.<timestamp>.<body>">`, keyed by `KICKOFF_WEBHOOK_SECRET` (a `whsec_<base64>` secret is
//! base64-decoded first, as Standard Webhooks libraries do).

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::Sha256;
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::domain::Executor;
use crate::egress::{self, CheckedResolver, Policy};

/// Default time an HTTP call may take (an `http` executor's `timeout_s` overrides it).
pub const DEFAULT_CALL_TIMEOUT_S: u64 = 30;
/// Time a Lambda invocation may take: Lambda's own maximum.
pub const LAMBDA_CALL_TIMEOUT_S: u64 = 900;

/// What a block's target receives.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Invocation {
    pub run_id: i64,
    pub run_uuid: Uuid,
    pub block: String,
    pub block_run_id: i64,
    pub attempt: u32,
    pub parameters: Map<String, Value>,
    pub variables: Option<Value>,
    pub event_variables: Option<Value>,
    pub execution_date: DateTime<Utc>,
    /// `POST` here with `Authorization: Bearer <callback_token>` to finish an accepted (202) attempt.
    pub callback_url: String,
    pub callback_token: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Completed(Option<Value>),
    /// 202: the target will call back.
    Accepted,
    Failed {
        retryable: bool,
        error: String,
    },
}

/// The most of a block's answer that is read (an HTTP body, a Lambda payload's `body`); the rest is
/// ignored, and the metrics say so.
pub const MAX_ANSWER_BYTES: usize = 256 * 1024;
/// The most JSON a block run keeps as its metrics, far below DynamoDB's 400 KB item limit; a bigger
/// object is replaced by a note of its size.
pub const MAX_METRICS_BYTES: usize = 64 * 1024;

/// A block's answer as read: at most [`MAX_ANSWER_BYTES`], and whether there was more.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Answer {
    pub body: Bytes,
    pub truncated: bool,
}

impl Answer {
    pub fn whole(body: impl Into<Bytes>) -> Answer {
        let body: Bytes = body.into();
        let truncated = body.len() > MAX_ANSWER_BYTES;
        Answer { body: if truncated { body.slice(..MAX_ANSWER_BYTES) } else { body }, truncated }
    }
}

/// The metrics a completed attempt keeps: the answer's JSON object within [`MAX_METRICS_BYTES`], or a
/// note of why it is not kept (cut at [`MAX_ANSWER_BYTES`], or over the budget).
pub fn bounded_metrics(answer: &Answer) -> Option<Value> {
    if answer.truncated {
        return Some(serde_json::json!({ "kickoff_note": format!(
            "the answer was longer than {MAX_ANSWER_BYTES} bytes; only that much was read and it is not kept"
        ) }));
    }
    let value = serde_json::from_slice::<Value>(&answer.body).ok().filter(Value::is_object)?;
    limit_metrics(value)
}

/// `metrics` if its JSON is within [`MAX_METRICS_BYTES`], else a note of its size.
pub fn limit_metrics(metrics: Value) -> Option<Value> {
    let size = serde_json::to_vec(&metrics).map_or(usize::MAX, |v| v.len());
    if size <= MAX_METRICS_BYTES {
        return Some(metrics);
    }
    Some(serde_json::json!({ "kickoff_note": format!(
        "the metrics were {size} bytes of JSON, over the {MAX_METRICS_BYTES}-byte budget, and are not kept"
    ) }))
}

impl Outcome {
    /// The rules for an HTTP-like status and body.
    pub fn from_status(status: u16, answer: &Answer) -> Outcome {
        let body = &answer.body;
        let text = || String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned();
        match status {
            202 => Outcome::Accepted,
            200..=299 => Outcome::Completed(bounded_metrics(answer)),
            400..=499 => Outcome::Failed { retryable: false, error: format!("HTTP {status}: {}", text()) },
            _ => Outcome::Failed { retryable: true, error: format!("HTTP {status}: {}", text()) },
        }
    }
}

/// Runs one attempt on an executor.
#[async_trait]
pub trait Invoke: Send + Sync {
    async fn invoke(&self, executor: &Executor, invocation: &Invocation) -> Outcome;

    /// Sends a run's notification (SPEC §10): a signed POST of `body` with `webhook-id: id`; the
    /// answer's status, or why none came.
    async fn notify(&self, url: &str, id: &str, body: Vec<u8>) -> std::result::Result<u16, String>;
}

/// Why a signed POST got no usable answer.
enum Refused {
    /// The request could not be made (a bad URL): trying again will not help.
    Bad(String),
    /// No answer (a connection error, a time-out).
    Unanswered(String),
}

/// How long a notification's POST may take.
pub const NOTIFY_TIMEOUT_S: u64 = 10;

type HttpsClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector<CheckedResolver>>,
    Full<Bytes>,
>;

/// The real executors. Neither client is built before the first block that needs it: a worker whose
/// first message runs no HTTP block never reads the system's root certificates (SPEC §11 cold start).
pub struct Executors {
    http: std::sync::OnceLock<Result<HttpsClient, String>>,
    lambda: OnceCell<aws_sdk_lambda::Client>,
    secret: Vec<u8>,
    egress: Policy,
}

impl Executors {
    /// `secret` signs HTTP invocations (see the module docs for its forms).
    pub fn new(secret: &str) -> Self {
        let secret = match secret.strip_prefix("whsec_") {
            Some(b64) => {
                base64_simd::STANDARD.decode_to_vec(b64).unwrap_or_else(|_| secret.as_bytes().to_vec())
            }
            None => secret.as_bytes().to_vec(),
        };
        Executors {
            http: std::sync::OnceLock::new(),
            lambda: OnceCell::new(),
            secret,
            egress: Policy::current(),
        }
    }

    /// The HTTPS client, with the system's root certificates, built by the first call that needs it.
    /// It connects only to addresses the egress policy allows ([`CheckedResolver`]) and follows no
    /// redirect.
    fn http_client(&self) -> Result<&HttpsClient, String> {
        let built = self.http.get_or_init(|| {
            let mut http = hyper_util::client::legacy::connect::HttpConnector::new_with_resolver(
                CheckedResolver(self.egress),
            );
            http.enforce_http(false);
            let connector = hyper_rustls::HttpsConnectorBuilder::new()
                .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
                .map_err(|e| format!("no TLS root certificates: {e}"))?
                .https_or_http()
                .enable_http1()
                .wrap_connector(http);
            Ok(Client::builder(TokioExecutor::new()).build(connector))
        });
        built.as_ref().map_err(Clone::clone)
    }

    async fn call_http(&self, url: &str, timeout_s: u64, inv: &Invocation, body: Vec<u8>) -> Outcome {
        let id = format!("{}-{}", inv.block_run_id, inv.attempt);
        match self.signed_post(url, &id, timeout_s, body).await {
            Ok((status, body)) => Outcome::from_status(status, &body),
            Err(Refused::Bad(error)) => Outcome::Failed { retryable: false, error },
            Err(Refused::Unanswered(error)) => Outcome::Failed { retryable: true, error },
        }
    }

    /// POSTs `body` to `url`, signed as Standard Webhooks sign (`webhook-id` is `id`), within
    /// `timeout_s`: the answer's status and body.
    async fn signed_post(
        &self,
        url: &str,
        id: &str,
        timeout_s: u64,
        body: Vec<u8>,
    ) -> Result<(u16, Answer), Refused> {
        // The literal again (an address literal is never resolved, so the resolver would not see it).
        egress::check_url("url", url, self.egress).map_err(|e| Refused::Bad(e.to_string()))?;
        let timestamp = Utc::now().timestamp();
        let signature = sign(&self.secret, id, timestamp, &body);
        let request = http::Request::post(url)
            .header("content-type", "application/json")
            .header("user-agent", "kickoff")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| Refused::Bad(format!("bad request to {url}: {e}")))?;
        let client = self.http_client().map_err(Refused::Unanswered)?;
        let call = async {
            let resp = client.request(request).await.map_err(|e| format!("HTTP request failed: {e}"))?;
            let status = resp.status().as_u16();
            Ok::<_, String>((status, read_at_most(resp.into_body(), MAX_ANSWER_BYTES).await?))
        };
        match tokio::time::timeout(Duration::from_secs(timeout_s), call).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(error)) => Err(Refused::Unanswered(error)),
            Err(_) => Err(Refused::Unanswered(format!("timed out after {timeout_s}s"))),
        }
    }

    async fn call_lambda(&self, function: &str, timeout_s: u64, payload: Vec<u8>) -> Outcome {
        let client = self
            .lambda
            .get_or_init(|| async { aws_sdk_lambda::Client::new(&crate::aws::config().await) })
            .await;
        let call = client
            .invoke()
            .function_name(function)
            .payload(aws_sdk_lambda::primitives::Blob::new(payload))
            .send();
        let out = match tokio::time::timeout(Duration::from_secs(timeout_s), call).await {
            Err(_) => {
                return Outcome::Failed { retryable: true, error: format!("timed out after {timeout_s}s") }
            }
            Ok(Err(e)) => {
                let retryable = e.as_service_error().is_none_or(|s| !s.is_resource_not_found_exception());
                let error =
                    format!("Lambda invoke failed: {}", aws_sdk_lambda::error::DisplayErrorContext(e));
                return Outcome::Failed { retryable, error };
            }
            Ok(Ok(out)) => out,
        };
        // Lambda bounds a synchronous answer at 6 MB, which the SDK has read already.
        let body = out.payload().map(|p| p.as_ref().to_vec()).unwrap_or_default();
        if let Some(kind) = out.function_error() {
            let text = String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned();
            return Outcome::Failed { retryable: true, error: format!("function error ({kind}): {text}") };
        }
        lambda_outcome(&body)
    }
}

/// A function's answer: `{"statusCode": N, "body"?: ...}` (an API Gateway-style response) follows the
/// HTTP rules; any other answer is a completion (a JSON object becomes the metrics).
pub fn lambda_outcome(payload: &[u8]) -> Outcome {
    let value: Option<Value> = serde_json::from_slice(payload).ok();
    if let Some(code) = value.as_ref().and_then(|v| v.get("statusCode")).and_then(Value::as_u64) {
        let body = value.as_ref().and_then(|v| v.get("body")).map(|b| match b {
            Value::String(s) => s.clone().into_bytes(),
            other => other.to_string().into_bytes(),
        });
        // A status past u16 is no HTTP status: a failure worth retrying, never a wrapped-around 2xx.
        let status = u16::try_from(code).unwrap_or(599);
        return Outcome::from_status(status, &Answer::whole(body.unwrap_or_default()));
    }
    if payload.len() > MAX_ANSWER_BYTES {
        return Outcome::Completed(bounded_metrics(&Answer::whole(payload.to_vec())));
    }
    Outcome::Completed(value.filter(Value::is_object).and_then(limit_metrics))
}

/// Reads at most `limit` bytes of `body`, frame by frame; the rest is not read.
async fn read_at_most<B>(mut body: B, limit: usize) -> Result<Answer, String>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut read = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("HTTP body failed: {e}"))?;
        if let Ok(data) = frame.into_data() {
            let room = limit.saturating_sub(read.len());
            if data.len() > room {
                read.extend_from_slice(&data[..room]);
                return Ok(Answer { body: Bytes::from(read), truncated: true });
            }
            read.extend_from_slice(&data);
        }
    }
    Ok(Answer { body: Bytes::from(read), truncated: false })
}

/// Standard base64.
pub fn base64(bytes: &[u8]) -> String {
    base64_simd::STANDARD.encode_to_string(bytes)
}

/// `v1,<base64 HMAC-SHA256(secret, "<id>.<timestamp>.<body>")>`.
pub fn sign(secret: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", base64(&mac.finalize().into_bytes()))
}

#[async_trait]
impl Invoke for Executors {
    async fn invoke(&self, executor: &Executor, inv: &Invocation) -> Outcome {
        let body = match serde_json::to_vec(inv) {
            Ok(b) => b,
            Err(e) => {
                let error = format!("cannot encode the invocation: {e}");
                return Outcome::Failed { retryable: false, error };
            }
        };
        match executor {
            Executor::Noop {} => Outcome::Completed(None),
            Executor::Http { url, timeout_s } => {
                self.call_http(url, timeout_s.unwrap_or(DEFAULT_CALL_TIMEOUT_S), inv, body).await
            }
            Executor::Lambda { function } => self.call_lambda(function, LAMBDA_CALL_TIMEOUT_S, body).await,
        }
    }

    async fn notify(&self, url: &str, id: &str, body: Vec<u8>) -> std::result::Result<u16, String> {
        match self.signed_post(url, id, NOTIFY_TIMEOUT_S, body).await {
            Ok((status, _)) => Ok(status),
            Err(Refused::Bad(e) | Refused::Unanswered(e)) => Err(e),
        }
    }
}

/// The executors of a process that does not run blocks (the API functions): never called there.
pub struct NotHere;

#[async_trait]
impl Invoke for NotHere {
    async fn invoke(&self, _: &Executor, _: &Invocation) -> Outcome {
        Outcome::Failed { retryable: true, error: "this process does not run blocks".into() }
    }

    async fn notify(&self, _: &str, _: &str, _: Vec<u8>) -> std::result::Result<u16, String> {
        Err("this process does not send notifications".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_outcomes() {
        assert_eq!(
            Outcome::from_status(200, &Answer::whole(&br#"{"rows": 3}"#[..])),
            Outcome::Completed(Some(serde_json::json!({"rows": 3})))
        );
        assert_eq!(Outcome::from_status(204, &Answer::default()), Outcome::Completed(None));
        assert_eq!(Outcome::from_status(202, &Answer::default()), Outcome::Accepted);
        assert!(matches!(
            Outcome::from_status(404, &Answer::whole(&b"no"[..])),
            Outcome::Failed { retryable: false, .. }
        ));
        assert!(matches!(
            Outcome::from_status(503, &Answer::whole(&b"busy"[..])),
            Outcome::Failed { retryable: true, .. }
        ));
        assert!(matches!(lambda_outcome(br#"{"statusCode": 202}"#), Outcome::Accepted));
        assert!(matches!(
            lambda_outcome(br#"{"statusCode": 400, "body": "bad"}"#),
            Outcome::Failed { retryable: false, .. }
        ));
        assert_eq!(
            lambda_outcome(br#"{"ok": true}"#),
            Outcome::Completed(Some(serde_json::json!({"ok": true})))
        );
    }

    #[test]
    fn answers_and_metrics_are_bounded() {
        let big = serde_json::json!({"rows": "x".repeat(MAX_METRICS_BYTES)}).to_string();
        let Outcome::Completed(Some(m)) = Outcome::from_status(200, &Answer::whole(big.clone())) else {
            panic!("completed")
        };
        assert!(m["kickoff_note"].as_str().unwrap().contains("over the 65536-byte budget"), "{m}");
        let huge = serde_json::json!({"rows": "x".repeat(MAX_ANSWER_BYTES)}).to_string();
        let answer = Answer::whole(huge.clone());
        assert!(answer.truncated && answer.body.len() == MAX_ANSWER_BYTES);
        let Outcome::Completed(Some(m)) = Outcome::from_status(200, &answer) else { panic!("completed") };
        assert!(m["kickoff_note"].as_str().unwrap().contains("longer than 262144 bytes"), "{m}");
        let Outcome::Completed(Some(m)) = lambda_outcome(huge.as_bytes()) else { panic!("completed") };
        assert!(m["kickoff_note"].is_string());
        let Outcome::Completed(Some(m)) = lambda_outcome(big.as_bytes()) else { panic!("completed") };
        assert!(m["kickoff_note"].is_string());
    }

    #[tokio::test]
    async fn a_body_is_read_up_to_the_limit_only() {
        let body = http_body_util::Full::new(Bytes::from(vec![b'a'; 1000]));
        let answer = read_at_most(body, 100).await.unwrap();
        assert_eq!((answer.body.len(), answer.truncated), (100, true));
        let body = http_body_util::Full::new(Bytes::from(vec![b'a'; 100]));
        let answer = read_at_most(body, 100).await.unwrap();
        assert_eq!((answer.body.len(), answer.truncated), (100, false));
    }

    #[test]
    fn signatures_follow_standard_webhooks() {
        // The example of the Standard Webhooks specification.
        let secret = base64_simd::STANDARD.decode_to_vec("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
