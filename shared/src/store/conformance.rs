//! The conformance suite every `Table` passes through `Store`: run on the in-memory table by unit tests
//! and on DynamoDB Local by `tests/tests/stack.rs`. Each check panics with what differed.

use chrono::Utc;
use serde_json::Map;
use uuid::Uuid;

use super::{Store, Versioned};
use crate::clock::{block_run_id, new_int_id, Clock, SystemClock};
use crate::domain::pipeline::{Block, Executor, Pipeline};
use crate::domain::{ApiKey, BlockRun, BlockRunStatus, Build, Role, Run, RunStatus};
use crate::Error;

fn pipeline(name: &str, version: &str) -> Pipeline {
    let now = SystemClock.now();
    Pipeline {
        id: Uuid::new_v4(),
        name: name.into(),
        version: version.into(),
        description: None,
        blocks: vec![
            Block {
                name: "a".into(),
                upstream: vec![],
                parameters: Map::new(),
                executor: Executor::Noop {},
                retries: 0,
                delay_s: 5,
                max_delay_s: 300,
                timeout_s: None,
            },
            Block {
                name: "b".into(),
                upstream: vec!["a".into()],
                parameters: Map::new(),
                executor: Executor::Noop {},
                retries: 0,
                delay_s: 5,
                max_delay_s: 300,
                timeout_s: None,
            },
        ],
        created: now,
        updated: now,
    }
}

fn run_of(build: &Build, id: i64) -> (Run, Vec<BlockRun>) {
    let now = SystemClock.now();
    let uuid = Uuid::new_v4();
    let run = Run {
        uuid,
        id,
        name: "r".into(),
        build_id: build.id,
        pipeline_id: build.pipeline_id,
        pipeline_name: build.pipeline_name.clone(),
        pipeline_version: build.pipeline_version.clone(),
        schedule_id: None,
        backfill_id: None,
        status: RunStatus::Initial,
        execution_date: now,
        variables: None,
        event_variables: None,
        config: Map::new(),
        passed_sla: false,
        metrics: None,
        started_at: None,
        completed_at: None,
        created: now,
        updated: now,
    };
    let blocks = build
        .blocks
        .iter()
        .enumerate()
        .map(|(i, b)| BlockRun {
            id: block_run_id(id, i),
            run_id: id,
            run_uuid: uuid,
            block_uuid: b.name.clone(),
            status: BlockRunStatus::Initial,
            attempts: 0,
            parameters: Map::new(),
            metrics: None,
            started_at: None,
            completed_at: None,
            created: now,
            updated: now,
        })
        .collect();
    (run, blocks)
}

/// Runs every check against `store`, which must be empty.
pub async fn run_all(store: &Store) {
    api_keys(store).await;
    pipelines_and_builds(store).await;
    runs(store).await;
}

async fn api_keys(store: &Store) {
    let (secret, key) = ApiKey::generate(Role::Read, "conformance", Utc::now());
    store.put_api_key(&key).await.expect("put key");
    let found = store.find_api_key(&secret).await.expect("find key");
    assert_eq!(
        found.map(|k| k.role),
        Some(Role::Read),
        "a stored key is found by its secret"
    );
    assert_eq!(
        store.find_api_key("kk_not-a-key").await.expect("find"),
        None,
        "a wrong secret finds nothing"
    );
}

async fn pipelines_and_builds(store: &Store) {
    let p1 = pipeline("conf-pipe", "1");
    let b1 = Build::initial(&p1);
    store
        .create_pipeline(&p1, &b1)
        .await
        .expect("create pipeline");
    assert_eq!(
        store.get_pipeline(p1.id).await.expect("get"),
        Some(p1.clone())
    );

    // Same (name, version): 409, and nothing of the second attempt is written.
    let dup = pipeline("conf-pipe", "1");
    let dup_build = Build::initial(&dup);
    let err = store
        .create_pipeline(&dup, &dup_build)
        .await
        .expect_err("duplicate version");
    assert!(
        matches!(err, Error::Conflict(_)),
        "duplicate is a conflict: {err:?}"
    );
    assert_eq!(
        store.get_pipeline(dup.id).await.expect("get"),
        None,
        "a refused pipeline is not stored"
    );
    assert_eq!(
        store.get_build(dup_build.id).await.expect("get"),
        None,
        "a refused build is not stored"
    );

    let p2 = pipeline("conf-pipe", "2");
    store
        .create_pipeline(&p2, &Build::initial(&p2))
        .await
        .expect("second version");
    let mut versions: Vec<String> = store
        .pipeline_versions("conf-pipe")
        .await
        .expect("versions")
        .into_iter()
        .map(|p| p.version)
        .collect();
    versions.sort();
    assert_eq!(versions, ["1", "2"]);
    assert!(store
        .pipeline_versions("no-such")
        .await
        .expect("versions")
        .is_empty());

    let mut b2 = Build::initial(&p1);
    b2.id = Uuid::new_v4();
    b2.created = b1.created + chrono::Duration::seconds(1);
    store.create_build(&b2).await.expect("create build");
    let of_p1: Vec<Uuid> = store
        .builds_of_pipeline(p1.id)
        .await
        .expect("builds")
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(of_p1, [b1.id, b2.id], "a pipeline's builds, oldest first");
    assert_eq!(store.get_build(b2.id).await.expect("get"), Some(b2.clone()));

    let listed = store.list_pipelines().await.expect("list");
    assert!(listed.iter().any(|p| p.id == p1.id) && listed.iter().any(|p| p.id == p2.id));
    assert_eq!(listed.len(), 2, "only pipelines are listed: {listed:?}");
    assert_eq!(store.list_builds().await.expect("list builds").len(), 3);
}

async fn runs(store: &Store) {
    let p = pipeline("conf-runs", "1");
    let build = Build::initial(&p);
    store.create_pipeline(&p, &build).await.expect("pipeline");

    let id = new_int_id(Utc::now());
    let (mut run, mut blocks) = run_of(&build, id);
    store
        .create_run(&mut run, &mut blocks, None, |_, _| {
            panic!("no collision expected")
        })
        .await
        .expect("create run");

    let got = store
        .get_run(run.uuid)
        .await
        .expect("get run")
        .expect("run exists");
    assert_eq!(got.value.run, run);
    assert_eq!(got.value.blocks, blocks, "block runs come back in order");
    let by_id = store
        .get_run_by_id(id)
        .await
        .expect("by id")
        .expect("found by id");
    assert_eq!(by_id.value.run.uuid, run.uuid);
    assert!(store.get_run_by_id(id + 1).await.expect("by id").is_none());

    // A second run that draws the same integer id is renumbered, not lost or merged.
    let (mut other, mut other_blocks) = run_of(&build, id);
    let mut reassigned = 0;
    store
        .create_run(&mut other, &mut other_blocks, None, |r, b| {
            reassigned += 1;
            r.id = id + 7;
            for (i, x) in b.iter_mut().enumerate() {
                x.id = block_run_id(id + 7, i);
                x.run_id = id + 7;
            }
        })
        .await
        .expect("create colliding run");
    assert_eq!(reassigned, 1, "the collision is noticed once");
    assert_eq!(
        store
            .get_run_by_id(id + 7)
            .await
            .expect("by id")
            .map(|v| v.value.run.uuid),
        Some(other.uuid)
    );
    assert_eq!(
        store
            .get_run_by_id(id)
            .await
            .expect("by id")
            .map(|v| v.value.run.uuid),
        Some(run.uuid)
    );

    // Conditional update: the version read wins once; a stale one changes nothing.
    let mut running = got.value.run.clone();
    running.status = RunStatus::Running;
    assert!(store
        .update_run(&running, got.version)
        .await
        .expect("update"));
    let mut stale = got.value.run.clone();
    stale.status = RunStatus::Failed;
    assert!(
        !store
            .update_run(&stale, got.version)
            .await
            .expect("stale update"),
        "a stale write is refused"
    );
    let now = store.get_run(run.uuid).await.expect("get").expect("exists");
    assert_eq!(now.value.run.status, RunStatus::Running);

    // Run and blocks together: all or nothing.
    let mut block_versions = store.block_runs(run.uuid).await.expect("block runs");
    assert_eq!(block_versions.len(), 2);
    block_versions[0].1.value.status = BlockRunStatus::Cancelled;
    let mut cancelled = now.value.run.clone();
    cancelled.status = RunStatus::Cancelled;
    let stale_run = Versioned {
        value: cancelled.clone(),
        version: got.version,
    };
    assert!(!store
        .update_run_and_blocks(&stale_run, &block_versions[..1])
        .await
        .expect("stale"));
    let after = store.get_run(run.uuid).await.expect("get").expect("exists");
    assert_eq!(
        after.value.blocks[0].status,
        BlockRunStatus::Initial,
        "a refused transaction writes nothing"
    );
    let fresh_run = Versioned {
        value: cancelled,
        version: now.version,
    };
    assert!(store
        .update_run_and_blocks(&fresh_run, &block_versions[..1])
        .await
        .expect("fresh"));
    let after = store.get_run(run.uuid).await.expect("get").expect("exists");
    assert_eq!(after.value.run.status, RunStatus::Cancelled);
    assert_eq!(after.value.blocks[0].status, BlockRunStatus::Cancelled);
    assert_eq!(after.value.blocks[1].status, BlockRunStatus::Initial);

    let listed = store.list_runs().await.expect("list runs");
    assert_eq!(listed.len(), 2);
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn memory_store_conforms() {
        super::run_all(&super::Store::memory()).await;
    }
}
