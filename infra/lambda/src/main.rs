//! `kickoff-lambda`: every Kickoff Lambda function in one binary, which is what
//! `infra/scripts/package.sh` ships as each function's `bootstrap`. `KICKOFF_FUNCTION` (set per function
//! by `infra/template.yaml`) names the function: `worker`, `scheduler`, or a route's function name
//! (`shared/src/http/routes.rs`). Each function keeps its own route, role and settings; only the code
//! is shared, so that a release build links once instead of once per function (`docs/packaging.md`).
//!
//! The crates under `functions/` run the same code one function per binary, as `cargo lambda watch`
//! serves them locally.

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let function = std::env::var("KICKOFF_FUNCTION").unwrap_or_default();
    let result = match function.as_str() {
        "worker" => kickoff::worker::lambda::serve().await,
        "scheduler" => kickoff::scheduler::lambda::serve().await,
        "" => Err("KICKOFF_FUNCTION is not set: it names the function this binary runs".into()),
        route => kickoff::http::lambda::serve(route).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
