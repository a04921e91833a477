//! ZenML list queries: `page`, `size`, `sort_by`, `logical_operator`, `hydrate` and filters with op
//! prefixes (`equals` default, `notequals`, `contains`, `startswith`, `endswith`, `gt`, `gte`, `lt`,
//! `lte`, `oneof` with a JSON list). An unknown op prefix makes the whole string a literal. Query
//! parameters that are neither a filter of the resource nor a list parameter are ignored, as ZenML's
//! server does.

use std::cmp::Ordering;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{json, Value};

use crate::http::ApiRequest;
use crate::{Error, Result};

/// A field's value, for filtering and sorting.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Text(String),
    Time(DateTime<Utc>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    Equals,
    NotEquals,
    Contains,
    StartsWith,
    EndsWith,
    Gt,
    Gte,
    Lt,
    Lte,
    OneOf,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "equals" => Op::Equals,
            "notequals" => Op::NotEquals,
            "contains" => Op::Contains,
            "startswith" => Op::StartsWith,
            "endswith" => Op::EndsWith,
            "gt" => Op::Gt,
            "gte" => Op::Gte,
            "lt" => Op::Lt,
            "lte" => Op::Lte,
            "oneof" => Op::OneOf,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
struct Filter {
    field: String,
    op: Op,
    value: String,
    /// `oneof`'s list.
    values: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ListQuery {
    pub page: usize,
    pub size: usize,
    pub hydrate: bool,
    sort_field: String,
    descending: bool,
    any: bool,
    filters: Vec<Filter>,
}

pub fn parse_bool(name: &str, v: &str) -> Result<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(Error::Unprocessable(format!("{name}: {v:?} is not a boolean"))),
    }
}

fn parse_int(name: &str, v: &str, min: usize, max: usize) -> Result<usize> {
    match v.parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(Error::Unprocessable(format!(
            "{name}: must be a whole number from {min} to {max}, got {v:?}"
        ))),
    }
}

/// The `hydrate` parameter, `default` when absent (lists: false; get-by-id: true).
pub fn hydrate(req: &ApiRequest, default: bool) -> Result<bool> {
    req.query_value("hydrate").map_or(Ok(default), |v| parse_bool("hydrate", v))
}

/// Parses a time as ZenML filters accept it.
pub fn parse_time(v: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(v, fmt) {
            return Some(t.and_utc());
        }
    }
    chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

impl ListQuery {
    /// Reads the list parameters; `filter_fields` are the resource's filters, `time_fields` those of
    /// them that are times, `sort_fields` what `sort_by` may name.
    pub fn parse(
        req: &ApiRequest,
        filter_fields: &[&str],
        time_fields: &[&str],
        sort_fields: &[&str],
    ) -> Result<Self> {
        let mut q = ListQuery {
            page: 1,
            size: 20,
            hydrate: false,
            sort_field: "created".into(),
            descending: false,
            any: false,
            filters: Vec::new(),
        };
        for (k, v) in &req.query {
            match k.as_str() {
                "page" => q.page = parse_int("page", v, 1, 1_000_000)?,
                "size" => q.size = parse_int("size", v, 1, 1000)?,
                "hydrate" => q.hydrate = parse_bool("hydrate", v)?,
                "logical_operator" => {
                    q.any = match v.as_str() {
                        "and" => false,
                        "or" => true,
                        _ => {
                            return Err(Error::Unprocessable(format!(
                                "logical_operator: use and or or, got {v:?}"
                            )))
                        }
                    }
                }
                "sort_by" => {
                    let (dir, field) = match v.split_once(':') {
                        Some(("asc", f)) => (false, f),
                        Some(("desc", f)) => (true, f),
                        _ => (false, v.as_str()),
                    };
                    if !sort_fields.contains(&field) {
                        return Err(Error::Unprocessable(format!(
                            "sort_by: cannot sort by {field:?}; use one of {}",
                            sort_fields.join(", ")
                        )));
                    }
                    q.descending = dir;
                    q.sort_field = field.to_string();
                }
                field if filter_fields.contains(&field) => {
                    let (op, value) =
                        match v.split_once(':').and_then(|(o, rest)| Op::parse(o).map(|o| (o, rest))) {
                            Some((op, rest)) => (op, rest.to_string()),
                            None => (Op::Equals, v.clone()),
                        };
                    let values = if op == Op::OneOf {
                        let list: Vec<Value> = serde_json::from_str(&value).map_err(|_| {
                            Error::Unprocessable(format!("{field}: oneof takes a JSON list, got {value:?}"))
                        })?;
                        list.iter()
                            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                            .collect()
                    } else {
                        Vec::new()
                    };
                    if time_fields.contains(&field)
                        && op != Op::OneOf
                        && !matches!(op, Op::Contains | Op::StartsWith | Op::EndsWith)
                        && parse_time(&value).is_none()
                    {
                        return Err(Error::Unprocessable(format!(
                            "{field}: {value:?} is not a date and time"
                        )));
                    }
                    q.filters.push(Filter { field: field.to_string(), op, value, values });
                }
                _ => {}
            }
        }
        // The items skipped before the page, as Mage's `_offset` is bounded.
        let skipped = (q.page - 1).saturating_mul(q.size);
        if skipped > crate::domain::bounds::MAX_OFFSET {
            return Err(Error::Unprocessable(format!(
                "page: (page - 1) x size skips at most {} items, got {skipped}",
                crate::domain::bounds::MAX_OFFSET
            )));
        }
        Ok(q)
    }

    /// The filters as `(field, op, value)`, when an item must pass all of them (`logical_operator`
    /// `and`, or one filter); `None` for `or` over several.
    pub fn all_of(&self) -> Option<Vec<(&str, Op, &str)>> {
        if self.any && self.filters.len() > 1 {
            return None;
        }
        Some(self.filters.iter().map(|f| (f.field.as_str(), f.op, f.value.as_str())).collect())
    }

    /// The field the list is sorted by, and whether descending.
    pub fn sort(&self) -> (&str, bool) {
        (&self.sort_field, self.descending)
    }

    /// How many items come before the page.
    pub fn skipped(&self) -> usize {
        (self.page - 1).saturating_mul(self.size)
    }

    /// The page of a list of `total` items whose items on this page are `items`: a 400 for a page past
    /// the last, as ZenML answers.
    pub fn page_of<T>(&self, total: usize, items: Vec<T>) -> Result<Page<T>> {
        let total_pages = total.div_ceil(self.size).max(1);
        if self.page > total_pages {
            return Err(Error::BadRequest(format!(
                "Invalid page {}. The requested page size is {} and there are a total of {total} items for this query. The maximum page value therefore is {total_pages}.",
                self.page, self.size
            )));
        }
        Ok(Page { index: self.page, max_size: self.size, total_pages, total, items })
    }

    /// Forgets the filters on `fields` (a handler that read only the matching items already).
    pub fn drop_filters(&mut self, fields: &[&str]) {
        self.filters.retain(|f| !fields.contains(&f.field.as_str()));
    }

    /// Whether an item passes the filters; `get` reads its fields.
    pub fn keeps(&self, get: &impl Fn(&str) -> Option<FieldValue>) -> bool {
        if self.filters.is_empty() {
            return true;
        }
        let mut results = self.filters.iter().map(|f| matches(f, get(&f.field)));
        if self.any {
            results.any(|r| r)
        } else {
            results.all(|r| r)
        }
    }

    /// Filters, sorts (ties by id) and cuts one page; `get` reads a field of an item, `id` its id.
    pub fn apply<T>(
        &self,
        items: Vec<T>,
        get: impl Fn(&T, &str) -> Option<FieldValue>,
        id: impl Fn(&T) -> String,
    ) -> Result<Page<T>> {
        let mut kept: Vec<T> = items.into_iter().filter(|it| self.keeps(&|f| get(it, f))).collect();
        kept.sort_by(|a, b| {
            let ord =
                compare(get(a, &self.sort_field), get(b, &self.sort_field)).then_with(|| id(a).cmp(&id(b)));
            if self.descending {
                ord.reverse()
            } else {
                ord
            }
        });
        let total = kept.len();
        let items = kept.into_iter().skip(self.skipped()).take(self.size).collect();
        self.page_of(total, items)
    }
}

/// One page of a list.
#[derive(Debug)]
pub struct Page<T> {
    pub index: usize,
    pub max_size: usize,
    pub total_pages: usize,
    pub total: usize,
    pub items: Vec<T>,
}

impl<T> Page<T> {
    pub fn to_json(&self, render: impl Fn(&T) -> Value) -> Value {
        json!({
            "index": self.index,
            "max_size": self.max_size,
            "total_pages": self.total_pages,
            "total": self.total,
            "items": self.items.iter().map(render).collect::<Vec<_>>(),
        })
    }
}

/// Numbers compare as numbers ("9" < "45"), times as times, the rest as text.
fn compare(a: Option<FieldValue>, b: Option<FieldValue>) -> Ordering {
    match (a, b) {
        (Some(FieldValue::Time(x)), Some(FieldValue::Time(y))) => x.cmp(&y),
        (Some(FieldValue::Text(x)), Some(FieldValue::Text(y))) => {
            match (x.parse::<f64>(), y.parse::<f64>()) {
                (Ok(p), Ok(q)) => p.partial_cmp(&q).unwrap_or(Ordering::Equal),
                _ => x.cmp(&y),
            }
        }
        (a, b) => a.is_some().cmp(&b.is_some()),
    }
}

fn matches(f: &Filter, actual: Option<FieldValue>) -> bool {
    let Some(actual) = actual else {
        return f.op == Op::NotEquals;
    };
    let text = match &actual {
        FieldValue::Text(t) => t.clone(),
        FieldValue::Time(t) => t.format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
    };
    let wanted = || match &actual {
        FieldValue::Time(_) => parse_time(&f.value).map(FieldValue::Time),
        FieldValue::Text(_) => Some(FieldValue::Text(f.value.clone())),
    };
    let eq = |t: &str, v: &str| match &actual {
        // UUIDs are case-insensitive.
        FieldValue::Text(_) => t.eq_ignore_ascii_case(v),
        FieldValue::Time(_) => false,
    };
    let cmp = || compare(Some(actual.clone()), wanted());
    match f.op {
        Op::Equals => match &actual {
            FieldValue::Time(_) => cmp() == Ordering::Equal,
            FieldValue::Text(_) => eq(&text, &f.value),
        },
        Op::NotEquals => match &actual {
            FieldValue::Time(_) => cmp() != Ordering::Equal,
            FieldValue::Text(_) => !eq(&text, &f.value),
        },
        Op::Contains => text.contains(&f.value),
        Op::StartsWith => text.starts_with(&f.value),
        Op::EndsWith => text.ends_with(&f.value),
        Op::Gt => cmp() == Ordering::Greater,
        Op::Gte => cmp() != Ordering::Less,
        Op::Lt => cmp() == Ordering::Less,
        Op::Lte => cmp() != Ordering::Greater,
        Op::OneOf => f.values.iter().any(|v| eq(&text, v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::{HeaderMap, Method};

    fn query(q: &str) -> Result<ListQuery> {
        let req = ApiRequest::new(Method::GET, &format!("/x?{q}"), HeaderMap::new(), Bytes::new());
        ListQuery::parse(&req, &["name", "version", "created"], &["created"], &["created", "name", "version"])
    }

    fn items() -> Vec<(String, String)> {
        vec![("alpha".into(), "9".into()), ("beta".into(), "45".into()), ("gamma".into(), "100".into())]
    }

    fn run(q: &str) -> Vec<String> {
        let page = query(q)
            .unwrap()
            .apply(
                items(),
                |(n, v), f| match f {
                    "name" => Some(FieldValue::Text(n.clone())),
                    "version" => Some(FieldValue::Text(v.clone())),
                    _ => None,
                },
                |(n, _)| n.clone(),
            )
            .unwrap();
        page.items.into_iter().map(|(n, _)| n).collect()
    }

    #[test]
    fn ops_filter_as_zenml_does() {
        assert_eq!(run("name=beta"), ["beta"]);
        assert_eq!(run("name=notequals:beta"), ["alpha", "gamma"]);
        assert_eq!(run("name=contains:a"), ["alpha", "beta", "gamma"]);
        assert_eq!(run("name=startswith:g"), ["gamma"]);
        assert_eq!(run("name=endswith:ta"), ["beta"]);
        assert_eq!(run("version=gt:10&sort_by=version"), ["beta", "gamma"]);
        assert_eq!(run("version=lte:45&sort_by=desc:version"), ["beta", "alpha"]);
        assert_eq!(run("name=oneof:[\"alpha\",\"gamma\"]"), ["alpha", "gamma"]);
        assert_eq!(run("name=alpha&version=100&logical_operator=or&sort_by=name"), ["alpha", "gamma"]);
        assert!(run("name=alpha&version=100").is_empty());
        // An unknown op prefix is part of the literal.
        assert!(run("name=weird:alpha").is_empty());
    }

    #[test]
    fn paging_parameters_are_checked() {
        assert!(query("page=0").is_err());
        assert!(query("size=0").is_err());
        assert!(query("size=100000").is_err());
        assert!(query("size=abc").is_err());
        assert!(query("sort_by=nope").is_err());
        assert!(query("logical_operator=xor").is_err());
        assert!(query("hydrate=maybe").is_err());
        assert!(query("created=gt:notatime").is_err());
        assert!(query("name=oneof:notjson").is_err());
        assert!(query("unknown=1").is_ok());
    }

    #[test]
    fn pages_cut_and_count() {
        let q = query("size=2&page=2&sort_by=name").unwrap();
        let page =
            q.apply(items(), |(n, _), _| Some(FieldValue::Text(n.clone())), |(n, _)| n.clone()).unwrap();
        assert_eq!((page.index, page.max_size, page.total_pages, page.total), (2, 2, 2, 3));
        assert_eq!(page.items.len(), 1);
        let past = query("page=3&size=2").unwrap();
        assert!(past.apply(items(), |_, _| None, |(n, _)| n.clone()).is_err());
    }
}
