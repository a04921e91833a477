//! ZenML's PipelineRunConfiguration, as a run trigger accepts it: known keys only, `build` and
//! `schedule` refused, `steps.<block>.parameters` limited to the parameters the block declares.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::{Block, Build};
use crate::http::json_type_name;
use crate::{Error, Result};

/// Top-level keys of a run configuration and the JSON type each must have.
const RUN_KEYS: &[(&str, Kind)] = &[
    ("run_name", Kind::String),
    ("enable_cache", Kind::Bool),
    ("enable_artifact_metadata", Kind::Bool),
    ("enable_artifact_visualization", Kind::Bool),
    ("enable_step_logs", Kind::Bool),
    ("enable_pipeline_logs", Kind::Bool),
    ("steps", Kind::Object),
    ("settings", Kind::Object),
    ("extra", Kind::Object),
    ("model", Kind::Object),
    ("parameters", Kind::Object),
    ("retry", Kind::Object),
    ("failure_hook_source", Kind::Any),
    ("success_hook_source", Kind::Any),
    ("substitutions", Kind::Object),
    ("tags", Kind::Array),
    ("environment", Kind::Object),
    ("cache_policy", Kind::Any),
];

/// Keys of one step's configuration.
const STEP_KEYS: &[(&str, Kind)] = &[
    ("parameters", Kind::Object),
    ("enable_cache", Kind::Bool),
    ("enable_artifact_metadata", Kind::Bool),
    ("enable_artifact_visualization", Kind::Bool),
    ("enable_step_logs", Kind::Bool),
    ("step_operator", Kind::Any),
    ("experiment_tracker", Kind::Any),
    ("settings", Kind::Object),
    ("extra", Kind::Object),
    ("outputs", Kind::Object),
    ("model", Kind::Object),
    ("retry", Kind::Object),
    ("failure_hook_source", Kind::Any),
    ("success_hook_source", Kind::Any),
    ("substitutions", Kind::Object),
    ("environment", Kind::Object),
    ("cache_policy", Kind::Any),
];

#[derive(Clone, Copy)]
enum Kind {
    String,
    Bool,
    Object,
    Array,
    Any,
}

impl Kind {
    fn accepts(self, v: &Value) -> bool {
        v.is_null()
            || match self {
                Kind::String => v.is_string(),
                Kind::Bool => v.is_boolean(),
                Kind::Object => v.is_object(),
                Kind::Array => v.is_array(),
                Kind::Any => true,
            }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::String => "a string",
            Kind::Bool => "a boolean",
            Kind::Object => "an object",
            Kind::Array => "an array",
            Kind::Any => "anything",
        }
    }
}

/// `path` is the prefix of the object's fields ("" or "steps.x.").
fn check_keys(path: &str, object: &Map<String, Value>, known: &[(&str, Kind)]) -> Result<()> {
    let mut unknown = Vec::new();
    for (k, v) in object {
        match known.iter().find(|(name, _)| name == k) {
            Some((_, kind)) if !kind.accepts(v) => {
                return Err(Error::Unprocessable(format!(
                    "{path}{k}: must be {}, got {}",
                    kind.name(),
                    json_type_name(v)
                )))
            }
            Some(_) => {}
            None => unknown.push(k.as_str()),
        }
    }
    if unknown.is_empty() {
        Ok(())
    } else {
        let at = path.strip_suffix('.').map_or(String::new(), |p| format!("{p}: "));
        Err(Error::Unprocessable(format!(
            "{at}unknown field(s) {}; known fields are {}",
            unknown.join(", "),
            known.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        )))
    }
}

/// A checked run configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    /// The configuration as sent; stored with the run.
    pub raw: Map<String, Value>,
    /// The parameters of each block: its defaults with the configuration's values applied.
    pub parameters: BTreeMap<String, Map<String, Value>>,
}

impl RunConfig {
    /// Checks `raw` against the build's blocks.
    pub fn parse(raw: Map<String, Value>, build: &Build) -> Result<RunConfig> {
        for refused in ["build", "schedule"] {
            if raw.contains_key(refused) {
                return Err(Error::Unprocessable(format!(
                    "{refused}: may not be set when triggering a run; the build is the one in the URL{}",
                    if refused == "schedule" { " and schedules are made on the Mage dialect" } else { "" }
                )));
            }
        }
        check_keys("", &raw, RUN_KEYS)?;
        let mut parameters: BTreeMap<String, Map<String, Value>> =
            build.blocks.iter().map(|b| (b.name.clone(), b.parameters.clone())).collect();
        if let Some(Value::Object(steps)) = raw.get("steps") {
            let names = || build.blocks.iter().map(|b| b.name.as_str()).collect::<Vec<_>>().join(", ");
            for (step, conf) in steps {
                let Some(block) = build.blocks.iter().find(|b| &b.name == step) else {
                    return Err(Error::Unprocessable(format!(
                        "steps: unknown step {step:?}; the pipeline's steps are {}",
                        names()
                    )));
                };
                let Value::Object(conf) = conf else {
                    return Err(Error::Unprocessable(format!("steps.{step}: must be an object")));
                };
                check_keys(&format!("steps.{step}."), conf, STEP_KEYS)?;
                if let Some(Value::Object(given)) = conf.get("parameters") {
                    apply_parameters(block, given, parameters.entry(step.clone()).or_default())?;
                }
            }
        }
        Ok(RunConfig { raw, parameters })
    }

    /// The run's name: `run_name` (default `{pipeline}-{date}-{time}`) with `{date}`, `{time}` and the
    /// configuration's `substitutions` filled in.
    pub fn run_name(&self, pipeline: &str, now: DateTime<Utc>) -> String {
        let template = self.raw.get("run_name").and_then(Value::as_str).unwrap_or("{pipeline}-{date}-{time}");
        let mut name = template
            .replace("{pipeline}", pipeline)
            .replace("{date}", &now.format("%Y_%m_%d").to_string())
            .replace("{time}", &now.format("%H_%M_%S_%6f").to_string());
        if let Some(Value::Object(subs)) = self.raw.get("substitutions") {
            for (k, v) in subs {
                let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                name = name.replace(&format!("{{{k}}}"), &v);
            }
        }
        name
    }
}

fn apply_parameters(block: &Block, given: &Map<String, Value>, into: &mut Map<String, Value>) -> Result<()> {
    let unknown: Vec<&str> =
        given.keys().filter(|k| !block.parameters.contains_key(*k)).map(String::as_str).collect();
    if !unknown.is_empty() {
        let known: Vec<&str> = block.parameters.keys().map(String::as_str).collect();
        return Err(Error::Unprocessable(format!(
            "steps.{}.parameters: unknown parameter(s) {}; the step's parameters are {}",
            block.name,
            unknown.join(", "),
            if known.is_empty() { "(none)".to_string() } else { known.join(", ") }
        )));
    }
    for (k, v) in given {
        into.insert(k.clone(), v.clone());
    }
    Ok(())
}
