//! Pipelines and builds in the table (keys in `store`'s module docs).

use uuid::Uuid;

use super::table::{Condition, Put, WriteError};
use super::{decode_all, encode, index_sort_key, item, Store};
use crate::domain::{Build, Pipeline};
use crate::{Error, Result};

impl Store {
    // --- pipelines ------------------------------------------------------------------------------

    /// Writes a new pipeline version with its first build; 409 if `(name, version)` exists.
    pub async fn create_pipeline(&self, p: &Pipeline, first_build: &Build) -> Result<()> {
        let doc = encode(p)?;
        let mut puts = vec![
            Put {
                item: item(
                    format!("PIPELINE#{}", p.id),
                    "PIPELINE",
                    Some(("PIPELINES".into(), index_sort_key(p.created, p.id))),
                    doc.clone(),
                ),
                condition: Condition::Absent,
            },
            Put {
                item: item(format!("PIPELINE_NAME#{}", p.name), &format!("VERSION#{}", p.version), None, doc),
                condition: Condition::Absent,
            },
        ];
        puts.extend(Self::build_puts(first_build)?);
        match self.table.write(puts).await {
            Ok(()) => Ok(()),
            Err(WriteError::ConditionFailed) => {
                Err(Error::Conflict(format!("pipeline {:?} version {:?} already exists", p.name, p.version)))
            }
            Err(WriteError::Other(e)) => Err(e),
        }
    }

    pub async fn get_pipeline(&self, id: Uuid) -> Result<Option<Pipeline>> {
        Ok(self.get_doc(format!("PIPELINE#{id}"), "PIPELINE").await?.map(|v| v.value))
    }

    /// Every version of a pipeline name.
    pub async fn pipeline_versions(&self, name: &str) -> Result<Vec<Pipeline>> {
        decode_all(&self.table.query(&format!("PIPELINE_NAME#{name}"), "VERSION#").await?)
    }

    pub async fn list_pipelines(&self) -> Result<Vec<Pipeline>> {
        decode_all(&self.table.query_index("PIPELINES").await?)
    }

    // --- builds ---------------------------------------------------------------------------------

    pub(super) fn build_puts(b: &Build) -> Result<Vec<Put>> {
        let doc = encode(b)?;
        Ok(vec![
            Put {
                item: item(
                    format!("BUILD#{}", b.id),
                    "BUILD",
                    Some(("BUILDS".into(), index_sort_key(b.created, b.id))),
                    doc.clone(),
                ),
                condition: Condition::Absent,
            },
            Put {
                item: item(
                    format!("PIPELINE#{}", b.pipeline_id),
                    &format!("BUILD#{}", index_sort_key(b.created, b.id)),
                    None,
                    doc,
                ),
                condition: Condition::Absent,
            },
        ])
    }

    pub async fn create_build(&self, b: &Build) -> Result<()> {
        self.table.write(Self::build_puts(b)?).await.map_err(|e| match e {
            WriteError::ConditionFailed => Error::Conflict(format!("build {} already exists", b.id)),
            WriteError::Other(e) => e,
        })
    }

    pub async fn get_build(&self, id: Uuid) -> Result<Option<Build>> {
        Ok(self.get_doc(format!("BUILD#{id}"), "BUILD").await?.map(|v| v.value))
    }

    pub async fn list_builds(&self) -> Result<Vec<Build>> {
        decode_all(&self.table.query_index("BUILDS").await?)
    }

    /// The builds of one pipeline version, oldest first.
    pub async fn builds_of_pipeline(&self, pipeline_id: Uuid) -> Result<Vec<Build>> {
        decode_all(&self.table.query(&format!("PIPELINE#{pipeline_id}"), "BUILD#").await?)
    }
}
