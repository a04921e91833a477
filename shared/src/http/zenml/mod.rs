//! The ZenML dialect (`/api/v1`): envelopes, pages and filters ([`envelope`], [`page`]) and one module
//! per resource; [`connect`] answers what the stock ZenML client reads to connect.

pub mod builds;
pub mod connect;
pub mod envelope;
pub mod page;
pub mod pipelines;
pub mod replay;
pub mod run_list;
pub mod runs;
pub mod snapshots;

use uuid::Uuid;

use crate::{Error, Result};

/// An `{id}` path parameter as a UUID: 422 naming the field if it is not one.
pub fn path_uuid(value: &str) -> Result<Uuid> {
    Uuid::parse_str(value).map_err(|_| Error::Unprocessable(format!("id: {value:?} is not a valid UUID")))
}
