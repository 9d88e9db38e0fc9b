//! Storage behind one trait, so the tools never know which database holds the data.
//!
//! The trait is shaped for two kinds of backend: SQLite (relational, the default, in
//! [`sqlite`]) and a document store partitioned by customer (Cosmos DB, later). That is why
//! reads are "everything of one customer / subscription / invoice" rather than joins the tools
//! compose, and why each write that must check a balance or a state (`pay_invoice`,
//! `unlock_account`, `update_subscription`) is one trait call: the backend makes the check and
//! the write one atomic step (a SQLite write transaction, a Cosmos transactional batch within
//! the customer's partition).

pub mod sqlite;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use crate::{domain::*, money::Money, seed::Dataset};

/// Why a store call did not succeed. Every variant but [`StoreError::Backend`] is the caller's
/// to fix, and its message says how.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{entity} {id} does not exist")]
    NotFound { entity: &'static str, id: i64 },
    #[error(
        "payment of {amount} exceeds the outstanding balance of invoice {invoice_id}, which is {outstanding}"
    )]
    Overpayment {
        invoice_id: i64,
        amount: Money,
        outstanding: Money,
    },
    #[error("invoice {invoice_id} is already paid in full; nothing is outstanding")]
    AlreadyPaid { invoice_id: i64 },
    #[error("the account of customer {customer_id} is not locked; there is nothing to unlock")]
    NotLocked { customer_id: i64 },
    #[error("{0}")]
    Invalid(String),
    /// The database failed; details are logged, not shown to callers.
    #[error("storage backend error: {0}")]
    Backend(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A change to a subscription; fields left `None` are kept.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubscriptionUpdate {
    pub product_id: Option<i64>,
    pub status: Option<SubscriptionStatus>,
    pub roaming_enabled: Option<bool>,
    pub autopay_enabled: Option<bool>,
}

impl SubscriptionUpdate {
    pub fn is_empty(&self) -> bool {
        *self == SubscriptionUpdate::default()
    }
}

/// A ticket to open.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTicket {
    pub customer_id: i64,
    pub subscription_id: Option<i64>,
    pub category: TicketCategory,
    pub priority: TicketPriority,
    pub subject: String,
    pub description: String,
    pub opened_at: DateTime<Utc>,
}

/// A payment to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPayment {
    pub invoice_id: i64,
    pub amount: Money,
    pub method: PaymentMethod,
    pub paid_at: DateTime<Utc>,
}

/// A recorded payment and the invoice as it stands after it.
#[derive(Debug, Clone, PartialEq)]
pub struct PaymentReceipt {
    pub payment: Payment,
    pub invoice: Invoice,
}

/// The result of unlocking an account.
#[derive(Debug, Clone, PartialEq)]
pub struct UnlockReceipt {
    pub locked_at: DateTime<Utc>,
    pub unlocked: SecurityLog,
}

/// Everything the tools read and write. Implementations must be cheap to share (`Arc<dyn Store>`).
///
/// Lists come back in a stable order (newest first for time series, by id otherwise).
/// `today` parameters let a backend derive invoice status without reading a clock itself.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Name of the backend, for `/readyz` and logs.
    fn backend(&self) -> &'static str;
    /// Succeeds when the backend answers a trivial query.
    async fn ping(&self) -> StoreResult<()>;
    /// True when no customer is stored (a fresh database to seed).
    async fn is_empty(&self) -> StoreResult<bool>;
    /// Replaces every row with `data` in one transaction.
    async fn replace_all(&self, data: &Dataset) -> StoreResult<()>;

    /// Customers with id greater than `after`, by id, at most `limit`.
    async fn customers_after(&self, after: i64, limit: u32) -> StoreResult<Vec<CustomerSummary>>;
    async fn customer(&self, id: i64) -> StoreResult<Option<Customer>>;
    async fn subscriptions_of_customer(&self, customer_id: i64) -> StoreResult<Vec<Subscription>>;
    async fn subscription(&self, id: i64) -> StoreResult<Option<Subscription>>;
    /// Invoices of a subscription, newest first.
    async fn invoices_of_subscription(
        &self,
        subscription_id: i64,
        today: NaiveDate,
    ) -> StoreResult<Vec<Invoice>>;
    async fn invoice(&self, id: i64, today: NaiveDate) -> StoreResult<Option<Invoice>>;
    /// Payment attempts on an invoice, oldest first.
    async fn payments_of_invoice(&self, invoice_id: i64) -> StoreResult<Vec<Payment>>;
    /// Records a successful payment if it does not exceed the outstanding balance; the balance
    /// check and the insert are one atomic step, so concurrent payments cannot overpay.
    async fn pay_invoice(
        &self,
        payment: NewPayment,
        today: NaiveDate,
    ) -> StoreResult<PaymentReceipt>;
    /// Daily usage of a subscription between two dates (inclusive), oldest first.
    async fn data_usage(
        &self,
        subscription_id: i64,
        from: NaiveDate,
        to: NaiveDate,
    ) -> StoreResult<Vec<DataUsage>>;
    async fn promotions(&self) -> StoreResult<Vec<Promotion>>;
    async fn products(&self, category: Option<ProductCategory>) -> StoreResult<Vec<Product>>;
    async fn product(&self, id: i64) -> StoreResult<Option<Product>>;
    /// Applies a non-empty update and returns the subscription after it.
    async fn update_subscription(
        &self,
        id: i64,
        update: SubscriptionUpdate,
    ) -> StoreResult<Subscription>;
    /// Security log of a customer, newest first, at most `limit` entries.
    async fn security_logs(&self, customer_id: i64, limit: u32) -> StoreResult<Vec<SecurityLog>>;
    /// Unlocks an account whose latest lock has not been lifted, writing the unlock to the log
    /// with `description` (who unlocked it, and how).
    async fn unlock_account(
        &self,
        customer_id: i64,
        at: DateTime<Utc>,
        description: &str,
    ) -> StoreResult<UnlockReceipt>;
    /// Orders of a customer, newest first.
    async fn orders_of_customer(&self, customer_id: i64) -> StoreResult<Vec<Order>>;
    /// Tickets of a customer, newest first.
    async fn tickets_of_customer(
        &self,
        customer_id: i64,
        open_only: bool,
    ) -> StoreResult<Vec<SupportTicket>>;
    async fn create_ticket(&self, ticket: NewTicket) -> StoreResult<SupportTicket>;
    /// Incidents on a subscription, newest first.
    async fn incidents_of_subscription(
        &self,
        subscription_id: i64,
    ) -> StoreResult<Vec<ServiceIncident>>;
    async fn knowledge_documents(&self) -> StoreResult<Vec<KnowledgeDocument>>;
    /// Stored embeddings of knowledge documents for one model (document id, vector).
    async fn document_embeddings(&self, model: &str) -> StoreResult<Vec<(i64, Vec<f32>)>>;
    async fn save_document_embeddings(
        &self,
        model: &str,
        embeddings: &[(i64, Vec<f32>)],
    ) -> StoreResult<()>;
}
