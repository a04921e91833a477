//! `kickoff`: admin commands against the configured store (`KICKOFF_TABLE`, AWS credentials, and
//! `AWS_ENDPOINT_URL_DYNAMODB` for DynamoDB Local).
//!
//! ```text
//! kickoff table create
//! kickoff api-key create --role read|write [--name NAME] [--expires-in DURATION]
//! kickoff api-key list
//! kickoff api-key revoke ID
//! kickoff queue create NAME
//! kickoff demo seed
//! kickoff feed --functions URL
//! kickoff openapi
//! ```
//! `table create` makes the table as `infra/template.yaml` declares it (on-demand, both indexes, TTL) and
//! says so if it exists already. `api-key create` prints the new key once; only its hash is stored;
//! `--expires-in` (`90d`, `12h`, `30m`, `45s`; at most 10 years) makes it refused from then on. `api-key
//! list` prints one line per key — its id (the first 12 hex digits of its hash), role, name, created,
//! expiry, revocation — never a secret. `api-key revoke ID` refuses the key everywhere within 5 seconds
//! (the functions' key cache, `http::auth`) and keeps its record for the list.
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

const USAGE: &str = "usage: kickoff table create \
                     | kickoff api-key create --role read|write [--name NAME] [--expires-in 90d|12h|30m|45s] \
                     | kickoff api-key list | kickoff api-key revoke ID | kickoff queue create NAME | kickoff demo seed | kickoff feed --functions URL | kickoff openapi";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match (args.first().map(String::as_str), args.get(1).map(String::as_str)) {
        (Some("table"), Some("create")) if args.len() == 2 => create_table().await,
        (Some("api-key"), Some("create")) => create_api_key(&args[2..]).await,
        (Some("api-key"), Some("list")) if args.len() == 2 => list_api_keys().await,
        (Some("api-key"), Some("revoke")) if args.len() == 3 => revoke_api_key(&args[2]).await,
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
    let mut expires_in = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--role" => role = Some(it.next().ok_or(USAGE)?.parse::<Role>().map_err(|e| e.to_string())?),
            "--name" => name = it.next().ok_or(USAGE)?.clone(),
            "--expires-in" => expires_in = Some(parse_duration(it.next().ok_or(USAGE)?)?),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let role = role.ok_or(USAGE)?;
    let config = table_config()?;
    let app = App::from_config_checked(&config, false).await.map_err(|e| e.to_string())?;
    let now = app.clock.now();
    let (secret, mut record) = ApiKey::generate(role, &name, now);
    record.expires_at = expires_in.map(|d| now + d);
    app.store.put_api_key(&record).await.map_err(|e| e.to_string())?;
    println!("{secret}");
    Ok(())
}

/// `90d`, `12h`, `30m`, `45s`: a whole number and a unit, from 1 second to 10 years.
fn parse_duration(text: &str) -> Result<chrono::Duration, String> {
    let bad =
        || format!("--expires-in: {text:?} is not a duration like 90d, 12h, 30m or 45s (at most 3650d)");
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let n: i64 = number.parse().ok().filter(|n| *n > 0).ok_or_else(bad)?;
    let seconds = match unit {
        "d" => n.checked_mul(86_400),
        "h" => n.checked_mul(3_600),
        "m" => n.checked_mul(60),
        "s" => Some(n),
        _ => None,
    };
    seconds.filter(|s| *s <= 3_650 * 86_400).map(chrono::Duration::seconds).ok_or_else(bad)
}

async fn list_api_keys() -> Result<(), String> {
    let app = App::from_config_checked(&table_config()?, false).await.map_err(|e| e.to_string())?;
    let now = app.clock.now();
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| t.map_or("-".to_string(), |t| t.to_rfc3339());
    println!("id\trole\tname\tcreated\texpires\trevoked\tstate");
    for k in app.store.list_api_keys().await.map_err(|e| e.to_string())? {
        let state = if k.usable(now) {
            "active"
        } else if k.revoked_at.is_some() {
            "revoked"
        } else {
            "expired"
        };
        let role = match k.role {
            Role::Read => "read",
            Role::Write => "write",
        };
        println!(
            "{}\t{role}\t{}\t{}\t{}\t{}\t{state}",
            k.id(),
            k.name,
            k.created.to_rfc3339(),
            time(k.expires_at),
            time(k.revoked_at)
        );
    }
    Ok(())
}

async fn revoke_api_key(id: &str) -> Result<(), String> {
    let app = App::from_config_checked(&table_config()?, false).await.map_err(|e| e.to_string())?;
    let keys = app.store.list_api_keys().await.map_err(|e| e.to_string())?;
    let mut found: Vec<ApiKey> =
        keys.into_iter().filter(|k| id.len() >= 8 && k.hash.starts_with(id)).collect();
    let mut key = match found.len() {
        1 => found.remove(0),
        0 => return Err(format!("no API key has id {id:?} (kickoff api-key list shows the ids)")),
        _ => return Err(format!("{id:?} names more than one key: give more of the id")),
    };
    if key.revoked_at.is_none() {
        key.revoked_at = Some(app.clock.now());
        app.store.put_api_key(&key).await.map_err(|e| e.to_string())?;
    }
    println!("API key {} ({}) revoked: refused everywhere within 5 seconds", key.id(), key.name);
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
