//! The worker in tests: an in-memory app on a table that can stop after any write, a clock the test
//! moves, and a driver that delivers queue messages to the worker the way SQS would — each possibly
//! twice, and again after a stop once the attempt's lease has passed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kickoff::clock::ManualClock;
use kickoff::domain::run::RunDetail;
use kickoff::queue::fault::FaultyQueue;
use kickoff::queue::memory::MemoryQueue;
use kickoff::queue::RunQueue;
use kickoff::store::fault::FaultyTable;
use kickoff::store::memory::MemoryTable;
use kickoff::store::Store;
use kickoff::worker::executor::Executors;
use kickoff::worker::Worker;
use kickoff::App;
use tokio::task::JoinSet;
use uuid::Uuid;

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

pub struct Harness {
    /// The API (both dialects and the callback route) on this app, for callbacks and HTTP calls.
    pub api: String,
    pub app: App,
    pub queue: Arc<MemoryQueue>,
    /// The app's queue: the memory queue behind a seam whose sends can be made to fail.
    pub sends: Arc<FaultyQueue>,
    pub table: Arc<FaultyTable>,
    pub clock: Arc<ManualClock>,
    pub worker: Arc<Worker>,
}

/// How to deliver.
#[derive(Debug, Clone, Copy, Default)]
pub struct Delivery {
    /// Hand every message to two concurrent workers.
    pub twice: bool,
}

impl Harness {
    /// A fresh app with its API served on a free port; the worker's callback URLs point there.
    pub async fn new() -> Harness {
        Harness::on(Arc::new(MemoryTable::new())).await
    }

    /// [`Harness::new`] on another table (DynamoDB Local's, say).
    pub async fn on(inner: Arc<dyn kickoff::store::table::Table>) -> Harness {
        crate::allow_loopback();
        let table = Arc::new(FaultyTable::new(inner));
        let queue = Arc::new(MemoryQueue::new());
        let clock = Arc::new(ManualClock::default());
        let sends = Arc::new(FaultyQueue::new(queue.clone()));
        let app = App { store: Store::new(table.clone()), queue: sends.clone(), clock: clock.clone() };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let api = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(kickoff::http::local::serve(Arc::new(app.clone()), listener));
        let executors = Executors::new(SECRET);
        let worker = Arc::new(Worker::new(app.clone(), Arc::new(executors), &api));
        Harness { api, app, queue, sends, table, clock, worker }
    }

    /// Creates a pipeline of `blocks` (JSON, as `POST /api/v1/pipelines` takes them) and triggers a run.
    pub async fn run(&self, blocks: serde_json::Value, allow_blocks_to_fail: bool) -> Uuid {
        let opts = kickoff::trigger::RunOptions { allow_blocks_to_fail, ..Default::default() };
        self.run_with(blocks, opts).await
    }

    /// [`Harness::run`] with the trigger's options.
    pub async fn run_with(&self, blocks: serde_json::Value, opts: kickoff::trigger::RunOptions) -> Uuid {
        use kickoff::domain::pipeline::NewPipeline;
        use kickoff::domain::run_config::RunConfig;
        use kickoff::trigger::start_run;
        let name = format!("p-{}", Uuid::new_v4().simple());
        let body = serde_json::json!({ "name": name, "blocks": blocks });
        let serde_json::Value::Object(body) = body else { unreachable!("an object") };
        let new: NewPipeline = kickoff::http::from_object(body).expect("pipeline");
        let pipeline = new.into_pipeline(&[], self.app.clock.now()).expect("valid pipeline");
        let build = kickoff::domain::Build::initial(&pipeline);
        self.app.store.create_pipeline(&pipeline, &build).await.expect("create");
        let config = RunConfig::parse(Default::default(), &build).expect("config");
        start_run(&self.app, &build, config, opts).await.expect("trigger").run.uuid
    }

    /// Runs the scheduler tick once (it sweeps every wake shard); returns how many runs it queued.
    pub async fn tick_every_shard(&self) -> usize {
        let now = self.app.clock.now();
        kickoff::scheduler::tick(&self.app, now).await.expect("tick").sweep.queued
    }

    /// Delivers messages until the run has finished and nothing is left to deliver (or `limit` passes).
    /// A message whose handling fails is delivered again after the clock passes every lease.
    pub async fn drain(&self, run: Uuid, how: Delivery, limit: Duration) -> RunDetail {
        let started = Instant::now();
        loop {
            let batch = self.queue.receive(10, Duration::from_millis(100)).await.expect("receive");
            let mut tasks = JoinSet::new();
            for received in batch {
                let copies = if how.twice { 2 } else { 1 };
                for _ in 0..copies {
                    let worker = self.worker.clone();
                    let message = received.message.clone();
                    tasks.spawn(async move { (message.clone(), worker.handle(&message).await) });
                }
                self.queue.delete(&received.receipt).await.expect("delete");
            }
            let mut failed = Vec::new();
            while let Some(done) = tasks.join_next().await {
                let (message, result) = done.expect("worker task");
                if result.is_err() {
                    failed.push(message);
                }
            }
            if !failed.is_empty() {
                // As SQS: the message becomes visible again after its visibility timeout, by which time
                // the stopped worker's lease has run out.
                self.clock.advance(chrono::Duration::minutes(20));
                for m in failed {
                    self.queue.send(&m).await.expect("redeliver");
                }
                continue;
            }
            let detail = self.app.store.get_run(run).await.expect("get run").expect("run").value;
            // Delayed messages (a time-out check of a block that was called back) may stay behind.
            if detail.run.status.is_finished() && self.queue.visible_len().await == 0 {
                return detail;
            }
            assert!(started.elapsed() < limit, "the run did not finish in {limit:?}: {detail:#?}");
        }
    }

    /// Delivers the messages visible now (and those they send at once) until none is, once each; for
    /// runs that are to stay unfinished.
    pub async fn deliver_visible(&self) {
        loop {
            let batch = self.queue.receive(10, Duration::from_millis(50)).await.expect("receive");
            if batch.is_empty() {
                return;
            }
            for received in batch {
                let _ = self.worker.handle(&received.message).await;
                self.queue.delete(&received.receipt).await.expect("delete");
            }
        }
    }
}
