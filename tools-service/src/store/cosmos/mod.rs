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
//! number of times with a jittered wait. Writes to one customer on one replica also queue on a
//! local lock ([`WriteQueues`]), so the conditional write contends only with other replicas: a
//! burst on one replica (200 concurrent payments to one invoice) is decided one after another
//! instead of using up its attempts.
//!
//! [`customers`] serves the customer data, [`catalog`] the catalogue and the knowledge base,
//! [`load`] seeding.

mod catalog;
mod customers;
mod docs;
mod load;

use async_trait::async_trait;
use azure_data_cosmos::{
    FeedScope,
    clients::ContainerClient,
    models::{
        CompositeIndex, CompositeIndexOrder, CompositeIndexProperty, ContainerProperties,
        CosmosNumber, IndexingMode, IndexingPolicy, PatchInstructions, PatchOperation,
    },
    options::{PatchItemOptions, PatchStrategy},
};
pub use shared::cosmos::CosmosConfig;
use shared::cosmos::{
    Attempts, CosmosFailure, Database, WriteQueues, Written, commit, created_or_exists, failed,
    query, read, sql,
};

use self::docs::Counter;
use super::*;
use crate::seed::Dataset;

const CUSTOMERS: &str = "customers";
const LOOKUP: &str = "lookup";
const CATALOG: &str = "catalog";
const COUNTERS: &str = "counters";
/// The kinds of record whose ids the store allocates.
const COUNTED: [&str; 3] = [docs::PAYMENT, docs::SECURITY_LOG, docs::TICKET];

/// The Cosmos DB store. Cloning shares the client.
#[derive(Clone)]
pub struct CosmosStore {
    database: Database,
    customers: ContainerClient,
    lookup: ContainerClient,
    catalog: ContainerClient,
    counters: ContainerClient,
    /// Queue this replica's writes to one customer.
    writing: WriteQueues,
}

/// Local write queues, shared by customers by hash.
const WRITE_QUEUES: usize = 64;

impl std::fmt::Debug for CosmosStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CosmosStore")
            .field("database", &self.database.name())
            .finish_non_exhaustive()
    }
}

/// The database's words go to the log, as a backend error (or a busy one).
impl From<CosmosFailure> for StoreError {
    fn from(failure: CosmosFailure) -> Self {
        if failure.throttled {
            StoreError::Busy(failure.to_string())
        } else {
            StoreError::Backend(failure.to_string())
        }
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
    /// The containers the store keeps its data in, as they are created: what a deployment
    /// provisions for a service that authenticates with an Entra identity.
    pub fn containers() -> [ContainerProperties; 4] {
        [CUSTOMERS, LOOKUP, CATALOG, COUNTERS].map(|name| {
            let properties = ContainerProperties::new(name, "/pk".into());
            if name == CUSTOMERS {
                properties.with_indexing_policy(customer_indexing())
            } else {
                properties
            }
        })
    }

    /// Connects, and creates the database, its containers (with a key) and its counters when
    /// missing.
    pub async fn open(config: &CosmosConfig) -> StoreResult<Self> {
        let database = Database::open(config).await?;
        let [customers, lookup, catalog, counters] = Self::containers();
        let store = CosmosStore {
            customers: database.container(customers).await?,
            lookup: database.container(lookup).await?,
            catalog: database.container(catalog).await?,
            counters: database.container(counters).await?,
            writing: WriteQueues::new(WRITE_QUEUES),
            database,
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

#[async_trait]
impl StoreHealth for CosmosStore {
    fn backend(&self) -> &'static str {
        "cosmos"
    }

    fn database(&self) -> String {
        self.database.name().to_owned()
    }

    async fn ping(&self) -> StoreResult<()> {
        Ok(self.database.ping().await?)
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
