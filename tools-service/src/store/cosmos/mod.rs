//! The Cosmos DB backend (`azure_data_cosmos`, NoSQL API): customer data partitioned by customer.
//!
//! Four containers, each partitioned on `/pk` (the model is in [`docs`]):
//! - `customers`: every record of a customer (profile, subscriptions, invoices, payments, usage,
//!   security log, orders, tickets, incidents) in the customer's partition, so each read of
//!   [`CustomerData`] is a point read or a query within one partition, and each write that
//!   depends on the state is a transactional batch within it;
//! - `lookup`: `subscription-<id>` and `invoice-<id>` to their customer, what
//!   [`CustomerData::owner`] point-reads;
//! - `catalog`: products, promotions, knowledge documents, one partition each, and the
//!   embeddings of each model in a partition of their own;
//! - `counters`: the next id of payments, security-log entries and tickets, incremented on the
//!   server so concurrent writers never take the same id.
//!
//! State-dependent writes are optimistic: read the document (its ETag), decide with the domain's
//! rule, write conditioned on the ETag; on a conflict (412) read and decide again, a bounded
//! number of times with a jittered wait.
//!
//! [`customers`] serves the customer data, [`catalog`] the catalogue and the knowledge base,
//! [`load`] seeding.

mod catalog;
mod customers;
mod docs;
mod load;

use std::{
    hash::{BuildHasher, RandomState},
    sync::Arc,
    time::Duration,
};

use async_trait::async_trait;
use azure_data_cosmos::{
    AccountEndpoint, AccountReference, CosmosClient, CosmosError, FeedScope, Query,
    RoutingStrategy, TransactionalBatch,
    clients::{ContainerClient, DatabaseClient},
    models::{
        CompositeIndex, CompositeIndexOrder, CompositeIndexProperty, ContainerProperties,
        CosmosNumber, IndexingMode, IndexingPolicy, PatchInstructions, PatchOperation,
    },
    options::{
        BinaryEncodingOptions, OperationOptionsBuilder, PatchItemOptions, PatchStrategy,
        Precondition, ThrottlingRetryOptionsBuilder,
    },
};
use futures::TryStreamExt;
use serde::de::DeserializeOwned;

use self::docs::Counter;
use super::*;
use crate::seed::Dataset;

/// Where the store is and which database it uses.
#[derive(Clone)]
pub struct CosmosConfig {
    /// The account endpoint, e.g. `https://contoso.documents.azure.com:443/` (plain HTTP only
    /// for an emulator on the loopback).
    pub endpoint: String,
    /// The account key.
    pub key: String,
    /// The database; created with the containers when missing.
    pub database: String,
}

impl std::fmt::Debug for CosmosConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CosmosConfig")
            .field("endpoint", &self.endpoint)
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

const CUSTOMERS: &str = "customers";
const LOOKUP: &str = "lookup";
const CATALOG: &str = "catalog";
const COUNTERS: &str = "counters";
/// The kinds of record whose ids the store allocates.
const COUNTED: [&str; 3] = [docs::PAYMENT, docs::SECURITY_LOG, docs::TICKET];

/// Reads and decisions of one state-dependent write before it gives up as contended.
const MAX_ATTEMPTS: u32 = 25;
/// The longest wait between two attempts.
const MAX_BACKOFF_MS: u64 = 40;
/// Retries of a throttled (429) request: a few, so an overloaded account fails a call in
/// seconds instead of the SDK's default of minutes.
const THROTTLE_RETRIES: u32 = 4;
const THROTTLE_WAIT: Duration = Duration::from_secs(10);

/// The Cosmos DB store. Cloning shares the client.
#[derive(Clone)]
pub struct CosmosStore {
    database: Arc<DatabaseClient>,
    name: String,
    customers: ContainerClient,
    lookup: ContainerClient,
    catalog: ContainerClient,
    counters: ContainerClient,
}

impl std::fmt::Debug for CosmosStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CosmosStore")
            .field("database", &self.name)
            .finish_non_exhaustive()
    }
}

fn failed(operation: &'static str) -> impl Fn(CosmosError) -> StoreError {
    move |error| StoreError::Backend(format!("cosmos {operation}: {error}"))
}

/// Creating what already exists (409) is what opening an existing database does.
fn created_or_exists<T>(
    result: azure_data_cosmos::Result<T>,
    operation: &'static str,
) -> StoreResult<()> {
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.status().is_conflict() => Ok(()),
        Err(e) => Err(failed(operation)(e)),
    }
}

/// The customers container's indexing: everything, plus the composite indexes that the
/// listings' `ORDER BY c.at, c.n` needs, in both directions (the service serves the reverse
/// order from one of them; the emulator does not, and a second costs little).
fn customer_indexing() -> IndexingPolicy {
    let by = |order: CompositeIndexOrder| {
        CompositeIndex::default()
            .with_property(CompositeIndexProperty::new("/at", order.clone()))
            .with_property(CompositeIndexProperty::new("/n", order))
    };
    let mut policy = IndexingPolicy::default()
        .with_indexing_mode(IndexingMode::Consistent)
        .with_included_path("/*")
        .with_composite_index(by(CompositeIndexOrder::Ascending))
        .with_composite_index(by(CompositeIndexOrder::Descending));
    policy.automatic = true;
    policy
}

impl CosmosStore {
    /// Connects, and creates the database, its containers and its counters when missing.
    pub async fn open(config: &CosmosConfig) -> StoreResult<Self> {
        let endpoint: AccountEndpoint = config.endpoint.parse().map_err(failed("endpoint"))?;
        let account = AccountReference::with_authentication_key(endpoint, config.key.clone());
        let throttling = ThrottlingRetryOptionsBuilder::new()
            .with_max_retry_count(THROTTLE_RETRIES)
            .with_max_retry_wait_time(THROTTLE_WAIT)
            .build();
        // Text JSON: the emulator reads no binary encoding, and the service reads both.
        let client = CosmosClient::builder()
            .with_binary_encoding_options(BinaryEncodingOptions::new().with_enabled(false))
            .with_default_operation_options(
                OperationOptionsBuilder::new()
                    .with_throttling_retry_options(throttling)
                    .build(),
            )
            .build(account, RoutingStrategy::PreferredRegions(vec![]))
            .await
            .map_err(failed("connect"))?;
        created_or_exists(
            client.create_database(&config.database, None).await,
            "create database",
        )?;
        let database = client.database_client(&config.database);
        for name in [CUSTOMERS, LOOKUP, CATALOG, COUNTERS] {
            let mut properties = ContainerProperties::new(name, "/pk".into());
            if name == CUSTOMERS {
                properties = properties.with_indexing_policy(customer_indexing());
            }
            created_or_exists(
                database.create_container(properties, None).await,
                "create container",
            )?;
        }
        let container = async |name: &'static str| {
            database
                .container_client(name, None)
                .await
                .map_err(failed("open container"))
        };
        let store = CosmosStore {
            customers: container(CUSTOMERS).await?,
            lookup: container(LOOKUP).await?,
            catalog: container(CATALOG).await?,
            counters: container(COUNTERS).await?,
            database: Arc::new(database),
            name: config.database.clone(),
        };
        for kind in COUNTED {
            let counter = Counter::new(kind, 1);
            created_or_exists(
                store
                    .counters
                    .create_item(kind, &counter.id, &counter, None)
                    .await,
                "create counter",
            )?;
        }
        Ok(store)
    }

    /// A new id of `kind`: the counter's value before this increment.
    async fn allocate(&self, kind: &'static str) -> StoreResult<i64> {
        let patch = PatchInstructions::new()
            .with_operation(PatchOperation::increment("/next", CosmosNumber::from(1i64)));
        // Server-side: the client-side strategy is a read-modify-write that gives up under
        // contention.
        let options = PatchItemOptions::default().with_strategy(PatchStrategy::ServerSide);
        let counter: Counter = self
            .counters
            .patch_item(kind, kind, patch, Some(options))
            .await
            .map_err(failed("allocate id"))?
            .into_model()
            .map_err(failed("allocate id"))?;
        Ok(counter.next - 1)
    }
}

/// A point read of a document and the condition that a write of what was read must meet;
/// `None` if there is no such document.
async fn read<T: DeserializeOwned>(
    container: &ContainerClient,
    pk: &str,
    id: &str,
    operation: &'static str,
) -> StoreResult<Option<(T, Precondition)>> {
    let response = match container.read_item(pk.to_owned(), id, None).await {
        Ok(response) => response,
        Err(e) if e.status().is_not_found() => return Ok(None),
        Err(e) => return Err(failed(operation)(e)),
    };
    let etag = response
        .headers()
        .etag()
        .cloned()
        .ok_or_else(|| StoreError::Backend(format!("cosmos {operation}: no ETag")))?;
    let item = response.into_model().map_err(failed(operation))?;
    Ok(Some((item, Precondition::if_match(etag))))
}

/// A query's text with its parameters.
fn sql(text: &str, parameters: &[(&str, serde_json::Value)]) -> StoreResult<Query> {
    parameters
        .iter()
        .try_fold(Query::from(text), |query, (name, value)| {
            query.with_parameter(*name, value)
        })
        .map_err(failed("build query"))
}

/// Every result of a query, in the order the query gives.
async fn query<T: DeserializeOwned + Send + 'static>(
    container: &ContainerClient,
    query: Query,
    scope: FeedScope,
    operation: &'static str,
) -> StoreResult<Vec<T>> {
    container
        .query_items::<T>(query, scope, None)
        .await
        .map_err(failed(operation))?
        .try_collect()
        .await
        .map_err(failed(operation))
}

/// Whether a conditional write happened or found the document changed since it was read.
enum Written {
    Done,
    Stale,
}

/// Runs a batch of one partition: all of it, or (on a failed operation) none of it.
async fn commit(
    container: &ContainerClient,
    batch: TransactionalBatch,
    operation: &'static str,
) -> StoreResult<Written> {
    let response = match container.execute_transactional_batch(batch, None).await {
        Ok(response) => response,
        Err(e) if e.status().is_precondition_failed() => return Ok(Written::Stale),
        Err(e) => return Err(failed(operation)(e)),
    };
    let outcome = response.into_model().map_err(failed(operation))?;
    let results = outcome.results();
    if results.iter().all(|r| r.is_success()) {
        Ok(Written::Done)
    } else if results.iter().any(|r| r.status_code() == 412) {
        Ok(Written::Stale)
    } else {
        let statuses: Vec<u16> = results.iter().map(|r| r.status_code()).collect();
        Err(StoreError::Backend(format!(
            "cosmos {operation}: batch failed with statuses {statuses:?}"
        )))
    }
}

/// The attempts of one optimistic write: each after the first waits a random while, longer as
/// attempts fail, so that writers that collided do not collide again in step.
struct Attempts {
    operation: &'static str,
    made: u32,
}

impl Attempts {
    fn new(operation: &'static str) -> Self {
        Attempts { operation, made: 0 }
    }

    /// Waits for the next attempt; an error once the attempts are used up.
    async fn next(&mut self) -> StoreResult<()> {
        if self.made >= MAX_ATTEMPTS {
            return Err(StoreError::Backend(format!(
                "cosmos {}: contended ({MAX_ATTEMPTS} conflicting attempts)",
                self.operation
            )));
        }
        if self.made > 0 {
            let window = (1u64 << self.made.min(6)).min(MAX_BACKOFF_MS);
            // A fresh RandomState is randomly keyed: enough randomness for a jitter.
            let wait = RandomState::new().hash_one(self.made) % (window + 1);
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
        self.made += 1;
        Ok(())
    }
}

#[async_trait]
impl StoreHealth for CosmosStore {
    fn backend(&self) -> &'static str {
        "cosmos"
    }

    fn database(&self) -> String {
        self.name.clone()
    }

    async fn ping(&self) -> StoreResult<()> {
        self.database
            .read(None)
            .await
            .map_err(failed("read database"))?;
        Ok(())
    }
}

#[async_trait]
impl SeedData for CosmosStore {
    async fn is_empty(&self) -> StoreResult<bool> {
        let any: Vec<String> = query(
            &self.customers,
            sql(
                "SELECT TOP 1 VALUE c.id FROM c WHERE c.type = @type",
                &[("@type", docs::CUSTOMER.into())],
            )?,
            FeedScope::full_container(),
            "find a customer",
        )
        .await?;
        Ok(any.is_empty())
    }

    async fn replace_all(&self, data: &Dataset) -> StoreResult<()> {
        load::replace_all(self, data).await
    }
}
