//! The demo the embedded server seeds, so that the seeds' worked examples run at once: pipeline
//! `training` version `"45"`, blocks `data_loader` → `model_trainer` (parameter `model_type`, default
//! `"svm"`) → `model_evaluator`, noop executors, with its first build; and an active `api` schedule of
//! it with id 71 (the id in Mage's trigger example) whose token is printed, or chosen with
//! `KICKOFF_DEV_SCHEDULE_TOKEN`.

use serde_json::json;

use crate::domain::pipeline::NewPipeline;
use crate::domain::schedule::ScheduleFields;
use crate::domain::{ApiKey, Build, Pipeline, Role, Schedule, ScheduleStatus, ScheduleType};
use crate::http::from_object;
use crate::{App, Error, Result};

pub const PIPELINE_NAME: &str = "training";
pub const PIPELINE_VERSION: &str = "45";
pub const SCHEDULE_ID: i64 = 71;

/// Creates the demo pipeline unless it exists; returns it with its newest build.
pub async fn seed(app: &App) -> Result<(Pipeline, Build)> {
    let existing = app.store.pipeline_versions(PIPELINE_NAME).await?;
    let pipeline = match existing.into_iter().find(|p| p.version == PIPELINE_VERSION) {
        Some(p) => p,
        None => {
            let body = json!({
                "name": PIPELINE_NAME,
                "version": PIPELINE_VERSION,
                "description": "Kickoff's demo pipeline",
                "blocks": [
                    { "name": "data_loader", "executor": { "type": "noop" } },
                    { "name": "model_trainer", "upstream": ["data_loader"],
                      "parameters": { "model_type": "svm" }, "executor": { "type": "noop" } },
                    { "name": "model_evaluator", "upstream": ["model_trainer"], "executor": { "type": "noop" } },
                ],
            });
            let serde_json::Value::Object(body) = body else {
                return Err(Error::Internal("demo pipeline is not an object".into()));
            };
            let new: NewPipeline = from_object(body)?;
            let p = new.into_pipeline(&[], app.clock.now())?;
            app.store.create_pipeline(&p, &Build::initial(&p)).await?;
            p
        }
    };
    let build = app
        .store
        .builds_of_pipeline(pipeline.id)
        .await?
        .pop()
        .ok_or_else(|| Error::Internal("the demo pipeline has no build".into()))?;
    Ok((pipeline, build))
}

/// Creates the demo schedule (id 71) unless it exists; `token` replaces its token when given.
pub async fn seed_schedule(app: &App, token: Option<String>) -> Result<Schedule> {
    let now = app.clock.now();
    if let Some(existing) = app.store.get_schedule(SCHEDULE_ID).await? {
        let mut s = existing.value;
        if let Some(t) = token.filter(|t| *t != s.token) {
            s.token = t;
            s.updated = now;
            app.store.update_schedule(&s, existing.version).await?;
        }
        return Ok(s);
    }
    let fields = ScheduleFields {
        name: Some("demo api trigger".into()),
        description: Some("Kickoff's demo: trigger the training pipeline over HTTPS".into()),
        schedule_type: Some(ScheduleType::Api),
        status: Some(ScheduleStatus::Active),
        ..ScheduleFields::default()
    };
    let s = Schedule::create(
        SCHEDULE_ID,
        PIPELINE_NAME,
        fields,
        token.unwrap_or_else(crate::clock::new_token),
        now,
    )?;
    app.store.create_schedule(&s).await?;
    Ok(s)
}

/// What [`seed_dev`] made: a `write` key and the demo, ready for the seeds' worked examples.
pub struct DevSeed {
    /// The key's secret when it was made up here (`None`: it is `KICKOFF_DEV_API_KEY`'s value).
    pub new_key: Option<String>,
    pub pipeline: Pipeline,
    pub build: Build,
    pub schedule: Schedule,
    /// The schedule's token is `KICKOFF_DEV_SCHEDULE_TOKEN`'s value.
    pub chosen_token: bool,
}

/// Seeds a development deployment (the embedded server, the local stack): a `write` API key — the
/// value of `KICKOFF_DEV_API_KEY`, or a fresh one — the demo pipeline and the demo schedule, whose token
/// is `KICKOFF_DEV_SCHEDULE_TOKEN` when set. Safe to run again.
pub async fn seed_dev(app: &App) -> Result<DevSeed> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let now = app.clock.now();
    let new_key = match var("KICKOFF_DEV_API_KEY") {
        Some(secret) => {
            app.store.put_api_key(&ApiKey::from_secret(&secret, Role::Write, "dev", now)).await?;
            None
        }
        None => {
            let (secret, record) = ApiKey::generate(Role::Write, "dev", now);
            app.store.put_api_key(&record).await?;
            Some(secret)
        }
    };
    let (pipeline, build) = seed(app).await?;
    let token = var("KICKOFF_DEV_SCHEDULE_TOKEN");
    let chosen_token = token.is_some();
    let schedule = seed_schedule(app, token).await?;
    Ok(DevSeed { new_key, pipeline, build, schedule, chosen_token })
}

impl DevSeed {
    /// The lines that tell a developer what was seeded (secrets chosen by variable are not repeated).
    pub fn describe(&self) -> Vec<String> {
        vec![
            match &self.new_key {
                Some(secret) => format!("  API key (write): {secret}"),
                None => "  API key (write): the value of KICKOFF_DEV_API_KEY".to_string(),
            },
            format!(
                "  demo pipeline {:?} version {:?}: id {}, build {}",
                self.pipeline.name, self.pipeline.version, self.pipeline.id, self.build.id
            ),
            format!(
                "  demo pipeline schedule {} (api, active): token {}",
                self.schedule.id,
                if self.chosen_token {
                    "the value of KICKOFF_DEV_SCHEDULE_TOKEN".to_string()
                } else {
                    self.schedule.token.clone()
                }
            ),
        ]
    }
}
