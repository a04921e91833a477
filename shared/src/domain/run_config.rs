//! ZenML's PipelineRunConfiguration, as a run trigger accepts it: known keys only (ZenML 0.98's, which
//! its client sends all of, most as `null`), `build` and `schedule` refused unless `null`,
//! `steps.<block>.parameters` limited to the parameters the block declares. A `null` value is a key not
//! set: it is dropped before the configuration is stored.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::{bounds, Block, Build};
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
    // Sent by ZenML 0.98's client (as null unless set); stored with the run, not acted on.
    ("enable_heartbeat", Kind::Bool),
    ("secrets", Kind::Array),
    ("init_hook_source", Kind::Any),
    ("init_hook_kwargs", Kind::Object),
    ("cleanup_hook_source", Kind::Any),
    ("start_hook_source", Kind::Any),
    ("end_hook_source", Kind::Any),
    ("pause_hook_source", Kind::Any),
    ("resume_hook_source", Kind::Any),
    ("execution_mode", Kind::Any),
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
    // Sent by ZenML 0.98's client (as null or its default unless set); stored, not acted on.
    ("secrets", Kind::Array),
    ("start_hook_source", Kind::Any),
    ("end_hook_source", Kind::Any),
    ("runtime", Kind::Any),
    ("heartbeat_healthy_threshold", Kind::Any),
    ("group", Kind::Any),
];

/// A run's name when the configuration sets no `run_name`.
pub const DEFAULT_RUN_NAME: &str = "{pipeline}-{date}-{time}";

/// Drops the `null` values of `object` and of each object in `steps` (ZenML's client sends every key
/// of its model, unset ones as `null`).
pub fn drop_nulls(object: &mut Map<String, Value>) {
    object.retain(|_, v| !v.is_null());
    if let Some(Value::Object(steps)) = object.get_mut("steps") {
        for step in steps.values_mut() {
            if let Value::Object(conf) = step {
                conf.retain(|_, v| !v.is_null());
            }
        }
    }
}

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
    pub fn parse(mut raw: Map<String, Value>, build: &Build) -> Result<RunConfig> {
        drop_nulls(&mut raw);
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

    /// The run's name: `run_name` (default `{pipeline}-{date}-{time}`) with `{pipeline}`, `{date}`,
    /// `{time}` and the configuration's `substitutions` filled in, in one pass over the template (a
    /// substituted value is not substituted again, so no key can grow the name by another); 422 past
    /// [`bounds::MAX_RUN_NAME_CHARS`] characters.
    pub fn run_name(&self, pipeline: &str, now: DateTime<Utc>) -> Result<String> {
        let template = self.raw.get("run_name").and_then(Value::as_str).unwrap_or(DEFAULT_RUN_NAME);
        let subs = match self.raw.get("substitutions") {
            Some(Value::Object(subs)) => Some(subs),
            _ => None,
        };
        let value_of = |key: &str| -> Option<String> {
            if let Some(v) = subs.and_then(|s| s.get(key)) {
                return Some(v.as_str().map_or_else(|| v.to_string(), str::to_string));
            }
            match key {
                "pipeline" => Some(pipeline.to_string()),
                "date" => Some(now.format("%Y_%m_%d").to_string()),
                "time" => Some(now.format("%H_%M_%S_%6f").to_string()),
                _ => None,
            }
        };
        let too_long = || {
            Error::Unprocessable(format!(
                "run_name: at most {} characters after substitution",
                bounds::MAX_RUN_NAME_CHARS
            ))
        };
        let mut name = String::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            name.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            match after.find('}').map(|close| (&after[..close], close)) {
                Some((key, close)) if !key.contains('{') => match value_of(key) {
                    Some(v) => {
                        name.push_str(&v);
                        rest = &after[close + 1..];
                    }
                    None => {
                        name.push('{');
                        rest = after;
                    }
                },
                _ => {
                    name.push('{');
                    rest = after;
                }
            }
            if name.chars().count() > bounds::MAX_RUN_NAME_CHARS {
                return Err(too_long());
            }
        }
        name.push_str(rest);
        if name.chars().count() > bounds::MAX_RUN_NAME_CHARS {
            return Err(too_long());
        }
        Ok(name)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(raw: Value) -> RunConfig {
        let Value::Object(raw) = raw else { panic!("an object") };
        RunConfig { raw, parameters: BTreeMap::new() }
    }

    #[test]
    fn run_names_substitute_once_and_are_bounded() {
        let now = DateTime::parse_from_rfc3339("2026-12-02T10:11:12Z").unwrap().with_timezone(&Utc);
        let c = config(
            serde_json::json!({"run_name": "{pipeline}-{date}-{x}-{y}-{missing}-{", "substitutions": {"x": "1", "y": 2}}),
        );
        assert_eq!(c.run_name("p", now).unwrap(), "p-2026_12_02-1-2-{missing}-{");
        // Each key's value names the next: chained, 20 keys would double the name 20 times.
        let mut subs = serde_json::Map::new();
        for i in 0..20 {
            subs.insert(format!("k{i}"), Value::String(format!("{{k{}}}{{k{}}}", i + 1, i + 1)));
        }
        let c = config(serde_json::json!({"run_name": "{k0}", "substitutions": subs}));
        assert_eq!(c.run_name("p", now).unwrap(), "{k1}{k1}");
        let c = config(serde_json::json!({"run_name": "{x}{x}", "substitutions": {"x": "a".repeat(200)}}));
        let e = c.run_name("p", now).unwrap_err().to_string();
        assert_eq!(e, "run_name: at most 255 characters after substitution");
        let c = config(serde_json::json!({"run_name": "é".repeat(255)}));
        assert_eq!(c.run_name("p", now).unwrap().chars().count(), 255);
    }
}
