//! Storage behind traits split by concern, so the tools never know which database holds the data.
//!
//! The traits are shaped for two kinds of backend: SQLite (relational, the default, in
//! [`sqlite`]) and a document store partitioned by customer (Cosmos DB). So:
//! - [`CustomerData`] names the customer in every call: each is a point read or a query within
//!   one customer's partition. A subscription or an invoice named alone is first resolved to its
//!   customer with [`CustomerData::owner`] (an index lookup, not a fan-out over partitions).
//! - Each write that depends on the current state (a payment, an unlock, a subscription change)
//!   is one call that reads, applies the rule of [`crate::domain::writes`] to what it read, and
//!   writes, as one atomic step (a SQLite write transaction; a write conditioned on the document's
//!   ETag in Cosmos, decided again after a conflict). The rules live in the domain, once.
//! - Ids of new records are the backend's to allocate, and are handed to the rule.
//! - Paging cursors are the backend's own text, opaque to the tools.
//! - The product catalogue ([`CatalogData`]), the knowledge base with its embeddings
//!   ([`KnowledgeData`]) and seeding ([`SeedData`]) are separate concerns with their own traits.

#[cfg(feature = "cosmos")]
pub mod cosmos;
mod observed;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::NaiveDate;

use crate::{
    domain::{
        writes::{PaymentReceipt, Refusal, SubscriptionChange, UnlockReceipt},
        *,
    },
    seed::Dataset,
};

/// Why a store call did not succeed. Every variant but [`StoreError::Busy`] and
/// [`StoreError::Backend`] is the caller's to fix, and its message says how.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{entity} {id} does not exist")]
    NotFound { entity: &'static str, id: i64 },
    /// A write's rule refused it.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// A paging cursor this backend did not hand out.
    #[error("the cursor is not one this service returned")]
    BadCursor,
    /// The database is over its throughput for now (Cosmos DB's 429, after the retries).
    #[error("storage backend busy: {0}")]
    Busy(String),
    /// The database failed; details are logged, not shown to callers.
    #[error("storage backend error: {0}")]
    Backend(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A record named by its own id, whose customer is not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owned {
    Subscription(i64),
    Invoice(i64),
}

impl Owned {
    /// The error for a record that does not exist.
    pub fn not_found(self) -> StoreError {
        match self {
            Owned::Subscription(id) => StoreError::NotFound {
                entity: "subscription",
                id,
            },
            Owned::Invoice(id) => StoreError::NotFound {
                entity: "invoice",
                id,
            },
        }
    }
}

/// One page of a listing and, when more follow, the cursor of the next (the backend's own text).
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// How many ids one query of [`CustomerData::payments`] takes: a backend splits a longer list
/// into queries of this many (well inside SQLite's bound parameters and Cosmos DB's query size).
pub const BATCH_IDS: usize = 256;

/// Decides a payment on the invoice as read, with the id the backend allocated.
pub type PaymentRule<'a> = dyn Fn(&Invoice, i64) -> Result<Payment, Refusal> + Send + Sync + 'a;
/// Decides an unlock on the latest lock or unlock event, with the id of the new log entry.
pub type UnlockRule<'a> =
    dyn Fn(Option<&SecurityLog>, i64) -> Result<UnlockReceipt, Refusal> + Send + Sync + 'a;
/// Decides a change of the subscription as read.
pub type SubscriptionRule<'a> =
    dyn Fn(&Subscription) -> Result<SubscriptionChange, Refusal> + Send + Sync + 'a;
/// Opens a ticket with the id the backend allocated, knowing whose the named subscription is.
pub type TicketRule<'a> =
    dyn Fn(Option<i64>, i64) -> Result<SupportTicket, Refusal> + Send + Sync + 'a;

/// The data of customers, partitioned by customer. Implementations must be cheap to share.
///
/// Lists come back in a stable order (newest first for time series, by id otherwise).
/// `today` parameters let a backend derive invoice status without reading a clock itself.
#[async_trait]
pub trait CustomerData: Send + Sync + 'static {
    /// The customer a subscription or invoice belongs to; `None` if it does not exist.
    async fn owner(&self, of: Owned) -> StoreResult<Option<i64>>;
    /// Customers by id, `limit` at a time, from the start or from `cursor` (a `next` this
    /// backend returned; any other text is [`StoreError::BadCursor`]).
    async fn customers(
        &self,
        cursor: Option<&str>,
        limit: u32,
    ) -> StoreResult<Page<CustomerSummary>>;
    async fn customer(&self, customer: i64) -> StoreResult<Option<Customer>>;
    async fn subscriptions(&self, customer: i64) -> StoreResult<Vec<Subscription>>;
    async fn subscription(&self, customer: i64, id: i64) -> StoreResult<Option<Subscription>>;
    /// Invoices of one of the customer's subscriptions, or of all of them when `subscription` is
    /// `None` (one query, however many subscriptions), newest first.
    async fn invoices(
        &self,
        customer: i64,
        subscription: Option<i64>,
        today: NaiveDate,
    ) -> StoreResult<Vec<Invoice>>;
    async fn invoice(
        &self,
        customer: i64,
        id: i64,
        today: NaiveDate,
    ) -> StoreResult<Option<Invoice>>;
    /// Payment attempts on the listed invoices of the customer, oldest first: one query for
    /// up to [`BATCH_IDS`] invoices (ids of other customers' invoices find nothing).
    async fn payments(&self, customer: i64, invoices: &[i64]) -> StoreResult<Vec<Payment>>;
    /// Daily usage of a subscription between two dates (inclusive), oldest first.
    async fn data_usage(
        &self,
        customer: i64,
        subscription: i64,
        from: NaiveDate,
        to: NaiveDate,
    ) -> StoreResult<Vec<DataUsage>>;
    /// Security log of a customer, newest first, at most `limit` entries.
    async fn security_logs(&self, customer: i64, limit: u32) -> StoreResult<Vec<SecurityLog>>;
    /// Orders of a customer, newest first.
    async fn orders(&self, customer: i64) -> StoreResult<Vec<Order>>;
    /// Tickets of a customer, newest first; `open_only` keeps open and in-progress ones.
    async fn tickets(&self, customer: i64, open_only: bool) -> StoreResult<Vec<SupportTicket>>;
    /// Incidents on a subscription, newest first.
    async fn incidents(
        &self,
        customer: i64,
        subscription: i64,
    ) -> StoreResult<Vec<ServiceIncident>>;

    /// Reads the invoice, lets `decide` accept a payment on it, and records it, atomically:
    /// concurrent payments are decided one after another on the balance each one leaves.
    async fn pay_invoice(
        &self,
        customer: i64,
        invoice: i64,
        today: NaiveDate,
        decide: &PaymentRule<'_>,
    ) -> StoreResult<PaymentReceipt>;
    /// Reads the subscription, lets `decide` accept a change, applies it atomically, and
    /// returns the subscription after it.
    async fn update_subscription(
        &self,
        customer: i64,
        id: i64,
        decide: &SubscriptionRule<'_>,
    ) -> StoreResult<Subscription>;
    /// Reads the latest lock or unlock event, lets `decide` accept the unlock, and writes its
    /// log entry, atomically: of two concurrent unlocks of one lock, one is refused.
    async fn unlock_account(
        &self,
        customer: i64,
        decide: &UnlockRule<'_>,
    ) -> StoreResult<UnlockReceipt>;
    /// Opens the ticket `decide` makes, given the owner of the ticket's subscription (if it
    /// names one) and a new id.
    async fn create_ticket(
        &self,
        customer: i64,
        subscription: Option<i64>,
        decide: &TicketRule<'_>,
    ) -> StoreResult<SupportTicket>;
}

/// The product catalogue and its promotions: small, read-mostly, the same for every customer.
#[async_trait]
pub trait CatalogData: Send + Sync + 'static {
    async fn promotions(&self) -> StoreResult<Vec<Promotion>>;
    async fn products(&self, category: Option<ProductCategory>) -> StoreResult<Vec<Product>>;
    async fn product(&self, id: i64) -> StoreResult<Option<Product>>;
}

/// The knowledge base and the embeddings computed for it.
#[async_trait]
pub trait KnowledgeData: Send + Sync + 'static {
    async fn knowledge_documents(&self) -> StoreResult<Vec<KnowledgeDocument>>;
    /// Stored embeddings of knowledge documents for one model (document id, vector).
    async fn document_embeddings(&self, model: &str) -> StoreResult<Vec<(i64, Vec<f32>)>>;
    async fn save_document_embeddings(
        &self,
        model: &str,
        embeddings: &[(i64, Vec<f32>)],
    ) -> StoreResult<()>;
}

/// Loading a dataset: what the seed job and first start use.
#[async_trait]
pub trait SeedData: Send + Sync + 'static {
    /// True when no customer is stored (a fresh database to seed).
    async fn is_empty(&self) -> StoreResult<bool>;
    /// Replaces everything with `data`.
    async fn replace_all(&self, data: &Dataset) -> StoreResult<()>;
}

/// Which backend and database serve, and whether they answer.
#[async_trait]
pub trait StoreHealth: Send + Sync + 'static {
    /// The backend's name (`sqlite`, `cosmos`), for `/readyz` and logs.
    fn backend(&self) -> &'static str;
    /// The database, as an operator names it (a file name, a Cosmos database name); never a
    /// path or an endpoint URL, since `/readyz` shows it.
    fn database(&self) -> String;
    /// Succeeds when the backend answers a trivial request.
    async fn ping(&self) -> StoreResult<()>;
}

/// Every concern of the storage, from one backend; what the tools use is observed
/// (`observed`: a span and a duration per call).
#[derive(Clone)]
pub struct Storage {
    pub customers: Arc<dyn CustomerData>,
    pub catalog: Arc<dyn CatalogData>,
    pub knowledge: Arc<dyn KnowledgeData>,
    pub seeding: Arc<dyn SeedData>,
    pub health: Arc<dyn StoreHealth>,
}

impl Storage {
    /// Every concern served by one value of a backend type that implements them all.
    pub fn of<B>(backend: B) -> Self
    where
        B: CustomerData + CatalogData + KnowledgeData + SeedData + StoreHealth,
    {
        let backend = Arc::new(backend);
        // What the tools read and write is observed (spans, durations); seeding and health
        // checks are not requests' work.
        let observed = Arc::new(observed::Observed::new(backend.clone(), backend.backend()));
        Storage {
            customers: observed.clone(),
            catalog: observed.clone(),
            knowledge: observed,
            seeding: backend.clone(),
            health: backend,
        }
    }
}

/// Which backend holds the data, as configured (`DB_PATH`, or `USE_COSMOSDB` and its settings).
#[derive(Debug, Clone)]
pub enum StorageConfig {
    Sqlite {
        path: std::path::PathBuf,
    },
    #[cfg(feature = "cosmos")]
    Cosmos(cosmos::CosmosConfig),
}

impl StorageConfig {
    /// Opens the backend (creating its database and schema or containers when missing).
    pub async fn open(&self) -> StoreResult<Storage> {
        Ok(match self {
            StorageConfig::Sqlite { path } => Storage::of(sqlite::SqliteStore::open(path).await?),
            #[cfg(feature = "cosmos")]
            StorageConfig::Cosmos(config) => Storage::of(cosmos::CosmosStore::open(config).await?),
        })
    }

    /// Where the data is, in the words of its settings, for an operator's error message.
    pub fn describe(&self) -> String {
        match self {
            StorageConfig::Sqlite { path } => {
                format!("the SQLite database at {} (DB_PATH)", path.display())
            }
            #[cfg(feature = "cosmos")]
            StorageConfig::Cosmos(config) => config.describe(),
        }
    }
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("backend", &self.health.backend())
            .field("database", &self.health.database())
            .finish()
    }
}
