//! Kickoff's shared library: everything the Lambda functions, the embedded server and the tests use.
//!
//! - [`domain`] — pipelines, builds, runs, API keys; validated on the way in.
//! - [`store`] — the `Store` port (access patterns) over a `Table` adapter: DynamoDB or in-memory.
//! - [`queue`] — the `RunQueue` port: SQS or in-memory.
//! - [`worker`] — advances runs block by block from queue messages.
//! - [`scheduler`] — the one-minute tick: fires due time schedules; the sweep that re-queues runs no
//!   message looked at in time, marks missed SLAs and ends timed-out runs.
//! - [`backfills`] — starting and cancelling backfills.
//! - [`admission`] — a schedule's run limits (`pipeline_run_limit`, `skip_if_previous_running`).
//! - [`flow`] — flow control (a key per trigger, concurrency per key) and payload rules, in CEL.
//! - [`http`] — the route table, both dialects' handlers, and the Lambda and local-server adapters.
//! - [`app`] — the dependencies a handler gets, built once from the environment.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod admission;
pub mod app;
pub mod aws;
pub mod backfills;
pub mod cancel;
pub mod clock;
pub mod demo;
pub mod domain;
pub mod egress;
pub mod error;
pub mod flow;
pub mod http;
pub mod queue;
pub mod remembered;
pub mod scheduler;
pub mod store;
pub mod telemetry;
pub mod trigger;
pub mod webhook;
pub mod worker;

pub use app::App;
pub use error::{Error, Result};
