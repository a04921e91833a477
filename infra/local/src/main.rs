//! `kickoff-local`: every route of both dialects on one port, with an in-memory store and queue by
//! default (or DynamoDB/SQS when `KICKOFF_TABLE` / `KICKOFF_QUEUE_URL` are set), a ready API key and
//! the demo pipeline.
//!
//! ```text
//! cargo run -p kickoff-local -- [--port 6789] [--host 127.0.0.1] [--create-table]
//! ```
//! With `KICKOFF_TABLE` set, the table must exist (`kickoff table create`), or `--create-table` makes it.
//! `KICKOFF_DEV_API_KEY=<key>` makes that key a `write` key; otherwise a fresh one is printed.
//! `KICKOFF_DEV_SCHEDULE_TOKEN=<token>` sets the demo schedule's token; otherwise it is printed.
//! The worker runs in-process; `KICKOFF_WEBHOOK_SECRET` signs its HTTP invocations (printed when made up).
//! The scheduler tick runs in-process too, every minute (`KICKOFF_TICK_INTERVAL_S` to change it).

use std::sync::Arc;

use kickoff::app::Config;
use kickoff::worker::executor::Executors;
use kickoff::worker::{run_in_process, Worker};
use kickoff::{demo, telemetry, App};
use tokio::net::TcpListener;

/// Prints a line; a closed stdout (`| head`) is not a reason to stop serving.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

struct Args {
    host: String,
    port: u16,
    create_table: bool,
}

const USAGE: &str = "usage: kickoff-local [--port 6789] [--host 127.0.0.1] [--create-table]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args { host: "127.0.0.1".into(), port: 6789, create_table: false };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--port" => {
                let v = it.next().ok_or("--port needs a value")?;
                args.port = v.parse().map_err(|_| format!("--port: {v:?} is not a port number"))?;
            }
            "--host" => args.host = it.next().ok_or("--host needs a value")?,
            "--create-table" => args.create_table = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}; try --help")),
        }
    }
    Ok(args)
}

/// Runs the server; an error that stops it is one line on stderr and exit status 1.
#[tokio::main]
async fn main() -> std::process::ExitCode {
    telemetry::init_local();
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let config = Config::from_env();
    let app = App::from_config_checked(&config, args.create_table).await?;
    let seeded = demo::seed_dev(&app).await?;

    let listener = TcpListener::bind((args.host.as_str(), args.port)).await?;
    let addr = listener.local_addr()?;
    say!("Kickoff is listening on http://{addr}");
    say!(
        "  store: {}   queue: {}",
        config.table.as_deref().map_or("in-memory".to_string(), |t| format!("DynamoDB table {t}")),
        config.queue_url.as_deref().map_or("in-process".to_string(), |q| format!("SQS {q}")),
    );
    for line in seeded.describe() {
        say!("{line}");
    }
    let secret = match std::env::var("KICKOFF_WEBHOOK_SECRET").ok().filter(|s| !s.is_empty()) {
        Some(s) => s,
        None => {
            let s =
                format!("whsec_{}", kickoff::worker::executor::base64(&kickoff::clock::random_bytes::<24>()));
            say!("  webhook signing secret: {s}");
            s
        }
    };
    // Blocks on this machine are the point of the embedded server: loopback and http:// are allowed
    // unless KICKOFF_EGRESS says otherwise (`docs/security.md`).
    if std::env::var_os("KICKOFF_EGRESS").is_none() {
        kickoff::egress::set(kickoff::egress::Policy::Loopback);
    }
    say!("  egress policy: {:?} (KICKOFF_EGRESS)", kickoff::egress::Policy::current());
    let worker = Worker::new(app.clone(), Arc::new(Executors::new(&secret)), &format!("http://{addr}"));
    tokio::spawn(run_in_process(Arc::new(worker), app.queue.clone()));
    say!("  worker: in-process");
    let interval_s = kickoff::scheduler::local_interval_s()?;
    tokio::spawn(kickoff::scheduler::run_in_process(app.clone(), interval_s));
    say!("  scheduler tick: in-process, every {interval_s} s");
    kickoff::http::local::serve(Arc::new(app), listener).await;
    Ok(())
}
