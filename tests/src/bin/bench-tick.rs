//! Benchmark: how long one scheduler tick takes to fire 10, 1,000 and 10,000 time schedules due in the
//! same minute, on the embedded (in-memory) store — next to a baseline measured in the same run: the same
//! number of plain `start_run` triggers, with the same parallelism. Target (issue #8): every schedule
//! due in a minute fires within that minute.
//!
//! `cargo run --release -p kickoff-tests --bin bench-tick` (counts as arguments: `-- 10 1000`).

use std::sync::Arc;
use std::time::Instant;

use kickoff::domain::run_config::RunConfig;
use kickoff::scheduler::fire::PARALLEL;
use kickoff::trigger::{start_run, RunOptions};
use kickoff::App;
use tokio::task::JoinSet;

#[tokio::main]
async fn main() {
    kickoff_tests::allow_loopback();
    let counts: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let counts = if counts.is_empty() { vec![10, 1_000, 10_000] } else { counts };
    println!(
        "scheduler tick, embedded store ({} build)",
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );
    println!(
        "{:>8} | {:>10} | {:>13} | {:>21} | {:>6} | {:>16}",
        "due", "tick (ms)", "per fire (µs)", "baseline: triggers (ms)", "ratio", "target: < 60 s"
    );
    let mut all_ok = true;
    for n in counts {
        let (tick_ms, fired) = tick_time(n).await;
        let base_ms = baseline_time(n).await;
        let ok = fired == n && tick_ms < 60_000.0;
        all_ok &= ok;
        println!(
            "{:>8} | {:>10.1} | {:>13.1} | {:>23.1} | {:>6.2} | {:>16}",
            n,
            tick_ms,
            tick_ms * 1000.0 / n as f64,
            base_ms,
            tick_ms / base_ms.max(0.001),
            if ok { format!("ok ({fired} fired)") } else { format!("MISSED ({fired} fired)") }
        );
    }
    if !all_ok {
        std::process::exit(1);
    }
}

fn app() -> (App, Arc<kickoff::clock::ManualClock>) {
    let clock = Arc::new(kickoff::clock::ManualClock::default());
    let (mut app, _) = App::memory();
    app.clock = clock.clone();
    (app, clock)
}

/// `n` every-minute schedules, one minute on: the tick that fires them all.
async fn tick_time(n: usize) -> (f64, usize) {
    let (app, clock) = app();
    kickoff::demo::seed(&app).await.expect("seed");
    // Every schedule made at the same instant, one second into a minute: the clock goes on at the
    // system's pace, and on a slow machine making 10,000 schedules takes over a minute, which would
    // give the early ones an earlier first fire time (and the tick would rightly catch it up as well).
    use chrono::DurationRound;
    let made_at = app.clock.now().duration_trunc(chrono::Duration::minutes(1)).expect("a minute")
        + chrono::Duration::seconds(1);
    for _ in 0..n {
        clock.set(made_at);
        kickoff_tests::new_time_schedule(&app, "* * * * *").await;
    }
    // One second into the minute of every schedule's first fire time, so that a tick that takes long
    // cannot cross into the next minute and fire each schedule again.
    let minute = made_at - chrono::Duration::seconds(1) + chrono::Duration::minutes(1);
    clock.set(minute + chrono::Duration::seconds(1));
    let started = Instant::now();
    let report = kickoff::scheduler::tick(&app, app.clock.now()).await.expect("tick");
    (started.elapsed().as_secs_f64() * 1000.0, report.fire.runs)
}

/// `n` runs of the demo build made by `start_run`, `PARALLEL` at a time, as the tick fires them.
async fn baseline_time(n: usize) -> f64 {
    let (app, _) = app();
    let (_, build) = kickoff::demo::seed(&app).await.expect("seed");
    let limit = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..n {
        let (app, build, limit) = (app.clone(), build.clone(), limit.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await.expect("permit");
            // Today's ids allow 64 runs per 10 ms (issue #9): a burst can exhaust a trigger's 8 tries.
            for _ in 0..100 {
                let config = RunConfig::parse(Default::default(), &build).expect("config");
                if start_run(&app, &build, config, RunOptions::default()).await.is_ok() {
                    break;
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    started.elapsed().as_secs_f64() * 1000.0
}
