//! `kickoff`: admin commands against the configured store (`KICKOFF_TABLE`, AWS credentials, and
//! `AWS_ENDPOINT_URL_DYNAMODB` for DynamoDB Local).
//!
//! ```text
//! kickoff table create
//! kickoff api-key create --role read|write [--name NAME]
//! kickoff queue create NAME
//! kickoff demo seed
//! kickoff feed --functions URL
//! kickoff openapi
//! ```
//! `table create` makes the table as `infra/template.yaml` declares it (on-demand, both indexes, TTL) and
//! says so if it exists already. `api-key create` prints the new key once; only its hash is stored.
//! The last three serve the local stack (`infra/scripts/local-stack.sh`): `queue create` makes an SQS
//! queue (on the emulator: `AWS_ENDPOINT_URL_SQS`) with a 60 s visibility timeout and prints its URL;
//! `demo seed` writes the embedded server's development data (a `write` key — `KICKOFF_DEV_API_KEY` —
//! the demo pipeline and schedule 71, token `KICKOFF_DEV_SCHEDULE_TOKEN`) into the table; `feed` does what
//! AWS does around the functions (see `feed.rs`). `openapi` prints the OpenAPI document
//! (`docs/openapi.json` is its output). An error is one line on stderr and exit status 1.

mod feed;

use std::process::ExitCode;

use kickoff::app::Config;
use kickoff::domain::{ApiKey, Role};
use kickoff::queue::sqs::SqsQueue;
use kickoff::App;

const USAGE: &str = "usage: kickoff table create | kickoff api-key create --role read|write [--name NAME] \
                     | kickoff queue create NAME | kickoff demo seed | kickoff feed --functions URL | kickoff openapi";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match (args.first().map(String::as_str), args.get(1).map(String::as_str)) {
        (Some("table"), Some("create")) if args.len() == 2 => create_table().await,
        (Some("api-key"), Some("create")) => create_api_key(&args[2..]).await,
        (Some("queue"), Some("create")) if args.len() == 3 => create_queue(&args[2]).await,
        (Some("demo"), Some("seed")) if args.len() == 2 => seed_demo().await,
        (Some("feed"), Some("--functions")) if args.len() == 3 => run_feed(&args[2]).await,
        (Some("openapi"), None) => {
            let doc = kickoff::http::openapi::document();
            serde_json::to_string_pretty(&doc).map(|text| println!("{text}")).map_err(|e| e.to_string())
        }
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn table_config() -> Result<Config, String> {
    let config = Config::from_env();
    if config.table.is_none() {
        return Err("KICKOFF_TABLE is not set: name the DynamoDB table (and set AWS_ENDPOINT_URL_DYNAMODB \
                    for DynamoDB Local)"
            .into());
    }
    Ok(config)
}

async fn create_table() -> Result<(), String> {
    let config = table_config()?;
    let Some(table) = App::dynamo_table(&config).await else { return Err(USAGE.into()) };
    if table.exists().await.map_err(|e| e.to_string())? {
        println!("table {} exists already", table.table_name());
        return Ok(());
    }
    table.create().await.map_err(|e| e.to_string())?;
    println!("table {} created", table.table_name());
    Ok(())
}

async fn create_api_key(args: &[String]) -> Result<(), String> {
    let mut role = None;
    let mut name = "cli".to_string();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--role" => role = Some(it.next().ok_or(USAGE)?.parse::<Role>().map_err(|e| e.to_string())?),
            "--name" => name = it.next().ok_or(USAGE)?.clone(),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let role = role.ok_or(USAGE)?;
    let config = table_config()?;
    let app = App::from_config_checked(&config, false).await.map_err(|e| e.to_string())?;
    let (secret, record) = ApiKey::generate(role, &name, app.clock.now());
    app.store.put_api_key(&record).await.map_err(|e| e.to_string())?;
    println!("{secret}");
    Ok(())
}

async fn create_queue(name: &str) -> Result<(), String> {
    let sqs = aws_sdk_sqs::Client::new(&kickoff::aws::config().await);
    let url = SqsQueue::create(&sqs, name, Some(60)).await.map_err(|e| e.to_string())?;
    println!("{url}");
    Ok(())
}

async fn seed_demo() -> Result<(), String> {
    let config = table_config()?;
    let app = App::from_config_checked(&config, false).await.map_err(|e| e.to_string())?;
    let seeded = kickoff::demo::seed_dev(&app).await.map_err(|e| e.to_string())?;
    for line in seeded.describe() {
        println!("{line}");
    }
    Ok(())
}

async fn run_feed(functions: &str) -> Result<(), String> {
    let queue_url = Config::from_env().queue_url.ok_or(
        "KICKOFF_QUEUE_URL is not set: the run queue to feed to the worker (`kickoff queue create`)",
    )?;
    let tick_s = kickoff::scheduler::local_interval_s()?.unsigned_abs();
    let sqs = aws_sdk_sqs::Client::new(&kickoff::aws::config().await);
    feed::feed(
        sqs,
        queue_url,
        functions.trim_end_matches('/').to_string(),
        std::time::Duration::from_secs(tick_s),
    )
    .await
}
