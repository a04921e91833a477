//! The domain: what a pipeline, a build, a run and an API key are, and the rules they obey.
//! Everything here is plain data plus validation; no I/O.

pub mod api_key;
pub mod backfill;
pub mod bounds;
pub mod build;
pub mod notify;
pub mod pipeline;
pub mod run;
pub mod run_config;
pub mod schedule;
pub mod timetable;

pub use api_key::{ApiKey, Role};
pub use build::Build;
pub use pipeline::{Block, Executor, NewPipeline, Pipeline};
pub use run::{BlockRun, BlockRunStatus, Run, RunStatus};
pub use schedule::{Schedule, ScheduleStatus, ScheduleType};
