//! `kickoff feed`: what AWS does around the functions, for the local stack (`infra/scripts/local-stack.sh`),
//! where nothing else would: the SQS event source mapping — receive up to 10 messages from the run queue,
//! invoke the `worker` function with them as one SQS event through `cargo lambda watch`'s Invoke API,
//! delete the messages its partial batch response does not name as failed (those come back after the
//! queue's visibility timeout, as on AWS) — and the EventBridge rule that invokes `scheduler` with a
//! scheduled event every minute (`KICKOFF_TICK_INTERVAL_S`). Prints one line per batch and per tick;
//! stops on Ctrl-C or SIGTERM.

use std::time::Duration;

use aws_lambda_events::event::sqs::SqsBatchResponse;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

type Http = Client<HttpConnector, Full<Bytes>>;

/// Feeds the worker and ticks the scheduler until a stop signal. `functions`: the Invoke API's base
/// URL (`cargo lambda watch`'s address).
pub async fn feed(
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    functions: String,
    tick_every: Duration,
) -> Result<(), String> {
    let http: Http = Client::builder(TokioExecutor::new()).build_http();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot watch for SIGTERM: {e}"))?;
    println!(
        "feeding {queue_url} to the worker at {functions}; scheduler tick every {} s",
        tick_every.as_secs()
    );
    tokio::select! {
        r = pump(&sqs, &queue_url, &http, &functions) => r,
        r = tick(&http, &functions, tick_every) => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = terminate.recv() => Ok(()),
    }
}

/// The SQS event source mapping: batches of up to 10, partial batch responses honoured.
async fn pump(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    http: &Http,
    functions: &str,
) -> Result<(), String> {
    loop {
        let received = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await;
        let messages = match received {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(e) => {
                println!("worker: cannot receive from {queue_url}: {}", kickoff::error::causes(&e));
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        let event = kickoff::queue::sqs::lambda_event(&messages, queue_url);
        let body = serde_json::to_vec(&event).map_err(|e| e.to_string())?;
        let failed = match invoke(http, functions, "worker", body).await {
            Ok(answer) => match serde_json::from_value::<SqsBatchResponse>(answer) {
                Ok(r) => r.batch_item_failures.into_iter().map(|f| f.item_identifier).collect::<Vec<_>>(),
                Err(e) => {
                    println!("worker: its answer is not a batch response ({e}); the batch comes back later");
                    continue;
                }
            },
            Err(e) => {
                println!("worker: {e}; the batch comes back after the visibility timeout");
                continue;
            }
        };
        for m in &messages {
            if m.message_id.as_ref().is_some_and(|id| failed.contains(id)) {
                continue;
            }
            let handle = m.receipt_handle.clone().unwrap_or_default();
            if let Err(e) = sqs.delete_message().queue_url(queue_url).receipt_handle(handle).send().await {
                println!("worker: cannot delete a message: {}", kickoff::error::causes(&e));
            }
        }
        println!("worker: {} message(s), {} failed", messages.len(), failed.len());
    }
}

/// The EventBridge rule: a scheduled event for the scheduler every `every`.
async fn tick(http: &Http, functions: &str, every: Duration) -> Result<(), String> {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let time = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let event = json!({
            "version": "0",
            "id": uuid::Uuid::new_v4().to_string(),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "000000000000",
            "time": time,
            "region": "local",
            "resources": ["arn:aws:events:local:000000000000:rule/kickoff-SchedulerTick"],
            "detail": {}
        });
        match invoke(http, functions, "scheduler", event.to_string().into_bytes()).await {
            Ok(report) => println!("tick {time}: {report}"),
            Err(e) => println!("tick {time}: {e}"),
        }
    }
}

/// Invokes a function synchronously through the Invoke API; its JSON answer, or why there is none.
async fn invoke(http: &Http, functions: &str, name: &str, body: Vec<u8>) -> Result<Value, String> {
    let uri = format!("{functions}/2015-03-31/functions/{name}/invocations");
    let req = http::Request::post(&uri)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = http.request(req).await.map_err(|e| format!("cannot invoke {name}: {e}"))?;
    let status = resp.status();
    let raw = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    if !status.is_success() {
        return Err(format!("{name} answered {status}: {}", String::from_utf8_lossy(&raw)));
    }
    serde_json::from_slice(&raw).map_err(|e| format!("{name} answered no JSON ({e})"))
}
