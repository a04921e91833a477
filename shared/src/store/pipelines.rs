//! Pipelines and builds in the table (keys in `store`'s module docs).

use uuid::Uuid;

use super::table::{Condition, Put, WriteError};
use super::{decode_all, encode, index_sort_key, item, Store};
use crate::domain::pipeline::version_key;
use crate::domain::{Build, Pipeline};
use crate::{Error, Result};

fn head_pk(name: &str) -> String {
    format!("PIPELINE_HEAD#{name}")
}

impl Store {
    // --- pipelines ------------------------------------------------------------------------------

    /// The newest build of a pipeline name's newest version, kept on the name's head item: one `GetItem`
    /// (the trigger path's second read).
    pub async fn pipeline_head(&self, name: &str) -> Result<Option<Build>> {
        Ok(self.get_doc::<Build>(head_pk(name), "HEAD").await?.map(|v| v.value))
    }

    /// The head item's put if `b` becomes its pipeline name's newest build (a later build of the head's
    /// version, or a build of a newer version), conditioned on the head as read.
    async fn head_put(&self, b: &Build) -> Result<Option<Put>> {
        let current = self.get_doc::<Build>(head_pk(&b.pipeline_name), "HEAD").await?;
        let newer = current
            .as_ref()
            .is_none_or(|h| version_key(&b.pipeline_version) >= version_key(&h.value.pipeline_version));
        if !newer {
            return Ok(None);
        }
        let condition = current.as_ref().map_or(Condition::Absent, |h| Condition::Version(h.version));
        let mut head = item(head_pk(&b.pipeline_name), "HEAD", None, encode(b)?);
        head.version = current.map_or(1, |h| h.version + 1);
        Ok(Some(Put { item: head, condition }))
    }

    /// Writes the items of a new pipeline version or build with the head item (if the build is the
    /// newest); a head changed meanwhile is read again. `exists` is the 409 for a failed condition of
    /// the new items themselves.
    async fn write_with_head(&self, puts: Vec<Put>, b: &Build, exists: impl Fn() -> Error) -> Result<()> {
        for _ in 0..8 {
            let mut all = puts.clone();
            let head = self.head_put(b).await?;
            let with_head = head.is_some();
            all.extend(head);
            match self.table.write(all).await {
                Ok(()) => return Ok(()),
                Err(WriteError::ConditionFailed) if with_head => {
                    // The new items' own condition, or the head's: without the head it tells which.
                    if self.table.get(&puts[0].item.pk, &puts[0].item.sk).await?.is_some() {
                        return Err(exists());
                    }
                }
                Err(WriteError::ConditionFailed) => return Err(exists()),
                Err(WriteError::Other(e)) => return Err(e),
            }
        }
        Err(Error::Conflict("the pipeline is changing; try again".into()))
    }

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
        let exists =
            || Error::Conflict(format!("pipeline {:?} version {:?} already exists", p.name, p.version));
        // The name/version claim first: it is what tells a 409 from a raced head.
        puts.swap(0, 1);
        self.write_with_head(puts, first_build, exists).await
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
        self.write_with_head(Self::build_puts(b)?, b, || {
            Error::Conflict(format!("build {} already exists", b.id))
        })
        .await
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
