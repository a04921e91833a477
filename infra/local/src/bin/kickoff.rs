//! `kickoff`: admin commands against the configured store (`KICKOFF_TABLE`, AWS credentials).
//!
//! ```text
//! kickoff api-key create --role read|write [--name NAME]
//! ```
//! Prints the new key once; only its hash is stored.

use kickoff::app::Config;
use kickoff::domain::{ApiKey, Role};
use kickoff::App;

const USAGE: &str = "usage: kickoff api-key create --role read|write [--name NAME]";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some("api-key"), Some("create")) =
        (args.first().map(String::as_str), args.get(1).map(String::as_str))
    else {
        return Err(USAGE.into());
    };
    let mut role = None;
    let mut name = "cli".to_string();
    let mut it = args[2..].iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--role" => role = Some(it.next().ok_or(USAGE)?.parse::<Role>()?),
            "--name" => name = it.next().ok_or(USAGE)?.clone(),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}").into()),
        }
    }
    let role = role.ok_or(USAGE)?;
    let config = Config::from_env();
    if config.table.is_none() {
        return Err("KICKOFF_TABLE is not set: the key must go to a shared store (the embedded server \
                    makes its own keys)"
            .into());
    }
    let app = App::from_config(&config).await?;
    let (secret, record) = ApiKey::generate(role, &name, app.clock.now());
    app.store.put_api_key(&record).await?;
    println!("{secret}");
    Ok(())
}
