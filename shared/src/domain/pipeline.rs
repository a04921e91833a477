//! Pipelines: a named, versioned DAG of blocks. Validation of names and of the DAG lives here.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::bounds;
use super::notify::NotifyTarget;
use crate::{Error, Result};

/// The most blocks a pipeline may have: a trigger writes the run, its id claim, its three list-view
/// entries, an idempotency record and every block run in one DynamoDB transaction of at most 100 items
/// (6 + 90, with room to spare).
pub const MAX_BLOCKS: usize = 90;

/// What running a block means.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Executor {
    /// POST a signed JSON invocation to `url`.
    Http {
        url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_s: Option<u64>,
    },
    /// Invoke an AWS Lambda function (name or ARN, optionally with `:qualifier`).
    Lambda { function: String },
    /// Completes at once. (A struct variant, so that unknown fields are refused.)
    Noop {},
}

fn default_delay() -> u64 {
    5
}
fn default_max_delay() -> u64 {
    300
}

/// One block (ZenML: step) of a pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Block {
    pub name: String,
    #[serde(default)]
    pub upstream: Vec<String>,
    /// Declared parameters with their default values; a run may change values, never keys.
    #[serde(default)]
    pub parameters: Map<String, Value>,
    pub executor: Executor,
    #[serde(default)]
    pub retries: u32,
    #[serde(default = "default_delay")]
    pub delay_s: u64,
    #[serde(default = "default_max_delay")]
    pub max_delay_s: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<u64>,
}

/// The body of `POST /api/v1/pipelines`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPipeline {
    pub name: String,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    pub blocks: Vec<Block>,
    /// Where to notify when a run of this version ends (SPEC §10).
    #[serde(default)]
    pub notifications: Vec<NotifyTarget>,
}

/// A stored, immutable pipeline version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pipeline {
    pub id: Uuid,
    pub name: String,
    pub version: String,
    pub description: Option<String>,
    pub blocks: Vec<Block>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<NotifyTarget>,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
}

/// `[A-Za-z0-9_-]`, 1 to 100 characters: a block name.
pub fn validate_block_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::Unprocessable(format!("invalid block name {name:?}: use 1 to 100 of A-Z a-z 0-9 _ -")))
    }
}

/// `[A-Za-z0-9_.-]`, 1 to 100 characters, not starting with a dot: pipeline names and versions
/// (a pipeline name is a path segment on the Mage dialect).
pub fn validate_identifier(what: &str, value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= 100
        && !value.starts_with('.')
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::Unprocessable(format!(
            "invalid {what} {value:?}: use 1 to 100 of A-Z a-z 0-9 _ - . (not starting with a dot)"
        )))
    }
}

/// Checks a DAG: at least one block, at most [`MAX_BLOCKS`], valid and unique names, known upstreams,
/// no cycle, and sane executor settings.
pub fn validate_blocks(blocks: &[Block]) -> Result<()> {
    if blocks.is_empty() {
        return Err(Error::Unprocessable("blocks: a pipeline needs at least one block".into()));
    }
    if blocks.len() > MAX_BLOCKS {
        return Err(Error::Unprocessable(format!(
            "blocks: at most {MAX_BLOCKS} blocks per pipeline, got {}",
            blocks.len()
        )));
    }
    let mut names = HashSet::new();
    for (i, b) in blocks.iter().enumerate() {
        validate_block_name(&b.name)?;
        validate_block_bounds(i, b)?;
        if !names.insert(b.name.as_str()) {
            return Err(Error::Unprocessable(format!("duplicate block name {:?}", b.name)));
        }
        validate_executor(&b.name, &b.executor)?;
        if b.max_delay_s < b.delay_s {
            return Err(Error::Unprocessable(format!(
                "block {:?}: max_delay_s must be at least delay_s",
                b.name
            )));
        }
    }
    for b in blocks {
        let mut seen = HashSet::new();
        for up in &b.upstream {
            if !names.contains(up.as_str()) {
                return Err(Error::Unprocessable(format!(
                    "block {:?} names unknown upstream {up:?}",
                    b.name
                )));
            }
            if !seen.insert(up.as_str()) {
                return Err(Error::Unprocessable(format!("block {:?} names upstream {up:?} twice", b.name)));
            }
        }
    }
    if let Some(cycle) = find_cycle(blocks) {
        return Err(Error::Unprocessable(format!("the blocks form a cycle through {}", cycle.join(" -> "))));
    }
    Ok(())
}

/// The bounds of `docs/security.md` on a block's numbers, as `blocks[i].field`.
fn validate_block_bounds(i: usize, b: &Block) -> Result<()> {
    let field = |name: &str| format!("blocks[{i}].{name}");
    bounds::at_most(&field("retries"), b.retries, bounds::MAX_RETRIES)?;
    bounds::at_most(&field("delay_s"), b.delay_s, bounds::MAX_DELAY_S)?;
    bounds::at_most(&field("max_delay_s"), b.max_delay_s, bounds::MAX_DELAY_S)?;
    let max_timeout = match b.executor {
        Executor::Lambda { .. } => bounds::MAX_LAMBDA_TIMEOUT_S,
        _ => bounds::MAX_CALLBACK_TIMEOUT_S,
    };
    if let Some(t) = b.timeout_s {
        bounds::at_most(&field("timeout_s"), t, max_timeout)?;
    }
    if let Executor::Http { timeout_s: Some(t), .. } = b.executor {
        bounds::at_most(&field("executor.timeout_s"), t, bounds::MAX_CALL_TIMEOUT_S)?;
    }
    Ok(())
}

fn validate_executor(block: &str, executor: &Executor) -> Result<()> {
    match executor {
        Executor::Http { url, .. } => {
            let ok = (url.starts_with("http://") || url.starts_with("https://"))
                && url.parse::<http::Uri>().is_ok();
            if !ok {
                return Err(Error::Unprocessable(format!(
                    "block {block:?}: executor.url must be an http(s) URL"
                )));
            }
            let field = format!("block {block:?}: executor.url");
            crate::egress::check_url(&field, url, crate::egress::Policy::current())?;
        }
        Executor::Lambda { function } => {
            if function.is_empty() || function.len() > 170 {
                return Err(Error::Unprocessable(format!(
                    "block {block:?}: executor.function must be a function name or ARN"
                )));
            }
        }
        Executor::Noop {} => {}
    }
    Ok(())
}

/// Kahn's algorithm; returns the names of blocks left on a cycle, if any.
fn find_cycle(blocks: &[Block]) -> Option<Vec<String>> {
    let mut indegree: HashMap<&str, usize> =
        blocks.iter().map(|b| (b.name.as_str(), b.upstream.len())).collect();
    let mut downstream: HashMap<&str, Vec<&str>> = HashMap::new();
    for b in blocks {
        for up in &b.upstream {
            downstream.entry(up.as_str()).or_default().push(b.name.as_str());
        }
    }
    let mut ready: Vec<&str> = indegree.iter().filter(|(_, d)| **d == 0).map(|(n, _)| *n).collect();
    let mut done = 0;
    while let Some(n) = ready.pop() {
        done += 1;
        for d in downstream.get(n).into_iter().flatten() {
            if let Some(deg) = indegree.get_mut(d) {
                *deg -= 1;
                if *deg == 0 {
                    ready.push(d);
                }
            }
        }
    }
    if done == blocks.len() {
        return None;
    }
    let mut left: Vec<String> =
        indegree.into_iter().filter(|(_, d)| *d > 0).map(|(n, _)| n.to_string()).collect();
    left.sort();
    Some(left)
}

/// The version after the newest: one past the largest numeric version, or "1".
pub fn next_version<'a>(existing: impl IntoIterator<Item = &'a str>) -> String {
    let max = existing.into_iter().filter_map(|v| v.parse::<u64>().ok()).max();
    (max.map_or(1, |m| m + 1)).to_string()
}

/// Orders versions newest-last: numeric versions by value, then others by text.
pub fn version_key(version: &str) -> (u64, String) {
    (version.parse::<u64>().unwrap_or(0), version.to_string())
}

impl NewPipeline {
    /// Validates the request and makes the pipeline; `existing` are the versions of this name.
    pub fn into_pipeline(self, existing: &[String], now: DateTime<Utc>) -> Result<Pipeline> {
        validate_identifier("pipeline name", &self.name)?;
        let version = match self.version {
            Some(v) => {
                validate_identifier("version", &v)?;
                v
            }
            None => next_version(existing.iter().map(String::as_str)),
        };
        validate_blocks(&self.blocks)?;
        super::notify::validate("notifications", &self.notifications)?;
        Ok(Pipeline {
            id: Uuid::new_v4(),
            name: self.name,
            version,
            description: self.description,
            blocks: self.blocks,
            notifications: self.notifications,
            created: now,
            updated: now,
        })
    }
}

impl Pipeline {
    pub fn block(&self, name: &str) -> Option<&Block> {
        self.blocks.iter().find(|b| b.name == name)
    }

    /// The blocks as ZenML shows a pipeline spec: name → definition.
    pub fn spec(&self) -> BTreeMap<&str, &Block> {
        self.blocks.iter().map(|b| (b.name.as_str(), b)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(name: &str, up: &[&str]) -> Block {
        Block {
            name: name.into(),
            upstream: up.iter().map(|s| s.to_string()).collect(),
            parameters: Map::new(),
            executor: Executor::Noop {},
            retries: 0,
            delay_s: 5,
            max_delay_s: 300,
            timeout_s: None,
        }
    }

    #[test]
    fn accepts_a_diamond() {
        let blocks = vec![block("a", &[]), block("b", &["a"]), block("c", &["a"]), block("d", &["b", "c"])];
        assert_eq!(validate_blocks(&blocks), Ok(()));
    }

    #[test]
    fn rejects_cycles_unknown_upstreams_duplicates_and_bad_names() {
        let cycle = vec![block("a", &["c"]), block("b", &["a"]), block("c", &["b"])];
        let err = validate_blocks(&cycle).unwrap_err().to_string();
        assert!(err.contains("cycle") && err.contains("a -> b -> c"), "{err}");
        let selfloop = vec![block("a", &["a"])];
        assert!(validate_blocks(&selfloop).unwrap_err().to_string().contains("cycle"));
        let unknown = vec![block("a", &["zz"])];
        assert!(validate_blocks(&unknown).unwrap_err().to_string().contains("unknown upstream \"zz\""));
        let dup = vec![block("a", &[]), block("a", &[])];
        assert!(validate_blocks(&dup).unwrap_err().to_string().contains("duplicate"));
        let bad = vec![block("a b", &[])];
        assert!(validate_blocks(&bad).unwrap_err().to_string().contains("invalid block name"));
        assert!(validate_blocks(&[]).is_err());
    }

    #[test]
    fn block_numbers_are_bounded_and_the_422_names_the_field() {
        let mut b = block("a", &[]);
        b.retries = 101;
        assert_eq!(validate_blocks(&[b]).unwrap_err().to_string(), "blocks[0].retries: at most 100, got 101");
        let mut b = block("a", &[]);
        b.max_delay_s = u64::MAX;
        assert!(validate_blocks(&[b])
            .unwrap_err()
            .to_string()
            .starts_with("blocks[0].max_delay_s: at most 86400"));
        let mut b = block("a", &[]);
        b.executor = Executor::Lambda { function: "f".into() };
        b.timeout_s = Some(901);
        assert!(validate_blocks(&[b.clone()])
            .unwrap_err()
            .to_string()
            .starts_with("blocks[0].timeout_s: at most 900"));
        b.executor = Executor::Http { url: "https://example.com/x".into(), timeout_s: Some(841) };
        assert!(validate_blocks(&[b.clone()])
            .unwrap_err()
            .to_string()
            .starts_with("blocks[0].executor.timeout_s: at most 840"));
        b.executor = Executor::Http { url: "https://example.com/x".into(), timeout_s: Some(840) };
        b.timeout_s = Some(86_400);
        assert_eq!(validate_blocks(&[b.clone()]), Ok(()));
        b.timeout_s = Some(86_401);
        assert!(validate_blocks(&[b]).is_err());
    }

    #[test]
    fn next_version_is_one_past_the_largest_number() {
        assert_eq!(next_version([]), "1");
        assert_eq!(next_version(["1", "45", "9", "beta"]), "46");
    }

    #[test]
    fn executors_parse_with_their_type_tag() {
        let e: Executor = serde_json::from_str(r#"{"type":"http","url":"https://example.com/x"}"#).unwrap();
        assert!(matches!(e, Executor::Http { .. }));
        assert!(serde_json::from_str::<Executor>(r#"{"type":"ftp"}"#).is_err());
        assert!(serde_json::from_str::<Executor>(r#"{"type":"noop","x":1}"#).is_err());
    }
}
