//! `GET /api/v1/runs`: ZenML's run list, a page of the store's run list views (`store::RunView`).
//!
//! The filters people page by — `pipeline_id`, `build_id`, `status` (each `equals`) and `created`
//! ranges (`gt`, `gte`, `lt`, `lte`, `equals`), joined by `and`, sorted by `created` either way (the
//! default: oldest first) — read one page of a view: the pipeline's when `pipeline_id` is given, else
//! all runs' ([`Store::scan_view`](crate::store::Store::scan_view)), then the runs on the page. The
//! order is the views' (execution date, then id), which is the creation order for every run started on
//! a ZenML route; a run whose execution date a schedule, backfill or Mage trigger set sorts and
//! bounds by that date. `total` is exact for a filter by `status` alone or none (the views' counters);
//! with any other filter it is the matches up to this page plus one when more follow, so that
//! `total_pages` always reaches one page past this one while there is one (ZenML's `depaginate` reads
//! it anew each page). Any other filter or operator (`name`, `id`, `contains`, `oneof`, `or`, …) is
//! tested on the runs read, in growing stretches of the same view. Sorted by a field no view is
//! ordered by (`id`, `name`, `status`, `updated`), the list filters and sorts the newest
//! [`SORT_WINDOW`] runs: a bounded read, where sorting every run would grow with history (and time
//! out past a few hundred thousand runs). `docs/zenml.md` says this to users.

use super::envelope;
use super::page::{FieldValue, ListQuery, Op};
use crate::domain::run::RunDetail;
use crate::domain::{Run, RunStatus};
use crate::http::{ApiRequest, ApiResponse};
use crate::store::{EntryFilter, RunEntry, RunView, TimeBound};
use crate::{App, Result};

fn field(r: &Run, name: &str) -> Option<FieldValue> {
    Some(match name {
        "id" => FieldValue::Text(r.uuid.to_string()),
        "name" => FieldValue::Text(r.name.clone()),
        "pipeline_id" => FieldValue::Text(r.pipeline_id.to_string()),
        "build_id" => FieldValue::Text(r.build_id.to_string()),
        "status" => FieldValue::Text(r.status.as_zenml().to_string()),
        "created" => FieldValue::Time(r.created),
        "updated" => FieldValue::Time(r.updated),
        _ => return None,
    })
}

/// How many of the newest runs a list sorted by a field no view is ordered by sorts.
pub const SORT_WINDOW: usize = 10_000;

/// How a query is answered.
enum Plan {
    /// A page of this view, through this filter; `on_runs`: the query has filters the view's entries
    /// cannot test, which are tested on the runs read.
    Scan { view: RunView, filter: EntryFilter, on_runs: bool },
    /// No run can match (an unknown status or pipeline, an id that is no UUID).
    Nothing,
    /// The newest [`SORT_WINDOW`] runs read, filtered and sorted here (a sort by anything but
    /// `created`).
    Window,
}

async fn plan(app: &App, q: &ListQuery) -> Result<Plan> {
    let (sort, descending) = q.sort();
    if sort != "created" {
        return Ok(Plan::Window);
    }
    let mut filter = EntryFilter { oldest_first: !descending, ..EntryFilter::default() };
    let mut view = RunView::All;
    let Some(filters) = q.all_of() else { return Ok(Plan::Scan { view, filter, on_runs: true }) };
    let mut on_runs = false;
    for (name, op, value) in filters {
        let uuid = || uuid::Uuid::parse_str(value).ok();
        match (name, op) {
            ("pipeline_id", Op::Equals) if filter.pipeline_id.is_none() => {
                let Some(pipeline) = uuid() else { return Ok(Plan::Nothing) };
                let Some(found) = app.store.get_pipeline(pipeline).await? else { return Ok(Plan::Nothing) };
                view = RunView::Pipeline(found.name);
                filter.pipeline_id = Some(pipeline);
            }
            ("build_id", Op::Equals) if filter.build_id.is_none() => {
                let Some(build) = uuid() else { return Ok(Plan::Nothing) };
                filter.build_id = Some(build);
            }
            ("status", Op::Equals) if filter.status.is_none() => {
                let Some(s) = RunStatus::ALL.into_iter().find(|s| s.as_zenml() == value) else {
                    return Ok(Plan::Nothing);
                };
                filter.status = Some(s);
            }
            ("created", Op::Gt | Op::Gte | Op::Lt | Op::Lte | Op::Equals) => {
                // `ListQuery::parse` checked that a time filter's value is a time.
                let Some(at) = super::page::parse_time(value) else { return Ok(Plan::Nothing) };
                let bound = |inclusive| Some(TimeBound { at, inclusive });
                let (after, before) = match op {
                    Op::Gt => (bound(false), None),
                    Op::Gte => (bound(true), None),
                    Op::Lt => (None, bound(false)),
                    Op::Lte => (None, bound(true)),
                    _ => (bound(true), bound(true)),
                };
                if (after.is_some() && filter.created_after.is_some())
                    || (before.is_some() && filter.created_before.is_some())
                {
                    on_runs = true; // a second bound on one side: tested on the runs
                    continue;
                }
                filter.created_after = filter.created_after.or(after);
                filter.created_before = filter.created_before.or(before);
            }
            _ => on_runs = true,
        }
    }
    Ok(Plan::Scan { view, filter, on_runs })
}

/// Runs of the page and the total (see the module docs) through a view, with the query's other
/// filters tested on the runs read: the view is read in growing stretches (×4), each after the last,
/// until the page and one more match, or the view ends; each run is read once.
async fn scan(
    app: &App,
    q: &ListQuery,
    view: &RunView,
    filter: &EntryFilter,
    on_runs: bool,
) -> Result<(Vec<RunDetail>, usize)> {
    let want = q.skipped().saturating_add(q.size);
    let mut stretch = EntryFilter { after: None, ..filter.clone() };
    let mut take = want.saturating_add(1);
    let mut matched: Vec<RunDetail> = Vec::new();
    loop {
        let scan = app.store.scan_view(view, &stretch, take).await?;
        let read = app.store.runs_of(&scan.entries).await?;
        matched.extend(read.into_iter().filter(|d| !on_runs || q.keeps(&|f| field(&d.run, f))));
        if !on_runs || matched.len() > want || !scan.more {
            let total = match scan.total.filter(|_| !on_runs) {
                Some(n) => usize::try_from(n).unwrap_or(0),
                None => matched.len().min(want) + usize::from(matched.len() > want || scan.more),
            };
            let page = matched.into_iter().skip(q.skipped()).take(q.size).collect();
            return Ok((page, total));
        }
        stretch.after = scan.entries.last().map(RunEntry::position);
        take = take.saturating_mul(4);
    }
}

pub async fn list(app: &App, req: &ApiRequest) -> Result<ApiResponse> {
    let q = ListQuery::parse(
        req,
        &["id", "pipeline_id", "build_id", "status", "name", "created"],
        &["created"],
        &["id", "name", "status", "created", "updated"],
    )?;
    let page = match plan(app, &q).await? {
        Plan::Nothing => q.page_of(0, Vec::new())?,
        Plan::Scan { view, filter, on_runs } => {
            let (details, total) = scan(app, &q, &view, &filter, on_runs).await?;
            q.page_of(total, details)?
        }
        Plan::Window => {
            let newest = EntryFilter::default();
            let window = app.store.scan_view(&RunView::All, &newest, SORT_WINDOW).await?;
            let runs = app.store.runs_of(&window.entries).await?;
            q.apply(runs, |d, f| field(&d.run, f), |d| d.run.uuid.to_string())?
        }
    };
    let mut json = page.to_json(|_| serde_json::Value::Null);
    json["items"] = page.items.iter().map(|d| envelope::run(d, q.hydrate)).collect();
    Ok(ApiResponse::ok(&json))
}
