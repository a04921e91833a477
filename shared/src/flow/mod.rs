//! Flow control and payload rules on an `api` schedule's triggers (SPEC §12): what a trigger's payload
//! makes of a run before one exists. Settings are checked (every expression compiled) when the schedule
//! is saved; [`decide`] runs on every trigger of the schedule (token routes, run-now, the webhook
//! intake), before anything is written.
//!
//! - `settings.rules`: an ordered list of `{"when": <CEL>, "variables": {name: <CEL>}}`. The first rule
//!   whose `when` is `true` maps the payload: `event_variables` become exactly its named values. No
//!   rule matches: no run (the answer says `skipped`).
//! - `settings.flow_control`: `{"key": <CEL>, "concurrency": {"per_key": N, "on_limit": "queue" |
//!   "skip" | "cancel_running"}}`. The key's value (a string; anything else as its JSON text, at most
//!   [`MAX_KEY_BYTES`]) names the run's slots item (`admission`): at most `per_key` unfinished runs per
//!   key value; over it, `queue` waits in order, `skip` writes nothing, `cancel_running` cancels the
//!   key's running runs and starts the new one when they have stopped.
//!
//! Expressions see `event` (the body as it becomes `event_variables`: every top-level key but
//! `pipeline_run`), `variables` (the run's variables: the schedule's, the body's `pipeline_run.variables`
//! and, for webhooks, `webhook`) and `headers` (credentials and signatures left out: `expr`).

pub mod expr;
pub mod timing;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::bounds;
use crate::{Error, Result};
use expr::{compile, Evaluator, Expr, Input};

/// The longest key value, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// The most rules a schedule may have.
pub const MAX_RULES: usize = 32;
/// The most variables one rule may name.
pub const MAX_RULE_VARIABLES: usize = 64;
/// The most unfinished runs per key value.
pub const MAX_PER_KEY: u32 = 1_000;

/// `settings.flow_control`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowControl {
    /// A CEL expression: the key of a trigger.
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debounce: Option<timing::Debounce>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<timing::Throttle>,
}

/// `settings.flow_control.concurrency`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Concurrency {
    pub per_key: u32,
    #[serde(default)]
    pub on_limit: OnLimit,
}

/// What a trigger over its key's limit does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnLimit {
    /// Waits in `initial`, in order, until a run of its key finishes.
    #[default]
    Queue,
    /// Creates nothing.
    Skip,
    /// Cancels the key's running runs; starts when they have stopped.
    CancelRunning,
}

/// One of `settings.rules`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub when: String,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
}

/// Checks flow control and rules as saved: bounds, and every expression compiles (a 422 naming it).
pub fn validate(flow: Option<&FlowControl>, rules: Option<&[Rule]>) -> Result<()> {
    if flow.is_none() && rules.is_none() {
        return Ok(());
    }
    expr::on_cel_stack(|| validate_here(flow, rules))
}

fn validate_here(flow: Option<&FlowControl>, rules: Option<&[Rule]>) -> Result<()> {
    if let Some(f) = flow {
        compile("settings.flow_control.key", &f.key)?;
        let modes = [f.concurrency.is_some(), f.debounce.is_some(), f.throttle.is_some()];
        if modes.iter().filter(|m| **m).count() > 1 {
            return Err(Error::Unprocessable(
                "settings.flow_control: one of concurrency, debounce and throttle per schedule".into(),
            ));
        }
        if let Some(d) = &f.debounce {
            d.validate()?;
        }
        if let Some(t) = &f.throttle {
            t.validate()?;
        }
        if let Some(c) = &f.concurrency {
            if c.per_key == 0 {
                return Err(Error::Unprocessable(
                    "settings.flow_control.concurrency.per_key: at least 1".into(),
                ));
            }
            bounds::at_most("settings.flow_control.concurrency.per_key", c.per_key, MAX_PER_KEY)?;
        }
    }
    if let Some(rules) = rules {
        compile_rules(rules)?;
    }
    Ok(())
}

struct CompiledRule {
    when: Expr,
    variables: Vec<(String, Expr)>,
}

fn compile_rules(rules: &[Rule]) -> Result<Vec<CompiledRule>> {
    if rules.len() > MAX_RULES {
        return Err(Error::Unprocessable(format!("settings.rules: at most {MAX_RULES} rules")));
    }
    rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            if r.variables.len() > MAX_RULE_VARIABLES {
                return Err(Error::Unprocessable(format!(
                    "settings.rules[{i}].variables: at most {MAX_RULE_VARIABLES} names"
                )));
            }
            Ok(CompiledRule {
                when: compile(&format!("settings.rules[{i}].when"), &r.when)?,
                variables: r
                    .variables
                    .iter()
                    .map(|(name, src)| {
                        Ok((name.clone(), compile(&format!("settings.rules[{i}].variables.{name}"), src)?))
                    })
                    .collect::<Result<_>>()?,
            })
        })
        .collect()
}

/// What the rules and the key made of one trigger.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The index of the rule that matched (`None`: the schedule has no rules).
    pub rule: Option<usize>,
    /// `Some(reason)`: no run is to be made.
    pub skipped: Option<String>,
    /// The run's `event_variables`, as the matching rule mapped them (unchanged without rules).
    pub event_variables: Option<Value>,
    /// The key's value, with flow control.
    pub key: Option<String>,
}

/// The rules and the key of `flow`/`rules` over one trigger: `event` is what would become
/// `event_variables` (`None`: an empty body), `variables` the run's variables, `headers` the request's.
/// A key or a rule's variable that fails on this payload is a 422 naming it; so is a key too long.
pub fn decide(
    flow: Option<&FlowControl>,
    rules: Option<&[Rule]>,
    event: Option<&Value>,
    variables: &Map<String, Value>,
    headers: Map<String, Value>,
) -> Result<Decision> {
    if flow.is_none() && rules.is_none() {
        return Ok(Decision { rule: None, skipped: None, event_variables: event.cloned(), key: None });
    }
    expr::on_cel_stack(|| {
        let mut d = Decision { rule: None, skipped: None, event_variables: event.cloned(), key: None };
        let input = Input {
            event: event.cloned().unwrap_or(Value::Null),
            variables: Value::Object(variables.clone()),
            headers: headers.into_iter().filter(|(k, _)| !expr::is_secret_header(k)).collect(),
        };
        let ev = Evaluator::new(&input)?;
        if let Some(rules) = rules {
            let compiled = compile_rules(rules)?;
            let Some((i, rule)) = compiled.iter().enumerate().find(|(_, r)| ev.holds(&r.when)) else {
                d.skipped = Some("no rule matched".into());
                return Ok(d);
            };
            let mut mapped = Map::new();
            for (name, e) in &rule.variables {
                mapped.insert(name.clone(), ev.value(e)?);
            }
            bounds::variables(&format!("settings.rules[{i}].variables"), &mapped)?;
            d.rule = Some(i);
            d.event_variables = (!mapped.is_empty()).then_some(Value::Object(mapped));
        }
        if let Some(f) = flow {
            let value = ev.value(&compile("settings.flow_control.key", &f.key)?)?;
            let key = match value {
                Value::String(s) => s,
                other => other.to_string(),
            };
            if key.len() > MAX_KEY_BYTES {
                return Err(Error::Unprocessable(format!(
                    "settings.flow_control.key: the key of this payload is over {MAX_KEY_BYTES} bytes"
                )));
            }
            d.key = Some(key);
        }
        Ok(d)
    })
}

/// What flow control made of a trigger that wrote (or merged into) `run`: `new_run` (it may start),
/// `queued` (it waits for a run of its key), `cancelling_running` (it waits while the key's running runs
/// are cancelled), `deferred` (it starts at the time given: a debounce window's run, a throttled turn)
/// or `merged` (into the key's pending debounced run, starting at the time given).
pub fn outcome(
    run: &crate::domain::Run,
    merged: bool,
    on_limit: Option<OnLimit>,
) -> (&'static str, Option<chrono::DateTime<chrono::Utc>>) {
    let later = run.not_before.filter(|t| *t > run.created || merged);
    let waiting = run.slot == Some(crate::domain::run::Slot::Waiting);
    let outcome = match (merged, later.is_some(), waiting, on_limit == Some(OnLimit::CancelRunning)) {
        (true, ..) => "merged",
        (false, true, ..) => "deferred",
        (false, false, false, _) => "new_run",
        (false, false, true, false) => "queued",
        (false, false, true, true) => "cancelling_running",
    };
    (outcome, later)
}

/// The request's headers as a map of lower-case names to text values (the last of a repeated header);
/// [`decide`] leaves out credentials and signatures.
pub fn headers_of(map: &http::HeaderMap) -> Map<String, Value> {
    map.iter()
        .filter_map(|(name, v)| {
            Some((name.as_str().to_string(), Value::String(v.to_str().ok()?.to_string())))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(v: Value) -> Vec<Rule> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_first_matching_rule_maps_the_payload_and_no_match_skips() {
        let rs = rules(json!([
            {"when": "event.ref == 'refs/heads/main'", "variables": {"branch": "event.ref.substring(11)", "who": "event.pusher.name"}},
            {"when": "has(event.ref)", "variables": {}}
        ]));
        let ev = json!({"ref": "refs/heads/main", "pusher": {"name": "ada"}, "big": [1, 2, 3]});
        let d = decide(None, Some(&rs), Some(&ev), &Map::new(), Map::new()).unwrap();
        assert_eq!(d.rule, Some(0));
        assert_eq!(d.event_variables, Some(json!({"branch": "main", "who": "ada"})));
        let ev = json!({"ref": "refs/heads/dev"});
        let d = decide(None, Some(&rs), Some(&ev), &Map::new(), Map::new()).unwrap();
        assert_eq!((d.rule, d.event_variables.clone()), (Some(1), None));
        let ev = json!({"action": "opened"});
        let d = decide(None, Some(&rs), Some(&ev), &Map::new(), Map::new()).unwrap();
        assert_eq!(d.skipped.as_deref(), Some("no rule matched"));
        // A matching rule whose variable fails on the payload is a 422 naming it.
        let rs = rules(json!([{"when": "true", "variables": {"x": "event.missing.deep"}}]));
        let e = decide(None, Some(&rs), Some(&json!({})), &Map::new(), Map::new()).unwrap_err();
        assert!(e.to_string().starts_with("settings.rules[0].variables.x: "), "{e}");
    }

    #[test]
    fn keys_are_strings_bounded_in_length() {
        let f =
            FlowControl { key: "event.customer".into(), concurrency: None, debounce: None, throttle: None };
        let d = decide(Some(&f), None, Some(&json!({"customer": "acme"})), &Map::new(), Map::new()).unwrap();
        assert_eq!(d.key.as_deref(), Some("acme"));
        let d = decide(Some(&f), None, Some(&json!({"customer": 42})), &Map::new(), Map::new()).unwrap();
        assert_eq!(d.key.as_deref(), Some("42"));
        let long = json!({"customer": "x".repeat(MAX_KEY_BYTES + 1)});
        let e = decide(Some(&f), None, Some(&long), &Map::new(), Map::new()).unwrap_err();
        assert!(e.to_string().starts_with("settings.flow_control.key: "), "{e}");
        let e = decide(Some(&f), None, None, &Map::new(), Map::new()).unwrap_err();
        assert!(
            e.to_string().starts_with("settings.flow_control.key: "),
            "an empty body has no customer: {e}"
        );
    }

    #[test]
    fn saved_settings_are_checked() {
        let f = |per_key| FlowControl {
            key: "event.a".into(),
            concurrency: Some(Concurrency { per_key, on_limit: OnLimit::Queue }),
            debounce: None,
            throttle: None,
        };
        assert!(validate(Some(&f(0)), None).unwrap_err().to_string().contains("per_key: at least 1"));
        assert!(validate(Some(&f(MAX_PER_KEY + 1)), None).unwrap_err().to_string().contains("per_key"));
        assert!(validate(Some(&f(1)), None).is_ok());
        let many = vec![Rule { when: "true".into(), variables: BTreeMap::new() }; MAX_RULES + 1];
        assert!(validate(None, Some(&many)).unwrap_err().to_string().starts_with("settings.rules: "));
        let bad = rules(json!([{"when": "true"}, {"when": "event.(", "variables": {}}]));
        assert!(validate(None, Some(&bad)).unwrap_err().to_string().starts_with("settings.rules[1].when: "));
    }
}
