//! `?wait=<seconds>` (SPEC §10): a trigger or a get-run answers when the run finishes — 200 with the
//! finished run — or, when the time is up first, 202 with the run as it stands and a `Location` to poll.
//! 1 to 25 seconds (API Gateway ends a request at 30); the run is read at most every 500 ms.

use std::time::Duration;

use http::StatusCode;

use super::{ApiRequest, ApiResponse};
use crate::domain::run::RunDetail;
use crate::{App, Error, Result};

pub const MAX_WAIT_S: u64 = 25;
/// How often a waiting request reads its run.
pub const POLL: Duration = Duration::from_millis(500);

/// The request's `wait`: `None` without one, 422 unless a whole number of seconds from 1 to 25.
pub fn param(req: &ApiRequest) -> Result<Option<Duration>> {
    let Some(v) = req.query_value("wait") else { return Ok(None) };
    match v.parse::<u64>() {
        Ok(s) if (1..=MAX_WAIT_S).contains(&s) => Ok(Some(Duration::from_secs(s))),
        _ => Err(Error::Unprocessable(format!(
            "wait: a whole number of seconds from 1 to {MAX_WAIT_S}, got {v:?}"
        ))),
    }
}

/// The run `detail` once it has finished, or as it stands when `limit` is up (read every 500 ms).
pub async fn until_finished(app: &App, mut detail: RunDetail, limit: Duration) -> Result<RunDetail> {
    let deadline = tokio::time::Instant::now() + limit;
    while !detail.run.status.is_finished() {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            break;
        }
        tokio::time::sleep(POLL.min(deadline - now)).await;
        if let Some(d) = app.store.get_run(detail.run.uuid).await? {
            detail = d.value;
        }
    }
    Ok(detail)
}

/// The answer to a request that may wait (`wait`, read with [`param`] before anything was written):
/// `render` of the run — at once without `wait`; else once it finished (200) or the time is up (202
/// with `Location: location`).
pub async fn respond<F, Fut>(
    app: &App,
    wait: Option<Duration>,
    detail: RunDetail,
    location: String,
    render: F,
) -> Result<ApiResponse>
where
    F: FnOnce(RunDetail) -> Fut,
    Fut: std::future::Future<Output = Result<ApiResponse>>,
{
    let Some(limit) = wait else { return render(detail).await };
    let detail = until_finished(app, detail, limit).await?;
    let finished = detail.run.status.is_finished();
    let mut resp = render(detail).await?;
    if !finished {
        resp.status = StatusCode::ACCEPTED;
        resp.headers.push(("location", location));
    }
    Ok(resp)
}
