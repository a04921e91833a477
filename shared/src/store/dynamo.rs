//! The DynamoDB `Table`: one table, keys and index as `store::table` defines them.
//!
//! A single put is a `PutItem` with a condition expression; several are one `TransactWriteItems`
//! (all or nothing). Queries page through `LastEvaluatedKey` until done, except the wake index's, which
//! is one `Query` with a `Limit` (the sweep takes what is due a page at a time). Moving a wake time is
//! one conditional `UpdateItem`. Reads of one item are strongly consistent; index queries are
//! eventually consistent, as GSIs are.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
    KeysAndAttributes, Projection, ProjectionType, ScalarAttributeType, TransactWriteItem,
};
use aws_sdk_dynamodb::Client;

use super::table::*;
use crate::error::{causes, from_sdk, is_busy_code};
use crate::{Error, Result};

/// Where a client sends its requests, for messages: its endpoint URL, or AWS's in its region.
fn endpoint_of(client: &Client) -> String {
    let conf = client.config();
    match std::env::var("AWS_ENDPOINT_URL_DYNAMODB").or_else(|_| std::env::var("AWS_ENDPOINT_URL")) {
        Ok(url) if !url.is_empty() => url,
        _ => format!("AWS, region {}", conf.region().map_or("not set", |r| r.as_ref())),
    }
}

#[derive(Clone)]
pub struct DynamoTable {
    client: Client,
    table: String,
}

impl DynamoTable {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    pub fn table_name(&self) -> &str {
        &self.table
    }

    /// Whether the table exists: `false` if DynamoDB says so; an error of one line if DynamoDB cannot be
    /// asked (an endpoint that does not answer, no credentials).
    pub async fn exists(&self) -> Result<bool> {
        match self.client.describe_table().table_name(&self.table).send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => Ok(false),
            Err(e) => Err(Error::Internal(format!(
                "cannot reach DynamoDB ({}): {}",
                endpoint_of(&self.client),
                causes(&e)
            ))),
        }
    }

    /// Creates the table as `infra/template.yaml` declares it (on-demand, both indexes, TTL on
    /// `expires_at`) and waits until it is active: for local runs (`kickoff table create`) and tests.
    pub async fn create(&self) -> Result<()> {
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(Error::internal)
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder().attribute_name(name).key_type(kind).build().map_err(Error::internal)
        };
        let gsi = |name: &str, pk: &str, sk: &str, projection: ProjectionType| {
            GlobalSecondaryIndex::builder()
                .index_name(name)
                .key_schema(key(pk, KeyType::Hash)?)
                .key_schema(key(sk, KeyType::Range)?)
                .projection(Projection::builder().projection_type(projection).build())
                .build()
                .map_err(Error::internal)
        };
        let index = gsi(INDEX_NAME, INDEX_PARTITION_KEY, INDEX_SORT_KEY, ProjectionType::All)?;
        let wake = gsi(WAKE_INDEX_NAME, WAKE_PARTITION_KEY, WAKE_SORT_KEY, ProjectionType::KeysOnly)?;
        self.client
            .create_table()
            .table_name(&self.table)
            .attribute_definitions(attr(PARTITION_KEY)?)
            .attribute_definitions(attr(SORT_KEY)?)
            .attribute_definitions(attr(INDEX_PARTITION_KEY)?)
            .attribute_definitions(attr(INDEX_SORT_KEY)?)
            .attribute_definitions(attr(WAKE_PARTITION_KEY)?)
            .attribute_definitions(attr(WAKE_SORT_KEY)?)
            .key_schema(key(PARTITION_KEY, KeyType::Hash)?)
            .key_schema(key(SORT_KEY, KeyType::Range)?)
            .global_secondary_indexes(index)
            .global_secondary_indexes(wake)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .map_err(from_sdk)?;
        for _ in 0..120 {
            let described = self.client.describe_table().table_name(&self.table).send().await;
            let status = described.ok().and_then(|d| d.table).and_then(|t| t.table_status);
            if status == Some(aws_sdk_dynamodb::types::TableStatus::Active) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        let ttl = aws_sdk_dynamodb::types::TimeToLiveSpecification::builder()
            .attribute_name(TTL_ATTRIBUTE)
            .enabled(true)
            .build()
            .map_err(Error::internal)?;
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(ttl)
            .send()
            .await
            .map_err(from_sdk)?;
        Ok(())
    }

    fn to_attributes(item: Item) -> HashMap<String, AttributeValue> {
        let mut m = HashMap::new();
        m.insert(PARTITION_KEY.to_string(), AttributeValue::S(item.pk));
        m.insert(SORT_KEY.to_string(), AttributeValue::S(item.sk));
        if let Some((p, s)) = item.index {
            m.insert(INDEX_PARTITION_KEY.to_string(), AttributeValue::S(p));
            m.insert(INDEX_SORT_KEY.to_string(), AttributeValue::S(s));
        }
        if let Some((p, s)) = item.wake {
            m.insert(WAKE_PARTITION_KEY.to_string(), AttributeValue::S(p));
            m.insert(WAKE_SORT_KEY.to_string(), AttributeValue::S(s));
        }
        m.insert(VERSION_ATTRIBUTE.to_string(), AttributeValue::N(item.version.to_string()));
        m.insert(DOC_ATTRIBUTE.to_string(), AttributeValue::S(item.doc));
        if let Some(t) = item.expires_at {
            m.insert(TTL_ATTRIBUTE.to_string(), AttributeValue::N(t.to_string()));
        }
        m
    }

    fn from_attributes(m: &HashMap<String, AttributeValue>) -> Result<Item> {
        let n = |name: &str| -> Option<i64> {
            m.get(name).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok())
        };
        Ok(Item {
            pk: string_attr(m, PARTITION_KEY)?,
            sk: string_attr(m, SORT_KEY)?,
            index: key_pair(m, INDEX_PARTITION_KEY, INDEX_SORT_KEY)?,
            wake: key_pair(m, WAKE_PARTITION_KEY, WAKE_SORT_KEY)?,
            version: n(VERSION_ATTRIBUTE).unwrap_or(0) as u64,
            doc: string_attr(m, DOC_ATTRIBUTE)?,
            expires_at: n(TTL_ATTRIBUTE),
        })
    }

    /// The condition expression of a write and the values it names, for the builders' `set_*` methods.
    fn condition(c: Condition) -> (Option<String>, Option<HashMap<String, AttributeValue>>) {
        let expected = |v: String| Some(HashMap::from([(":expected".to_string(), AttributeValue::N(v))]));
        match c {
            Condition::Always => (None, None),
            Condition::Absent => (Some(format!("attribute_not_exists({PARTITION_KEY})")), None),
            Condition::Version(v) => {
                (Some(format!("{VERSION_ATTRIBUTE} = :expected")), expected(v.to_string()))
            }
            Condition::AbsentOrExpired(now) => (
                Some(format!("attribute_not_exists({PARTITION_KEY}) OR {TTL_ATTRIBUTE} < :expected")),
                expected(now.to_string()),
            ),
            Condition::VersionBetween(lo, hi) => (
                Some(format!("{VERSION_ATTRIBUTE} BETWEEN :lo AND :hi")),
                Some(HashMap::from([
                    (":lo".to_string(), AttributeValue::N(lo.to_string())),
                    (":hi".to_string(), AttributeValue::N(hi.to_string())),
                ])),
            ),
        }
    }

    async fn put_one(&self, put: Put) -> Result<(), WriteError> {
        let (expr, values) = Self::condition(put.condition);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::to_attributes(put.item)))
            .set_condition_expression(expr)
            .set_expression_attribute_values(values)
            .send()
            .await;
        write_outcome(result, |e| e.is_conditional_check_failed_exception())
    }

    /// The `ADD` update of a counter item: its expression, names and values.
    fn add_expression(add: &Add) -> (String, HashMap<String, String>, HashMap<String, AttributeValue>) {
        let mut parts = Vec::with_capacity(add.counts.len());
        let (mut names, mut values) = (HashMap::new(), HashMap::new());
        for (i, (name, n)) in add.counts.iter().enumerate() {
            parts.push(format!("#c{i} :c{i}"));
            names.insert(format!("#c{i}"), format!("{COUNTER_PREFIX}{name}"));
            values.insert(format!(":c{i}"), AttributeValue::N(n.to_string()));
        }
        (format!("ADD {}", parts.join(", ")), names, values)
    }

    async fn add_one(&self, add: Add) -> Result<(), WriteError> {
        let (expr, names, values) = Self::add_expression(&add);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, AttributeValue::S(add.pk))
            .key(SORT_KEY, AttributeValue::S(add.sk))
            .update_expression(expr)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        write_outcome(result, |e| e.is_conditional_check_failed_exception())
    }

    async fn put_many(&self, puts: Vec<Put>, adds: Vec<Add>) -> Result<(), WriteError> {
        let mut items = Vec::with_capacity(puts.len() + adds.len());
        for add in adds {
            let (expr, names, values) = Self::add_expression(&add);
            let u = aws_sdk_dynamodb::types::Update::builder()
                .table_name(&self.table)
                .key(PARTITION_KEY, AttributeValue::S(add.pk))
                .key(SORT_KEY, AttributeValue::S(add.sk))
                .update_expression(expr)
                .set_expression_attribute_names(Some(names))
                .set_expression_attribute_values(Some(values))
                .build()
                .map_err(Error::internal)?;
            items.push(TransactWriteItem::builder().update(u).build());
        }
        for put in puts {
            let (expr, values) = Self::condition(put.condition);
            let p = aws_sdk_dynamodb::types::Put::builder()
                .table_name(&self.table)
                .set_item(Some(Self::to_attributes(put.item)))
                .set_condition_expression(expr)
                .set_expression_attribute_values(values)
                .build()
                .map_err(Error::internal)?;
            items.push(TransactWriteItem::builder().put(p).build());
        }
        // Another transaction on the same items makes DynamoDB cancel with `TransactionConflict`;
        // try again a few times, then report it as a failed condition (someone else is writing).
        for attempt in 0..4u64 {
            let res = self.client.transact_write_items().set_transact_items(Some(items.clone())).send().await;
            let err = match res {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            let reasons: Vec<String> = err
                .as_service_error()
                .and_then(|s| match s {
                    aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c) => {
                        Some(c.cancellation_reasons().iter().filter_map(|r| r.code().map(str::to_string)).collect())
                    }
                    _ => None,
                })
                .unwrap_or_default();
            if reasons.iter().any(|r| r == "ConditionalCheckFailed") {
                return Err(WriteError::ConditionFailed);
            }
            let conflict = reasons.iter().any(|r| r == "TransactionConflict")
                || err.as_service_error().is_some_and(|s| s.is_transaction_in_progress_exception());
            if !conflict {
                if reasons.iter().any(|r| is_busy_code(Some(r))) {
                    let text = aws_sdk_dynamodb::error::DisplayErrorContext(err).to_string();
                    return Err(Error::Unavailable(text).into());
                }
                return Err(from_sdk(err).into());
            }
            tokio::time::sleep(std::time::Duration::from_millis(20 * (attempt + 1))).await;
        }
        Err(WriteError::ConditionFailed)
    }

    async fn run_query(&self, index: bool, pk: &str, sk_prefix: &str) -> Result<Vec<Item>> {
        let mut out = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let mut q = self
                .client
                .query()
                .table_name(&self.table)
                .expression_attribute_values(":pk", AttributeValue::S(pk.to_string()))
                .set_exclusive_start_key(start.take());
            if index {
                q = q.index_name(INDEX_NAME).key_condition_expression(format!("{INDEX_PARTITION_KEY} = :pk"));
            } else if sk_prefix.is_empty() {
                q = q.key_condition_expression(format!("{PARTITION_KEY} = :pk")).consistent_read(true);
            } else {
                q = q
                    .key_condition_expression(format!(
                        "{PARTITION_KEY} = :pk AND begins_with({SORT_KEY}, :prefix)"
                    ))
                    .expression_attribute_values(":prefix", AttributeValue::S(sk_prefix.to_string()))
                    .consistent_read(true);
            }
            let page = q.send().await.map_err(from_sdk)?;
            for m in page.items() {
                out.push(Self::from_attributes(m)?);
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        Ok(out)
    }
}

/// A string attribute an item must have.
fn string_attr(m: &HashMap<String, AttributeValue>, name: &str) -> Result<String> {
    m.get(name)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .ok_or_else(|| Error::Internal(format!("item without string attribute {name}")))
}

/// An index's key pair, when the item is in that index.
fn key_pair(m: &HashMap<String, AttributeValue>, pk: &str, sk: &str) -> Result<Option<(String, String)>> {
    match (m.get(pk), m.get(sk)) {
        (Some(_), Some(_)) => Ok(Some((string_attr(m, pk)?, string_attr(m, sk)?))),
        _ => Ok(None),
    }
}

/// A single write's result: a failed condition, or another error.
fn write_outcome<T, E, R>(
    result: std::result::Result<T, aws_sdk_dynamodb::error::SdkError<E, R>>,
    condition_failed: impl Fn(&E) -> bool,
) -> Result<(), WriteError>
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.as_service_error().is_some_and(condition_failed) => Err(WriteError::ConditionFailed),
        Err(e) => Err(Error::internal(aws_sdk_dynamodb::error::DisplayErrorContext(e)).into()),
    }
}

#[async_trait]
impl Table for DynamoTable {
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, AttributeValue::S(pk.to_string()))
            .key(SORT_KEY, AttributeValue::S(sk.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(from_sdk)?;
        out.item().map(Self::from_attributes).transpose()
    }

    async fn write_counted(&self, mut puts: Vec<Put>, mut adds: Vec<Add>) -> Result<(), WriteError> {
        check_write_limits(&puts, &adds)?;
        match (puts.len(), adds.len()) {
            (0, 0) => Ok(()),
            (1, 0) => self.put_one(puts.remove(0)).await,
            (0, 1) => self.add_one(adds.remove(0)).await,
            _ => self.put_many(puts, adds).await,
        }
    }

    async fn get_counters(&self, keys: &[(String, String)]) -> Result<Vec<BTreeMap<String, i64>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let key = |(pk, sk): &(String, String)| {
            HashMap::from([
                (PARTITION_KEY.to_string(), AttributeValue::S(pk.clone())),
                (SORT_KEY.to_string(), AttributeValue::S(sk.clone())),
            ])
        };
        let mut pending: Vec<HashMap<String, AttributeValue>> = keys.iter().map(key).collect();
        let mut found: HashMap<(String, String), BTreeMap<String, i64>> = HashMap::new();
        // DynamoDB may return some keys as unprocessed under load; ask again for those.
        for attempt in 0..8u64 {
            let request = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut pending)))
                .consistent_read(true)
                .build()
                .map_err(Error::internal)?;
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(from_sdk)?;
            for m in out.responses().and_then(|r| r.get(&self.table)).into_iter().flatten() {
                let counters = m
                    .iter()
                    .filter_map(|(name, v)| {
                        let n = v.as_n().ok()?.parse().ok()?;
                        Some((name.strip_prefix(COUNTER_PREFIX)?.to_string(), n))
                    })
                    .collect();
                found.insert((string_attr(m, PARTITION_KEY)?, string_attr(m, SORT_KEY)?), counters);
            }
            pending = out
                .unprocessed_keys()
                .and_then(|u| u.get(&self.table))
                .map(|k| k.keys().to_vec())
                .unwrap_or_default();
            if pending.is_empty() {
                return Ok(keys.iter().map(|k| found.remove(k).unwrap_or_default()).collect());
            }
            tokio::time::sleep(std::time::Duration::from_millis(10 * (attempt + 1))).await;
        }
        Err(Error::Internal("DynamoDB left counter reads unprocessed 8 times".into()))
    }

    async fn query_page(
        &self,
        pk: &str,
        descending: bool,
        limit: usize,
        after: Option<&str>,
    ) -> Result<Page> {
        let start = after.map(|sk| {
            HashMap::from([
                (PARTITION_KEY.to_string(), AttributeValue::S(pk.to_string())),
                (SORT_KEY.to_string(), AttributeValue::S(sk.to_string())),
            ])
        });
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression(format!("{PARTITION_KEY} = :pk"))
            .expression_attribute_values(":pk", AttributeValue::S(pk.to_string()))
            .scan_index_forward(!descending)
            .limit(i32::try_from(limit.clamp(1, 1000)).unwrap_or(1000))
            .set_exclusive_start_key(start)
            .consistent_read(true)
            .send()
            .await
            .map_err(from_sdk)?;
        let items = out.items().iter().map(Self::from_attributes).collect::<Result<Vec<_>>>()?;
        let last = match out.last_evaluated_key() {
            Some(k) if !k.is_empty() => Some(string_attr(k, SORT_KEY)?),
            _ => None,
        };
        Ok(Page { items, last })
    }

    async fn delete(&self, pk: &str, sk: &str, condition: Condition) -> Result<(), WriteError> {
        let (expr, values) = Self::condition(condition);
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, AttributeValue::S(pk.to_string()))
            .key(SORT_KEY, AttributeValue::S(sk.to_string()))
            .set_condition_expression(expr)
            .set_expression_attribute_values(values)
            .send()
            .await;
        write_outcome(result, |e| e.is_conditional_check_failed_exception())
    }

    async fn query(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Item>> {
        self.run_query(false, pk, sk_prefix).await
    }

    async fn query_index(&self, index_pk: &str) -> Result<Vec<Item>> {
        self.run_query(true, index_pk, "").await
    }

    async fn query_wake(&self, wake_pk: &str, until: &str, limit: usize) -> Result<Vec<WakeEntry>> {
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(WAKE_INDEX_NAME)
            .key_condition_expression(format!("{WAKE_PARTITION_KEY} = :pk AND {WAKE_SORT_KEY} <= :until"))
            .expression_attribute_values(":pk", AttributeValue::S(wake_pk.to_string()))
            .expression_attribute_values(":until", AttributeValue::S(until.to_string()))
            .limit(i32::try_from(limit.clamp(1, 1000)).unwrap_or(1000))
            .send()
            .await
            .map_err(from_sdk)?;
        page.items()
            .iter()
            .map(|m| {
                Ok(WakeEntry {
                    pk: string_attr(m, PARTITION_KEY)?,
                    sk: string_attr(m, SORT_KEY)?,
                    wake: string_attr(m, WAKE_SORT_KEY)?,
                })
            })
            .collect()
    }

    async fn move_wake(&self, pk: &str, sk: &str, seen: &str, next: &str) -> Result<(), WriteError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, AttributeValue::S(pk.to_string()))
            .key(SORT_KEY, AttributeValue::S(sk.to_string()))
            .update_expression(format!("SET {WAKE_SORT_KEY} = :next"))
            .condition_expression(format!("{WAKE_SORT_KEY} = :seen"))
            .expression_attribute_values(":next", AttributeValue::S(next.to_string()))
            .expression_attribute_values(":seen", AttributeValue::S(seen.to_string()))
            .send()
            .await;
        write_outcome(result, |e| e.is_conditional_check_failed_exception())
    }
}
