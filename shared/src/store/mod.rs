//! The `Store` port: every read and conditional write the handlers need, named by access pattern.
//!
//! `Store` is written once over the [`table::Table`] adapter, which has two implementations with the
//! same semantics: [`dynamo::DynamoTable`] (one DynamoDB table) and [`memory::MemoryTable`] (the embedded
//! default and test double). The conformance suite in [`conformance`] runs against both.
//!
//! # Key design (one table, index `GSI1`)
//!
//! | entity | PK | SK | GSI1PK / GSI1SK |
//! |---|---|---|---|
//! | API key | `APIKEY#<sha256 of secret>` | `APIKEY` | — |
//! | pipeline | `PIPELINE#<uuid>` | `PIPELINE` | `PIPELINES` / `<created>#<uuid>` |
//! | pipeline by name | `PIPELINE_NAME#<name>` | `VERSION#<version>` | — |
//! | build | `BUILD#<uuid>` | `BUILD` | `BUILDS` / `<created>#<uuid>` |
//! | build of a pipeline | `PIPELINE#<uuid>` | `BUILD#<created>#<uuid>` | — |
//! | run | `RUN#<uuid>` | `RUN` | `RUNS` / `<created>#<uuid>` |
//! | block run | `RUN#<uuid>` | `BLOCK#<index, 3 digits>` | — |
//! | run id claim | `RUNID#<integer id>` | `RUNID` | — |
//!
//! Pipelines and builds are immutable, so their extra copies (by name, by pipeline) never go stale;
//! they are written in the same transaction as the entity.
//!
//! # Access patterns and their cost
//!
//! - API key by secret: one `GetItem` on the hash (the secret is never stored).
//! - Create a pipeline version: one transaction of 3 puts (pipeline, name/version claim with
//!   `attribute_not_exists` — the 409 — and its first build's 2 items): 4 items.
//! - Pipeline / build / run by id: one `GetItem`; a run with its block runs: one `Query` on `RUN#<uuid>`.
//! - Versions of a pipeline name: one `Query` on `PIPELINE_NAME#<name>`.
//! - Builds of a pipeline: one `Query` on `PIPELINE#<uuid>`, prefix `BUILD#`.
//! - Run by integer id: `GetItem` on the claim, then the run's `Query`.
//! - Trigger: one transaction: the run, its id claim (`attribute_not_exists`; a collision draws a new id),
//!   and one item per block run: 2 + blocks items.
//! - Run status change: `PutItem` conditioned on the version read (optimistic concurrency).
//! - ZenML lists (pipelines, builds, runs): one `Query` of the entity's `GSI1` partition, all pages;
//!   filtering, sorting and paging happen in the function. That is fine for pipelines and builds (few);
//!   for runs it reads every run, which the Mage run history will replace with a keyed, counted index.

pub mod conformance;
pub mod dynamo;
pub mod memory;
pub mod table;

use std::sync::Arc;

use serde::{de::DeserializeOwned, Serialize};
use uuid::Uuid;

use crate::domain::run::RunDetail;
use crate::domain::{ApiKey, BlockRun, Build, Pipeline, Run};
use crate::{Error, Result};
use table::{Condition, Item, Put, Table, WriteError};

/// A value with the version its item had when read; pass it back to update conditionally.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub version: u64,
}

#[derive(Clone)]
pub struct Store {
    table: Arc<dyn Table>,
}

fn encode<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(Error::internal)
}

fn decode<T: DeserializeOwned>(item: &Item) -> Result<T> {
    serde_json::from_str(&item.doc)
        .map_err(|e| Error::Internal(format!("corrupt item {}/{}: {e}", item.pk, item.sk)))
}

fn item(pk: String, sk: &str, index: Option<(String, String)>, doc: String) -> Item {
    Item {
        pk,
        sk: sk.to_string(),
        index,
        version: 1,
        doc,
        expires_at: None,
    }
}

fn index_sort_key(created: chrono::DateTime<chrono::Utc>, id: Uuid) -> String {
    format!("{}#{id}", created.format("%Y-%m-%dT%H:%M:%S%.6fZ"))
}

fn internal(e: WriteError) -> Error {
    match e {
        WriteError::ConditionFailed => Error::Internal("unexpected failed condition".into()),
        WriteError::Other(e) => e,
    }
}

impl Store {
    pub fn new(table: Arc<dyn Table>) -> Self {
        Self { table }
    }

    /// A store on a fresh in-memory table.
    pub fn memory() -> Self {
        Self::new(Arc::new(memory::MemoryTable::new()))
    }

    async fn get_doc<T: DeserializeOwned>(
        &self,
        pk: String,
        sk: &str,
    ) -> Result<Option<Versioned<T>>> {
        match self.table.get(&pk, sk).await? {
            Some(i) => Ok(Some(Versioned {
                value: decode(&i)?,
                version: i.version,
            })),
            None => Ok(None),
        }
    }

    async fn docs<T: DeserializeOwned>(items: Vec<Item>) -> Result<Vec<T>> {
        items.iter().map(decode).collect()
    }

    // --- API keys -------------------------------------------------------------------------------

    pub async fn put_api_key(&self, key: &ApiKey) -> Result<()> {
        let it = item(format!("APIKEY#{}", key.hash), "APIKEY", None, encode(key)?);
        self.table
            .write(vec![Put {
                item: it,
                condition: Condition::Always,
            }])
            .await
            .map_err(internal)
    }

    /// The key whose secret this is, if any.
    pub async fn find_api_key(&self, secret: &str) -> Result<Option<ApiKey>> {
        let hash = crate::domain::api_key::hash_secret(secret);
        let found: Option<Versioned<ApiKey>> =
            self.get_doc(format!("APIKEY#{hash}"), "APIKEY").await?;
        Ok(found.map(|v| v.value).filter(|k| k.matches(secret)))
    }

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
                item: item(
                    format!("PIPELINE_NAME#{}", p.name),
                    &format!("VERSION#{}", p.version),
                    None,
                    doc,
                ),
                condition: Condition::Absent,
            },
        ];
        puts.extend(Self::build_puts(first_build)?);
        match self.table.write(puts).await {
            Ok(()) => Ok(()),
            Err(WriteError::ConditionFailed) => Err(Error::Conflict(format!(
                "pipeline {:?} version {:?} already exists",
                p.name, p.version
            ))),
            Err(WriteError::Other(e)) => Err(e),
        }
    }

    pub async fn get_pipeline(&self, id: Uuid) -> Result<Option<Pipeline>> {
        Ok(self
            .get_doc(format!("PIPELINE#{id}"), "PIPELINE")
            .await?
            .map(|v| v.value))
    }

    /// Every version of a pipeline name.
    pub async fn pipeline_versions(&self, name: &str) -> Result<Vec<Pipeline>> {
        Self::docs(
            self.table
                .query(&format!("PIPELINE_NAME#{name}"), "VERSION#")
                .await?,
        )
        .await
    }

    pub async fn list_pipelines(&self) -> Result<Vec<Pipeline>> {
        Self::docs(self.table.query_index("PIPELINES").await?).await
    }

    // --- builds ---------------------------------------------------------------------------------

    fn build_puts(b: &Build) -> Result<Vec<Put>> {
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
        self.table
            .write(Self::build_puts(b)?)
            .await
            .map_err(|e| match e {
                WriteError::ConditionFailed => {
                    Error::Conflict(format!("build {} already exists", b.id))
                }
                WriteError::Other(e) => e,
            })
    }

    pub async fn get_build(&self, id: Uuid) -> Result<Option<Build>> {
        Ok(self
            .get_doc(format!("BUILD#{id}"), "BUILD")
            .await?
            .map(|v| v.value))
    }

    pub async fn list_builds(&self) -> Result<Vec<Build>> {
        Self::docs(self.table.query_index("BUILDS").await?).await
    }

    /// The builds of one pipeline version, oldest first.
    pub async fn builds_of_pipeline(&self, pipeline_id: Uuid) -> Result<Vec<Build>> {
        Self::docs(
            self.table
                .query(&format!("PIPELINE#{pipeline_id}"), "BUILD#")
                .await?,
        )
        .await
    }

    // --- runs -----------------------------------------------------------------------------------

    fn run_item(run: &Run, version: u64) -> Result<Item> {
        let mut it = item(
            format!("RUN#{}", run.uuid),
            "RUN",
            Some(("RUNS".into(), index_sort_key(run.created, run.uuid))),
            encode(run)?,
        );
        it.version = version;
        Ok(it)
    }

    fn block_run_item(b: &BlockRun, index: usize, version: u64) -> Result<Item> {
        let mut it = item(
            format!("RUN#{}", b.run_uuid),
            &format!("BLOCK#{index:03}"),
            None,
            encode(b)?,
        );
        it.version = version;
        Ok(it)
    }

    /// Writes a new run with its block runs in one transaction. The run's integer id is claimed with a
    /// conditional write; if another run holds it, `reassign` gives the run (and its blocks) a new id and
    /// the write is tried again.
    pub async fn create_run(
        &self,
        run: &mut Run,
        blocks: &mut [BlockRun],
        mut reassign: impl FnMut(&mut Run, &mut [BlockRun]),
    ) -> Result<()> {
        for _ in 0..8 {
            let mut puts = vec![
                Put {
                    item: Self::run_item(run, 1)?,
                    condition: Condition::Absent,
                },
                Put {
                    item: item(
                        format!("RUNID#{}", run.id),
                        "RUNID",
                        None,
                        encode(&serde_json::json!({ "uuid": run.uuid }))?,
                    ),
                    condition: Condition::Absent,
                },
            ];
            for (i, b) in blocks.iter().enumerate() {
                puts.push(Put {
                    item: Self::block_run_item(b, i, 1)?,
                    condition: Condition::Absent,
                });
            }
            match self.table.write(puts).await {
                Ok(()) => return Ok(()),
                Err(WriteError::ConditionFailed) => reassign(run, blocks),
                Err(WriteError::Other(e)) => return Err(e),
            }
        }
        Err(Error::Internal(
            "could not claim a run id after 8 tries".into(),
        ))
    }

    /// A run with its block runs, and the run item's version.
    pub async fn get_run(&self, uuid: Uuid) -> Result<Option<Versioned<RunDetail>>> {
        let items = self.table.query(&format!("RUN#{uuid}"), "").await?;
        let Some(run_item) = items.iter().find(|i| i.sk == "RUN") else {
            return Ok(None);
        };
        let run: Run = decode(run_item)?;
        let blocks: Vec<BlockRun> = items
            .iter()
            .filter(|i| i.sk.starts_with("BLOCK#"))
            .map(decode)
            .collect::<Result<_>>()?;
        Ok(Some(Versioned {
            value: RunDetail { run, blocks },
            version: run_item.version,
        }))
    }

    pub async fn get_run_by_id(&self, id: i64) -> Result<Option<Versioned<RunDetail>>> {
        let Some(claim) = self.table.get(&format!("RUNID#{id}"), "RUNID").await? else {
            return Ok(None);
        };
        let v: serde_json::Value = decode(&claim)?;
        let uuid = v
            .get("uuid")
            .and_then(|u| u.as_str())
            .and_then(|u| Uuid::parse_str(u).ok())
            .ok_or_else(|| Error::Internal(format!("corrupt run id claim {id}")))?;
        self.get_run(uuid).await
    }

    pub async fn list_runs(&self) -> Result<Vec<Run>> {
        Self::docs(self.table.query_index("RUNS").await?).await
    }

    /// Replaces a run if it still has `version`; `false` if someone changed it first.
    pub async fn update_run(&self, run: &Run, version: u64) -> Result<bool> {
        let put = Put {
            item: Self::run_item(run, version + 1)?,
            condition: Condition::Version(version),
        };
        match self.table.write(vec![put]).await {
            Ok(()) => Ok(true),
            Err(WriteError::ConditionFailed) => Ok(false),
            Err(WriteError::Other(e)) => Err(e),
        }
    }

    /// Replaces the run and block runs together, each conditioned on the version it was read at.
    pub async fn update_run_and_blocks(
        &self,
        run: &Versioned<Run>,
        blocks: &[(usize, Versioned<BlockRun>)],
    ) -> Result<bool> {
        let mut puts = vec![Put {
            item: Self::run_item(&run.value, run.version + 1)?,
            condition: Condition::Version(run.version),
        }];
        for (i, b) in blocks {
            puts.push(Put {
                item: Self::block_run_item(&b.value, *i, b.version + 1)?,
                condition: Condition::Version(b.version),
            });
        }
        match self.table.write(puts).await {
            Ok(()) => Ok(true),
            Err(WriteError::ConditionFailed) => Ok(false),
            Err(WriteError::Other(e)) => Err(e),
        }
    }

    /// The block runs of a run with their versions and indexes.
    pub async fn block_runs(&self, run_uuid: Uuid) -> Result<Vec<(usize, Versioned<BlockRun>)>> {
        let items = self
            .table
            .query(&format!("RUN#{run_uuid}"), "BLOCK#")
            .await?;
        items
            .iter()
            .map(|i| {
                let index =
                    i.sk.trim_start_matches("BLOCK#")
                        .parse::<usize>()
                        .map_err(Error::internal)?;
                Ok((
                    index,
                    Versioned {
                        value: decode(i)?,
                        version: i.version,
                    },
                ))
            })
            .collect()
    }
}
