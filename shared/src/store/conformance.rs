//! The conformance suite every `Table` passes through `Store`: run on the in-memory table by unit tests
//! and on DynamoDB Local by `tests/tests/stack.rs`. Each check panics with what differed.

use chrono::Utc;
use serde_json::Map;
use uuid::Uuid;

use super::table::{Condition, Put};
use super::{CreateOutcome, IdempotencyRecord, RunView, Store, Versioned};
use crate::clock::{block_run_id, new_int_id, Clock, SystemClock};
use crate::domain::pipeline::{Block, Executor, Pipeline};
use crate::domain::run::RunDetail;
use crate::domain::schedule::ScheduleFields;
use crate::domain::{ApiKey, BlockRun, BlockRunStatus, Build, Role, Run, RunStatus};
use crate::domain::{Schedule, ScheduleType};
use crate::Error;

fn pipeline(name: &str, version: &str) -> Pipeline {
    let now = SystemClock.now();
    Pipeline {
        id: Uuid::new_v4(),
        name: name.into(),
        version: version.into(),
        description: None,
        notifications: Vec::new(),
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

/// `got` with its run replaced by `run`, to write over the version read.
fn over(got: &Versioned<RunDetail>, run: &Run) -> Versioned<RunDetail> {
    Versioned {
        value: RunDetail { run: run.clone(), blocks: got.value.blocks.clone() },
        version: got.version,
    }
}

fn run_of(build: &Build, id: i64) -> (Run, Vec<BlockRun>) {
    let now = SystemClock.now();
    let uuid = Uuid::new_v4();
    let run = Run::new(build, uuid, id, "r".into(), now, now);
    let blocks = build
        .blocks
        .iter()
        .enumerate()
        .map(|(i, b)| BlockRun::new(uuid, id, i, &b.name, Map::new(), now))
        .collect();
    (run, blocks)
}

/// Runs every check against `store`, which must be empty.
pub async fn run_all(store: &Store) {
    api_keys(store).await;
    pipelines_and_builds(store).await;
    runs(store).await;
    schedules(store).await;
    run_views(store).await;
    run_pages(store).await;
    idempotency(store).await;
    idempotency_race(store).await;
    wake_index(store).await;
    write_limits(store).await;
    debounce_windows(store).await;
}

/// `Store::scan_view` (the ZenML run list) against the view read whole and filtered, for filters by
/// status, pipeline version, build and creation time, both ways, at every page size; `more` and the
/// exact total (status alone) too. The view is `run_pages`'s: 31 runs, created at their execution
/// dates, with pairs on one date, and some cancelled and running.
async fn view_scans(store: &Store, view: &RunView, build: &Build) {
    use super::{EntryFilter, TimeBound};
    let all = store.run_entries(view).await.expect("entries");
    let dates: Vec<_> = all.iter().map(|e| e.execution_date).collect();
    let (mid, late) = (dates[all.len() / 2], dates[4]);
    let bound = |at, inclusive| Some(TimeBound { at, inclusive });
    let filters = [
        EntryFilter::default(),
        EntryFilter { status: Some(RunStatus::Running), ..EntryFilter::default() },
        EntryFilter { status: Some(RunStatus::Failed), ..EntryFilter::default() },
        EntryFilter { pipeline_id: Some(build.pipeline_id), ..EntryFilter::default() },
        EntryFilter { pipeline_id: Some(Uuid::new_v4()), ..EntryFilter::default() },
        EntryFilter {
            build_id: Some(build.id),
            status: Some(RunStatus::Cancelled),
            ..EntryFilter::default()
        },
        EntryFilter { created_before: bound(mid, true), ..EntryFilter::default() },
        EntryFilter { created_before: bound(mid, false), ..EntryFilter::default() },
        EntryFilter { created_after: bound(mid, true), ..EntryFilter::default() },
        EntryFilter {
            created_after: bound(mid, false),
            created_before: bound(late, true),
            ..EntryFilter::default()
        },
        EntryFilter {
            created_after: bound(mid, true),
            created_before: bound(mid, true),
            ..EntryFilter::default()
        },
    ];
    for filter in filters {
        for oldest_first in [false, true] {
            let filter = EntryFilter { oldest_first, ..filter.clone() };
            let mut expected: Vec<i64> = all.iter().filter(|e| filter.keeps(e)).map(|e| e.id).collect();
            if oldest_first {
                expected.reverse();
            }
            for take in [0, 1, 3, 8, 9, 31, 40] {
                let scan = store.scan_view(view, &filter, take).await.expect("scan");
                let ids: Vec<i64> = scan.entries.iter().map(|e| e.id).collect();
                assert_eq!(ids, expected[..take.min(expected.len())], "{filter:?}, take {take}");
                assert_eq!(scan.more, expected.len() > take, "more: {filter:?}, take {take}");
                let by_status_only = filter.pipeline_id.is_none()
                    && filter.build_id.is_none()
                    && filter.created_after.is_none()
                    && filter.created_before.is_none();
                let total = by_status_only.then_some(expected.len() as i64);
                assert_eq!(scan.total, total, "total: {filter:?}");
                // The continuation after the last entry gives the rest, in order.
                let after = scan.entries.last().map(super::RunEntry::position);
                if let Some(after) = after {
                    let rest = EntryFilter { after: Some(after), ..filter.clone() };
                    let next = store.scan_view(view, &rest, 40).await.expect("scan after");
                    let ids: Vec<i64> = next.entries.iter().map(|e| e.id).collect();
                    assert_eq!(ids, expected[take.min(expected.len())..], "after: {filter:?}, take {take}");
                    assert!(!next.more && next.total.is_none());
                }
            }
        }
    }
}

/// A debounce window's versions (`flow::timing`): merges of an open window do not conflict with each
/// other (`Condition::VersionBetween`), and each conflicts with the close; a merge after the close fails.
async fn debounce_windows(store: &Store) {
    use crate::admission::{Scope, SlotsKey};
    use crate::flow::timing::{debounce_step, opened, Debounce, DebounceStep};
    let key = SlotsKey { scope: Scope::Schedule(7), flow_key: Some("main".into()) };
    let d = Debounce { period_s: 5, max_wait_s: None };
    let now = SystemClock.now();
    let p = pipeline("conf-debounce", "1");
    let (run, _) = run_of(&Build::initial(&p), 300);
    let DebounceStep::Open { version, condition, start_at } = debounce_step(None, &d, None, now) else {
        panic!("a first trigger opens a window")
    };
    let put = Store::window_put(&key, &opened(&run, start_at, now), version, condition).expect("put");
    assert!(store.merge_window(put.clone()).await.expect("open"), "the window opens");
    assert!(!store.merge_window(put).await.expect("again"), "opened once");
    let read = store.window(&key).await.expect("read").expect("window");
    let merge = |n: i64| {
        let DebounceStep::Merge { window, version, condition } =
            debounce_step(Some((&read.value, read.version)), &d, Some(&serde_json::json!(n)), now)
        else {
            panic!("an open window merges")
        };
        Store::window_put(&key, &window, version, condition).expect("put")
    };
    assert!(store.merge_window(merge(1)).await.expect("merge"), "a merge of what was read");
    assert!(store.merge_window(merge(2)).await.expect("merge"), "a second merge of the same read");
    let close = Store::window_close_put(&key, &read).expect("close");
    assert!(!store.merge_window(close).await.expect("close"), "the merges changed what the close read");
    let now_read = store.window(&key).await.expect("read").expect("window");
    assert_eq!(now_read.value.event_variables, Some(serde_json::json!(2)), "the last merge wins");
    let close = Store::window_close_put(&key, &now_read).expect("close");
    assert!(store.merge_window(close).await.expect("close"), "the close of what is there");
    assert!(!store.merge_window(merge(3)).await.expect("late merge"), "no merge after the close");
    let closed = store.window(&key).await.expect("read").expect("window");
    assert!(!closed.value.open);
    assert_eq!(closed.value.event_variables, Some(serde_json::json!(2)));
}

/// What DynamoDB refuses for size, both tables refuse alike, before writing anything: an item over
/// 400 KB, a transaction of 101 items, one over 4 MB; an item just under the limit is written.
async fn write_limits(store: &Store) {
    use super::table::{check_write_limits, Condition, Item, Put, MAX_ITEM_BYTES};
    let item = |sk: &str, doc_bytes: usize| Item {
        pk: "LIMITS".into(),
        sk: sk.into(),
        index: None,
        wake: None,
        version: 1,
        doc: "x".repeat(doc_bytes),
        expires_at: None,
    };
    let put = |i: Item| Put { item: i, condition: Condition::Always };
    let base = item("a", 0).size();
    let fits = item("fits", MAX_ITEM_BYTES - base - 4);
    assert!(fits.size() <= MAX_ITEM_BYTES);
    store.table().write(vec![put(fits)]).await.expect("an item under 400 KB is written");
    let too_large = |r: Result<(), super::table::WriteError>| {
        matches!(r, Err(super::table::WriteError::Other(Error::PayloadTooLarge(_))))
    };
    let over = store.table().write(vec![put(item("over", MAX_ITEM_BYTES))]).await;
    assert!(too_large(over), "an item over 400 KB is refused as too large");
    let many: Vec<Put> = (0..101).map(|i| put(item(&format!("many{i}"), 10))).collect();
    assert!(too_large(check_write_limits(&many, &[])), "101 items are refused");
    assert!(too_large(store.table().write(many).await), "101 items are refused");
    let heavy: Vec<Put> = (0..11).map(|i| put(item(&format!("heavy{i}"), 390 * 1024))).collect();
    assert!(too_large(store.table().write(heavy).await), "a transaction over 4 MB is refused");
    for sk in ["over", "many0", "many100", "heavy0"] {
        assert!(store.table().get("LIMITS", sk).await.expect("get").is_none(), "a refused write wrote {sk}");
    }
    assert!(store.table().get("LIMITS", "fits").await.expect("get").is_some());
}

/// The wake index: unfinished runs come back by shard once their wake time has passed, a claim moves
/// the wake time once however often it is tried, and finished runs leave the index.
async fn wake_index(store: &Store) {
    let p = pipeline("wake", "1");
    let build = Build::initial(&p);
    store.create_pipeline(&p, &build).await.expect("pipeline");
    let now = SystemClock.now();
    let mut made = Vec::new();
    for (offset_s, finished) in [(-10, false), (3600, false), (-20, true)] {
        let (mut run, mut blocks) = run_of(&build, new_int_id(now));
        run.wake_at = Some(now + chrono::Duration::seconds(offset_s));
        // Ids drawn in the same 10 ms can collide: the next one then.
        let next_id = |r: &mut Run, b: &mut [BlockRun]| {
            r.id += 1;
            for (i, x) in b.iter_mut().enumerate() {
                (x.id, x.run_id) = (block_run_id(r.id, i), r.id);
            }
        };
        store.create_run(&mut run, &mut blocks, None, next_id).await.expect("create");
        if finished {
            let got = store.get_run(run.uuid).await.expect("get").expect("run");
            let mut done = got.value.run.clone();
            done.status = RunStatus::Completed;
            assert!(store.update_run(&over(&got, &done), RunStatus::Initial).await.expect("finish"));
        }
        made.push(run);
    }
    let (due, later, finished) = (&made[0], &made[1], &made[2]);
    let read = store.get_run(later.uuid).await.expect("get").expect("run").value.run;
    assert_eq!(read.wake_at.map(|t| t.timestamp()), later.wake_at.map(|t| t.timestamp()), "read back");

    let mut found = Vec::new();
    for shard in 0..super::WAKE_SHARDS {
        for d in store.due_runs(shard, now, 100).await.expect("due runs") {
            assert_eq!(super::wake_shard(d.uuid), shard, "a run is in its own shard");
            found.push(d);
        }
    }
    assert_eq!(found.iter().map(|d| d.uuid).collect::<Vec<_>>(), vec![due.uuid], "only the due run");
    assert!(!found.iter().any(|d| d.uuid == finished.uuid), "finished runs leave the index");

    let claim = &found[0];
    let next = now + chrono::Duration::minutes(5);
    assert!(store.claim_due_run(claim, next).await.expect("claim"), "the first claim wins");
    assert!(!store.claim_due_run(claim, next).await.expect("claim again"), "a second claim loses");
    let shard = super::wake_shard(due.uuid);
    assert!(store.due_runs(shard, now, 100).await.expect("due").is_empty(), "claimed runs wait again");
    let moved = store.due_runs(shard, next, 100).await.expect("due");
    assert_eq!(moved.iter().map(|d| d.uuid).collect::<Vec<_>>(), vec![due.uuid], "due again at its new time");
}

async fn api_keys(store: &Store) {
    let (secret, key) = ApiKey::generate(Role::Read, "conformance", Utc::now());
    store.put_api_key(&key).await.expect("put key");
    let found = store.find_api_key(&secret).await.expect("find key");
    assert_eq!(found.map(|k| k.role), Some(Role::Read), "a stored key is found by its secret");
    assert_eq!(store.find_api_key("kk_not-a-key").await.expect("find"), None, "a wrong secret finds nothing");
}

async fn pipelines_and_builds(store: &Store) {
    let p1 = pipeline("conf-pipe", "1");
    let b1 = Build::initial(&p1);
    store.create_pipeline(&p1, &b1).await.expect("create pipeline");
    assert_eq!(store.get_pipeline(p1.id).await.expect("get"), Some(p1.clone()));

    // Same (name, version): 409, and nothing of the second attempt is written.
    let dup = pipeline("conf-pipe", "1");
    let dup_build = Build::initial(&dup);
    let err = store.create_pipeline(&dup, &dup_build).await.expect_err("duplicate version");
    assert!(matches!(err, Error::Conflict(_)), "duplicate is a conflict: {err:?}");
    assert_eq!(store.get_pipeline(dup.id).await.expect("get"), None, "a refused pipeline is not stored");
    assert_eq!(store.get_build(dup_build.id).await.expect("get"), None, "a refused build is not stored");

    let p2 = pipeline("conf-pipe", "2");
    store.create_pipeline(&p2, &Build::initial(&p2)).await.expect("second version");
    let mut versions: Vec<String> = store
        .pipeline_versions("conf-pipe")
        .await
        .expect("versions")
        .into_iter()
        .map(|p| p.version)
        .collect();
    versions.sort();
    assert_eq!(versions, ["1", "2"]);
    assert!(store.pipeline_versions("no-such").await.expect("versions").is_empty());

    let mut b2 = Build::initial(&p1);
    b2.id = Uuid::new_v4();
    b2.created = b1.created + chrono::Duration::seconds(1);
    store.create_build(&b2).await.expect("create build");
    let of_p1: Vec<Uuid> =
        store.builds_of_pipeline(p1.id).await.expect("builds").into_iter().map(|b| b.id).collect();
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
        .create_run(&mut run, &mut blocks, None, |_, _| panic!("no collision expected"))
        .await
        .expect("create run");

    let got = store.get_run(run.uuid).await.expect("get run").expect("run exists");
    assert_eq!(got.value.run, run);
    assert_eq!(got.value.blocks, blocks, "block runs come back in order");
    let by_id = store.get_run_by_id(id).await.expect("by id").expect("found by id");
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
    assert_eq!(store.get_run_by_id(id + 7).await.expect("by id").map(|v| v.value.run.uuid), Some(other.uuid));
    assert_eq!(store.get_run_by_id(id).await.expect("by id").map(|v| v.value.run.uuid), Some(run.uuid));

    // Conditional update: the version read wins once; a stale one changes nothing.
    let mut running = got.value.run.clone();
    running.status = RunStatus::Running;
    assert!(store.update_run(&over(&got, &running), RunStatus::Initial).await.expect("update"));
    let mut stale = got.value.run.clone();
    stale.status = RunStatus::Failed;
    assert!(
        !store.update_run(&over(&got, &stale), RunStatus::Initial).await.expect("stale update"),
        "a stale write is refused"
    );
    let now = store.get_run(run.uuid).await.expect("get").expect("exists");
    assert_eq!(now.value.run.status, RunStatus::Running);

    // Run and blocks together, in the one run item: all or nothing.
    let mut cancelled = now.value.clone();
    cancelled.run.status = RunStatus::Cancelled;
    cancelled.blocks[0].status = BlockRunStatus::Cancelled;
    let stale_run = Versioned { value: cancelled.clone(), version: got.version };
    assert!(!store.update_run(&stale_run, RunStatus::Running).await.expect("stale"));
    let after = store.get_run(run.uuid).await.expect("get").expect("exists");
    assert_eq!(after.value.blocks[0].status, BlockRunStatus::Initial, "a refused write writes nothing");
    let fresh_run = Versioned { value: cancelled, version: now.version };
    assert!(store.update_run(&fresh_run, RunStatus::Running).await.expect("fresh"));
    let after = store.get_run(run.uuid).await.expect("get").expect("exists");
    assert_eq!(after.value.run.status, RunStatus::Cancelled);
    assert_eq!(after.value.blocks[0].status, BlockRunStatus::Cancelled);
    assert_eq!(after.value.blocks[1].status, BlockRunStatus::Initial);

    // One item holds the run and its block runs.
    let items = store.table().query(&format!("RUN#{}", run.uuid), "").await.expect("partition");
    assert_eq!(items.iter().map(|i| i.sk.as_str()).collect::<Vec<_>>(), ["RUN"]);

    // A run written before block runs moved into the run item (its block runs items of their own)
    // is read whole; its next write moves them in, and its old items are left unused (a query of
    // the run's partition still returns them).
    let (legacy, legacy_blocks) = run_of(&build, id + 9);
    let legacy_put = |sk: String, doc: String| Put {
        item: super::item(format!("RUN#{}", legacy.uuid), &sk, None, doc),
        condition: Condition::Absent,
    };
    let mut puts = vec![legacy_put("RUN".into(), serde_json::to_string(&legacy).expect("json"))];
    for (i, b) in legacy_blocks.iter().enumerate() {
        // As block runs were stored then: with their ids.
        let mut doc = serde_json::to_value(b).expect("json");
        doc["id"] = b.id.into();
        doc["run_id"] = b.run_id.into();
        doc["run_uuid"] = b.run_uuid.to_string().into();
        doc["created"] = serde_json::to_value(b.created).expect("time");
        puts.push(legacy_put(format!("BLOCK#{i:03}"), doc.to_string()));
    }
    store.table().write(puts).await.expect("legacy items");
    let read = store.get_run(legacy.uuid).await.expect("get").expect("legacy run");
    assert_eq!((&read.value.run, &read.value.blocks), (&legacy, &legacy_blocks), "a legacy run reads whole");
    let mut moved = read.value.clone();
    moved.blocks[1].status = BlockRunStatus::Running;
    let moved = Versioned { value: moved, version: read.version };
    assert!(store.update_run(&moved, RunStatus::Initial).await.expect("legacy update"));
    let read = store.get_run(legacy.uuid).await.expect("get").expect("legacy run");
    assert_eq!(read.value, moved.value, "its next write holds the block runs");

    let listed = store.list_runs().await.expect("list runs");
    assert_eq!(listed.len(), 2, "the legacy run was written without its list entries");
    let entries = store.run_entries(&RunView::Pipeline("conf-runs".into())).await.expect("entries");
    assert_eq!(entries.len(), 2, "both runs are in their pipeline's view");
}

async fn schedules(store: &Store) {
    let now = SystemClock.now();
    let fields = |name: &str| ScheduleFields {
        name: Some(name.into()),
        schedule_type: Some(ScheduleType::Api),
        ..ScheduleFields::default()
    };
    let a = Schedule::create(11, "conf-pipe", fields("a"), "t".repeat(32), now).expect("schedule");
    assert!(store.create_schedule(&a).await.expect("create"));
    let taken = Schedule::create(11, "conf-pipe", fields("b"), "u".repeat(32), now).expect("schedule");
    assert!(!store.create_schedule(&taken).await.expect("create"), "a taken id is refused");
    let b = Schedule::create(12, "other", fields("b"), "u".repeat(32), now + chrono::Duration::seconds(1))
        .expect("schedule");
    assert!(store.create_schedule(&b).await.expect("create"));

    let got = store.get_schedule(11).await.expect("get").expect("exists");
    assert_eq!(got.value, a);
    let mut renamed = got.value.clone();
    renamed.name = "renamed".into();
    assert!(store.update_schedule(&renamed, got.version).await.expect("update"));
    assert!(!store.update_schedule(&renamed, got.version).await.expect("stale"), "a stale update is refused");
    let ids: Vec<i64> = store.list_schedules().await.expect("list").into_iter().map(|s| s.id).collect();
    assert_eq!(ids, [11, 12], "schedules list oldest first");

    let now11 = store.get_schedule(11).await.expect("get").expect("exists");
    assert!(!store.delete_schedule(11, got.version).await.expect("stale delete"));
    assert!(store.delete_schedule(11, now11.version).await.expect("delete"));
    assert!(store.get_schedule(11).await.expect("get").is_none());
    assert_eq!(store.list_schedules().await.expect("list").len(), 1);
    fire_index(store).await;
}

/// The fire index holds only schedules that can fire, in one fixed-width date form: a schedule whose
/// next time is past the year 9999 (`%Y` would write `+10000-…`, sorting before every real date) is
/// not in it, and the due ones are found past it.
async fn fire_index(store: &Store) {
    use super::schedules::fire_shard;
    use crate::domain::ScheduleStatus;
    let now = SystemClock.now();
    let far =
        chrono::NaiveDate::from_ymd_opt(10_000, 1, 1).and_then(|d| d.and_hms_opt(0, 0, 0)).expect("date");
    let mut shard_mates = Vec::new();
    for (id, next) in
        [(8_000_000_i64, Some(far.and_utc())), (8_000_008, Some(now - chrono::Duration::seconds(5)))]
    {
        let fields = ScheduleFields {
            name: Some("fire".into()),
            schedule_interval: Some("@daily".into()),
            ..ScheduleFields::default()
        };
        let mut s = Schedule::create(id, "conf-fire", fields, "f".repeat(32), now).expect("schedule");
        s.status = ScheduleStatus::Active;
        s.next_run_at = next;
        assert!(store.create_schedule(&s).await.expect("create"));
        shard_mates.push(id);
    }
    assert_eq!(fire_shard(shard_mates[0]), fire_shard(shard_mates[1]), "one shard");
    let due = store.due_schedules(fire_shard(8_000_000), now, 1).await.expect("due");
    assert_eq!(due, [8_000_008], "the far-future schedule is not in the index; the due one is found first");
    for id in shard_mates {
        let s = store.get_schedule(id).await.expect("get").expect("exists");
        assert!(store.delete_schedule(id, s.version).await.expect("delete"));
    }
}

async fn run_views(store: &Store) {
    let p = pipeline("conf-views", "1");
    let build = Build::initial(&p);
    store.create_pipeline(&p, &build).await.expect("pipeline");
    let base = Utc::now();
    // Execution dates out of creation order, two on the same date (ordered by id then).
    let plan = [(0, 100, Some(7)), (5, 101, Some(7)), (5, 102, None), (-3, 103, Some(8))];
    for (minutes, id, schedule) in plan {
        let (mut run, mut blocks) = run_of(&build, id);
        run.execution_date = base + chrono::Duration::minutes(minutes);
        run.schedule_id = schedule;
        store.create_run(&mut run, &mut blocks, None, |_, _| panic!("no collision")).await.expect("run");
    }
    let ids = |v: Vec<super::RunEntry>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
    let all: Vec<i64> = ids(store.run_entries(&RunView::All).await.expect("all"))
        .into_iter()
        .filter(|id| (100..104).contains(id))
        .collect();
    assert_eq!(all, [102, 101, 100, 103], "execution date desc, then id desc");
    assert_eq!(ids(store.run_entries(&RunView::Schedule(7)).await.expect("7")), [101, 100]);
    assert_eq!(
        ids(store.run_entries(&RunView::Pipeline("conf-views".into())).await.expect("p")),
        [102, 101, 100, 103]
    );
    assert!(store.run_entries(&RunView::Schedule(9)).await.expect("none").is_empty());

    // A backfill's run is in the backfill's view, which keeps no counters (it is read whole).
    let (mut run, mut blocks) = run_of(&build, 104);
    run.backfill_id = Some(5);
    store.create_run(&mut run, &mut blocks, None, |_, _| panic!("no collision")).await.expect("run");
    assert_eq!(ids(store.run_entries(&RunView::Backfill(5)).await.expect("backfill")), [104]);
    let shard = 104 % super::VIEW_SHARDS;
    let keys: Vec<(String, String)> = ["PIPELINE#conf-views", "BACKFILL#5"]
        .iter()
        .map(|view| (format!("RUNCOUNT#{view}#{shard}"), "COUNT".to_string()))
        .collect();
    let counters = store.table().get_counters(&keys).await.expect("counters");
    assert!(!counters[0].is_empty(), "the pipeline's view counts it");
    assert!(counters[1].is_empty(), "no counter item for a backfill's view");
    assert!(store.run_count(&RunView::Backfill(5), None).await.is_err(), "its count is read off its entries");

    // A status change shows in the views.
    let run = store.get_run_by_id(101).await.expect("get").expect("exists");
    let mut changed = run.value.run.clone();
    changed.status = RunStatus::Cancelled;
    assert!(store.update_run(&over(&run, &changed), run.value.run.status).await.expect("update"));
    let entry = store.run_entries(&RunView::Schedule(7)).await.expect("7").remove(0);
    assert_eq!((entry.id, entry.status), (101, RunStatus::Cancelled));
}

/// Paging a view spread over every shard: first, middle, last and past-the-end pages, counts that stay
/// exact through a colliding id, cancels and a retry (a finished run running again), status filters.
async fn run_pages(store: &Store) {
    let p = pipeline("conf-pages", "1");
    let build = Build::initial(&p);
    store.create_pipeline(&p, &build).await.expect("pipeline");
    let view = RunView::Schedule(4242);
    let base = Utc::now();
    // 30 runs, ids 5000..5030 (every shard), execution dates interleaved with ids, pairs on one date.
    for id in 5000..5030i64 {
        let (mut run, mut blocks) = run_of(&build, id);
        run.execution_date = base + chrono::Duration::minutes((id * 7) % 15);
        run.created = run.execution_date;
        run.schedule_id = Some(4242);
        store.create_run(&mut run, &mut blocks, None, |_, _| panic!("no collision")).await.expect("run");
    }
    // One more that draws a taken id: renumbered once, counted once.
    let (mut run, mut blocks) = run_of(&build, 5000);
    run.execution_date = base + chrono::Duration::minutes(20);
    run.created = run.execution_date;
    run.schedule_id = Some(4242);
    store
        .create_run(&mut run, &mut blocks, None, |r, b| {
            r.id = 5030;
            for (i, x) in b.iter_mut().enumerate() {
                (x.id, x.run_id) = (block_run_id(5030, i), 5030);
            }
        })
        .await
        .expect("colliding run");
    let mut expected: Vec<(chrono::DateTime<Utc>, i64)> =
        store.run_entries(&view).await.expect("entries").iter().map(|e| (e.execution_date, e.id)).collect();
    assert_eq!(expected.len(), 31);
    let mut sorted = expected.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(expected, sorted, "a view spanning every shard reads back in order");
    expected.truncate(31);
    let page = |offset: usize, limit: usize, status: Option<RunStatus>| {
        let view = view.clone();
        async move { store.run_page(&view, status, offset, limit).await.expect("page") }
    };
    let ids = |p: &super::RunPage| p.entries.iter().map(|e| e.id).collect::<Vec<_>>();
    let want = |from: usize, to: usize| expected[from..to].iter().map(|e| e.1).collect::<Vec<_>>();
    for (offset, limit, to) in
        [(0, 10, 10), (10, 10, 20), (21, 10, 31), (30, 10, 31), (31, 10, 31), (40, 5, 31), (0, 31, 31)]
    {
        let got = page(offset, limit, None).await;
        assert_eq!(got.count, 31, "count at offset {offset}");
        assert_eq!(ids(&got), want(offset.min(31), to), "offset {offset} limit {limit}");
    }
    assert_eq!(store.run_count(&view, None).await.expect("count"), 31);
    assert_eq!(store.run_count(&RunView::Schedule(4243), None).await.expect("count"), 0);
    // Cursors: page after page, each from the last one's cursor, reads every entry once, in order.
    for limit in [1, 4, 10, 31] {
        let mut got = Vec::new();
        let mut page = store.run_page(&view, None, 0, limit).await.expect("first page");
        loop {
            got.extend(ids(&page));
            let Some(cursor) = page.cursor.clone() else { break };
            assert!(super::valid_cursor(&cursor), "{cursor}");
            page = store.run_page_after(&view, None, &cursor, limit).await.expect("page after");
            assert_eq!(page.count, 31);
        }
        assert_eq!(got, want(0, 31), "cursor pages of {limit}");
    }
    assert!(!super::valid_cursor("x#1") && !super::valid_cursor("20240101T000000000000#12"));

    // Cancel 7 of them, run 5 and fail one; then retry the failed one (finished, then running again).
    let mut by_status = std::collections::HashMap::new();
    for (n, (_, id)) in expected.iter().enumerate() {
        let got = store.get_run_by_id(*id).await.expect("get").expect("run");
        let status = match n {
            0..=6 => RunStatus::Cancelled,
            7..=11 => RunStatus::Running,
            12 => RunStatus::Failed,
            _ => continue,
        };
        let mut changed = got.value.run.clone();
        changed.status = status;
        assert!(store.update_run(&over(&got, &changed), RunStatus::Initial).await.expect("update"));
        by_status.insert(*id, status);
    }
    let failed = expected[12].1;
    let got = store.get_run_by_id(failed).await.expect("get").expect("run");
    let mut again = got.value.run.clone();
    again.status = RunStatus::Running;
    assert!(store.update_run(&over(&got, &again), RunStatus::Failed).await.expect("retry"));
    // A refused (stale) write moves no counter.
    assert!(!store.update_run(&over(&got, &again), RunStatus::Failed).await.expect("stale"));
    for (status, n) in [
        (RunStatus::Cancelled, 7),
        (RunStatus::Running, 6),
        (RunStatus::Failed, 0),
        (RunStatus::Initial, 18),
        (RunStatus::Completed, 0),
    ] {
        assert_eq!(store.run_count(&view, Some(status)).await.expect("count"), n, "{status:?}");
        assert_eq!(
            store.run_count(&RunView::Pipeline("conf-pages".into()), Some(status)).await.expect("count"),
            n
        );
    }
    assert_eq!(store.run_count(&view, None).await.expect("count"), 31, "status changes keep the total");
    let running = page(0, 4, Some(RunStatus::Running)).await;
    assert_eq!(running.count, 6);
    let mut want_running: Vec<i64> = expected[7..13].iter().map(|e| e.1).collect();
    assert_eq!(ids(&running), want_running[..4]);
    assert_eq!(ids(&page(4, 4, Some(RunStatus::Running)).await), want_running.split_off(4));
    assert!(page(6, 4, Some(RunStatus::Running)).await.entries.is_empty(), "past the end");
    let failed_page = page(0, 10, Some(RunStatus::Failed)).await;
    assert_eq!((failed_page.count, failed_page.entries.len()), (0, 0));
    view_scans(store, &view, &build).await;
    // A view whose newest runs all lie in one shard (ids 8 apart) and its oldest in the others: a page
    // takes more than its share from that shard, and the oldest-first pages from the others.
    let skewed = RunView::Schedule(4244);
    for n in 0..40i64 {
        let id = if n < 30 { 9000 + 8 * n } else { 9500 + n };
        let (mut run, mut blocks) = run_of(&build, id);
        run.execution_date = base + chrono::Duration::seconds(if n < 30 { 100 + n } else { n - 30 });
        run.created = run.execution_date;
        run.schedule_id = Some(4244);
        store.create_run(&mut run, &mut blocks, None, |_, _| panic!("no collision")).await.expect("run");
    }
    view_scans(store, &skewed, &build).await;
    let newest: Vec<i64> = store.run_entries(&skewed).await.expect("entries").iter().map(|e| e.id).collect();
    for (offset, limit) in [(0, 10), (5, 20), (25, 10), (0, 40)] {
        let got = store.run_page(&skewed, None, offset, limit).await.expect("page");
        let ids: Vec<i64> = got.entries.iter().map(|e| e.id).collect();
        assert_eq!(ids, newest[offset..(offset + limit).min(40)], "skewed page {offset}+{limit}");
    }
}

fn record(key: &str, hash: &str, run: Uuid) -> IdempotencyRecord {
    IdempotencyRecord {
        scope: "schedule:1".into(),
        key: key.into(),
        request_hash: hash.into(),
        run_uuid: run,
        created: SystemClock.now(),
    }
}

async fn idempotency(store: &Store) {
    let p = pipeline("conf-idem", "1");
    let build = Build::initial(&p);
    store.create_pipeline(&p, &build).await.expect("pipeline");
    let (mut first, mut first_blocks) = run_of(&build, 200);
    let rec = record("key-1", "h1", first.uuid);
    let outcome =
        store.create_run(&mut first, &mut first_blocks, Some(&rec), |_, _| panic!("no collision")).await;
    assert_eq!(outcome.expect("first"), CreateOutcome::Created);

    let (mut again, mut again_blocks) = run_of(&build, 201);
    let rec2 = record("key-1", "h2", again.uuid);
    let outcome =
        store.create_run(&mut again, &mut again_blocks, Some(&rec2), |_, _| {}).await.expect("again");
    match outcome {
        CreateOutcome::Replayed(earlier) => {
            assert_eq!(earlier.run_uuid, first.uuid);
            assert_eq!(earlier.request_hash, "h1");
        }
        other => panic!("a used key is replayed, got {other:?}"),
    }
    assert!(store.get_run(again.uuid).await.expect("get").is_none(), "a replay writes no run");
    assert!(store.get_run_by_id(201).await.expect("get").is_none());

    // After the window the key is free again.
    let mut late = record("key-1", "h3", Uuid::new_v4());
    late.created = SystemClock.now() + chrono::Duration::hours(25);
    let (mut third, mut third_blocks) = run_of(&build, 202);
    late.run_uuid = third.uuid;
    let outcome =
        store.create_run(&mut third, &mut third_blocks, Some(&late), |_, _| {}).await.expect("late");
    assert_eq!(outcome, CreateOutcome::Created, "an expired key counts as unused");
}

/// Many concurrent triggers with one key: exactly one run is written, every caller learns its id.
async fn idempotency_race(store: &Store) {
    let p = pipeline("conf-race", "1");
    let build = Build::initial(&p);
    store.create_pipeline(&p, &build).await.expect("pipeline");
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = store.clone();
        let build = build.clone();
        tasks.push(tokio::spawn(async move {
            let (mut run, mut blocks) = run_of(&build, 300 + i);
            let rec = record("race", "same", run.uuid);
            let outcome = store
                .create_run(&mut run, &mut blocks, Some(&rec), |r, b| {
                    r.id += 1000;
                    for (j, x) in b.iter_mut().enumerate() {
                        x.id = block_run_id(r.id, j);
                        x.run_id = r.id;
                    }
                })
                .await
                .expect("create");
            match outcome {
                CreateOutcome::Created => run.uuid,
                CreateOutcome::Replayed(r) => r.run_uuid,
                CreateOutcome::Conflict => panic!("no fire, no conflict"),
            }
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        winners.push(t.await.expect("task"));
    }
    winners.dedup();
    assert_eq!(winners.len(), 1, "every caller gets the same run: {winners:?}");
    let runs = store.run_entries(&RunView::Pipeline("conf-race".into())).await.expect("entries");
    assert_eq!(runs.len(), 1, "exactly one run is written");
    assert_eq!(runs[0].uuid, winners[0]);
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn memory_store_conforms() {
        super::run_all(&super::Store::memory()).await;
    }
}
