//! Builds: immutable, runnable snapshots of one pipeline version.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::notify::NotifyTarget;
use super::pipeline::{validate_blocks, Block, Executor, Pipeline};
use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Build {
    pub id: Uuid,
    pub pipeline_id: Uuid,
    pub pipeline_name: String,
    pub pipeline_version: String,
    /// The pipeline's blocks with the executors this build runs.
    pub blocks: Vec<Block>,
    pub images: Map<String, Value>,
    pub checksum: Option<String>,
    /// The pipeline version's notification targets, which its runs copy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<NotifyTarget>,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
}

/// The body of `POST /api/v1/pipeline_builds`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewBuild {
    pub pipeline_id: Uuid,
    #[serde(default)]
    pub executors: BTreeMap<String, Executor>,
    #[serde(default)]
    pub images: Map<String, Value>,
    #[serde(default)]
    pub checksum: Option<String>,
}

impl Build {
    /// The first build of a pipeline version: its blocks as declared.
    pub fn initial(pipeline: &Pipeline) -> Build {
        Build {
            id: Uuid::new_v4(),
            pipeline_id: pipeline.id,
            pipeline_name: pipeline.name.clone(),
            pipeline_version: pipeline.version.clone(),
            blocks: pipeline.blocks.clone(),
            images: Map::new(),
            checksum: None,
            notifications: pipeline.notifications.clone(),
            created: pipeline.created,
            updated: pipeline.created,
        }
    }

    /// A later build: named blocks get new executors, the others keep the pipeline's.
    pub fn from_request(pipeline: &Pipeline, req: NewBuild, now: DateTime<Utc>) -> Result<Build> {
        let unknown: Vec<&str> =
            req.executors.keys().filter(|k| pipeline.block(k).is_none()).map(String::as_str).collect();
        if !unknown.is_empty() {
            return Err(Error::Unprocessable(format!(
                "executors: unknown block(s) {}; the pipeline's blocks are {}",
                unknown.join(", "),
                pipeline.blocks.iter().map(|b| b.name.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        let blocks: Vec<Block> = pipeline
            .blocks
            .iter()
            .map(|b| {
                let mut b = b.clone();
                if let Some(e) = req.executors.get(&b.name) {
                    b.executor = e.clone();
                }
                b
            })
            .collect();
        validate_blocks(&blocks)?;
        Ok(Build {
            id: Uuid::new_v4(),
            pipeline_id: pipeline.id,
            pipeline_name: pipeline.name.clone(),
            pipeline_version: pipeline.version.clone(),
            blocks,
            images: req.images,
            checksum: req.checksum,
            notifications: pipeline.notifications.clone(),
            created: now,
            updated: now,
        })
    }
}
