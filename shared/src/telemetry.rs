//! Logging set-up: JSON lines in Lambda (CloudWatch), plain text locally. `RUST_LOG` filters.
//! Secrets (API keys, tokens) are never logged: handlers log ids only.

use tracing_subscriber::EnvFilter;

fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

pub fn init_lambda() {
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter())
        .with_current_span(false)
        .without_time()
        .with_target(false)
        .try_init();
}

pub fn init_local() {
    let _ = tracing_subscriber::fmt().with_env_filter(filter()).with_target(false).try_init();
}
