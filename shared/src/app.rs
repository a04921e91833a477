//! The dependencies a handler gets (store, queue, clock), built once per process from the environment.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `KICKOFF_TABLE` | DynamoDB table name | in-memory store (embedded server only) |
//! | `KICKOFF_QUEUE_URL` | SQS queue URL | in-process queue (embedded server only) |
//! | `AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_SQS` | other endpoints (DynamoDB Local, moto) | AWS |
//!
//! AWS region and credentials come from the usual AWS variables and profiles. The table is made with
//! `kickoff table create` (locally) or by the SAM template (on AWS).

use std::sync::Arc;

use crate::clock::{Clock, SystemClock};
use crate::queue::memory::MemoryQueue;
use crate::queue::sqs::SqsQueue;
use crate::queue::RunQueue;
use crate::store::dynamo::DynamoTable;
use crate::store::Store;
use crate::{Error, Result};

#[derive(Clone)]
pub struct App {
    pub store: Store,
    pub queue: Arc<dyn RunQueue>,
    pub clock: Arc<dyn Clock>,
}

/// Where the store and the queue live.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    pub table: Option<String>,
    pub queue_url: Option<String>,
}

impl Config {
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Config { table: var("KICKOFF_TABLE"), queue_url: var("KICKOFF_QUEUE_URL") }
    }
}

impl App {
    /// An app on an in-memory store and queue; the queue is returned too, for whoever drains it.
    pub fn memory() -> (App, Arc<MemoryQueue>) {
        let queue = Arc::new(MemoryQueue::new());
        let app = App { store: Store::memory(), queue: queue.clone(), clock: Arc::new(SystemClock) };
        (app, queue)
    }

    /// Builds the app a config names; what it leaves out is in memory.
    pub async fn from_config(config: &Config) -> Result<App> {
        App::build(config, None).await
    }

    /// [`App::from_config`] for the local commands: the configured table must exist (or is created,
    /// with `create_table`); a missing table or an unreachable endpoint is one line that says what to do.
    pub async fn from_config_checked(config: &Config, create_table: bool) -> Result<App> {
        App::build(config, Some(create_table)).await
    }

    /// The app of a config, on one AWS configuration; `check_table`: check the table first (`Some`),
    /// creating it if missing (`Some(true)`).
    async fn build(config: &Config, check_table: Option<bool>) -> Result<App> {
        let (mut app, _) = App::memory();
        if config.table.is_none() && config.queue_url.is_none() {
            return Ok(app);
        }
        let aws = crate::aws::config().await;
        if let Some(table) = &config.table {
            let table = DynamoTable::new(aws_sdk_dynamodb::Client::new(&aws), table);
            if let Some(create) = check_table {
                ensure_table(&table, create).await?;
            }
            app.store = Store::new(Arc::new(table));
        }
        if let Some(url) = &config.queue_url {
            app.queue = Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(&aws), url));
        }
        Ok(app)
    }

    /// The configured DynamoDB table (`KICKOFF_TABLE`) itself, for the command that creates it.
    pub async fn dynamo_table(config: &Config) -> Option<DynamoTable> {
        let table = config.table.as_ref()?;
        let aws = crate::aws::config().await;
        Some(DynamoTable::new(aws_sdk_dynamodb::Client::new(&aws), table))
    }

    /// The app of a Lambda function: both the table and the queue must be configured.
    pub async fn for_lambda() -> Result<App> {
        let config = Config::from_env();
        if config.table.is_none() || config.queue_url.is_none() {
            return Err(Error::Internal("KICKOFF_TABLE and KICKOFF_QUEUE_URL must be set".into()));
        }
        App::from_config(&config).await
    }
}

/// Checks that `table` exists, or creates it (`create`).
async fn ensure_table(table: &DynamoTable, create: bool) -> Result<()> {
    if table.exists().await? {
        return Ok(());
    }
    if create {
        return table.create().await;
    }
    Err(Error::Internal(format!(
        "DynamoDB table {:?} does not exist; create it with `kickoff table create` (same environment), \
         or start with --create-table",
        table.table_name()
    )))
}
